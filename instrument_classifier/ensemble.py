"""Several trained models, each on its own features, as one classifier: a weighted mean of their probabilities.

The recipe's CNN reads MFCCs and its Transformer reads constant-Q bands. Their errors on an unseen sample library
differ, so a blend of their probabilities ranks and decides better than either, where two CNNs on the same
features gained nothing (docs/experiments.md, "The two models blended"). The blend weights, the per-class
thresholds and the recording context are tuned on validation
(:func:`~instrument_classifier.evaluation.tuning.tune_ensemble`) and saved in ``ensemble_config.json``; the members
stay ordinary model folders, referred to by path (relative to the ensemble's folder) or Hub id::

    {"model_type": "instrument_ensemble", "members": ["../cnn", "../transformer"], "weights": [0.7, 0.3],
     "labels": [...], "thresholds": [...], "context": {...} | null, ...}

:func:`instrument_classifier.inference.load_model` loads such a folder like a model folder, and
``predict_timeline`` runs every member on the audio and blends their window and frame probabilities, which lie on
the same grid: the members share the window duration and the taxonomy (checked when
loading). Their hops may differ (musicnn reads 16-ms frames, YAMNet 8-ms ones, both in windows of 47 872
samples), and so may their sampling rates (EfficientAT reads 32-kHz audio, in windows of the same 2.992 s): the
ensemble's frame grid is then its ``hop_length`` at its ``sampling_rate``, the first member's, and each other
member's frame probabilities are read off at the same times (:func:`frames_on_grid`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .atomic_write import write_text

__all__ = [
    "CONFIG_NAME", "EnsembleConfig", "InstrumentEnsemble", "is_ensemble_folder", "blend_probabilities",
    "frames_on_grid",
]

CONFIG_NAME = "ensemble_config.json"


@dataclass
class EnsembleConfig:
    """What ``ensemble_config.json`` holds; also the ``config`` that predict and the Space read."""

    members: List[str]
    weights: List[float]
    labels: List[str]
    thresholds: List[float]
    context: Optional[dict] = None
    taxonomy: str = "musicnet11"
    window_frames: int = 256
    sampling_rate: int = 44100
    hop_length: int = 512
    # what tuning measured on validation: the blend's macro AUC and micro F1, and each member's alone (lists)
    validation: Dict[str, object] = field(default_factory=dict)
    model_type: str = "instrument_ensemble"

    @property
    def id2label(self) -> Dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def save(self, folder: os.PathLike) -> Path:
        path = Path(folder) / CONFIG_NAME
        write_text(path, json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: os.PathLike) -> "EnsembleConfig":
        path = Path(folder) / CONFIG_NAME
        try:
            data = json.loads(path.read_text())
            config = cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a readable ensemble config ({exc})") from None
        if not config.members or len(config.weights) != len(config.members):
            raise ValueError(f"{path}: needs one weight per member, got {len(config.weights)} weights for "
                             f"{len(config.members)} members")
        if min(config.weights) < 0 or not np.isclose(sum(config.weights), 1.0):
            raise ValueError(f"{path}: weights must be >= 0 and sum to 1, got {config.weights}")
        if len(config.thresholds) != len(config.labels):
            raise ValueError(f"{path}: {len(config.thresholds)} thresholds for {len(config.labels)} labels")
        return config


def is_ensemble_folder(name_or_path: os.PathLike | str) -> bool:
    return (Path(name_or_path) / CONFIG_NAME).is_file()


class InstrumentEnsemble:
    """Member models with their own feature extractors, blended as :class:`EnsembleConfig` says.

    Load with :func:`instrument_classifier.inference.load_model`, which loads each member as it loads any model
    (so this module needs nothing of inference's); it returns the ensemble and ``None`` for the feature
    extractor, since each member brings its own.
    """

    def __init__(self, config: EnsembleConfig, members: Sequence[Tuple[object, object]], source: str = "ensemble"):
        self.config = config
        self.members = list(members)
        self.source = source
        self._check_members()

    def _check_members(self) -> None:
        config = self.config
        window = Fraction(config.window_frames * config.hop_length, config.sampling_rate)
        for (model, extractor), name in zip(self.members, config.members):
            mc = model.config
            labels = [mc.id2label[i] for i in range(mc.num_labels)]
            duration = Fraction(int(mc.window_frames) * extractor.hop_length, extractor.sampling_rate)
            if (labels, mc.taxonomy, duration) != (config.labels, config.taxonomy, window):
                raise ValueError(f"{self.source}: member {name} does not fit the ensemble (labels, taxonomy, window "
                                 f"seconds: {mc.taxonomy}, {float(duration):.4f} s and {len(labels)} labels vs "
                                 f"{config.taxonomy}, {float(window):.4f} s and {len(config.labels)} labels)")

    def eval(self) -> "InstrumentEnsemble":
        for model, _ in self.members:
            model.eval()
        return self


def blend_probabilities(probs: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The weighted mean of the members' probabilities (same shape each)."""
    return sum(float(w) * np.asarray(p, dtype=np.float64) for w, p in zip(weights, probs)).astype(np.float32)


def frames_on_grid(frame_probs: np.ndarray, hop_length: int, grid_hop_length: int, num_frames: int,
                   sampling_rate: int = 1, grid_sampling_rate: int = 1) -> np.ndarray:
    """A member's frame probabilities ``(frames, L)`` at hop ``hop_length`` (samples at ``sampling_rate``), read at
    the ``num_frames`` frames of the ensemble's grid (hop ``grid_hop_length`` at ``grid_sampling_rate``; the rates
    matter only by their ratio): each grid frame takes the member frame centred at or just before its centre, so
    every frame keeps the window it belongs to (both grids start at time 0)."""
    if hop_length * grid_sampling_rate == grid_hop_length * sampling_rate and len(frame_probs) == num_frames:
        return frame_probs
    index = (np.arange(num_frames, dtype=np.int64) * grid_hop_length * sampling_rate
             // (hop_length * grid_sampling_rate))
    return frame_probs[np.minimum(index, len(frame_probs) - 1)]
