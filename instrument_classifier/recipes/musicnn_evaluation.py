"""The musicnn recipe's tune and evaluate steps: clip thresholds tuned on labelled real recordings, the model
scored on the held-out test windows and on the real clips, and those results printed."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from ..atomic_write import write_dir
from ..evaluation.clips import UNTUNED_THRESHOLD, evaluate_clips
from ..evaluation.evaluate_models import evaluate_models
from ..evaluation.report import fmt
from ..inference import load_model
from .common import RecipeError
from .real_clips import clip_summary, long_clip_metrics
from .results import model_key, window_summary

__all__ = ["tune_on_real_clips", "evaluate_model", "format_results", "format_blend_results"]


def _write_thresholds(src: Path, out: Path, thresholds: Optional[Dict[str, float]]) -> None:
    """``src`` saved again to ``out`` (atomically) with ``thresholds`` ({label: t}) in its config, if given."""

    model, extractor = load_model(src, device="cpu")  # the family's class, as its config names it
    if thresholds is not None:
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if sorted(thresholds) != sorted(labels):
            raise RecipeError(f"tuned thresholds for {sorted(thresholds)}, but {src} has labels {labels}")
        model.config.thresholds = [float(thresholds[label]) for label in labels]
    write_dir(out, lambda folder: (model.save_pretrained(folder), extractor.save_pretrained(folder)))


def _model_entry(report: dict, folder: Path) -> dict:
    """One model's entry in an evaluate / evaluate --clips report (keyed by its folder name)."""
    return model_key(report, folder.name)


def tune_on_real_clips(model_dir: Path, tuned_dir: Path, manifest: Optional[Path], report_dir: Path) -> dict:
    """``model_dir`` saved to ``tuned_dir`` with clip thresholds tuned on the clips of ``manifest``
    (``evaluate --clips --tune-thresholds``, report in ``report_dir``); without a manifest, with its own.

    Returns ``{"thresholds": {label: t} or None, "report"}``, and with a manifest ``"cross_validated"`` and
    ``"validation_thresholds"`` (the clip metrics of thresholds tuned on other clips, and of the model's own).
    """
    tuned = {"thresholds": None, "report": None}
    if manifest is not None:
        report = evaluate_clips(str(model_dir), manifest, output_dir=report_dir, tune=True,
                                untuned=UNTUNED_THRESHOLD)
        entry = _model_entry(report, model_dir)
        tuned.update(thresholds=entry["tuned_thresholds"], report=str(report_dir),
                     cross_validated=entry["tuned_cross_validated"],
                     validation_thresholds=clip_summary(entry["clips"]))
    _write_thresholds(model_dir, tuned_dir, tuned["thresholds"])
    return tuned


def evaluate_model(model_dir: Path, tuned_dir: Path, dataset_path: Path, manifest: Optional[Path], tuned: dict,
                   out: Path) -> dict:
    """Both threshold sets on the held-out test windows of ``dataset_path`` (``out/heldout``), and the tuned
    model on the real clips of ``manifest`` if given (``out/real-dev``).

    Returns ``{"merlin_test": {"validation_thresholds", "tuned_thresholds"}}`` plus, with a manifest,
    ``"real_dev"``: every clip, the long ones, by folder, the clips with no instrument, and from ``tuned``
    (:func:`tune_on_real_clips`' result) the cross-validated and validation-threshold metrics.
    """
    report = evaluate_models([str(model_dir), str(tuned_dir)], dataset=dataset_path, split="test",
                             output_dir=out / "heldout")
    evaluated = {"merlin_test": {
        "validation_thresholds": window_summary(_model_entry(report, model_dir)["window"], None),
        "tuned_thresholds": window_summary(_model_entry(report, tuned_dir)["window"], None)}}
    if manifest is not None:
        clips_dir = out / "real-dev"
        clip_report = evaluate_clips(str(tuned_dir), manifest, output_dir=clips_dir)
        entry = _model_entry(clip_report, tuned_dir)
        evaluated["real_dev"] = {
            "manifest": str(manifest), "num_clips": clip_report["num_clips"],
            "tuned": clip_summary(entry["clips"]),
            "cross_validated": tuned["cross_validated"],
            "validation_thresholds": tuned["validation_thresholds"],
            "long_clips": long_clip_metrics(clips_dir, manifest),
            "by_folder": {folder: clip_summary(m) for folder, m in entry["by_folder"].items()},
            "no_instrument": None if "no_instrument" not in entry else clip_summary(entry["no_instrument"]),
        }
    return evaluated


def format_results(results: dict) -> str:
    """A few lines: real clips first, then the held-out synthetic test."""
    lines = []
    real = results.get("real_dev")
    if real is None:
        lines.append("real clips: none given (thresholds from the held-out validation windows)")
    else:
        m, cv = real["tuned"], real["cross_validated"]
        lines.append(f"real clips ({real['num_clips']}, the development set the thresholds were tuned on): macro AUC "
                     f"{fmt(m['roc_auc_macro'])}, micro F1 {fmt(m['f1_micro'])}, false instruments per clip "
                     f"{fmt(m['false_alarms_per_clip'], 2)}; tuned on other clips (cross-validated): micro F1 "
                     f"{fmt(cv['f1_micro'])}, false per clip {fmt(cv['false_alarms_per_clip'], 2)}")
        if real.get("long_clips"):
            long = real["long_clips"]
            lines.append(f"  the {long['num_clips']} clips of {long['min_seconds']:g} s or more: macro AUC "
                         f"{fmt(long['roc_auc_macro'])}, micro F1 {fmt(long['f1_micro'])}, false per clip "
                         f"{fmt(long['false_alarms_per_clip'], 2)}")
    for name, m in results["merlin_test"].items():
        lines.append(f"held-out test windows, {name.replace('_', ' ')}: macro AUC {fmt(m['roc_auc_macro'])}, micro F1 "
                     f"{fmt(m['f1_micro'])}, macro F1 {fmt(m['f1_macro'])}")
    return "\n".join(lines)



def format_blend_results(results: dict) -> str:
    """A few lines on the other front ends' models and the blend: real clips first (cross-validated), then the
    held-out test."""
    lines = []
    blend = results["blend"]
    members = [(name, results[name]["real_dev"], results[name]["merlin_test"]["tuned_thresholds"])
               for name in blend["members"] if name != "musicnn"]
    weights = " + ".join(f"{w:g} {name}" for name, w in zip(blend["members"], blend["weights"]))
    for name, real, test in members + [(f"blend ({weights})", blend["real_dev"], blend["merlin_test"])]:
        if real is not None:
            cv = real["cross_validated"] if "cross_validated" in real else blend["cross_validated"]
            lines.append(f"{name}, real clips ({real['num_clips']}): macro AUC {fmt(real['tuned']['roc_auc_macro'])}, "
                         f"micro F1 {fmt(real['tuned']['f1_micro'])}; cross-validated micro F1 {fmt(cv['f1_micro'])}, "
                         f"false per clip {fmt(cv['false_alarms_per_clip'], 2)}")
        lines.append(f"{name}, held-out test windows: macro AUC {fmt(test['roc_auc_macro'])}, micro F1 "
                     f"{fmt(test['f1_micro'])}, macro F1 {fmt(test['f1_macro'])}")
    return "\n".join(lines)
