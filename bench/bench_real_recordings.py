"""Real recordings: clip-level quality of models on ``../shared/real-dev`` (or any manifest), as users see it.

Runs ``evaluate_clips`` (what ``instrument-classifier evaluate --clips`` runs: every clip through
``predict_timeline``, decisions as ``predict`` makes them) and prints one line per model: macro ROC-AUC of the
clip scores, micro F1 of the decisions, false alarms per clip, exact-set accuracy, the same for the clips of at
least ``--min-seconds``, and with ``--tune`` the micro F1 / false alarms that thresholds tuned on real clips
(``evaluation.clips.tune_clip_thresholds``, as the bundled default's) reach under 2-fold cross-validation over the
clips, repeated ``--repeats`` times, on all clips and on the long ones (decisions still tuned on half of all clips).

    python bench/bench_real_recordings.py                       # the bundled default
    python bench/bench_real_recordings.py --model instrument_classifier/pretrained/cnn --tune
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

from instrument_classifier.evaluation.clips import (  # noqa: E402
    clip_set_metrics, cross_validated_tuning, evaluate_clips, read_manifest,
)
from instrument_classifier.inference import DEFAULT_MODEL_DIR  # noqa: E402

REAL_DEV = Path(__file__).resolve().parents[2] / "shared" / "real-dev" / "manifest.csv"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None, help="model or ensemble folder (default: bundled)")
    parser.add_argument("--manifest", type=Path, default=REAL_DEV)
    parser.add_argument("--min-seconds", type=float, default=2.5, help="also report clips at least this long")
    parser.add_argument("--context", action="store_true")
    parser.add_argument("--tune", action="store_true", help="cross-validated micro-F1 thresholds")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    if not args.manifest.is_file():
        print(f"bench_real_recordings: skipped, no manifest at {args.manifest}")
        return 0
    models = args.model or [str(DEFAULT_MODEL_DIR)]
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        results = evaluate_clips(models, args.manifest, output_dir=Path(tmp) / "report", context=args.context,
                                 progress=False)
        with open(Path(tmp) / "report" / "clips.csv", newline="") as f:
            table = list(csv.DictReader(f))
    seconds = time.perf_counter() - t
    labels = results["labels"]
    durations = {str(r.name): sf.info(str(r.file)).duration for r in read_manifest(args.manifest, labels)}
    long_enough = np.array([durations[row["file"]] >= args.min_seconds for row in table])
    y = np.array([[label in row["instruments"].split(";") for label in labels] for row in table], dtype=int)
    for name in [key for key in results if f"{key}:detected" in table[0]]:  # the models, in order
        m = results[name]["clips"]
        s = np.array([[float(row[f"{name}:{label}"]) for label in labels] for row in table])
        d = np.array([[label in row[f"{name}:detected"].split(";") for label in labels] for row in table], dtype=int)
        long = clip_set_metrics(y[long_enough], s[long_enough], d[long_enough], labels)
        line = (f"{name}: {m['num_clips']} clips of {args.manifest.parent.name}: macro AUC {m['roc_auc_macro']:.3f}, "
                f"micro F1 {m['f1_micro']:.3f}, false alarms/clip {m['false_alarms_per_clip']:.2f}, exact set "
                f"{m['exact_set_accuracy']:.3f}; the {int(long_enough.sum())} clips >= {args.min_seconds:g} s: "
                f"macro AUC {long['roc_auc_macro']:.3f}, micro F1 {long['f1_micro']:.3f}, false alarms/clip "
                f"{long['false_alarms_per_clip']:.2f}")
        if args.tune:
            cv = cross_validated_tuning(y, s, repeats=args.repeats)
            cv_long = cross_validated_tuning(y, s, repeats=args.repeats, judged=long_enough)
            line += ("; thresholds tuned on real clips (tune_clip_thresholds), 2-fold CV: "
                     f"micro F1 {cv['f1_micro']:.3f}, false alarms/clip {cv['false_alarms_per_clip']:.2f}; "
                     f"on its clips >= {args.min_seconds:g} s: micro F1 {cv_long['f1_micro']:.3f}, "
                     f"false alarms/clip {cv_long['false_alarms_per_clip']:.2f}")
        print(line + f" ({seconds:.0f} s for all models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
