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

import os
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..context import RecordingContext, blend, neighbour_means
from ..ensemble import blend_probabilities, frames_on_grid
from ..inference import load_model
from .datasets import (
    group_key,
    load_split,
    matching_dataset,
    mismatches,
    model_labels,
    prepare_groups,
    require_same_windows,
)
from .errors import EvaluationError
from .metrics import compute_instrument_metrics
from .predict_split import predict_windows, references
from .report import (
    PathLike,
    check_output,
    parse_thresholds,
    roc_points,
    unique_model_names,
    write_report,
)

# this module's public names before the report moved to report.py; ``from ...evaluate_models import`` keeps working
from .report import format_markdown, format_summary, plot_heatmap, plot_roc_curves  # noqa: E402  isort: skip

__all__ = [
    "EvaluationError",
    "evaluate_models",
    "load_model_for_evaluation",
    "format_summary",
    "format_markdown",
    "plot_heatmap",
    "plot_roc_curves",
    "parse_thresholds",
]


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
    path = Path(name_or_path).expanduser()
    try:
        model, extractor = load_model(str(path) if path.exists() else str(name_or_path), device=device)
    except (OSError, ValueError, KeyError) as exc:  # ConfigError, RemoteCodeError and DeviceError are ValueErrors
        where = str(path) if path.exists() else f"{name_or_path} (not a local folder; tried the Hugging Face Hub)"
        message = str(exc)
        raise EvaluationError(message if str(path) in message or str(name_or_path) in message
                              else f"{where}: cannot load the model: {message}") from None
    return model, extractor, str(path.resolve()) if path.exists() else str(name_or_path)


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
    fixed_threshold = parse_thresholds(thresholds)
    output = None if output_dir is None else check_output(Path(output_dir))

    if dataset is not None:  # cheap checks of the data first, before loading any model
        paths = [dataset] if isinstance(dataset, (str, os.PathLike)) else list(dataset)
        if not paths:
            raise EvaluationError("no dataset given")
        prepared = [(*load_split(p, split), p) for p in (Path(d).expanduser().resolve() for d in paths)]
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
    for entry, name in zip(entries, unique_model_names([e["source"] for e in entries], [e["arg"] for e in entries])):
        entry["name"] = name
    first = entries[0]["model"].config
    for entry in entries[1:]:
        config = entry["model"].config
        if (config.taxonomy, _window_seconds(config)) != (first.taxonomy, _window_seconds(first)):
            raise EvaluationError(
                f"{entry['source']}: taxonomy {config.taxonomy} / window of {_window_seconds(config):g} s differs "
                f"from {entries[0]['source']} ({first.taxonomy} / {_window_seconds(first):g} s); models compared in "
                "one run must be scored on the same windows and labels: evaluate them in separate runs"
            )

    with tempfile.TemporaryDirectory(prefix="instrument-evaluate-") as scratch:
        parts = [part for entry in entries for part, _ in entry["parts"]]
        if dataset is not None:
            data = {group_key(p): matching_dataset(p, prepared) for p in parts}
            require_same_windows({id(d[0]): d for d in data.values()}.values())
        else:
            work = Path(scratch) if cache_dir is None else Path(cache_dir).expanduser().resolve()
            data = prepare_groups(parts, dataset_path, split, work, progress)
        for part in parts:
            split_ds, info, path = data[group_key(part)]
            diffs = mismatches(part["model"], part["extractor"], info)
            if diffs:
                raise EvaluationError(
                    f"model {part['source']} does not match dataset {path}: " + "; ".join(diffs)
                    + ". Prepare the data with the model's feature extractor settings, or pass --data-dir to "
                    "have evaluate prepare it"
                )

        results: Dict = {}
        curves: Dict[str, dict] = {}
        truths = {}  # the labels of each split dataset, read once
        for entry in entries:
            runs = []
            for part, _ in entry["parts"]:  # one model, or an ensemble's members
                split_ds, info, path = data[group_key(part)]
                if id(split_ds) not in truths:
                    truths[id(split_ds)] = references(split_ds)
                window_true, frame_true = truths[id(split_ds)]
                runs.append(predict_windows(part["model"], part["extractor"], split_ds, batch_size, device, progress,
                                            desc=f"evaluate {entry['name']}"))
            if len(runs) == 1:
                (window_prob, frame_prob), = runs
            else:  # blended as inference blends them, frames on the first member's grid
                weights = [w for _, w in entry["parts"]]
                grid = entry["parts"][0][0]["model"].config
                window_prob = blend_probabilities([w for w, _ in runs], weights)
                frame_prob = blend_probabilities(
                    [_frames_on_window_grid(f, part["model"].config, grid, len(window_prob))
                     for (_, f), (part, _) in zip(runs, entry["parts"])], weights)
                split_ds = data[group_key(entry["parts"][0][0])][0]  # the grid's windows, labels and frames
                window_true, frame_true = truths[id(split_ds)]
            labels = model_labels(entry["model"])
            cut = (list(entry["model"].config.thresholds) if fixed_threshold is None
                   else [fixed_threshold] * len(labels))
            results[entry["name"]] = {
                "window": compute_instrument_metrics(window_true, window_prob, cut, labels),
                "frame": compute_instrument_metrics(frame_true, frame_prob, cut, labels),
                "source": entry["source"],
                "thresholds": [float(t) for t in cut],
            }
            curves[entry["name"]] = roc_points(window_true, window_prob, frame_true, frame_prob,
                                               results[entry["name"]])
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
        "labels": model_labels(entries[0]["model"]),
        "thresholds": "config" if fixed_threshold is None else fixed_threshold,
    })
    if output is not None:
        write_report(results, curves, output)
    return results


def _window_seconds(config) -> float:
    """The length of a model's (or ensemble's) window in seconds: models whose windows hold the same samples are
    scored on the same windows, whatever their frame hops."""
    return round(int(config.window_frames) * int(config.hop_length) / float(config.sampling_rate), 6)


def _frames_on_window_grid(frame_prob: np.ndarray, config, grid, num_windows: int) -> np.ndarray:
    """A member's frame probabilities of ``num_windows`` windows (``config.window_frames`` frames each), read at
    the frames of the ensemble's grid (``grid.window_frames`` frames per window, hop ``grid.hop_length``), as
    inference reads them (:func:`instrument_classifier.ensemble.frames_on_grid`)."""
    per_window = frame_prob.reshape(num_windows, int(config.window_frames), -1)
    picked = [frames_on_grid(w, int(config.hop_length), int(grid.hop_length), int(grid.window_frames),
                             int(config.sampling_rate), int(grid.sampling_rate)) for w in per_window]
    return np.concatenate(picked) if picked else frame_prob


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
