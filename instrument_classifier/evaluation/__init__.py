"""Evaluation: multi-label instrument metrics (also as a local `evaluate` module) and
``instrument-classifier evaluate``.

``metrics`` holds the definitions and the scikit-learn computation; ``instrument_metrics/`` wraps it as an
`evaluate` module (``evaluate.load(str(METRIC_PATH))``, offline); ``evaluate_models`` runs saved models over
a prepared split and writes ``metrics.json``, a markdown table and figures.
"""

from .metrics import HUNG_YANG_LABELS, METRIC_KEYS, METRIC_PATH, compute_instrument_metrics, mean_f1, tune_thresholds

__all__ = ["HUNG_YANG_LABELS", "METRIC_KEYS", "METRIC_PATH", "compute_instrument_metrics", "mean_f1",
           "tune_thresholds"]
