"""Recording-level context: does blending each window's scores with its recording's mean score help?

A window classifier sees 3 s; an instrument that plays in a recording usually plays in many of its windows,
and a false alarm is usually isolated. This blends each window's probability ``p`` with the mean ``m`` of
its recording's window probabilities (same class): ``p ** (1 - w) * m ** w`` for each weight ``w``,
tunes per-class thresholds on the validation split, picks ``w`` by validation micro F1, and scores the
test split (window level). ``w = 0`` is the model alone. Prints one line: the chosen weight and the test
metrics without and with context.

    python bench/bench_context.py --model corpora/recipe/models/cnn --dataset corpora/recipe/datasets/heldout
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from instrument_classifier.data.prepare import load_prepared  # noqa: E402
from instrument_classifier.evaluation.metrics import compute_instrument_metrics, mean_f1, tune_thresholds  # noqa: E402
from instrument_classifier.recipe import predict_split  # noqa: E402


def recording_means(probs: np.ndarray, recordings: np.ndarray) -> np.ndarray:
    """Each row replaced by the mean of the rows of its recording."""
    means = np.empty_like(probs)
    for rec in np.unique(recordings):
        rows = recordings == rec
        means[rows] = probs[rows].mean(axis=0)
    return means


def blend(probs: np.ndarray, means: np.ndarray, weight: float) -> np.ndarray:
    return probs ** (1.0 - weight) * means**weight


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True, help="a prepared dataset with validation and test")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    args = parser.parse_args(argv)

    dataset, info, _ = load_prepared(args.dataset)
    labels = info["labels"]
    splits = {}
    for split in ("validation", "test"):
        y, p = predict_split(args.model, args.dataset, split)
        recordings = np.asarray(dataset[split]["recording_id"])
        splits[split] = (y > 0.5, p, recording_means(p, recordings))

    def score(weight: float):
        yv, pv, mv = splits["validation"]
        yt, pt, mt = splits["test"]
        val_scores = blend(pv, mv, weight)
        thresholds = tune_thresholds(yv, val_scores)
        val = compute_instrument_metrics(yv, val_scores, thresholds=thresholds, labels=labels)
        test = compute_instrument_metrics(yt, blend(pt, mt, weight), thresholds=thresholds, labels=labels)
        return val["f1_micro"], test

    results = {w: score(w) for w in args.weights}
    chosen = max(results, key=lambda w: (results[w][0], -w))  # ties: the least context
    base, best = results[0.0][1] if 0.0 in results else score(0.0)[1], results[chosen][1]
    print(f"context {args.model.name}: weight {chosen:g} (validation micro F1 {results[chosen][0]:.3f}); test "
          f"macro AUC {base['roc_auc_macro']:.3f} -> {best['roc_auc_macro']:.3f}, "
          f"micro F1 {base['f1_micro']:.3f} -> {best['f1_micro']:.3f}, "
          f"mean F1 (7) {mean_f1(base):.3f} -> {mean_f1(best):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
