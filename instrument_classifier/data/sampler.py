"""Render MusicNet label CSVs with recorded multi-samples of real players (DecentSampler ``.dspreset`` libraries).

``instrument-classifier synth --sampler-library DIR`` is the counterpart of the FluidSynth renderer
(:mod:`instrument_classifier.data.render`): the same options, the same corpus layout under ``--out``::

    {split}_data/ID.wav      44.1 kHz mono PCM16, peak-normalised to -1 dBFS
    {split}_labels/ID.csv    exactly the notes that were played, MusicNet's 7 columns
    musicnet_metadata.csv    the source metadata rows of the rendered ids (``seconds`` = rendered length)
    render_info.json         the library folder and its git commit, the settings, the seed, and per recording
                             the variant each instrument got, articulation counts and the notes left out

but every note is a recording of a musician: the Virtual Playing Orchestra (VPO), a free DecentSampler
library (``git clone https://github.com/eodowd/VirtualPlayingOrchestra`` and pass the folder). It has solo and
section strings with staccato and accent samples, horns in two dynamics, oboe, bassoon, clarinet and flute.
It has no piano or harpsichord: notes of instruments the library lacks are left out of the audio *and* the
labels (as ``--omit-programs`` does), and their number is recorded per recording; a recording with only such
instruments is not rendered. ``--distractors`` (see :mod:`instrument_classifier.data.render`) plays replaced
tracks with the library's other instruments, :data:`VPO_DISTRACTORS` (brass, choir, harp, mallets, timpani).

Licences: VPO collects samples from Sonatina Symphonic Orchestra (CC Sampling Plus 1.0), Mattias Westlund's
additional samples (CC BY-SA 3.0), No Budget Orchestra (CC BY-SA 4.0), VSCO 2 Community Edition (CC0), the
University of Iowa MIS (free for any use), the freesound user stamperadam (CC0) and the Philharmonia Orchestra
(free to use in a work, not to be redistributed as samples). This package ships none of them; renders made
from them are derived works under those terms.

How a note is played
--------------------
* Instrument: :data:`VPO_INSTRUMENTS` maps each General MIDI program to *variants* (solo or section players,
  each a set of preset groups per articulation). Each recording draws one variant per instrument, seeded by
  ``seed`` and the recording id, so a corpus mixes soloists and sections.
* Articulation: MusicNet has no articulation marks, so it follows the note's length and context. A detached
  note (silence before the instrument's next note) shorter than ``short_note_seconds``, or a short note
  repeated at the same pitch, is played staccato where the variant has staccato samples; other detached notes
  shorter than ``accent_seconds`` get accent samples where there are some; everything else, fast runs of
  abutting notes included, is sustained. Pizzicato and tremolo samples are never used (nothing in a score row
  says *pizz.*).
* Dynamics: MusicNet has no velocities. Each recording draws a base velocity (``velocity`` ± ``velocity_spread``),
  each note adds a uniform jitter of ± ``velocity_jitter``; the velocity picks the dynamic layer (horns ff/mp,
  solo viola f/mf, or ``loVel``/``hiVel`` zones) and scales the amplitude by ``velocity / 127``.
  Each layer is first brought to one loudness (``level_dbfs``, measured on its samples): the presets come from
  different sources recorded at different levels, and a layer's loudness should not give its instrument away.
* Pitch: the zone whose key range holds the note (else the nearest one), shifted by resampling with the ratio
  ``2 ** ((note - rootNote + tuning) / 12)`` (cubic interpolation, zero-phase low-pass before shifting up).
  Shifted samples are cached per worker.
* Length: a note sounds as long as its label says. When it outlasts the sample's loop end (loop points of the
  preset or of the WAV's ``smpl`` chunk) the loop repeats, crossfaded; a sample without loop points that is
  shorter than the note gets a crossfaded loop over its steady part.
* Envelope: the group's attack (capped at ``max_attack_seconds`` and half the note; staccato and accent notes
  keep the recorded attack, as it is the articulation), its decay/sustain, and after the note's end its release
  (clamped to ``min_release_seconds`` .. ``max_release_seconds``). Legato: when a note of an instrument starts
  at most ``legato_overlap_seconds`` before another note of the same instrument ends (or at most
  ``legato_gap_seconds`` after it), that note is released at the new onset over ``legato_crossfade_seconds``
  (the nearest in pitch, if several); longer overlaps are other voices (two violins of a quartet share a
  program) and keep sounding. Labels are never changed by this, as with FluidSynth, where the label's end is
  the note-off.
* Timing: labels keep MusicNet's sample positions exactly (no block grid: voices start on any sample).
"""

from __future__ import annotations

import html
import math
import os
import re
import struct
import subprocess
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

from .augment import random_smooth_eq
from .render import (
    BALANCE_STREAM,
    DISTRACTOR_COMPASS,
    DISTRACTOR_PROGRAMS,
    INSTRUMENT_EQ_BANDS,
    SAMPLE_RATE,
    EQ_STREAM,
    LabelRow,
    RenderError,
    _finish_corpus,
    _distractor_info,
    _Job,
    _job_distractors,
    _leave_out,
    _merge_render_info,
    _prepare_jobs,
    _recording_rng,
    _run_jobs,
    _usable_distractors,
    check_distractor_options,
    clip_rows,
    read_label_rows,
    write_label_rows,
    write_wav,
)

__all__ = [
    "Zone",
    "PresetGroup",
    "Layer",
    "Variant",
    "VPO_INSTRUMENTS",
    "VPO_DISTRACTORS",
    "SamplerSettings",
    "SampleLibrary",
    "read_preset",
    "read_wav_loop",
    "render_notes",
    "render_corpus",
]

ARTICULATIONS = ("sustain", "staccato", "accent")


# --------------------------------------------------------------------------- reading .dspreset files


@dataclass(frozen=True)
class Zone:
    """One ``<sample>`` of a preset, with the attributes it inherits from its ``<group>`` and ``<groups>``.

    Times (``start``, ``end``, loop points) are frames of the sample file; ``end`` and ``loop_end`` are
    inclusive as in DecentSampler. ``path`` is ``None`` when the file named by ``sample_ref`` does not exist.
    """

    preset: Path
    group: int
    sample_ref: str  # the path as written in the preset
    path: Optional[Path]
    root: int
    lo_note: int = 0
    hi_note: int = 127
    lo_vel: int = 0
    hi_vel: int = 127
    tuning: float = 0.0  # semitones added to the played pitch
    volume_db: float = 0.0
    start: int = 0
    end: Optional[int] = None
    loop_start: Optional[int] = None
    loop_end: Optional[int] = None
    loop_enabled: Optional[bool] = None
    attack: Optional[float] = None
    decay: Optional[float] = None
    sustain: Optional[float] = None
    release: Optional[float] = None
    trigger: str = "attack"
    seq_position: int = 1


@dataclass(frozen=True)
class PresetGroup:
    """A ``<group>``: its index in the preset (0-based, DecentSampler's numbering), attributes and zones."""

    index: int
    enabled: bool
    attributes: Tuple[Tuple[str, str], ...]
    zones: Tuple[Zone, ...]


_TAG = re.compile(r"<(/?)([A-Za-z_][\w.:-]*)((?:[^<>\"']|\"[^\"]*\"|'[^']*')*)>")
_ATTRIBUTE = re.compile(r"([A-Za-z_][\w.:-]*)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_COMMENT = re.compile(r"<!--.*?-->|<\?.*?\?>|<!\[CDATA\[.*?\]\]>|<!DOCTYPE[^>]*>", re.S)
_UI_BLOCK = re.compile(r"<ui\b(?:[^<>\"']|\"[^\"]*\"|'[^']*')*/>|<ui\b.*?</ui\s*>", re.S)

# attributes a <sample> inherits from its <group> and from <groups> (DecentSampler's cascade)
_INHERITED = ("path", "rootNote", "loNote", "hiNote", "loVel", "hiVel", "tuning", "start", "end", "loopStart",
              "loopEnd", "loopEnabled", "attack", "decay", "sustain", "release", "trigger", "seqPosition")


def _blank(match: re.Match) -> str:
    """Replace a stripped block by its newlines, so that line numbers in errors stay right."""
    return "\n" * match.group(0).count("\n")


def _attributes(text: str) -> Dict[str, str]:
    """Attributes of a tag; a repeated attribute keeps its first value (strict XML parsers reject these files)."""
    out: Dict[str, str] = {}
    for name, double, single in _ATTRIBUTE.findall(text):
        if name not in out:
            out[name] = html.unescape(double if double or not single else single)
    return out


def _volume_db(text: str, where: str) -> float:
    """DecentSampler volume: ``"3dB"`` in decibels, otherwise a linear gain."""
    value = text.strip()
    try:
        if value.lower().endswith("db"):
            return float(value[:-2])
        linear = float(value)
    except ValueError:
        raise RenderError(f"{where}: volume={text!r} is neither a number nor decibels") from None
    return 20.0 * math.log10(linear) if linear > 0 else -math.inf


def _number(attrs: Mapping[str, str], name: str, where: str, integer: bool = False):
    value = attrs.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise RenderError(f"{where}: attribute {name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise RenderError(f"{where}: attribute {name}={value!r} is not a finite number")
    return int(round(number)) if integer else number


class _CaseInsensitiveResolver:
    """Finds files whatever the case of each path component (presets say ``Samples\\`` for ``samples/``)."""

    def __init__(self) -> None:
        self._listings: Dict[Path, Dict[str, str]] = {}

    def _listing(self, folder: Path) -> Dict[str, str]:
        if folder not in self._listings:
            try:
                names = os.listdir(folder)
            except OSError:
                names = []
            listing: Dict[str, str] = {}
            for name in sorted(names):  # exact names win over case-folded ones below
                listing.setdefault(name.lower(), name)
            self._listings[folder] = listing
        return self._listings[folder]

    def resolve(self, base: Path, reference: str) -> Optional[Path]:
        current = base
        for part in re.split(r"[\\/]+", reference.strip()):
            if part in ("", "."):
                continue
            if part == "..":
                current = current.parent
                continue
            exact = current / part
            if exact.exists():
                current = exact
                continue
            name = self._listing(current).get(part.lower())
            if name is None:
                return None
            current = current / name
        return current if current.is_file() else None


_RESOLVER = _CaseInsensitiveResolver()


def read_preset(path: str | os.PathLike) -> List[PresetGroup]:
    """Read a DecentSampler ``.dspreset`` leniently: its groups and zones.

    The ``<ui>`` block is skipped (it holds most of the malformed XML of real libraries); repeated attributes
    keep their first value; sample paths are resolved relative to the preset, with ``\\`` or ``/`` and in any
    letter case. Zones inherit the attributes of their ``<group>`` and ``<groups>`` (``path`` and ``rootNote``
    included); ``tuning`` adds the group's ``groupTuning`` and the global ``globalTuning``; volumes of the three
    levels add up in dB.

    Raises
    ------
    RenderError
        The file is unreadable or is not a well-formed preset; the message names the file (and the line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="strict")
    except FileNotFoundError:
        raise RenderError(f"{path}: no such preset") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RenderError(f"{path}: unreadable preset ({exc})") from None
    text = _COMMENT.sub(_blank, text)
    text = _UI_BLOCK.sub(_blank, text)

    def line_of(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    unterminated = re.search(r"<ui\b", text)
    if unterminated:
        raise RenderError(f"{path}: line {line_of(unterminated.start())}: unterminated <ui> element")
    if not re.search(r"<DecentSampler\b", text):
        raise RenderError(f"{path}: not a DecentSampler preset (no <DecentSampler> element)")

    groups_attrs: Optional[Dict[str, str]] = None
    groups: List[PresetGroup] = []
    group_attrs: Optional[Dict[str, str]] = None
    group_zones: List[Zone] = []
    in_groups = False
    position = 0
    for match in _TAG.finditer(text):
        stray = text.find("<", position, match.start())
        if stray >= 0:
            raise RenderError(f"{path}: line {line_of(stray)}: malformed tag")
        position = match.end()
        closing, name, body = match.group(1) == "/", match.group(2), match.group(3)
        self_closing = body.rstrip().endswith("/")
        line = line_of(match.start())
        if name == "groups":
            if closing:
                if group_attrs is not None:
                    raise RenderError(f"{path}: line {line}: </groups> before </group>")
                in_groups = False
            else:
                if groups_attrs is not None:
                    raise RenderError(f"{path}: line {line}: a second <groups> element")
                groups_attrs = _attributes(body)
                in_groups = not self_closing
        elif name == "group":
            if closing:
                if group_attrs is None:
                    raise RenderError(f"{path}: line {line}: </group> without <group>")
                groups.append(_make_group(path, len(groups), group_attrs, group_zones))
                group_attrs, group_zones = None, []
            else:
                if not in_groups:
                    raise RenderError(f"{path}: line {line}: <group> outside <groups>")
                if group_attrs is not None:
                    raise RenderError(f"{path}: line {line}: <group> inside another <group>")
                group_attrs = _attributes(body)
                if self_closing:
                    groups.append(_make_group(path, len(groups), group_attrs, []))
                    group_attrs = None
        elif name == "sample" and not closing:
            if group_attrs is None:
                raise RenderError(f"{path}: line {line}: <sample> outside a <group>")
            group_zones.append(_make_zone(path, len(groups), line, _attributes(body), group_attrs,
                                          groups_attrs or {}))
    if text.find("<", position) >= 0:
        raise RenderError(f"{path}: line {line_of(text.find('<', position))}: malformed tag")
    if groups_attrs is None:
        raise RenderError(f"{path}: no <groups> element")
    if group_attrs is not None or in_groups:
        raise RenderError(f"{path}: unterminated <group> or <groups> element")
    return groups


def _make_group(path: Path, index: int, attrs: Dict[str, str], zones: List[Zone]) -> PresetGroup:
    enabled = attrs.get("enabled", "true").strip().lower() != "false"
    return PresetGroup(index, enabled, tuple(sorted(attrs.items())), tuple(zones))


def _make_zone(path: Path, group: int, line: int, sample: Dict[str, str], group_attrs: Dict[str, str],
               groups_attrs: Dict[str, str]) -> Zone:
    merged = {k: v for k, v in groups_attrs.items() if k in _INHERITED}
    merged.update({k: v for k, v in group_attrs.items() if k in _INHERITED})
    merged.update(sample)
    reference = merged.get("path")
    if not reference:
        raise RenderError(f"{path}: line {line} (group {group}): <sample> without a path")
    where = f"{path}: group {group}, sample {reference!r}"
    root = _number(merged, "rootNote", where, integer=True)
    if root is None:
        raise RenderError(f"{where}: no rootNote")
    volume = sum(_volume_db(level["volume"], where) for level in (groups_attrs, group_attrs, sample)
                 if "volume" in level)
    tuning = ((_number(merged, "tuning", where) or 0.0) + (_number(group_attrs, "groupTuning", where) or 0.0)
              + (_number(groups_attrs, "globalTuning", where) or 0.0))
    loop_enabled = merged.get("loopEnabled")
    zone = Zone(
        preset=path, group=group, sample_ref=reference,
        path=_RESOLVER.resolve(path.parent, reference), root=root,
        lo_note=_number(merged, "loNote", where, True) if "loNote" in merged else 0,
        hi_note=_number(merged, "hiNote", where, True) if "hiNote" in merged else 127,
        lo_vel=_number(merged, "loVel", where, True) if "loVel" in merged else 0,
        hi_vel=_number(merged, "hiVel", where, True) if "hiVel" in merged else 127,
        tuning=tuning, volume_db=volume,
        start=_number(merged, "start", where, True) or 0,
        end=_number(merged, "end", where, True),
        loop_start=_number(merged, "loopStart", where, True),
        loop_end=_number(merged, "loopEnd", where, True),
        loop_enabled=None if loop_enabled is None else loop_enabled.strip().lower() == "true",
        attack=_number(merged, "attack", where), decay=_number(merged, "decay", where),
        sustain=_number(merged, "sustain", where), release=_number(merged, "release", where),
        trigger=merged.get("trigger", "attack").strip().lower(),
        seq_position=_number(merged, "seqPosition", where, True) or 1,
    )
    if zone.lo_note > zone.hi_note or zone.lo_vel > zone.hi_vel:
        raise RenderError(f"{where}: empty key or velocity range")
    return zone


def read_wav_loop(path: str | os.PathLike) -> Optional[Tuple[int, int]]:
    """The first loop of a WAV file's ``smpl`` chunk as ``(start, end)`` frames, ``end`` inclusive; else ``None``.

    Only chunk headers are read. Files that are not RIFF/WAVE (FLAC, AIFF) have no such chunk here.
    """
    try:
        with open(path, "rb") as f:
            header = f.read(12)
            if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
                return None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if chunk_id == b"smpl":
                    data = f.read(min(size, 36 + 24))
                    if len(data) < 36 + 24 or struct.unpack("<I", data[28:32])[0] < 1:
                        return None
                    start, end = struct.unpack("<II", data[36 + 8:36 + 16])
                    return (int(start), int(end)) if end > start else None
                f.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None


# --------------------------------------------------------------------------- the instrument map


@dataclass(frozen=True)
class Layer:
    """Groups of one preset played together for a note, for velocities in ``velocity`` (inclusive).

    ``root_corrections``: ``(text, semitones)`` pairs; zones whose sample file name contains ``text`` get
    ``semitones`` added to their root note, for samples that are out of tune by whole semitones in the preset.
    ``keys``: the notes (inclusive) this layer plays, for instruments whose registers are separate groups (a
    choir's men and women). ``one_shot``: the samples are struck or plucked sounds that die away (harp, mallets,
    timpani): a note longer than its sample ends with the sample instead of looping it.
    """

    preset: str  # file name in the library folder
    groups: Tuple[int, ...]
    velocity: Tuple[int, int] = (0, 127)
    root_corrections: Tuple[Tuple[str, int], ...] = ()
    keys: Tuple[int, int] = (0, 127)
    one_shot: bool = False


@dataclass(frozen=True)
class Variant:
    """One way an instrument can sound: layers per articulation. Several layers of one articulation whose
    velocity ranges hold the note's velocity are alternative takes: one is drawn per note (round robin)."""

    name: str
    sustain: Tuple[Layer, ...]
    staccato: Tuple[Layer, ...] = ()
    accent: Tuple[Layer, ...] = ()

    def layers(self, articulation: str) -> Tuple[Layer, ...]:
        return getattr(self, articulation) or self.sustain


_WOODWINDS = "all-woodwinds-SEC-sustain.dspreset"
_BRASS = "all-brass-SEC-sustain.dspreset"
_SOLO_STRINGS = "all-strings-SOLO-sustain.dspreset"
# The second round robin of these staccato presets ("-stc-rr2-" files) sounds a semitone above its rootNote:
# measured on every such zone of the 1st violins, 2nd violins and basses (the first round robin, and the viola
# ones, are in tune).
_RR2_SHARP = (("-stc-rr2-", 1),)

#: The Virtual Playing Orchestra (github.com/eodowd/VirtualPlayingOrchestra): GM program (1-based) -> variants.
#: Group numbers are DecentSampler's (0-based, in file order). Each group was identified from its sample names,
#: its key range (the instrument's compass) and the measured pitch and spectrum of its samples:
#:
#: ===  ==========  =================================================================================
#: 41   violin      solo: all-strings-SOLO g5 (55-105); 1st violins: 1st-violin-SEC sustain g0, staccato
#:                  g0 (2 round robins), accent g0+g1 (staccato attack over the sustain); 2nd violins:
#:                  2nd-violin-SEC sustain g0, staccato g0
#: 42   viola       solo: all-strings-SOLO g3 (f, velocity >= 88) / g4 (mf) (48-93); sections:
#:                  viola-SEC-sustain g0 or g1, staccato viola-SEC-staccato g0 / g1 (round robins)
#: 43   cello       solo: all-strings-SOLO g1 (36-81; g2 holds its release-trigger noises, not used);
#:                  section: cello-SEC-sustain g0
#: 44   contrabass  solo: all-strings-SOLO g0 (24-67); section: bass-SEC-sustain g0, staccato
#:                  bass-SEC-staccato g0 / g1 (round robins)
#: 61   horn        section: all-brass-SEC-sustain g1 (ff, velocity >= 88) / g2 (mp) (35-77)
#: 69   oboe        all-woodwinds-SEC-sustain g3 (58-93)
#: 71   bassoon     all-woodwinds-SEC-sustain g1 (34-75)
#: 72   clarinet    all-woodwinds-SEC-sustain g2 (50-94; odd harmonics dominate in the low register)
#: 74   flute       all-woodwinds-SEC-sustain g4 (60-98)
#: ===  ==========  =================================================================================
#:
#: Not used: pizzicato and tremolo presets (no score row asks for them), the contrabassoon (g0) and piccolo
#: (g5) of the woodwinds, the tuba, trombones and trumpets of the brass, the cello staccato and pizzicato sample
#: folders (no preset maps them).
VPO_INSTRUMENTS: Dict[int, Tuple[Variant, ...]] = {
    41: (
        Variant("solo violin", sustain=(Layer(_SOLO_STRINGS, (5,)),)),
        Variant("1st violins", sustain=(Layer("1st-violin-SEC-sustain.dspreset", (0,)),),
                staccato=(Layer("1st-violin-SEC-staccato.dspreset", (0,), root_corrections=_RR2_SHARP),),
                accent=(Layer("1st-violin-SEC-accent.dspreset", (0, 1), root_corrections=_RR2_SHARP),)),
        Variant("2nd violins", sustain=(Layer("2nd-violin-SEC-sustain.dspreset", (0,)),),
                staccato=(Layer("2nd-violin-SEC-staccato.dspreset", (0,), root_corrections=_RR2_SHARP),)),
    ),
    42: (
        Variant("solo viola", sustain=(Layer(_SOLO_STRINGS, (3,), velocity=(88, 127)),
                                       Layer(_SOLO_STRINGS, (4,), velocity=(0, 87)))),
        Variant("violas A", sustain=(Layer("viola-SEC-sustain.dspreset", (0,)),),
                staccato=(Layer("viola-SEC-staccato.dspreset", (0,)), Layer("viola-SEC-staccato.dspreset", (1,)))),
        Variant("violas B", sustain=(Layer("viola-SEC-sustain.dspreset", (1,)),),
                staccato=(Layer("viola-SEC-staccato.dspreset", (0,)), Layer("viola-SEC-staccato.dspreset", (1,)))),
    ),
    43: (
        Variant("solo cello", sustain=(Layer(_SOLO_STRINGS, (1,)),)),
        Variant("cellos", sustain=(Layer("cello-SEC-sustain.dspreset", (0,)),)),
    ),
    44: (
        Variant("solo contrabass", sustain=(Layer(_SOLO_STRINGS, (0,)),)),
        Variant("basses", sustain=(Layer("bass-SEC-sustain.dspreset", (0,)),),
                staccato=(Layer("bass-SEC-staccato.dspreset", (0,), root_corrections=_RR2_SHARP),
                          Layer("bass-SEC-staccato.dspreset", (1,), root_corrections=_RR2_SHARP))),
    ),
    61: (Variant("horns", sustain=(Layer(_BRASS, (1,), velocity=(88, 127)), Layer(_BRASS, (2,), velocity=(0, 87)))),),
    69: (Variant("oboe", sustain=(Layer(_WOODWINDS, (3,)),)),),
    71: (Variant("bassoon", sustain=(Layer(_WOODWINDS, (1,)),)),),
    72: (Variant("clarinet", sustain=(Layer(_WOODWINDS, (2,)),)),),
    74: (Variant("flute", sustain=(Layer(_WOODWINDS, (4,)),)),),
}


#: Distractors (``--distractors``, see :mod:`instrument_classifier.data.render`) the VPO can play: GM program ->
#: variants, from the library's instruments that are none of the 11. Groups identified as for
#: :data:`VPO_INSTRUMENTS` (sample names, key ranges, measured spectra: at C4 the trumpet group is brighter than
#: the trombone group, spectral centroid 1180 vs 950 Hz, the horns 600 Hz):
#:
#: ===  ===============  ======================================================================================
#: 9    celesta          celesta g0 (hard mallets, velocity >= 88) / g1 (soft) (60-108)
#: 10   glockenspiel     glockenspiel g0 (77-108)
#: 12   vibraphone       vibraphone-open g0 (53-89; g1 maps the same samples a tone off, g2 is a silent dummy)
#: 14   xylophone        xylophone g0 (48-96)
#: 47   harp             harp-sustain g0 (23-104)
#: 48   timpani          timpani-hit g0 (36-60)
#: 53   choir            choir-MIXED-sustain g0 (men, 43-66) below / g1 (women, 67-84) above middle F#
#: 57   trumpets         all-brass-SEC-sustain g5 (f, velocity >= 88) / g6 (p) (54-84)
#: 58   trombones        all-brass-SEC-sustain g3 (f, velocity >= 88) / g4 (p) (40-77)
#: 59   tuba             all-brass-SEC-sustain g0 (26-62)
#: ===  ===============  ======================================================================================
#:
#: Not used: the piccolo (a near-copy of the flute: its notes would be flute notes left out of the labels) and
#: the tubular bells (the forte group names a sample file the library lacks, 4_C_f.wav, and above velocity 40
#: the piano group plays only a silent dummy zone).
VPO_DISTRACTORS: Dict[int, Tuple[Variant, ...]] = {
    9: (Variant("celesta", sustain=(Layer("celesta.dspreset", (0,), velocity=(88, 127), one_shot=True),
                                    Layer("celesta.dspreset", (1,), velocity=(0, 87), one_shot=True))),),
    10: (Variant("glockenspiel", sustain=(Layer("glockenspiel.dspreset", (0,), one_shot=True),)),),
    12: (Variant("vibraphone", sustain=(Layer("vibraphone-open.dspreset", (0,), one_shot=True),)),),
    14: (Variant("xylophone", sustain=(Layer("xylophone.dspreset", (0,), one_shot=True),)),),
    47: (Variant("harp", sustain=(Layer("harp-sustain.dspreset", (0,), one_shot=True),)),),
    48: (Variant("timpani", sustain=(Layer("timpani-hit.dspreset", (0,), one_shot=True),)),),
    53: (Variant("choir", sustain=(Layer("choir-MIXED-sustain.dspreset", (0,), keys=(0, 66)),
                                   Layer("choir-MIXED-sustain.dspreset", (1,), keys=(67, 127)))),),
    57: (Variant("trumpets", sustain=(Layer(_BRASS, (5,), velocity=(88, 127)),
                                      Layer(_BRASS, (6,), velocity=(0, 87)))),),
    58: (Variant("trombones", sustain=(Layer(_BRASS, (3,), velocity=(88, 127)),
                                       Layer(_BRASS, (4,), velocity=(0, 87)))),),
    59: (Variant("tuba", sustain=(Layer(_BRASS, (0,)),)),),
}


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SamplerSettings:
    """How notes become sound. All fields are recorded in ``render_info.json``."""

    velocity: int = 80  # centre of each recording's base velocity
    velocity_spread: int = 20  # base velocity drawn uniformly in velocity +- spread, per recording
    velocity_jitter: int = 15  # per note, uniform in +- jitter
    tail_seconds: float = 1.0  # audio kept after the last label's end (release tails)
    peak_dbfs: float = -1.0
    sample_rate: int = SAMPLE_RATE
    instrument_eq_db: float = 0.0  # random smooth EQ per instrument and recording, as in render.py; 0: off
    # ensemble balance: each instrument of a recording louder or softer by up to this many dB (uniform); 0: off
    instrument_balance_db: float = 0.0
    level_dbfs: float = -20.0  # loudest 100 ms of a layer's typical zone, before velocity
    short_note_seconds: float = 0.18  # shorter and detached: staccato
    detached_gap_seconds: float = 0.03  # silence before the instrument's next note that makes a note detached
    run_note_seconds: float = 0.3  # repeated notes of one pitch shorter than this ...
    run_gap_seconds: float = 0.35  # ... with onsets at most this far apart: staccato
    accent_seconds: float = 0.4  # detached notes shorter than this: accent samples, where the variant has them
    min_attack_seconds: float = 0.002  # fade-in of every note, so that no sample starts with a click
    max_attack_seconds: float = 0.1
    default_release_seconds: float = 0.3  # for groups without a release
    min_release_seconds: float = 0.05
    max_release_seconds: float = 0.6
    legato_overlap_seconds: float = 0.15
    legato_gap_seconds: float = 0.02
    legato_crossfade_seconds: float = 0.03
    loop_crossfade_seconds: float = 0.05

    def __post_init__(self) -> None:
        if not 1 <= self.velocity <= 127:
            raise RenderError(f"velocity must be in 1..127, got {self.velocity}")
        if self.velocity_jitter < 0 or self.velocity_spread < 0:
            raise RenderError(f"velocity jitter and spread must be >= 0, got {self.velocity_jitter}, "
                              f"{self.velocity_spread}")
        if self.instrument_eq_db < 0:
            raise RenderError(f"instrument EQ must be >= 0 dB, got {self.instrument_eq_db}")
        if self.instrument_balance_db < 0:
            raise RenderError(f"instrument balance must be >= 0 dB, got {self.instrument_balance_db}")
        if self.sample_rate != SAMPLE_RATE:
            raise RenderError(f"MusicNet labels count samples at {SAMPLE_RATE} Hz; got sample_rate={self.sample_rate}")
        if not 0 < self.min_release_seconds <= self.max_release_seconds:
            raise RenderError("release bounds must satisfy 0 < min_release_seconds <= max_release_seconds")


# --------------------------------------------------------------------------- the library and its caches


def _resample(x: np.ndarray, ratio: float) -> np.ndarray:
    """``x`` read at ``ratio`` times its speed (cubic Catmull-Rom interpolation); low-passed first when
    ``ratio > 1`` so that partials shifted above the Nyquist frequency do not fold back (zero phase: onsets do
    not move)."""
    if abs(ratio - 1.0) < 1e-9 or len(x) < 2:
        return x
    if ratio > 1.0:
        x = _lowpass(x, 0.95 / ratio)
    n_out = int((len(x) - 1) / ratio) + 1
    position = np.arange(n_out, dtype=np.float64) * ratio
    index = position.astype(np.int64)
    frac = (position - index).astype(np.float32)
    padded = np.concatenate([x[:1], x, np.zeros(2, dtype=np.float32)])
    y0, y1, y2, y3 = padded[index], padded[index + 1], padded[index + 2], padded[index + 3]
    c1 = 0.5 * (y2 - y0)
    c2 = y0 - 2.5 * y1 + 2.0 * y2 - 0.5 * y3
    c3 = 0.5 * (y3 - y0) + 1.5 * (y1 - y2)
    return (((c3 * frac + c2) * frac + c1) * frac + y1).astype(np.float32)


def _lowpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    """Zero-phase low-pass through the FFT: flat below ``0.85 * cutoff``, a raised-cosine slope down to zero at
    ``cutoff`` (fractions of the Nyquist frequency). Zero-padded so that nothing wraps around."""
    n = 1 << int(math.ceil(math.log2(len(x) + 1024)))
    spectrum = np.fft.rfft(x, n)
    f = np.linspace(0.0, 1.0, len(spectrum))
    lo = 0.85 * cutoff
    gain = np.clip((cutoff - f) / max(cutoff - lo, 1e-9), 0.0, 1.0)
    spectrum *= 0.5 - 0.5 * np.cos(np.pi * gain)
    return np.fft.irfft(spectrum, n)[:len(x)].astype(np.float32)


class _Voice:
    """A zone's sample at one pitch: the shifted audio and its loop, read to any length."""

    def __init__(self, audio: np.ndarray, loop: Optional[Tuple[int, int]], crossfade: int) -> None:
        self.audio = audio
        self.loop = loop  # (start, end exclusive) in frames of ``audio``; None: loop only if a note needs it
        self.crossfade = crossfade
        self._stream: Optional[np.ndarray] = None

    @property
    def nbytes(self) -> int:
        return self.audio.nbytes + (0 if self._stream is None else self._stream.nbytes)

    def needs_loop(self, length: int) -> bool:
        return length > (self.loop[1] if self.loop is not None else len(self.audio))

    def read(self, length: int) -> np.ndarray:
        """The first ``length`` frames of the note: the sample, then its loop repeated (crossfaded)."""
        if not self.needs_loop(length):
            return self.audio[:length]
        if self._stream is None or len(self._stream) < length:
            start, end = self.loop if self.loop is not None else self._auto_loop()
            cycle = self.audio[start:end].copy()
            fade = min(self.crossfade, start, len(cycle) // 2)
            if fade > 0:
                # the loop's last frames fade into the frames just before its start, so that jumping back to
                # the start continues the waveform
                ramp = np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
                cycle[-fade:] = cycle[-fade:] * (1.0 - ramp) + self.audio[start - fade:start] * ramp
            previous = 0 if self._stream is None else len(self._stream)
            repeats = int(math.ceil((max(length, 2 * previous) - start) / len(cycle)))
            self._stream = np.concatenate([self.audio[:start], np.tile(cycle, repeats)])
        return self._stream[:length]

    def _auto_loop(self) -> Tuple[int, int]:
        """Loop points over the steady part of a sample that has none: from 35 % to about 85 % of it, the end
        moved (within 20 ms) to where the waveform best matches the one before the start."""
        n = len(self.audio)
        start = max(int(0.35 * n), 1)
        end = max(int(0.85 * n), start + 2)
        window = min(256, start)
        search = min(882, end - start - window - 1)
        if window >= 16 and search > 0:
            reference = self.audio[start - window:start].astype(np.float64)
            candidates = np.lib.stride_tricks.sliding_window_view(
                self.audio[end - search - window:end].astype(np.float64), window)
            energy = np.sqrt(np.sum(candidates ** 2, axis=1) * np.sum(reference ** 2)) + 1e-12
            best = int(np.argmax(candidates @ reference / energy))
            end = end - search + best
        return start, end


class SampleLibrary:
    """A DecentSampler library folder and an instrument map, with per-process caches of samples.

    Presets are read when an instrument first needs them; a preset, group or sample that is missing or
    unreadable raises :class:`RenderError` naming the preset file (and the sample).

    Parameters
    ----------
    root : path
        The library folder (for VPO: a clone of github.com/eodowd/VirtualPlayingOrchestra).
    instruments : mapping or None
        GM program (1-based) -> variants; ``None`` -> :data:`VPO_INSTRUMENTS`.
    cache_megabytes : float
        Budget of the cache of pitch-shifted samples (least recently used ones are dropped).
    """

    def __init__(self, root: str | os.PathLike, instruments: Optional[Mapping[int, Sequence[Variant]]] = None,
                 cache_megabytes: float = 1024.0, sample_rate: int = SAMPLE_RATE,
                 loop_crossfade_seconds: float = 0.05) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise RenderError(f"{self.root}: sample library folder not found "
                              "(git clone https://github.com/eodowd/VirtualPlayingOrchestra)")
        self.instruments: Dict[int, Tuple[Variant, ...]] = {
            int(p): tuple(v) for p, v in (VPO_INSTRUMENTS if instruments is None else instruments).items()}
        presets = sorted({layer.preset for variants in self.instruments.values() for v in variants
                          for a in ARTICULATIONS for layer in getattr(v, a)})
        if presets and not any((self.root / name).is_file() for name in presets):
            raise RenderError(f"{self.root}: none of the presets of the instrument map is here "
                              f"({', '.join(presets[:3])}, ...): not the sample library?")
        self.sample_rate = sample_rate
        self.loop_crossfade = int(round(loop_crossfade_seconds * sample_rate))
        self._presets: Dict[str, List[PresetGroup]] = {}
        self._audio: Dict[Tuple[Path, int, Optional[int]], Tuple[np.ndarray, int, Optional[Tuple[int, int]]]] = {}
        self._layer_zones: Dict[Layer, Tuple[Tuple[Zone, ...], ...]] = {}
        self._layer_gain_db: Dict[Layer, float] = {}
        self._voices: "OrderedDict[tuple, _Voice]" = OrderedDict()
        self._voice_bytes = 0
        self._cache_bytes = int(cache_megabytes * 1e6)

    # presets and zones

    def preset(self, name: str) -> List[PresetGroup]:
        if name not in self._presets:
            path = self.root / name
            if not path.is_file():
                raise RenderError(f"{path}: preset not found in sample library {self.root}")
            self._presets[name] = read_preset(path)
        return self._presets[name]

    def layer_zones(self, layer: Layer) -> Tuple[Tuple[Zone, ...], ...]:
        """The playable zones of each group of ``layer`` (release triggers excluded), root corrections applied."""
        if layer not in self._layer_zones:
            groups = self.preset(layer.preset)
            result = []
            for index in layer.groups:
                if not 0 <= index < len(groups):
                    raise RenderError(f"{self.root / layer.preset}: no group {index} (the preset has "
                                      f"{len(groups)} groups)")
                zones = []
                for zone in groups[index].zones:
                    if zone.trigger not in ("attack", "first", "legato"):
                        continue
                    if zone.path is None:
                        raise RenderError(f"{zone.preset}: group {index}, sample {zone.sample_ref!r}: no such "
                                          f"file under {zone.preset.parent}")
                    shift = sum(s for text, s in layer.root_corrections if text in zone.path.name)
                    zones.append(zone if not shift else _replace_root(zone, zone.root + shift))
                if not zones:
                    raise RenderError(f"{self.root / layer.preset}: group {index} has no playable sample")
                result.append(tuple(zones))
            self._layer_zones[layer] = tuple(result)
        return self._layer_zones[layer]

    def key_range(self, program: int) -> Tuple[int, int]:
        """The notes a program's samples cover: the lowest and highest key of the zones of its variants' sustain
        layers (within each layer's ``keys``)."""
        lows, highs = [], []
        for variant in self.instruments[program]:
            for layer in variant.sustain:
                for zones in self.layer_zones(layer):
                    lows.append(max(min(z.lo_note for z in zones), layer.keys[0]))
                    highs.append(min(max(z.hi_note for z in zones), layer.keys[1]))
        return min(lows), max(highs)

    def sample(self, zone: Zone) -> Tuple[np.ndarray, int, Optional[Tuple[int, int]]]:
        """``(mono float32 audio from the zone's start to its end, sample rate, loop (start, end exclusive))``."""
        key = (zone.path, zone.start, zone.end)
        if key not in self._audio:

            try:
                audio, rate = sf.read(str(zone.path), dtype="float32", always_2d=True)
            except Exception as exc:  # soundfile raises several types for broken files
                raise RenderError(f"{zone.preset}: sample {zone.sample_ref!r} ({zone.path}): unreadable "
                                  f"audio ({exc})") from None
            audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
            end = len(audio) if zone.end is None else min(zone.end + 1, len(audio))
            start = min(max(zone.start, 0), max(end - 1, 0))
            audio = np.ascontiguousarray(audio[start:end], dtype=np.float32)
            if len(audio) < 2:
                raise RenderError(f"{zone.preset}: sample {zone.sample_ref!r} ({zone.path}): no audio")
            loop = None
            if zone.loop_enabled is not False:
                if zone.loop_start is not None or zone.loop_end is not None:
                    found = (zone.loop_start or 0, zone.loop_end if zone.loop_end is not None else end - 1)
                else:
                    found = read_wav_loop(zone.path)
                if found is not None:
                    loop_start, loop_end = found[0] - start, min(found[1] + 1, end) - start
                    if 0 <= loop_start and loop_end - loop_start >= 16:
                        loop = (loop_start, loop_end)
            self._audio[key] = (audio, int(rate), loop)
        return self._audio[key]

    def layer_gain_db(self, layer: Layer, level_dbfs: float) -> float:
        """Gain that brings ``layer`` to ``level_dbfs``: the loudest 100 ms of its median zone (zone volumes
        included), its groups' levels summed in power as they sound together."""
        if layer not in self._layer_gain_db:
            group_levels = []
            for zones in self.layer_zones(layer):
                levels = []
                for zone in zones:
                    audio, rate, _ = self.sample(zone)
                    frame = max(int(0.1 * rate), 1)
                    usable = len(audio) // frame * frame
                    frames = audio[:usable].reshape(-1, frame) if usable else audio[None, :]
                    rms = float(np.sqrt(np.max(np.mean(frames.astype(np.float64) ** 2, axis=1))))
                    levels.append(20 * math.log10(max(rms, 1e-9)) + zone.volume_db)
                group_levels.append(float(np.median(levels)))
            total = 10 * math.log10(sum(10 ** (level / 10) for level in group_levels))
            self._layer_gain_db[layer] = level_dbfs - total
        return self._layer_gain_db[layer]

    def voice(self, zone: Zone, semitones: float) -> _Voice:
        """The zone's sample shifted by ``semitones`` (cached)."""
        audio, rate, loop = self.sample(zone)
        ratio = 2.0 ** (semitones / 12.0) * rate / self.sample_rate
        key = (zone.path, zone.start, zone.end, zone.loop_start, zone.loop_end, round(ratio, 9))
        voice = self._voices.get(key)
        if voice is not None:
            self._voices.move_to_end(key)
            return voice
        shifted = _resample(audio, ratio)
        scaled_loop = None
        if loop is not None:
            start, end = int(round(loop[0] / ratio)), min(int(round(loop[1] / ratio)), len(shifted))
            scaled_loop = (start, end) if end - start >= 8 else None
        voice = _Voice(shifted, scaled_loop, self.loop_crossfade)
        self._voices[key] = voice
        self._voice_bytes += voice.nbytes
        while self._voice_bytes > self._cache_bytes and len(self._voices) > 1:
            _, dropped = self._voices.popitem(last=False)
            self._voice_bytes -= dropped.nbytes
        return voice


def _replace_root(zone: Zone, root: int) -> Zone:
    return replace(zone, root=root)


def _pick_zone(zones: Sequence[Zone], note: int, velocity: int, u: float) -> Tuple[Zone, bool]:
    """The zone of a group for a note: velocity range first, then the key range holding the note (else the
    nearest), then a round-robin position drawn with ``u``. Returns ``(zone, inside its key range)``."""
    pool = [z for z in zones if z.lo_vel <= velocity <= z.hi_vel] or list(zones)
    inside = [z for z in pool if z.lo_note <= note <= z.hi_note]
    if inside:
        pool = inside
    else:
        distance = [min(abs(note - z.lo_note), abs(note - z.hi_note)) for z in pool]
        pool = [z for z, d in zip(pool, distance) if d == min(distance)]
    positions = sorted({z.seq_position for z in pool})
    if len(positions) > 1:
        chosen = positions[min(int(u * len(positions)), len(positions) - 1)]
        pool = [z for z in pool if z.seq_position == chosen]
    # overlapping zones of one position: the one whose root is nearest the note (and fewest shift artefacts)
    zone = min(pool, key=lambda z: (abs(note - z.root), z.root))
    return zone, bool(inside)


# --------------------------------------------------------------------------- planning: articulation, legato


@dataclass
class _Note:
    row: LabelRow
    velocity: int
    articulation: str = "sustain"
    release_at: Optional[int] = None  # legato: released here (before its label end)


def _articulations(notes: Sequence[_Note], settings: SamplerSettings, sr: int) -> None:
    """Set each note's articulation from its length and its neighbours (per instrument, in onset order).

    The neighbours of a note are the instrument's last note starting before it and first note starting after
    it (notes of one chord are not each other's neighbours). Staccato: a short note that is detached (its next
    note starts at least ``detached_gap_seconds`` after its end, or none follows), or one of a pair of repeated
    short notes of one pitch. Accent: a detached note shorter than ``accent_seconds``. Other notes, such as the
    notes of fast runs that abut each other, are sustained (and joined by :func:`_legato`).
    """
    by_program: Dict[int, List[_Note]] = {}
    for note in notes:
        by_program.setdefault(note.row.instrument, []).append(note)
    short, repeat_length = settings.short_note_seconds * sr, settings.run_note_seconds * sr
    repeat_gap, detached_gap = settings.run_gap_seconds * sr, settings.detached_gap_seconds * sr
    for track in by_program.values():
        starts = np.array([n.row.start for n in track])
        for note in track:
            row = note.row
            length = row.end - row.start
            after = int(np.searchsorted(starts, row.start, side="right"))
            before = int(np.searchsorted(starts, row.start, side="left")) - 1
            following = track[after] if after < len(track) else None
            preceding = track[before] if before >= 0 else None
            detached = following is None or following.row.start - row.end >= detached_gap
            repeated = length < repeat_length and any(
                other is not None and other.row.note == row.note and abs(other.row.start - row.start) <= repeat_gap
                for other in (preceding, following))
            if (length < short and detached) or repeated:
                note.articulation = "staccato"
            elif length < settings.accent_seconds * sr and detached:
                note.articulation = "accent"
            else:
                note.articulation = "sustain"


def _legato(notes: Sequence[_Note], settings: SamplerSettings, sr: int) -> int:
    """Hand a note over to the next note of its instrument: release it at the new onset, over a short crossfade.

    A note is handed over when the next one starts between ``legato_overlap_seconds`` before its end and
    ``legato_gap_seconds`` after it (MusicNet's runs mostly abut exactly); larger overlaps are other voices of
    the same instrument and keep sounding. When several notes qualify, the nearest in pitch is handed over;
    each note at most once. Returns the number of hand-overs.
    """
    max_overlap = settings.legato_overlap_seconds * sr
    max_gap = settings.legato_gap_seconds * sr
    recent: Dict[int, List[_Note]] = {}
    count = 0
    for note in notes:  # onset order
        start = note.row.start
        active = [n for n in recent.get(note.row.instrument, []) if n.row.end + max_gap >= start]
        candidates = [n for n in active if n.release_at is None and n.row.start < start
                      and -max_gap <= n.row.end - start <= max_overlap]
        if candidates:
            previous = min(candidates, key=lambda n: (abs(n.row.note - note.row.note), -n.row.end))
            previous.release_at = start
            count += 1
        active.append(note)
        recent[note.row.instrument] = active
    return count


# --------------------------------------------------------------------------- rendering


_RAMPS: Dict[Tuple[str, int], np.ndarray] = {}


def _ramp(kind: str, n: int) -> np.ndarray:
    """Envelope segments of ``n`` frames (cached): ``attack`` 0 -> 1, ``release`` 1 -> 0 (exponential, -60 dB
    at its end, then to zero), ``decay`` 1 -> 0 exponentially (scaled to the sustain level by the caller)."""
    key = (kind, n)
    if key not in _RAMPS:
        t = np.arange(n, dtype=np.float64) / max(n, 1)
        if kind == "attack":
            curve = np.sin(0.5 * np.pi * t) ** 2
        else:
            curve = 10.0 ** (-3.0 * t) * (1.0 - t)
        if len(_RAMPS) > 4096:
            _RAMPS.clear()
        _RAMPS[key] = curve.astype(np.float32)
    return _RAMPS[key]


def render_notes(rows: Sequence[LabelRow], library: SampleLibrary, settings: SamplerSettings = SamplerSettings(),
                 seed: int = 0, recording_id: str = "0", max_samples: Optional[int] = None,
                 source: str = "",
                 play_as: Optional[Mapping[int, int]] = None) -> Tuple[np.ndarray, List[LabelRow], Dict]:
    """Render already-clipped rows. Returns ``(audio float32 peak-normalised, rendered label rows, info)``.

    Every row's program must be in ``library.instruments`` (leave the others out first). Seeded by ``seed``
    and ``recording_id``: the same rows give the same audio in any process and order.

    ``play_as`` (distractors): ``{track program: program}``, tracks played by the instrument of another program
    of ``library.instruments``; they keep their articulations and legato, sound, and are left out of the
    returned labels (``info["left_out_of_labels"]`` counts their notes per track).
    """
    play_as = dict(play_as or {})
    sr = settings.sample_rate
    rng = _recording_rng(seed, recording_id)
    kept = [r for r in rows if r.end > r.start]
    kept.sort(key=lambda r: (r.start, r.end, r.instrument, r.note))
    programs = sorted({r.instrument for r in kept})
    for program in programs:
        if play_as.get(program, program) not in library.instruments:
            first = next(r.row for r in kept if r.instrument == program)
            what = f"distractor program {play_as[program]}" if program in play_as else f"program {program}"
            raise RenderError(f"{source}: row {first}: instrument {what} has no instrument in sample "
                              f"library {library.root}")
    # the draws come in a fixed order (base velocity, variants, then per note), whatever is cached
    base_velocity = settings.velocity + int(rng.integers(-settings.velocity_spread, settings.velocity_spread + 1))
    played = {p: library.instruments[play_as.get(p, p)] for p in programs}
    variants = {p: played[p][int(rng.integers(len(played[p])))] for p in programs}
    jitter = rng.integers(-settings.velocity_jitter, settings.velocity_jitter + 1, size=len(kept))
    u_layer, u_zone = rng.random(len(kept)), rng.random(len(kept))
    notes = [_Note(r, int(np.clip(base_velocity + j, 1, 127))) for r, j in zip(kept, jitter)]
    _articulations(notes, settings, sr)
    handovers = _legato(notes, settings, sr)

    last_end = max((r.end for r in kept), default=0)
    num_samples = last_end + int(round(settings.tail_seconds * sr))
    if max_samples is not None:
        num_samples = min(num_samples, max_samples) if kept else max_samples
    num_samples = max(num_samples, 1)

    per_track = settings.instrument_eq_db > 0 or settings.instrument_balance_db > 0
    tracks = {p: np.zeros(num_samples, dtype=np.float32) for p in programs} if per_track else None
    mix = np.zeros(num_samples, dtype=np.float32)
    stats = Counter()
    for k, note in enumerate(notes):
        row = note.row
        if row.start >= num_samples:
            continue
        variant = variants[row.instrument]
        articulation = note.articulation if getattr(variant, note.articulation) else "sustain"
        stats[articulation] += 1
        layers = variant.layers(articulation)
        in_keys = [layer for layer in layers if layer.keys[0] <= row.note <= layer.keys[1]] or list(layers)
        eligible = ([layer for layer in in_keys if layer.velocity[0] <= note.velocity <= layer.velocity[1]]
                    or in_keys)
        layer = eligible[min(int(u_layer[k] * len(eligible)), len(eligible) - 1)]
        gain_db = library.layer_gain_db(layer, settings.level_dbfs)
        hold = (row.end if note.release_at is None else note.release_at) - row.start
        out = mix if tracks is None else tracks[row.instrument]
        for zones in library.layer_zones(layer):
            zone, inside = _pick_zone(zones, row.note, note.velocity, float(u_zone[k]))
            stats["outside_key_range"] += not inside
            voice = library.voice(zone, row.note - zone.root + zone.tuning)
            if note.release_at is not None:
                release = int(round(settings.legato_crossfade_seconds * sr))
            else:
                seconds = settings.default_release_seconds if zone.release is None else zone.release
                release = int(round(min(max(seconds, settings.min_release_seconds),
                                        settings.max_release_seconds) * sr))
            length = min(hold + release, num_samples - row.start)
            if layer.one_shot:  # a struck or plucked sound ends with its sample
                segment = voice.audio[:length]
            else:
                stats["looped"] += voice.needs_loop(length)
                segment = voice.read(length)
            segment = segment * np.float32(10 ** ((gain_db + zone.volume_db) / 20) * note.velocity / 127)
            length = len(segment)
            _envelope(segment, zone, articulation, hold, release, settings, sr)
            out[row.start:row.start + length] += segment
    if tracks is not None:
        # each its own stream: turning one on leaves the other's draws (and every other choice) unchanged
        eq_rng = _recording_rng(seed, recording_id, EQ_STREAM)
        balance_rng = _recording_rng(seed, recording_id, BALANCE_STREAM)
        for program in programs:
            track = tracks[program]
            if settings.instrument_eq_db > 0:
                track = random_smooth_eq(track, sr, settings.instrument_eq_db, INSTRUMENT_EQ_BANDS, eq_rng)
            if settings.instrument_balance_db > 0:
                balance = settings.instrument_balance_db
                track = track * np.float32(10 ** (balance_rng.uniform(-balance, balance) / 20))
            mix += track

    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    target = 10.0 ** (settings.peak_dbfs / 20.0)
    gain = target / peak if peak > 0 else 1.0
    audio = (mix * gain).astype(np.float32)
    labels = [replace(r, end=min(r.end, num_samples)) for r in kept if r.start < num_samples]
    left_out = None
    if play_as:
        labels, left_out = _leave_out(labels, play_as)
    info = {
        "seconds": num_samples / sr, "samples": num_samples, "gain": gain,
        "gain_db": float(20 * np.log10(gain)), "peak_before_gain": peak,
        "notes": len(labels), "skipped_zero_length": len(rows) - len(kept), "base_velocity": base_velocity,
        "variants": {str(p): variants[p].name for p in programs},
        "articulations": {a: stats[a] for a in ARTICULATIONS},
        "legato_handovers": handovers, "looped_notes": stats["looped"],
        "outside_key_range": stats["outside_key_range"],
    }
    if left_out is not None:
        info["notes"] = len(labels) + sum(left_out.values())  # notes played, as without distractors
        info["left_out_of_labels"] = left_out
    return audio, labels, info


def _envelope(segment: np.ndarray, zone: Zone, articulation: str, hold: int, release: int,
              settings: SamplerSettings, sr: int) -> None:
    """Apply attack, decay/sustain and release to ``segment`` in place (the note is held for ``hold`` frames)."""
    n = len(segment)
    if articulation == "sustain":
        attack_seconds = min(max(zone.attack or 0.0, settings.min_attack_seconds), settings.max_attack_seconds,
                             max(0.5 * hold / sr, settings.min_attack_seconds))
    else:  # the recorded attack is the articulation
        attack_seconds = settings.min_attack_seconds
    attack = min(int(round(attack_seconds * sr)), n)
    if attack > 0:
        segment[:attack] *= _ramp("attack", attack)
    level = min(max(zone.sustain if zone.sustain is not None else 1.0, 0.0), 1.0)
    decay = int(round((zone.decay or 0.0) * sr))
    if level < 1.0 and decay > 0 and n > attack:
        span = min(decay, n - attack)
        segment[attack:attack + span] *= level + (1.0 - level) * _ramp("release", decay)[:span]
        segment[attack + span:] *= level
    if n > hold and release > 0:
        span = n - hold
        segment[hold:] *= _ramp("release", release)[:span]


# --------------------------------------------------------------------------- corpus


_WORKER: Dict[str, object] = {}


def _worker_init(library: str, instruments: Mapping[int, Sequence[Variant]], settings: SamplerSettings,
                 compass: Optional[Mapping[int, Tuple[int, int]]] = None) -> None:
    _WORKER["library"] = SampleLibrary(library, instruments, sample_rate=settings.sample_rate,
                                       loop_crossfade_seconds=settings.loop_crossfade_seconds)
    _WORKER["settings"] = settings
    _WORKER["compass"] = dict(compass or {})


def _render_job(job: _Job) -> Dict:
    library: SampleLibrary = _WORKER["library"]  # type: ignore[assignment]
    settings: SamplerSettings = _WORKER["settings"]  # type: ignore[assignment]
    end = None if job.max_samples is None else job.start_sample + job.max_samples
    rows = clip_rows(read_label_rows(job.labels_path), job.start_sample, end)
    omitted = set(job.omit_programs)
    left_out = Counter(r.instrument for r in rows if r.instrument in omitted)
    rows = [r for r in rows if r.instrument not in omitted]
    rows, play_as, moves = _job_distractors(job, rows, _WORKER["compass"])  # type: ignore[arg-type]
    audio, labels, info = render_notes(rows, library, settings, seed=job.seed, recording_id=job.recording_id,
                                       max_samples=job.max_samples, source=str(job.labels_path), play_as=play_as)
    write_label_rows(job.out_dir / f"{job.split}_labels" / f"{job.recording_id}.csv", labels)
    write_wav(job.out_dir / f"{job.split}_data" / f"{job.recording_id}.wav", audio, settings.sample_rate)
    info.update(split=job.split, id=job.recording_id, source_labels=str(job.labels_path),
                start_sample=job.start_sample, left_out_notes={str(p): left_out[p] for p in sorted(left_out)})
    if job.distractor_probability > 0:
        names = {p: info["variants"][str(track)] for track, p in play_as.items()}
        info["distractors"] = _distractor_info(job, play_as, moves, info.pop("left_out_of_labels", {}), names)
    return info


def _sampler_compass(covered: Tuple[int, int], compass: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    """The notes a distractor plays: those its samples cover, within the instrument's compass when that
    leaves at least an octave."""
    if compass is not None:
        lo, hi = max(covered[0], compass[0]), min(covered[1], compass[1])
        if hi - lo >= 11:
            return lo, hi
    if covered[1] - covered[0] >= 11:
        return covered
    low = min(max((covered[0] + covered[1]) // 2 - 6, 0), 116)  # samples of less than an octave: one around them
    return low, low + 11


def library_commit(root: str | os.PathLike) -> Optional[str]:
    """The git commit of a library folder that is the top of a git checkout (``None`` otherwise)."""
    root = Path(root).resolve()
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = top.stdout.split()
    if top.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != root:
        return None
    return lines[1]


def render_corpus(
    labels_dir: str | os.PathLike | None,
    library: str | os.PathLike,
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
    velocity_spread: int = 20,
    instrument_balance_db: float = 0.0,
    instruments: Optional[Mapping[int, Sequence[Variant]]] = None,
    distractor_probability: float = 0.0,
    distractor_programs: Sequence[int] = DISTRACTOR_PROGRAMS,
    distractor_instruments: Optional[Mapping[int, Sequence[Variant]]] = None,
) -> List[Path]:
    """Render label CSVs with recorded multi-samples to a MusicNet-layout corpus.

    Parameters
    ----------
    labels_dir : path or None
        MusicNet-layout folder with ``{split}_labels/*.csv``; ``None`` -> the shipped excerpts.
    library : path
        The sample library folder (a clone of github.com/eodowd/VirtualPlayingOrchestra for the default map).
    out_dir : path
        Output root; existing recordings with other ids are kept (metadata is merged).
    split, ids, max_seconds, start_seconds, num_proc, omit_programs
        As in :func:`instrument_classifier.data.render.render_corpus`. Programs the instrument map lacks are
        left out as ``omit_programs`` are (their notes are counted per recording in ``render_info.json``).
    seed : int
        Seeds every choice per recording (with the id): variants, velocities, round robins.
    velocity, velocity_spread, velocity_jitter : int
        Each recording's base velocity is drawn in ``velocity +- velocity_spread``; each note adds a uniform
        integer jitter in ``[-velocity_jitter, +velocity_jitter]``.
    instrument_eq_db : float
        Random smooth EQ of each instrument's track, at most this many dB (as in render.py). 0: off.
    instrument_balance_db : float
        Ensemble balance: each instrument's track of a recording is made louder or softer by a gain drawn
        uniformly in ``+- instrument_balance_db`` dB. 0: off.
    instruments : mapping or None
        GM program -> variants; ``None`` -> :data:`VPO_INSTRUMENTS`.
    distractor_probability, distractor_programs
        As in :func:`instrument_classifier.data.render.render_corpus`: a replaced track is played by a variant
        of ``distractor_instruments`` and left out of the labels. Only the programs of ``distractor_programs``
        that ``distractor_instruments`` has are drawn (the others are listed in ``render_info.json``), and a
        track is moved by octaves into the notes the library's samples cover (within the instrument's compass).
    distractor_instruments : mapping or None
        GM program -> variants of the distractors; ``None`` -> :data:`VPO_DISTRACTORS`.

    Returns
    -------
    list of Path
        The written wav files, sorted by split and id.
    """
    settings = SamplerSettings(velocity=velocity, velocity_spread=velocity_spread, velocity_jitter=velocity_jitter,
                               instrument_eq_db=instrument_eq_db, instrument_balance_db=instrument_balance_db)
    probability, distractor_programs = check_distractor_options(distractor_probability, distractor_programs)
    instruments = dict(VPO_INSTRUMENTS if instruments is None else instruments)
    library_root = SampleLibrary(library, instruments).root  # checks the folder before anything is read
    out_dir = Path(out_dir)
    lacking = set(range(1, 129)) - set(instruments)
    omitted = sorted(lacking | {int(p) for p in omit_programs})
    playable = ", ".join(str(p) for p in sorted(set(instruments) - set(omitted)))
    root, jobs = _prepare_jobs(labels_dir, out_dir, split, ids, max_seconds, start_seconds, seed, omitted,
                               omitted_what=f"programs the sample library lacks or that are omitted "
                                            f"(it plays {playable or 'none of them'})")
    played, compass, distractors = instruments, {}, None
    if probability > 0:
        available = dict(VPO_DISTRACTORS if distractor_instruments is None else distractor_instruments)

        def playable(program: int) -> bool:  # in the map, and its presets are in the library folder
            return program in available and all((library_root / layer.preset).is_file() for v in available[program]
                                                for a in ARTICULATIONS for layer in getattr(v, a))

        usable = _usable_distractors(distractor_programs, omit_programs, playable,
                                     f"sample library {library_root} (its distractor instruments)")
        played = {**{p: tuple(available[p]) for p in usable}, **instruments}
        probe = SampleLibrary(library_root, played)  # reads the presets: a missing sample fails here
        compass = {p: _sampler_compass(probe.key_range(p), DISTRACTOR_COMPASS.get(p)) for p in usable}
        distractors = {"probability": probability, "programs": list(usable),
                       "unavailable_programs": [p for p in distractor_programs if p not in usable],
                       "instrument_map": "vpo" if distractor_instruments is None else "custom",
                       "compass": {str(p): list(compass[p]) for p in usable}}
        jobs = [replace(job, distractor_probability=probability, distractor_programs=usable) for job in jobs]
    results = _run_jobs(jobs, _worker_init, (str(library_root), played, settings, compass), _render_job,
                        desc=f"render {library_root.name}", num_proc=num_proc, progress=progress)
    header = {"renderer": "sampler", "library": str(library_root.resolve()),
              "library_commit": library_commit(library_root),
              "instrument_map": "vpo" if instruments == VPO_INSTRUMENTS else "custom", "seed": seed,
              "settings": asdict(settings)}
    if distractors is not None:
        header["distractors"] = distractors
    _merge_render_info(out_dir, header, {"library": str(library_root.resolve()), "seed": seed}, results)
    return _finish_corpus(root, out_dir, results)
