"""Multi-label instrument metrics: ROC-AUC, Hamming loss, precision, recall and F1, computed with scikit-learn.

Definitions (the numbers in every table, model card and ``metrics.json`` of this project)
-----------------------------------------------------------------------------------------
Let ``y_true`` be ``(N, L)`` multi-hot references and ``y_score`` ``(N, L)`` probabilities; a class is
predicted when ``y_score >= threshold`` (per class or one for all).

* **Classes present**: classes with at least one positive *and* one negative among the ``N`` rows. Only
  for them is ROC-AUC defined, and only they enter the **macro** averages (ROC-AUC, precision, recall,
  F1): a split without, say, harpsichord says nothing about how well harpsichord is recognised, and
  counting it as 0 (or 1) would make the average a statement about the split rather than the model. The
  others are listed by name in ``skipped_classes``; ``per_class`` still reports them, with ``roc_auc``
  ``None``.
* **Micro ROC-AUC** pools the ``(row, class)`` pairs of the classes present, so it averages over the same
  classes as the macro ROC-AUC.
* **Hamming loss**, **micro precision / recall / F1** count *every* class: predicting an instrument that
  never plays in the split is a real false alarm, and a model must not be rewarded for it.
* A ratio with a zero denominator: for a class present that the model never predicts, precision is 0
  (scikit-learn's ``zero_division=0``: it counts against the macro average), and likewise micro precision
  when nothing at all is predicted; for a skipped class an undefined precision, recall or F1 (e.g. recall
  without positives) is ``None``; an average over no class at all is ``None``.

``tune_thresholds`` picks, per class, the cut that maximises F1 on the data it is given (the validation
split: never tune on test). ``mean_f1`` averages per-class F1 over a chosen set of classes, e.g. Hung &
Yang's (ISMIR 2018) seven instruments for ``musicnet11``.

The same functions back the local ``evaluate`` module in ``instrument_metrics/`` (``evaluate.load(METRIC_PATH)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np
from sklearn.metrics import hamming_loss, precision_recall_fscore_support, roc_auc_score

__all__ = [
    "METRIC_PATH",
    "METRIC_KEYS",
    "HUNG_YANG_LABELS",
    "compute_instrument_metrics",
    "tune_thresholds",
    "near_zero_thresholds",
    "tune_thresholds_micro",
    "binarize",
    "mean_f1",
]

#: Folder of the local ``evaluate`` module: ``evaluate.load(str(METRIC_PATH))``.
METRIC_PATH = Path(__file__).resolve().parent / "instrument_metrics"

#: Keys of the dict returned by :func:`compute_instrument_metrics`, in order.
METRIC_KEYS = (
    "roc_auc_macro", "roc_auc_micro", "hamming_loss",
    "precision_macro", "recall_macro", "f1_macro",
    "precision_micro", "recall_micro", "f1_micro",
    "skipped_classes", "per_class",
)

#: musicnet11 labels of the seven instruments Hung & Yang (ISMIR 2018) report mean F1 over.
HUNG_YANG_LABELS = ("Piano", "Violin", "Viola", "Cello", "Clarinet", "Bassoon", "French Horn")

ArrayLike = Union[np.ndarray, Sequence]


def _check_inputs(y_true: ArrayLike, y_score: ArrayLike, labels: Optional[Sequence[str]]):
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 2 or y_score.ndim != 2:
        raise ValueError(
            f"y_true and y_score must be 2-D (samples, classes), got shapes {y_true.shape} and {y_score.shape}"
        )
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true and y_score shapes differ: {y_true.shape} vs {y_score.shape}")
    if y_true.shape[0] == 0:
        raise ValueError("cannot compute metrics on zero samples")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true must be multi-hot: every entry 0 or 1")
    if not np.isfinite(y_score).all():
        raise ValueError("y_score contains NaN or infinite values")
    if y_score.min() < 0 or y_score.max() > 1:
        # the usual mistake: logits instead of sigmoid(logits); thresholds would then mean something else
        raise ValueError(
            f"y_score must be probabilities in [0, 1] (got values in [{y_score.min():.3g}, {y_score.max():.3g}]); "
            "apply a sigmoid to logits first"
        )
    num_classes = y_true.shape[1]
    if labels is None:
        labels = [str(i) for i in range(num_classes)]
    labels = [str(label) for label in labels]
    if len(labels) != num_classes:
        raise ValueError(f"got {len(labels)} labels for {num_classes} classes")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct, got {labels}")
    return y_true.astype(np.int8, copy=False), y_score, labels  # int8: frame-level inputs have millions of rows


def _thresholds_array(thresholds, num_classes: int) -> np.ndarray:
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim == 0:
        t = np.full(num_classes, float(t))
    if t.shape != (num_classes,):
        raise ValueError(f"thresholds must be one number or one per class ({num_classes}), got shape {t.shape}")
    if not np.isfinite(t).all():
        raise ValueError("thresholds must be finite")
    return t


def binarize(y_score: ArrayLike, thresholds: Union[float, ArrayLike] = 0.5) -> np.ndarray:
    """Predictions ``y_score >= thresholds`` (one threshold or one per class) as an int array."""
    y_score = np.asarray(y_score, dtype=np.float64)
    return (y_score >= _thresholds_array(thresholds, y_score.shape[-1])).astype(np.int64)


def _none_if_nan(x) -> Optional[float]:
    x = float(x)
    return None if np.isnan(x) else x


def _mean_or_none(values: np.ndarray) -> Optional[float]:
    return float(np.mean(values)) if len(values) else None


def compute_instrument_metrics(
    y_true: ArrayLike,
    y_score: ArrayLike,
    thresholds: Union[float, ArrayLike] = 0.5,
    labels: Optional[Sequence[str]] = None,
) -> Dict:
    """Multi-label metrics at the given thresholds (definitions in the module docstring).

    Parameters
    ----------
    y_true : array-like, shape (n_samples, n_classes)
        Multi-hot references (0/1).
    y_score : array-like, shape (n_samples, n_classes)
        Probabilities in [0, 1] (``sigmoid(logits)``).
    thresholds : float or array-like of shape (n_classes,)
        A class is predicted when its score is ``>=`` its threshold.
    labels : sequence of str, optional
        Class names, in column order (default ``"0"``, ``"1"``, ...).

    Returns
    -------
    dict
        ``roc_auc_macro``, ``roc_auc_micro``, ``hamming_loss``, ``precision_macro``, ``recall_macro``,
        ``f1_macro``, ``precision_micro``, ``recall_micro``, ``f1_micro`` (float or None),
        ``skipped_classes`` (list of labels not present) and ``per_class``
        ``{label: {"roc_auc", "precision", "recall", "f1", "support"}}`` (support = number of positives).
        Plain Python types, ready for ``json.dump``.
    """

    y_true, y_score, labels = _check_inputs(y_true, y_score, labels)
    y_pred = binarize(y_score, thresholds)
    num_samples = y_true.shape[0]
    support = y_true.sum(axis=0)
    present = (support > 0) & (support < num_samples)
    idx = np.flatnonzero(present)

    # per class, undefined ratios as NaN so they can be told apart from a real 0
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, average=None, labels=list(range(len(labels))), zero_division=np.nan
    )
    # a class present but never predicted has precision 0 (it must count against the macro average)
    precision = np.where(present & np.isnan(precision), 0.0, precision)
    roc_auc = np.full(len(labels), np.nan)
    for i in idx:
        roc_auc[i] = roc_auc_score(y_true[:, i], y_score[:, i])

    p_micro, r_micro, f_micro, _ = precision_recall_fscore_support(
        y_true, y_pred, average="micro", zero_division=np.nan
    )
    if np.isnan(p_micro) and support.sum() > 0:  # nothing predicted although something plays: a failure, not undefined
        p_micro = 0.0
    if len(idx):
        auc_micro = roc_auc_score(y_true[:, idx].ravel(), y_score[:, idx].ravel())
    else:
        auc_micro = np.nan
    return {
        "roc_auc_macro": _mean_or_none(roc_auc[idx]),
        "roc_auc_micro": _none_if_nan(auc_micro),
        "hamming_loss": float(hamming_loss(y_true, y_pred)),
        "precision_macro": _mean_or_none(precision[idx]),
        "recall_macro": _mean_or_none(recall[idx]),
        "f1_macro": _mean_or_none(f1[idx]),
        "precision_micro": _none_if_nan(p_micro),
        "recall_micro": _none_if_nan(r_micro),
        "f1_micro": _none_if_nan(f_micro),
        "skipped_classes": [label for label, ok in zip(labels, present) if not ok],
        "per_class": {
            label: {
                "roc_auc": _none_if_nan(roc_auc[i]),
                "precision": _none_if_nan(precision[i]),
                "recall": _none_if_nan(recall[i]),
                "f1": _none_if_nan(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
    }


def tunable_classes(y_true: ArrayLike) -> np.ndarray:
    """Boolean mask, shape ``(n_classes,)``: the classes with both positive and negative samples in ``y_true`` (0/1),
    the only ones whose threshold, ROC-AUC or F1 curve the data can say anything about."""
    positives = np.asarray(y_true) > 0.5
    return positives.any(axis=0) & ~positives.all(axis=0)


def tune_thresholds(y_true: ArrayLike, y_score: ArrayLike, default: Union[float, ArrayLike] = 0.5) -> np.ndarray:
    """Per-class threshold maximising F1 on ``(y_true, y_score)``; use validation data, never test.

    For each class every distinct cut of the scores is tried (the exact F1 curve, as
    ``sklearn.metrics.precision_recall_curve``). The returned threshold lies halfway between the lowest
    score kept positive and the next lower score (0 below the lowest), so that scores a little below the
    validation positives on new data still count, and ``y_score >= threshold`` reproduces the optimum.
    Of equally good cuts the highest is chosen (fewest false alarms), so the result is deterministic.
    A class without both positives and negatives gives no information about where to cut: it keeps
    ``default``.

    Parameters
    ----------
    y_true : array-like, shape (n_samples, n_classes)
    y_score : array-like, shape (n_samples, n_classes)
        Probabilities in [0, 1].
    default : float or array-like of shape (n_classes,)
        Threshold for classes that cannot be tuned (one for all, or per class: e.g. those of the model being
        fine-tuned).

    Returns
    -------
    np.ndarray, shape (n_classes,), float64
    """
    y_true, y_score, _ = _check_inputs(y_true, y_score, None)
    thresholds = np.broadcast_to(np.asarray(default, dtype=np.float64), (y_true.shape[1],)).copy()
    for c in np.flatnonzero(tunable_classes(y_true)):
        y, s = y_true[:, c], y_score[:, c]
        positives = int(y.sum())
        order = np.argsort(-s, kind="mergesort")
        s_sorted, y_sorted = s[order], y[order]
        # last index of every group of equal scores: the cuts "predict everything scoring >= s_sorted[i]"
        cut = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s) - 1]
        tp = np.cumsum(y_sorted)[cut]
        fp = cut + 1 - tp
        f1 = 2 * tp / (2 * tp + fp + (positives - tp))  # = 2TP / (2TP + FP + FN)
        best = int(np.argmax(f1))  # first maximum = highest threshold
        below = s_sorted[cut[best] + 1] if cut[best] + 1 < len(s) else 0.0
        thresholds[c] = (s_sorted[cut[best]] + below) / 2
    return thresholds


#: A tuned threshold below this reports its class wherever the model gives it any probability at all.
NEAR_ZERO_THRESHOLD = 0.01


def near_zero_thresholds(thresholds: ArrayLike, y_true: ArrayLike, labels: Sequence[str],
                         floor: float = NEAR_ZERO_THRESHOLD) -> Optional[str]:
    """A warning naming the classes whose tuned threshold is below ``floor``, or ``None``.

    Maximising one class's F1 on validation data where the model barely separates it (typically a class with few
    validation positives) picks the cut "report it everywhere": a threshold near 0, and false detections of that
    class on nearly every clip a user gives the model.

    Parameters
    ----------
    thresholds : array-like, shape (n_classes,)
        The tuned thresholds.
    y_true : array-like, shape (n_samples, n_classes)
        The references they were tuned on (0/1), to count each class's positives.
    labels : sequence of str
        Class names.
    floor : float
        Thresholds below it are reported.
    """
    thresholds, y_true = np.asarray(thresholds, dtype=float), np.asarray(y_true).astype(bool)
    low = np.flatnonzero(thresholds < floor)
    if not len(low):
        return None
    positives = y_true.sum(axis=0)
    listed = ", ".join(f"{labels[c]} {thresholds[c]:.2g} ({int(positives[c])} positive of {len(y_true)})" for c in low)
    return (f"thresholds below {floor:g}, tuned on validation windows where the model barely separates these classes; "
            f"they will be reported on nearly every clip: {listed}. More validation (and training) data for them, or "
            f"`predict --threshold`, avoids that.")


def tune_thresholds_micro(y_true: ArrayLike, y_score: ArrayLike, start: Union[float, ArrayLike] = 0.5,
                          max_threshold: float = 0.99, passes: int = 3,
                          tune: Optional[ArrayLike] = None) -> np.ndarray:
    """Per-class thresholds maximising **micro** F1 over all classes together; use development data, never test.

    :func:`tune_thresholds` maximises each class's own F1, which for a class the model separates poorly, or
    one with few positives, is often "predict it everywhere": every other clip then gets a false alarm. Micro
    F1 counts those false alarms against the whole, so a class is only detected where that pays. Coordinate
    ascent: for each class in turn, with the others fixed, the cut of its scores that maximises micro F1 (the
    highest of equal ones; halfway between neighbouring scores, as :func:`tune_thresholds`), ``passes`` times.
    No cut goes above ``max_threshold``.

    Parameters
    ----------
    y_true, y_score : array-like, shape (n_samples, n_classes)
        References (0/1) and probabilities in [0, 1].
    start : float or array-like of shape (n_classes,)
        Initial thresholds (e.g. the model's).
    max_threshold : float
        Upper bound of every threshold: a class absent from the data stays detectable elsewhere.
    passes : int
        Rounds over the classes.
    tune : array-like of bool, shape (n_classes,), optional
        Only these classes are tuned; the others keep ``start`` (their false alarms still count). Default: all.

    Returns
    -------
    np.ndarray, shape (n_classes,), float64
    """
    y_true, y_score, _ = _check_inputs(y_true, y_score, None)
    t = np.minimum(_thresholds_array(start, y_true.shape[1]).copy(), max_threshold)
    y = y_true.astype(bool)
    tuned = np.ones(y.shape[1], dtype=bool) if tune is None else np.asarray(tune, dtype=bool)
    if tuned.shape != (y.shape[1],):
        raise ValueError(f"tune must have one entry per class ({y.shape[1]}), got shape {tuned.shape}")
    for _ in range(passes):
        for c in np.flatnonzero(tuned):
            pred = y_score >= t
            others = np.ones(y.shape[1], dtype=bool)
            others[c] = False
            tp_o = int((pred[:, others] & y[:, others]).sum())
            fp_o = int((pred[:, others] & ~y[:, others]).sum())
            fn_o = int((~pred[:, others] & y[:, others]).sum())
            s = np.unique(y_score[:, c])
            cuts = np.unique(np.r_[(s[1:] + s[:-1]) / 2, s[0] / 2, max_threshold, t[c]])
            cuts = cuts[cuts <= max_threshold]
            above = y_score[:, c][None, :] >= cuts[:, None]  # (cuts, samples)
            tp = tp_o + (above & y[:, c]).sum(axis=1)
            fp = fp_o + (above & ~y[:, c]).sum(axis=1)
            fn = fn_o + (~above & y[:, c]).sum(axis=1)
            f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
            best = np.flatnonzero(f1 == f1.max())[-1]  # the highest of the best cuts
            t[c] = cuts[best]
    return t


def mean_f1(metrics: Dict, labels: Sequence[str] = HUNG_YANG_LABELS) -> Optional[float]:
    """Mean per-class F1 over ``labels`` that are present in the evaluated data.

    With the default ``labels`` and ``musicnet11`` metrics this is Hung & Yang's (ISMIR 2018) "mean F1
    over piano, violin, viola, cello, clarinet, bassoon and horn". Classes skipped (not present) are left
    out, as in the macro averages; ``None`` if none of ``labels`` is present.

    Raises
    ------
    KeyError
        If a label is not a class of ``metrics`` (e.g. seed12 metrics with musicnet11 labels).
    """
    per_class = metrics["per_class"]
    missing = [label for label in labels if label not in per_class]
    if missing:
        raise KeyError(f"labels {missing} are not classes of these metrics (classes: {list(per_class)})")
    skipped = set(metrics["skipped_classes"])
    values = [per_class[label]["f1"] for label in labels if label not in skipped]
    return float(np.mean(values)) if values else None
