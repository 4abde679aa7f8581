"""Batches of prepared windows for the Trainer.

Prepared datasets hold RAW features (see ``instrument_classifier.data.prepare``); the normalisation fitted on
the training split lives in the dataset's feature extractor and is applied here, per batch, so the same rows
serve any model and the saved feature extractor is exactly what the model was trained with.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import torch

__all__ = ["InstrumentDataCollator"]


class InstrumentDataCollator:
    """Stack windows into tensors and standardise the features.

    Parameters
    ----------
    mean, std : sequence of float
        Per-coefficient statistics of the training features (``feature_extractor.mean`` / ``.std``).
    with_frame_labels : bool
        Also return ``frame_labels`` ``(batch, time, labels)`` as float, for the frame-level loss term.

    Returns (from ``__call__``)
    ---------------------------
    dict of torch.Tensor
        ``input_features`` float32 ``(batch, time, features)``, ``labels`` float32 ``(batch, labels)`` and, if
        requested and present, ``frame_labels`` float32 ``(batch, time, labels)``. Other columns (ids, start
        frames) are dropped: the model does not take them.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], with_frame_labels: bool = True):
        if mean is None or std is None:
            raise ValueError("the feature extractor has no normalisation statistics (mean/std); "
                             "prepare the dataset again")
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise ValueError(f"mean and std must be 1-D of equal length, got {self.mean.shape} and {self.std.shape}")
        self.with_frame_labels = with_frame_labels

    @classmethod
    def from_feature_extractor(cls, feature_extractor, with_frame_labels: bool = True) -> "InstrumentDataCollator":
        return cls(feature_extractor.mean, feature_extractor.std, with_frame_labels=with_frame_labels)

    def __call__(self, rows: List[Dict]) -> Dict[str, torch.Tensor]:
        features = np.stack([np.asarray(r["input_features"], dtype=np.float32) for r in rows])
        if features.shape[-1] != self.mean.shape[0]:
            raise ValueError(
                f"windows have {features.shape[-1]} features per frame but the normalisation has "
                f"{self.mean.shape[0]}: "
                "dataset and feature extractor do not match"
            )
        batch = {
            "input_features": torch.from_numpy((features - self.mean) / self.std),
            "labels": torch.from_numpy(np.stack([np.asarray(r["labels"], dtype=np.float32) for r in rows])),
        }
        if self.with_frame_labels and "frame_labels" in rows[0]:
            batch["frame_labels"] = torch.from_numpy(
                np.stack([np.asarray(r["frame_labels"], dtype=np.float32) for r in rows])
            )
        return batch
