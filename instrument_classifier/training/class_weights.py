"""``pos_weight`` for the window-level BCE loss from the training label frequencies."""

from __future__ import annotations

from typing import List

import numpy as np

__all__ = ["pos_weight_from_labels"]


def pos_weight_from_labels(labels: np.ndarray, max_weight: float = 20.0) -> List[float]:
    """Per class ``negatives / positives`` over the training windows, clipped to ``[1, max_weight]``.

    Frequent classes (more positives than negatives) keep weight 1: the weight only lifts rare classes, so
    their gradients are not drowned by the easy negatives. Classes without positives get 1 (nothing to lift).

    Parameters
    ----------
    labels : np.ndarray, shape (windows, classes)
        Multi-hot window labels of the training split.
    max_weight : float
        Upper bound, so a class seen in a handful of windows does not dominate the loss.
    """
    labels = np.asarray(labels, dtype=np.float64) > 0.5
    if labels.ndim != 2 or labels.shape[0] == 0:
        raise ValueError(f"expected (windows, classes) labels with at least one window, got shape {labels.shape}")
    if max_weight < 1:
        raise ValueError(f"max_weight must be >= 1, got {max_weight}")
    positives = labels.sum(axis=0)
    negatives = labels.shape[0] - positives
    weight = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    return [float(w) for w in np.clip(weight, 1.0, max_weight)]
