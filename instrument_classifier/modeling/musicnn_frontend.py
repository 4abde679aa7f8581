"""musicnn (Pons & Serra, 2019) in PyTorch: a music-tagging CNN trained on real recordings, as a front end.

The ``MTT_musicnn`` model of the ``musicnn==0.1.0`` wheel (ISC licence, Music Technology Group,
Universitat Pompeu Fabra; trained on MagnaTagATune) re-implemented from its description in
``musicnn/models.py``; ``scripts/convert_musicnn.py`` turns the wheel's TensorFlow checkpoint into a
state dict for :class:`MusicnnFrontend`. Neither TensorFlow nor pickle is needed at run time: the
weights are read from safetensors.

Self-contained (imports only ``numpy``, ``torch`` and ``safetensors``), so the conversion script can load this
file by path in an environment without ``transformers``, and it can be copied next to the weights.

Pipeline, as in ``musicnn.extractor``:

1. :func:`musicnn_log_mel`: 16-kHz mono waveform -> ``log10(10000 * mel_power + 1)``, 96 Slaney mel
   bands of a 512-point STFT with hop 256 (equal to ``librosa.feature.melspectrogram`` with its
   defaults), the mel power rounded to float16 first as musicnn does.
2. :func:`musicnn_patches`: cut into patches of 187 frames (3 s); musicnn's hop is one patch, any hop
   works here, and clips shorter than one patch are padded (upstream crashes on them).
3. :class:`MusicnnFrontend`: patches ``(batch, 187, 96)`` -> 50 MagnaTagATune tag logits, the per-frame
   front-/mid-end features and the 200-d penultimate embedding of each patch.

:meth:`MusicnnFrontend.embed_waveform` chains the three. Unlike upstream ``extractor()``, whose loop
returns the first patch's penultimate / mid-end features for every later patch, every patch here gets
its own outputs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

__all__ = [
    "MTT_TAGS",
    "MusicnnConfig",
    "MusicnnFrontend",
    "MusicnnOutput",
    "musicnn_log_mel",
    "musicnn_mel_filterbank",
    "musicnn_patches",
    "musicnn_preprocess",
]

#: The 50 MagnaTagATune tags, in the order of the model's outputs (``musicnn.configuration.MTT_LABELS``).
MTT_TAGS: Tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop",
    "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
)

#: Signal-processing settings the model was trained with (``musicnn/configuration.py`` and the MTT config).
SAMPLING_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
PATCH_FRAMES = 187  # 3 s: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1


# ---------------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------------

def _hz_to_mel(freqs: np.ndarray) -> np.ndarray:
    # Slaney's auditory-toolbox scale (librosa's default, htk=False): linear below 1 kHz, log above.
    freqs = np.asanyarray(freqs, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(
        freqs >= min_log_hz,
        min_log_mel + np.log(np.maximum(freqs, 1e-10) / min_log_hz) / logstep,
        freqs / f_sp,
    )


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asanyarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


def musicnn_mel_filterbank(
    sampling_rate: int = SAMPLING_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS
) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular mel filters from 0 Hz to Nyquist.

    Equal to ``librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=n_mels)``, the filters behind
    musicnn's ``librosa.feature.melspectrogram`` call (computed in float64, returned as float32 like
    librosa's).

    Parameters
    ----------
    sampling_rate : int
        Sampling rate of the analysed audio in Hz.
    n_fft : int
        FFT size; the filters have ``1 + n_fft // 2`` columns.
    n_mels : int
        Number of mel bands.

    Returns
    -------
    np.ndarray, shape (n_mels, 1 + n_fft // 2), float32
    """
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sampling_rate)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sampling_rate / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    # Slaney normalisation: each triangle has unit area, so wide high bands do not dominate.
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    return (weights * enorm[:, None]).astype(np.float32)


def musicnn_log_mel(
    waveform: Union[np.ndarray, torch.Tensor],
    sampling_rate: int = SAMPLING_RATE,
    n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
    n_mels: int = N_MELS,
    pad_mode: str = "constant",
    quantize_float16: bool = True,
) -> torch.Tensor:
    """musicnn's input representation: ``log10(10000 * mel_power + 1)`` per frame.

    Reproduces ``musicnn.extractor.batch_data`` on an already-loaded waveform: a centred STFT with a
    periodic Hann window, power spectrum, Slaney mel filters (``librosa.feature.melspectrogram`` with its
    defaults), rounding to float16 (musicnn stores the mel power as float16, as its training data was),
    then the log compression in float32.

    Parameters
    ----------
    waveform : np.ndarray or torch.Tensor, shape (n_samples,)
        Mono audio at ``sampling_rate`` (musicnn reads files with ``librosa.load(sr=16000)``: average
        the channels and resample first, e.g. with ``instrument_classifier.audio.load_audio(path, sr=16000)``).
    sampling_rate : int
        Must be 16000, the rate the model was trained at; anything else is refused, not resampled.
    n_fft, hop_length, n_mels : int
        STFT size, hop and number of mel bands (512, 256 and 96 for the released models).
    pad_mode : {"constant", "reflect"}
        Padding of the centred STFT. ``"constant"`` (zeros) is librosa >= 0.10's default and so what
        ``musicnn`` computes today; librosa < 0.10, which produced the training data, reflected. Only the
        first and last frame differ.
    quantize_float16 : bool
        Round the mel power to float16 before the log, as musicnn does. The log itself is taken in
        float32: under numpy >= 2 upstream's ``10000 * float16_array`` stays float16 and overflows to
        ``inf`` for mel power above 6.55, which is a numpy-2 accident, not the trained behaviour.

    Returns
    -------
    torch.Tensor, shape (n_frames, n_mels), float32
        ``n_frames = 1 + n_samples // hop_length``.
    """
    if sampling_rate != SAMPLING_RATE:
        raise ValueError(f"musicnn needs {SAMPLING_RATE}-Hz audio, got sampling_rate={sampling_rate}; resample first")
    waveform = torch.as_tensor(waveform)
    if waveform.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n_samples,), got shape {tuple(waveform.shape)}")
    if waveform.numel() == 0:
        raise ValueError("zero-length audio: musicnn needs at least one sample")
    if not torch.isfinite(waveform).all():
        raise ValueError("audio contains NaN or infinite samples")
    # float32 throughout, like librosa on the float32 audio librosa.load returns.
    waveform = waveform.to(torch.float32)
    if pad_mode == "reflect" and waveform.numel() <= n_fft // 2:
        pad_mode = "constant"  # reflection needs more samples than the pad; librosa raises here
    spectrum = torch.stft(
        waveform,
        n_fft=n_fft,
        hop_length=hop_length,
        window=torch.hann_window(n_fft, periodic=True, dtype=torch.float32),
        center=True,
        pad_mode=pad_mode,
        return_complex=True,
    )
    power = spectrum.real.square() + spectrum.imag.square()  # (1 + n_fft // 2, n_frames)
    mel_filters = torch.from_numpy(musicnn_mel_filterbank(sampling_rate, n_fft, n_mels))
    mel_power = (mel_filters @ power).T.contiguous()  # (n_frames, n_mels)
    if quantize_float16:
        mel_power = mel_power.to(torch.float16).to(torch.float32)
    return torch.log10(10000.0 * mel_power + 1.0)


def musicnn_patches(
    log_mel: Union[np.ndarray, torch.Tensor],
    patch_frames: int = PATCH_FRAMES,
    hop_frames: Optional[int] = None,
    pad_short: str = "repeat",
    drop_last: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cut a log-mel spectrogram into (possibly overlapping) patches of ``patch_frames`` frames.

    Parameters
    ----------
    log_mel : np.ndarray or torch.Tensor, shape (n_frames, n_mels)
        Output of :func:`musicnn_log_mel`.
    patch_frames : int
        Frames per patch (187, 3 s, the length the models were trained on).
    hop_frames : int, optional
        Frames between patch starts; ``None`` means ``patch_frames`` (no overlap, musicnn's default).
        For example 62 gives a taggram every ~1 s with 2 s of overlap.
    pad_short : {"repeat", "zeros"}
        How a spectrogram shorter than one patch is completed. ``"repeat"`` tiles it in time, as the
        MTT model's training did for short clips (``"pad_short": "repeat-pad"`` in its config);
        ``"zeros"`` appends log-mel 0, i.e. digital silence. Upstream ``extractor()`` crashes instead.
    drop_last : bool
        ``True``: as musicnn, no patch for the frames after the last full patch. ``False``: one more
        patch covering them, completed as ``pad_short`` says, so the whole clip is seen.

    Returns
    -------
    patches : torch.Tensor, shape (n_patches, patch_frames, n_mels)
    start_frames : torch.Tensor, shape (n_patches,), int64
        First frame of each patch (multiply by ``hop_length / sampling_rate`` for seconds).
    """
    log_mel = torch.as_tensor(log_mel, dtype=torch.float32)
    if log_mel.ndim != 2 or log_mel.shape[0] == 0:
        raise ValueError(f"expected a log-mel spectrogram of shape (n_frames, n_mels), got {tuple(log_mel.shape)}")
    hop_frames = patch_frames if hop_frames is None else int(hop_frames)
    if patch_frames < 1 or hop_frames < 1:
        raise ValueError(f"patch_frames and hop_frames must be positive, got {patch_frames} and {hop_frames}")
    if pad_short not in ("repeat", "zeros"):
        raise ValueError(f"pad_short must be 'repeat' or 'zeros', got {pad_short!r}")

    n_frames = log_mel.shape[0]
    starts = list(range(0, max(n_frames - patch_frames, 0) + 1, hop_frames))
    if n_frames >= patch_frames and not drop_last and starts[-1] + patch_frames < n_frames:
        starts.append(starts[-1] + hop_frames)
    patches = []
    for start in starts:
        patch = log_mel[start : start + patch_frames]
        if patch.shape[0] < patch_frames:
            patch = _complete_patch(patch, patch_frames, pad_short)
        patches.append(patch)
    return torch.stack(patches), torch.tensor(starts, dtype=torch.int64)


def _complete_patch(patch: torch.Tensor, patch_frames: int, pad_short: str) -> torch.Tensor:
    missing = patch_frames - patch.shape[0]
    if pad_short == "repeat":
        repeats = -(-patch_frames // patch.shape[0])
        return patch.repeat(repeats, 1)[:patch_frames]
    return F.pad(patch, (0, 0, 0, missing))


def musicnn_preprocess(
    waveform: Union[np.ndarray, torch.Tensor],
    sampling_rate: int = SAMPLING_RATE,
    hop_frames: Optional[int] = None,
    pad_short: str = "repeat",
    drop_last: bool = True,
    pad_mode: str = "constant",
    quantize_float16: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """16-kHz mono waveform -> model input patches: :func:`musicnn_log_mel` then :func:`musicnn_patches`.

    Parameters
    ----------
    waveform : np.ndarray or torch.Tensor, shape (n_samples,)
        Mono audio at 16 kHz.
    sampling_rate : int
        Must be 16000.
    hop_frames : int, optional
        Hop between patches in STFT frames (16 ms each); ``None``: 187, no overlap.
    pad_short, drop_last :
        See :func:`musicnn_patches`.
    pad_mode, quantize_float16 :
        See :func:`musicnn_log_mel`.

    Returns
    -------
    patches : torch.Tensor, shape (n_patches, 187, 96)
    start_frames : torch.Tensor, shape (n_patches,), int64
    """
    log_mel = musicnn_log_mel(waveform, sampling_rate, pad_mode=pad_mode, quantize_float16=quantize_float16)
    return musicnn_patches(log_mel, PATCH_FRAMES, hop_frames, pad_short=pad_short, drop_last=drop_last)


# ---------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------

@dataclass
class MusicnnConfig:
    """Hyper-parameters of musicnn; the defaults are the released ``MTT_musicnn`` (and ``MSD_musicnn``).

    Parameters
    ----------
    n_mels : int
        Mel bands of the input (96).
    timbral_filters : int
        Filters of each timbral convolution: ``int(1.6 * 128) = 204``.
    timbral_kernel_frames : int
        Time extent of the timbral filters (7 frames, 112 ms).
    timbral_kernel_mels : tuple of int
        Frequency extents of the timbral filters: ``int(0.4 * 96) = 38`` and ``int(0.7 * 96) = 67`` bands.
    temporal_filters : int
        Filters of each temporal convolution: ``int(1.6 * 32) = 51``.
    temporal_kernel_frames : tuple of int
        Time extents of the temporal (one-band-wide) filters: 128, 64 and 32 frames (2 s, 1 s, 0.5 s).
    midend_filters : int
        Channels of the mid-end convolutions (64; 512 for ``MSD_musicnn_big``, which is not in the wheel).
    midend_kernel_frames : int
        Time extent of the mid-end convolutions (7).
    midend_layers : int
        Mid-end convolutions (3); all but the first add a residual connection.
    backend_units : int
        Width of the penultimate dense layer (200).
    num_tags : int
        Outputs (50 MagnaTagATune tags).
    batch_norm_eps : float
        TF 1.x ``layers.batch_normalization`` default, 1e-3 (not torch's 1e-5).
    batch_norm_momentum : float
        Torch convention (weight of the new batch statistics): 0.01 is TF's ``momentum=0.99``.
    dropout : float
        Dropout before each dense layer, active in training only (0.5).
    """

    n_mels: int = N_MELS
    timbral_filters: int = 204
    timbral_kernel_frames: int = 7
    timbral_kernel_mels: Tuple[int, ...] = (38, 67)
    temporal_filters: int = 51
    temporal_kernel_frames: Tuple[int, ...] = (128, 64, 32)
    midend_filters: int = 64
    midend_kernel_frames: int = 7
    midend_layers: int = 3
    backend_units: int = 200
    num_tags: int = 50
    batch_norm_eps: float = 1e-3
    batch_norm_momentum: float = 0.01
    dropout: float = 0.5

    @property
    def frontend_size(self) -> int:
        """Channels per frame out of the front end (561)."""
        return (len(self.timbral_kernel_mels) * self.timbral_filters
                + len(self.temporal_kernel_frames) * self.temporal_filters)

    @property
    def frame_features_size(self) -> int:
        """Channels per frame entering the back-end pooling: front end plus every mid-end layer (753)."""
        return self.frontend_size + self.midend_layers * self.midend_filters

    def to_dict(self) -> dict:
        """JSON-ready values (tuples as lists)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}

    @classmethod
    def from_dict(cls, values: dict) -> "MusicnnConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in known})


@dataclass
class MusicnnOutput:
    """Outputs of :class:`MusicnnFrontend`, one row per input patch.

    Attributes
    ----------
    logits : torch.Tensor, shape (batch, num_tags)
        Tag logits; ``probabilities`` is their sigmoid (musicnn's taggram).
    probabilities : torch.Tensor, shape (batch, num_tags)
    penultimate : torch.Tensor, shape (batch, backend_units)
        The 200-d embedding before the output layer (after its ReLU and batch norm), musicnn's
        ``penultimate`` feature.
    mean_pool, max_pool : torch.Tensor, shape (batch, frame_features_size)
        Time average and maximum of ``frame_features`` (753-d each).
    timbral : torch.Tensor, shape (batch, time, 2 * timbral_filters), optional
        Front-end timbral features per frame (408-d).
    temporal : torch.Tensor, shape (batch, time, 3 * temporal_filters), optional
        Front-end temporal features per frame (153-d).
    cnn1, cnn2, cnn3 : torch.Tensor, shape (batch, time, midend_filters), optional
        Mid-end layers per frame (the second and third include their residual sums), as musicnn's keys.
    frame_features : torch.Tensor, shape (batch, time, frame_features_size), optional
        ``timbral | temporal | cnn1 | cnn2 | cnn3`` per frame: what the back end pools.
    start_frames : torch.Tensor, shape (batch,), optional
        First STFT frame of each patch, set by :meth:`MusicnnFrontend.embed_waveform`.

    The per-frame fields are ``None`` when ``output_frame_features=False``.
    """

    logits: torch.Tensor
    probabilities: torch.Tensor
    penultimate: torch.Tensor
    mean_pool: torch.Tensor
    max_pool: torch.Tensor
    timbral: Optional[torch.Tensor] = None
    temporal: Optional[torch.Tensor] = None
    cnn1: Optional[torch.Tensor] = None
    cnn2: Optional[torch.Tensor] = None
    cnn3: Optional[torch.Tensor] = None
    frame_features: Optional[torch.Tensor] = None
    start_frames: Optional[torch.Tensor] = None

    def to_dict(self) -> dict:
        # Not dataclasses.asdict: it deep-copies every tensor.
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def _relu_norm_max_over_frequency(hidden: torch.Tensor, norm: nn.BatchNorm2d) -> torch.Tensor:
    """``norm(relu(hidden)).amax(dim=3)`` for ``(batch, channels, time, freq)``, cheaply at inference.

    musicnn pools after the ReLU and the batch norm. At inference the batch norm is a per-channel affine
    map ``a * x + c`` and ReLU is monotone, so both commute with the max over frequency: pool first, then
    apply them to a 96x (or 30-59x) smaller tensor. Where ``a < 0`` (about half of the trained timbral
    channels) the max of the normalised map is the normalised *min*, so both extremes are pooled. Exact,
    floating-point rounding being monotone too. In training mode (batch statistics) the literal order runs.
    """
    if norm.training or not norm.track_running_stats:
        return norm(F.relu(hidden)).amax(dim=3)
    low, high = torch.aminmax(hidden, dim=3)
    pooled = torch.where((norm.weight >= 0)[None, :, None], high, low)
    return F.batch_norm(F.relu(pooled), norm.running_mean, norm.running_var, norm.weight, norm.bias,
                        training=False, momentum=0.0, eps=norm.eps)


class MusicnnTimbralBlock(nn.Module):
    """Conv over ``frames x mel bands`` -> ReLU -> batch norm -> max over frequency.

    The filter spans many bands (38 or 67) but few frames, to capture spectral envelopes (timbre); the
    max over the remaining frequency positions makes it pitch invariant. Time is zero-padded by half
    the kernel on each side ('same' in time), frequency is not padded ('valid').
    """

    def __init__(self, config: MusicnnConfig, kernel_mels: int):
        super().__init__()
        self.time_padding = config.timbral_kernel_frames // 2
        self.conv = nn.Conv2d(1, config.timbral_filters, kernel_size=(config.timbral_kernel_frames, kernel_mels))
        self.norm = nn.BatchNorm2d(config.timbral_filters, eps=config.batch_norm_eps,
                                   momentum=config.batch_norm_momentum)

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, time, mels)`` -> ``(batch, filters, time)``."""
        padded = F.pad(spectrogram, (0, 0, self.time_padding, self.time_padding))
        # musicnn normalises after the ReLU, and before the pooling (gamma may be negative, so the order matters).
        return _relu_norm_max_over_frequency(self.conv(padded), self.norm)


class MusicnnTemporalBlock(nn.Module):
    """Conv along time only (one band wide) -> ReLU -> batch norm -> max over frequency.

    Long filters (0.5-2 s) in each band, for rhythm and tempo cues. TF's 'same' padding of an even
    kernel puts one more zero after than before (``(k - 1) // 2`` before), reproduced here.
    """

    def __init__(self, config: MusicnnConfig, kernel_frames: int):
        super().__init__()
        self.time_padding = ((kernel_frames - 1) // 2, kernel_frames - 1 - (kernel_frames - 1) // 2)
        self.conv = nn.Conv2d(1, config.temporal_filters, kernel_size=(kernel_frames, 1))
        self.norm = nn.BatchNorm2d(config.temporal_filters, eps=config.batch_norm_eps,
                                   momentum=config.batch_norm_momentum)

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, time, mels)`` -> ``(batch, filters, time)``."""
        padded = F.pad(spectrogram, (0, 0, *self.time_padding))
        return _relu_norm_max_over_frequency(self.conv(padded), self.norm)


class MusicnnMusicalFrontEnd(nn.Module):
    """musicnn's "musically motivated" front end: input batch norm, then timbral and temporal blocks.

    Returns the concatenated block outputs per frame, in musicnn's order (timbral 38-band, timbral
    67-band, temporal 128, 64, 32 frames): the mid end's first convolution depends on that order.
    """

    def __init__(self, config: MusicnnConfig):
        super().__init__()
        # One-channel batch norm: a learned global affine rescaling of the log-mel input.
        self.input_norm = nn.BatchNorm2d(1, eps=config.batch_norm_eps, momentum=config.batch_norm_momentum)
        self.timbral = nn.ModuleList(MusicnnTimbralBlock(config, k) for k in config.timbral_kernel_mels)
        self.temporal = nn.ModuleList(MusicnnTemporalBlock(config, k) for k in config.temporal_kernel_frames)

    def forward(self, spectrogram: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(batch, time, mels)`` -> timbral ``(batch, 408, time)`` and temporal ``(batch, 153, time)``."""
        normalized = self.input_norm(spectrogram.unsqueeze(1))
        timbral = torch.cat([block(normalized) for block in self.timbral], dim=1)
        temporal = torch.cat([block(normalized) for block in self.temporal], dim=1)
        return timbral, temporal


class MusicnnMidEndLayer(nn.Module):
    """Conv1d over time across all input channels -> ReLU -> batch norm (TF: a 2-D conv whose kernel
    spans the whole feature axis, i.e. the same thing)."""

    def __init__(self, config: MusicnnConfig, in_channels: int):
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels, config.midend_filters, kernel_size=config.midend_kernel_frames,
            padding=config.midend_kernel_frames // 2,
        )
        self.norm = nn.BatchNorm1d(config.midend_filters, eps=config.batch_norm_eps,
                                   momentum=config.batch_norm_momentum)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(F.relu(self.conv(hidden)))


class MusicnnMidEnd(nn.Module):
    """Three Conv1d layers; the second and third add their input (residual). Returns every layer's output."""

    def __init__(self, config: MusicnnConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            MusicnnMidEndLayer(config, config.frontend_size if i == 0 else config.midend_filters)
            for i in range(config.midend_layers)
        )

    def forward(self, frontend_features: torch.Tensor) -> List[torch.Tensor]:
        """``(batch, 561, time)`` -> list of ``(batch, 64, time)``, one per layer."""
        outputs = [self.layers[0](frontend_features)]
        for layer in self.layers[1:]:
            outputs.append(layer(outputs[-1]) + outputs[-1])
        return outputs


class MusicnnBackEnd(nn.Module):
    """Global max and mean pooling over time -> batch norm -> dense + ReLU -> batch norm -> output dense."""

    def __init__(self, config: MusicnnConfig):
        super().__init__()
        pooled = 2 * config.frame_features_size
        self.pool_norm = nn.BatchNorm1d(pooled, eps=config.batch_norm_eps, momentum=config.batch_norm_momentum)
        self.dropout = nn.Dropout(config.dropout)
        self.dense = nn.Linear(pooled, config.backend_units)
        self.dense_norm = nn.BatchNorm1d(config.backend_units, eps=config.batch_norm_eps,
                                         momentum=config.batch_norm_momentum)
        self.classifier = nn.Linear(config.backend_units, config.num_tags)

    def forward(self, frame_features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(batch, 753, time)`` -> logits, penultimate, mean_pool, max_pool."""
        max_pool = frame_features.amax(dim=2)
        mean_pool = frame_features.mean(dim=2)
        # musicnn concatenates (batch, 753, 1) max and mean maps on the last axis and flattens, so the
        # 1506 inputs alternate max_0, mean_0, max_1, mean_1, ... (the order the dense weights expect).
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)
        pooled = self.dropout(self.pool_norm(pooled))
        penultimate = self.dense_norm(F.relu(self.dense(pooled)))
        logits = self.classifier(self.dropout(penultimate))
        return logits, penultimate, mean_pool, max_pool


class MusicnnFrontend(nn.Module):
    """musicnn as a PyTorch module: log-mel patches -> MagnaTagATune tags and learned representations.

    Parameters
    ----------
    config : MusicnnConfig, optional
        Architecture; the default is ``MTT_musicnn`` (792,079 weights).

    Notes
    -----
    Load converted weights with :meth:`from_safetensors`; the module is then in eval mode (batch norm
    uses the stored statistics, as musicnn does at inference). The network is fully convolutional in
    time before the pooling, so patches of other lengths than 187 frames also run, as upstream allows;
    the model was trained on 187.

    Examples
    --------
    >>> model = MusicnnFrontend.from_safetensors("musicnn_mtt.safetensors")  # doctest: +SKIP
    >>> out = model.embed_waveform(waveform_16k, hop_frames=62)              # doctest: +SKIP
    >>> out.penultimate.shape                                                # doctest: +SKIP
    torch.Size([n_patches, 200])
    """

    tags: Tuple[str, ...] = MTT_TAGS

    def __init__(self, config: Optional[MusicnnConfig] = None):
        super().__init__()
        self.config = config or MusicnnConfig()
        self.front_end = MusicnnMusicalFrontEnd(self.config)
        self.mid_end = MusicnnMidEnd(self.config)
        self.back_end = MusicnnBackEnd(self.config)

    @classmethod
    def from_safetensors(cls, path: str, config: Optional[MusicnnConfig] = None) -> "MusicnnFrontend":
        """Build the model and load a converted state dict strictly (every weight present, no extra).

        Parameters
        ----------
        path : str
            A ``.safetensors`` file written by ``scripts/convert_musicnn.py``.
        config : MusicnnConfig, optional
            Architecture; by default the one stored in the file's metadata, else ``MTT_musicnn``'s.

        Returns
        -------
        MusicnnFrontend
            In eval mode.
        """
        if config is None:
            with safe_open(path, framework="pt") as handle:
                metadata = handle.metadata() or {}
            config = (MusicnnConfig.from_dict(json.loads(metadata["config"])) if "config" in metadata
                      else MusicnnConfig())
        model = cls(config)
        model.load_state_dict(load_file(path), strict=True)
        return model.eval()

    def forward(self, input_features: torch.Tensor, output_frame_features: bool = True) -> MusicnnOutput:
        """Tag and embed a batch of log-mel patches.

        Parameters
        ----------
        input_features : torch.Tensor, shape (batch, time, n_mels)
            Patches from :func:`musicnn_preprocess` (time is 187 for the trained model).
        output_frame_features : bool
            Also return the per-frame front-/mid-end features (``timbral`` ... ``frame_features``).

        Returns
        -------
        MusicnnOutput
        """
        if input_features.ndim != 3 or input_features.shape[-1] != self.config.n_mels:
            raise ValueError(
                f"expected log-mel patches (batch, time, {self.config.n_mels}), got {tuple(input_features.shape)}"
            )
        timbral, temporal = self.front_end(input_features)
        frontend_features = torch.cat([timbral, temporal], dim=1)
        midend_outputs = self.mid_end(frontend_features)
        # Dense connectivity: the back end sees the front end and every mid-end layer.
        frame_features = torch.cat([frontend_features, *midend_outputs], dim=1)
        logits, penultimate, mean_pool, max_pool = self.back_end(frame_features)

        output = MusicnnOutput(
            logits=logits, probabilities=torch.sigmoid(logits), penultimate=penultimate,
            mean_pool=mean_pool, max_pool=max_pool,
        )
        if output_frame_features:
            # Channels-last per frame, as musicnn returns them: (batch, time, features).
            output.timbral = timbral.transpose(1, 2)
            output.temporal = temporal.transpose(1, 2)
            for name, hidden in zip(("cnn1", "cnn2", "cnn3"), midend_outputs):
                setattr(output, name, hidden.transpose(1, 2))
            output.frame_features = frame_features.transpose(1, 2)
        return output

    @torch.no_grad()  # not inference_mode: its tensors could not feed a model being trained on them
    def embed_waveform(
        self,
        waveform: Union[np.ndarray, torch.Tensor],
        sampling_rate: int = SAMPLING_RATE,
        hop_frames: Optional[int] = None,
        batch_size: int = 32,
        output_frame_features: bool = False,
        pad_short: str = "repeat",
        drop_last: bool = True,
    ) -> MusicnnOutput:
        """Waveform -> one output row per patch (musicnn's ``extractor()``, without its bugs).

        Parameters
        ----------
        waveform : np.ndarray or torch.Tensor, shape (n_samples,)
            Mono audio at 16 kHz.
        sampling_rate : int
            Must be 16000.
        hop_frames : int, optional
            Hop between patches in frames of 16 ms; ``None``: 187 (no overlap, as musicnn's default).
        batch_size : int
            Patches per forward pass; bounds memory on long audio without changing the results.
        output_frame_features : bool
            Also return the per-frame features of each patch (large: 753 floats per frame).
        pad_short, drop_last :
            See :func:`musicnn_patches`; clips shorter than 3 s give one padded patch.

        Returns
        -------
        MusicnnOutput
            Rows in patch order, with ``start_frames`` set.
        """
        patches, start_frames = musicnn_preprocess(
            waveform, sampling_rate, hop_frames=hop_frames, pad_short=pad_short, drop_last=drop_last
        )
        parameter = next(self.parameters())
        chunks = [
            self(patches[i : i + batch_size].to(parameter.device, parameter.dtype), output_frame_features)
            for i in range(0, len(patches), batch_size)
        ]
        merged = {
            name: torch.cat([getattr(chunk, name) for chunk in chunks])
            for name in chunks[0].to_dict()
        }
        return MusicnnOutput(**merged, start_frames=start_frames)
