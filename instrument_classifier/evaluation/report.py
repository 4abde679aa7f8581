"""What ``evaluate`` writes: model names, metrics.json, the markdown and plain-text tables, and the figures."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
from matplotlib.figure import Figure  # figures drawn straight to files: no pyplot, no global backend
from sklearn.metrics import roc_curve

from ..atomic_write import replace_dir
from .errors import EvaluationError
from .metrics import HUNG_YANG_LABELS, mean_f1

#: Top-level keys of metrics.json besides the model names (a model is never given one of these names).
RESERVED_KEYS = ("split", "dataset", "num_windows", "num_frames", "labels", "thresholds")
#: Heatmap columns: (title, level key, transform of the macro metrics).
HEATMAP_COLUMNS = (
    ("ROC-AUC", lambda m: m["roc_auc_macro"]),
    ("1 − Hamming", lambda m: 1.0 - m["hamming_loss"]),
    ("Precision", lambda m: m["precision_macro"]),
    ("Recall", lambda m: m["recall_macro"]),
    ("F1", lambda m: m["f1_macro"]),
)
OUTPUT_FILES = ("metrics.json", "metrics.md", "heatmap.png")

PathLike = Union[str, os.PathLike]


def unique_model_names(sources: Sequence[str], given: Sequence[str],
                       reserved: Sequence[str] = RESERVED_KEYS) -> List[str]:
    """Folder name or Hub id per model; duplicates get their parent folder, then ``-2``, ``-3``... (as do names
    that are ``reserved``: the report's other top-level keys)."""
    def base(source, arg, depth):
        if Path(source).is_absolute():
            parts = Path(source).parts
            return "/".join(parts[-depth:])
        return arg  # a Hub id
    short = [base(s, g, 1) for s, g in zip(sources, given)]
    names = [base(s, g, 2) if short.count(n) > 1 and Path(s).is_absolute() else n
             for n, s, g in zip(short, sources, given)]
    out: List[str] = []
    for name in names:
        candidate, k = name, 2
        while candidate in out or candidate in reserved:
            candidate, k = f"{name}-{k}", k + 1
        out.append(candidate)
    return out


def model_names(results: Dict) -> List[str]:
    """The model entries of a metrics.json dict, in evaluation order."""
    return [k for k in results if k not in RESERVED_KEYS]


def check_output(output: Path, report_files: Sequence[str] = OUTPUT_FILES) -> Path:
    """Resolve ``output`` (symlinks, ``..``) and refuse to replace anything but an earlier report.

    An earlier report is a folder holding metrics.json and nothing but report files (``report_files`` and
    ROC figures), so files a user added to it (or any other folder) are never deleted.
    """
    output = output.expanduser().resolve()
    if output == Path(output.anchor) or output == Path.home().resolve():
        raise EvaluationError(f"{output}: refusing to write the report over a root or home folder")
    if output.exists():
        if not output.is_dir():
            raise EvaluationError(f"{output}: exists and is not a folder")
        foreign = sorted(p.name for p in output.iterdir()
                         if not (p.is_file() and (p.name in report_files or re.fullmatch(r"roc_.*\.png", p.name))))
        if foreign or (any(output.iterdir()) and not (output / "metrics.json").is_file()):
            raise EvaluationError(
                f"{output}: folder is not empty and is not an earlier evaluate output (it holds "
                f"{', '.join(foreign[:5]) or 'no metrics.json'}); refusing to replace it. Choose another --output"
            )
    return output


def _safe_name(name: str, taken: set) -> str:
    """A file-name-safe, unique stem for a model name (Hub ids have '/'; nothing may climb out of the folder)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"
    candidate, k = stem, 2
    while candidate.lower() in taken:
        candidate, k = f"{stem}-{k}", k + 1
    taken.add(candidate.lower())
    return candidate


def _inside(folder: Path, filename: str) -> Path:
    path = (folder / filename).resolve()
    if path.parent != folder.resolve():
        raise EvaluationError(f"{filename}: refusing to write outside {folder}")
    return path


def write_report(results: Dict, curves: Dict[str, dict], output: Path) -> None:
    """Write every file into a temporary sibling folder, then move it to ``output`` in one rename."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        taken = {f.lower() for f in OUTPUT_FILES}
        figures = {name: _safe_name(f"roc_{name}", taken) + ".png" for name in model_names(results)}
        _inside(tmp, "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
        _inside(tmp, "metrics.md").write_text(format_markdown(results, figures))
        plot_heatmap(results, _inside(tmp, "heatmap.png"))
        for name, filename in figures.items():
            plot_roc_curves(curves[name], _inside(tmp, filename), title=name)
        replace_dir(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def parse_thresholds(value) -> Optional[float]:
    """``None`` for ``"config"`` (each model's tuned thresholds), else one threshold in (0, 1) for every class."""
    if isinstance(value, str) and value == "config":
        return None
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise EvaluationError(f"thresholds must be 'config' or a number in (0, 1), got {value!r}") from None
    if not 0.0 < t < 1.0:
        raise EvaluationError(f"thresholds must be 'config' or a number in (0, 1), got {value!r}")
    return t


def fmt(value, digits: int = 3) -> str:
    """A number as the tables show it: ``digits`` decimals, "–" for none (a metric undefined on this data)."""
    return "–" if value is None else f"{value:.{digits}f}"


def _levels(entry: Dict) -> List[tuple]:
    """``(level name, metrics)`` of one model: window, frame, and with its recording context if it has one."""
    levels = [("window", entry["window"]), ("frame", entry["frame"])]
    if "context" in entry:
        levels += [("window+ctx", entry["context"]["window"]), ("frame+ctx", entry["context"]["frame"])]
    return levels


def format_summary(results: Dict) -> str:
    """Plain-text table: one row per model and level with the macro (and micro F1) metrics."""
    names = model_names(results)
    width = max([len(n) for n in names] + [5])
    head = f"{'model':<{width}}  {'level':<10} {'ROC-AUC':>8} {'AUCmicro':>8} {'Hamming':>8} {'Prec':>6} {'Rec':>6} " \
           f"{'F1':>6} {'F1micro':>7}  skipped"
    lines = [f"{results['split']} split of {results['dataset']}: {results['num_windows']} windows, "
             f"{results['num_frames']} frames; macro averages over classes present", head, "-" * len(head)]
    for name in names:
        for level, m in _levels(results[name]):
            lines.append(
                f"{name:<{width}}  {level:<10} {fmt(m['roc_auc_macro']):>8} {fmt(m['roc_auc_micro']):>8} "
                f"{fmt(m['hamming_loss']):>8} {fmt(m['precision_macro']):>6} {fmt(m['recall_macro']):>6} "
                f"{fmt(m['f1_macro']):>6} {fmt(m['f1_micro']):>7}  {len(m['skipped_classes'])}"
            )
    return "\n".join(lines)


def md_escape(text: str) -> str:
    """``text`` safe inside a markdown table cell (model names and labels may hold "|")."""
    return str(text).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> List[str]:
    """The lines of a markdown table: ``header``, its rule, then one line per row, every cell escaped.

    The one table writer of the evaluation reports (metrics.md of ``evaluate`` and of ``evaluate --clips``), of
    the recipes' model cards and of a trained model's card. ``align`` has one letter per column, ``l`` (left,
    the default for columns it does not reach) or ``r`` (right, for numbers).
    """
    rule = "".join("---:|" if a == "r" else "---|" for a in align.ljust(len(header), "l"))
    return ["| " + " | ".join(header) + " |", "|" + rule,
            *("| " + " | ".join(md_escape(cell) for cell in row) + " |" for row in rows)]


def format_markdown(results: Dict, figures: Optional[Dict[str, str]] = None) -> str:
    """metrics.md: summary table, then per model and level a per-class table."""
    names = model_names(results)
    thresholds = results["thresholds"]
    lines = [
        f"# Evaluation: {results['split']} split",
        "",
        f"Data: `{results['dataset']}`, {results['num_windows']} windows, {results['num_frames']} frames. "
        + ("Decision thresholds: each model's `config.thresholds` (as saved; training tunes them on validation)."
           if thresholds == "config" else f"Decision threshold: {thresholds} for every class."),
        "",
        "Macro averages and micro ROC-AUC cover the classes with both positives and negatives in this split; "
        "Hamming loss and micro precision/recall/F1 count every class. Frame level scores every frame of every "
        "window (padded recording tails count as silence).",
        "",
        "## Summary",
        "",
    ]
    lines += markdown_table(
        ["model", "level", "ROC-AUC macro", "ROC-AUC micro", "1 − Hamming", "precision macro", "recall macro",
         "F1 macro", "F1 micro", "skipped classes"],
        ([name, level, fmt(m["roc_auc_macro"]), fmt(m["roc_auc_micro"]), fmt(1 - m["hamming_loss"]),
          fmt(m["precision_macro"]), fmt(m["recall_macro"]), fmt(m["f1_macro"]), fmt(m["f1_micro"]),
          ", ".join(m["skipped_classes"]) or "–"]
         for name in names for level, m in _levels(results[name])))
    lines += ["", "![metrics heatmap](heatmap.png)", ""]
    for name in names:
        entry = results[name]
        lines += [f"## {md_escape(name)}", "", f"Source: `{entry['source']}`", ""]
        for level in ("window", "frame"):
            m = entry[level]
            rows = []
            for label, threshold in zip(m["per_class"], entry["thresholds"]):
                c = m["per_class"][label]
                skipped = " (skipped)" if label in m["skipped_classes"] else ""
                rows.append([label + skipped, c["support"], fmt(c["roc_auc"]), fmt(c["precision"]), fmt(c["recall"]),
                             fmt(c["f1"]), f"{threshold:.3f}"])
            lines += [f"### {level.capitalize()} level", ""]
            lines += markdown_table(["class", "support", "ROC-AUC", "precision", "recall", "F1", "threshold"], rows)
            # the averages' empty cells read "| |", which markdown_table (cells joined by " | ") would not write
            lines.append(f"| **macro** | | {fmt(m['roc_auc_macro'])} | {fmt(m['precision_macro'])} | "
                         f"{fmt(m['recall_macro'])} | {fmt(m['f1_macro'])} | |")
            lines.append(f"| **micro** | | {fmt(m['roc_auc_micro'])} | {fmt(m['precision_micro'])} | "
                         f"{fmt(m['recall_micro'])} | {fmt(m['f1_micro'])} | |")
            lines.append("")
            lines.append(f"Hamming loss {fmt(m['hamming_loss'], 4)}. Skipped (not both present and absent in "
                         f"this split): {md_escape(', '.join(m['skipped_classes'])) or 'none'}.")
            if set(HUNG_YANG_LABELS) <= set(m["per_class"]):
                lines.append(f"Mean F1 over {', '.join(HUNG_YANG_LABELS)} (Hung & Yang, classes present): "
                             f"{fmt(mean_f1(m))}.")
            lines.append("")
        if figures and name in figures:
            lines += [f"![ROC curves of {md_escape(name)}]({figures[name]})", ""]
    return "\n".join(lines)


def roc_points(window_true, window_prob, frame_true, frame_prob, metrics: Dict) -> dict:
    """Per level, per class present: ``(fpr, tpr, auc)`` for the ROC figure (AUC from ``metrics``)."""
    out = {}
    for level, y, s in (("window", window_true, window_prob), ("frame", frame_true, frame_prob)):
        out[level] = {}
        for i, (label, values) in enumerate(metrics[level]["per_class"].items()):
            if values["roc_auc"] is not None:  # the classes present
                fpr, tpr, _ = roc_curve(y[:, i], s[:, i])
                out[level][label] = (fpr, tpr, values["roc_auc"])
    return out


def plot_heatmap(results: Dict, path: PathLike) -> np.ndarray:
    """The study's Figure 1: models (rows) x macro ROC-AUC, 1 − Hamming, precision, recall, F1 (columns).

    Two panels, window and frame level. Returns the window-level matrix (NaN where undefined).
    """
    names = model_names(results)
    fig = Figure(figsize=(11, 1.2 + 0.55 * len(names)), constrained_layout=True)
    axes = fig.subplots(1, 2, squeeze=False)
    matrices = {}
    for ax, level in zip(axes[0], ("window", "frame")):
        matrix = np.array([[np.nan if f(results[n][level]) is None else f(results[n][level])
                            for _, f in HEATMAP_COLUMNS] for n in names], dtype=float)
        matrices[level] = matrix
        image = ax.imshow(np.ma.masked_invalid(matrix), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(HEATMAP_COLUMNS)), [title for title, _ in HEATMAP_COLUMNS], fontsize=8.5)
        ax.set_yticks(range(len(names)), names)
        ax.set_title(f"{level} level (macro)")
        for r in range(len(names)):
            for c in range(len(HEATMAP_COLUMNS)):
                v = matrix[r, c]
                ax.text(c, r, "n/a" if np.isnan(v) else f"{v:.2f}", ha="center", va="center",
                        color="black" if not np.isnan(v) and v > 0.6 else "white", fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.9)
    fig.suptitle(f"{results['split']} split: {results['num_windows']} windows")
    fig.savefig(path, dpi=120, metadata={"Title": "metrics heatmap", "Description": "models: " + ", ".join(names)})
    return matrices["window"]


def plot_roc_curves(curves: dict, path: PathLike, title: str = "") -> None:
    """The study's Figure 2: per-class ROC curves of one model, window and frame level side by side."""
    fig = Figure(figsize=(11, 5), constrained_layout=True)
    axes = fig.subplots(1, 2)
    for ax, level in zip(axes, ("window", "frame")):
        for label, (fpr, tpr, auc) in curves[level].items():
            ax.plot(fpr, tpr, linewidth=1.3, label=f"{label} ({auc:.3f})")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate",
               title=f"{level} level", aspect="equal")
        if curves[level]:
            ax.legend(fontsize=8, loc="lower right", title="class (ROC-AUC)", title_fontsize=8)
        else:
            ax.text(0.5, 0.5, "no class with positives and negatives", ha="center", va="center")
    fig.suptitle(f"ROC curves: {title}")
    fig.savefig(path, dpi=120, metadata={"Title": f"ROC curves: {title}",
                                         "Description": "classes: " + ", ".join(curves["window"])})
