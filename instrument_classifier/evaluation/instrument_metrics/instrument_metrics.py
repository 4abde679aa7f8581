"""Instrument metrics as a local `evaluate` module: multi-label ROC-AUC, Hamming loss, precision, recall, F1.

Load it offline with ``evaluate.load(path_to_this_folder)``; the folder ships inside the package::

    import evaluate
    from instrument_classifier.evaluation.metrics import METRIC_PATH

    metric = evaluate.load(str(METRIC_PATH))
    metric.compute(predictions=probabilities, references=multi_hot, thresholds=[...], labels=[...])

`evaluate` copies this file alone into its module cache, so it cannot import its neighbours relatively; it
imports the installed ``instrument_classifier`` package, whose ``evaluation.metrics`` holds the computation
(scikit-learn). One implementation therefore serves this module, ``instrument-classifier evaluate``, the
training loop and the model cards.
"""

import datasets
import evaluate
import numpy as np

from instrument_classifier.evaluation.metrics import compute_instrument_metrics

_DESCRIPTION = """\
Multi-label instrument recognition metrics computed with scikit-learn: ROC-AUC (macro, micro, per class),
Hamming loss, and precision / recall / F1 (macro, micro, per class) at given per-class thresholds.
Macro averages and micro ROC-AUC cover only the classes with both positives and negatives in the evaluated
data; the others are named in `skipped_classes`. Hamming loss and micro precision / recall / F1 count
every class (a false alarm on an absent instrument is an error).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): probabilities (sigmoid of the logits), one row per example,
        one column per class, in [0, 1].
    references (`list` of `list` of `int`): multi-hot references, same shape.
    thresholds (`float` or `list` of `float`, default 0.5): a class is predicted when its probability is
        >= its threshold.
    labels (`list` of `str`, optional): class names in column order (default "0", "1", ...).
Returns:
    roc_auc_macro, roc_auc_micro, hamming_loss, precision_macro, recall_macro, f1_macro, precision_micro,
    recall_micro, f1_micro (`float` or None), skipped_classes (`list` of `str`), per_class
    ({label: {roc_auc, precision, recall, f1, support}}).
Examples:
    >>> metric = evaluate.load("path/to/instrument_metrics")
    >>> out = metric.compute(predictions=[[0.9, 0.2], [0.1, 0.7]], references=[[1, 0], [0, 1]],
    ...                      labels=["Piano", "Violin"])
    >>> out["f1_macro"]
    1.0
"""

_CITATION = """\
@inproceedings{hung2018frame,
  title={Frame-level Instrument Recognition by Timbre and Pitch},
  author={Hung, Yun-Ning and Yang, Yi-Hsuan},
  booktitle={Proceedings of the 19th International Society for Music Information Retrieval Conference (ISMIR)},
  year={2018}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class InstrumentMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                # float64 so the numbers equal a direct call on the same arrays
                "predictions": datasets.Sequence(datasets.Value("float64")),
                "references": datasets.Sequence(datasets.Value("int32")),
            }),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html#multilabel-ranking-metrics"],
        )

    def _compute(self, predictions, references, thresholds=0.5, labels=None):
        return compute_instrument_metrics(
            np.asarray(references), np.asarray(predictions, dtype=np.float64), thresholds=thresholds, labels=labels
        )
