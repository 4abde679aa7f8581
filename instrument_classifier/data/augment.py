"""Audio perturbations that imitate recording conditions: rooms, microphones, noise, level, lossy codecs.

Rendered sample libraries are dry, close-miked and noise-free; real MusicNet
recordings are not. These perturbations are applied to rendered audio (at render
time for the held-out test protocol, and for training-data diversity) so that a
model learns instrument timbre rather than one library's recording chain.

All functions are deterministic given a ``numpy.random.Generator`` and keep the
length of the signal, so sample-accurate labels stay valid.

Strengths of :func:`sample_perturbation`: ``"train"`` and ``"test"`` use a statistical room (decaying noise with a
few early reflections) mixed with the dry signal; ``"room"`` puts the source and a microphone in a simulated
shoebox room instead (image sources for the early reflections, so the microphone distance sets the balance of
direct sound and reverberation; a decaying-noise tail for the late reverberation) and MP3-encodes half of the
recordings. The room simulation needs ``pyroomacoustics`` (the ``synth`` extra).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import numpy as np
import soundfile as sf
from scipy import signal

__all__ = ["Perturbation", "sample_perturbation", "apply_perturbation", "room_impulse_response",
           "shoebox_impulse_response", "mp3_round_trip", "random_smooth_eq", "STRENGTHS"]

#: what ``sample_perturbation`` takes
STRENGTHS = ("train", "test", "room", "none")


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
    room_m: Optional[List[float]] = None  # a simulated shoebox room: length, width, height (replaces the rt60 room)
    source_m: Optional[List[float]] = None  # where the instruments are in it
    microphone_m: Optional[List[float]] = None  # where the microphone is
    mp3_level: Optional[float] = None  # MP3-encode and decode at this compression level (0 best .. <1), last

    def to_dict(self) -> Dict:
        return asdict(self)


def sample_perturbation(rng: np.random.Generator, strength: str = "train") -> Perturbation:
    """Draw recording conditions.

    Parameters
    ----------
    rng : numpy.random.Generator
    strength : {"train", "test", "room", "none"}
        ``"train"`` draws broad conditions (sometimes dry); ``"test"`` always applies a room
        and noise, from the held-out protocol's ranges; ``"room"`` draws as ``"train"`` but with a simulated
        shoebox room (:func:`shoebox_impulse_response`; 4-30 m long, RT60 0.2-2.2 s, the microphone 0.5-12 m
        from the source) and, for half of the recordings, an MP3 compression level.
    """
    if strength not in STRENGTHS:
        raise ValueError(f"strength must be one of {', '.join(STRENGTHS)}, got {strength!r}")
    if strength == "none":
        return Perturbation()
    always = strength == "test"
    p = Perturbation()
    if strength == "room":
        if rng.random() < 0.8:
            _draw_shoebox(p, rng)
    elif always or rng.random() < 0.7:
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
    if strength == "room" and rng.random() < 0.5:
        p.mp3_level = float(min(rng.uniform(0.0, 1.0), 0.999))  # libsndfile refuses 1.0
    return p


def _draw_shoebox(p: Perturbation, rng: np.random.Generator) -> None:
    """A room from a studio to a hall, a source in it and a microphone at a drawn distance from the source."""
    room = np.array([rng.uniform(4.0, 30.0), rng.uniform(3.0, 22.0), rng.uniform(2.5, 12.0)])
    volume, surface = np.prod(room), 2 * (room[0] * room[1] + room[0] * room[2] + room[1] * room[2])
    shortest = 0.161 * volume / surface * 1.05  # Sabine: the RT60 of a room whose walls absorb everything
    p.rt60_s = float(max(rng.uniform(0.2, 2.2), shortest))
    margin = 0.5
    source = rng.uniform(margin, room - margin)
    distance = float(np.exp(rng.uniform(np.log(0.5), np.log(12.0))))
    microphone = None
    for _ in range(50):  # a direction that keeps the microphone in the room; else shorter distances
        direction = rng.standard_normal(3)
        candidate = source + distance * direction / np.linalg.norm(direction)
        if np.all(candidate >= margin) and np.all(candidate <= room - margin):
            microphone = candidate
            break
        distance *= 0.9
    if microphone is None:
        microphone = np.clip(source + 0.5, margin, room - margin)
    p.room_m, p.source_m, p.microphone_m = ([float(v) for v in x] for x in (room, source, microphone))


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
    if p.room_m is not None:  # the microphone hears the room only: direct sound and reflections are in the IR
        ir = shoebox_impulse_response(p.room_m, p.source_m, p.microphone_m, p.rt60_s, sr, rng)
        heard = signal.fftconvolve(y, ir)[:n]
        y = heard * (np.std(y) / (np.std(heard) + 1e-12))
    elif p.rt60_s:
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
    y = _below_full_scale(y)
    if p.mp3_level is not None and n:  # last, as a recording is encoded after it is made
        y = _below_full_scale(mp3_round_trip(y.astype(np.float32), sr, p.mp3_level))
    return y.astype(np.float32)


def _below_full_scale(y: np.ndarray) -> np.ndarray:
    peak = np.max(np.abs(y)) if len(y) else 0.0
    return y * (0.99 / peak) if peak > 0.99 else y


def shoebox_impulse_response(room_m: List[float], source_m: List[float], microphone_m: List[float], rt60_s: float,
                             sr: int, rng: np.random.Generator, max_order: int = 6,
                             early_s: float = 0.08) -> np.ndarray:
    """Impulse response from ``source_m`` to ``microphone_m`` in a shoebox room of reverberation time ``rt60_s``.

    The first ``early_s`` seconds after the direct sound are pyroomacoustics' image sources (up to ``max_order``
    reflections, walls of uniform absorption from Sabine's formula, air absorption): the direct sound falls with
    the distance, so a far microphone hears relatively more room. Image sources of low order stop short of the
    late reverberation, so from there on the response is Gaussian noise decaying by 60 dB in ``rt60_s`` (its highs
    dying first), starting at the level the image sources reached.
    The response starts at the direct sound (no propagation delay, so labels stay aligned) and has unit energy.
    Deterministic given ``rng`` (the image-source model has no randomness).
    """
    try:
        import pyroomacoustics as pra  # optional (the synth extra): only this room model needs it
    except ImportError:
        raise ImportError("the 'room' perturbation needs pyroomacoustics: pip install 'instrument-classifier[synth]'"
                          ) from None
    absorption, _ = pra.inverse_sabine(rt60_s, room_m)
    room = pra.ShoeBox(room_m, fs=sr, materials=pra.Material(absorption), max_order=max_order, air_absorption=True)
    room.add_source(source_m)
    room.add_microphone(np.asarray(microphone_m, dtype=float).reshape(3, 1))
    room.compute_rir()
    early = np.asarray(room.rir[0][0], dtype=np.float64)
    start = int(np.argmax(np.abs(early) > 0.1 * np.max(np.abs(early))))  # the direct sound
    early = early[start:]
    split = min(len(early), max(int(early_s * sr), 1))
    fade = min(int(0.01 * sr), split)
    level = np.sqrt(np.mean(early[split - fade:split] ** 2)) + 1e-12  # RMS of the last 10 ms of image sources
    n = max(int(min(rt60_s * 1.2, 3.0) * sr), split + 1)
    t = np.arange(n - split + fade) / sr
    # highs die first: the noise moves from broadband to low-passed (two independent noises, so the energy envelope
    # is exactly the RT60's decay)
    broadband = rng.standard_normal(len(t))
    low = signal.lfilter([0.3], [1, -0.7], rng.standard_normal(len(t)))
    low /= np.std(low) + 1e-12
    bright = np.exp(-t / (rt60_s / 2))
    tail = level * np.exp(-6.9 * t / rt60_s) * (np.sqrt(bright) * broadband + np.sqrt(1 - bright) * low)
    ir = np.zeros(n)
    ir[:split] = early[:split]
    ramp = np.linspace(0.0, 1.0, fade)
    ir[split - fade:split] *= 1 - ramp
    ir[split - fade:] += tail[: n - split + fade] * np.concatenate([ramp, np.ones(n - split)])
    return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)


def mp3_round_trip(audio: np.ndarray, sr: int, level: float) -> np.ndarray:
    """``audio`` (mono float32) MP3-encoded at compression ``level`` (libsndfile's LAME, variable bit rate: 0 best,
    towards 1 smallest; libsndfile 1.2 refuses 1 itself) and decoded again, in memory; same length (libsndfile's
    decoder removes the encoder's delay)."""
    if not 0.0 <= level < 1.0:
        raise ValueError(f"MP3 compression level must be in [0, 1), got {level}")
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), sr, format="MP3", subtype="MPEG_LAYER_III", compression_level=level)
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    decoded = decoded if decoded.ndim == 1 else decoded.mean(axis=1)
    out = np.zeros(len(audio), dtype=np.float32)
    out[: min(len(out), len(decoded))] = decoded[: len(out)]
    return out


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
