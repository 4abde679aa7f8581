"""Read MusicNet-layout folders: recordings, note labels and frame-level instrument activity.

Layouts accepted by :func:`find_musicnet_root`::

    DIR/train_data/ID.wav  DIR/train_labels/ID.csv  DIR/test_data/  DIR/test_labels/  DIR/musicnet_metadata.csv
    DIR/musicnet/musicnet/train_data/...   (the Kaggle download; metadata in DIR/musicnet/ or DIR/)

Label CSVs have MusicNet's 7 columns ``start_time,end_time,instrument,note,start_beat,end_beat,note_value``
(any order, extra columns and a UTF-8 BOM tolerated). Times are sample positions at 44.1 kHz and
``instrument`` is the 1-based General MIDI program. Every problem raises :class:`MusicNetError` naming the
file and, for CSV problems, the 1-based line number ("row") in the file: wrong labels are never guessed.
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from .taxonomy import Taxonomy, UnknownInstrumentError, get_taxonomy

__all__ = [
    "MusicNetError",
    "Recording",
    "LABEL_COLUMNS",
    "NOTE_DTYPE",
    "SPLITS",
    "find_musicnet_root",
    "list_recordings",
    "read_labels",
    "label_indices",
    "frame_activity",
]

SPLITS = ("train", "test")
#: MusicNet label times (start_time, end_time) count samples of its 44.1-kHz recordings.
MUSICNET_SR = 44100
#: Latest label time accepted (6,300 hours at 44.1 kHz): frame_activity's integer arithmetic (2 x time x rate)
#: stays far inside int64, where 2**62 overflowed and dropped the note, and 1e30 overflowed numpy itself.
MAX_LABEL_SAMPLE = 10**12
LABEL_COLUMNS = ("start_time", "end_time", "instrument", "note", "start_beat", "end_beat", "note_value")
#: One note per CSV row; ``line`` is the row's 1-based line number in the CSV, kept for error messages.
NOTE_DTYPE = np.dtype(
    [("start", np.int64), ("end", np.int64), ("instrument", np.int64), ("note", np.int64), ("line", np.int64)]
)
#: A structured array with :data:`NOTE_DTYPE` (times in samples at 44.1 kHz, 1-based GM programs).
Notes = np.ndarray


class MusicNetError(ValueError):
    """Unusable MusicNet input; the message names the file (and the row for CSV problems)."""


@dataclass(frozen=True)
class Recording:
    """One MusicNet recording: its audio file and its label CSV."""

    id: str
    split: str
    audio_path: Path
    labels_path: Path


def find_musicnet_root(path: Union[str, os.PathLike]) -> Path:
    """The folder holding ``{train,test}_{data,labels}/`` for ``path`` (original or Kaggle layout)."""
    path = Path(path)
    if not path.is_dir():
        raise MusicNetError(f"{path}: no such directory")
    for candidate in (path, path / "musicnet", path / "musicnet" / "musicnet"):
        if any((candidate / f"{split}_{kind}").is_dir() for split in SPLITS for kind in ("data", "labels")):
            return candidate
    raise MusicNetError(
        f"{path}: not a MusicNet folder (expected train_data/, train_labels/, test_data/, test_labels/ "
        "in it or in musicnet/musicnet/ below it)"
    )


def _id_key(recording_id: str):
    # MusicNet ids are numbers: sort 2 before 10; any other name after them, alphabetically
    return (0, int(recording_id), "") if recording_id.isdigit() else (1, 0, recording_id)


def list_recordings(
    root: Union[str, os.PathLike],
    splits: Sequence[str] = SPLITS,
    skip_bad: bool = False,
    skipped: Optional[List[Tuple[str, str]]] = None,
) -> List[Recording]:
    """Pair every ``{split}_data/ID.wav`` with ``{split}_labels/ID.csv``, sorted by split then id.

    Parameters
    ----------
    root : path
        A MusicNet folder in either layout (see :func:`find_musicnet_root`).
    splits : sequence of {"train", "test"}
    skip_bad : bool
        Audio without labels (or labels without audio) raises :class:`MusicNetError`; with ``skip_bad``
        the file is skipped with a warning instead.
    skipped : list, optional
        Receives ``(path, reason)`` for every skipped file.
    """
    root = find_musicnet_root(root)
    recordings: List[Recording] = []
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; MusicNet has {SPLITS}")
        data_dir, labels_dir = root / f"{split}_data", root / f"{split}_labels"
        wavs = {p.stem: p for p in data_dir.glob("*.wav")} if data_dir.is_dir() else {}
        csvs = {p.stem: p for p in labels_dir.glob("*.csv")} if labels_dir.is_dir() else {}
        for rid in sorted(set(wavs) | set(csvs), key=_id_key):
            if rid in wavs and rid in csvs:
                recordings.append(Recording(rid, split, wavs[rid], csvs[rid]))
                continue
            if rid in wavs:
                path, problem = wavs[rid], f"audio without labels (no {labels_dir / (rid + '.csv')})"
            else:
                path, problem = csvs[rid], f"labels without audio (no {data_dir / (rid + '.wav')})"
            _fail_or_skip(f"{path}: {problem}", path, skip_bad, skipped)
    return recordings


def _fail_or_skip(message: str, path, skip_bad: bool, skipped: Optional[list]) -> None:
    if not skip_bad:
        raise MusicNetError(message)
    warnings.warn(f"skipping recording: {message}", stacklevel=3)
    if skipped is not None:
        skipped.append((str(path), message))


# -- labels ------------------------------------------------------------------------------------------

def _number(text: str, column: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MusicNetError(f"{path}, row {line}: {column} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise MusicNetError(f"{path}, row {line}: {column} is not finite: {text!r}")
    return value


def _integer(text: str, column: str, path: Path, line: int) -> int:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        value = _number(text, column, path, line)
    if column in ("instrument", "note") and value != round(value):
        raise MusicNetError(f"{path}, row {line}: {column} must be a whole number, got {text!r}")
    return int(round(value))  # times as "9182.0": sub-sample precision is meaningless here


def _next_row(reader, path: Path) -> Optional[List[str]]:
    """The next CSV record, or ``None`` at the end; a record spanning several lines is refused.

    Label rows hold numbers and words, never quoted line breaks: a stray ``"`` opens a quoted field that runs on
    to the next ``"`` (or the end), swallowing the rows in between, so it must not pass for one row.
    """
    first = reader.line_num + 1
    try:
        fields = next(reader, None)
    except csv.Error as exc:  # e.g. "field larger than field limit (131072)": the quote ran on past 128 KB
        raise MusicNetError(f"{path}, row {first}: {exc}; is there a stray double quote (\") in this row?") from None
    if fields is not None and reader.line_num > first:
        raise MusicNetError(
            f"{path}, row {first}: a double quote (\") opens a field that runs on over {reader.line_num - first + 1} "
            f"lines, to line {reader.line_num}; label rows hold no quoted line breaks: remove the stray quote"
        )
    return fields


def read_labels(
    csv_path: Union[str, os.PathLike], with_score: bool = False
) -> Union[Notes, Tuple[Notes, List[Tuple[str, str, str]]]]:
    """Parse and validate one MusicNet label CSV: the one parser of label files.

    Parameters
    ----------
    csv_path : str or path-like
    with_score : bool
        Also return the score columns of every row, verbatim (the renderer writes them back).

    Returns
    -------
    notes : np.ndarray
        Structured array with int64 fields ``start``, ``end`` (samples at 44.1 kHz), ``instrument``
        (1-based GM program), ``note`` (MIDI pitch) and ``line`` (the row's line number), one entry per
        row in file order. A header-only CSV gives an empty array.
    score : list of (str, str, str)
        With ``with_score`` only: ``(start_beat, end_beat, note_value)`` of each note, stripped of spaces.

    Raises
    ------
    MusicNetError
        Unreadable file, missing columns, short row, non-numeric field, negative time, a time beyond
        :data:`MAX_LABEL_SAMPLE`, ``end < start``, instrument outside GM 1..128, pitch outside 0..127, or a stray
        double quote (a quoted field running over line ends); the message names the file and row.
    """
    path = Path(csv_path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: tolerate a BOM
    except OSError as exc:
        raise MusicNetError(f"{path}: cannot read labels ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise MusicNetError(f"{path}: labels are not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in _next_row(reader, path) or []]
    missing = [c for c in LABEL_COLUMNS if c not in header]
    if missing:
        raise MusicNetError(
            f"{path}, row 1: {'empty file: ' if not any(header) else ''}missing column(s) {', '.join(missing)}; "
            "a MusicNet label file has the header "
            f"{','.join(LABEL_COLUMNS)}"
        )
    col = {c: header.index(c) for c in LABEL_COLUMNS}
    rows, score = [], []
    while (fields := _next_row(reader, path)) is not None:
        line = reader.line_num
        if not any(f.strip() for f in fields):
            continue  # blank line
        if len(fields) < len(header):
            raise MusicNetError(f"{path}, row {line}: {len(fields)} fields, the header has {len(header)}")
        start = _integer(fields[col["start_time"]], "start_time", path, line)
        end = _integer(fields[col["end_time"]], "end_time", path, line)
        program = _integer(fields[col["instrument"]], "instrument", path, line)
        pitch = _integer(fields[col["note"]], "note", path, line)
        _number(fields[col["start_beat"]], "start_beat", path, line)
        _number(fields[col["end_beat"]], "end_beat", path, line)
        if start < 0:
            raise MusicNetError(f"{path}, row {line}: negative start_time {start}")
        for column, value in (("start_time", start), ("end_time", end)):
            if value > MAX_LABEL_SAMPLE:  # would overflow numpy's int64 or the frame arithmetic
                raise MusicNetError(f"{path}, row {line}: {column} {fields[col[column]].strip()} is beyond any "
                                    f"recording (at most {MAX_LABEL_SAMPLE:.0e} samples, "
                                    f"{MAX_LABEL_SAMPLE / MUSICNET_SR / 3600:,.0f} hours at 44.1 kHz)")
        if end < start:
            raise MusicNetError(f"{path}, row {line}: end_time {end} is before start_time {start}")
        if not 1 <= program <= 128:
            raise MusicNetError(f"{path}, row {line}: instrument {program} is not a General MIDI program (1..128)")
        if not 0 <= pitch <= 127:
            raise MusicNetError(f"{path}, row {line}: note {pitch} is not a MIDI pitch (0..127)")
        rows.append((start, end, program, pitch, line))
        score.append((fields[col["start_beat"]].strip(), fields[col["end_beat"]].strip(),
                      fields[col["note_value"]].strip()))
    notes = np.array(rows, dtype=NOTE_DTYPE)
    return (notes, score) if with_score else notes


def label_indices(notes: Notes, taxonomy: Union[str, Taxonomy], source: Optional[str] = None) -> np.ndarray:
    """Class index of every note under ``taxonomy``.

    Raises
    ------
    UnknownInstrumentError
        For a program the taxonomy does not map, naming ``source`` and the note's CSV row when known.
    """
    taxonomy = get_taxonomy(taxonomy)
    programs = np.asarray(notes["instrument"], dtype=np.int64)
    out = np.empty(len(programs), dtype=np.int64)
    for program in np.unique(programs):
        where = programs == program
        try:
            out[where] = taxonomy.index_of(int(program))
        except UnknownInstrumentError as exc:
            first = int(np.flatnonzero(where)[0])
            row = int(notes["line"][first]) if "line" in (notes.dtype.names or ()) else first + 2
            where_text = f"{source}, row {row}: " if source else f"row {row}: "
            raise UnknownInstrumentError(where_text + str(exc)) from None
    return out


def frame_activity(
    notes: Notes,
    num_frames: int,
    taxonomy: Union[str, Taxonomy],
    hop_length: int = 512,
    source: Optional[str] = None,
    sampling_rate: int = MUSICNET_SR,
) -> np.ndarray:
    """Which labels sound in each feature frame: ``uint8`` array ``(num_frames, num_labels)``.

    Frame ``t`` is centred on sample ``t * hop_length`` of audio at ``sampling_rate`` (as the centred
    STFT's) and covers ``[t*hop - hop/2, t*hop + hop/2)``; a label is on iff one of its notes
    ``[start, end)`` (in samples at 44.1 kHz, as MusicNet counts them) overlaps that interval. Zero-length
    notes (``start == end``) sound in no frame. ``source`` names the CSV in errors.
    """
    taxonomy = get_taxonomy(taxonomy)
    active = np.zeros((num_frames + 1, taxonomy.num_labels), dtype=np.int32)
    if len(notes) and num_frames > 0:
        index = label_indices(notes, taxonomy, source)
        start, end = notes["start"].astype(np.int64), notes["end"].astype(np.int64)
        # Integer arithmetic on doubled positions, both sides scaled to a common rate (label samples x
        # sampling_rate = frame samples x 44100): exact for odd hops and for frame rates other than 44.1 kHz.
        rate, step = int(sampling_rate), hop_length * MUSICNET_SR
        first = np.floor_divide(2 * start * rate - step, 2 * step) + 1  # start < t*hop + hop/2
        last = np.floor_divide(2 * end * rate + step - 1, 2 * step)  # end > t*hop - hop/2
        first, last = np.maximum(first, 0), np.minimum(last, num_frames - 1)
        keep = (end > start) & (first <= last)
        # difference array: +1 where a note begins to sound, -1 after its last frame
        np.add.at(active, (first[keep], index[keep]), 1)
        np.add.at(active, (last[keep] + 1, index[keep]), -1)
    return (np.cumsum(active, axis=0)[:num_frames] > 0).astype(np.uint8)
