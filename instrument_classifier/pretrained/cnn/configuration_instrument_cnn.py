"""Configuration of :class:`InstrumentCNNForAudioClassification`.

Self-contained (only ``transformers``): ``save_pretrained`` copies this file next to the
weights so that ``AutoConfig.from_pretrained(folder, trust_remote_code=True)`` works
without the ``instrument_classifier`` package.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig

__all__ = ["InstrumentCNNConfig", "TAXONOMY_LABELS"]

# Label lists of the taxonomies shipped by instrument_classifier.data.taxonomy, repeated here so
# that a config can be built from a taxonomy name without the package (a test keeps them equal).
TAXONOMY_LABELS: dict[str, tuple[str, ...]] = {
    "seed12": (
        "Keyboard", "Guitar", "Strings", "Percussion", "Organ", "Bass", "Brass", "Woodwind", "Flute",
        "Synth Lead/Pad", "Synth", "World Instrument",
    ),
    "musicnet11": (
        "Piano", "Harpsichord", "Violin", "Viola", "Cello", "Contrabass", "French Horn", "Oboe", "Bassoon",
        "Clarinet", "Flute",
    ),
}
POOLING_TYPES = ("attention", "max", "mean", "meanmax")
FEATURE_TYPES = ("mfcc", "logmel", "cqt")

# `pipeline("audio-classification", model=folder, trust_remote_code=True)` uses this class, shipped next to
# the weights (the modeling file imports it relatively, so save_pretrained copies it).
CUSTOM_PIPELINES = {
    "audio-classification": {
        "impl": "pipeline_instrument.InstrumentAudioClassificationPipeline",
        "pt": ["AutoModelForAudioClassification"],
        "type": "audio",
    }
}


class InstrumentCNNConfig(PreTrainedConfig):
    r"""Configuration of the small CNN instrument classifier.

    The defaults follow the original study: two convolutions with 32 and 64 channels over the
    ``(time, feature)`` image of one MFCC window, ReLU, max-pooling with stride 1 (which keeps the
    time resolution, so every frame gets logits), and one fully connected layer to ``num_labels``.

    Parameters
    ----------
    taxonomy : str
        Name of the label taxonomy (``"seed12"`` or ``"musicnet11"`` fill ``id2label``); any
        other name requires an explicit ``id2label``.
    thresholds : list of float, optional
        Per-class decision thresholds on sigmoid probabilities; default 0.5 for every class.
    context : dict, optional
        Recording context for ``predict --context``, as training tunes it on validation:
        ``{"radius_windows": int or None, "weight": float, "thresholds": [...]}`` (each window's
        probabilities blended with the mean of its neighbours', with thresholds for the blend;
        ``instrument_classifier/context.py``). ``None``: no context tuned.
    feature_size : int
        Coefficients per frame (13 MFCCs).
    window_frames : int
        Frames per analysis window (256 = 2.97 s at 44.1 kHz, hop 512). Longer inputs are cut
        into windows of this length.
    sampling_rate, hop_length : int
        Feature frame grid (44100 Hz, 512 samples); used to turn frames into seconds.
    feature_type : {"mfcc", "logmel", "cqt"}
        Kind of input features, recorded to reproduce the inputs.
    pos_weight : list of float, optional
        Positive-class weights of the window-level ``BCEWithLogitsLoss`` (e.g. ``negatives / positives``).
    frame_loss_weight : float
        Weight of the frame-level BCE term, used when ``frame_labels`` are given (0 disables it).
    conv_channels : list of int
        Output channels of each convolution.
    kernel_sizes : list of [int, int]
        ``(time, feature)`` kernel of each convolution; odd sizes ('same' padding).
    pool_sizes : list of [int, int]
        ``(time, feature)`` max-pooling window after each convolution, odd sizes; stride 1 in time.
    feature_strides : list of int, optional
        Stride of each max-pooling along the feature axis (default ``None``: 1, every coefficient kept). A
        stride of 2 or 3 shrinks a wide input (log-mel or constant-Q bands) before the next
        convolution, which then costs a half or a third; time is never strided.
    dropout : float
        Dropout before the classifier.
    pooling : {"attention", "max", "mean", "meanmax"}
        How frame logits become window logits. ``attention``: per class, a softmax over time of
        learned attention scores weights the frame logits (a soft maximum that still passes
        gradient to every frame); ``meanmax``: the average of mean and max.
    """

    model_type = "instrument_cnn"

    taxonomy: str = "seed12"
    thresholds: list[float] | None = None
    context: dict | None = None
    feature_size: int = 13
    window_frames: int = 256
    sampling_rate: int = 44100
    hop_length: int = 512
    feature_type: str = "mfcc"
    pos_weight: list[float] | None = None
    frame_loss_weight: float = 0.5
    conv_channels: list[int] | tuple[int, ...] = (32, 64)
    kernel_sizes: list[list[int]] | tuple[tuple[int, int], ...] = ((3, 3), (3, 3))
    pool_sizes: list[list[int]] | tuple[tuple[int, int], ...] = ((3, 3), (3, 3))
    feature_strides: list[int] | None = None
    dropout: float = 0.2
    pooling: str = "attention"
    problem_type: str | None = "multi_label_classification"
    custom_pipelines: dict[str, Any] | None = None

    def __post_init__(self, **kwargs):
        num_labels = kwargs.pop("num_labels", None)
        _fill_labels(self, num_labels)
        super().__post_init__(**kwargs)
        self.conv_channels = [int(c) for c in self.conv_channels]
        self.kernel_sizes = [_pair(k, "kernel_sizes") for k in self.kernel_sizes]
        self.pool_sizes = [_pair(p, "pool_sizes") for p in self.pool_sizes]
        if self.feature_strides is not None:  # None: stride 1 after every convolution, however many there are
            self.feature_strides = [int(s) for s in self.feature_strides]
        if self.custom_pipelines is None:
            self.custom_pipelines = {k: dict(v) for k, v in CUSTOM_PIPELINES.items()}
        if getattr(self, "auto_map", None) is None:
            # Where trust_remote_code finds the classes; save_pretrained copies the files named here.
            model_class = "modeling_instrument_cnn.InstrumentCNNForAudioClassification"
            self.auto_map = {
                "AutoConfig": "configuration_instrument_cnn.InstrumentCNNConfig",
                "AutoModel": model_class,
                "AutoModelForAudioClassification": model_class,
            }
        self.validate()

    def validate(self):
        """Raise ``ValueError`` for inconsistent settings (called at construction and before saving)."""
        _validate_common(self)
        n = len(self.conv_channels)
        if n == 0:
            raise ValueError("conv_channels must list at least one convolution")
        if any(c <= 0 for c in self.conv_channels):
            raise ValueError(f"conv_channels must be positive, got {self.conv_channels}")
        for name in ("kernel_sizes", "pool_sizes"):
            sizes = getattr(self, name)
            if len(sizes) != n:
                raise ValueError(f"{name} has {len(sizes)} entries but conv_channels has {n} convolutions")
            if any(s <= 0 or s % 2 == 0 for pair in sizes for s in pair):
                raise ValueError(f"{name} must be odd and positive ('same' padding keeps every frame), got {sizes}")
        strides = self.feature_strides
        if strides is not None and (len(strides) != n or any(s < 1 for s in strides)):
            raise ValueError(f"feature_strides must give a positive stride for each of the {n} convolutions, "
                             f"got {self.feature_strides}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def _pair(value, name: str) -> list[int]:
    if isinstance(value, int):
        return [value, value]
    value = [int(v) for v in value]
    if len(value) != 2:
        raise ValueError(f"{name} entries must be an int or a (time, feature) pair, got {value}")
    return value


def _fill_labels(config: PreTrainedConfig, num_labels: int | None) -> None:
    """id2label/label2id from the taxonomy name unless given; ``num_labels`` must agree."""
    if config.id2label is None:
        if config.taxonomy not in TAXONOMY_LABELS:
            raise ValueError(
                f"unknown taxonomy {config.taxonomy!r}: choose one of {sorted(TAXONOMY_LABELS)} or pass id2label"
            )
        config.id2label = dict(enumerate(TAXONOMY_LABELS[config.taxonomy]))
    config.id2label = {int(k): str(v) for k, v in config.id2label.items()}
    if sorted(config.id2label) != list(range(len(config.id2label))):
        raise ValueError(f"id2label keys must be 0..n-1, got {sorted(config.id2label)}")
    if num_labels is not None and int(num_labels) != len(config.id2label):
        raise ValueError(
            f"num_labels={num_labels} disagrees with the {len(config.id2label)} labels of taxonomy "
            f"{config.taxonomy!r}; pass id2label (and a taxonomy name of your own) for another label set"
        )
    labels = [config.id2label[i] for i in range(len(config.id2label))]
    if config.taxonomy in TAXONOMY_LABELS and tuple(labels) != TAXONOMY_LABELS[config.taxonomy]:
        raise ValueError(
            f"id2label {labels} is not taxonomy {config.taxonomy!r}; give your label set its own taxonomy name"
        )
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate labels in id2label: {labels}")
    config.label2id = {label: i for i, label in enumerate(labels)}


def _validate_common(config: PreTrainedConfig) -> None:
    num_labels = config.num_labels
    if config.problem_type != "multi_label_classification":
        raise ValueError(f"problem_type must be 'multi_label_classification', got {config.problem_type!r}")
    if config.thresholds is None:
        config.thresholds = [0.5] * num_labels
    config.thresholds = [float(t) for t in config.thresholds]
    if len(config.thresholds) != num_labels or not all(0.0 <= t <= 1.0 for t in config.thresholds):
        raise ValueError(f"thresholds must be {num_labels} probabilities in [0, 1], got {config.thresholds}")
    if config.context is not None:
        _validate_context(config.context, num_labels)
    if config.pos_weight is not None:
        config.pos_weight = [float(w) for w in config.pos_weight]
        if len(config.pos_weight) != num_labels or not all(w > 0 for w in config.pos_weight):
            raise ValueError(f"pos_weight must be {num_labels} positive numbers, got {config.pos_weight}")
    if config.frame_loss_weight < 0:
        raise ValueError(f"frame_loss_weight must be >= 0, got {config.frame_loss_weight}")
    for name in ("feature_size", "window_frames", "sampling_rate", "hop_length"):
        if int(getattr(config, name)) <= 0:
            raise ValueError(f"{name} must be a positive integer, got {getattr(config, name)}")
    if config.feature_type not in FEATURE_TYPES:
        raise ValueError(f"feature_type must be one of {FEATURE_TYPES}, got {config.feature_type!r}")
    if config.pooling not in POOLING_TYPES:
        raise ValueError(f"pooling must be one of {POOLING_TYPES}, got {config.pooling!r}")


def _validate_context(context: dict, num_labels: int) -> None:
    """``context`` as training stores it: ``radius_windows`` (int >= 0 or None), ``weight`` in (0, 1], thresholds."""
    radius, weight, thresholds = context.get("radius_windows"), context.get("weight"), context.get("thresholds")
    if radius is not None and (not isinstance(radius, int) or radius < 0):
        raise ValueError(f"context radius_windows must be an integer >= 0 or None, got {radius!r}")
    if not isinstance(weight, (int, float)) or not 0.0 < float(weight) <= 1.0:
        raise ValueError(f"context weight must be in (0, 1], got {weight!r}")
    if (not isinstance(thresholds, (list, tuple)) or len(thresholds) != num_labels
            or not all(0.0 <= float(t) <= 1.0 for t in thresholds)):
        raise ValueError(f"context thresholds must be {num_labels} probabilities in [0, 1], got {thresholds!r}")
