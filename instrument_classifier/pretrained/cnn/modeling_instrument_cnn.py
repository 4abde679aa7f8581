"""A small CNN that tells which instruments play in each frame of an MFCC window.

Self-contained HF model file (imports only ``torch``, ``transformers`` and its sibling files):
``save_pretrained`` copies it next to the safetensors weights, so
``AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True)`` works
without the ``instrument_classifier`` package.

Input is one window of consecutive frames of one recording, ``(batch, time, features)``,
read by the convolutions as a one-channel ``time x features`` image (never a batch of
unrelated frames stacked as channels, the original study's bug). Pooling has stride 1 in time and
'same' padding, so the time resolution is kept: every frame gets logits (``frame_logits``),
and the window's logits pool them over time (``config.pooling``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_instrument_cnn import InstrumentCNNConfig

# Shipped with the weights: config.custom_pipelines names this class for pipeline("audio-classification").
from .pipeline_instrument import InstrumentAudioClassificationPipeline  # noqa: F401

__all__ = ["InstrumentCNNForAudioClassification", "InstrumentCNNPreTrainedModel", "InstrumentClassifierOutput"]


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


# -- shared by the models: the other modeling files copy these ("Copied from", scripts/check_copies.py) ----

class InstrumentTimePooling(nn.Module):
    """Frame logits ``(B, T, L)`` -> window logits ``(B, L)``, ignoring masked frames.

    ``attention``: per class, softmax over time of a learned score of each frame's hidden state, used
    to average the frame logits (a soft maximum: a short solo counts, yet every frame gets gradient).
    ``max``, ``mean``, ``meanmax`` (average of the two) are parameter-free alternatives.
    """

    def __init__(self, kind: str, hidden_size: int, num_labels: int):
        super().__init__()
        self.kind = kind
        self.attention = nn.Linear(hidden_size, num_labels) if kind == "attention" else None

    def forward(self, hidden: torch.Tensor, frame_logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(frame_logits.shape[:2], dtype=torch.bool, device=frame_logits.device)
        mask = (mask | ~mask.any(dim=1, keepdim=True)).unsqueeze(-1)  # an all-padding row: pool everything
        lowest = torch.finfo(frame_logits.dtype).min
        if self.kind == "attention":
            scores = self.attention(hidden).to(frame_logits.dtype).masked_fill(~mask, lowest)
            return (scores.softmax(dim=1) * frame_logits).sum(dim=1)
        peak = frame_logits.masked_fill(~mask, lowest).amax(dim=1)
        mean = (frame_logits * mask).sum(dim=1) / mask.sum(dim=1)
        return {"max": peak, "mean": mean, "meanmax": 0.5 * (peak + mean)}[self.kind]


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


# -- the CNN ---------------------------------------------------------------------------------------------

class InstrumentCNNEncoder(nn.Module):
    """Conv2d -> ReLU -> MaxPool blocks over the ``time x features`` image; output ``(B, T, F' * C)``.

    The pooling has stride 1 in time (every frame is kept) and ``config.feature_strides`` along the features
    (``F'`` features remain).
    """

    def __init__(self, config: InstrumentCNNConfig):
        super().__init__()
        layers, in_channels = [], 1
        self.output_features = config.feature_size
        strides = config.feature_strides or [1] * len(config.conv_channels)
        blocks = zip(config.conv_channels, config.kernel_sizes, config.pool_sizes, strides)
        for channels, kernel, pool, stride in blocks:
            layers += [
                nn.Conv2d(in_channels, channels, tuple(kernel), padding=(kernel[0] // 2, kernel[1] // 2)),
                nn.ReLU(),
                nn.MaxPool2d(tuple(pool), stride=(1, stride), padding=(pool[0] // 2, pool[1] // 2)),
            ]
            in_channels = channels
            self.output_features = (self.output_features - 1) // stride + 1  # odd window, 'same' padding
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = features.unsqueeze(1)  # (B, 1, T, F)
        for layer in self.layers:
            hidden = layer(hidden)
            if isinstance(layer, nn.Conv2d):
                # channels-last makes the convolutions and the stride-1 pooling ~4x faster on CPU
                hidden = hidden.contiguous(memory_format=torch.channels_last)
        return hidden.permute(0, 2, 3, 1).flatten(2)  # (B, T, F' * C): each frame with its local context


class InstrumentCNNPreTrainedModel(PreTrainedModel):
    config: InstrumentCNNConfig
    config_class = InstrumentCNNConfig
    base_model_prefix = "instrument_cnn"
    main_input_name = "input_features"
    input_modalities = ("audio",)
    # The loss is a mean over this process's batch; Trainer must not rescale it by the number of processes.
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, nonlinearity="relu")
            init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            init.zeros_(module.bias)


class InstrumentCNNForAudioClassification(InstrumentCNNPreTrainedModel):
    """Multi-label instrument classifier: window logits ``(B, L)`` and frame logits ``(B, T, L)``."""

    def __init__(self, config: InstrumentCNNConfig):
        super().__init__(config)
        self.encoder = InstrumentCNNEncoder(config)
        hidden_size = config.conv_channels[-1] * self.encoder.output_features
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(hidden_size, config.num_labels)
        self.pooling = InstrumentTimePooling(config.pooling, hidden_size, config.num_labels)
        self.post_init()

    def _classify_window(self, features: torch.Tensor, mask: torch.Tensor | None):
        hidden = self.dropout(self.encoder(features))
        frame_logits = self.classifier(hidden)
        return frame_logits, self.pooling(hidden, frame_logits, mask)

    def forward(
        self,
        input_features: torch.Tensor,
        labels: torch.Tensor | None = None,
        frame_labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> InstrumentClassifierOutput | tuple:
        """Classify windows of normalised features.

        Parameters
        ----------
        input_features : torch.Tensor, shape (batch, time, feature_size)
            Normalised features (the feature extractor's output). ``time`` may differ from
            ``config.window_frames``: longer inputs are cut into windows (``classify_long_input``).
        labels : torch.Tensor, shape (batch, num_labels), optional
            Multi-hot window labels.
        frame_labels : torch.Tensor, shape (batch, time, num_labels), optional
            Multi-hot frame labels (adds the frame-level loss term).
        attention_mask : torch.Tensor, shape (batch, time), optional
            1 for real frames, 0 for padding; padding is left out of pooling and loss.
        """
        mask = check_features(self.config, input_features, attention_mask)
        frame_logits, logits = classify_long_input(
            self._classify_window, input_features, mask, self.config.window_frames
        )
        loss = instrument_loss(self.config, logits, frame_logits, labels, frame_labels, mask)
        output = InstrumentClassifierOutput(loss=loss, logits=logits, frame_logits=frame_logits)
        return output if (return_dict if return_dict is not None else self.config.return_dict) else output.to_tuple()
