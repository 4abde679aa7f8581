"""Which prepared data each model is scored on: a dataset split checked against the model's settings, or a
MusicNet folder prepared with them (``--data-dir``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, List, Sequence

from ..data.prepare import build_dataset, load_prepared
from ..modeling.feature_extraction_instrument import feature_settings
from .errors import EvaluationError


def model_labels(model) -> List[str]:
    return [model.config.id2label[i] for i in range(model.config.num_labels)]


def mismatches(model, extractor, info: dict) -> List[str]:
    """Differences between a model's settings and a prepared dataset's, as ``"what: model X, dataset Y"``."""
    diffs = []
    config = model.config
    if config.taxonomy != info["taxonomy"]:
        diffs.append(f"taxonomy: model {config.taxonomy}, dataset {info['taxonomy']}")
    elif model_labels(model) != list(info["labels"]):
        diffs.append(f"labels: model {model_labels(model)}, dataset {info['labels']}")
    if int(config.window_frames) != int(info["window_frames"]):
        diffs.append(f"window_frames: model {config.window_frames}, dataset {info['window_frames']}")
    ours, theirs = feature_settings(extractor), feature_settings(info["feature_extractor"])
    for key in ours:
        if ours[key] != theirs[key]:
            diffs.append(f"{key}: model {ours[key]}, dataset {theirs[key]}")
    if int(config.feature_size) != int(extractor.feature_size):
        diffs.append(f"feature_size: model config {config.feature_size}, "
                     f"its feature extractor {extractor.feature_size}")
    return diffs


def load_split(path: Path, split: str):
    try:
        dataset, info, _ = load_prepared(path)
    except FileNotFoundError as exc:
        raise EvaluationError(str(exc)) from None
    if split not in dataset:
        raise EvaluationError(f"{path}: no {split!r} split (splits: {', '.join(dataset)})")
    if dataset[split].num_rows == 0:
        raise EvaluationError(f"{path}: the {split!r} split is empty")
    return dataset[split], info


def prepare_groups(models: list, data_dir: Path, split: str, work: Path, progress: bool) -> Dict[str, tuple]:
    """Prepare ``data_dir`` once per distinct feature setting; ``{setting key: (split dataset, info, path)}``."""
    groups: Dict[str, tuple] = {}
    for entry in models:
        key = group_key(entry)
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
        groups[key] = (*load_split(out, split), out)
    return groups


def group_key(entry: dict) -> str:
    config = entry["model"].config
    return json.dumps({"taxonomy": config.taxonomy, "window_frames": int(config.window_frames),
                       **feature_settings(entry["extractor"])}, sort_keys=True)


def matching_dataset(entry: dict, prepared: Sequence[tuple]) -> tuple:
    """The first ``(split dataset, info, path)`` whose settings match the model's; else the mismatch of each,
    raised by the caller's check (one dataset) or here (several)."""
    diffs = {}
    for candidate in prepared:
        diffs[candidate[2]] = mismatches(entry["model"], entry["extractor"], candidate[1])
        if not diffs[candidate[2]]:
            return candidate
    if len(prepared) == 1:
        return prepared[0]
    raise EvaluationError(
        f"model {entry['source']} matches none of the datasets: "
        + " | ".join(f"{path}: {'; '.join(d)}" for path, d in diffs.items())
        + ". Prepare the data with the model's feature extractor settings, or pass --data-dir")


def require_same_windows(groups) -> None:
    """Models compared in one run are scored on the same windows: the matched datasets must hold them."""
    groups = list(groups)

    def where(split_ds, info) -> tuple:  # recordings and window starts in seconds: frame grids may differ
        rows = split_ds.select_columns(["recording_id", "start_frame"]).to_dict()
        rate = float(info["frame_rate"])
        return rows["recording_id"], [round(frame / rate, 6) for frame in rows["start_frame"]]

    first_ds, first_info, first_path = groups[0]
    first = where(first_ds, first_info)
    for split_ds, info, path in groups[1:]:
        if where(split_ds, info) != first:
            raise EvaluationError(f"{path} and {first_path} hold different windows (recordings or positions); "
                                  "prepare both from the same recordings with the same window and hop")
