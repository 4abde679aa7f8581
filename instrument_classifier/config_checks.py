"""A model's settings checked when it is loaded, so that a broken ``config.json`` or ``preprocessor_config.json``
is refused with the file and field named, not met later as a ``MemoryError`` or as NaN scores.

A window of 1e8 frames asked for 191 GiB when the first window was cut; an ``std`` of 0 divided every feature
by zero, so every score was NaN (and ``predict --format json`` wrote ``NaN``, which is not JSON).
"""

from __future__ import annotations

import math
import os
from numbers import Real

__all__ = ["ConfigError", "MAX_WINDOW_FRAMES", "check_model_settings"]

#: the longest window accepted: 65 536 frames, 12.7 min at 44.1 kHz with hop 512 (the models use 187 to 256)
MAX_WINDOW_FRAMES = 2**16
#: the largest FFT (and band count) accepted; the feature types use 2048 to 8192
MAX_FFT = 2**16


class ConfigError(ValueError):
    """A model setting that cannot be right; the message names the file and field."""


def check_model_settings(config, feature_extractor, source: str) -> None:
    """Refuse settings no model can have.

    Parameters
    ----------
    config : PretrainedConfig
        The model's configuration (``config.json``).
    feature_extractor : InstrumentFeatureExtractor
        Its feature extractor (``preprocessor_config.json``).
    source : str
        The model folder or Hub id, for messages.

    Raises
    ------
    ConfigError
        ``window_frames`` outside 1..:data:`MAX_WINDOW_FRAMES`; thresholds not one per label in [0, 1];
        a non-positive rate, hop or FFT size; ``mean``/``std`` of the wrong length, not finite, or an ``std``
        that is not positive.
    """
    model_file, extractor_file = _where(source, "config.json"), _where(source, "preprocessor_config.json")
    _integer(model_file, "window_frames", getattr(config, "window_frames", 1), 1, MAX_WINDOW_FRAMES)
    thresholds = getattr(config, "thresholds", None)
    if thresholds is not None:
        if len(thresholds) != config.num_labels:
            raise ConfigError(f"{model_file}: thresholds has {len(thresholds)} values for {config.num_labels} labels")
        for i, t in enumerate(thresholds):
            if not (isinstance(t, Real) and 0.0 <= t <= 1.0):
                raise ConfigError(f"{model_file}: thresholds[{i}] is {t!r}; a threshold is a probability in [0, 1]")
    fe = feature_extractor
    _integer(extractor_file, "sampling_rate", fe.sampling_rate, 1, 10**6)
    for field in ("hop_length", "n_fft", "n_mels", "feature_size"):
        if getattr(fe, field, None) is not None:
            _integer(extractor_file, field, getattr(fe, field), 1, MAX_FFT)
    for field in ("mean", "std"):
        values = getattr(fe, field, None)
        if values is None:
            continue
        if len(values) != fe.feature_size:
            raise ConfigError(f"{extractor_file}: {field} has {len(values)} values for feature_size {fe.feature_size}")
        for i, v in enumerate(values):
            if not (isinstance(v, Real) and math.isfinite(v)) or (field == "std" and v <= 0):
                need = "positive and finite (the features are divided by it)" if field == "std" else "finite"
                raise ConfigError(f"{extractor_file}: {field}[{i}] is {v!r}; it must be {need}")


def _integer(where: str, field: str, value, low: int, high: int) -> None:
    if not (isinstance(value, Real) and math.isfinite(value) and value == int(value) and low <= int(value) <= high):
        raise ConfigError(f"{where}: {field} is {value!r}; it must be a whole number from {low} to {high:,}")


def _where(source: str, name: str) -> str:
    return os.path.join(source, name) if os.path.isdir(source) else f"{source} ({name})"
