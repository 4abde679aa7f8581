"""Configuration of :class:`InstrumentEfficientAtForAudioClassification`.

Self-contained (only ``transformers``): ``save_pretrained`` copies this file next to the
weights so that ``AutoConfig.from_pretrained(folder, trust_remote_code=True)`` works
without the ``instrument_classifier`` package.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig

__all__ = ["InstrumentEfficientAtConfig", "EFFICIENTAT_ARCHITECTURE"]

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

#: EfficientAT's ``mn04`` (MobileNetV3 at width 0.4, AudioSet) as ``efficientat_frontend`` builds it: its input
#: frames (128 mel bands every 320 samples at 32 kHz), width multiplier, embedding width and AudioSet classes.
EFFICIENTAT_ARCHITECTURE: dict[str, Any] = {
    "n_mels": 128, "hop_length": 320, "width": 0.4, "embedding_size": 384, "num_classes": 527,
}
#: Frames the network needs at least: five stride-2 stages.
MIN_FRAMES = 32

# Copied from instrument_classifier.modeling.configuration_instrument_cnn.CUSTOM_PIPELINES
CUSTOM_PIPELINES = {
    "audio-classification": {
        "impl": "pipeline_instrument.InstrumentAudioClassificationPipeline",
        "pt": ["AutoModelForAudioClassification"],
        "type": "audio",
    }
}


class InstrumentEfficientAtConfig(PreTrainedConfig):
    r"""Configuration of the instrument classifier on the EfficientAT front end.

    EfficientAT's ``mn04`` is a MobileNetV3 (width 0.4, 0.98 M parameters) trained on AudioSet by distillation
    from transformer ensembles (527 classes, among them violin, cello, double bass, flute, clarinet, oboe,
    bassoon, piano, harpsichord and French horn), on real recordings. A window of the feature extractor's 2-ms
    EfficientAT log-mel frames (1496 frames: 2.992 s at 32 kHz, one musicnn window) is read every fifth frame,
    which gives exactly the network's own 10-ms frames (300 of them; frames interpolated from an 8-ms grid lost
    accuracy on real recordings, docs/experiments.md), and goes through the network once; the window's
    representation is
    the 384-d embedding (the mean of the last convolution's map) and the 527 AudioSet logits (911 numbers). A
    linear layer on that representation, standardised, gives the instrument logits. With ``freeze_backbone`` (the
    default) only that layer learns.

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
        The network's input and output sizes (``EFFICIENTAT_ARCHITECTURE``'s keys); default ``mn04``'s.
    freeze_backbone : bool
        Keep the EfficientAT weights fixed in training; only the head learns.
    feature_size : int
        Mel bands per frame (128).
    window_frames : int
        Frames per analysis window (1496 = 2.992 s at 32 kHz, hop 64: one musicnn window).
    sampling_rate, hop_length : int
        Feature frame grid (32000 Hz, 64 samples); the network's hop (``backbone["hop_length"]``, 320) must be a
        multiple of it.
    feature_type : str
        ``"efficientat"``: the input features, recorded to reproduce them.
    pos_weight : list of float, optional
        Positive-class weights of the window-level ``BCEWithLogitsLoss``.
    frame_loss_weight : float
        Weight of the frame-level BCE term. Every frame of a window gets the window's logits (the
        representation is pooled over the window), so the term only repeats the window's; default 0.
    audioset_prior : dict, optional
        Label name -> index of the AudioSet class that names the same instrument (``{"Violin": 191}``:
        "Violin, fiddle"; ``efficientat_frontend.AUDIOSET_CLASSES`` lists the instruments'). Those labels' logits
        are mixed with that class's AudioSet logit (``audioset_prior_weight``): a head trained on rendered audio
        keeps some of what the network learned from real recordings. ``None``: no label is mixed.
    audioset_prior_weight : float
        The AudioSet logit's share in the mixed logits, in [0, 1); 0 leaves the head alone.
    """

    model_type = "instrument_efficientat"

    taxonomy: str = "musicnet11"
    thresholds: list[float] | None = None
    context: dict | None = None
    backbone: dict | None = None
    freeze_backbone: bool = True
    feature_size: int = 128
    window_frames: int = 1496
    sampling_rate: int = 32000
    hop_length: int = 64
    feature_type: str = "efficientat"
    pos_weight: list[float] | None = None
    frame_loss_weight: float = 0.0
    audioset_prior: dict[str, int] | None = None
    audioset_prior_weight: float = 0.0
    problem_type: str | None = "multi_label_classification"
    custom_pipelines: dict[str, Any] | None = None

    def __post_init__(self, **kwargs):
        num_labels = kwargs.pop("num_labels", None)
        _fill_labels(self, num_labels)
        super().__post_init__(**kwargs)
        self.backbone = {**EFFICIENTAT_ARCHITECTURE, **(self.backbone or {})}
        if self.custom_pipelines is None:
            self.custom_pipelines = {k: dict(v) for k, v in CUSTOM_PIPELINES.items()}
        if getattr(self, "auto_map", None) is None:
            # Where trust_remote_code finds the classes; save_pretrained copies the files named here.
            model_class = "modeling_instrument_efficientat.InstrumentEfficientAtForAudioClassification"
            self.auto_map = {
                "AutoConfig": "configuration_instrument_efficientat.InstrumentEfficientAtConfig",
                "AutoModel": model_class,
                "AutoModelForAudioClassification": model_class,
            }
        self.validate()

    @property
    def representation_size(self) -> int:
        """Numbers per window the head reads: the embedding and the AudioSet logits."""
        return self.backbone["embedding_size"] + self.backbone["num_classes"]

    @property
    def frame_step(self) -> int:
        """Input frames per network frame (5: 10-ms frames read from 2-ms ones)."""
        return self.backbone["hop_length"] // self.hop_length

    @property
    def network_frames(self) -> int:
        """Network frames a window gives (300 for 1496 input frames)."""
        return 1 + (self.window_frames - 1) // self.frame_step

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
        if self.feature_type != "efficientat":
            raise ValueError(f"feature_type must be 'efficientat' (the network's input), got {self.feature_type!r}")
        unknown = sorted(set(self.backbone) - set(EFFICIENTAT_ARCHITECTURE))
        if unknown:
            raise ValueError(f"unknown backbone settings {unknown}; known: {sorted(EFFICIENTAT_ARCHITECTURE)}")
        if self.backbone["n_mels"] != self.feature_size:
            raise ValueError(
                f"backbone n_mels ({self.backbone['n_mels']}) must equal feature_size ({self.feature_size})"
            )
        if self.backbone["hop_length"] % self.hop_length:
            raise ValueError(
                f"the network's hop ({self.backbone['hop_length']} samples) must be a multiple of hop_length "
                f"({self.hop_length}): its frames are read from the input's"
            )
        if not 0.0 <= float(self.audioset_prior_weight) < 1.0:
            raise ValueError(f"audioset_prior_weight must be in [0, 1), got {self.audioset_prior_weight}")
        self.audioset_prior_weight = float(self.audioset_prior_weight)
        if self.audioset_prior is not None:
            self.audioset_prior = {str(label): int(index) for label, index in self.audioset_prior.items()}
            unknown = sorted(set(self.audioset_prior) - set(self.label2id))
            if unknown:
                raise ValueError(f"audioset_prior names labels {unknown} that are not in id2label")
            outside = {label: i for label, i in self.audioset_prior.items()
                       if not 0 <= i < self.backbone["num_classes"]}
            if outside:
                raise ValueError(f"audioset_prior indices {outside} are not AudioSet classes "
                                 f"(0 .. {self.backbone['num_classes'] - 1})")
        if self.network_frames < MIN_FRAMES:
            raise ValueError(
                f"window_frames={self.window_frames} give {self.network_frames} network frames, fewer than "
                f"{MIN_FRAMES}"
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
