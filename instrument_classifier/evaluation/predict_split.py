"""The one loop that scores a prepared dataset split with a model: ``evaluate`` and the recipes both use it.

Training scores its validation split through the ``Trainer`` (``trainer.predict``, gathered over processes) and
the linear probe scores stored backbone representations; neither runs a model over a prepared split itself.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModelForAudioClassification

from .. import modeling  # noqa: F401  (registers the model classes with the Auto* factories)
from ..data.prepare import load_prepared
from ..modeling.feature_extraction_instrument import InstrumentFeatureExtractor

__all__ = ["references", "predict_windows", "predict_split"]


def references(split_ds, batch_size: int = 512) -> Tuple[np.ndarray, np.ndarray]:
    """Window labels ``(N, L)`` and frame labels flattened to ``(N * T, L)``, as uint8."""
    windows, frames = [], []
    for batch in split_ds.with_format("numpy", columns=["labels", "frame_labels"]).iter(batch_size=batch_size):
        windows.append((batch["labels"] > 0.5).astype(np.uint8))
        frames.append(batch["frame_labels"].reshape(-1, batch["frame_labels"].shape[-1]).astype(np.uint8))
    return np.concatenate(windows), np.concatenate(frames)


def predict_windows(model, extractor, split_ds, batch_size: int = 64, device: str = "cpu", progress: bool = False,
                    desc: str = "", frames: bool = True) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Probabilities of one model on every window of a prepared split.

    Parameters
    ----------
    model
        An instrument-classifier model in eval mode (its output has ``logits`` and ``frame_logits``).
    extractor : InstrumentFeatureExtractor
        The model's own feature extractor: the rows hold raw features, normalised with its statistics.
    split_ds : datasets.Dataset
        One split of a prepared dataset (``input_features`` column).
    batch_size, device, progress, desc
        Windows per forward pass, torch device, progress bar and its label.
    frames : bool
        Also return the frame probabilities.

    Returns
    -------
    tuple of ndarray
        Window probabilities ``(N, L)`` and frame probabilities ``(N * T, L)`` (``None`` without ``frames``),
        float32.
    """
    normalize = bool(getattr(extractor, "do_normalize", True)) and getattr(extractor, "mean", None) is not None
    windows, frame_out = [], []
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
            if frames:
                frame_probs = torch.sigmoid(out.frame_logits.float()).cpu().numpy()
                frame_out.append(frame_probs.reshape(-1, frame_probs.shape[-1]))
    return np.concatenate(windows), np.concatenate(frame_out) if frames else None


def predict_split(model_dir: Path, dataset_path: Path, split: str, batch_size: int = 64):
    """``(y_true, probabilities)`` of a saved model on a prepared split, window level.

    Parameters
    ----------
    model_dir : Path
        A saved model folder (``save_pretrained`` output with its feature extractor).
    dataset_path : Path
        A prepared dataset (``instrument-classifier prepare`` output) matching the model's features.
    split : str
        ``"train"``, ``"validation"`` or ``"test"``.
    batch_size : int
        Windows per forward pass.

    Returns
    -------
    tuple of ndarray
        The windows' ``labels`` as stored ``(N, L)`` and the model's probabilities ``(N, L)``.
    """
    model = AutoModelForAudioClassification.from_pretrained(str(model_dir), trust_remote_code=False).eval()
    extractor = InstrumentFeatureExtractor.from_pretrained(str(model_dir))
    dataset, _, _ = load_prepared(dataset_path)
    probabilities, _ = predict_windows(model, extractor, dataset[split], batch_size, frames=False)
    labels = dataset[split].with_format("numpy", columns=["labels"])["labels"]
    return np.asarray(labels), probabilities
