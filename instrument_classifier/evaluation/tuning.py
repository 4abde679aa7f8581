"""Tuning on validation data: recording context, ensemble blend weights (and, through them, thresholds).

The runtime modules apply what is tuned here: :mod:`instrument_classifier.context` blends window scores with
their neighbours' as ``config.context`` says, :mod:`instrument_classifier.ensemble` blends its members with the
stored weights. Choosing those settings needs labelled validation windows and the metrics, so it lives on the
evaluation side with :func:`~instrument_classifier.evaluation.metrics.tune_thresholds` and
:func:`~instrument_classifier.evaluation.clips.tune_clip_thresholds`.
"""

from __future__ import annotations

import itertools
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..context import RADII, WEIGHTS, RecordingContext, blend, neighbour_means
from ..ensemble import blend_probabilities
from .metrics import compute_instrument_metrics, tune_thresholds

__all__ = ["tune_context", "weight_grid", "tune_ensemble"]


def tune_context(y_true: np.ndarray, probs: np.ndarray, recordings: Sequence, starts: Sequence[int],
                 window_frames: int, radii: Sequence[Optional[int]] = RADII,
                 weights: Sequence[float] = WEIGHTS) -> RecordingContext:
    """The radius and weight with the best validation micro F1, and thresholds for them; use validation data.

    Every (radius, weight) gets per-class thresholds tuned on the blended validation scores
    (:func:`~instrument_classifier.evaluation.metrics.tune_thresholds`); ties go to the narrower radius,
    then the smaller weight (less time resolution given up).
    """
    y_true = np.asarray(y_true) > 0.5
    base = compute_instrument_metrics(y_true, probs, thresholds=tune_thresholds(y_true, probs))["f1_micro"]
    best, best_key = None, None
    for radius in radii:
        means = neighbour_means(probs, recordings, starts, radius, window_frames)
        for weight in weights:
            scores = blend(probs, means, weight)
            thresholds = tune_thresholds(y_true, scores)
            f1 = compute_instrument_metrics(y_true, scores, thresholds=thresholds)["f1_micro"]
            key = (f1, -(np.inf if radius is None else radius), -weight)
            if best_key is None or key > best_key:
                best_key = key
                best = RecordingContext(radius, float(weight), [float(t) for t in thresholds], float(f1), float(base))
    if best is None:
        raise ValueError("no context to try: give at least one radius and one weight")
    return best


def weight_grid(num_members: int, step: float = 0.1) -> List[Tuple[float, ...]]:
    """Every weighting of ``num_members`` members in steps of ``step`` that sums to 1 (the first member's
    weight first, highest first)."""
    units = int(round(1 / step))
    grid = [tuple(k / units for k in combo) for combo in itertools.product(range(units + 1), repeat=num_members)
            if sum(combo) == units]
    return sorted(grid, reverse=True)


def tune_ensemble(y_true: np.ndarray, member_probs: Sequence[np.ndarray], recordings: Sequence, starts: Sequence[int],
                  window_frames: int, step: float = 0.1) -> dict:
    """Blend weights, thresholds and recording context, all from **validation** windows.

    The weights maximise validation macro ROC-AUC (the criterion that picks each member's checkpoint), on a
    grid of ``step``; ties go to the weighting listed first by :func:`weight_grid` (more weight on the first
    member). Then per-class thresholds (maximum F1) and the recording context are tuned on the blend.

    Returns
    -------
    dict
        ``weights``, ``thresholds``, ``context`` (a :class:`~instrument_classifier.context.RecordingContext`)
        and ``validation`` (macro AUC and micro F1 of the blend; ``member_roc_auc_macro`` and ``member_f1_micro``:
        each member's alone, in order).
    """
    y_true = np.asarray(y_true) > 0.5
    best, best_auc = None, -np.inf
    for weights in weight_grid(len(member_probs), step):
        auc = compute_instrument_metrics(y_true, blend_probabilities(member_probs, weights), thresholds=0.5)[
            "roc_auc_macro"]
        if auc > best_auc + 1e-12:
            best, best_auc = weights, auc
    blended = blend_probabilities(member_probs, best)
    thresholds = tune_thresholds(y_true, blended)
    alone = [compute_instrument_metrics(y_true, p, thresholds=tune_thresholds(y_true, p)) for p in member_probs]
    validation = {"roc_auc_macro": float(best_auc),
                  "f1_micro": float(compute_instrument_metrics(y_true, blended, thresholds=thresholds)["f1_micro"]),
                  "member_roc_auc_macro": [float(m["roc_auc_macro"]) for m in alone],
                  "member_f1_micro": [float(m["f1_micro"]) for m in alone]}
    context = tune_context(y_true, blended, recordings, starts, window_frames)
    return {"weights": [float(w) for w in best], "thresholds": [float(t) for t in thresholds], "context": context,
            "validation": validation}
