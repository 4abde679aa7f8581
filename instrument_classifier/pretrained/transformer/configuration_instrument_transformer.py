"""Configuration of :class:`InstrumentTransformerForAudioClassification`.

Self-contained (only ``transformers``): ``save_pretrained`` copies this file next to the
weights so that ``AutoConfig.from_pretrained(folder, trust_remote_code=True)`` works
without the ``instrument_classifier`` package.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig

__all__ = ["InstrumentTransformerConfig"]

# Label lists of the taxonomies shipped by instrument_classifier.data.taxonomy, repeated here so
# that a config can be built from a taxonomy name without the package (a test keeps them equal).
# Copied from instrument_classifier.modeling.configuration_instrument_cnn.TAXONOMY_LABELS
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
# Copied from instrument_classifier.modeling.configuration_instrument_cnn.POOLING_TYPES
POOLING_TYPES = ("attention", "max", "mean", "meanmax")
# Copied from instrument_classifier.modeling.configuration_instrument_cnn.FEATURE_TYPES
FEATURE_TYPES = ("mfcc", "logmel", "cqt")

# `pipeline("audio-classification", model=folder, trust_remote_code=True)` uses this class, shipped next to
# the weights (the modeling file imports it relatively, so save_pretrained copies it).
# Copied from instrument_classifier.modeling.configuration_instrument_cnn.CUSTOM_PIPELINES
CUSTOM_PIPELINES = {
    "audio-classification": {
        "impl": "pipeline_instrument.InstrumentAudioClassificationPipeline",
        "pt": ["AutoModelForAudioClassification"],
        "type": "audio",
    }
}


class InstrumentTransformerConfig(PreTrainedConfig):
    r"""Configuration of the small Transformer-encoder instrument classifier.

    The defaults follow the original study: MFCC frames projected to ``hidden_size=128``, one
    encoder layer with 4 heads, dropout 0.4288, a linear head to ``num_labels``. Unlike the
    study, the sequence is one window of consecutive frames of one recording, with positional
    information.

    Parameters
    ----------
    taxonomy, thresholds, context, feature_size, window_frames, sampling_rate, hop_length, \
    feature_type, pos_weight, frame_loss_weight, pooling :
        As in ``InstrumentCNNConfig``.
    hidden_size : int
        Model width ``d_model``.
    num_hidden_layers : int
        Encoder layers.
    num_attention_heads : int
        Heads per layer; must divide ``hidden_size``.
    intermediate_size : int
        Width of the feed-forward block (512 = 4 x d_model; PyTorch's encoder layer defaults to 2048,
        four times the weights for no measured gain on 13 input coefficients).
    hidden_act : {"gelu", "relu"}
        Feed-forward activation.
    dropout, attention_dropout : float
        Dropout on the residual branches / on the attention weights (the study's single 0.4288).
    position_embedding_type : {"sinusoidal", "learned"}
        Fixed sinusoidal encodings (no weights) or learned ones for ``window_frames`` positions.
    layer_norm_eps : float
        LayerNorm epsilon (pre-norm layers and a final norm).
    initializer_range : float
        Standard deviation of the normal initialisation of linear layers.
    """

    model_type = "instrument_transformer"

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
    hidden_size: int = 128
    num_hidden_layers: int = 1
    num_attention_heads: int = 4
    intermediate_size: int = 512
    hidden_act: str = "gelu"
    dropout: float = 0.4288
    attention_dropout: float = 0.4288
    position_embedding_type: str = "sinusoidal"
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    pooling: str = "attention"
    problem_type: str | None = "multi_label_classification"
    custom_pipelines: dict[str, Any] | None = None

    def __post_init__(self, **kwargs):
        num_labels = kwargs.pop("num_labels", None)
        _fill_labels(self, num_labels)
        super().__post_init__(**kwargs)
        if self.custom_pipelines is None:
            self.custom_pipelines = {k: dict(v) for k, v in CUSTOM_PIPELINES.items()}
        if getattr(self, "auto_map", None) is None:
            # Where trust_remote_code finds the classes; save_pretrained copies the files named here.
            model_class = "modeling_instrument_transformer.InstrumentTransformerForAudioClassification"
            self.auto_map = {
                "AutoConfig": "configuration_instrument_transformer.InstrumentTransformerConfig",
                "AutoModel": model_class,
                "AutoModelForAudioClassification": model_class,
            }
        self.validate()

    def validate(self):
        """Raise ``ValueError`` for inconsistent settings (called at construction and before saving)."""
        _validate_common(self)
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} does not divide hidden_size={self.hidden_size}"
            )
        if self.hidden_act not in ("gelu", "relu"):
            raise ValueError(f"hidden_act must be 'gelu' or 'relu', got {self.hidden_act!r}")
        if self.position_embedding_type not in ("sinusoidal", "learned"):
            raise ValueError(
                f"position_embedding_type must be 'sinusoidal' or 'learned', got {self.position_embedding_type!r}"
            )
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


# Copied from instrument_classifier.modeling.configuration_instrument_cnn._fill_labels
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


# Copied from instrument_classifier.modeling.configuration_instrument_cnn._validate_common
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


# Copied from instrument_classifier.modeling.configuration_instrument_cnn._validate_context
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
