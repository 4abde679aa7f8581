"""MFCC (log-mel, constant-Q) feature extractor for the instrument classifiers.

Self-contained (numpy, torch and transformers; soxr to resample other rates, imported only then): this file is
copied next to the weights by ``save_pretrained`` so that ``AutoFeatureExtractor.from_pretrained(...,
trust_remote_code=True)`` works without this package installed.

:meth:`InstrumentFeatureExtractor.extract_stream` computes the features of a recording block by block, in
bounded memory, exactly equal to :meth:`~InstrumentFeatureExtractor.extract` of the whole recording (which is
that stream on one block); ``predict`` and the Space stream files through it.

The MFCCs equal ``librosa.feature.mfcc(y=y, sr=44100, n_mfcc=13, n_fft=2048,
hop_length=512)`` (librosa 0.11 defaults otherwise: centred frames with zero
padding, periodic Hann window, 128 Slaney mel bands, ``power_to_db`` with
``top_db=80`` relative to the loudest bin of the input, orthonormal DCT-II), but
are computed with ``torch.stft`` and a matrix product, several times faster (the mel filterbank is
``transformers.audio_utils.mel_filter_bank``; its ``spectrogram``, a numpy loop over frames, would be slower).

With ``level_dbfs`` set, every recording is first brought to one level (:func:`recording_level_gain`: the 95th
percentile of its 100-ms RMS to ``level_dbfs``, amplified by at most ``level_max_gain_db``), so that the features do
not depend on how loud it was recorded. That is a first pass over the audio, as the ``top_db`` reference is.

``feature_type="cqt"`` gives log-power constant-Q bands (semitones by default) read off the same kind of
STFT with a long window (``n_fft=8192`` recommended): a pseudo-CQT. Unlike a true CQT, every band has the
STFT's time resolution, and bands narrower than one FFT bin (below ~90 Hz at 8192) blur into their
neighbours; in exchange the features stream block by block like the MFCCs.

``feature_type="musicnn"`` gives the input of the musicnn front end (Pons & Serra, 2019): 96 Slaney mel bands
of a 512-point STFT at 16 kHz, hop 256, compressed as ``log10(1 + 10000 * mel_power)`` (no ``top_db`` floor,
no standardisation: the network's first batch norm rescales its input).

``feature_type="yamnet"`` gives YAMNet's log-mel (Google's AudioSet tagger) on a finer grid: 64 HTK-scale mel
bands from 125 to 7500 Hz of the *magnitude* spectrum of a 400-sample (25 ms) periodic Hann window zero-padded to a
512-point FFT at 16 kHz, compressed as ``log(mel + 0.001)``; the hop is 128 samples (8 ms, where YAMNet's is 10
ms) so that 374 frames make exactly one musicnn window (47,872 samples), and the YAMNet model brings the frames to
its 10-ms grid itself. The window is centred in the FFT frame where YAMNet left-aligns it: the magnitudes are the
same.

``feature_type="efficientat"`` gives the log-mel of EfficientAT's MobileNetV3 AudioSet taggers on the same kind of
finer grid: the 32-kHz waveform pre-emphasised (``x[n] - 0.97 x[n-1]``, carried across blocks), the power spectrum
of an 800-sample (25 ms) *symmetric* Hann window in a 1024-point FFT, 128 Kaldi (HTK-scale, triangular in mel)
bands from 0 to 15 kHz, compressed as ``(log(mel + 1e-5) + 4.5) / 5``; hop 64 (2 ms, where EfficientAT's is 10
ms), so that 1496 frames make one musicnn window (2.992 s) and every fifth frame is one of EfficientAT's own.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.audio_utils import hertz_to_mel, mel_filter_bank, mel_to_hertz

__all__ = [
    "InstrumentFeatureExtractor", "default_feature_settings", "feature_settings", "mel_filterbank",
    "constant_q_filterbank", "constant_q_frequencies", "dct_matrix", "musicnn_compression", "yamnet_compression",
    "yamnet_mel_filterbank", "efficientat_compression", "preemphasized", "recording_level_gain",
]

FEATURE_TYPES = ("mfcc", "logmel", "cqt", "musicnn", "yamnet", "efficientat")
#: Feature types compressed by a fixed log with an offset, without a ``top_db`` floor relative to the recording.
_NO_FLOOR = ("musicnn", "yamnet", "efficientat")
#: Feature types whose bands are YAMNet's kind of mel filters (HTK scale, triangles linear in mel, unnormalised).
_HTK_BANDS = ("yamnet", "efficientat")
#: EfficientAT's pre-emphasis coefficient.
EFFICIENTAT_PREEMPHASIS = 0.97
#: First constant-Q band when ``fmin`` is 0: C1, the lowest C on a piano (the contrabass reaches E1 = 41.2 Hz).
CQT_DEFAULT_FMIN = 32.703195662574764

#: Frames per STFT chunk of :meth:`InstrumentFeatureExtractor.band_power` (about 12 s at hop 512, n_fft 2048).
_FRAMES_PER_BLOCK = 1024
#: Band power of the first (``top_db`` reference) pass kept for the second, up to this size: recordings up to
#: ~49 min (128 bands, hop 512 at 44.1 kHz) are read and transformed once; longer ones twice, in bounded memory.
FIRST_PASS_CACHE_MB = 128
#: A 2-D input whose second axis is at most this long (and shorter than the first) is taken for
#: multi-channel audio laid out (samples, channels) and refused, not read as a batch of tiny clips.
_MAX_CHANNELS = 8


def mel_filterbank(
    sr: int, n_fft: int, n_mels: int = 128, fmin: float = 0.0, fmax: Optional[float] = None
) -> np.ndarray:
    """Slaney-normalised mel filterbank, shape ``(n_mels, 1 + n_fft // 2)``, float32; equals ``librosa.filters.mel``
    (transformers' ``mel_filter_bank`` with Slaney's scale and normalisation)."""
    fmax = sr / 2.0 if fmax is None else float(fmax)
    weights = mel_filter_bank(1 + n_fft // 2, n_mels, fmin, fmax, sr, norm="slaney", mel_scale="slaney")
    return np.ascontiguousarray(weights.T, dtype=np.float32)


def constant_q_filterbank(
    sr: int, n_fft: int, n_bins: int, bins_per_octave: int = 12, fmin: float = CQT_DEFAULT_FMIN
) -> np.ndarray:
    """Constant-Q bands over an STFT, shape ``(n_bins, 1 + n_fft // 2)``.

    Band ``k`` is centred at ``fmin * 2 ** (k / bins_per_octave)`` and is a triangle reaching its neighbours'
    centres (at least one FFT bin wide on each side, so no band is empty); rows sum to 1, so a band's
    value is the mean power under it.
    """
    centres = constant_q_frequencies(n_bins + 2, bins_per_octave, fmin * 2.0 ** (-1.0 / bins_per_octave))
    if centres[-2] >= sr / 2.0:
        raise ValueError(f"{n_bins} constant-Q bands from {fmin:.1f} Hz at {bins_per_octave} per octave reach "
                         f"{centres[-2]:.0f} Hz, above the Nyquist frequency {sr / 2.0:.0f} Hz")
    resolution = sr / n_fft
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    lower = np.maximum(centres[1:-1] - centres[:-2], resolution)
    upper = np.maximum(centres[2:] - centres[1:-1], resolution)
    offset = fftfreqs[None, :] - centres[1:-1, None]
    weights = np.maximum(0.0, 1.0 - np.where(offset < 0, -offset / lower[:, None], offset / upper[:, None]))
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def constant_q_frequencies(n_bins: int, bins_per_octave: int = 12, fmin: float = CQT_DEFAULT_FMIN) -> np.ndarray:
    """Centre frequencies (Hz) of the constant-Q bands, as ``librosa.cqt_frequencies``."""
    return fmin * 2.0 ** (np.arange(n_bins) / bins_per_octave)


def yamnet_mel_filterbank(sr: int, n_fft: int, n_mels: int = 64, fmin: float = 125.0,
                          fmax: Optional[float] = 7500.0) -> np.ndarray:
    """YAMNet's mel filters, shape ``(n_mels, 1 + n_fft // 2)``, float32: HTK mel scale, triangles linear in mel,
    unnormalised (TensorFlow's ``linear_to_mel_weight_matrix``)."""
    fmax = sr / 2.0 if fmax is None else float(fmax)
    weights = mel_filter_bank(1 + n_fft // 2, n_mels, fmin, fmax, sr, norm=None, mel_scale="htk",
                              triangularize_in_mel_space=True)
    return np.ascontiguousarray(weights.T, dtype=np.float32)


def yamnet_compression(mel_magnitude: torch.Tensor) -> torch.Tensor:
    """``log(mel_magnitude + 0.001)``: YAMNet's log compression of its mel magnitudes."""
    return torch.log(mel_magnitude + 0.001)


def efficientat_compression(mel_power: torch.Tensor) -> torch.Tensor:
    """``(log(mel_power + 1e-5) + 4.5) / 5``: EfficientAT's log compression and fixed standardisation."""
    return (torch.log(mel_power + 1e-5) + 4.5) / 5.0


def preemphasized(blocks: Iterable[np.ndarray], coefficient: float = EFFICIENTAT_PREEMPHASIS) -> Iterator[np.ndarray]:
    """Consecutive blocks of ``x[n] - coefficient * x[n-1]`` (``x[-1] = 0``) of the signal ``blocks`` cut: the
    last sample of each block is carried to the next, so any cut gives the same samples."""
    previous = np.float32(0.0)
    for block in blocks:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        if not len(block):
            continue
        out = np.empty_like(block)
        out[0] = block[0] - coefficient * previous
        np.subtract(block[1:], np.float32(coefficient) * block[:-1], out=out[1:])
        previous = block[-1]
        yield out


#: The level of a recording (:func:`recording_level_gain`): this percentile of the RMS of its frames of this length.
LEVEL_FRAME_SECONDS = 0.1
LEVEL_PERCENTILE = 95.0


def recording_level_gain(blocks: Iterable[np.ndarray], sampling_rate: int, level_dbfs: float,
                         max_gain_db: float) -> float:
    """The factor that brings a recording to ``level_dbfs``, from its consecutive mono blocks.

    A recording's level is the 95th percentile (``LEVEL_PERCENTILE``) of the RMS of its consecutive 100-ms frames
    (``LEVEL_FRAME_SECONDS``, counted from its first sample whatever the blocks; a last partial frame is left out,
    unless the recording is shorter than one frame): what its louder passages reach, indifferent to a click or to
    pauses. Attenuation is unlimited; amplification stops at ``max_gain_db``, so that near-silence is not raised to
    the level of playing (its noise would be heard as instruments). Digital silence gets that largest gain.

    Parameters
    ----------
    blocks : iterable of np.ndarray
        The recording's consecutive mono float blocks, of any sizes.
    sampling_rate : int
        Their rate.
    level_dbfs : float
        The level to reach, in dB relative to full scale (1.0).
    max_gain_db : float
        The largest amplification, in dB (>= 0).

    Returns
    -------
    float
        The factor to multiply the samples by.
    """
    frame = max(1, int(round(LEVEL_FRAME_SECONDS * sampling_rate)))
    energies: List[np.ndarray] = []
    carry = np.zeros(0, dtype=np.float64)
    for block in blocks:
        samples = np.concatenate([carry, np.asarray(block, dtype=np.float64)])
        whole = len(samples) // frame * frame
        if whole:
            energies.append(np.mean(np.square(samples[:whole]).reshape(-1, frame), axis=1))
        carry = samples[whole:]
    if not energies:  # shorter than one frame: its whole mean square
        energies.append(np.array([np.mean(np.square(carry))]) if len(carry) else np.zeros(1))
    level = math.sqrt(float(np.percentile(np.concatenate(energies), LEVEL_PERCENTILE)))
    largest = 10.0 ** (max_gain_db / 20.0)
    if level <= 0.0:
        return largest
    return min(10.0 ** (level_dbfs / 20.0) / level, largest)


def musicnn_compression(mel_power: torch.Tensor) -> torch.Tensor:
    """``log10(1 + 10000 * mel_power)``: the log compression musicnn was trained with (zero for silence)."""
    return torch.log10(1.0 + 10000.0 * mel_power)


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II basis, shape ``(n_out, n_in)``:
    ``dct_matrix(n, m) @ x == scipy.fft.dct(x, norm='ortho')[:n]``."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    basis[0] /= math.sqrt(2.0)
    return basis.astype(np.float32)


class InstrumentFeatureExtractor(SequenceFeatureExtractor):
    r"""MFCC (or log-mel) frames for instrument classification.

    Parameters
    ----------
    feature_type : {"mfcc", "logmel", "cqt", "musicnn", "yamnet", "efficientat"}
        ``"mfcc"``: ``n_coefficients`` MFCCs, the study's setting. ``"logmel"``:
        ``n_coefficients`` log-power mel bands (dB). ``"cqt"``: ``n_coefficients`` log-power
        constant-Q bands (dB) from ``fmin`` up, ``bins_per_octave`` to the octave (a pseudo-CQT,
        see the module docstring; give it a long ``n_fft`` such as 8192). ``"musicnn"``:
        ``n_coefficients`` mel bands compressed as musicnn's input (:func:`musicnn_compression`;
        use :func:`default_feature_settings` for its 16-kHz grid). ``"yamnet"``: ``n_coefficients``
        HTK mel bands of the magnitude spectrum, ``log(mel + 0.001)`` (:func:`yamnet_compression`; see the
        module docstring and :func:`default_feature_settings`). ``"efficientat"``: ``n_coefficients`` HTK mel
        bands of the power spectrum of the pre-emphasised signal through a symmetric Hann window, compressed as
        :func:`efficientat_compression` (see the module docstring).
    n_coefficients : int
        Number of MFCCs (13), of mel bands for ``logmel``, or of constant-Q bands for ``cqt``.
    sampling_rate : int
        Rate the features are computed at; other rates are resampled to it.
    n_fft, hop_length : int
        STFT size and hop in samples (2048 and 512: 46 ms windows every 11.6 ms at 44.1 kHz).
    win_length : int, optional
        Length of the Hann window, centred in the ``n_fft`` frame and zero outside; ``None``: ``n_fft`` (400 for
        ``yamnet``).
    n_mels, fmin, fmax :
        Mel filterbank used for the MFCCs. For ``cqt``, ``fmin`` is the centre of the lowest band
        (0 means C1, 32.7 Hz) and ``fmax`` is not used.
    bins_per_octave : int
        Constant-Q bands per octave (``cqt`` only; 12: semitones).
    top_db : float or None
        Dynamic-range floor relative to the loudest bin of the whole recording, as in
        ``librosa.power_to_db`` (also when it is streamed, :meth:`extract_stream`).
    level_dbfs : float or None
        Bring every recording to this level before its features (:func:`recording_level_gain`, dBFS of the 95th
        percentile of its 100-ms RMS); ``None``: as it is. Applied to every recording this extractor reads.
    level_max_gain_db : float
        With ``level_dbfs``: the largest amplification, in dB.
    include_deltas : bool
        Append time differences of every coefficient (``feature_size`` becomes
        ``n_coefficients * (1 + delta_order)``).
    delta_order : int
        With ``include_deltas``: 1 appends the first differences (deltas), 2 also appends the
        differences of those (delta-deltas).
    do_normalize : bool
        Standardise each coefficient with ``mean`` and ``std`` (fitted on the training split
        with :meth:`fit_normalization`). Ignored while ``mean`` is ``None``.
    mean, std : list of float or None
        Per-coefficient statistics, saved with ``save_pretrained``.
    """

    model_input_names = ["input_features"]

    def __init__(
        self,
        feature_type: str = "mfcc",
        n_coefficients: int = 13,
        sampling_rate: int = 44100,
        n_fft: int = 2048,
        hop_length: int = 512,
        win_length: Optional[int] = None,
        n_mels: int = 128,
        fmin: float = 0.0,
        fmax: Optional[float] = None,
        bins_per_octave: int = 12,
        top_db: Optional[float] = 80.0,
        level_dbfs: Optional[float] = None,
        level_max_gain_db: float = 20.0,
        include_deltas: bool = False,
        delta_order: int = 1,
        do_normalize: bool = True,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        padding_value: float = 0.0,
        **kwargs,
    ):
        if feature_type not in FEATURE_TYPES:
            raise ValueError(f"feature_type must be one of {FEATURE_TYPES}, got {feature_type!r}")
        if feature_type == "mfcc" and not 1 <= n_coefficients <= n_mels:
            raise ValueError(f"n_coefficients must be in [1, n_mels={n_mels}] for MFCCs, got {n_coefficients}")
        if hop_length <= 0 or n_fft <= 0:
            raise ValueError("n_fft and hop_length must be positive")
        if win_length is not None and not 0 < int(win_length) <= n_fft:
            raise ValueError(f"win_length must be in [1, n_fft={n_fft}], got {win_length}")
        if bins_per_octave < 1:
            raise ValueError(f"bins_per_octave must be positive, got {bins_per_octave}")
        if delta_order not in (1, 2):
            raise ValueError(f"delta_order must be 1 or 2, got {delta_order!r}")
        if level_dbfs is not None and not (math.isfinite(level_dbfs) and level_dbfs <= 0):
            raise ValueError(f"level_dbfs must be a finite level of at most 0 dBFS, or None; got {level_dbfs!r}")
        if not (math.isfinite(level_max_gain_db) and level_max_gain_db >= 0):
            raise ValueError(f"level_max_gain_db must be a finite number of dB >= 0, got {level_max_gain_db!r}")
        feature_size = n_coefficients * (1 + delta_order if include_deltas else 1)
        kwargs.pop("feature_size", None)
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        self.feature_type = feature_type
        self.n_coefficients = n_coefficients
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = None if win_length is None else int(win_length)
        # the number of bands the power is summed into (MFCCs are a DCT of n_mels mel bands)
        self.n_mels = n_mels if feature_type == "mfcc" else n_coefficients
        self.fmin = fmin
        self.fmax = fmax
        self.bins_per_octave = bins_per_octave
        if feature_type == "cqt":
            self.filterbank()  # refuses bands above the Nyquist frequency now, not at the first call
        self.top_db = top_db
        self.level_dbfs = None if level_dbfs is None else float(level_dbfs)
        self.level_max_gain_db = float(level_max_gain_db)
        self.include_deltas = include_deltas
        self.delta_order = delta_order
        self.do_normalize = do_normalize
        if (mean is None) != (std is None):
            raise ValueError("mean and std must be given together")
        if mean is not None and (len(mean) != feature_size or len(std) != feature_size):
            raise ValueError(f"mean/std must have {feature_size} entries, got {len(mean)}/{len(std)}")
        self.mean = None if mean is None else [float(m) for m in mean]
        self.std = None if std is None else [float(s) for s in std]
        self._basis = None

    # -- serialisation: keep derived tensors out of the json ------------------------------
    def to_dict(self):
        out = super().to_dict()
        out.pop("_basis", None)
        return out

    @property
    def frame_rate(self) -> float:
        """Frames per second (86.13 at 44.1 kHz with hop 512)."""
        return self.sampling_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples (centred frames: ``1 + n // hop``)."""
        return 1 + int(num_samples) // self.hop_length

    def silence_to_window_end(self, num_samples: int, window_frames: int) -> int:
        """Samples of digital silence that complete the last ``window_frames``-frame window of a recording,
        as ``prepare`` pads it (``(total - 1) * hop`` samples give ``total`` frames); 0 for no audio."""
        if num_samples <= 0:
            return 0
        total = -(-self.num_frames(num_samples) // window_frames) * window_frames
        return max(0, (total - 1) * self.hop_length - int(num_samples))

    @property
    def _cqt_fmin(self) -> float:
        return self.fmin or CQT_DEFAULT_FMIN  # fmin 0, the mel filterbank's default, means C1 for constant-Q bands

    def filterbank(self) -> np.ndarray:
        """Weights ``(n_mels, 1 + n_fft // 2)`` that sum STFT power into the bands: mel, or constant-Q for ``cqt``."""
        if self.feature_type == "cqt":
            return constant_q_filterbank(self.sampling_rate, self.n_fft, self.n_coefficients, self.bins_per_octave,
                                         self._cqt_fmin)
        if self.feature_type in _HTK_BANDS:
            return yamnet_mel_filterbank(self.sampling_rate, self.n_fft, self.n_mels, self.fmin, self.fmax)
        return mel_filterbank(self.sampling_rate, self.n_fft, self.n_mels, self.fmin, self.fmax)

    def band_frequencies(self) -> np.ndarray:
        """Centre frequencies (Hz) of the ``n_mels`` bands the power is summed into."""
        if self.feature_type == "cqt":
            return constant_q_frequencies(self.n_coefficients, self.bins_per_octave, self._cqt_fmin)
        fmax = self.sampling_rate / 2.0 if self.fmax is None else float(self.fmax)
        scale = "htk" if self.feature_type in _HTK_BANDS else "slaney"
        mels = np.linspace(hertz_to_mel(self.fmin, scale), hertz_to_mel(fmax, scale), self.n_mels + 2)
        return mel_to_hertz(mels[1:-1], scale)

    def _projection(self) -> Tuple[List[Tuple[int, int, int, int, torch.Tensor]], Optional[torch.Tensor]]:
        """``(groups, dct)``: the filterbank by groups of 16 bands with the FFT bins they cover,
        ``(first band, last band, first bin, last bin, weights)``, and the MFCCs' DCT matrix (``None`` for
        other feature types). A mel band is nonzero over ~16 of the 1025 bins, so by groups over only their
        bins the product is ~5x less work than by the whole matrix."""
        if self._basis is None:
            weights, groups = self.filterbank(), []
            for first in range(0, len(weights), 16):
                last = min(len(weights), first + 16)
                nonzero = np.flatnonzero(weights[first:last].any(axis=0))
                lo, hi = (int(nonzero[0]), int(nonzero[-1]) + 1) if len(nonzero) else (0, 1)
                group = torch.from_numpy(np.ascontiguousarray(weights[first:last, lo:hi]))
                groups.append((first, last, lo, hi, group))
            dct = None
            if self.feature_type == "mfcc":
                dct = torch.from_numpy(dct_matrix(self.n_coefficients, self.n_mels))
            self._basis = (groups, dct)
        return self._basis

    # -- the features --------------------------------------------------------------------
    def extract(self, waveform: np.ndarray, normalize: Optional[bool] = None) -> np.ndarray:
        """Features of one mono waveform at ``self.sampling_rate``; shape ``(frames, feature_size)``, float32.

        The waveform is :meth:`extract_stream`'s one block, so a recording streamed in blocks gets these features.
        """
        parts = list(self.extract_stream([np.asarray(waveform, dtype=np.float32)], normalize=normalize))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def extract_stream(
        self, blocks: Union[Iterable[np.ndarray], Callable[[], Iterator[np.ndarray]]], normalize: Optional[bool] = None
    ) -> Iterator[np.ndarray]:
        """Features of one recording that arrives block by block, in bounded memory.

        The concatenated output equals :meth:`extract` of the concatenated blocks exactly, whatever the blocks'
        sizes: the STFT is taken on chunks of frames counted from the recording's start (:meth:`band_power`),
        and the ``top_db`` floor is relative to the loudest band of the whole recording, as in training, where
        windows were cut from whole recordings' features. That reference needs a first pass over the audio
        (not for ``musicnn``, ``yamnet`` and ``efficientat``, which have no floor, or ``top_db=None``); its band power
        is kept for the second pass up to ``FIRST_PASS_CACHE_MB`` (~49 min at 44.1 kHz with 128 bands), a longer
        recording is read again. ``level_dbfs`` also needs a first pass, over the samples
        (:func:`recording_level_gain`), which reads the blocks once more.

        Parameters
        ----------
        blocks : iterable of np.ndarray, or a callable returning a fresh iterator of them
            Consecutive mono float blocks at ``self.sampling_rate``, of any sizes. A callable is called, and a
            list iterated, once per pass; a one-shot iterator (a generator) is kept whole for a second pass.
        normalize : bool, optional
            Standardise with ``mean`` and ``std`` (default ``do_normalize``; nothing while ``mean`` is ``None``).

        Yields
        ------
        np.ndarray, shape (frames, feature_size), float32
            Consecutive frames; ``num_frames(total samples)`` of them in all.
        """
        first_pass = self.level_dbfs is not None or (self.top_db is not None and self.feature_type not in _NO_FLOOR)
        if not callable(blocks) and iter(blocks) is blocks:  # one pass only: keep the blocks for a second
            blocks = list(blocks) if first_pass else blocks
        read = blocks if callable(blocks) else (lambda: iter(blocks))
        if self.level_dbfs is not None:
            gain = np.float32(recording_level_gain(read(), self.sampling_rate, self.level_dbfs,
                                                   self.level_max_gain_db))
            unscaled = read
            read = lambda: (np.asarray(block, dtype=np.float32) * gain for block in unscaled())  # noqa: E731
        frames = self._frames(read)
        if self.include_deltas:
            frames = _with_deltas(frames, self.delta_order)
        do_normalize = (self.do_normalize if normalize is None else normalize) and self.mean is not None
        for feats in frames:
            yield self.normalize(feats) if do_normalize else feats

    def band_power(self, blocks: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
        """Power of consecutive frames in the ``n_mels`` bands (mel, or constant-Q for ``cqt``), as ``(n_mels,
        frames)`` float32 tensors, of the recording whose consecutive mono blocks ``blocks`` are; for ``yamnet``
        the bands sum the magnitude (the square root of the power), not the power, as YAMNet does; for
        ``efficientat`` the signal is pre-emphasised (:func:`preemphasized`) and the Hann window is symmetric, as
        EfficientAT's.

        Frame ``t`` is centred on sample ``t * hop_length`` of a signal zero-padded by ``n_fft // 2`` at both ends
        (librosa's centred STFT, periodic Hann window): ``num_frames(total samples)`` frames. The STFT is taken in
        chunks of frames counted from the first frame, whatever the blocks (bounded temporaries, which stay in
        cache), so every frame is computed from the same numbers however the audio is cut.
        """
        n_fft, hop = self.n_fft, self.hop_length
        chunk = max(64, _FRAMES_PER_BLOCK * 2048 // n_fft)  # the same temporaries' size for a long n_fft
        chunk_samples = (chunk - 1) * hop + n_fft
        win_length = self.win_length or n_fft
        efficientat = self.feature_type == "efficientat"
        window = torch.hann_window(win_length, periodic=not efficientat, dtype=torch.float32)
        magnitude = self.feature_type == "yamnet"
        if efficientat:
            blocks = preemphasized(blocks)
        groups, _ = self._projection()

        def power_of(samples: np.ndarray, frames: int) -> torch.Tensor:
            with torch.no_grad():
                spec = torch.stft(torch.from_numpy(samples[: (frames - 1) * hop + n_fft]), n_fft, hop,
                                  win_length=win_length, window=window, center=False, return_complex=True)
                power = spec.real.square() + spec.imag.square()  # (freq, frames)
                if magnitude:
                    power = power.sqrt()
                out = torch.empty((self.n_mels, frames), dtype=torch.float32)
                for first, last, lo, hi, weights in groups:
                    torch.matmul(weights, power[lo:hi], out=out[first:last])
            return out

        pad = np.zeros(n_fft // 2, dtype=np.float32)
        pending, pending_samples = [pad], len(pad)  # samples from the first frame not yet computed on
        total = done = 0  # samples read, frames computed
        for block in blocks:
            block = np.asarray(block, dtype=np.float32).reshape(-1)
            total += len(block)
            pending.append(block)
            pending_samples += len(block)
            if pending_samples < chunk_samples:
                continue
            buffer = np.concatenate(pending)
            while len(buffer) >= chunk_samples:
                yield power_of(buffer, chunk)
                buffer, done = buffer[chunk * hop :], done + chunk
            pending, pending_samples = [buffer], len(buffer)
        buffer = np.concatenate(pending + [pad])
        last_frame = self.num_frames(total)
        while done < last_frame:
            frames = min(chunk, last_frame - done)
            yield power_of(buffer, frames)
            buffer, done = buffer[frames * hop :], done + frames

    def _frames(self, read: Callable[[], Iterator[np.ndarray]]) -> Iterator[np.ndarray]:
        """Raw features (before deltas) ``(frames, n_coefficients)`` of the recording ``read()`` gives."""
        _, dct = self._projection()
        floor, kept = None, None
        if self.top_db is not None and self.feature_type not in _NO_FLOOR:
            capacity, kept, peak = FIRST_PASS_CACHE_MB * 2**20 // (4 * self.n_mels), [], 0.0
            for power in self.band_power(read()):
                peak = max(peak, float(power.max()))  # the loudest bin's dB is the dB of the loudest power
                if kept is not None and capacity >= power.shape[1]:
                    kept.append(power)
                    capacity -= power.shape[1]
                else:  # too long to keep: the second pass reads and transforms again
                    kept = None
            floor = _to_db(torch.tensor(peak, dtype=torch.float32)) - self.top_db
        for power in self.band_power(read()) if kept is None else kept:
            if self.feature_type == "musicnn":
                feats = musicnn_compression(power)
            elif self.feature_type == "yamnet":
                feats = yamnet_compression(power)
            elif self.feature_type == "efficientat":
                feats = efficientat_compression(power)
            else:
                db = _to_db(power) if floor is None else torch.maximum(_to_db(power), floor)
                feats = db if dct is None else dct @ db
            yield feats.T.contiguous().numpy()

    def normalize(self, features: np.ndarray) -> np.ndarray:
        """Standardise raw features with the fitted per-coefficient ``mean`` and ``std``."""
        if self.mean is None:
            raise ValueError("normalisation statistics are not fitted; call fit_normalization first")
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return (features - mean) / std

    def fit_normalization(self, feature_blocks) -> "InstrumentFeatureExtractor":
        """Fit ``mean``/``std`` from an iterable of raw ``(frames, feature_size)`` arrays (training split only)."""
        count, total, total_sq = 0, None, None
        for block in feature_blocks:
            block = np.asarray(block, dtype=np.float64).reshape(-1, self.feature_size)
            s, sq = block.sum(0), np.square(block).sum(0)
            total = s if total is None else total + s
            total_sq = sq if total_sq is None else total_sq + sq
            count += len(block)
        if count == 0:
            raise ValueError("cannot fit normalisation on zero frames")
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        self.mean = mean.tolist()
        self.std = np.maximum(std, 1e-5).tolist()
        return self

    def resample(self, waveform: np.ndarray, sampling_rate: int) -> np.ndarray:
        """Resample a mono waveform to ``self.sampling_rate`` with soxr (``quality="HQ"``), as the package reads
        files. soxr is imported here only, so a model folder loads without it and needs it for other rates."""
        if int(sampling_rate) == self.sampling_rate:
            return waveform
        try:
            import soxr
        except ImportError:
            raise ImportError(f"resampling {sampling_rate}-Hz audio to {self.sampling_rate} Hz needs soxr "
                              "(pip install soxr), or pass audio at the model's rate") from None
        audio = np.ascontiguousarray(waveform, dtype=np.float32)
        resampled = soxr.resample(audio, int(sampling_rate), self.sampling_rate, quality="HQ")
        return resampled.astype(np.float32, copy=False)

    def __call__(
        self,
        raw_audio: Union[np.ndarray, List[float], List[np.ndarray]],
        sampling_rate: Optional[int] = None,
        return_tensors: Optional[str] = None,
        normalize: Optional[bool] = None,
        return_attention_mask: bool = False,
        **kwargs,
    ) -> BatchFeature:
        """Featurise one clip or a batch.

        Parameters
        ----------
        raw_audio : np.ndarray or list
            A mono float waveform ``(samples,)``, a batch ``(batch, samples)``, or a list
            of mono waveforms. Stereo input must be downmixed first.
        sampling_rate : int, optional
            Rate of ``raw_audio``; resampled to ``self.sampling_rate`` if different.
            Strongly recommended: without it the audio is assumed to be at the model rate.

        Returns
        -------
        BatchFeature
            ``input_features`` of shape ``(batch, frames, feature_size)``; clips of different
            lengths are zero-padded and ``attention_mask`` marks real frames.
        """
        clips = _as_clip_list(raw_audio)
        sr = self.sampling_rate if sampling_rate is None else int(sampling_rate)
        if sr <= 0:
            raise ValueError(f"sampling_rate must be positive, got {sampling_rate}")
        feats = [self.extract(self.resample(c, sr), normalize=normalize) for c in clips]
        lengths = [len(f) for f in feats]
        longest = max(lengths)
        batch = np.full((len(feats), longest, self.feature_size), self.padding_value, dtype=np.float32)
        mask = np.zeros((len(feats), longest), dtype=np.int32)
        for i, f in enumerate(feats):
            batch[i, : len(f)] = f
            mask[i, : len(f)] = 1
        data = {"input_features": batch}
        if return_attention_mask or len(set(lengths)) > 1:
            data["attention_mask"] = mask
        return BatchFeature(data, tensor_type=return_tensors)


#: Settings that decide what the features are: a model and the data it sees must agree on them (mean/std may
#: differ). A saved configuration that predates one of them had the constructor's default.
_FEATURE_SETTINGS = {
    name: param.default for name, param in inspect.signature(InstrumentFeatureExtractor).parameters.items()
    if name in ("feature_type", "n_coefficients", "sampling_rate", "n_fft", "hop_length", "win_length", "n_mels",
                "fmin", "fmax", "bins_per_octave", "top_db", "include_deltas", "delta_order")
}


def default_feature_settings(feature_type: str = "mfcc", n_coefficients: Optional[int] = None) -> dict:
    """Constructor arguments for ``feature_type`` with the package's defaults for it.

    13 MFCCs; 64 log-mel bands; 84 constant-Q bands (semitones from C1 to B7, 32.7 Hz to 3.95 kHz) from an
    8192-point STFT, long enough (5.4 Hz) to separate semitones from about 90 Hz up; musicnn's input (96 mel
    bands at 16 kHz, n_fft 512, hop 256: 62.5 frames per second, unnormalised); YAMNet's (64 HTK mel bands,
    125-7500 Hz, of a 400-sample window in a 512-point FFT at 16 kHz, hop 128: 8-ms frames, 374 to a musicnn
    window, unnormalised); EfficientAT's (128 HTK mel bands, 0-15 kHz, of an 800-sample window in a 1024-point
    FFT at 32 kHz, hop 64: 2-ms frames, every fifth one of EfficientAT's, 1496 to a musicnn window, unnormalised).
    """
    if feature_type not in FEATURE_TYPES:
        raise ValueError(f"feature_type must be one of {FEATURE_TYPES}, got {feature_type!r}")
    defaults = {"mfcc": {"n_coefficients": 13}, "logmel": {"n_coefficients": 64},
                "cqt": {"n_coefficients": 84, "n_fft": 8192},
                "musicnn": {"n_coefficients": 96, "sampling_rate": 16000, "n_fft": 512, "hop_length": 256,
                            "top_db": None, "do_normalize": False},
                "yamnet": {"n_coefficients": 64, "sampling_rate": 16000, "n_fft": 512, "win_length": 400,
                           "hop_length": 128, "fmin": 125.0, "fmax": 7500.0, "top_db": None,
                           "do_normalize": False},
                "efficientat": {"n_coefficients": 128, "sampling_rate": 32000, "n_fft": 1024, "win_length": 800,
                                "hop_length": 64, "fmin": 0.0, "fmax": 15000.0, "top_db": None,
                                "do_normalize": False}}[feature_type]
    return {"feature_type": feature_type, **defaults, **({"n_coefficients": n_coefficients} if n_coefficients else {})}


def feature_settings(extractor) -> dict:
    """The settings of an :class:`InstrumentFeatureExtractor` (or its saved dict) that decide its features."""
    config = extractor.to_dict() if hasattr(extractor, "to_dict") else dict(extractor)
    return {key: config.get(key, default) for key, default in _FEATURE_SETTINGS.items()}


def _to_db(power: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(torch.clamp(power, min=1e-10))


class _StreamedDelta:
    """``0.5 * (x[t + 1] - x[t - 1])`` of frames arriving in blocks, the first and last frame repeated at the
    edges; a frame's delta is emitted once its right neighbour has arrived (one frame behind)."""

    def __init__(self):
        self.context = None  # the left neighbour of the first frame without a delta, then that frame

    def push(self, frames: np.ndarray) -> np.ndarray:
        if self.context is None:
            if not len(frames):
                return frames
            frames = np.concatenate([frames[:1], frames])  # the first frame is its own left neighbour
        padded = frames if self.context is None else np.concatenate([self.context, frames])
        self.context = padded[-2:]
        return 0.5 * (padded[2:] - padded[:-2])

    def finish(self) -> np.ndarray:
        if self.context is None:
            return np.zeros((0, 0), dtype=np.float32)
        padded = np.concatenate([self.context, self.context[-1:]])  # the last frame is its own right neighbour
        return 0.5 * (padded[2:] - padded[:-2])


def _with_deltas(frames: Iterator[np.ndarray], order: int) -> Iterator[np.ndarray]:
    """``frames`` with their deltas (and, for ``order`` 2, the deltas of those) appended, block by block."""
    stages = [_StreamedDelta() for _ in range(order)]
    queues: List[List[np.ndarray]] = [[] for _ in range(order + 1)]  # per order, rows not yet emitted

    def emit(levels: List[np.ndarray]) -> Optional[np.ndarray]:
        for queue, rows in zip(queues, levels):
            if len(rows):
                queue.append(rows)
        ready = min(sum(len(rows) for rows in queue) for queue in queues)
        if not ready:
            return None
        joined = [np.concatenate(queue) for queue in queues]
        for queue, rows in zip(queues, joined):
            queue[:] = [rows[ready:]]
        return np.concatenate([rows[:ready] for rows in joined], axis=1)

    for feats in frames:
        levels = [feats]
        for stage in stages:
            levels.append(stage.push(levels[-1]))
        out = emit(levels)
        if out is not None:
            yield out
    levels = [np.zeros((0, 0), dtype=np.float32)]
    for stage in stages:  # each order's last frames go through the next order before it finishes
        tail = stage.push(levels[-1]) if len(levels[-1]) else levels[-1]
        levels.append(np.concatenate([part for part in (tail, stage.finish()) if len(part)] or [tail]))
    out = emit(levels)
    if out is not None:
        yield out


def _as_clip_list(raw_audio) -> List[np.ndarray]:
    if isinstance(raw_audio, torch.Tensor):
        raw_audio = raw_audio.detach().cpu().numpy()
    if isinstance(raw_audio, np.ndarray):
        if raw_audio.ndim == 1:
            clips = [raw_audio]
        elif raw_audio.ndim == 2:
            # (samples, channels) read from a stereo file would otherwise become a "batch" of thousands
            # of 2-sample clips: slow and meaningless
            if raw_audio.shape[1] <= _MAX_CHANNELS < raw_audio.shape[0]:
                raise ValueError(
                    f"got shape {raw_audio.shape}: this looks like multi-channel audio (samples, channels); "
                    "pass mono audio, e.g. audio.mean(axis=1) (a batch has shape (batch, samples))"
                )
            clips = list(raw_audio)
        else:
            raise ValueError(
                f"expected mono audio of shape (samples,) or a batch (batch, samples), got shape {raw_audio.shape}"
            )
    elif isinstance(raw_audio, (list, tuple)) and raw_audio and isinstance(raw_audio[0], (np.ndarray, list, tuple,
                                                                                          torch.Tensor)):
        clips = [np.asarray(c.detach().cpu().numpy() if isinstance(c, torch.Tensor) else c) for c in raw_audio]
    elif isinstance(raw_audio, (list, tuple)):
        clips = [np.asarray(raw_audio)]
    else:
        raise TypeError(f"expected a numpy array or a list of arrays, got {type(raw_audio).__name__}")
    out = []
    for i, clip in enumerate(clips):
        if clip.ndim != 1:
            raise ValueError(f"clip {i}: expected mono audio of shape (samples,), got shape {clip.shape}")
        if not np.issubdtype(clip.dtype, np.floating):
            raise TypeError(
                f"clip {i}: expected float audio in [-1, 1], got dtype {clip.dtype} "
                "(convert integer PCM with x / np.iinfo(x.dtype).max)"
            )
        if clip.size == 0:
            raise ValueError(f"clip {i}: zero-length audio")
        if not np.all(np.isfinite(clip)):
            raise ValueError(f"clip {i}: audio contains NaN or infinite samples")
        out.append(clip.astype(np.float32, copy=False))
    return out
