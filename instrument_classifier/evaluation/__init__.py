"""Evaluation: multi-label instrument metrics (also as a local `evaluate` module) and
``instrument-classifier evaluate``.

``metrics`` holds the definitions and the scikit-learn computation; ``instrument_metrics/`` wraps it as an
`evaluate` module (``evaluate.load(str(METRIC_PATH))``, offline); ``evaluate_models`` runs saved models over
a prepared split and writes ``metrics.json``, a markdown table and figures; ``clips`` does the same for labelled
recordings; ``evaluate_command`` is the command line.
"""

__all__ = ["HUNG_YANG_LABELS", "METRIC_KEYS", "METRIC_PATH", "compute_instrument_metrics", "mean_f1",
           "tune_thresholds"]


def __getattr__(name: str):
    # metrics loads scikit-learn (about 0.9 s): only when one of its names is used, so that `evaluate --help` is quick
    if name in __all__:
        from . import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
