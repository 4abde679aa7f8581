"""``instrument-classifier evaluate``: saved models on a prepared split -> metrics.json, tables and figures.

What is measured
----------------
For every model, on every window of the split:

* **window level**: the window's multi-hot ``labels`` against ``sigmoid(logits)``;
* **frame level**: every frame's ``frame_labels`` against ``sigmoid(frame_logits)``, flattened over all
  frames of all windows. Validation/test windows do not overlap, so each frame is scored once. The
  zero-padded tail of a recording's last window (at most one window per recording, see
  :mod:`instrument_classifier.data.prepare`) is scored too: its features are those of digital silence
  and its labels are 0, so it counts as "nothing plays", which is what the model should say there.

Both at the model's decision thresholds (``config.thresholds``, tuned on validation by training) or at
one fixed threshold (``--thresholds 0.5``); metrics as defined in :mod:`instrument_classifier.evaluation.metrics`
(macro averages over the classes present in the split, the others named in ``skipped_classes``).

A model whose config holds a recording context (``config.context``, tuned on validation by training; see
:mod:`instrument_classifier.context`) is also scored with it, as ``predict --context`` applies it: each
window blended with its neighbours in the recording (by ``recording_id`` and ``start_frame``), each frame
with its window's neighbourhood mean, at the context's thresholds (or the fixed one).

Features
--------
Dataset rows hold RAW features; each model is fed them normalised with **its own** feature extractor's
mean/std (the statistics it was trained with), never the dataset's. The model's feature settings
(feature type, coefficients, deltas, STFT grid), taxonomy and window length must match the dataset's,
or the evaluation stops with a message listing the differences. Models with different feature settings
can share a run on several prepared datasets of the same recordings (``--dataset A B``; the windows must be
the same): each model takes the first that matches it. With ``--data-dir`` the MusicNet folder
is prepared with the models' own settings (``build_dataset`` into a temporary folder, or ``--cache-dir``
to reuse it), so it always matches. All models of one run must share taxonomy and window length: a
comparison is only meaningful on the same windows and labels.

Output (written to a temporary folder next to ``--output``, then moved into place)::

    metrics.json       {model_name: {"window": {...}, "frame": {...}, "source", "thresholds",
                                     ["context": {"settings", "window", "frame"}]},
                        "split", "dataset", "num_windows", "num_frames", "labels", "thresholds"}
    metrics.md         summary table and per-class tables (window and frame level) per model
    heatmap.png        macro ROC-AUC, 1 - Hamming, precision, recall, F1 for every model (the study's Figure 1)
    roc_<model>.png    per-class ROC curves, window and frame level (Figure 2)

Model names are the folder names (or Hub ids); duplicates get their parent folder, then a number.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..atomic_write import replace_dir
from ..context import RecordingContext, blend, neighbour_means
from ..ensemble import blend_probabilities
from .metrics import HUNG_YANG_LABELS, compute_instrument_metrics, mean_f1

__all__ = [
    "EvaluationError",
    "evaluate_models",
    "load_model_for_evaluation",
    "format_summary",
    "format_markdown",
    "plot_heatmap",
    "plot_roc_curves",
    "add_evaluate_arguments",
    "run_evaluate",
]

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


class EvaluationError(Exception):
    """Bad input to ``evaluate`` (missing model, incompatible dataset, ...); the message names the path."""


# -- models --------------------------------------------------------------------------------------------

def load_model_for_evaluation(name_or_path: str, device: str = "cpu"):
    """``(model, feature_extractor, source)``: :func:`instrument_classifier.inference.load_model`'s model (the one
    loader of predict, the Space and evaluate: safetensors only, no code from the folder, settings checked) and the
    source it came from (the resolved folder, or the Hub id).

    An ensemble folder (``ensemble_config.json``) gives ``(InstrumentEnsemble, None, source)``: its members are
    scored each on the data matching its own features, and their probabilities blended with its weights.

    Raises
    ------
    EvaluationError
        The model cannot be loaded: the folder is missing, has no ``config.json`` / ``model.safetensors`` /
        feature extractor, is not an instrument-classifier model or asks to run its own code; the message names
        the path.
    """
    from ..inference import load_model

    path = Path(name_or_path).expanduser()
    try:
        model, extractor = load_model(str(path) if path.exists() else str(name_or_path), device=device)
    except (OSError, ValueError, KeyError) as exc:  # ConfigError, RemoteCodeError and DeviceError are ValueErrors
        where = str(path) if path.exists() else f"{name_or_path} (not a local folder; tried the Hugging Face Hub)"
        message = str(exc)
        raise EvaluationError(message if str(path) in message or str(name_or_path) in message
                              else f"{where}: cannot load the model: {message}") from None
    return model, extractor, str(path.resolve()) if path.exists() else str(name_or_path)


def _model_names(sources: Sequence[str], given: Sequence[str]) -> List[str]:
    """Folder name or Hub id per model; duplicates get their parent folder, then ``-2``, ``-3``..."""
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
        while candidate in out or candidate in RESERVED_KEYS:
            candidate, k = f"{name}-{k}", k + 1
        out.append(candidate)
    return out


def _model_labels(model) -> List[str]:
    return [model.config.id2label[i] for i in range(model.config.num_labels)]


def _mismatches(model, extractor, info: dict) -> List[str]:
    """Differences between a model's settings and a prepared dataset's, as ``"what: model X, dataset Y"``."""
    from ..modeling.feature_extraction_instrument import feature_settings

    diffs = []
    config = model.config
    if config.taxonomy != info["taxonomy"]:
        diffs.append(f"taxonomy: model {config.taxonomy}, dataset {info['taxonomy']}")
    elif _model_labels(model) != list(info["labels"]):
        diffs.append(f"labels: model {_model_labels(model)}, dataset {info['labels']}")
    if int(config.window_frames) != int(info["window_frames"]):
        diffs.append(f"window_frames: model {config.window_frames}, dataset {info['window_frames']}")
    ours, theirs = feature_settings(extractor), feature_settings(info["feature_extractor"])
    for key in ours:
        if ours[key] != theirs[key]:
            diffs.append(f"{key}: model {ours[key]}, dataset {theirs[key]}")
    if int(config.feature_size) != int(extractor.feature_size):
        diffs.append(f"feature_size: model config {config.feature_size}, its feature extractor {extractor.feature_size}")
    return diffs


# -- data ----------------------------------------------------------------------------------------------

def _load_split(path: Path, split: str):
    from ..data.prepare import load_prepared

    try:
        dataset, info, _ = load_prepared(path)
    except FileNotFoundError as exc:
        raise EvaluationError(str(exc)) from None
    if split not in dataset:
        raise EvaluationError(f"{path}: no {split!r} split (splits: {', '.join(dataset)})")
    if dataset[split].num_rows == 0:
        raise EvaluationError(f"{path}: the {split!r} split is empty")
    return dataset[split], info


def _prepare_groups(models: list, data_dir: Path, split: str, work: Path, progress: bool) -> Dict[str, tuple]:
    """Prepare ``data_dir`` once per distinct feature setting; ``{setting key: (split dataset, info, path)}``."""
    import hashlib

    from ..data.prepare import build_dataset

    groups: Dict[str, tuple] = {}
    for entry in models:
        key = _group_key(entry)
        if key in groups:
            continue
        out = work / f"prepared-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
        config = entry["model"].config
        build_dataset(
            data_dir, out, taxonomy=config.taxonomy, window_frames=int(config.window_frames),
            hop_frames=max(1, int(config.window_frames) // 2), feature_extractor=entry["extractor"],
            cache_dir=work / "datasets-cache", progress=progress,
            # only the split scored: the models bring their normalisation, so no train recordings are needed
            splits=[split] if split in ("train", "validation", "test") else None,
        )
        groups[key] = (*_load_split(out, split), out)
    return groups


def _group_key(entry: dict) -> str:
    from ..modeling.feature_extraction_instrument import feature_settings

    config = entry["model"].config
    return json.dumps({"taxonomy": config.taxonomy, "window_frames": int(config.window_frames),
                       **feature_settings(entry["extractor"])}, sort_keys=True)


def _matching_dataset(entry: dict, prepared: Sequence[tuple]) -> tuple:
    """The first ``(split dataset, info, path)`` whose settings match the model's; else the mismatch of each,
    raised by the caller's check (one dataset) or here (several)."""
    diffs = {}
    for candidate in prepared:
        diffs[candidate[2]] = _mismatches(entry["model"], entry["extractor"], candidate[1])
        if not diffs[candidate[2]]:
            return candidate
    if len(prepared) == 1:
        return prepared[0]
    raise EvaluationError(
        f"model {entry['source']} matches none of the datasets: "
        + " | ".join(f"{path}: {'; '.join(d)}" for path, d in diffs.items())
        + ". Prepare the data with the model's feature extractor settings, or pass --data-dir")


def _require_same_windows(groups) -> None:
    """Models compared in one run are scored on the same windows: the matched datasets must hold them."""
    groups = list(groups)
    first_ds, _, first_path = groups[0]
    where = first_ds.select_columns(["recording_id", "start_frame"]).to_dict()
    for split_ds, _, path in groups[1:]:
        if split_ds.select_columns(["recording_id", "start_frame"]).to_dict() != where:
            raise EvaluationError(f"{path} and {first_path} hold different windows (recordings or positions); "
                                  "prepare both from the same recordings with the same window and hop")


def _references(split_ds, batch_size: int = 512):
    """Window labels ``(N, L)`` and frame labels flattened to ``(N * T, L)``, as uint8."""
    windows, frames = [], []
    for batch in split_ds.with_format("numpy", columns=["labels", "frame_labels"]).iter(batch_size=batch_size):
        windows.append((batch["labels"] > 0.5).astype(np.uint8))
        frames.append(batch["frame_labels"].reshape(-1, batch["frame_labels"].shape[-1]).astype(np.uint8))
    return np.concatenate(windows), np.concatenate(frames)


def _predict(model, extractor, split_ds, batch_size: int, device: str, progress: bool, desc: str):
    """Window probabilities ``(N, L)`` and frame probabilities ``(N * T, L)`` of one model (float32)."""
    import torch
    from tqdm.auto import tqdm

    normalize = bool(getattr(extractor, "do_normalize", True)) and getattr(extractor, "mean", None) is not None
    windows, frames = [], []
    rows = split_ds.with_format("numpy", columns=["input_features"])
    total = math.ceil(split_ds.num_rows / batch_size)
    with torch.inference_mode():
        for batch in tqdm(rows.iter(batch_size=batch_size), total=total, desc=desc, unit="batch",
                          disable=not progress, leave=False):
            features = batch["input_features"]
            if normalize:  # the model's own training statistics, not the dataset's
                features = extractor.normalize(features)
            out = model(input_features=torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(device))
            windows.append(torch.sigmoid(out.logits.float()).cpu().numpy())
            frame_probs = torch.sigmoid(out.frame_logits.float()).cpu().numpy()
            frames.append(frame_probs.reshape(-1, frame_probs.shape[-1]))
    return np.concatenate(windows), np.concatenate(frames)


# -- the evaluation ------------------------------------------------------------------------------------

def evaluate_models(
    models: Union[str, Sequence[str]],
    dataset: Optional[Union[PathLike, Sequence[PathLike]]] = None,
    data_dir: Optional[PathLike] = None,
    split: str = "test",
    output_dir: Optional[PathLike] = None,
    batch_size: int = 32,
    thresholds: Union[str, float] = "config",
    device: str = "cpu",
    cache_dir: Optional[PathLike] = None,
    progress: bool = True,
) -> Dict:
    """Evaluate saved models on one split; optionally write metrics.json, metrics.md and figures.

    Parameters
    ----------
    models : str or list of str
        Model folders (``save_pretrained`` output with ``model.safetensors`` and the feature extractor)
        or Hub ids.
    dataset : path or list of paths, optional
        A prepared dataset (``instrument-classifier prepare`` output), or several prepared from the same
        recordings with different feature settings: each model is scored on the first one whose settings
        match its own. Exactly one of ``dataset`` and ``data_dir``.
    data_dir : path, optional
        A MusicNet-layout folder, prepared here with the models' feature settings (see module doc).
    split : str
        ``"test"`` (default), ``"validation"`` or ``"train"``.
    output_dir : path, optional
        Where to write the report (replaced atomically; a non-empty folder that is not an earlier
        ``evaluate`` output is refused). ``None`` writes nothing.
    batch_size : int
        Windows per forward pass.
    thresholds : "config" or float
        The models' tuned ``config.thresholds``, or one threshold for every class.
    device : str
        Torch device.
    cache_dir : path, optional
        With ``data_dir``: keep the prepared dataset here and reuse it on the next run (default: a
        temporary folder, removed afterwards).
    progress : bool
        Progress bars.

    Returns
    -------
    dict
        The content of metrics.json (see module doc).

    Raises
    ------
    EvaluationError
        Bad input; nothing is written then.
    """
    models = [models] if isinstance(models, (str, os.PathLike)) else [str(m) for m in models]
    if not models:
        raise EvaluationError("no model given")
    if (dataset is None) == (data_dir is None):
        raise EvaluationError("give exactly one of a prepared dataset (--dataset) or a MusicNet folder (--data-dir)")
    if batch_size < 1:
        raise EvaluationError(f"batch size must be >= 1, got {batch_size}")
    fixed_threshold = _parse_thresholds(thresholds)
    output = None if output_dir is None else _check_output(Path(output_dir))

    if dataset is not None:  # cheap checks of the data first, before loading any model
        paths = [dataset] if isinstance(dataset, (str, os.PathLike)) else list(dataset)
        if not paths:
            raise EvaluationError("no dataset given")
        prepared = [(*_load_split(p, split), p) for p in (Path(d).expanduser().resolve() for d in paths)]
        dataset_path = prepared[0][2]
    else:
        dataset_path = Path(data_dir).expanduser().resolve()
        if not dataset_path.is_dir():
            raise EvaluationError(f"{dataset_path}: data folder not found")

    entries = []
    for arg in models:
        model, extractor, source = load_model_for_evaluation(str(arg), device=device)
        entry = {"arg": str(arg), "model": model, "extractor": extractor, "source": source}
        # what is run on the data: the model itself, or an ensemble's members (weighted)
        entry["parts"] = ([(entry, 1.0)] if extractor is not None else
                          [({"model": m, "extractor": fe, "source": f"{source} member {name}"}, w)
                           for (m, fe), name, w in zip(model.members, model.config.members, model.config.weights)])
        entries.append(entry)
    for entry, name in zip(entries, _model_names([e["source"] for e in entries], [e["arg"] for e in entries])):
        entry["name"] = name
    first = entries[0]["model"].config
    for entry in entries[1:]:
        config = entry["model"].config
        if (config.taxonomy, int(config.window_frames)) != (first.taxonomy, int(first.window_frames)):
            raise EvaluationError(
                f"{entry['source']}: taxonomy {config.taxonomy} / window of {config.window_frames} frames differs "
                f"from {entries[0]['source']} ({first.taxonomy} / {first.window_frames}); models compared in one "
                "run must be scored on the same windows and labels: evaluate them in separate runs"
            )

    with tempfile.TemporaryDirectory(prefix="instrument-evaluate-") as scratch:
        parts = [part for entry in entries for part, _ in entry["parts"]]
        if dataset is not None:
            data = {_group_key(p): _matching_dataset(p, prepared) for p in parts}
            _require_same_windows({id(d[0]): d for d in data.values()}.values())
        else:
            work = Path(scratch) if cache_dir is None else Path(cache_dir).expanduser().resolve()
            data = _prepare_groups(parts, dataset_path, split, work, progress)
        for part in parts:
            split_ds, info, path = data[_group_key(part)]
            diffs = _mismatches(part["model"], part["extractor"], info)
            if diffs:
                raise EvaluationError(
                    f"model {part['source']} does not match dataset {path}: " + "; ".join(diffs)
                    + ". Prepare the data with the model's feature extractor settings, or pass --data-dir to "
                    "have evaluate prepare it"
                )

        results: Dict = {}
        curves: Dict[str, dict] = {}
        references = {}
        for entry in entries:
            runs = []
            for part, _ in entry["parts"]:  # one model, or an ensemble's members
                split_ds, info, path = data[_group_key(part)]
                if id(split_ds) not in references:
                    references[id(split_ds)] = _references(split_ds)
                window_true, frame_true = references[id(split_ds)]
                runs.append(_predict(part["model"], part["extractor"], split_ds, batch_size, device, progress,
                                     desc=f"evaluate {entry['name']}"))
            if len(runs) == 1:
                (window_prob, frame_prob), = runs
            else:  # blended as inference blends them
                weights = [w for _, w in entry["parts"]]
                window_prob = blend_probabilities([w for w, _ in runs], weights)
                frame_prob = blend_probabilities([f for _, f in runs], weights)
            labels = _model_labels(entry["model"])
            cut = list(entry["model"].config.thresholds) if fixed_threshold is None else [fixed_threshold] * len(labels)
            results[entry["name"]] = {
                "window": compute_instrument_metrics(window_true, window_prob, cut, labels),
                "frame": compute_instrument_metrics(frame_true, frame_prob, cut, labels),
                "source": entry["source"],
                "thresholds": [float(t) for t in cut],
            }
            curves[entry["name"]] = _roc_points(window_true, window_prob, frame_true, frame_prob, results[entry["name"]])
            context = RecordingContext.from_config(entry["model"].config)
            if context is not None:
                results[entry["name"]]["context"] = _with_context(
                    context, split_ds, int(entry["model"].config.window_frames), window_true, window_prob,
                    frame_true, frame_prob, None if fixed_threshold is None else cut, labels)

    results.update({
        "split": split,
        "dataset": str(dataset_path) if dataset is None or len(prepared) == 1 else [str(p) for *_, p in prepared],
        "num_windows": int(len(window_true)),
        "num_frames": int(len(frame_true)),
        "labels": _model_labels(entries[0]["model"]),
        "thresholds": "config" if fixed_threshold is None else fixed_threshold,
    })
    if output is not None:
        _write_report(results, curves, output)
    return results


def _with_context(context: RecordingContext, split_ds, window_frames: int, window_true, window_prob, frame_true,
                  frame_prob, fixed: Optional[list], labels: List[str]) -> Dict:
    """Window and frame metrics with the recording context applied (its thresholds unless ``fixed``)."""
    rows = split_ds.select_columns(["recording_id", "start_frame"])
    means = neighbour_means(window_prob, rows["recording_id"], rows["start_frame"], context.radius_windows,
                            window_frames)
    cut = context.thresholds if fixed is None else fixed
    per_window = frame_prob.reshape(len(window_prob), -1, frame_prob.shape[-1])
    frames = blend(per_window, means[:, None, :], context.weight).reshape(frame_prob.shape)
    return {
        "settings": context.to_dict(),
        "window": compute_instrument_metrics(window_true, blend(window_prob, means, context.weight), cut, labels),
        "frame": compute_instrument_metrics(frame_true, frames, cut, labels),
    }


def _parse_thresholds(value) -> Optional[float]:
    if isinstance(value, str) and value == "config":
        return None
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise EvaluationError(f"thresholds must be 'config' or a number in (0, 1), got {value!r}") from None
    if not 0.0 < t < 1.0:
        raise EvaluationError(f"thresholds must be 'config' or a number in (0, 1), got {value!r}")
    return t


def model_names(results: Dict) -> List[str]:
    """The model entries of a metrics.json dict, in evaluation order."""
    return [k for k in results if k not in RESERVED_KEYS]


# -- output --------------------------------------------------------------------------------------------

def _check_output(output: Path, report_files: Sequence[str] = OUTPUT_FILES) -> Path:
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


def _write_report(results: Dict, curves: Dict[str, dict], output: Path) -> None:
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


def _fmt(value, digits: int = 3) -> str:
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
                f"{name:<{width}}  {level:<10} {_fmt(m['roc_auc_macro']):>8} {_fmt(m['roc_auc_micro']):>8} "
                f"{_fmt(m['hamming_loss']):>8} {_fmt(m['precision_macro']):>6} {_fmt(m['recall_macro']):>6} "
                f"{_fmt(m['f1_macro']):>6} {_fmt(m['f1_micro']):>7}  {len(m['skipped_classes'])}"
            )
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


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
        "| model | level | ROC-AUC macro | ROC-AUC micro | 1 − Hamming | precision macro | recall macro | "
        "F1 macro | F1 micro | skipped classes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        for level, m in _levels(results[name]):
            lines.append(
                f"| {_md_escape(name)} | {level} | {_fmt(m['roc_auc_macro'])} | {_fmt(m['roc_auc_micro'])} | "
                f"{_fmt(1 - m['hamming_loss'])} | {_fmt(m['precision_macro'])} | {_fmt(m['recall_macro'])} | "
                f"{_fmt(m['f1_macro'])} | {_fmt(m['f1_micro'])} | {_md_escape(', '.join(m['skipped_classes'])) or '–'} |"
            )
    lines += ["", "![metrics heatmap](heatmap.png)", ""]
    for name in names:
        entry = results[name]
        lines += [f"## {_md_escape(name)}", "", f"Source: `{entry['source']}`", ""]
        for level in ("window", "frame"):
            m = entry[level]
            lines += [
                f"### {level.capitalize()} level",
                "",
                "| class | support | ROC-AUC | precision | recall | F1 | threshold |",
                "|---|---|---|---|---|---|---|",
            ]
            for label, threshold in zip(m["per_class"], entry["thresholds"]):
                c = m["per_class"][label]
                skipped = " (skipped)" if label in m["skipped_classes"] else ""
                lines.append(f"| {_md_escape(label)}{skipped} | {c['support']} | {_fmt(c['roc_auc'])} | "
                             f"{_fmt(c['precision'])} | {_fmt(c['recall'])} | {_fmt(c['f1'])} | {threshold:.3f} |")
            lines.append(f"| **macro** | | {_fmt(m['roc_auc_macro'])} | {_fmt(m['precision_macro'])} | "
                         f"{_fmt(m['recall_macro'])} | {_fmt(m['f1_macro'])} | |")
            lines.append(f"| **micro** | | {_fmt(m['roc_auc_micro'])} | {_fmt(m['precision_micro'])} | "
                         f"{_fmt(m['recall_micro'])} | {_fmt(m['f1_micro'])} | |")
            lines.append("")
            lines.append(f"Hamming loss {_fmt(m['hamming_loss'], 4)}. Skipped (not both present and absent in "
                         f"this split): {_md_escape(', '.join(m['skipped_classes'])) or 'none'}.")
            if set(HUNG_YANG_LABELS) <= set(m["per_class"]):
                lines.append(f"Mean F1 over {', '.join(HUNG_YANG_LABELS)} (Hung & Yang, classes present): "
                             f"{_fmt(mean_f1(m))}.")
            lines.append("")
        if figures and name in figures:
            lines += [f"![ROC curves of {_md_escape(name)}]({figures[name]})", ""]
    return "\n".join(lines)


# -- figures -------------------------------------------------------------------------------------------

def _roc_points(window_true, window_prob, frame_true, frame_prob, metrics: Dict) -> dict:
    """Per level, per class present: ``(fpr, tpr, auc)`` for the ROC figure (AUC from ``metrics``)."""
    from sklearn.metrics import roc_curve

    out = {}
    for level, y, s in (("window", window_true, window_prob), ("frame", frame_true, frame_prob)):
        out[level] = {}
        for i, (label, values) in enumerate(metrics[level]["per_class"].items()):
            if values["roc_auc"] is not None:  # the classes present
                fpr, tpr, _ = roc_curve(y[:, i], s[:, i])
                out[level][label] = (fpr, tpr, values["roc_auc"])
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def plot_heatmap(results: Dict, path: PathLike) -> np.ndarray:
    """The study's Figure 1: models (rows) x macro ROC-AUC, 1 − Hamming, precision, recall, F1 (columns).

    Two panels, window and frame level. Returns the window-level matrix (NaN where undefined).
    """
    plt = _pyplot()
    names = model_names(results)
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.2 + 0.55 * len(names)), squeeze=False, constrained_layout=True)
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
    plt.close(fig)
    return matrices["window"]


def plot_roc_curves(curves: dict, path: PathLike, title: str = "") -> None:
    """The study's Figure 2: per-class ROC curves of one model, window and frame level side by side."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), constrained_layout=True)
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
    plt.close(fig)


# -- CLI -----------------------------------------------------------------------------------------------

def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True, metavar="PATH_OR_ID",
                        help="model folder or Hub id (repeat to compare models)")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--dataset", nargs="+", metavar="PATH",
                      help="prepared dataset (`instrument-classifier prepare` output); several, prepared from the "
                           "same recordings with different features: each model is scored on the one matching it")
    data.add_argument("--data-dir", metavar="DIR", help="MusicNet-layout folder, prepared with the models' settings")
    data.add_argument("--clips", metavar="MANIFEST.csv",
                      help="labelled recordings (columns file, instruments, optional other_sounds): clip-level "
                           "metrics of what `predict` reports on each")
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    parser.add_argument("--output", required=True, metavar="DIR", help="report folder (replaced atomically)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="windows per forward pass")
    parser.add_argument("--thresholds", default="config", metavar="config|T",
                        help="'config': the models' tuned thresholds (default); or one threshold for every class")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="with --data-dir: keep the prepared dataset here and reuse it next time")
    parser.add_argument("--device", default="auto", metavar="auto|cuda|mps|cpu",
                        help="where the models run: auto (default: a CUDA GPU if there is one, else MPS, else the "
                             "CPU), cuda (or cuda:N), mps or cpu")
    parser.add_argument("--context", action="store_true",
                        help="with --clips: apply each model's recording context, as `predict --context` does")
    parser.add_argument("--skip-bad", action="store_true",
                        help="with --clips: skip bad manifest rows and unreadable audio (counted and listed)")
    parser.add_argument("--tune-thresholds", action="store_true",
                        help="with --clips: also tune clip thresholds on these clips (metrics.json: tuned_thresholds, "
                             "and what they reach on unseen clips by 2-fold cross-validation)")


def run_evaluate(args: argparse.Namespace) -> int:
    from ..audio import AudioError
    from ..data.musicnet import MusicNetError
    from ..data.taxonomy import UnknownInstrumentError
    from ..inference import DeviceError, resolve_device

    try:  # before anything is loaded: "cuda" on a machine without it is a usage error, not a traceback
        args.device = str(resolve_device(args.device))
    except DeviceError as exc:
        print(f"evaluate: error: --device: {exc}", file=sys.stderr)
        return 2
    if args.clips is not None:
        return _run_clip_evaluation(args)
    if args.context or args.skip_bad or args.tune_thresholds:
        print("evaluate: error: --context, --skip-bad and --tune-thresholds go with --clips (a prepared split is "
              "scored with and without the recording context already)", file=sys.stderr)
        return 2
    try:
        results = evaluate_models(
            args.model, dataset=args.dataset, data_dir=args.data_dir, split=args.split, output_dir=args.output,
            batch_size=args.batch_size, thresholds=args.thresholds, device=args.device, cache_dir=args.cache_dir,
        )
    except (EvaluationError, MusicNetError, AudioError, UnknownInstrumentError, FileExistsError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(results))
    print(f"wrote {Path(args.output).expanduser().resolve()}: metrics.json, metrics.md, heatmap.png, "
          f"{len(model_names(results))} ROC figure(s)")
    return 0


def _run_clip_evaluation(args: argparse.Namespace) -> int:
    from .clips import ManifestError, evaluate_clips, format_clip_summary

    try:
        results = evaluate_clips(args.model, args.clips, output_dir=args.output, thresholds=args.thresholds,
                                 context=args.context, skip_bad=args.skip_bad, batch_size=args.batch_size,
                                 device=args.device, tune=args.tune_thresholds)
    except (EvaluationError, ManifestError, FileExistsError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(format_clip_summary(results))
    for skipped in results["skipped_rows"]:
        print(f"skipped row {skipped['row']} ({skipped['file']}): {skipped['reason']}", file=sys.stderr)
    print(f"wrote {Path(args.output).expanduser().resolve()}: metrics.json, metrics.md, clips.csv")
    return 0
