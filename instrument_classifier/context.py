"""Recording context: each window's probabilities blended with those of its neighbours in the recording.

A window classifier hears 2.97 s. An instrument that plays in a recording usually plays in many of its
windows, while a false alarm on an unfamiliar timbre is usually isolated; so the mean probability ``m`` of
the windows around a window (same recording, same class) is evidence the window alone does not have. The
blended score is the weighted geometric mean ``p ** (1 - weight) * m ** weight``.

The price is time resolution: with ``radius_windows = k`` an instrument's entry is smeared over ``k``
windows on either side, and with ``radius_windows = None`` (the whole recording) and ``weight = 1`` every
window of a recording gets the same score, which answers "which instruments play" and no longer "when".
:func:`~instrument_classifier.evaluation.tuning.tune_context` picks the radius and weight on validation data,
with per-class thresholds for the blended scores; training stores the result in ``config.context`` (a dict, see
:class:`RecordingContext`), and ``predict --context`` / ``evaluate`` apply it. Measured on held-out sample
libraries in docs/experiments.md ("More context at inference").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, List, Optional, Sequence

import numpy as np

__all__ = ["RecordingContext", "RADII", "WEIGHTS", "blend", "neighbour_means"]

#: Radii (in windows on either side; ``None``: the whole recording) and weights
#: :func:`~instrument_classifier.evaluation.tuning.tune_context` tries.
RADII: tuple = (1, 2, 3, 5, 8, 16, None)
WEIGHTS: tuple = (0.25, 0.5, 0.75, 1.0)


@dataclass
class RecordingContext:
    """How a model's window scores are blended with their neighbours' (stored as ``config.context``).

    Attributes
    ----------
    radius_windows : int or None
        Windows on either side averaged over (``None``: the whole recording).
    weight : float
        Weight of the neighbours' mean in the geometric blend, in (0, 1].
    thresholds : list of float
        Per-class decision thresholds for the blended scores (tuned on validation with them).
    validation_f1_micro : float, optional
        Validation micro F1 with the context (for the record).
    validation_f1_micro_without : float, optional
        The same without it.
    """

    radius_windows: Optional[int]
    weight: float
    thresholds: List[float]
    validation_f1_micro: Optional[float] = None
    validation_f1_micro_without: Optional[float] = None

    def __post_init__(self) -> None:
        if self.radius_windows is not None and int(self.radius_windows) < 0:
            raise ValueError(f"context radius must be >= 0 windows or None, got {self.radius_windows}")
        if not 0.0 < float(self.weight) <= 1.0:
            raise ValueError(f"context weight must be in (0, 1], got {self.weight}")
        if not all(0.0 <= float(t) <= 1.0 for t in self.thresholds):
            raise ValueError(f"context thresholds must be probabilities, got {self.thresholds}")

    @classmethod
    def from_config(cls, config) -> Optional["RecordingContext"]:
        """The context stored in a model config, or ``None`` if it has none."""
        stored = getattr(config, "context", None)
        return None if not stored else cls(**stored)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        where = "the whole recording" if self.radius_windows is None else f"+-{self.radius_windows} windows"
        return f"{where}, weight {self.weight:g}"

    def apply(self, probs: np.ndarray, recordings: Optional[Sequence] = None,
              starts: Optional[Sequence[int]] = None, window_frames: int = 1) -> np.ndarray:
        """Blended window scores; see :func:`neighbour_means` for the arguments."""
        means = neighbour_means(probs, recordings, starts, self.radius_windows, window_frames)
        return blend(probs, means, self.weight)


def blend(probs: np.ndarray, means: np.ndarray, weight: float) -> np.ndarray:
    """``probs ** (1 - weight) * means ** weight`` (float32)."""
    blended = np.asarray(probs, np.float64) ** (1.0 - weight) * np.asarray(means, np.float64) ** weight
    return blended.astype(np.float32)


def neighbour_means(probs: np.ndarray, recordings: Optional[Sequence] = None, starts: Optional[Sequence[int]] = None,
                    radius_windows: Optional[int] = None, window_frames: int = 1) -> np.ndarray:
    """Each window's probabilities replaced by the mean over the windows of its recording near it.

    Parameters
    ----------
    probs : np.ndarray
        ``(n_windows, n_labels)`` window probabilities.
    recordings : sequence, optional
        Recording of each window (default: all from one recording).
    starts : sequence of int, optional
        Start frame of each window (default: consecutive windows, ``i * window_frames``).
    radius_windows : int or None
        Windows whose start lies at most ``radius_windows * window_frames`` frames away are averaged
        (the window itself included); ``None``: every window of the recording. Measured in frames, so
        overlapping windows (an evaluation hop of half a window) cover the same time span.
    window_frames : int
        Frames per window.

    Returns
    -------
    np.ndarray
        ``(n_windows, n_labels)``, in the input's row order.
    """
    probs = np.asarray(probs, dtype=np.float64)
    n = len(probs)
    recordings = np.zeros(n, dtype=np.int64) if recordings is None else np.asarray(recordings)
    starts = np.arange(n, dtype=np.int64) * window_frames if starts is None else np.asarray(starts, dtype=np.int64)
    if len(recordings) != n or len(starts) != n:
        raise ValueError(f"{n} windows, but {len(recordings)} recordings and {len(starts)} start frames")
    means = np.empty_like(probs)
    for rec in _unique(recordings):
        rows = np.flatnonzero(recordings == rec)
        rows = rows[np.argsort(starts[rows], kind="stable")]  # time order
        if radius_windows is None:
            means[rows] = probs[rows].mean(axis=0)
            continue
        t = starts[rows]
        reach = int(radius_windows) * int(window_frames)
        lo = np.searchsorted(t, t - reach, side="left")
        hi = np.searchsorted(t, t + reach, side="right")
        cumulative = np.vstack([np.zeros((1, probs.shape[1])), np.cumsum(probs[rows], axis=0)])
        means[rows] = (cumulative[hi] - cumulative[lo]) / (hi - lo)[:, None]
    return means.astype(np.float32)


def _unique(values: np.ndarray) -> Iterable:
    return dict.fromkeys(values.tolist())  # first-seen order, for any hashable ids
