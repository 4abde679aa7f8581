"""Instrument classifier on the YAMNet front end, Google's AudioSet sound-event tagger (real recordings).

Self-contained HF model file (imports only ``torch``, ``transformers`` and its sibling files):
``save_pretrained`` copies it, ``yamnet_frontend.py`` and the pipeline next to the safetensors weights, so
``AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True)`` works without the
``instrument_classifier`` package, TensorFlow or pickle.

Input is one window of YAMNet log-mel frames of one recording, ``(batch, 374, 64)``: the feature extractor's
``feature_type="yamnet"``, 8-ms frames, so that a window holds the same 47,872 samples as a musicnn window and
the two models can be blended window by window. Inside, the frames are brought to YAMNet's 10-ms grid by linear
interpolation (YAMNet frame ``k`` at input position ``1.25 k``: 299 frames), ``patches_per_window`` patches of 96
frames spread evenly over them (starts ``round(linspace(0, 299 - 96, 5))``) go through YAMNet (the TF-Hub TFLite
weights, dequantized by ``scripts/convert_yamnet.py``), and the window's representation is the mean and the
maximum over the patches of the 1024-d embedding and of the 521 AudioSet logits. The head, a linear layer on that
representation standardised with statistics of the training windows, gives the instrument logits; every frame of
a window gets the window's logits (``frame_logits``): the time resolution of this model is its window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_instrument_yamnet import InstrumentYamnetConfig

# Shipped with the weights: config.custom_pipelines names this class for pipeline("audio-classification").
from .pipeline_instrument import InstrumentAudioClassificationPipeline  # noqa: F401
from .yamnet_frontend import YamnetFrontend, patch_starts, resample_frames

__all__ = [
    "InstrumentYamnetForAudioClassification", "InstrumentYamnetPreTrainedModel", "InstrumentClassifierOutput",
]

#: Windows through YAMNet at once when no gradient is needed (bounds inference memory: about 6 MB of activations
#: per window of 5 patches).
WINDOWS_PER_PASS = 32
#: The feature of digital silence, ``log(0 + 0.001)``: what completes an input shorter than a window.
SILENCE = -6.907755278982137
#: How the frozen YAMNet weights are stored by ``save_pretrained``. Their source is int8 (the TFLite model), which
#: float16 holds to 5e-4 relative; the folder is half as large (7.5 MB instead of 15 MB). They load back as float32,
#: and :meth:`InstrumentYamnetForAudioClassification.round_backbone_to_storage` gives a new model those weights
#: before its head is trained, so that what is trained and measured is what is stored.
BACKBONE_STORAGE_DTYPE = torch.float16


# Copied from instrument_classifier.modeling.modeling_instrument_cnn.InstrumentClassifierOutput
@dataclass
class InstrumentClassifierOutput(ModelOutput):
    """Output of the instrument classifiers.

    Attributes
    ----------
    loss : torch.Tensor, optional
        Window BCE (+ ``frame_loss_weight`` x frame BCE), when labels are given.
    logits : torch.Tensor, shape (batch, num_labels)
        Clip logits: the window logits; for longer inputs, those of the windows (see ``classify_long_input``).
    frame_logits : torch.Tensor, shape (batch, time, num_labels)
        Logits of every input frame.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    frame_logits: torch.Tensor | None = None


# Copied from instrument_classifier.modeling.modeling_instrument_cnn.classify_long_input
def classify_long_input(classify, features: torch.Tensor, mask: torch.Tensor | None, window_frames: int):
    """Run ``classify(windows, mask) -> (frame_logits, logits)`` on windows of ``window_frames`` frames.

    Inputs up to one window go through as they are. Longer inputs are cut into consecutive non-overlapping windows
    from the first frame, as inference cuts a recording; a last window the input does not fill is completed with
    zero frames, masked (left out of pooling; a window of padding only does not vote). The windows inference
    classifies end in digital silence instead: pad the audio up to the end of its last window before extracting
    the features (``feature_extractor.silence_to_window_end``, as the pipeline does), so that the input is a whole
    number of windows. The clip logits are the highest window logits, and from three windows on those of the mean
    of the two highest window probabilities: one stray window weighs half (as ``inference.clip_scores``).
    """
    batch, num_frames, size = features.shape
    if num_frames <= window_frames:
        return classify(features, mask)
    n = -(-num_frames // window_frames)
    missing = n * window_frames - num_frames
    if missing:
        features = torch.cat([features, features.new_zeros(batch, missing, size)], dim=1)
        real = torch.ones(batch, num_frames, dtype=torch.bool, device=features.device) if mask is None else mask
        mask = torch.cat([real, real.new_zeros(batch, missing)], dim=1)
    window_mask = None if mask is None else mask.reshape(batch * n, window_frames)
    frame_logits, logits = classify(features.reshape(batch * n, window_frames, size), window_mask)
    frames = frame_logits.reshape(batch, n * window_frames, -1)[:, :num_frames]
    logits = logits.unflatten(0, (batch, n))
    if window_mask is not None:  # windows made only of padding do not vote
        empty = ~window_mask.unflatten(0, (batch, n)).any(dim=-1)
        logits = logits.masked_fill(empty.unsqueeze(-1), torch.finfo(logits.dtype).min)
    voting = torch.full((batch,), n, device=features.device) if window_mask is None else (~empty).sum(dim=1)
    top = logits.topk(min(2, n), dim=1).values  # (B, 1 or 2, L), highest first
    # the mean of the two probabilities, as logits (what inference.clip_scores computes from probabilities)
    eps = torch.finfo(logits.dtype).eps
    top2 = torch.logit(torch.sigmoid(top).mean(dim=1).clamp(eps, 1 - eps))
    return frames, torch.where((voting >= 3)[:, None], top2, top[:, 0])


# Copied from instrument_classifier.modeling.modeling_instrument_cnn.instrument_loss
def instrument_loss(config, logits, frame_logits, labels, frame_labels, mask) -> torch.Tensor | None:
    """``BCEWithLogits`` on clip labels (+ ``frame_loss_weight`` x frame BCE over real frames)."""
    pos_weight = None
    if config.pos_weight is not None:
        pos_weight = torch.tensor(config.pos_weight, dtype=logits.dtype, device=logits.device)
    loss = None
    if labels is not None:
        if labels.shape != logits.shape:
            raise ValueError(f"labels must have shape {tuple(logits.shape)}, got {tuple(labels.shape)}")
        loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=pos_weight)
    if frame_labels is not None and config.frame_loss_weight > 0:
        if frame_labels.shape != frame_logits.shape:
            raise ValueError(
                f"frame_labels must have shape {tuple(frame_logits.shape)}, got {tuple(frame_labels.shape)}"
            )
        per_frame = F.binary_cross_entropy_with_logits(
            frame_logits, frame_labels.to(frame_logits.dtype), pos_weight=pos_weight, reduction="none"
        )
        if mask is None:
            frame_loss = per_frame.mean()
        else:
            weight = mask.unsqueeze(-1).to(per_frame.dtype)
            frame_loss = (per_frame * weight).sum() / (weight.sum() * per_frame.shape[-1]).clamp(min=1.0)
        frame_loss = config.frame_loss_weight * frame_loss
        loss = frame_loss if loss is None else loss + frame_loss
    return loss


# Copied from instrument_classifier.modeling.modeling_instrument_cnn.check_features
def check_features(config, input_features: torch.Tensor, attention_mask: torch.Tensor | None):
    if input_features.ndim != 3 or input_features.shape[-1] != config.feature_size:
        raise ValueError(
            f"input_features must have shape (batch, time, {config.feature_size}), got {tuple(input_features.shape)}"
        )
    if input_features.shape[1] == 0:
        raise ValueError("input_features has no frames")
    if attention_mask is None:
        return None
    if attention_mask.shape != input_features.shape[:2]:
        raise ValueError(
            f"attention_mask must have shape {tuple(input_features.shape[:2])}, got {tuple(attention_mask.shape)}"
        )
    return attention_mask.bool()


# -- the YAMNet classifier --------------------------------------------------------------------------------

class InstrumentYamnetPreTrainedModel(PreTrainedModel):
    config: InstrumentYamnetConfig
    config_class = InstrumentYamnetConfig
    base_model_prefix = "instrument_yamnet"
    main_input_name = "input_features"
    input_modalities = ("audio",)
    # The loss is a mean over this process's batch; Trainer must not rescale it by the number of processes.
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module):
        # Only the head starts from scratch; the YAMNet weights come from the converted checkpoint.
        if isinstance(module, nn.Linear) and module is getattr(self, "classifier", None):
            init.zeros_(module.weight)
            init.zeros_(module.bias)


class InstrumentYamnetForAudioClassification(InstrumentYamnetPreTrainedModel):
    """Multi-label instrument classifier on YAMNet: window logits ``(B, L)``, frame logits ``(B, T, L)``."""

    def __init__(self, config: InstrumentYamnetConfig):
        super().__init__(config)
        backbone = config.backbone
        self.yamnet = YamnetFrontend(n_mels=backbone["n_mels"], num_classes=backbone["num_classes"])
        size = config.representation_size
        # Standardisation of the representation, fitted on the training windows with the head.
        self.register_buffer("representation_mean", torch.zeros(size))
        self.register_buffer("representation_scale", torch.ones(size))
        self.classifier = nn.Linear(size, config.num_labels)
        self.post_init()
        self._apply_freeze()

    def _apply_freeze(self) -> None:
        for parameter in self.yamnet.parameters():
            parameter.requires_grad_(not self.config.freeze_backbone)

    def round_backbone_to_storage(self) -> None:
        """Round the YAMNet weights to what ``save_pretrained`` stores (:data:`BACKBONE_STORAGE_DTYPE`)."""
        with torch.no_grad():
            for tensor in self.yamnet.state_dict().values():
                if tensor.is_floating_point():
                    tensor.copy_(tensor.to(BACKBONE_STORAGE_DTYPE))

    def save_pretrained(self, save_directory, *args, state_dict=None, **kwargs):
        """``PreTrainedModel.save_pretrained``, with a frozen backbone's weights stored as
        :data:`BACKBONE_STORAGE_DTYPE` (a fine-tuned backbone is stored as it is)."""
        if state_dict is None and self.config.freeze_backbone:
            state_dict = {
                name: tensor.to(BACKBONE_STORAGE_DTYPE)
                if name.startswith("yamnet.") and tensor.is_floating_point() else tensor
                for name, tensor in self.state_dict().items()
            }
        return super().save_pretrained(save_directory, *args, state_dict=state_dict, **kwargs)

    def window_patches(self, input_features: torch.Tensor) -> torch.Tensor:
        """``(batch, time, 64)`` 8-ms frames -> ``(batch, patches_per_window, 96, 64)`` YAMNet patches (10-ms
        frames by linear interpolation, patches spread evenly from the first frame to the last)."""
        frames = resample_frames(input_features, self.config.resampling_ratio)
        patch = self.config.backbone["patch_frames"]
        starts = patch_starts(frames.shape[1], self.config.patches_per_window, patch)
        index = torch.tensor(starts, device=frames.device)[:, None] + torch.arange(patch, device=frames.device)
        return frames[:, index]

    def representation(self, input_features: torch.Tensor) -> torch.Tensor:
        """``(batch, time, 64)`` log-mel windows -> ``(batch, representation_size)``, before standardisation: mean
        and max over the window's patches of YAMNet's embedding, then mean and max of its AudioSet logits.

        Windows go through YAMNet ``WINDOWS_PER_PASS`` at a time when no gradient is needed."""
        step = input_features.shape[0] if torch.is_grad_enabled() else WINDOWS_PER_PASS
        parts = []
        for first in range(0, input_features.shape[0], step):
            patches = self.window_patches(input_features[first : first + step])
            batch, count = patches.shape[:2]
            out = self.yamnet(patches.flatten(0, 1))
            embedding = out.embedding.unflatten(0, (batch, count))
            logits = out.logits.unflatten(0, (batch, count))
            parts.append(torch.cat([embedding.mean(1), embedding.amax(1), logits.mean(1), logits.amax(1)], dim=1))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    # Copied from instrument_classifier.modeling.modeling_instrument_musicnn.InstrumentMusicnnForAudioClassification.head_logits  # noqa: E501
    def head_logits(self, representation: torch.Tensor) -> torch.Tensor:
        """``(batch, representation_size)`` representations -> ``(batch, num_labels)`` instrument logits: standardised
        with the training windows' statistics, then the linear head."""
        return self.classifier((representation - self.representation_mean) / self.representation_scale)

    def _classify_window(self, features: torch.Tensor, mask: torch.Tensor | None):
        window = features
        if features.shape[1] < self.config.window_frames:  # YAMNet needs 96 of its frames: complete with silence
            missing = self.config.window_frames - features.shape[1]
            window = F.pad(features, (0, 0, 0, missing), value=SILENCE)
        logits = self.head_logits(self.representation(window))
        return logits.unsqueeze(1).expand(-1, features.shape[1], -1), logits

    def forward(
        self,
        input_features: torch.Tensor,
        labels: torch.Tensor | None = None,
        frame_labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> InstrumentClassifierOutput | tuple:
        """Classify windows of YAMNet log-mel features.

        Parameters
        ----------
        input_features : torch.Tensor, shape (batch, time, 64)
            The feature extractor's output (``feature_type="yamnet"``). Longer inputs than
            ``config.window_frames`` are cut into windows (``classify_long_input``); a shorter input is
            completed with the log of silence up to a window (YAMNet needs 96 of its frames).
        labels : torch.Tensor, shape (batch, num_labels), optional
            Multi-hot window labels.
        frame_labels : torch.Tensor, shape (batch, time, num_labels), optional
            Multi-hot frame labels (used only with ``frame_loss_weight > 0``).
        attention_mask : torch.Tensor, shape (batch, time), optional
            1 for real frames, 0 for padding. Windows made only of padding do not vote for the clip; YAMNet
            reads every frame of a window.
        """
        mask = check_features(self.config, input_features, attention_mask)
        frame_logits, logits = classify_long_input(
            self._classify_window, input_features, mask, self.config.window_frames
        )
        loss = instrument_loss(self.config, logits, frame_logits, labels, frame_labels, mask)
        output = InstrumentClassifierOutput(loss=loss, logits=logits, frame_logits=frame_logits)
        return output if (return_dict if return_dict is not None else self.config.return_dict) else output.to_tuple()
