"""Lossy codecs: how a model's clip decisions on real recordings change when the clips are MP3-encoded. One line.

Every clip of the manifest (default ``../shared/real-dev``) is downmixed, encoded to MP3 at each
``--compression-level`` (libsndfile's LAME encoder through soundfile, variable bit rate; 0 = best quality, 1 =
smallest) and decoded again by ``predict``, in a temporary folder; the clips' labels are unchanged. For the original
clips and each level it prints the mean bit rate, the macro ROC-AUC of the clip scores, micro F1 and false alarms
per clip of the decisions at the model's shipped thresholds (``evaluate_clips``, what ``instrument-classifier
evaluate --clips`` runs).

    python bench/bench_codec.py                          # the bundled default, levels 0.2, 0.5 and 0.9
    python bench/bench_codec.py --model instrument_classifier/pretrained/yamnet --compression-level 0.5
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from instrument_classifier.evaluation.clips import evaluate_clips  # noqa: E402
from instrument_classifier.inference import DEFAULT_MODEL_DIR  # noqa: E402

REAL_DEV = Path(__file__).resolve().parents[2] / "shared" / "real-dev" / "manifest.csv"


def encode_manifest(manifest: Path, out_dir: Path, level: float) -> tuple:
    """MP3 copies of the manifest's clips and a manifest listing them: (manifest path, mean kbit/s)."""
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    bits = seconds = 0.0
    for row in rows:
        audio, sr = sf.read(manifest.parent / row["file"], dtype="float32", always_2d=True)
        target = out_dir / (row["file"].replace("/", "_") + ".mp3")
        sf.write(target, audio.mean(axis=1), sr, format="MP3", subtype="MPEG_LAYER_III", compression_level=level)
        bits += 8 * target.stat().st_size
        seconds += len(audio) / sr
        row["file"] = target.name
    encoded = out_dir / "manifest.csv"
    with open(encoded, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return encoded, bits / seconds / 1000.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="model or ensemble folder (default: bundled)")
    parser.add_argument("--manifest", type=Path, default=REAL_DEV)
    parser.add_argument("--compression-level", type=float, action="append", default=None,
                        help="MP3 compression level in [0, 1] (repeat; default 0.2, 0.5 and 0.9)")
    args = parser.parse_args(argv)
    if not args.manifest.is_file():
        print(f"bench_codec: skipped, no manifest at {args.manifest}")
        return 0
    levels = args.compression_level or [0.2, 0.5, 0.9]
    start = time.perf_counter()
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        conditions = [("original", args.manifest, None)]
        for level in levels:
            folder = Path(tmp) / f"mp3_{level:g}"
            folder.mkdir()
            encoded, kbps = encode_manifest(args.manifest, folder, level)
            conditions.append((f"MP3 level {level:g}", encoded, kbps))
        for label, manifest, kbps in conditions:
            result = evaluate_clips([args.model], manifest, progress=False)
            m = next(value for key, value in result.items() if isinstance(value, dict) and "clips" in value)["clips"]
            rate = "" if kbps is None else f" ({kbps:.0f} kbit/s)"
            parts.append(f"{label}{rate}: macro AUC {m['roc_auc_macro']:.3f}, micro F1 {m['f1_micro']:.3f}, "
                         f"false alarms/clip {m['false_alarms_per_clip']:.2f}")
            num_clips = m["num_clips"]
    print(f"bench_codec: {Path(args.model).name} on {num_clips} clips of {args.manifest.parent.name}, shipped "
          f"thresholds: " + " | ".join(parts) + f" ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
