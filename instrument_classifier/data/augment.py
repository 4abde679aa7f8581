"""Audio perturbations that imitate recording conditions: rooms, microphones, noise, level.

Rendered sample libraries are dry, close-miked and noise-free; real MusicNet
recordings are not. These perturbations are applied to rendered audio (at render
time for the held-out test protocol, and for training-data diversity) so that a
model learns instrument timbre rather than one library's recording chain.

All functions are deterministic given a ``numpy.random.Generator`` and keep the
length of the signal, so sample-accurate labels stay valid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional

import numpy as np
from scipy import signal

__all__ = ["Perturbation", "sample_perturbation", "apply_perturbation", "room_impulse_response", "random_smooth_eq"]


@dataclass
class Perturbation:
    """One drawn set of recording conditions (all optional); ``asdict`` it to log what was applied."""

    rt60_s: Optional[float] = None  # reverberation time of a synthetic room
    wet: float = 0.0  # reverb mix (0 dry .. 1 all reverb)
    low_shelf_db: float = 0.0  # tilt of the microphone / room
    high_shelf_db: float = 0.0
    peak_hz: Optional[float] = None
    peak_db: float = 0.0
    snr_db: Optional[float] = None  # noise floor relative to signal RMS
    noise_color: float = 0.0  # 0 white, 1 pink, 2 brown
    gain_db: float = 0.0

    def to_dict(self) -> Dict:
        return asdict(self)


def sample_perturbation(rng: np.random.Generator, strength: str = "train") -> Perturbation:
    """Draw recording conditions.

    Parameters
    ----------
    rng : numpy.random.Generator
    strength : {"train", "test", "none"}
        ``"train"`` draws broad conditions (sometimes dry); ``"test"`` always applies a room
        and noise, from the held-out protocol's ranges.
    """
    if strength == "none":
        return Perturbation()
    always = strength == "test"
    p = Perturbation()
    if always or rng.random() < 0.7:
        p.rt60_s = float(rng.uniform(0.3, 2.0))
        p.wet = float(rng.uniform(0.15, 0.6))
    if always or rng.random() < 0.7:
        p.low_shelf_db = float(rng.uniform(-8, 8))
        p.high_shelf_db = float(rng.uniform(-12, 6))
        p.peak_hz = float(np.exp(rng.uniform(np.log(200), np.log(6000))))
        p.peak_db = float(rng.uniform(-8, 8))
    if always or rng.random() < 0.7:
        p.snr_db = float(rng.uniform(15, 40))
        p.noise_color = float(rng.uniform(0, 2))
    p.gain_db = float(rng.uniform(-20, 0))
    return p


def room_impulse_response(rt60_s: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Synthetic room: exponentially decaying noise with a few early reflections (Schroeder-style)."""
    n = int(min(rt60_s * 1.2, 3.0) * sr)
    t = np.arange(n) / sr
    decay = np.exp(-6.9 * t / rt60_s)  # -60 dB at rt60
    tail = rng.standard_normal(n) * decay
    # rooms damp highs faster: low-pass the tail progressively by mixing a smoothed copy
    smooth = signal.lfilter([0.3], [1, -0.7], tail)
    tail = tail * np.exp(-t / (rt60_s / 2)) + smooth * (1 - np.exp(-t / (rt60_s / 2)))
    ir = tail
    for _ in range(6):
        k = int(rng.uniform(0.003, 0.05) * sr)
        if k < n:
            ir[k] += rng.uniform(-0.8, 0.8)
    ir[0] = 1.0
    return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)


def _shelf(sr: int, freq: float, gain_db: float, high: bool) -> tuple:
    # RBJ cookbook shelving biquad
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / sr
    alpha = np.sin(w0) / 2 * np.sqrt(2)
    cos = np.cos(w0)
    sign = 1 if high else -1
    b0 = a * ((a + 1) + sign * (a - 1) * cos + 2 * np.sqrt(a) * alpha)
    b1 = -2 * sign * a * ((a - 1) + sign * (a + 1) * cos)
    b2 = a * ((a + 1) + sign * (a - 1) * cos - 2 * np.sqrt(a) * alpha)
    a0 = (a + 1) - sign * (a - 1) * cos + 2 * np.sqrt(a) * alpha
    a1 = 2 * sign * ((a - 1) - sign * (a + 1) * cos)
    a2 = (a + 1) - sign * (a - 1) * cos - 2 * np.sqrt(a) * alpha
    return np.array([b0, b1, b2]) / a0, np.array([a0, a1, a2]) / a0


def _peak(sr: int, freq: float, gain_db: float, q: float = 1.0) -> tuple:
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / sr
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a])
    return b / den[0], den / den[0]


def _colored_noise(n: int, color: float, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1] if n > 1 else 1.0
    noise = np.fft.irfft(spec / f ** (color / 2), n)
    return noise / (np.std(noise) + 1e-12)


def apply_perturbation(audio: np.ndarray, sr: int, p: Perturbation, rng: np.random.Generator) -> np.ndarray:
    """Apply ``p`` to a mono float32 signal; same length out, peak kept below 1."""
    y = np.asarray(audio, dtype=np.float64)
    n = len(y)
    if p.rt60_s:
        ir = room_impulse_response(p.rt60_s, sr, rng)
        wet = signal.fftconvolve(y, ir)[:n]
        y = (1 - p.wet) * y + p.wet * wet * (np.std(y) / (np.std(wet) + 1e-12))
    if p.low_shelf_db:
        y = signal.lfilter(*_shelf(sr, 250.0, p.low_shelf_db, high=False), y)
    if p.high_shelf_db:
        y = signal.lfilter(*_shelf(sr, 4000.0, p.high_shelf_db, high=True), y)
    if p.peak_hz and p.peak_db:
        y = signal.lfilter(*_peak(sr, min(p.peak_hz, sr * 0.45), p.peak_db), y)
    if p.snr_db is not None and n > 1:
        rms = np.sqrt(np.mean(y**2)) + 1e-9
        y = y + _colored_noise(n, p.noise_color, rng) * rms / 10 ** (p.snr_db / 20)
    y *= 10 ** (p.gain_db / 20)
    peak = np.max(np.abs(y)) if n else 0.0
    if peak > 0.99:
        y *= 0.99 / peak
    return y.astype(np.float32)


def random_smooth_eq(audio: np.ndarray, sr: int, max_db: float, bands: int, rng: np.random.Generator) -> np.ndarray:
    """Filter ``audio`` with a random smooth gain curve: ``bands`` cosines over the mel axis.

    The gain in dB at mel position ``u`` (0 at 0 Hz, 1 at Nyquist) is ``sum_k a_k cos(pi k u)``, ``k = 1 ..
    bands``, with ``a_k`` uniform in ``[-max_db / bands, max_db / bands]``: at most ``max_db`` dB anywhere.
    It is the audio-side twin of training's feature-side EQ; applied to one instrument's track at a time
    it changes that instrument's timbre (its spectral envelope) independently of the others'. Zero phase
    (one FFT of the whole signal): no delay, so sample-accurate labels stay valid. Same length out.
    """
    y = np.asarray(audio, dtype=np.float64)
    if max_db <= 0 or bands < 1 or len(y) < 2:
        return y.astype(np.float32)
    a = rng.uniform(-max_db / bands, max_db / bands, size=bands)
    mel = 2595.0 * np.log10(1.0 + np.fft.rfftfreq(len(y), 1.0 / sr) / 700.0)
    u = mel / mel[-1]
    gain_db = np.cos(np.pi * np.outer(u, np.arange(1, bands + 1))) @ a
    return np.fft.irfft(np.fft.rfft(y) * 10.0 ** (gain_db / 20.0), len(y)).astype(np.float32)
