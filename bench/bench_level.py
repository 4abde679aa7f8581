"""Recording level: how a model's clip decisions on real recordings change when the clips are louder or quieter.
One line.

Every clip of the manifest (default ``../shared/real-dev``) is downmixed and written again, as 32-bit float WAV in a
temporary folder (no clipping, no requantisation), scaled by each ``--gain-db``; the labels are unchanged. For each
gain it prints the macro ROC-AUC of the clip scores, micro F1 and false alarms per clip of the decisions at the
model's shipped thresholds (``evaluate_clips``, what ``instrument-classifier evaluate --clips`` runs).

The alternative measured beside it, in the same run: the clips at the lowest and the highest gain, each then brought
to a fixed level before the model hears it, the 95th percentile of its 100-ms RMS at ``--target-dbfs`` (default -12
dBFS), amplified by at most ``--max-gain-db`` (default 20 dB, so that near-silence is not raised to a normal level).
Within that limit the level the clips arrived at no longer matters: both give the same figures.

    python bench/bench_level.py                           # the bundled default, gains +6, 0, -10 and -20 dB
    python bench/bench_level.py --model instrument_classifier/pretrained/yamnet --gain-db -10
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from instrument_classifier.evaluation.clips import evaluate_clips  # noqa: E402
from instrument_classifier.inference import DEFAULT_MODEL_DIR  # noqa: E402

REAL_DEV = Path(__file__).resolve().parents[2] / "shared" / "real-dev" / "manifest.csv"


def level_gain(audio: np.ndarray, sampling_rate: int, target_dbfs: float, max_gain_db: float) -> float:
    """The factor that brings the 95th percentile of ``audio``'s 100-ms RMS to ``target_dbfs``, at most
    ``max_gain_db`` of amplification (any attenuation)."""
    frame = max(1, int(0.1 * sampling_rate))
    usable = len(audio) // frame * frame or len(audio)
    rms = np.sqrt(np.mean(np.square(audio[:usable].reshape(-1, min(frame, usable)), dtype=np.float64), axis=1))
    level = max(float(np.percentile(rms, 95)), 1e-9)
    return min(10 ** (target_dbfs / 20) / level, 10 ** (max_gain_db / 20))


def scaled_manifest(manifest: Path, out_dir: Path, gain_db: float, target_dbfs=None, max_gain_db=20.0) -> Path:
    """Float-WAV copies of the manifest's clips scaled by ``gain_db`` (then brought to ``target_dbfs`` when it is
    given), and a manifest listing them."""
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        audio, sr = sf.read(manifest.parent / row["file"], dtype="float32", always_2d=True)
        mono = audio.mean(axis=1) * 10 ** (gain_db / 20)
        if target_dbfs is not None:  # as a model that normalises would: on the audio it receives
            mono = mono * level_gain(mono, sr, target_dbfs, max_gain_db)
        target = out_dir / (row["file"].replace("/", "_") + ".wav")
        sf.write(target, mono, sr, subtype="FLOAT")
        row["file"] = target.name
    scaled = out_dir / "manifest.csv"
    with open(scaled, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return scaled


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="model or ensemble folder (default: bundled)")
    parser.add_argument("--manifest", type=Path, default=REAL_DEV)
    parser.add_argument("--gain-db", type=float, action="append", default=None,
                        help="level change in dB (repeat; default +6, 0, -10 and -20)")
    parser.add_argument("--target-dbfs", type=float, default=-12.0,
                        help="the alternative's level: 95th percentile of the 100-ms RMS, dBFS (default -12)")
    parser.add_argument("--max-gain-db", type=float, default=20.0,
                        help="the alternative's largest amplification, dB (default 20)")
    args = parser.parse_args(argv)
    if not args.manifest.is_file():
        print(f"bench_level: skipped, no manifest at {args.manifest}")
        return 0
    gains = args.gain_db or [6.0, 0.0, -10.0, -20.0]
    start = time.perf_counter()
    parts = {"as recorded": [], f"normalised to {args.target_dbfs:g} dBFS": []}
    conditions = [(g, None) for g in gains] + [(g, args.target_dbfs) for g in sorted({min(gains), max(gains)})]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (gain, target) in enumerate(conditions):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            manifest = scaled_manifest(args.manifest, folder, gain, target, args.max_gain_db)
            result = evaluate_clips([args.model], manifest, progress=False)
            m = next(value for key, value in result.items() if isinstance(value, dict) and "clips" in value)["clips"]
            key = "as recorded" if target is None else f"normalised to {args.target_dbfs:g} dBFS"
            parts[key].append(f"{gain:+g} dB: AUC {m['roc_auc_macro']:.3f}, micro F1 {m['f1_micro']:.3f}, "
                              f"false/clip {m['false_alarms_per_clip']:.2f}")
            num_clips = m["num_clips"]
    print(f"bench_level: {Path(args.model).name} on {num_clips} clips of {args.manifest.parent.name}, shipped "
          f"thresholds; " + "; ".join(f"{k}: " + ", ".join(v) for k, v in parts.items())
          + f" (at most +{args.max_gain_db:g} dB; {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
