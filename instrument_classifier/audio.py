"""Audio decoding with clear errors: every failure names the file.

Audio is read with soundfile (no torchcodec/torchaudio), downmixed to mono and
resampled with soxr to the model rate (44.1 kHz, the rate MusicNet labels count in).

Memory does not follow what a header declares: files are decoded in blocks of at most
:data:`BLOCK_SAMPLES` samples (frames x channels), each downmixed and resampled before the next is
read. A few KB of FLAC or Ogg can announce 8 channels at 655 kHz or 255 channels at 192 kHz; blocks sized
in seconds would then hold gigabytes. How *much* decoding to allow (the CPU time) is the caller's
decision, from :func:`decoded_samples` of the header (the Space has a limit; ``predict`` runs locally).
"""

from __future__ import annotations

import os
import re
from typing import Iterator, Optional, Tuple

import numpy as np
import soxr
import soundfile as sf

__all__ = ["AudioError", "TARGET_SR", "BLOCK_SAMPLES", "audio_info", "decoded_samples", "load_audio", "stream_audio",
           "check_waveform"]

TARGET_SR = 44100
#: The most samples (frames x channels) decoded at once: 4 M, 16 MB as float32, whatever the header says.
BLOCK_SAMPLES = 1 << 22


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file."""


def audio_info(path: str | os.PathLike, max_samples: Optional[int] = None) -> sf._SoundFileInfo:
    """Header of an audio file; raises :class:`AudioError` for missing, empty, unreadable or truncated files.

    A header without a length (a FLAC written to a pipe) is completed by decoding the file once to count its
    frames (in blocks; remembered for the file's size and time), stopping past ``max_samples`` samples
    (frames x channels) if given: then ``frames`` is a lower bound above that limit.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such audio file")
    if os.path.isdir(path):  # libsndfile would say "Format not recognised"
        raise AudioError(f"{path}: a directory, not an audio file; give the files in it "
                         f"(e.g. {os.path.join(path, '*.wav')})")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        info = sf.info(path)
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        reason = _short(exc)
        if "does not exist" in reason:  # libsndfile's words for an MP3 it cannot parse; the file exists (above)
            reason = "its contents are not audio libsndfile can decode: a damaged file or an unknown format"
        raise AudioError(f"{path}: not a readable audio file ({reason})") from None
    _check_complete(path, info)  # first: a cut Ogg can announce zero frames
    if info.frames == UNKNOWN_LENGTH:
        info.frames = _counted_frames(path, info, max_samples)
        info.duration = info.frames / info.samplerate
    if info.frames == 0:
        raise AudioError(f"{path}: zero-length audio (no samples)")
    return info


# libsndfile's log for a WAV/AIFF whose data chunk runs past the end of the file: "data : 176400 (should be 88178)"
_SHORT_DATA = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# sizes streaming writers put in the header when they cannot seek back (ffmpeg/sox to a pipe): not truncation
_UNKNOWN_SIZES = (0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000)


# W64's log when the file is shorter than its riff chunk: "riff : 264704 (should be 132352)"
_SHORT_W64 = re.compile(r"^\s*riff\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# the length a header declares in frames (RF64's ds64, AIFF's COMM, CAF, FLAC); libsndfile then reports
# only the frames present
_DECLARED_FRAMES = re.compile(r"^\s*Frames\s*:\s*(\d+)\s*$", re.MULTILINE)
# libsndfile's log of an Ogg stream that does not end with its end-of-stream page
_OGG_CUT = ("without an End-Of-Stream", "lacks an end-of-stream bit", "Junk after the last page")
#: libsndfile's frame count when the header gives no length (SF_COUNT_MAX)
UNKNOWN_LENGTH = 2**63 - 1
#: an MP3's length in its header is an estimate (Xing/Info frame or bit rate): shortfalls within this share of
#: it, plus two MPEG frames, are not truncation
MP3_LENGTH_SLACK = 0.01


def _check_complete(path: str, info) -> None:
    # libsndfile silently decodes a truncated file as a shorter one; a half-copied recording must not pass
    # for a complete one (its labels would then run past the audio, its prediction cover only a part).
    # Here what the header and libsndfile's log tell; stream_audio compares the decoded length at the end.
    log = getattr(info, "extra_info", "") or ""
    present_s = f"{info.frames / info.samplerate:.2f} s of audio" if info.frames != UNKNOWN_LENGTH else "audio"
    short = [(int(m.group(1)), int(m.group(2))) for m in _SHORT_DATA.finditer(log)]
    if info.format == "W64":
        short += [(int(m.group(1)), int(m.group(2))) for m in _SHORT_W64.finditer(log)]
    for declared, present in short:
        if declared > present and declared not in _UNKNOWN_SIZES:
            raise AudioError(
                f"{path}: truncated file: the header announces {declared} bytes of audio data but only {present} "
                f"are present ({present_s}); was the download or copy interrupted?"
            )
    declared = [int(m.group(1)) for m in _DECLARED_FRAMES.finditer(log)]
    if declared and max(declared) > info.frames:
        raise AudioError(f"{path}: truncated file: the header announces {max(declared)} frames but only "
                         f"{info.frames} are present ({present_s}); was the download or copy interrupted?")
    if info.format == "OGG" and any(marker in log for marker in _OGG_CUT):
        raise AudioError(f"{path}: truncated file: the Ogg stream ends without its end-of-stream page "
                         f"({present_s}); was the download or copy interrupted?")


def _check_decoded_length(path: str, info, decoded: int) -> None:
    """The decoded frames against the header's count (for Ogg: its last page's; FLAC: STREAMINFO)."""
    expected = int(info.frames)
    if info.format == "MP3":
        expected -= int(MP3_LENGTH_SLACK * expected) + 2 * 1152
    if decoded < expected:
        raise AudioError(f"{path}: truncated file: the header announces {info.frames} frames but the audio data "
                         f"ends after {decoded} ({decoded / info.samplerate:.2f} s); was the download or copy "
                         "interrupted?")


_COUNTED: dict = {}  # (path, size, mtime_ns) -> frames, for headers without a length


def _counted_frames(path: str, info, max_samples: Optional[int]) -> int:
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key in _COUNTED:
        return _COUNTED[key]
    limit = None if max_samples is None else max_samples // info.channels + 1
    count = 0
    try:
        with sf.SoundFile(path) as f:
            buffer = np.empty((max(1, BLOCK_SAMPLES // info.channels), info.channels), dtype=np.float32)
            while limit is None or count < limit:
                read = _read_unknown_length(f, buffer)
                count += read
                if read < len(buffer):
                    break
    except Exception as exc:
        raise AudioError(f"{path}: audio data could not be decoded near sample {count} ({_short(exc)})") from None
    if limit is None or count < limit:  # only a complete count is worth remembering
        _COUNTED[key] = count
    return count


def _read_unknown_length(f: sf.SoundFile, buffer: np.ndarray) -> int:
    """Decode up to ``len(buffer)`` frames into ``buffer`` from a file whose header gives no length.

    SoundFile.read asks libsndfile for its position before each read (``tell``), which a FLAC without a
    length cannot give ("psf_fseek() failed"); libsndfile's own read needs no position.
    """
    pointer = sf._ffi.cast("float *", buffer.ctypes.data)
    read = sf._snd.sf_readf_float(f._file, pointer, len(buffer))
    error = sf._snd.sf_error(f._file)
    if error:
        raise RuntimeError(sf._ffi.string(sf._snd.sf_error_number(error)).decode("utf-8", "replace"))
    return int(read)


def decoded_samples(info) -> int:
    """Samples (frames x channels) a file decodes to, from its header: the work of reading it."""
    return int(info.frames) * int(info.channels)


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


def load_audio(path: str | os.PathLike, sr: int | None = TARGET_SR) -> Tuple[np.ndarray, int]:
    """Read a whole file as mono float32 (decoded block by block: memory is the result, twice).

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
    rate = audio_info(path).samplerate if sr is None else int(sr)
    # the same blocks as stream_audio: soxr's streamed resampling equals its one-shot resampling exactly
    blocks = list(stream_audio(path, sr=rate))
    audio = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    return check_waveform(audio, path), rate


def stream_audio(
    path: str | os.PathLike, block_seconds: float = 60.0, sr: int = TARGET_SR
) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 blocks at ``sr``; memory is bounded by one block.

    A block is ``block_seconds`` of the file, or fewer frames so that it holds at most :data:`BLOCK_SAMPLES`
    samples over all channels. Resampling is streamed (soxr keeps its filter state between blocks), so the
    concatenated blocks equal a whole-file resample.
    """
    path = os.fspath(path)
    info = audio_info(path)
    blocksize = max(1, min(int(block_seconds * info.samplerate), BLOCK_SAMPLES // max(1, info.channels)))
    resampler = None
    if info.samplerate != sr:

        resampler = soxr.ResampleStream(info.samplerate, sr, 1, dtype="float32", quality="HQ")
    offset = 0
    try:
        with sf.SoundFile(path) as f:
            buffer = np.empty((blocksize, info.channels), dtype=np.float32)  # reused: one block's memory
            unknown_length = f.frames == UNKNOWN_LENGTH
            while True:
                if unknown_length:
                    block = buffer[: _read_unknown_length(f, buffer)]
                else:
                    block = f.read(dtype="float32", always_2d=True, out=buffer)  # a view of the rows read
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
        _check_decoded_length(path, info, offset)
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"{path}: audio data could not be decoded near sample {offset} ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
