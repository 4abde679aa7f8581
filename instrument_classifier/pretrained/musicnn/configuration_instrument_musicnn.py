"""Configuration of :class:`InstrumentMusicnnForAudioClassification`.

Self-contained (only ``transformers``): ``save_pretrained`` copies this file next to the
weights so that ``AutoConfig.from_pretrained(folder, trust_remote_code=True)`` works
without the ``instrument_classifier`` package.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig

__all__ = ["InstrumentMusicnnConfig", "MUSICNN_MTT_ARCHITECTURE"]

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

#: The released ``MTT_musicnn`` (musicnn 0.1.0), as ``musicnn_frontend.MusicnnConfig`` names its fields.
MUSICNN_MTT_ARCHITECTURE: dict[str, Any] = {
    "n_mels": 96, "timbral_filters": 204, "timbral_kernel_frames": 7, "timbral_kernel_mels": [38, 67],
    "temporal_filters": 51, "temporal_kernel_frames": [128, 64, 32], "midend_filters": 64,
    "midend_kernel_frames": 7, "midend_layers": 3, "backend_units": 200, "num_tags": 50,
    "batch_norm_eps": 1e-3, "batch_norm_momentum": 0.01, "dropout": 0.5,
}

# Copied from instrument_classifier.modeling.configuration_instrument_cnn.CUSTOM_PIPELINES
CUSTOM_PIPELINES = {
    "audio-classification": {
        "impl": "pipeline_instrument.InstrumentAudioClassificationPipeline",
        "pt": ["AutoModelForAudioClassification"],
        "type": "audio",
    }
}


class InstrumentMusicnnConfig(PreTrainedConfig):
    r"""Configuration of the instrument classifier on the musicnn front end.

    musicnn (Pons & Serra, 2019) is a music-tagging CNN trained on real recordings (MagnaTagATune). Each
    window of its log-mel input (187 frames, 3 s at 16 kHz) goes through the network; the window's
    representation is musicnn's 200-d penultimate embedding, the time mean and maximum of its 753 front-/
    mid-end features per frame, and its 50 tag logits (1756 numbers). A linear layer on that representation,
    standardised, gives the instrument logits. With ``freeze_backbone`` (the default) only that layer learns:
    what the network learnt from real music is kept, which is the point of using it.

    Parameters
    ----------
    taxonomy : str
        Name of the label taxonomy (``"seed12"`` or ``"musicnet11"`` fill ``id2label``); any other name
        requires an explicit ``id2label``.
    thresholds : list of float, optional
        Per-class decision thresholds on sigmoid probabilities; default 0.5 for every class.
    context : dict, optional
        Recording context for ``predict --context`` (see ``InstrumentCNNConfig``); ``None``: none tuned.
    backbone : dict, optional
        musicnn's architecture (``musicnn_frontend.MusicnnConfig`` fields); default ``MTT_musicnn``'s.
    freeze_backbone : bool
        Keep the musicnn weights (and its batch-norm statistics) fixed in training; only the head learns.
    feature_size : int
        Mel bands per frame (96).
    window_frames : int
        Frames per analysis window (187 = 3 s at 16 kHz, hop 256: musicnn's patch).
    sampling_rate, hop_length : int
        Feature frame grid (16000 Hz, 256 samples).
    feature_type : str
        ``"musicnn"``: the input features, recorded to reproduce them.
    pos_weight : list of float, optional
        Positive-class weights of the window-level ``BCEWithLogitsLoss``.
    frame_loss_weight : float
        Weight of the frame-level BCE term. Every frame of a window gets the window's logits (the
        representation is pooled over the window), so the term only repeats the window's; default 0.
    """

    model_type = "instrument_musicnn"

    taxonomy: str = "musicnet11"
    thresholds: list[float] | None = None
    context: dict | None = None
    backbone: dict | None = None
    freeze_backbone: bool = True
    feature_size: int = 96
    window_frames: int = 187
    sampling_rate: int = 16000
    hop_length: int = 256
    feature_type: str = "musicnn"
    pos_weight: list[float] | None = None
    frame_loss_weight: float = 0.0
    problem_type: str | None = "multi_label_classification"
    custom_pipelines: dict[str, Any] | None = None

    def __post_init__(self, **kwargs):
        num_labels = kwargs.pop("num_labels", None)
        _fill_labels(self, num_labels)
        super().__post_init__(**kwargs)
        self.backbone = {**MUSICNN_MTT_ARCHITECTURE, **(self.backbone or {})}
        if self.custom_pipelines is None:
            self.custom_pipelines = {k: dict(v) for k, v in CUSTOM_PIPELINES.items()}
        if getattr(self, "auto_map", None) is None:
            # Where trust_remote_code finds the classes; save_pretrained copies the files named here.
            model_class = "modeling_instrument_musicnn.InstrumentMusicnnForAudioClassification"
            self.auto_map = {
                "AutoConfig": "configuration_instrument_musicnn.InstrumentMusicnnConfig",
                "AutoModel": model_class,
                "AutoModelForAudioClassification": model_class,
            }
        self.validate()

    @property
    def representation_size(self) -> int:
        """Numbers per window the head reads: penultimate + mean and max of the frame features + tag logits."""
        b = self.backbone
        frontend = (len(b["timbral_kernel_mels"]) * b["timbral_filters"]
                    + len(b["temporal_kernel_frames"]) * b["temporal_filters"])
        frame_features = frontend + b["midend_layers"] * b["midend_filters"]
        return b["backend_units"] + 2 * frame_features + b["num_tags"]

    def validate(self):
        """Raise ``ValueError`` for inconsistent settings (called at construction and before saving)."""
        num_labels = self.num_labels
        if self.problem_type != "multi_label_classification":
            raise ValueError(f"problem_type must be 'multi_label_classification', got {self.problem_type!r}")
        if self.thresholds is None:
            self.thresholds = [0.5] * num_labels
        self.thresholds = [float(t) for t in self.thresholds]
        if len(self.thresholds) != num_labels or not all(0.0 <= t <= 1.0 for t in self.thresholds):
            raise ValueError(f"thresholds must be {num_labels} probabilities in [0, 1], got {self.thresholds}")
        if self.context is not None:
            _validate_context(self.context, num_labels)
        if self.pos_weight is not None:
            self.pos_weight = [float(w) for w in self.pos_weight]
            if len(self.pos_weight) != num_labels or not all(w > 0 for w in self.pos_weight):
                raise ValueError(f"pos_weight must be {num_labels} positive numbers, got {self.pos_weight}")
        if self.frame_loss_weight < 0:
            raise ValueError(f"frame_loss_weight must be >= 0, got {self.frame_loss_weight}")
        for name in ("feature_size", "window_frames", "sampling_rate", "hop_length"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.feature_type != "musicnn":
            raise ValueError(f"feature_type must be 'musicnn' (the network's input), got {self.feature_type!r}")
        unknown = sorted(set(self.backbone) - set(MUSICNN_MTT_ARCHITECTURE))
        if unknown:
            raise ValueError(f"unknown backbone settings {unknown}; known: {sorted(MUSICNN_MTT_ARCHITECTURE)}")
        if self.backbone["n_mels"] != self.feature_size:
            raise ValueError(
                f"backbone n_mels ({self.backbone['n_mels']}) must equal feature_size ({self.feature_size})"
            )


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
