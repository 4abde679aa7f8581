"""Bad and unusual inputs for the hardening tests (``test_bad_inputs.py``): audio files, label CSVs, folders.

Everything is generated, deterministic and small. The *reference* is a clean mono 44.1 kHz float signal of
harmonic tones with known notes, band-limited below 3 kHz and without noise: its 8 kHz, 96 kHz, stereo,
16- and 24-bit versions must then give the reference's MFCCs (within PCM16 quantisation), so any wrong
scale, offset, channel handling or resampling shows up as a large difference.

Case names are the matrix's column names:

* audio that must be refused: :data:`AUDIO_ERRORS` (case -> text the error must contain besides the file name);
* audio that must work: :data:`AUDIO_OK`;
* label CSVs: :data:`CSV_ERRORS` (case -> text the error must contain besides file and row) and :data:`CSV_OK`;
* MusicNet folders: :data:`FOLDER_ERRORS` (case -> the file the error must name).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

SR = 44100
HEADER = ["start_time", "end_time", "instrument", "note", "start_beat", "end_beat", "note_value"]
Note = Tuple[int, int, int, int]  # start, end (samples at 44.1 kHz), 1-based GM program, MIDI pitch

#: Violin, piano and flute notes over 3 s, overlapping (several labels at once), all below 3 kHz with harmonics.
REF_SECONDS = 3.0
REF_NOTES: List[Note] = [
    (0, int(1.5 * SR), 41, 57),  # violin A3 (220 Hz)
    (int(0.5 * SR), int(2.0 * SR), 1, 76),  # piano E5 (659 Hz)
    (int(1.0 * SR), int(3.0 * SR), 74, 64),  # flute E4 (330 Hz)
]
_HARMONICS = (1.0, 0.5, 0.3, 0.2)

#: audio case -> what the error message must say (it must also name the file)
AUDIO_ERRORS: Dict[str, str] = {
    "empty": "empty file",
    "zero_length": "zero-length",
    "text_as_wav": "not a readable audio file",
    "truncated": "truncated",
    "nan": "NaN",
    "inf": "infinite",
}
#: audio cases that must work and agree with the reference
AUDIO_OK = ("stereo", "sr_8k", "sr_96k", "pcm_u8", "pcm_24", "short_1s")
SHORT_SECONDS = 1.0  # shorter than one window (256 frames = 2.97 s)
BAD_SAMPLE = int(REF_SECONDS * SR) // 3  # where the NaN / inf case has its bad sample

#: label CSV case -> what the error must say (besides the file name and "row 3")
CSV_ERRORS: Dict[str, str] = {
    "missing_columns": "end_time",
    "swapped_start_end": "before start_time",
    "unknown_instrument": "200",  # not a General MIDI program
    "non_numeric": "not a number",
    "stray_quote": "double quote",  # opens a quoted field that swallowed the rows after it
    "end_time_1e30": "beyond",  # an OverflowError deep in numpy
    "end_time_2_62": "beyond",  # overflowed the frame arithmetic: the note was dropped silently
}
#: CSV cases every reader must accept with the same notes as the plain file
CSV_OK = ("bom", "extra_columns")
#: a valid GM program (54, voice) that the taxonomies do not map: `prepare` refuses it, `synth` renders it
UNMAPPED_PROGRAM = 54
#: the 1-based line of the broken row in every broken CSV (row 1 is the header)
BAD_ROW = 3


def bad_row(case: str) -> int:
    """The row an error about CSV ``case`` must name (the header for a missing column)."""
    return 1 if case == "missing_columns" else BAD_ROW

#: folder case -> which of the pair's files the error names
FOLDER_ERRORS = {"wav_without_csv": ".wav", "csv_without_wav": ".csv"}


def reference_audio(seconds: float = REF_SECONDS, notes: Sequence[Note] = REF_NOTES) -> np.ndarray:
    """The clean mono float32 reference at 44.1 kHz (peak about 0.55)."""
    n = int(round(seconds * SR))
    out = np.zeros(n, dtype=np.float64)
    for start, end, _, pitch in notes:
        end = min(end, n)
        if end <= start:
            continue
        t = np.arange(end - start) / SR
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        # 10 ms linear fades: no clicks, so nothing above 3 kHz
        env = np.minimum(1.0, t / 0.01) * np.minimum(1.0, (end - start - np.arange(end - start)) / SR / 0.01)
        out[start:end] += 0.15 * env * sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t) for k, a in enumerate(_HARMONICS))
    return out.astype(np.float32)


def clip_notes(notes: Sequence[Note], num_samples: int) -> List[Note]:
    """Notes cut to the first ``num_samples`` samples (those starting later dropped)."""
    return [(s, min(e, num_samples), p, m) for s, e, p, m in notes if s < num_samples]


# -- audio -----------------------------------------------------------------------------------------------

def write_audio_case(path: Path, case: str, audio: Optional[np.ndarray] = None) -> Path:
    """Write ``audio`` (default: the reference) to ``path`` as ``case``; returns ``path``.

    Error cases ignore the content where it does not matter (``empty``, ``text_as_wav``, ``zero_length``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = reference_audio() if audio is None else np.asarray(audio, dtype=np.float32)
    if case == "empty":
        path.write_bytes(b"")
    elif case == "zero_length":
        sf.write(path, np.zeros(0, np.float32), SR, subtype="PCM_16")
    elif case == "text_as_wav":
        path.write_text("start_time,end_time,instrument\nthis is a CSV renamed to .wav\n")
    elif case == "truncated":  # a download or copy cut half-way through the data chunk
        sf.write(path, audio, SR, subtype="PCM_16")
        data = path.read_bytes()
        path.write_bytes(data[: 44 + (len(data) - 44) // 2 + 1])
    elif case in ("nan", "inf"):
        bad = audio.copy()
        bad[BAD_SAMPLE] = np.nan if case == "nan" else np.inf
        sf.write(path, bad, SR, subtype="FLOAT")
    elif case == "stereo":
        sf.write(path, np.stack([audio, audio], axis=1), SR, subtype="FLOAT")
    elif case in ("sr_8k", "sr_96k"):
        import soxr

        rate = 8000 if case == "sr_8k" else 96000
        sf.write(path, soxr.resample(audio, SR, rate, quality="HQ"), rate, subtype="FLOAT")
    elif case == "pcm_u8":
        sf.write(path, audio, SR, subtype="PCM_U8")  # WAV 8-bit is unsigned: decoded around 0 or it is a bug
    elif case == "pcm_24":
        sf.write(path, audio, SR, subtype="PCM_24")
    elif case == "short_1s":
        sf.write(path, audio[: int(SHORT_SECONDS * SR)], SR, subtype="FLOAT")
    elif case == "reference":
        sf.write(path, audio, SR, subtype="FLOAT")
    else:
        raise ValueError(f"unknown audio case {case!r}")
    return path


def long_pcm16(path: Path, hours: float, sr: int = 8000, format: str = "WAV") -> Path:
    """A real ``hours``-long mono PCM16 file (``format`` "WAV" or "FLAC"), written 10 s at a time in bounded
    memory (a WAV takes about 1 s per hour at 8 kHz).

    The content repeats every 10 s: a 200 Hz tone at amplitude 0.3 for 5 s (1000 whole periods), then 5 s
    of digital silence. Mean power is therefore ``0.3**2 / 2 / 2 = 0.0225``.
    """
    t = np.arange(5 * sr) / sr
    pattern = np.concatenate([0.3 * np.sin(2 * np.pi * 200.0 * t), np.zeros(5 * sr)]).astype(np.float32)
    total = int(round(hours * 3600 * sr))
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16", format=format) as f:
        for done in range(0, total, len(pattern)):
            f.write(pattern[: total - done])
    return path


LONG_MEAN_POWER = 0.0225


# -- label CSVs ------------------------------------------------------------------------------------------

def _rows(notes: Sequence[Note]) -> List[List[str]]:
    return [[str(s), str(e), str(p), str(m), "0.0", "1.0", "Quarter"] for s, e, p, m in notes]


def write_labels(path: Path, notes: Sequence[Note] = REF_NOTES, case: str = "plain") -> Path:
    """Write the notes as a MusicNet label CSV in one of the CSV cases.

    Broken cases put the defect in line :data:`BAD_ROW` (a data row; ``missing_columns`` in the header).
    ``"unmapped_instrument"`` inserts a note of :data:`UNMAPPED_PROGRAM` there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header, rows = list(HEADER), _rows(notes)
    assert len(rows) >= 2, "need two notes to put the defect in row 3"
    bad = list(rows[1])
    if case == "missing_columns":
        header.remove("end_time")
        rows = [r[:1] + r[2:] for r in rows]
    elif case == "swapped_start_end":
        bad[0], bad[1] = bad[1], bad[0]
        rows[1] = bad
    elif case == "unknown_instrument":
        bad[2] = "200"
        rows[1] = bad
    elif case == "unmapped_instrument":
        bad[2] = str(UNMAPPED_PROGRAM)
        rows[1] = bad
    elif case == "non_numeric":
        bad[0] = "12abc"
        rows[1] = bad
    elif case in ("end_time_1e30", "end_time_2_62"):
        bad[1] = "1e30" if case == "end_time_1e30" else str(2**62)
        rows[1] = bad
    elif case == "extra_columns":
        header = ["id"] + header + ["comment"]
        rows = [[str(i)] + r + ["a, quoted \"note\""] for i, r in enumerate(rows)]
    elif case not in ("plain", "bom", "stray_quote"):
        raise ValueError(f"unknown CSV case {case!r}")
    with open(path, "w", newline="", encoding="utf-8-sig" if case == "bom" else "utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    if case == "stray_quote":  # a typo no CSV writer makes: an unbalanced " before note_value
        lines = path.read_bytes().split(b"\r\n")  # csv.writer ends rows with \r\n
        lines[BAD_ROW - 1] = lines[BAD_ROW - 1].replace(b",Quarter", b',"Quarter')
        path.write_bytes(b"\r\n".join(lines))
    return path


# -- MusicNet folders ------------------------------------------------------------------------------------

def write_metadata(root: Path, ids: Sequence[str]) -> None:
    with open(root / "musicnet_metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "composer", "composition", "movement", "ensemble", "source", "transcriber",
                    "catalog_name", "seconds"])
        for rid in ids:
            w.writerow([rid, "Synthetic", "Tones", "1", "Test", "tests", "tests", "T1", int(REF_SECONDS)])


def make_corpus(root: Path, recordings: Dict[str, Tuple[str, str, str]]) -> Path:
    """A MusicNet-layout folder: ``{id: (split, audio case, CSV case)}`` over the reference notes.

    ``short_1s`` recordings get their notes clipped to the clip. Returns ``root``.
    """
    root = Path(root)
    for rid, (split, audio_case, csv_case) in recordings.items():
        notes = REF_NOTES
        if audio_case == "short_1s":
            notes = clip_notes(REF_NOTES, int(SHORT_SECONDS * SR))
        write_audio_case(root / f"{split}_data" / f"{rid}.wav", audio_case)
        write_labels(root / f"{split}_labels" / f"{rid}.csv", notes, csv_case)
    write_metadata(root, list(recordings))
    return root


def small_corpus(root: Path) -> Path:
    """Four clean train pieces and one test piece (3 s each): the base every broken-folder case starts from."""
    return make_corpus(root, {"11": ("train", "reference", "plain"), "12": ("train", "reference", "plain"),
                              "13": ("train", "reference", "plain"), "14": ("train", "reference", "plain"),
                              "21": ("test", "reference", "plain")})


def break_corpus(root: Path, case: str, rid: str = "12", split: str = "train") -> str:
    """Break recording ``rid`` of a :func:`small_corpus` in place; returns the text the error must contain.

    ``case`` is an audio error case, a CSV error case (or ``unmapped_instrument``), or a folder case.
    """
    wav, labels = root / f"{split}_data" / f"{rid}.wav", root / f"{split}_labels" / f"{rid}.csv"
    if case in AUDIO_ERRORS:
        write_audio_case(wav, case)
        return f"{rid}.wav"
    if case in CSV_ERRORS or case == "unmapped_instrument":
        write_labels(labels, REF_NOTES, case)
        return f"{rid}.csv"
    if case == "wav_without_csv":
        labels.unlink()
        return f"{rid}.wav"
    if case == "csv_without_wav":
        wav.unlink()
        return f"{rid}.csv"
    raise ValueError(f"unknown case {case!r}")


def tree_snapshot(root: Path) -> Dict[str, Tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of every file under ``root`` (empty if absent): "unchanged" checks."""
    root = Path(root)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file()}
