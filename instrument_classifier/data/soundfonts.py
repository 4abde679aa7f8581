"""Which recordings does a General MIDI sample library play, and do two libraries share any?

A held-out sample library only measures generalisation if it shares **no recording** with the training
libraries: FluidR3 GM, FluidR3Mono and MuseScore General, for instance, are largely the same samples
re-packed (mono, Ogg-compressed, re-tuned). This module reads SoundFont 2 (``.sf2``) and MuseScore's
Ogg-Vorbis-compressed SoundFont 3 (``.sf3``) files without FluidSynth, lists the samples every preset plays
(with the key and velocity ranges that select them), and compares libraries by their audio:

* identical PCM is caught by a hash;
* re-encoded, resampled, trimmed or level-changed copies by the normalised cross-correlation of the
  first second of both samples at a common rate (same recording: > 0.9; two different recordings of
  the same instrument and pitch: < 0.5, because their phases and vibrato differ).

``python -m instrument_classifier.data.soundfonts A.sf2 B.sf3 ...`` prints the overlap matrix for the 11
MusicNet programs.

SoundFont layout used here (SoundFont 2.04 spec, section 7): ``RIFF sfbk`` holds ``LIST sdta`` (``smpl``:
16-bit PCM of every sample; in SF3 the Ogg bytes) and ``LIST pdta`` with the preset headers ``phdr``, their
zones ``pbag``/``pgen`` (generator 41 = instrument), instruments ``inst`` with zones ``ibag``/``igen``
(generator 53 = sample, 43 = key range, 44 = velocity range) and the sample headers ``shdr``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from .taxonomy import MUSICNET_PROGRAMS

__all__ = ["SoundFontError", "SampleRef", "SoundFont", "read_soundfont", "same_recording", "overlap_report"]

_GEN_KEY_RANGE, _GEN_VEL_RANGE, _GEN_INSTRUMENT, _GEN_SAMPLE = 43, 44, 41, 53
_COMPRESSED = 0x10  # SF3 sample type flag: the sample is Ogg Vorbis
_ROM = 0x8000
COMPARE_RATE = 22050


class SoundFontError(ValueError):
    """A file that is not a readable SoundFont; the message names the file."""


@dataclass(frozen=True)
class SampleRef:
    """One sample header (``shdr`` record)."""

    index: int
    name: str
    start: int  # sample frames (SF2) or bytes into smpl (SF3 compressed)
    end: int
    sample_rate: int
    original_pitch: int
    sample_type: int

    @property
    def compressed(self) -> bool:
        return bool(self.sample_type & _COMPRESSED)


@dataclass
class Zone:
    """One instrument zone of a preset: which sample plays for which keys and velocities."""

    instrument: str
    sample: int  # index into SoundFont.samples
    key_range: Tuple[int, int] = (0, 127)
    vel_range: Tuple[int, int] = (0, 127)


@dataclass
class SoundFont:
    path: Path
    samples: List[SampleRef]
    presets: Dict[Tuple[int, int], Tuple[str, List[Zone]]]  # (bank, 0-based preset) -> (name, zones)
    _smpl: Tuple[int, int] = (0, 0)  # file offset and size of the smpl chunk
    _cache: Dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def preset(self, program: int, bank: int = 0) -> Tuple[str, List[Zone]]:
        """Name and zones of the melodic preset for a 1-based GM program (``KeyError`` if absent)."""
        return self.presets[(bank, program - 1)]

    def velocity_layers(self, program: int) -> int:
        """Distinct velocity ranges among the zones of a program (1 = no velocity layering)."""
        return len({z.vel_range for z in self.preset(program)[1]})

    def audio(self, index: int) -> Tuple[np.ndarray, int]:
        """Decoded mono float32 audio of sample ``index`` and its rate."""
        ref = self.samples[index]
        if index not in self._cache:
            offset, size = self._smpl
            with open(self.path, "rb") as f:
                if ref.compressed:
                    f.seek(offset + ref.start)
                    data = f.read(max(0, ref.end - ref.start))
                    self._cache[index] = _decode_ogg(data, self.path, ref)
                else:
                    f.seek(offset + 2 * ref.start)
                    data = f.read(2 * max(0, ref.end - ref.start))
                    self._cache[index] = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        return self._cache[index], ref.sample_rate


def _decode_ogg(data: bytes, path: Path, ref: SampleRef) -> np.ndarray:
    try:
        audio, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except RuntimeError as exc:
        raise SoundFontError(f"{path}: sample {ref.index} {ref.name!r}: cannot decode Ogg data ({exc})") from None
    return audio[:, 0]


def _chunks(buf: bytes, start: int, end: int, path: Path) -> Iterable[Tuple[bytes, int, int]]:
    pos = start
    while pos + 8 <= end:
        cid, size = struct.unpack_from("<4sI", buf, pos)
        if pos + 8 + size > end:
            raise SoundFontError(f"{path}: chunk {cid!r} at byte {pos} runs past its parent (truncated file?)")
        yield cid, pos + 8, size
        pos += 8 + size + (size & 1)


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


def read_soundfont(path) -> SoundFont:
    """Parse the preset/instrument/sample structure of an ``.sf2``/``.sf3`` file (sample audio read lazily)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
                raise SoundFontError(f"{path}: not a SoundFont (no RIFF sfbk header)")
            total = struct.unpack_from("<I", head, 4)[0] + 8
            # read everything but the sample data: walk top-level chunks, skipping over sdta's payload
            lists: Dict[bytes, Tuple[int, int]] = {}
            pos = 12
            while pos + 12 <= total:
                f.seek(pos)
                cid, size = struct.unpack("<4sI", f.read(8))
                if cid == b"LIST":
                    lists[f.read(4)] = (pos + 12, size - 4)
                pos += 8 + size
                if size & 1:  # RIFF pads odd chunks, but some SF3 writers do not: trust what follows
                    f.seek(pos)
                    pos += 0 if f.read(4) == b"LIST" else 1
            if b"sdta" not in lists or b"pdta" not in lists:
                raise SoundFontError(f"{path}: missing the sdta or pdta list (truncated or not a SoundFont)")
            f.seek(lists[b"sdta"][0])
            smpl = None
            pos, end = lists[b"sdta"][0], lists[b"sdta"][0] + lists[b"sdta"][1]
            while pos + 8 <= end:
                f.seek(pos)
                cid, size = struct.unpack("<4sI", f.read(8))
                if cid == b"smpl":
                    smpl = (pos + 8, size)
                pos += 8 + size + (size & 1)
            f.seek(lists[b"pdta"][0])
            pdta = f.read(lists[b"pdta"][1])
    except OSError as exc:
        raise SoundFontError(f"{path}: unreadable ({exc})") from None
    if smpl is None:
        raise SoundFontError(f"{path}: no smpl chunk")
    sub = {cid: pdta[s : s + n] for cid, s, n in _chunks(pdta, 0, len(pdta), path)}
    for need in (b"phdr", b"pbag", b"pgen", b"inst", b"ibag", b"igen", b"shdr"):
        if need not in sub:
            raise SoundFontError(f"{path}: pdta lacks the {need.decode()} chunk")

    phdr = [struct.unpack_from("<20sHHH", sub[b"phdr"], i) for i in range(0, len(sub[b"phdr"]) - 37, 38)]
    pbag = [struct.unpack_from("<HH", sub[b"pbag"], i) for i in range(0, len(sub[b"pbag"]) - 3, 4)]
    pgen = [struct.unpack_from("<HBB", sub[b"pgen"], i) for i in range(0, len(sub[b"pgen"]) - 3, 4)]
    inst = [struct.unpack_from("<20sH", sub[b"inst"], i) for i in range(0, len(sub[b"inst"]) - 21, 22)]
    ibag = [struct.unpack_from("<HH", sub[b"ibag"], i) for i in range(0, len(sub[b"ibag"]) - 3, 4)]
    igen = [struct.unpack_from("<HBB", sub[b"igen"], i) for i in range(0, len(sub[b"igen"]) - 3, 4)]
    shdr = [struct.unpack_from("<20sIIIIIBbHH", sub[b"shdr"], i) for i in range(0, len(sub[b"shdr"]) - 45, 46)]
    samples = [SampleRef(i, _name(r[0]), r[1], r[2], r[5], r[6], r[9]) for i, r in enumerate(shdr[:-1])]  # last = EOS

    def zones(bags, gens, first, last):
        """Generator dicts {oper: (lo, hi)} of the zones with bag indices [first, last)."""
        out = []
        for b in range(first, last):
            g0, g1 = bags[b][0], bags[b + 1][0] if b + 1 < len(bags) else len(gens)
            out.append({op: (lo, hi) for op, lo, hi in gens[g0:g1]})
        return out

    def instrument_zones(index: int) -> List[Zone]:
        name, first = _name(inst[index][0]), inst[index][1]
        last = inst[index + 1][1] if index + 1 < len(inst) else len(ibag) - 1
        result, global_zone = [], {}
        for k, gen in enumerate(zones(ibag, igen, first, last)):
            if _GEN_SAMPLE not in gen:
                if k == 0:
                    global_zone = gen  # a global zone: defaults for the others
                continue
            lo, hi = gen[_GEN_SAMPLE]
            sample = lo | (hi << 8)
            if sample >= len(samples) or samples[sample].sample_type & _ROM:
                continue
            key = gen.get(_GEN_KEY_RANGE, global_zone.get(_GEN_KEY_RANGE, (0, 127)))
            vel = gen.get(_GEN_VEL_RANGE, global_zone.get(_GEN_VEL_RANGE, (0, 127)))
            result.append(Zone(name, sample, tuple(key), tuple(vel)))
        return result

    presets = {}
    for p in range(len(phdr) - 1):  # last = EOP
        name, number, bank, first = _name(phdr[p][0]), phdr[p][1], phdr[p][2], phdr[p][3]
        last = phdr[p + 1][3]
        preset_zones: List[Zone] = []
        for gen in zones(pbag, pgen, first, last):
            if _GEN_INSTRUMENT in gen:
                lo, hi = gen[_GEN_INSTRUMENT]
                index = lo | (hi << 8)
                if index < len(inst) - 1:
                    # a preset zone's velocity range narrows its instrument's (velocity layers at preset level)
                    lo_v, hi_v = gen.get(_GEN_VEL_RANGE, (0, 127))
                    for z in instrument_zones(index):
                        z.vel_range = (max(lo_v, z.vel_range[0]), min(hi_v, z.vel_range[1]))
                        preset_zones.append(z)
        presets[(bank, number)] = (name, preset_zones)
    return SoundFont(path, samples, presets, smpl)


# -- comparing recordings ------------------------------------------------------------------------

def _fingerprint_audio(audio: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    if rate != COMPARE_RATE:
        g = np.gcd(int(rate), COMPARE_RATE)
        audio = resample_poly(audio, COMPARE_RATE // g, int(rate) // g)
    return np.asarray(audio[: int(seconds * COMPARE_RATE)], dtype=np.float64)


def same_recording(a: np.ndarray, b: np.ndarray, min_overlap: int = 2048) -> float:
    """Peak normalised cross-correlation of two signals over all lags (1.0 = one is a scaled, shifted copy).

    The correlation at each lag is normalised by the energies of the overlapping parts, so a trimmed
    attack or a gain change does not lower it; lags overlapping fewer than ``min_overlap`` samples are ignored.
    """
    if len(a) < 64 or len(b) < 64:
        return 0.0
    a = a - a.mean()
    b = b - b.mean()
    n = len(a) + len(b) - 1
    size = 1 << int(np.ceil(np.log2(n)))
    xc = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lags = np.concatenate([np.arange(0, len(a)), np.arange(-(len(b) - 1), 0)])
    xc = np.concatenate([xc[: len(a)], xc[size - (len(b) - 1):]])
    # energy of the overlap of a (shifted by lag) with b
    ca = np.concatenate([[0.0], np.cumsum(a**2)])
    cb = np.concatenate([[0.0], np.cumsum(b**2)])
    a0 = np.maximum(lags, 0)  # a[i + lag] pairs with b[i]
    b0 = np.maximum(-lags, 0)
    length = np.minimum(len(a) - a0, len(b) - b0)
    ok = length >= min(min_overlap, len(a), len(b))
    ea = ca[np.minimum(a0 + length, len(a))] - ca[a0]
    eb = cb[np.minimum(b0 + length, len(b))] - cb[b0]
    denom = np.sqrt(ea * eb) + 1e-12
    score = np.where(ok & (ea > 1e-9) & (eb > 1e-9), np.abs(xc) / denom, 0.0)
    return float(score.max())


@dataclass
class _Sample:
    library: str
    program: int
    name: str
    pitch: int
    digest: str
    audio: np.ndarray


def _program_samples(sf: SoundFont, label: str, programs: Sequence[int], seconds: float) -> List[_Sample]:
    out, seen = [], set()
    for program in programs:
        try:
            _, zones = sf.preset(program)
        except KeyError:
            continue
        for zone in zones:
            if zone.sample in seen:  # one recording, however many presets or zones play it
                continue
            seen.add(zone.sample)
            audio, rate = sf.audio(zone.sample)
            ref = sf.samples[zone.sample]
            digest = hashlib.sha1(np.round(audio * 32768).astype("<i2").tobytes()).hexdigest()
            out.append(_Sample(label, program, ref.name, ref.original_pitch, digest,
                               _fingerprint_audio(audio, rate, seconds)))
    return out


def overlap_report(paths: Sequence, programs: Sequence[int] = tuple(MUSICNET_PROGRAMS), threshold: float = 0.9,
                   seconds: float = 0.5, pitch_tolerance: int = 12, progress: bool = False) -> Dict:
    """Compare the samples the given programs play across libraries.

    Two samples count as the same recording if their PCM is identical or their normalised
    cross-correlation (first ``seconds`` at 22.05 kHz, any lag) exceeds ``threshold``. Only samples whose
    root keys are within ``pitch_tolerance`` semitones are compared (a recording re-used at another root
    key is also caught: the correlation of the *same* waveform does not depend on the declared root key,
    and re-tuned copies keep it within a few semitones).

    Each entry of ``paths`` is a library file, or a ``(file, programs)`` pair to compare only those of
    its programs (a library used without some of its presets); the other programs show as not played.

    Returns
    -------
    dict
        ``libraries`` (label -> {program: {preset, samples, velocity_layers}}), ``shared``
        ({(A, B): {program: n samples of A that B also plays (in any of ``programs``)}}), ``matches``
        (examples), and ``matrix`` ({(A, B): fraction of A's samples found in B}).
    """
    libraries, samples = {}, {}
    for entry in paths:
        path, wanted = entry if isinstance(entry, tuple) else (entry, programs)
        path, wanted = Path(path), set(wanted)
        played = [p for p in programs if p in wanted]
        label = path.stem
        sf = read_soundfont(path)
        info = {}
        for program in programs:
            if program not in played:
                info[program] = {"preset": None, "samples": 0, "velocity_layers": 0}
                continue
            try:
                name, zones = sf.preset(program)
            except KeyError:
                info[program] = {"preset": None, "samples": 0, "velocity_layers": 0}
                continue
            info[program] = {"preset": name, "samples": len({z.sample for z in zones}),
                             "velocity_layers": sf.velocity_layers(program)}
        libraries[label] = info
        samples[label] = _program_samples(sf, label, played, seconds)
        if progress:
            print(f"{label}: {len(samples[label])} samples", file=sys.stderr)
    labels = list(samples)
    shared, matrix, matches = {}, {}, {}
    for ia, a in enumerate(labels):
        for b in labels[ia + 1:]:
            # one score matrix per unordered pair serves both directions
            score = np.zeros((len(samples[a]), len(samples[b])))
            for i, sa in enumerate(samples[a]):
                for j, sb in enumerate(samples[b]):
                    if sa.digest == sb.digest:
                        score[i, j] = 1.0
                    elif abs(sa.pitch - sb.pitch) <= pitch_tolerance:
                        score[i, j] = same_recording(sa.audio, sb.audio)
            for x, y, m in ((a, b, score), (b, a, score.T)):
                per_program: Dict[int, int] = {}
                examples = []
                best = m.max(axis=1) if m.size else np.zeros(len(samples[x]))
                for i in np.flatnonzero(best >= threshold):
                    sx, sy = samples[x][i], samples[y][int(m[i].argmax())]
                    per_program[sx.program] = per_program.get(sx.program, 0) + 1
                    if len(examples) < 5:
                        examples.append((MUSICNET_PROGRAMS.get(sx.program, sx.program), sx.name, sy.name,
                                         round(float(best[i]), 3)))
                shared[(x, y)] = per_program
                matrix[(x, y)] = float((best >= threshold).mean()) if len(best) else 0.0
                matches[(x, y)] = examples
            if progress:
                print(f"{a} ~ {b}: {matrix[(a, b)]:.0%} / {matrix[(b, a)]:.0%}", file=sys.stderr)
    return {"libraries": libraries, "shared": shared, "matrix": matrix, "matches": matches,
            "counts": {k: len(v) for k, v in samples.items()}}


def format_report(report: Dict) -> str:
    labels = list(report["libraries"])
    width = max(len(x) for x in labels) + 2
    lines = ["Share of each row library's samples (11 MusicNet programs) that the column library also plays:",
             " " * width + "".join(f"{b[:14]:>16}" for b in labels)]
    for a in labels:
        cells = "".join(f"{'-' if a == b else format(report['matrix'][(a, b)], '.0%'):>16}" for b in labels)
        lines.append(f"{a:<{width}}" + cells)
    lines.append("")
    lines.append("Samples and velocity layers per program (samples/layers):")
    programs = list(next(iter(report["libraries"].values())))
    lines.append(" " * width + "".join(f"{MUSICNET_PROGRAMS.get(p, p)[:10]:>12}" for p in programs))
    for a in labels:
        info = report["libraries"][a]
        lines.append(f"{a:<{width}}" + "".join(
            f"{(str(info[p]['samples']) + '/' + str(info[p]['velocity_layers'])) if info[p]['preset'] else 'none':>12}"
            for p in programs))
    lines.append("")
    for (a, b), examples in report["matches"].items():
        if examples:
            lines.append(f"{a} ~ {b}: e.g. " + "; ".join(f"{p}: {x} = {y} (r={s})" for p, x, y, s in examples[:3]))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("soundfonts", nargs="+", type=Path)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    args = parser.parse_args(argv)
    try:
        report = overlap_report(args.soundfonts, threshold=args.threshold, progress=True)
    except SoundFontError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        serial = {k: ({f"{a}|{b}": v for (a, b), v in report[k].items()} if k in ("shared", "matrix", "matches")
                      else report[k]) for k in report}
        args.json.write_text(json.dumps(serial, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
