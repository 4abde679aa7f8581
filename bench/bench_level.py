"""Recording level: how a model's clip decisions on real recordings change when the clips are louder or quieter.
One line.

Every clip of the manifest (default ``../shared/real-dev``) is downmixed and written again, as 32-bit float WAV in a
temporary folder (no clipping, no requantisation), scaled by each ``--gain-db``; the labels are unchanged. For each
gain it prints the macro ROC-AUC of the clip scores, micro F1 and false alarms per clip of the decisions at the
model's shipped thresholds (``evaluate_clips``, what ``instrument-classifier evaluate --clips`` runs), for the model
as shipped and, in the same run, for a copy of it whose feature extractors do not bring recordings to one level
(``level_dbfs`` off: what the bundled models did before it).

    python bench/bench_level.py                           # the bundled default, gains +6, 0, -10 and -20 dB
    python bench/bench_level.py --model instrument_classifier/pretrained/yamnet --gain-db -10
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from instrument_classifier.ensemble import EnsembleConfig, is_ensemble_folder  # noqa: E402
from instrument_classifier.evaluation.clips import evaluate_clips  # noqa: E402
from instrument_classifier.inference import DEFAULT_MODEL_DIR  # noqa: E402

REAL_DEV = Path(__file__).resolve().parents[2] / "shared" / "real-dev" / "manifest.csv"


def scaled_manifest(manifest: Path, out_dir: Path, gain_db: float) -> Path:
    """Mono float-WAV copies of the manifest's clips scaled by ``gain_db``, and a manifest listing them."""
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        audio, sr = sf.read(manifest.parent / row["file"], dtype="float32", always_2d=True)
        target = out_dir / (row["file"].replace("/", "_") + ".wav")
        sf.write(target, audio.mean(axis=1) * 10 ** (gain_db / 20), sr, subtype="FLOAT")
        row["file"] = target.name
    scaled = out_dir / "manifest.csv"
    with open(scaled, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return scaled


def without_level(model: Path, out_dir: Path) -> Path:
    """A copy of ``model`` (a model folder, or an ensemble folder and its local members, in the same relative
    places) in ``out_dir`` whose feature extractors read recordings at the level they come at."""
    model = model.resolve()
    copy = out_dir / model.name
    shutil.copytree(model, copy)
    folders = [copy]
    if is_ensemble_folder(model):
        folders = []
        for member in EnsembleConfig.load(model).members:
            source = (model / member).resolve()
            if not source.is_dir():
                raise SystemExit(f"bench_level: {model}: member {member} is no local folder")
            target = (copy / member).resolve()
            shutil.copytree(source, target)
            folders.append(target)
    for folder in folders:
        config_path = folder / "preprocessor_config.json"
        config = json.loads(config_path.read_text())
        config["level_dbfs"] = None
        config_path.write_text(json.dumps(config, indent=2))
    return copy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR,
                        help="model or ensemble folder (default: bundled)")
    parser.add_argument("--manifest", type=Path, default=REAL_DEV)
    parser.add_argument("--gain-db", type=float, action="append", default=None,
                        help="level change in dB (repeat; default +6, 0, -10 and -20)")
    args = parser.parse_args(argv)
    if not args.manifest.is_file():
        print(f"bench_level: skipped, no manifest at {args.manifest}")
        return 0
    gains = args.gain_db or [6.0, 0.0, -10.0, -20.0]
    start = time.perf_counter()
    parts = {"as shipped": [], "level normalisation off": []}
    with tempfile.TemporaryDirectory() as tmp:
        models = {"as shipped": args.model, "level normalisation off": without_level(args.model, Path(tmp) / "off")}
        for i, gain in enumerate(gains):
            folder = Path(tmp) / f"gain{i}"
            folder.mkdir()
            manifest = scaled_manifest(args.manifest, folder, gain)
            for key, model in models.items():
                result = evaluate_clips([str(model)], manifest, progress=False)
                m = next(value for value in result.values() if isinstance(value, dict) and "clips" in value)["clips"]
                parts[key].append(f"{gain:+g} dB: AUC {m['roc_auc_macro']:.3f}, micro F1 {m['f1_micro']:.3f}, "
                                  f"false/clip {m['false_alarms_per_clip']:.2f}")
                num_clips = m["num_clips"]
    print(f"bench_level: {args.model.name} on {num_clips} clips of {args.manifest.parent.name}, shipped "
          f"thresholds; " + "; ".join(f"{k}: " + ", ".join(v) for k, v in parts.items())
          + f" ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
