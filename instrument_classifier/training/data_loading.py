"""The windows ``train.py`` trains on: a prepared folder, a Hub dataset, or MusicNet folders prepared on the fly.

All three give the same triple as :func:`instrument_classifier.data.prepare.load_prepared`:
``(DatasetDict with train/validation/test, prepare_info dict, feature extractor with the train mean/std)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional, Tuple

from datasets import load_dataset
from huggingface_hub import snapshot_download

from ..data.prepare import EXTRACTOR_DIR, INFO_FILE, build_dataset, load_prepared
from ..modeling.feature_extraction_instrument import InstrumentFeatureExtractor, default_feature_settings
from .errors import TrainingSetupError

__all__ = ["load_training_data", "default_prepared_dir", "select_samples"]

REQUIRED_COLUMNS = ("input_features", "labels", "frame_labels")


def default_prepared_dir(data_args) -> Path:
    """A cache folder per set of inputs and preparation settings (``build_dataset`` refreshes it when files change)."""
    key = {
        "data_dir": sorted(str(Path(d).resolve()) for d in data_args.data_dir),
        "eval_data_dir": sorted(str(Path(d).resolve()) for d in data_args.eval_data_dir or []),
        "taxonomy": data_args.taxonomy or "seed12",
        "window_frames": data_args.window_frames or 256,
        "hop_frames": data_args.hop_frames,
        "validation_fraction": data_args.validation_fraction,
        "split_seed": data_args.split_seed,
        "features": [data_args.feature_type, data_args.n_coefficients, data_args.include_deltas,
                     data_args.delta_order],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "instrument_classifier" / "prepared"
    return base / digest


def _prepare_from_music_dirs(data_args):
    window = data_args.window_frames or 256
    settings = default_feature_settings(data_args.feature_type, data_args.n_coefficients)
    extractor = InstrumentFeatureExtractor(**settings, include_deltas=data_args.include_deltas,
                                           delta_order=data_args.delta_order)
    output = Path(data_args.prepared_dir) if data_args.prepared_dir else default_prepared_dir(data_args)
    build_dataset(
        data_args.data_dir, output, taxonomy=data_args.taxonomy or "seed12", window_frames=window,
        hop_frames=data_args.hop_frames or max(1, window // 2), validation_fraction=data_args.validation_fraction,
        num_proc=data_args.preprocessing_num_workers, seed=data_args.split_seed,
        eval_data_dirs=data_args.eval_data_dir, feature_extractor=extractor,
    )
    dataset, info, extractor = load_prepared(output)
    return dataset, {**info, "local_path": str(output.resolve())}, extractor


def _load_from_hub(repo_id: str, revision: Optional[str], cache_dir: Optional[str]):
    folder = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision, cache_dir=cache_dir,
                                    allow_patterns=[INFO_FILE, f"{EXTRACTOR_DIR}/*"]))
    if not (folder / INFO_FILE).is_file():
        raise FileNotFoundError(
            f"Hub dataset {repo_id} has no {INFO_FILE}: upload prepared datasets with `instrument-classifier prepare "
            "--push-to-hub`"
        )
    info = json.loads((folder / INFO_FILE).read_text())
    extractor = InstrumentFeatureExtractor.from_pretrained(str(folder / EXTRACTOR_DIR))
    return load_dataset(repo_id, revision=revision, cache_dir=cache_dir), info, extractor


def load_training_data(data_args, cache_dir: Optional[str] = None) -> Tuple[object, dict, object]:
    """Load or build the dataset named by ``data_args`` and check it fits the requested settings.

    Raises
    ------
    TrainingSetupError
        Neither or both of ``dataset_path`` / ``data_dir``; a taxonomy or window length that contradicts the
        prepared dataset; missing columns or splits.
    FileNotFoundError
        ``dataset_path`` is neither a folder nor a Hub id.
    """
    if bool(data_args.dataset_path) == bool(data_args.data_dir):
        raise TrainingSetupError("give exactly one of --dataset_path (prepared dataset or Hub id) and "
                                 "--data_dir (MusicNet folder)")
    if data_args.data_dir:
        dataset, info, extractor = _prepare_from_music_dirs(data_args)
        source = ", ".join(data_args.data_dir)
    else:
        path = data_args.dataset_path
        if Path(path).is_dir():
            dataset, info, extractor = load_prepared(path)
            info = {**info, "local_path": str(Path(path).resolve())}
        elif Path(path).exists() or path.count("/") != 1 or path.startswith((".", "/")):
            raise FileNotFoundError(f"{path}: not a prepared dataset folder nor a Hub dataset id (owner/name)")
        else:
            dataset, info, extractor = _load_from_hub(path, data_args.dataset_revision, cache_dir)
        source = path
        if data_args.taxonomy and data_args.taxonomy != info["taxonomy"]:
            raise TrainingSetupError(f"{source}: prepared with taxonomy {info['taxonomy']!r}, "
                                     f"not {data_args.taxonomy!r}; prepare it again with --taxonomy or drop the flag")
        if data_args.window_frames and data_args.window_frames != info["window_frames"]:
            raise TrainingSetupError(f"{source}: prepared with windows of {info['window_frames']} frames, not "
                             f"{data_args.window_frames}; prepare it again or drop --window_frames")
    for split in ("train", "validation"):
        if split not in dataset:
            raise TrainingSetupError(f"{source}: no {split!r} split (found {sorted(dataset)})")
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset["train"].column_names]
    if missing:
        raise TrainingSetupError(f"{source}: train split lacks columns {missing}; "
                                 "is it a prepared instrument dataset?")
    if dataset["train"].num_rows == 0:
        raise TrainingSetupError(f"{source}: the train split is empty")
    if extractor.mean is None:
        raise TrainingSetupError(f"{source}: its feature extractor has no train normalisation (mean/std)")
    info = {**info, "source": source}
    return dataset, info, extractor


def select_samples(dataset, max_samples: Optional[int]):
    """The first ``max_samples`` rows (all when ``None``), as the HF examples' ``--max_*_samples`` do."""
    if max_samples is None or max_samples >= dataset.num_rows:
        return dataset
    if max_samples < 1:
        raise TrainingSetupError(f"--max_*_samples must be positive, got {max_samples}")
    return dataset.select(range(max_samples))
