"""Recording-level context: does blending each window's scores with its neighbours' help?

A window classifier sees 3 s; an instrument that plays in a recording usually plays in many of its windows,
and a false alarm is usually isolated. This blends each window's probability ``p`` with the mean ``m`` of
the window probabilities of its recording within ``k`` windows on either side (same class; ``k = all``: the
whole recording): ``p ** (1 - w) * m ** w``. For every ``k`` of ``--neighbours`` and weight ``w`` of
``--weights`` it tunes per-class thresholds on the validation split, picks ``(k, w)`` by validation micro F1
and scores the test split (window level). ``w = 0`` is the model alone. Prints one line: the chosen context
and the test metrics without and with it. A larger ``k`` trades the timeline's resolution for accuracy: an
instrument's entry is smeared over ``k`` windows (2.97 s each).

    python bench/bench_context.py --model corpora/recipe/models/cnn --dataset corpora/recipe/datasets/heldout
    python bench/bench_context.py --model ... --dataset ... --neighbours 2    # at most +-2 windows (+-6 s)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from instrument_classifier.context import blend, neighbour_means  # noqa: E402
from instrument_classifier.data.prepare import load_prepared  # noqa: E402
from instrument_classifier.evaluation.metrics import compute_instrument_metrics, mean_f1, tune_thresholds  # noqa: E402
from instrument_classifier.evaluation.predict_split import predict_split  # noqa: E402


def _neighbours(text: str) -> Optional[int]:
    return None if text == "all" else int(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True, help="a prepared dataset with validation and test")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--neighbours", type=_neighbours, nargs="+", default=[1, 2, 3, 5, 8, None], metavar="K",
                        help="windows on either side to average over, or 'all' (default 1 2 3 5 8 all)")
    args = parser.parse_args(argv)

    dataset, info, _ = load_prepared(args.dataset)
    labels = info["labels"]
    splits = {}
    for split in ("validation", "test"):
        y, p = predict_split(args.model, args.dataset, split)
        rows = dataset[split].select_columns(["recording_id", "start_frame"])
        recordings, starts = np.asarray(rows["recording_id"]), np.asarray(rows["start_frame"])
        splits[split] = (y > 0.5, p, {k: neighbour_means(p, recordings, starts, k, info["window_frames"])
                                      for k in args.neighbours})

    def score(k: Optional[int], weight: float):
        yv, pv, mv = splits["validation"]
        yt, pt, mt = splits["test"]
        val_scores = pv if weight == 0 else blend(pv, mv[k], weight)
        thresholds = tune_thresholds(yv, val_scores)
        val = compute_instrument_metrics(yv, val_scores, thresholds=thresholds, labels=labels)
        test_scores = pt if weight == 0 else blend(pt, mt[k], weight)
        test = compute_instrument_metrics(yt, test_scores, thresholds=thresholds, labels=labels)
        return val["f1_micro"], test

    results = {(k, w): score(k, w) for k in args.neighbours for w in args.weights if w > 0}
    base = score(None, 0.0)
    results[(0, 0.0)] = base

    def preference(kw):  # the best validation micro F1; on ties the narrowest context, then the least weight
        k, w = kw
        return results[kw][0], -(float("inf") if k is None else k), -w

    chosen = max(results, key=preference)
    best, k = results[chosen][1], chosen[0]
    where = "the whole recording" if k is None else f"+-{k} windows" if chosen[1] > 0 else "no context"
    print(f"context {args.model.name}: {where}, weight {chosen[1]:g} (validation micro F1 {results[chosen][0]:.3f} "
          f"from {base[0]:.3f}); test macro AUC {base[1]['roc_auc_macro']:.3f} -> {best['roc_auc_macro']:.3f}, "
          f"micro F1 {base[1]['f1_micro']:.3f} -> {best['f1_micro']:.3f}, "
          f"mean F1 (7) {mean_f1(base[1]):.3f} -> {mean_f1(best):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
