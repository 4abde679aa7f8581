"""Distractors (``synth --distractors P``): tracks played by other instruments, sounding but left out of the labels.

Real renders: the shipped excerpts through FluidR3 GM (10 s each), a small synthetic DecentSampler library, and
(with ``VPO_LIBRARY`` set) the Virtual Playing Orchestra.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instrument_classifier.data import render, sampler
from instrument_classifier.data.render import (
    DEFAULT_SOUNDFONT,
    DISTRACTOR_COMPASS,
    DISTRACTOR_PROGRAMS,
    LABEL_COLUMNS,
    LabelRow,
    RenderError,
    read_label_rows,
    render_corpus,
)
from instrument_classifier.data.sampler import Layer, Variant
from instrument_classifier.data.taxonomy import MUSICNET_PROGRAMS

SR = 44100
pytestmark = pytest.mark.skipif(not DEFAULT_SOUNDFONT.is_file(),
                                reason="FluidR3 GM not installed (apt fluid-soundfont-gm)")
HEADER = ",".join(LABEL_COLUMNS) + "\n"


def s(seconds: float) -> int:
    return int(round(seconds * SR))


def rms(audio: np.ndarray, start_s: float, end_s: float) -> float:
    seg = audio[s(start_s):s(end_s)].astype(np.float64)
    return float(np.sqrt(np.mean(seg ** 2)))


def recordings(out: Path) -> dict:
    return json.loads((out / "render_info.json").read_text())["recordings"]


def corpus_files(out: Path) -> dict:
    """Every file of a corpus (render_info.json with the output folder's path taken out): bytes by relative path."""
    files = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == "render_info.json":
            data = data.replace(str(out).encode(), b"OUT")
        files[path.relative_to(out).as_posix()] = data
    return files


def write_csv(path: Path, notes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(f"{a},{b},{p},{n},0.0,1.0,Quarter\n" for a, b, p, n in notes))
    return path


# --------------------------------------------------------------------------- FluidSynth


def test_every_track_replaced_at_p1_leaves_empty_labels_and_sounding_audio(tmp_path):
    ids = ["2082", "2221"]  # wind quintet, solo cello
    render_corpus(None, None, tmp_path / "plain", ids=ids, max_seconds=10, seed=1, progress=False)
    render_corpus(None, None, tmp_path / "all", ids=ids, max_seconds=10, seed=1, distractor_probability=1.0,
                  progress=False)
    info = recordings(tmp_path / "all")
    for rid in ids:
        plain_rows = read_label_rows(tmp_path / "plain" / "train_labels" / f"{rid}.csv")
        assert (tmp_path / "all" / "train_labels" / f"{rid}.csv").read_text() == HEADER  # header only
        distractors = info[f"train/{rid}"]["distractors"]
        assert distractors["probability"] == 1.0
        tracks = distractors["tracks"]
        assert set(tracks) == {str(p) for p in {r.instrument for r in plain_rows}}  # every track replaced
        programs = [t["program"] for t in tracks.values()]
        assert set(programs) <= set(DISTRACTOR_PROGRAMS) and len(set(programs)) == len(programs)  # distinct
        assert all(t["played_by"] for t in tracks.values())  # FluidR3's preset names
        per_track = Counter(r.instrument for r in plain_rows)
        assert {k: t["notes_left_out"] for k, t in tracks.items()} == {str(p): n for p, n in per_track.items()}
        assert distractors["notes_left_out"] == len(plain_rows)
        plain = sf.read(tmp_path / "plain" / "train_data" / f"{rid}.wav", dtype="float32")[0]
        audio = sf.read(tmp_path / "all" / "train_data" / f"{rid}.wav", dtype="float32")[0]
        assert len(audio) == len(plain)  # same notes played: same length
        assert rms(audio, 0, 10) > 0.02, rid
        # it sounds wherever the score has notes (0.5-s steps, a margin for attacks and decays)
        active = np.zeros(len(plain), bool)
        for r in plain_rows:
            active[r.start:r.end] = True
        for t0 in np.arange(0, 9.5, 0.5):
            if active[s(t0):s(t0 + 0.5)].mean() > 0.9:
                assert rms(audio, t0, t0 + 0.5) > 1e-3, (rid, t0)
        assert not np.allclose(audio, plain, atol=1e-2)  # other instruments
    header = json.loads((tmp_path / "all" / "render_info.json").read_text())["distractors"]
    assert header == {"probability": 1.0, "programs": list(DISTRACTOR_PROGRAMS), "unavailable_programs": []}


def test_p0_is_the_corpus_rendered_without_the_option(tmp_path, rendered_corpus):
    """P = 0 (explicitly, with any program list) renders byte for byte what the default call renders: the
    ``rendered_corpus`` fixture (same excerpts, 10 s, seed 0), render_info.json included."""
    from conftest import RENDERED_CORPUS_IDS

    out = tmp_path / "p0"
    for split, ids in RENDERED_CORPUS_IDS.items():
        render_corpus(None, None, out, split=split, ids=ids, max_seconds=10.0, seed=0, progress=False,
                      distractor_probability=0.0, distractor_programs=(57, 66))
    assert corpus_files(out) == corpus_files(rendered_corpus)
    info = json.loads((out / "render_info.json").read_text())  # as before the option existed: no trace of it
    assert "distractors" not in info and not any("distractors" in r for r in info["recordings"].values())


def test_distractors_do_not_change_the_velocities_or_timing_of_the_plan():
    """A track "played as" its own program sounds exactly as without play_as (same channels, velocity draws,
    events), and only its labels go: the distractor machinery touches nothing but the program and the labels."""
    rows = [LabelRow(s(0.1 + 0.25 * i), s(0.5 + 0.25 * i), 41 if i % 2 else 74, 60 + i, row=i + 2) for i in range(8)]
    with render.FluidSynthRenderer(DEFAULT_SOUNDFONT) as renderer:
        plain, labels, _ = render.render_notes(rows, renderer, seed=5, recording_id="9")
        same, kept, info = render.render_notes(rows, renderer, seed=5, recording_id="9", play_as={41: 41})
        other, _, _ = render.render_notes(rows, renderer, seed=5, recording_id="9", play_as={41: 57})
    np.testing.assert_array_equal(plain, same)
    assert kept == [r for r in labels if r.instrument == 74] and info["left_out_of_labels"] == {41: 4}
    assert not np.allclose(plain, other, atol=1e-3)


def test_half_the_tracks_replaced_keep_exactly_the_other_tracks_labels(tmp_path):
    ids = ["2127", "2082", "2285", "2202"]  # octet, wind quintet, violin + harpsichord, solo flute
    render_corpus(None, None, tmp_path / "plain", ids=ids, max_seconds=10, seed=3, progress=False)
    render_corpus(None, None, tmp_path / "half", ids=ids, max_seconds=10, seed=3, distractor_probability=0.5,
                  progress=False)
    info = recordings(tmp_path / "half")
    partly = 0
    for rid in ids:
        plain_rows = read_label_rows(tmp_path / "plain" / "train_labels" / f"{rid}.csv")
        rows = read_label_rows(tmp_path / "half" / "train_labels" / f"{rid}.csv")
        tracks = info[f"train/{rid}"]["distractors"]["tracks"]
        replaced = {int(p) for p in tracks}
        present = {r.instrument for r in plain_rows}
        assert replaced <= present
        partly += 0 < len(replaced) < len(present)
        # exactly the notes of the tracks not replaced, with their rendered times
        assert [(r.start, r.end, r.instrument, r.note) for r in rows] == \
            [(r.start, r.end, r.instrument, r.note) for r in plain_rows if r.instrument not in replaced]
        assert {int(p): t["notes_left_out"] for p, t in tracks.items()} == \
            {p: n for p, n in Counter(r.instrument for r in plain_rows).items() if p in replaced}
        assert all(t["program"] in DISTRACTOR_PROGRAMS and t["instrument"] == MUSICNET_PROGRAMS[int(p)]
                   for p, t in tracks.items())
        same_audio = np.array_equal(sf.read(tmp_path / "plain" / "train_data" / f"{rid}.wav")[0],
                                    sf.read(tmp_path / "half" / "train_data" / f"{rid}.wav")[0])
        assert same_audio == (not replaced), rid
    assert partly >= 2  # the seed gives recordings with some tracks replaced and some kept
    assert sum(bool(info[f"train/{rid}"]["distractors"]["tracks"]) for rid in ids) >= 3


def test_draws_are_seeded_per_recording(tmp_path):
    ids = ["2127", "2082", "2202"]
    a = render_corpus(None, None, tmp_path / "a", ids=ids, max_seconds=6, seed=7, distractor_probability=0.5,
                      progress=False)
    render_corpus(None, None, tmp_path / "b", ids=ids, max_seconds=6, seed=7, distractor_probability=0.5,
                  progress=False)
    render_corpus(None, None, tmp_path / "alone", ids=["2082"], max_seconds=6, seed=7, distractor_probability=0.5,
                  progress=False)
    render_corpus(None, None, tmp_path / "c", ids=ids, max_seconds=6, seed=8, distractor_probability=0.5,
                  progress=False)
    files_a, files_b = corpus_files(tmp_path / "a"), corpus_files(tmp_path / "b")
    assert files_a.keys() == files_b.keys() and all(files_a[k] == files_b[k] for k in files_a
                                                    if k != "render_info.json")
    assert recordings(tmp_path / "a") == json.loads(files_b["render_info.json"].replace(b"OUT", str(tmp_path / "a")
                                                                                       .encode()))["recordings"]
    # a recording's draws do not depend on the others rendered with it
    assert (tmp_path / "alone" / "train_data" / "2082.wav").read_bytes() == files_a["train_data/2082.wav"]
    assert recordings(tmp_path / "alone")["train/2082"]["distractors"] == \
        recordings(tmp_path / "a")["train/2082"]["distractors"]
    other = recordings(tmp_path / "c")
    assert any(other[f"train/{rid}"]["distractors"] != recordings(tmp_path / "a")[f"train/{rid}"]["distractors"]
               for rid in ids)
    assert len(a) == 3


def test_replaced_programs_come_from_the_list(tmp_path):
    render_corpus(None, None, tmp_path / "two", ids=["2127"], max_seconds=10, seed=0, distractor_probability=1.0,
                  distractor_programs=(57, 66), progress=False)
    info = json.loads((tmp_path / "two" / "render_info.json").read_text())
    tracks = info["recordings"]["train/2127"]["distractors"]["tracks"]
    assert len(tracks) == 8 and {t["program"] for t in tracks.values()} == {57, 66}
    assert Counter(t["program"] for t in tracks.values()) == {57: 4, 66: 4}  # the permutation, repeated
    assert {t["played_by"] for t in tracks.values()} == {"Trumpet", "Alto Sax"}
    assert info["distractors"]["programs"] == [57, 66]
    # omitted programs are not drawn; a list with nothing left is an error, before anything is written
    with pytest.warns(UserWarning, match="distractor program.s. 57 not used"):
        render_corpus(None, None, tmp_path / "omit", ids=["2202"], max_seconds=3, seed=0, distractor_probability=1.0,
                      distractor_programs=(57, 66), omit_programs=(57,), progress=False)
    assert recordings(tmp_path / "omit")["train/2202"]["distractors"]["tracks"]["74"]["program"] == 66
    with pytest.raises(RenderError, match="none of the distractor programs"):
        render_corpus(None, None, tmp_path / "none", ids=["2202"], distractor_probability=1.0,
                      distractor_programs=(57,), omit_programs=(57,), progress=False)
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("options, message", [
    ({"distractor_probability": 1.5}, r"must be in \[0, 1\]"),
    ({"distractor_probability": -0.1}, r"must be in \[0, 1\]"),
    ({"distractor_probability": 0.5, "distractor_programs": (57, 41)}, r"41 \(Violin\) is one of the 11"),
    ({"distractor_probability": 0.5, "distractor_programs": (0,)}, "outside 1..128"),
    ({"distractor_probability": 0.5, "distractor_programs": ()}, "no distractor programs"),
])
def test_bad_distractor_options_are_errors(tmp_path, options, message):
    with pytest.raises(RenderError, match=message):
        render_corpus(None, None, tmp_path / "out", ids=["2202"], progress=False, **options)
    assert not (tmp_path / "out").exists()


def test_default_programs_are_valid_and_have_presets_in_the_shipped_soundfonts():
    assert len(set(DISTRACTOR_PROGRAMS)) == len(DISTRACTOR_PROGRAMS) >= 30
    assert not set(DISTRACTOR_PROGRAMS) & set(MUSICNET_PROGRAMS)
    near_copies = {2, 3, 4, 5, 6, 33, 45, 46, 49, 50, 51, 52, 62, 70, 73, 75, 76, 111}
    assert not set(DISTRACTOR_PROGRAMS) & near_copies
    assert all(0 <= lo and hi <= 127 and hi - lo >= 11 for lo, hi in DISTRACTOR_COMPASS.values())
    with render.FluidSynthRenderer(DEFAULT_SOUNDFONT) as renderer:
        assert all(renderer.has_program(p) for p in DISTRACTOR_PROGRAMS)
    musescore = Path("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3")
    if musescore.is_file():
        from instrument_classifier.data.soundfonts import read_soundfont

        font = read_soundfont(musescore)
        assert all((0, p - 1) in font.presets for p in DISTRACTOR_PROGRAMS)


def test_tracks_move_by_octaves_into_the_distractors_compass():
    rows = [LabelRow(0, 10, 44, n, row=i) for i, n in enumerate((28, 31, 36, 40, 43))] + \
           [LabelRow(0, 10, 41, 76, row=9)]
    moved, info = render.fit_to_compass(rows, {44: 57}, {57: (54, 72)})
    assert [r.note for r in moved] == [64, 55, 60, 64, 67, 76]  # +2 octaves puts 4 of 5 in (+3: 3); 52 folded up
    assert info == {44: {"octaves": 2, "folded_notes": 1}}
    assert moved[-1] == rows[-1]  # other tracks untouched
    same, info = render.fit_to_compass(rows, {44: 34}, {34: (28, 67)})
    assert same == rows and info == {44: {"octaves": 0, "folded_notes": 0}}  # already inside: not moved


def test_cli_distractors(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    render.add_synth_arguments(parser)
    out = tmp_path / "out"
    assert render.run_synth(parser.parse_args(["--out", str(out), "--ids", "2221", "--max-seconds", "3",
                                               "--distractors", "1", "--distractor-programs", "58"])) == 0
    assert "rendered 1 recordings" in capsys.readouterr().out
    assert (out / "train_labels" / "2221.csv").read_text() == HEADER
    assert recordings(out)["train/2221"]["distractors"]["tracks"]["43"]["program"] == 58
    assert render.run_synth(parser.parse_args(["--out", str(tmp_path / "bad"), "--ids", "2221",
                                               "--distractors", "2"])) == 2
    assert "distractor probability must be in [0, 1]" in capsys.readouterr().err


# --------------------------------------------------------------------------- prepare


def test_prepare_accepts_all_distractor_recordings_as_nothing_playing(tmp_path):
    """A header-only labels CSV is a recording where none of the 11 plays: every window's labels are 0."""
    from instrument_classifier.data.musicnet import read_labels
    from instrument_classifier.data.prepare import build_dataset

    corpus = tmp_path / "distract"
    render_corpus(None, None, corpus, ids=["2202", "2221"], max_seconds=4, seed=0, distractor_probability=1.0,
                  distractor_programs=(66,), progress=False)
    render_corpus(None, None, corpus, ids=["2416"], max_seconds=4, seed=0, progress=False)  # clarinet + bassoon
    assert len(read_labels(corpus / "train_labels" / "2202.csv")) == 0
    dataset = build_dataset(corpus, tmp_path / "prepared", taxonomy="musicnet11", validation_fraction=0.0,
                            cache_dir=tmp_path / "cache", progress=False)
    windows = {}
    for split in ("train", "test"):
        for row in dataset[split]:
            windows.setdefault(row["recording_id"], []).append(row)
    assert set(windows) == {"distract/2202", "distract/2221", "distract/2416"}
    for rid in ("distract/2202", "distract/2221"):
        assert all(not np.any(w["labels"]) and not np.any(w["frame_labels"]) for w in windows[rid])
    labels = np.max([w["labels"] for w in windows["distract/2416"]], axis=0)
    assert labels.tolist() == [1.0 if p in (71, 72) else 0.0 for p in MUSICNET_PROGRAMS]


# --------------------------------------------------------------------------- recorded samples


def tone(freq: float, seconds: float, harmonics, decay: float = 0.0) -> np.ndarray:
    t = np.arange(s(seconds)) / SR
    x = sum(a * np.sin(2 * np.pi * freq * (k + 1) * t) for k, a in enumerate(harmonics))
    return (0.5 * x * np.exp(-decay * t) / np.abs(x).max()).astype(np.float32)


PRESET = """<?xml version="1.0" encoding="UTF-8"?>
<DecentSampler>
  <groups>
    <group><sample path="Samples\\Saw_C4.wav" rootNote="60" loNote="0" hiNote="127"/></group>
    <group><sample path="Samples\\Sine_C4.wav" rootNote="60" loNote="48" hiNote="72"/></group>
    <group><sample path="Samples\\Pluck_C4.wav" rootNote="60" loNote="0" hiNote="127"/></group>
    <group><sample path="Samples\\Square_C6.wav" rootNote="84" loNote="73" hiNote="96"/></group>
  </groups>
</DecentSampler>
"""
TARGETS = {41: (Variant("saw strings", sustain=(Layer("Test.dspreset", (0,)),)),)}
DISTRACTORS = {
    47: (Variant("pluck", sustain=(Layer("Test.dspreset", (2,), one_shot=True),)),),
    53: (Variant("two registers", sustain=(Layer("Test.dspreset", (1,), keys=(0, 72)),
                                          Layer("Test.dspreset", (3,), keys=(73, 127)))),),
}


@pytest.fixture
def small_library(tmp_path) -> Path:
    root = tmp_path / "library"
    (root / "samples").mkdir(parents=True)
    c4 = 440.0 * 2 ** ((60 - 69) / 12)
    sf.write(root / "samples" / "Saw_C4.wav", tone(c4, 1.0, [1 / k for k in range(1, 20)]), SR, subtype="PCM_16")
    sf.write(root / "samples" / "Sine_C4.wav", tone(c4, 1.0, [1.0]), SR, subtype="PCM_16")
    sf.write(root / "samples" / "Pluck_C4.wav", tone(c4, 0.3, [1.0, 0.5], decay=10.0), SR, subtype="PCM_16")
    sf.write(root / "samples" / "Square_C6.wav", tone(4 * c4, 1.0, [1, 0, 1 / 3, 0, 1 / 5]), SR, subtype="PCM_16")
    (root / "Test.dspreset").write_text(PRESET)
    return root


def test_sampler_distractors_sound_and_leave_the_labels(tmp_path, small_library):
    labels = tmp_path / "labels"
    write_csv(labels / "train_labels" / "1.csv", [(s(0.1), s(1.9), 41, 60), (s(2.0), s(2.5), 41, 64)])
    options = dict(instruments=TARGETS, distractor_instruments=DISTRACTORS, velocity_spread=0, velocity_jitter=0,
                   progress=False)
    sampler.render_corpus(labels, small_library, tmp_path / "plain", **options)
    with pytest.warns(UserWarning, match="distractor program.s. 57 not used"):
        sampler.render_corpus(labels, small_library, tmp_path / "pluck", distractor_probability=1.0,
                              distractor_programs=(47, 57), **options)
    assert (tmp_path / "pluck" / "train_labels" / "1.csv").read_text() == HEADER
    info = json.loads((tmp_path / "pluck" / "render_info.json").read_text())
    assert info["distractors"]["programs"] == [47] and info["distractors"]["unavailable_programs"] == [57]
    recording = info["recordings"]["train/1"]
    assert recording["distractors"]["tracks"]["41"] == {"instrument": "Violin", "program": 47, "played_by": "pluck",
                                                        "notes_left_out": 2, "octaves": 0, "folded_notes": 0}
    assert recording["notes"] == 2 and recording["looped_notes"] == 0
    plain = sf.read(tmp_path / "plain" / "train_data" / "1.wav", dtype="float32")[0]
    pluck = sf.read(tmp_path / "pluck" / "train_data" / "1.wav", dtype="float32")[0]
    assert len(plain) == len(pluck)
    assert rms(pluck, 0.1, 0.3) > 0.05
    # a one-shot sample ends with itself: the 0.3-s pluck is not looped over the 1.8-s note (the saw is)
    assert rms(pluck, 0.6, 1.8) < 1e-3 < rms(plain, 0.6, 1.8)
    assert rms(pluck, 2.0, 2.2) > 0.05


def test_sampler_layer_keys_choose_the_register(tmp_path, small_library):
    library = sampler.SampleLibrary(small_library, {**TARGETS, **DISTRACTORS})
    assert library.key_range(53) == (48, 96)
    notes = (60, 84, 62, 86, 64, 88, 58, 80)  # alternating registers: each note in its layer's zone
    rows = [LabelRow(s(0.1 + i), s(0.9 + i), 41, n) for i, n in enumerate(notes)]
    audio, labels, info = sampler.render_notes(rows, library, play_as={41: 53})
    assert labels == [] and info["left_out_of_labels"] == {41: 8} and info["outside_key_range"] == 0
    spectrum = np.abs(np.fft.rfft(audio[s(1.2):s(1.8)] * np.hanning(s(0.6))))
    freqs = np.fft.rfftfreq(s(0.6), 1 / SR)
    c6 = 4 * 440.0 * 2 ** ((60 - 69) / 12)
    assert abs(freqs[np.argmax(spectrum)] - c6) < 5  # the upper layer's square wave at C6, not the sine stretched
    assert spectrum[np.argmin(np.abs(freqs - 3 * c6))] > 0.1 * spectrum.max()  # odd harmonics: the square


def test_sampler_refuses_distractors_its_library_cannot_play(tmp_path, small_library):
    labels = write_csv(tmp_path / "labels" / "train_labels" / "1.csv", [(s(0.1), s(0.5), 41, 60)]).parents[1]
    with pytest.raises(RenderError, match="plays none of the distractor programs"):
        sampler.render_corpus(labels, small_library, tmp_path / "out", instruments=TARGETS,
                              distractor_probability=0.5, progress=False)  # the VPO map: none of its presets here
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not os.environ.get("VPO_LIBRARY"),
                    reason="set VPO_LIBRARY to a clone of github.com/eodowd/VirtualPlayingOrchestra")
def test_every_vpo_distractor_loads_and_plays(tmp_path):
    library = sampler.SampleLibrary(os.environ["VPO_LIBRARY"], sampler.VPO_DISTRACTORS)
    for program, variants in sampler.VPO_DISTRACTORS.items():
        assert program in DISTRACTOR_PROGRAMS
        lo, hi = library.key_range(program)
        rows = [LabelRow(s(0.1 + i), s(0.9 + i), program, note) for i, note in enumerate((lo, (lo + hi) // 2, hi))]
        audio, labels, info = sampler.render_notes(rows, library, recording_id=str(program))
        assert info["outside_key_range"] == 0, program
        assert all(rms(audio, 0.1 + i, 0.9 + i) > 5e-4 for i in range(3)), program
    ids = ["2082", "2221"]
    sampler.render_corpus(None, os.environ["VPO_LIBRARY"], tmp_path / "vpo", ids=ids, max_seconds=6, seed=0,
                          distractor_probability=1.0, progress=False)
    info = json.loads((tmp_path / "vpo" / "render_info.json").read_text())
    assert info["distractors"]["programs"] == [p for p in DISTRACTOR_PROGRAMS if p in sampler.VPO_DISTRACTORS]
    for rid in ids:
        assert (tmp_path / "vpo" / "train_labels" / f"{rid}.csv").read_text() == HEADER
        tracks = info["recordings"][f"train/{rid}"]["distractors"]["tracks"]
        assert tracks and all(t["program"] in sampler.VPO_DISTRACTORS for t in tracks.values())
        assert rms(sf.read(tmp_path / "vpo" / "train_data" / f"{rid}.wav", dtype="float32")[0], 0, 6) > 0.01
