"""Instrument metrics: hand-computed cases, agreement with scikit-learn, thresholds, and the `evaluate` module."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score, hamming_loss, precision_recall_fscore_support, roc_auc_score

from instrument_classifier.data.taxonomy import get_taxonomy
from instrument_classifier.evaluation.metrics import (
    HUNG_YANG_LABELS,
    METRIC_KEYS,
    METRIC_PATH,
    binarize,
    compute_instrument_metrics,
    mean_f1,
    near_zero_thresholds,
    tune_thresholds,
)

REPO = Path(__file__).resolve().parents[1]


def random_case(n=200, num_classes=5, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, num_classes)) < 0.3).astype(int)
    # informative but imperfect scores
    s = np.clip(0.35 * y + 0.65 * rng.random((n, num_classes)), 0, 1)
    return y, s


# -- hand-computable cases -------------------------------------------------------------------------

def test_perfect_predictions():
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    m = compute_instrument_metrics(y, y.astype(float), labels=["a", "b", "c"])
    assert tuple(m) == METRIC_KEYS
    for key in ("roc_auc_macro", "roc_auc_micro", "precision_macro", "recall_macro", "f1_macro",
                "precision_micro", "recall_micro", "f1_micro"):
        assert m[key] == 1.0, key
    assert m["hamming_loss"] == 0.0
    assert m["skipped_classes"] == []
    assert m["per_class"]["a"] == {"roc_auc": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}


def test_inverted_predictions():
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    m = compute_instrument_metrics(y, 1.0 - y, labels=["a", "b", "c"])
    assert m["roc_auc_macro"] == 0.0 and m["roc_auc_micro"] == 0.0
    assert m["hamming_loss"] == 1.0
    assert m["f1_macro"] == 0.0 and m["precision_macro"] == 0.0 and m["recall_macro"] == 0.0
    assert m["f1_micro"] == 0.0


def test_hand_computed_values_and_per_class_thresholds():
    # class a: scores .9 .6 .4 .2 for labels 1 0 1 0; class b: .8 .7 .3 .1 for labels 1 1 0 0
    y = np.array([[1, 1], [0, 1], [1, 0], [0, 0]])
    s = np.array([[0.9, 0.8], [0.6, 0.7], [0.4, 0.3], [0.2, 0.1]])
    m = compute_instrument_metrics(y, s, thresholds=[0.5, 0.75], labels=["a", "b"])
    # a at 0.5: predicted rows 0, 1 -> TP 1, FP 1, FN 1; b at 0.75: predicted row 0 -> TP 1, FN 1
    assert m["per_class"]["a"] == {"roc_auc": 0.75, "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_class"]["b"] == {"roc_auc": 1.0, "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3),
                                   "support": 2}
    assert m["precision_macro"] == 0.75 and m["recall_macro"] == 0.5
    assert m["f1_macro"] == pytest.approx((0.5 + 2 / 3) / 2)
    # micro: TP 2, FP 1, FN 2
    assert m["precision_micro"] == pytest.approx(2 / 3) and m["recall_micro"] == 0.5
    assert m["f1_micro"] == pytest.approx(4 / 7)
    assert m["hamming_loss"] == 3 / 8
    assert m["roc_auc_macro"] == pytest.approx(0.875)
    # the per-class thresholds matter: one threshold of 0.5 predicts row 1 for b as well
    same = compute_instrument_metrics(y, s, thresholds=0.5, labels=["a", "b"])
    assert same["per_class"]["b"]["recall"] == 1.0 and same["hamming_loss"] == 2 / 8
    assert binarize(s, [0.5, 0.75]).tolist() == [[1, 1], [1, 0], [0, 0], [0, 0]]


def test_absent_and_always_present_classes_are_skipped_and_named():
    y = np.array([[1, 0, 1, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 0, 1, 1]])
    s = np.array([[0.8, 0.9, 0.7, 0.1], [0.3, 0.1, 0.6, 0.9], [0.9, 0.7, 0.8, 0.2], [0.1, 0.2, 0.9, 0.6]])
    labels = ["a", "absent", "always", "d"]
    m = compute_instrument_metrics(y, s, labels=labels)
    assert m["skipped_classes"] == ["absent", "always"]
    assert set(m["per_class"]) == set(labels)  # still listed
    absent, always = m["per_class"]["absent"], m["per_class"]["always"]
    assert absent["roc_auc"] is None and always["roc_auc"] is None
    assert absent["support"] == 0 and always["support"] == 4
    # absent: predicted twice, never there -> precision 0, recall undefined, F1 0 (false alarms)
    assert absent["precision"] == 0.0 and absent["recall"] is None and absent["f1"] == 0.0
    assert always["precision"] == 1.0 and always["recall"] == 1.0
    # a and d are perfect: the macro averages only see them
    assert m["roc_auc_macro"] == 1.0 and m["f1_macro"] == 1.0 and m["precision_macro"] == 1.0
    # micro ROC-AUC pools only the classes present ...
    assert m["roc_auc_micro"] == roc_auc_score(y[:, [0, 3]].ravel(), s[:, [0, 3]].ravel()) == 1.0
    assert roc_auc_score(y.ravel(), s.ravel()) < 1.0  # ... pooling all classes would differ here
    # ... while Hamming loss and micro precision count the two false alarms of the absent class
    assert m["hamming_loss"] == 2 / 16
    assert m["precision_micro"] == pytest.approx(8 / 10) and m["recall_micro"] == 1.0


def test_absent_class_never_predicted_has_undefined_ratios():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    s = np.array([[0.9, 0.1], [0.2, 0.0], [0.7, 0.3]])
    m = compute_instrument_metrics(y, s, labels=["x", "y"])
    assert m["per_class"]["y"] == {"roc_auc": None, "precision": None, "recall": None, "f1": None, "support": 0}
    assert json.loads(json.dumps(m)) == m  # plain JSON types


def test_present_class_never_predicted_counts_as_zero_precision():
    y = np.array([[1, 1], [0, 0], [1, 0]])
    s = np.array([[0.9, 0.4], [0.2, 0.1], [0.7, 0.3]])  # class y is never >= 0.5
    m = compute_instrument_metrics(y, s, labels=["x", "y"])
    assert m["per_class"]["y"]["precision"] == 0.0 and m["per_class"]["y"]["f1"] == 0.0
    assert m["precision_macro"] == 0.5 and m["f1_macro"] == 0.5


def test_no_class_present_gives_none_averages():
    y = np.array([[1, 0], [1, 0]])
    m = compute_instrument_metrics(y, np.array([[0.9, 0.1], [0.8, 0.2]]), labels=["x", "y"])
    assert m["skipped_classes"] == ["x", "y"]
    assert m["roc_auc_macro"] is None and m["roc_auc_micro"] is None and m["f1_macro"] is None
    assert m["f1_micro"] == 1.0 and m["hamming_loss"] == 0.0


def test_agrees_with_sklearn_when_every_class_is_present():
    y, s = random_case()
    t = np.array([0.3, 0.4, 0.5, 0.6, 0.45])
    pred = (s >= t).astype(int)
    m = compute_instrument_metrics(y, s, thresholds=t)
    assert m["skipped_classes"] == []
    assert m["roc_auc_macro"] == pytest.approx(roc_auc_score(y, s, average="macro"), abs=1e-12)
    assert m["roc_auc_micro"] == pytest.approx(roc_auc_score(y, s, average="micro"), abs=1e-12)
    assert m["hamming_loss"] == pytest.approx(hamming_loss(y, pred), abs=1e-12)
    for avg in ("macro", "micro"):
        p, r, f, _ = precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert (m[f"precision_{avg}"], m[f"recall_{avg}"], m[f"f1_{avg}"]) == pytest.approx((p, r, f), abs=1e-12)
    per_f1 = f1_score(y, pred, average=None)
    assert [m["per_class"][str(i)]["f1"] for i in range(5)] == pytest.approx(per_f1.tolist(), abs=1e-12)
    assert [m["per_class"][str(i)]["support"] for i in range(5)] == y.sum(0).tolist()


@pytest.mark.parametrize("bad, match", [
    (dict(y_score=np.full((4, 2), 3.0)), "probabilities"),
    (dict(y_score=np.full((4, 3), 0.5)), "shapes differ"),
    (dict(y_score=np.full((4, 2), np.nan)), "NaN"),
    (dict(labels=["only one"]), "labels"),
    (dict(thresholds=[0.5, 0.5, 0.5]), "thresholds"),
    (dict(y_true=np.full((4, 2), 2)), "multi-hot"),
])
def test_bad_inputs_raise_clear_errors(bad, match):
    kwargs = dict(y_true=np.array([[1, 0], [0, 1], [1, 1], [0, 0]]), y_score=np.full((4, 2), 0.5))
    kwargs.update(bad)
    with pytest.raises(ValueError, match=match):
        compute_instrument_metrics(**kwargs)


# -- thresholds ------------------------------------------------------------------------------------

def test_tune_thresholds_finds_the_f1_optimal_cut():
    # positives .9 .8 .4, negatives .6 .3: F1 by cut (>=.9) .5, (>=.8) .8, (>=.6) .667, (>=.4) .857, (>=.3) .75
    y = np.array([[1], [1], [0], [1], [0]])
    s = np.array([[0.9], [0.8], [0.6], [0.4], [0.3]])
    t = tune_thresholds(y, s)
    assert t.shape == (1,) and t.dtype == np.float64
    assert t[0] == pytest.approx(0.35)  # halfway between 0.4 (lowest kept) and 0.3
    assert f1_score(y[:, 0], s[:, 0] >= t[0]) == pytest.approx(6 / 7)


def test_tune_thresholds_ties_untunable_classes_and_determinism():
    # class 0: positives .9 .6, negatives .8 .7 .1: F1 2/3 at both ">= .9" and ">= .6" (a tie): the higher
    # cut wins, halfway to the next score .8; class 1: no positives; class 2: only positives: both keep 0.5
    y = np.array([[1, 0, 1], [0, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    s = np.array([[0.9, 0.8, 0.2], [0.8, 0.9, 0.3], [0.7, 0.1, 0.4], [0.6, 0.3, 0.1], [0.1, 0.2, 0.5]])
    t = tune_thresholds(y, s)
    assert t[0] == pytest.approx(0.85) and t[1] == 0.5 and t[2] == 0.5
    assert f1_score(y[:, 0], s[:, 0] >= 0.35) == f1_score(y[:, 0], s[:, 0] >= t[0]) == pytest.approx(2 / 3)
    assert tune_thresholds(y, s, default=0.3)[1:].tolist() == [0.3, 0.3]
    perm = np.random.default_rng(1).permutation(len(y))
    assert tune_thresholds(y[perm], s[perm]).tolist() == t.tolist()  # row order does not matter


def test_tune_thresholds_is_optimal_against_brute_force():
    y, s = random_case(n=120, num_classes=4, seed=3)
    s = np.round(s, 2)  # plenty of tied scores
    t = tune_thresholds(y, s)
    for c in range(4):
        candidates = np.unique(np.r_[s[:, c], 1.1])
        best = max(f1_score(y[:, c], s[:, c] >= cut, zero_division=0) for cut in candidates)
        assert f1_score(y[:, c], s[:, c] >= t[c]) == pytest.approx(best, abs=1e-12)
    # tuned thresholds never do worse than 0.5 on the data they were tuned on
    assert compute_instrument_metrics(y, s, t)["f1_macro"] >= compute_instrument_metrics(y, s, 0.5)["f1_macro"]


# -- mean F1 (Hung & Yang) -------------------------------------------------------------------------

def test_mean_f1_over_hung_yang_instruments():
    labels = list(get_taxonomy("musicnet11").labels)
    assert set(HUNG_YANG_LABELS) <= set(labels)
    y, s = random_case(n=300, num_classes=len(labels), seed=5)
    y[:, labels.index("Bassoon")] = 0  # absent from this split: left out, like the macro average
    m = compute_instrument_metrics(y, s, labels=labels)
    expected = np.mean([m["per_class"][lab]["f1"] for lab in HUNG_YANG_LABELS if lab != "Bassoon"])
    assert mean_f1(m) == pytest.approx(expected)
    assert mean_f1(m, labels=["Piano"]) == m["per_class"]["Piano"]["f1"]
    assert mean_f1(m, labels=["Bassoon"]) is None
    seed12 = compute_instrument_metrics(y[:, :12 - 1], s[:, :12 - 1])
    with pytest.raises(KeyError, match="Piano"):
        mean_f1(seed12)


# -- the evaluate module ---------------------------------------------------------------------------

def test_evaluate_module_matches_direct_computation():
    import evaluate
    y, s = random_case(n=60, num_classes=3, seed=7)
    y[:, 2] = 0
    labels, t = ["p", "q", "r"], [0.4, 0.5, 0.6]
    metric = evaluate.load(str(METRIC_PATH))
    assert metric.compute(predictions=s, references=y, thresholds=t, labels=labels) == \
        compute_instrument_metrics(y, s, t, labels)
    for start in range(0, 60, 25):  # batched, as in an evaluation loop
        metric.add_batch(predictions=s[start : start + 25], references=y[start : start + 25])
    out = metric.compute(thresholds=t, labels=labels)
    assert out == compute_instrument_metrics(y, s, t, labels) and out["skipped_classes"] == ["r"]


_OFFLINE_SCRIPT = r"""
import json, sys
import numpy as np
import evaluate, instrument_classifier
from instrument_classifier.evaluation.metrics import METRIC_PATH
case = json.loads(sys.stdin.read())
out = {"package": instrument_classifier.__file__, "metric_path": str(METRIC_PATH)}
for name, path in (("installed", str(METRIC_PATH)), ("repo", case["repo_path"])):
    metric = evaluate.load(path)
    out[name] = metric.compute(predictions=case["s"], references=case["y"], thresholds=case["t"],
                               labels=case["labels"])
print(json.dumps(out))
"""


def test_evaluate_module_loads_offline_from_a_wheel_install(tmp_path):
    """Build a wheel from the working tree, install it (not editable) and load the module with the Hub off."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "instrument_classifier", src / "instrument_classifier",
                    ignore=shutil.ignore_patterns("__pycache__", "pretrained"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("instrument_classifier-*.whl"))
    subprocess.run(pip + ["install", "--no-deps", "--no-compile", "-q", "--target", str(tmp_path / "site"),
                          str(wheel)], check=True, capture_output=True)

    y, s = random_case(n=40, num_classes=3, seed=11)
    y[:, 1] = 1
    case = {"y": y.tolist(), "s": s.tolist(), "t": [0.5, 0.3, 0.7], "labels": ["u", "v", "w"],
            "repo_path": str(REPO / "instrument_classifier" / "evaluation" / "instrument_metrics")}
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf_home")}  # an empty cache: nothing can come from an earlier download
    proc = subprocess.run([sys.executable, "-c", _OFFLINE_SCRIPT], input=json.dumps(case), env=env,
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["package"].startswith(str(tmp_path / "site"))  # the wheel, not the editable checkout
    assert out["metric_path"].startswith(str(tmp_path / "site"))
    expected = compute_instrument_metrics(y, s, case["t"], case["labels"])
    assert out["installed"] == expected and out["repo"] == expected
    assert expected["skipped_classes"] == ["v"]


def test_micro_tuning_drops_a_class_that_only_brings_false_alarms():
    from instrument_classifier.evaluation.metrics import tune_thresholds, tune_thresholds_micro

    rng = np.random.default_rng(0)
    y = np.zeros((40, 3), dtype=int)
    y[:20, 0] = 1  # class 0: separable
    y[::7, 1] = 1  # class 1: a few positives, scores unrelated to them
    s = np.zeros((40, 3))
    s[:, 0] = np.where(y[:, 0] == 1, 0.8, 0.2) + 0.01 * rng.random(40)
    s[:, 1] = 0.3 + 0.4 * rng.random(40)
    s[:, 2] = 0.5 * rng.random(40)  # class 2: never plays
    per_class = tune_thresholds(y, s)
    assert (s[:, 1] >= per_class[1]).sum() > 20  # per-class F1 detects the poor class almost everywhere
    t = tune_thresholds_micro(y, s, start=0.5)
    pred = s >= t
    assert pred[:, 0].tolist() == y[:, 0].astype(bool).tolist()
    assert pred[:, 1].sum() <= 1 and not pred[:, 2].any()
    assert (t <= 0.99).all()
    # micro F1 at the tuned cut is at least that at the start
    def micro_f1(p):
        tp = (p & (y == 1)).sum(); return 2 * tp / (2 * tp + (p & (y == 0)).sum() + (~p & (y == 1)).sum())
    assert micro_f1(pred) >= micro_f1(s >= 0.5)


def test_near_zero_thresholds_names_the_classes_tuning_would_report_everywhere():
    rng = np.random.default_rng(0)
    n = 200
    y = np.zeros((n, 2), dtype=int)
    y[:100, 0] = 1                      # class 0: well separated
    y[:5, 1] = 1                        # class 1: 5 positives the model scores below every negative
    scores = np.c_[np.where(y[:, 0] == 1, 0.9, 0.1) + rng.uniform(-0.05, 0.05, n),
                   np.where(y[:, 1] == 1, 1e-4, 0.2) + rng.uniform(0, 1e-5, n)]
    thresholds = tune_thresholds(y, scores)
    assert thresholds[0] > 0.3 and thresholds[1] < 1e-3  # F1 of "everywhere" beats "nowhere" for class 1
    warning = near_zero_thresholds(thresholds, y, ["Piano", "Flute"])
    assert warning is not None and "Flute" in warning and "Piano" not in warning
    assert "5 positive of 200" in warning
    assert near_zero_thresholds([0.4, 0.3], y, ["Piano", "Flute"]) is None
