"""EfficientAT ``mn04`` (a small MobileNetV3 AudioSet tagger) in PyTorch, as a frozen front end.

EfficientAT (Schmid, Koutini and Widmer, "Efficient large-scale audio tagging via transformer-to-CNN knowledge
distillation", ICASSP 2023; MIT licence, github.com/fschmid56/EfficientAT) trains MobileNetV3 networks on AudioSet
(labels CC BY 4.0) by distillation from transformer ensembles. ``mn04`` is the width-0.4 network: 0.98 M
parameters, AudioSet mAP 0.432, about a tenth of YAMNet's compute per second of audio.
``scripts/convert_efficientat.py`` turns its released PyTorch checkpoint into a state dict for
:class:`EfficientAtFrontend` with every batch norm folded into the convolution before it (the network is only
ever run in inference here); neither pickle nor the EfficientAT code is needed at run time.

Self-contained (imports only ``numpy``, ``torch`` and ``safetensors``), so the conversion script can load this
file by path, and it can be copied next to the weights.

Pipeline, as EfficientAT's own:

1. :func:`efficientat_log_mel`: 32-kHz mono waveform -> pre-emphasis ``x[n] - 0.97 x[n-1]``, STFT of an 800-sample
   symmetric Hann window in a 1024-point FFT every 320 samples (10 ms, centred frames), power spectrum, 128
   Kaldi-style mel bands from 0 to 15 kHz (:func:`efficientat_mel_filterbank`), ``(log(mel + 1e-5) + 4.5) / 5``.
2. :class:`EfficientAtFrontend`: log-mel ``(batch, 128, time)`` -> 384-d embedding (the mean of the last
   convolution's map) and 527 AudioSet logits.

The instrument classifier does not use step 1 as such: it reads the feature extractor's 2-ms frames of the same
log-mel (``feature_type="efficientat"``) and gives the network every fifth, which are exactly EfficientAT's 10-ms
frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

__all__ = [
    "EfficientAtFrontend",
    "EfficientAtOutput",
    "efficientat_log_mel",
    "efficientat_mel_filterbank",
]

#: Signal-processing settings EfficientAT was trained with (its ``AugmentMelSTFT`` at evaluation).
SAMPLING_RATE = 32000
WINDOW_LENGTH = 800  # 25 ms
HOP_LENGTH = 320  # 10 ms
N_FFT = 1024
N_MELS = 128
FMIN = 0.0
FMAX = 15000.0
PREEMPHASIS = 0.97
LOG_OFFSET = 1e-5
#: ``(log(mel + 1e-5) + SHIFT) / SCALE``: EfficientAT's fixed standardisation of its log-mel.
SHIFT, SCALE = 4.5, 5.0
EMBEDDING_SIZE = 384
HIDDEN_SIZE = 512
NUM_CLASSES = 527
#: The AudioSet classes (index in the 527-class order of AudioSet's ``class_labels_indices.csv``, display name,
#: ontology id) that name instruments of MusicNet. AudioSet has no viola, oboe or bassoon class.
AUDIOSET_CLASSES = {
    "Piano": (153, "/m/05r5c"),
    "Harpsichord": (160, "/m/03q5t"),
    "French horn": (186, "/m/0319l"),
    "Violin, fiddle": (191, "/m/07y_7"),
    "Cello": (193, "/m/01xqw"),
    "Double bass": (194, "/m/02fsn"),
    "Flute": (196, "/m/0l14j_"),
    "Clarinet": (198, "/m/01wy6"),
}

#: MobileNetV3-Large's inverted-residual blocks at width 1: ``(kernel, expanded channels, output channels,
#: squeeze-excitation, hard-swish (else ReLU), stride)``. The stem (3x3, stride 2, 16 channels, hard-swish) comes
#: before, a 1x1 convolution to ``6 x 160`` channels (hard-swish) after.
BLOCKS: Tuple[Tuple[int, int, int, bool, bool, int], ...] = (
    (3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1),
)
STEM_CHANNELS = 16
WIDTH = 0.4


def scaled_channels(channels: float, width: float = WIDTH, divisor: int = 8) -> int:
    """Channels at a width multiplier, rounded to a multiple of ``divisor`` never below 90 % of the exact number
    (MobileNet's ``_make_divisible``)."""
    value = channels * width
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


# ---------------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------------

def efficientat_mel_filterbank(
    sampling_rate: int = SAMPLING_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN,
    fmax: float = FMAX,
) -> np.ndarray:
    """Kaldi's mel filters, shape ``(n_mels, 1 + n_fft // 2)``, float32: triangles linear on the HTK mel scale
    (``1127 ln(1 + f / 700)``), edges equally spaced in mel from ``fmin`` to ``fmax``, unnormalised, no weight on
    the Nyquist bin (``torchaudio.compliance.kaldi.get_mel_banks`` padded by one zero column, as EfficientAT uses
    it)."""
    mel = lambda hz: 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)  # noqa: E731
    bins = n_fft // 2
    bin_mels = mel(np.arange(bins) * sampling_rate / n_fft)
    edges = np.linspace(mel(fmin), mel(fmax), n_mels + 2)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_mels[None, :] - lower) / (centre - lower)
    falling = (upper - bin_mels[None, :]) / (upper - centre)
    weights = np.zeros((n_mels, bins + 1))
    weights[:, :bins] = np.maximum(0.0, np.minimum(rising, falling))
    return weights.astype(np.float32)


def efficientat_log_mel(waveform: Union[np.ndarray, torch.Tensor], sampling_rate: int = SAMPLING_RATE) -> torch.Tensor:
    """EfficientAT's input: standardised log-mel ``(128, frames)`` of a mono waveform, ``1 + n // 320`` centred
    frames. Two details differ from EfficientAT's code, at the ends only: the pre-emphasis takes ``x[-1] = 0``
    where EfficientAT drops the first sample (a 31-us shift), and the signal is padded with zeros where
    EfficientAT reflects it, which changes the first and last two frames (as the feature extractor's streamed
    frames, which are padded with zeros too)."""
    if sampling_rate != SAMPLING_RATE:
        raise ValueError(f"EfficientAT needs {SAMPLING_RATE}-Hz audio, got sampling_rate={sampling_rate}; "
                         "resample first")
    waveform = torch.as_tensor(waveform).to(torch.float32)
    if waveform.ndim != 1 or waveform.numel() == 0:
        raise ValueError(f"expected mono audio of shape (n_samples,), got shape {tuple(waveform.shape)}")
    emphasized = waveform - PREEMPHASIS * F.pad(waveform, (1, 0))[:-1]
    spectrum = torch.stft(emphasized, N_FFT, HOP_LENGTH, win_length=WINDOW_LENGTH,
                          window=torch.hann_window(WINDOW_LENGTH, periodic=False), center=True, pad_mode="constant",
                          return_complex=True)
    mel = torch.from_numpy(efficientat_mel_filterbank()) @ (spectrum.real.square() + spectrum.imag.square())
    return (torch.log(mel + LOG_OFFSET) + SHIFT) / SCALE


# ---------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------

def _conv(in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, depthwise: bool = False) -> nn.Conv2d:
    """A convolution with its batch norm folded in (hence a bias), zero-padded to keep ``size / stride``."""
    return nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2,
                     groups=in_channels if depthwise else 1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the map's mean: ``sigmoid(W2 relu(W1 mean))`` times the map."""

    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.reduce = nn.Linear(channels, squeezed)
        self.expand = nn.Linear(squeezed, channels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        gates = torch.sigmoid(self.expand(F.relu(self.reduce(hidden.mean(dim=(2, 3))))))
        return hidden * gates[:, :, None, None]


class InvertedResidual(nn.Module):
    """MobileNetV3 block: 1x1 expansion (unless the width stays), depthwise ``kernel`` convolution, optional
    squeeze-excitation, 1x1 projection without activation; a residual connection when shape allows."""

    def __init__(self, in_channels: int, kernel: int, expanded: int, out_channels: int, squeeze_excite: bool,
                 hard_swish: bool, stride: int):
        super().__init__()
        self.activation = F.hardswish if hard_swish else F.relu
        self.expand = _conv(in_channels, expanded) if expanded != in_channels else None
        self.depthwise = _conv(expanded, expanded, kernel, stride, depthwise=True)
        self.squeeze_excite = SqueezeExcitation(expanded, scaled_channels(expanded // 4, 1.0)) if squeeze_excite \
            else None
        self.project = _conv(expanded, out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out = hidden if self.expand is None else self.activation(self.expand(hidden))
        out = self.activation(self.depthwise(out))
        if self.squeeze_excite is not None:
            out = self.squeeze_excite(out)
        out = self.project(out)
        return out + hidden if self.residual else out


@dataclass
class EfficientAtOutput:
    """Outputs of :class:`EfficientAtFrontend` for a batch of log-mel spectrograms.

    Attributes
    ----------
    embedding : torch.Tensor, shape (batch, 384)
        The mean over frequency and time of the last convolution's map (after its hard-swish).
    logits : torch.Tensor, shape (batch, 527)
        AudioSet class logits (``sigmoid`` gives the tagger's scores).
    hidden_states : list of torch.Tensor, optional
        The stem's and each block's output and the last convolution's, ``(batch, channels, freq, time)``.
    """

    embedding: torch.Tensor
    logits: torch.Tensor
    hidden_states: Optional[List[torch.Tensor]] = None


class EfficientAtFrontend(nn.Module):
    """EfficientAT's MobileNetV3 as a PyTorch module: log-mel ``(batch, 128, time)`` -> embedding and AudioSet
    logits. Load converted weights with :meth:`from_safetensors`. Convolutional before its global mean, so any
    length of at least 32 frames runs; it was trained on 10-s clips."""

    def __init__(self, n_mels: int = N_MELS, width: float = WIDTH, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.n_mels = n_mels
        self.stem = _conv(1, scaled_channels(STEM_CHANNELS, width), 3, 2)
        channels, blocks = scaled_channels(STEM_CHANNELS, width), []
        for kernel, expanded, out_channels, squeeze_excite, hard_swish, stride in BLOCKS:
            out_channels = scaled_channels(out_channels, width)
            blocks.append(InvertedResidual(channels, kernel, scaled_channels(expanded, width), out_channels,
                                           squeeze_excite, hard_swish, stride))
            channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.last_conv = _conv(channels, 6 * channels)
        self.hidden = nn.Linear(6 * channels, scaled_channels(1280, width))
        self.classifier = nn.Linear(scaled_channels(1280, width), num_classes)

    @classmethod
    def from_safetensors(cls, path: str) -> "EfficientAtFrontend":
        """Build the model and load a ``scripts/convert_efficientat.py`` state dict strictly; returned in eval
        mode."""
        model = cls()
        model.load_state_dict(load_file(path), strict=True)
        return model.eval()

    def forward(self, log_mel: torch.Tensor, output_hidden_states: bool = False) -> EfficientAtOutput:
        """Embed and tag standardised log-mel spectrograms ``(batch, n_mels, time)``."""
        if log_mel.ndim != 3 or log_mel.shape[1] != self.n_mels:
            raise ValueError(f"expected log-mel (batch, {self.n_mels}, time), got {tuple(log_mel.shape)}")
        # channels-last maps after the one-channel stem: oneDNN's depthwise convolutions run faster on them
        hidden = F.hardswish(self.stem(log_mel.unsqueeze(1))).contiguous(memory_format=torch.channels_last)
        states = [hidden] if output_hidden_states else None
        for block in self.blocks:
            hidden = block(hidden)
            if states is not None:
                states.append(hidden)
        hidden = F.hardswish(self.last_conv(hidden))
        if states is not None:
            states.append(hidden)
        embedding = hidden.mean(dim=(2, 3))
        logits = self.classifier(F.hardswish(self.hidden(embedding)))
        return EfficientAtOutput(embedding=embedding, logits=logits, hidden_states=states)

    @torch.no_grad()
    def tag_waveform(self, waveform: Union[np.ndarray, torch.Tensor]) -> EfficientAtOutput:
        """32-kHz mono waveform -> one output row for the whole of it (EfficientAT's own front end)."""
        parameter = next(self.parameters())
        log_mel = efficientat_log_mel(waveform).unsqueeze(0).to(parameter.device, parameter.dtype)
        return self(log_mel)
