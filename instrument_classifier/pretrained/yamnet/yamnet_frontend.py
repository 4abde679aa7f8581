"""YAMNet (Google's AudioSet sound-event tagger, MobileNet v1) in PyTorch, as a frozen front end.

YAMNet (Apache-2.0, tensorflow/models ``research/audioset/yamnet``; trained on AudioSet, whose labels are
CC BY 4.0) maps 0.96-s patches of 64-band log-mel frames to a 1024-d embedding and 521 AudioSet class logits.
``scripts/convert_yamnet.py`` turns the TF-Hub TFLite model (dynamic-range int8 weights, batch norm folded into
the convolutions' biases) into a state dict for :class:`YamnetFrontend`, dequantized; neither TensorFlow nor
pickle is needed at run time: the weights are read from safetensors.

Self-contained (imports only ``numpy`` and ``torch``), so the conversion script can load this file by path in an
environment without ``transformers``, and it can be copied next to the weights.

Pipeline, as YAMNet's own:

1. :func:`yamnet_log_mel`: 16-kHz mono waveform -> ``log(mel_magnitude + 0.001)``: frames of 400 samples
   (25 ms, periodic Hann) every 160 (10 ms), not centred, zero-padded to a 512-point FFT, magnitude spectrum,
   64 HTK-scale mel bands from 125 to 7500 Hz (:func:`yamnet_mel_filterbank`).
2. :func:`yamnet_patches`: patches of 96 frames (0.96 s) every 48 (0.48 s).
3. :class:`YamnetFrontend`: patches ``(batch, 96, 64)`` -> 1024-d embedding and 521 AudioSet logits
   (the sigmoid of which are YAMNet's scores).

The instrument classifier does not use steps 1-2: it reads the feature extractor's 8-ms frames
(``feature_type="yamnet"``) and brings them to YAMNet's 10-ms grid with :func:`resample_frames`.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

__all__ = [
    "YamnetFrontend",
    "YamnetOutput",
    "patch_starts",
    "resample_frames",
    "yamnet_log_mel",
    "yamnet_mel_filterbank",
    "yamnet_patches",
]

#: Signal-processing settings YAMNet was trained with (``yamnet/params.py``).
SAMPLING_RATE = 16000
WINDOW_LENGTH = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms
N_FFT = 512
N_MELS = 64
FMIN = 125.0
FMAX = 7500.0
LOG_OFFSET = 0.001
PATCH_FRAMES = 96  # 0.96 s
PATCH_HOP = 48  # 0.48 s
EMBEDDING_SIZE = 1024
NUM_CLASSES = 521

#: ``(stride, output channels)`` of the 13 depthwise-separable blocks after the first (3x3, stride 2, 32-channel)
#: convolution: MobileNet v1.
BLOCKS: Tuple[Tuple[int, int], ...] = (
    (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512), (1, 512), (1, 512), (1, 512), (1, 512), (1, 512),
    (2, 1024), (1, 1024),
)
STEM_CHANNELS = 32


# ---------------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------------

def _hz_to_mel_htk(freqs: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(freqs, dtype=np.float64) / 700.0)


def yamnet_mel_filterbank(
    sampling_rate: int = SAMPLING_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN,
    fmax: float = FMAX,
) -> np.ndarray:
    """HTK-scale triangular mel filters, shape ``(n_mels, 1 + n_fft // 2)``, float32, unnormalised.

    The triangles are linear in mel (not in Hz), their edges equally spaced in mel from ``fmin`` to ``fmax``, and
    the DC bin gets no weight: TensorFlow's ``tf.signal.linear_to_mel_weight_matrix`` (transposed), which YAMNet
    uses; equal to ``transformers.audio_utils.mel_filter_bank(..., norm=None, mel_scale="htk",
    triangularize_in_mel_space=True)``.
    """
    bins = 1 + n_fft // 2
    bin_mels = _hz_to_mel_htk(np.linspace(0.0, sampling_rate / 2.0, bins))
    edges = np.linspace(_hz_to_mel_htk(fmin), _hz_to_mel_htk(fmax), n_mels + 2)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_mels[None, :] - lower) / (centre - lower)
    falling = (upper - bin_mels[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[:, 0] = 0.0
    return weights.astype(np.float32)


def yamnet_log_mel(waveform: Union[np.ndarray, torch.Tensor], sampling_rate: int = SAMPLING_RATE) -> torch.Tensor:
    """YAMNet's input: ``log(mel magnitude + 0.001)`` of frames of 400 samples every 160, shape ``(frames, 64)``.

    The frames are not centred (frame ``k`` covers samples ``160 k`` to ``160 k + 399``): ``1 + (n - 400) // 160``
    of them; a waveform shorter than one frame is zero-padded to one.
    """
    if sampling_rate != SAMPLING_RATE:
        raise ValueError(f"YAMNet needs {SAMPLING_RATE}-Hz audio, got sampling_rate={sampling_rate}; resample first")
    waveform = torch.as_tensor(waveform).to(torch.float32)
    if waveform.ndim != 1 or waveform.numel() == 0:
        raise ValueError(f"expected mono audio of shape (n_samples,), got shape {tuple(waveform.shape)}")
    if waveform.numel() < WINDOW_LENGTH:
        waveform = F.pad(waveform, (0, WINDOW_LENGTH - waveform.numel()))
    frames = waveform.unfold(0, WINDOW_LENGTH, HOP_LENGTH) * torch.hann_window(WINDOW_LENGTH, periodic=True)
    magnitude = torch.fft.rfft(frames, n=N_FFT).abs()
    mel = magnitude @ torch.from_numpy(yamnet_mel_filterbank()).T
    return torch.log(mel + LOG_OFFSET)


def yamnet_patches(log_mel: torch.Tensor, hop_frames: int = PATCH_HOP) -> torch.Tensor:
    """Patches ``(n_patches, 96, 64)`` of a log-mel spectrogram every ``hop_frames`` frames; a spectrogram shorter
    than a patch is completed with the log of silence (``log(0.001)``)."""
    log_mel = torch.as_tensor(log_mel, dtype=torch.float32)
    if log_mel.shape[0] < PATCH_FRAMES:
        log_mel = F.pad(log_mel, (0, 0, 0, PATCH_FRAMES - log_mel.shape[0]), value=math.log(LOG_OFFSET))
    return log_mel.unfold(0, PATCH_FRAMES, hop_frames).transpose(1, 2).contiguous()


def resample_frames(features: torch.Tensor, ratio: float) -> torch.Tensor:
    """Frames ``(batch, time, bands)`` read every ``ratio`` input frames, by linear interpolation in time.

    Output frame ``k`` is at input position ``ratio * k`` (between frames ``floor`` and ``floor + 1``), for every
    ``k`` with ``ratio * k <= time - 1``: ``1 + floor((time - 1) / ratio)`` frames. With 8-ms input frames and
    ``ratio`` 1.25 these are YAMNet's 10-ms frames (374 frames give 299).
    """
    time = features.shape[1]
    count = 1 + int(math.floor((time - 1) / ratio + 1e-9))
    position = torch.arange(count, dtype=torch.float64) * ratio
    low = position.floor().long().clamp(max=time - 1)
    high = (low + 1).clamp(max=time - 1)
    weight = (position - low).to(features.dtype).to(features.device)[None, :, None]
    low, high = low.to(features.device), high.to(features.device)
    return features[:, low] * (1 - weight) + features[:, high] * weight


def patch_starts(num_frames: int, patches: int, patch_frames: int = PATCH_FRAMES) -> List[int]:
    """First frames of ``patches`` patches of ``patch_frames`` frames spread evenly over ``num_frames`` frames: the
    first at 0, the last ending at the last frame (``round(linspace(0, num_frames - patch_frames, patches))``,
    halves to even as numpy rounds)."""
    if num_frames < patch_frames:
        raise ValueError(f"{num_frames} frames hold no patch of {patch_frames}")
    return [int(s) for s in np.round(np.linspace(0, num_frames - patch_frames, patches))]


# ---------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------

def _same_padding(size: int, stride: int, kernel: int = 3) -> Tuple[int, int]:
    """TensorFlow's 'same' padding of one axis: ``(before, after)``, one more after than before when odd."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


class YamnetConv(nn.Module):
    """3x3 convolution (full or depthwise) with TF 'same' padding, then ReLU (batch norm is folded into the bias).

    At stride 1 'same' pads one zero on each side (the convolution's own padding); at stride 2 TensorFlow puts the
    odd zero after, which an explicit pad reproduces."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, depthwise: bool):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1 if stride == 1 else 0,
                              groups=in_channels if depthwise else 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            time_pad = _same_padding(hidden.shape[2], self.stride)
            freq_pad = _same_padding(hidden.shape[3], self.stride)
            hidden = F.pad(hidden, (*freq_pad, *time_pad))
        return F.relu(self.conv(hidden))


class YamnetSeparableBlock(nn.Module):
    """Depthwise 3x3 convolution + ReLU, then pointwise 1x1 convolution + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.depthwise = YamnetConv(in_channels, in_channels, stride, depthwise=True)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, hidden: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        depthwise = self.depthwise(hidden)
        return depthwise, F.relu(self.pointwise(depthwise))


@dataclass
class YamnetOutput:
    """Outputs of :class:`YamnetFrontend` for a batch of patches.

    Attributes
    ----------
    embedding : torch.Tensor, shape (batch, 1024)
        The global average of the last convolution's map: YAMNet's embedding.
    logits : torch.Tensor, shape (batch, 521)
        AudioSet class logits (``sigmoid`` gives YAMNet's scores).
    hidden_states : list of torch.Tensor, optional
        Output of every convolution (after its ReLU), ``(batch, channels, time, freq)``: the first convolution,
        then each block's depthwise and pointwise convolutions (27 maps).
    """

    embedding: torch.Tensor
    logits: torch.Tensor
    hidden_states: Optional[List[torch.Tensor]] = None


class YamnetFrontend(nn.Module):
    """YAMNet as a PyTorch module: log-mel patches ``(batch, 96, 64)`` -> embedding and AudioSet logits.

    Load converted weights with :meth:`from_safetensors`. The network is convolutional before its global average
    pool, so other patch lengths run too; it was trained on 96 frames.
    """

    def __init__(self, n_mels: int = N_MELS, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.n_mels = n_mels
        self.stem = YamnetConv(1, STEM_CHANNELS, stride=2, depthwise=False)
        channels, blocks = STEM_CHANNELS, []
        for stride, out_channels in BLOCKS:
            blocks.append(YamnetSeparableBlock(channels, out_channels, stride))
            channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Linear(channels, num_classes)

    @classmethod
    def from_safetensors(cls, path: str) -> "YamnetFrontend":
        """Build the model and load a ``scripts/convert_yamnet.py`` state dict strictly; returned in eval mode."""
        model = cls()
        model.load_state_dict(load_file(path), strict=True)
        return model.eval()

    def forward(self, patches: torch.Tensor, output_hidden_states: bool = False) -> YamnetOutput:
        """Embed and tag log-mel patches ``(batch, time, n_mels)`` (time 96 for the trained model)."""
        if patches.ndim != 3 or patches.shape[-1] != self.n_mels:
            raise ValueError(f"expected log-mel patches (batch, time, {self.n_mels}), got {tuple(patches.shape)}")
        # channels-last maps (set after the one-channel input, where the layout means nothing): PyTorch's CPU (oneDNN)
        # convolutions, the depthwise ones above all, run ~1.7x faster on them; the numbers are the same
        hidden = self.stem(patches.unsqueeze(1)).contiguous(memory_format=torch.channels_last)
        states = [hidden] if output_hidden_states else None
        for block in self.blocks:
            depthwise, hidden = block(hidden)
            if states is not None:
                states += [depthwise, hidden]
        embedding = hidden.mean(dim=(2, 3))
        return YamnetOutput(embedding=embedding, logits=self.classifier(embedding), hidden_states=states)

    @torch.no_grad()
    def embed_waveform(self, waveform: Union[np.ndarray, torch.Tensor], hop_frames: int = PATCH_HOP,
                       batch_size: int = 64) -> YamnetOutput:
        """16-kHz mono waveform -> one output row per patch of :func:`yamnet_patches` (YAMNet's own framing)."""
        patches = yamnet_patches(yamnet_log_mel(waveform), hop_frames)
        parameter = next(self.parameters())
        outs = [self(patches[i : i + batch_size].to(parameter.device, parameter.dtype))
                for i in range(0, len(patches), batch_size)]
        return YamnetOutput(embedding=torch.cat([o.embedding for o in outs]),
                            logits=torch.cat([o.logits for o in outs]))


def class_names(csv_text: str) -> Sequence[str]:
    """Display names from YAMNet's ``yamnet_class_map.csv`` (``index,mid,display_name``), in output order."""
    rows = list(csv.reader(io.StringIO(csv_text)))
    return [row[2] for row in rows[1:] if row]
