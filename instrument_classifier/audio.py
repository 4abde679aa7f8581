"""Audio decoding with clear errors: every failure names the file.

Audio is read with soundfile (no torchcodec/torchaudio), downmixed to mono and
resampled with soxr to the model rate (44.1 kHz, the rate MusicNet labels count in).
"""

from __future__ import annotations

import os
import re
from typing import Iterator, Tuple

import numpy as np
import soundfile as sf

__all__ = ["AudioError", "TARGET_SR", "audio_info", "load_audio", "stream_audio", "check_waveform"]

TARGET_SR = 44100


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file."""


def audio_info(path: str | os.PathLike) -> sf._SoundFileInfo:
    """Header of an audio file; raises :class:`AudioError` for missing, empty or unreadable files."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        info = sf.info(path)
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        raise AudioError(f"{path}: not a readable audio file ({_short(exc)})") from None
    if info.frames == 0:
        raise AudioError(f"{path}: zero-length audio (no samples)")
    _check_complete(path, info)
    return info


# libsndfile's log for a WAV/AIFF whose data chunk runs past the end of the file: "data : 176400 (should be 88178)"
_SHORT_DATA = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# sizes streaming writers put in the header when they cannot seek back (ffmpeg/sox to a pipe): not truncation
_UNKNOWN_SIZES = (0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000)


def _check_complete(path: str, info) -> None:
    # libsndfile silently decodes a truncated WAV as a shorter file; a half-copied recording must not pass
    # for a complete one (its labels would then run past the audio, its prediction cover only a part).
    match = _SHORT_DATA.search(getattr(info, "extra_info", "") or "")
    if match is None:
        return
    declared, present = int(match.group(1)), int(match.group(2))
    if declared > present and declared not in _UNKNOWN_SIZES:
        raise AudioError(
            f"{path}: truncated file: the header announces {declared} bytes of audio data but only {present} "
            f"are present ({info.frames / info.samplerate:.2f} s of audio); was the download or copy interrupted?"
        )


def check_waveform(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    """Validate a decoded waveform: non-empty and finite. Returns it as float32."""
    audio = np.asarray(audio)
    if audio.size == 0:
        raise AudioError(f"{name}: zero-length audio (no samples)")
    if not np.issubdtype(audio.dtype, np.floating) and not np.issubdtype(audio.dtype, np.integer):
        raise AudioError(f"{name}: audio must be a numeric array, got dtype {audio.dtype}")
    audio = audio.astype(np.float32, copy=False)
    if not np.all(np.isfinite(audio)):
        bad = int(np.flatnonzero(~np.isfinite(audio.reshape(-1)))[0])
        raise AudioError(f"{name}: audio contains NaN or infinite samples (first at sample {bad})")
    return audio


def _to_mono(block: np.ndarray) -> np.ndarray:
    return block.mean(axis=1, dtype=np.float32) if block.ndim == 2 else block.astype(np.float32)


def _resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    if orig_sr == target_sr:
        return audio
    import soxr

    return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def load_audio(path: str | os.PathLike, sr: int | None = TARGET_SR) -> Tuple[np.ndarray, int]:
    """Read a whole file as mono float32.

    Parameters
    ----------
    path : str or path-like
        Any format libsndfile reads (wav PCM 8/16/24/32, float, flac, ogg, ...).
    sr : int or None
        Target sampling rate; ``None`` keeps the file's rate.

    Returns
    -------
    audio : np.ndarray, shape (n_samples,), float32
    sr : int
    """
    path = os.fspath(path)
    info = audio_info(path)
    try:
        data, file_sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{path}: audio data could not be decoded ({_short(exc)}); is the file truncated?") from None
    audio = check_waveform(_to_mono(data), path)
    if sr is None:
        return audio, file_sr
    return _resample(audio, info.samplerate, sr), sr


def stream_audio(
    path: str | os.PathLike, block_seconds: float = 60.0, sr: int = TARGET_SR
) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 blocks at ``sr``; memory is bounded by one block.

    Resampling is streamed (soxr keeps its filter state between blocks), so the
    concatenated blocks equal a whole-file resample up to filter edge effects.
    """
    path = os.fspath(path)
    info = audio_info(path)
    blocksize = max(1, int(block_seconds * info.samplerate))
    resampler = None
    if info.samplerate != sr:
        import soxr

        resampler = soxr.ResampleStream(info.samplerate, sr, 1, dtype="float32", quality="HQ")
    offset = 0
    try:
        with sf.SoundFile(path) as f:
            while True:
                block = f.read(blocksize, dtype="float32", always_2d=True)
                last = len(block) < blocksize
                mono = _to_mono(block)
                if not np.all(np.isfinite(mono)):  # position in the file, not in the block
                    bad = offset + int(np.flatnonzero(~np.isfinite(mono))[0])
                    raise AudioError(f"{path}: audio contains NaN or infinite samples (first at sample {bad})")
                offset += len(block)
                if resampler is not None:
                    mono = resampler.resample_chunk(mono, last=last)
                if len(mono):
                    yield mono
                if last:
                    break
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"{path}: audio data could not be decoded near sample {offset} ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
