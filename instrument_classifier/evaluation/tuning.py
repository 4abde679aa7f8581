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

#: The step of the weights :func:`tune_blend_on_clips` tries (every weighting in tenths that sums to 1).
CLIP_BLEND_STEP = 0.1

__all__ = ["tune_context", "weight_grid", "tune_ensemble", "tune_blend_on_clips"]


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
        auc = -np.inf if auc is None else auc  # no label with both classes: no AUC (the first weighting stays)
        if best is None or auc > best_auc + 1e-12:
            best, best_auc = weights, auc
    blended = blend_probabilities(member_probs, best)
    thresholds = tune_thresholds(y_true, blended)
    alone = [compute_instrument_metrics(y_true, p, thresholds=tune_thresholds(y_true, p)) for p in member_probs]
    validation = {"roc_auc_macro": float(best_auc) if np.isfinite(best_auc) else None,
                  "f1_micro": float(compute_instrument_metrics(y_true, blended, thresholds=thresholds)["f1_micro"]),
                  "member_roc_auc_macro": [None if m["roc_auc_macro"] is None else float(m["roc_auc_macro"])
                                           for m in alone],
                  "member_f1_micro": [float(m["f1_micro"]) for m in alone]}
    context = tune_context(y_true, blended, recordings, starts, window_frames)
    return {"weights": [float(w) for w in best], "thresholds": [float(t) for t in thresholds], "context": context,
            "validation": validation}


def tune_blend_on_clips(y_true: np.ndarray, member_windows: Sequence[Sequence[np.ndarray]],
                        weights: Optional[Sequence[Sequence[float]]] = None, repeats: int = 20, seed: int = 0,
                        tolerance: float = 0.01) -> dict:
    """The weights of a blend of members with the best cross-validated clip micro F1 on labelled clips.

    For each weighting ``w`` the members' window probabilities are blended as ``sum_m w[m] * member[m]``, each
    clip scored by :func:`~instrument_classifier.inference.clip_scores`, and clip thresholds judged by
    :func:`~instrument_classifier.evaluation.clips.cross_validated_tuning` (thresholds tuned on half of the clips,
    decisions on the other half). Weightings whose cross-validated micro F1 is within ``tolerance`` of the best
    tie; among them the fewest false alarms per clip wins, then the highest macro ROC-AUC of the clip scores, then
    the earliest tried.

    Parameters
    ----------
    y_true : np.ndarray, shape (n_clips, n_labels)
        Labelled instruments (0/1) of the clips, e.g. a real development set.
    member_windows : sequence of sequences of np.ndarray, each (n_windows, n_labels)
        Per member, its window probabilities, one array per clip (``Timeline.window_probs``); the members' arrays
        of a clip have the same shape.
    weights : sequence of weightings, optional
        The weightings to try, one weight in [0, 1] per member, summing to 1; default every weighting in steps of
        :data:`CLIP_BLEND_STEP` (:func:`weight_grid`: the first member's weight highest first).
    repeats, seed : int
        Of the cross-validation.
    tolerance : float
        Cross-validated micro F1 this close to the best counts as a tie.

    Returns
    -------
    dict
        ``weights`` (one per member), ``thresholds`` (``tune_clip_thresholds`` on all clips' blended scores, a
        list), ``cross_validated`` (the chosen weighting's means: micro F1, false alarms and misses per clip),
        ``roc_auc_macro`` (its clip scores', over all clips) and ``candidates``: every weighting's ``weights``,
        ``f1_micro``, ``false_alarms_per_clip`` and ``roc_auc_macro``.
    """
    # imported here: inference imports this package's metrics, and clips imports inference
    from ..inference import clip_scores  # the runtime's clip scores
    from .clips import cross_validated_tuning, tune_clip_thresholds

    y_true = np.asarray(y_true, dtype=np.int8)
    if len(member_windows) < 2 or any(len(windows) != len(y_true) for windows in member_windows):
        raise ValueError(f"{len(y_true)} labelled clips, but window probabilities of "
                         f"{[len(windows) for windows in member_windows]} clips (two members or more)")
    weights = weight_grid(len(member_windows), CLIP_BLEND_STEP) if weights is None else weights
    if not len(weights):
        raise ValueError("no blend weights to try")
    candidates, scored = [], []
    for w in weights:
        w = tuple(float(x) for x in w)
        if len(w) != len(member_windows) or not all(0.0 <= x <= 1.0 for x in w) or abs(sum(w) - 1.0) > 1e-6:
            raise ValueError(f"blend weights must be {len(member_windows)} numbers in [0, 1] summing to 1, got {w}")
        scores = np.stack([clip_scores(blend_probabilities(clip, w)) for clip in zip(*member_windows)])
        scores = scores.astype(np.float64)
        cv = cross_validated_tuning(y_true, scores, repeats=repeats, seed=seed)
        auc = compute_instrument_metrics(y_true, scores, thresholds=0.5)["roc_auc_macro"]
        candidates.append({"weights": list(w), "f1_micro": cv["f1_micro"],
                           "false_alarms_per_clip": cv["false_alarms_per_clip"],
                           "roc_auc_macro": None if auc is None or not np.isfinite(auc) else float(auc)})
        scored.append((scores, cv))
    best_f1 = max(c["f1_micro"] for c in candidates)
    tied = [i for i, c in enumerate(candidates) if c["f1_micro"] >= best_f1 - tolerance]

    def tie_break(i: int):  # fewer false alarms, then higher AUC (none counts lowest), then the earliest tried
        auc = candidates[i]["roc_auc_macro"]
        return candidates[i]["false_alarms_per_clip"], -(auc if auc is not None else -np.inf), i

    chosen = min(tied, key=tie_break)
    scores, cv = scored[chosen]
    return {"weights": candidates[chosen]["weights"],
            "thresholds": [float(t) for t in tune_clip_thresholds(y_true, scores)],
            "cross_validated": cv, "roc_auc_macro": candidates[chosen]["roc_auc_macro"], "candidates": candidates}
