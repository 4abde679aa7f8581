"""The recipe's numbers: each model's entry in an evaluation report, summarised and printed."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

from ..evaluation.metrics import HUNG_YANG_LABELS
from .common import RecipeSettings


def model_key(metrics: dict, model_type: str) -> dict:
    """The entry of ``model_type`` in an evaluate_models report (keys are model names or paths)."""
    per_model = metrics.get("models", metrics)
    for key, value in per_model.items():
        if Path(str(key)).name == model_type or str(key).endswith(f"/{model_type}"):
            return value
    raise KeyError(f"no results for {model_type} in evaluation report (keys: {list(per_model)})")


def summarise(reports: dict, settings: RecipeSettings, overlap: dict, datasets: dict, seed12: dict) -> dict:
    summary = {"settings": asdict(settings), "library_overlap": overlap["pairs"], "models": {}}
    for model_type in settings.models:
        entry = {}
        for kind, report in reports.items():
            evaluated = model_key(report, model_type)
            entry[kind] = window_summary(evaluated["window"], seed12.get((model_type, kind, False)))
            if "context" in evaluated:  # the same test windows, blended with their neighbours
                entry[f"{kind}+context"] = {
                    **window_summary(evaluated["context"]["window"], seed12.get((model_type, kind, True))),
                    "context": evaluated["context"]["settings"],
                }
        summary["models"][model_type] = entry
    return summary


def window_summary(window: dict, family: Optional[dict]) -> dict:
    per_class = window["per_class"]
    # Hung & Yang's seven; a label absent from these windows (the seed12 view, no support) is left out
    seven = [per_class[c]["f1"] for c in HUNG_YANG_LABELS if c in per_class and per_class[c].get("support", 1)]
    summary = {
        "roc_auc_macro": window["roc_auc_macro"], "f1_micro": window["f1_micro"],
        "f1_macro": window["f1_macro"], "hamming_loss": window["hamming_loss"],
        "mean_f1_7": sum(seven) / len(seven) if seven else None,
        "per_class_f1": {c: v["f1"] for c, v in per_class.items()},
        "skipped_classes": window.get("skipped_classes", []),
    }
    if family is not None:
        summary["seed12"] = {k: family[k] for k in ("roc_auc_macro", "f1_macro", "f1_micro", "skipped_classes")}
    return summary


def format_results(results: dict) -> str:
    lines = [f"{'model':12} {'test set':18} {'macro AUC':>9} {'micro F1':>9} {'macro F1':>9} {'mean F1 (7)':>11} "
             f"{'seed12 macro F1':>15}"]
    for model_type, entry in results["models"].items():
        for kind, m in entry.items():
            seven = "–" if m["mean_f1_7"] is None else f"{m['mean_f1_7']:.3f}"
            s12 = f"{m['seed12']['f1_macro']:.3f}" if "seed12" in m else "–"
            lines.append(f"{model_type:12} {kind:18} {m['roc_auc_macro']:9.3f} {m['f1_micro']:9.3f} "
                         f"{m['f1_macro']:9.3f} {seven:>11} {s12:>15}")
    return "\n".join(lines)
