"""A model folder measured on labelled real recordings (``evaluate --clips``), as the model cards report it."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import numpy as np

from ..audio import audio_info
from ..evaluation.clips import (
    LABEL_SEPARATOR,
    MIN_TUNING_CLIPS,
    UNTUNED_THRESHOLD,
    clip_set_metrics,
    cross_validated_tuning,
    evaluate_clips,
    read_manifest,
)
from ..evaluation.report import fmt
from ..local_paths import strip_local_paths
from .results import model_key

#: Real clips shorter than this are reported apart: the one-second orchestra stems of real-dev are shorter than
#: one 3-s window (docs/experiments.md reports real-dev both ways).
LONG_CLIP_SECONDS = 2.5


def clip_summary(metrics: dict) -> dict:
    keys = ("num_clips", "roc_auc_macro", "f1_micro", "f1_macro", "false_alarms_per_clip", "misses_per_clip",
            "exact_set_accuracy")
    return {**{k: metrics.get(k) for k in keys},
            "per_class": {label: {"support": m["support"], "roc_auc": m["roc_auc"], "f1": m["f1"]}
                          for label, m in metrics["per_class"].items()}}


def _clip_rows(report: Path) -> Tuple[List[str], List[Tuple[str, Set[str], Set[str], List[float]]]]:
    """The labels and, per clip, ``(file, labels that play, labels detected, clip scores)`` of the ``clips.csv``
    of an ``evaluate --clips`` report of one model."""
    with open(report / "clips.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    (detected,) = [i for i, name in enumerate(header) if name.endswith(":detected")]
    prefix = header[detected][: -len("detected")]
    labels = [name[len(prefix):] for name in header[detected + 1:]]
    return labels, [(row[0], set(filter(None, row[2].split(LABEL_SEPARATOR))),
                     set(filter(None, row[detected].split(LABEL_SEPARATOR))), [float(v) for v in row[detected + 1:]])
                    for row in rows]


def long_clip_metrics(report: Path, manifest: Path, min_seconds: float = LONG_CLIP_SECONDS) -> Optional[dict]:
    """Clip metrics of an ``evaluate --clips`` report (one model) on its clips of at least ``min_seconds``, with
    the report's decisions, and under ``"cross_validated"`` what thresholds tuned on half of all the clips reach on
    the long ones of the other half (:func:`~instrument_classifier.evaluation.clips.cross_validated_tuning`).

    Durations come from the manifest's ``duration_s`` column where it has one, else from the audio headers.
    ``None`` when no clip is that long.
    """
    durations = {}
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            if (row.get("duration_s") or "").strip():
                durations[row["file"].strip()] = float(row["duration_s"])
    labels, rows = _clip_rows(report)
    long, y, scores, decisions = [], [], [], []
    for file, named, found, clip_scores in rows:
        seconds = durations.get(file)
        if seconds is None:
            seconds = audio_info(manifest.parent / file).duration
        long.append(seconds >= min_seconds)
        y.append([label in named for label in labels])
        decisions.append([label in found for label in labels])
        scores.append(clip_scores)
    long = np.array(long, dtype=bool)
    if not long.any():
        return None
    y, scores, decisions = np.array(y, dtype=np.int8), np.array(scores), np.array(decisions, dtype=np.int8)
    metrics = clip_set_metrics(y[long], scores[long], decisions[long], labels)
    return {**clip_summary(metrics), "min_seconds": min_seconds,
            "cross_validated": cross_validated_tuning(y, scores, judged=long)}


def cross_validated_long_row(long: Optional[dict]) -> Optional[List[str]]:
    """A card's row for :func:`long_clip_metrics`' cross-validated figures: clips, thresholds, macro ROC-AUC, micro
    F1, false alarms per clip; ``None`` without them."""
    if not long or not long.get("cross_validated"):
        return None
    cv = long["cross_validated"]
    return [f"the {long['num_clips']} of {long['min_seconds']:g} s or more", "tuned on other clips (cross-validated)",
            fmt(long["roc_auc_macro"]), fmt(cv["f1_micro"]), fmt(cv["false_alarms_per_clip"], 2)]


def _false_alarms_by_label(report: Path) -> Dict[str, List[int]]:
    """``{label: [clips where it is detected but does not play, clips where it does not play]}`` of a clip report."""
    labels, rows = _clip_rows(report)
    counts = {label: [0, 0] for label in labels}
    for _, named, found, _ in rows:
        for label in labels:
            if label not in named:
                counts[label][1] += 1
                counts[label][0] += label in found
    return counts


def measure_real_clips(folder: Path, manifest: Path) -> dict:
    """A bundled folder on labelled real recordings (``evaluate --clips --tune-thresholds``), for its card.

    Returns a JSON-ready summary without local paths: all clips and those of at least
    :data:`LONG_CLIP_SECONDS` with the folder's thresholds, what thresholds tuned on other clips of the set
    reach (2-fold cross-validation), the clips with none of the labels, and each label's false detections.
    """
    manifest = Path(manifest)
    with tempfile.TemporaryDirectory(prefix="recipe-real-clips-") as scratch:
        report_dir = Path(scratch) / "report"
        report = evaluate_clips(str(folder), manifest, output_dir=report_dir, tune=True, progress=False,
                                untuned=UNTUNED_THRESHOLD)
        entry = model_key(report, Path(folder).name)
        summary = {
            "manifest": strip_local_paths(str(manifest.resolve())),
            "num_clips": report["num_clips"],
            "clips_per_folder": {name: m["num_clips"] for name, m in entry["by_folder"].items()},
            "all": clip_summary(entry["clips"]),
            "long_clips": long_clip_metrics(report_dir, manifest, LONG_CLIP_SECONDS),
            "cross_validated": entry["tuned_cross_validated"],
            "no_instrument": None if "no_instrument" not in entry else clip_summary(entry["no_instrument"]),
            "false_alarms": _false_alarms_by_label(report_dir),
        }
    return summary


def well_covered_labels(manifest: Optional[Path], labels: List[str], min_clips: int = MIN_TUNING_CLIPS) -> List[str]:
    """The labels that at least ``min_clips`` clips of the manifest hold (those whose clip thresholds are tuned,
    :func:`~instrument_classifier.evaluation.clips.tune_clip_thresholds`); none without a manifest."""
    if manifest is None:
        return []
    rows = read_manifest(manifest, labels)
    return [label for label in labels if sum(label in row.instruments for row in rows) >= min_clips]
