"""Validation metrics during training, and the final window-level evaluation.

The Trainer gathers only the window logits (``preprocess_logits_for_metrics`` drops the frame logits, which
would cost ``time`` times more memory) and the window ``labels``; metrics are
:func:`instrument_classifier.evaluation.metrics.compute_instrument_metrics` on ``sigmoid(logits)``.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch

from ..evaluation.metrics import compute_instrument_metrics

__all__ = ["keep_window_logits", "make_compute_metrics", "scalar_metrics", "sigmoid"]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits, float64 (no overflow warnings for large magnitudes)."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -logits))


def keep_window_logits(logits, labels) -> torch.Tensor:
    """``preprocess_logits_for_metrics``: keep the window logits ``(batch, labels)``, as float32."""
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return logits.float()


def scalar_metrics(metrics: Dict) -> Dict[str, float]:
    """The averaged metrics as floats (``None`` -> NaN) plus the number of skipped classes, for Trainer logs."""
    out = {}
    for key, value in metrics.items():
        if key == "per_class":
            continue
        if key == "skipped_classes":
            out["num_skipped_classes"] = float(len(value))
            continue
        out[key] = math.nan if value is None else float(value)
    return out


def make_compute_metrics(labels: Sequence[str], thresholds: Optional[Sequence[float]] = None) -> Callable:
    """A ``compute_metrics`` for the Trainer: window-level metrics at ``thresholds`` (0.5 if not given).

    During training the thresholds are not tuned yet; threshold-free ROC-AUC picks the best checkpoint.
    """
    def compute_metrics(eval_pred) -> Dict[str, float]:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        y_true = eval_pred.label_ids[0] if isinstance(eval_pred.label_ids, tuple) else eval_pred.label_ids
        metrics = compute_instrument_metrics(
            (np.asarray(y_true) > 0.5).astype(np.int64), sigmoid(logits),
            thresholds=0.5 if thresholds is None else thresholds, labels=labels,
        )
        return scalar_metrics(metrics)

    return compute_metrics
