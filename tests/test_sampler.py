"""Rendering with recorded multi-samples (a DecentSampler library): pitch, timing, loops, envelopes, layers.

The library used here is built in the test folder: synthetic WAV samples (sine, saw, square) and presets with the
quirks of the Virtual Playing Orchestra (backslash paths, ``Samples\\`` for a ``samples/`` folder, repeated
attributes, loop points in the WAV's ``smpl`` chunk).
"""

from __future__ import annotations

import csv
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instrument_classifier.data import sampler
from instrument_classifier.data.render import LabelRow, RenderError, read_label_rows
from instrument_classifier.data.sampler import Layer, Variant, read_preset, read_wav_loop

SR = 44100
C4 = 440.0 * 2 ** ((60 - 69) / 12)
G4 = 440.0 * 2 ** ((67 - 69) / 12)
SINE_DETUNE = 0.25  # the sine sample is recorded a quarter tone sharp; its zone says tuning="-0.25"
SAW_LOOP = (int(0.3 * SR), int(0.9 * SR) - 1)
MUSICNET = Path(__file__).resolve().parents[2] / "shared" / "musicnet"

SUSTAIN_PRESET = r"""<?xml version="1.0" encoding="UTF-8"?>
<DecentSampler minVersion="1.0.0">
  <ui width="812" height="375" width="900" bgImage="Images/background.png">
    <tab name="main">
      <labeled-knob x="445" x="446" label="Attack" type="float" value="0.00001">
        <binding type="amp" level="instrument" position="0" parameter="ENV_ATTACK" />
      </labeled-knob>
    </tab>
  </ui>
  <!-- a comment with a stray < sign -->
  <groups volume="0dB" release="0.25">
    <group attack="0.0" attack="0.5">
      <sample path="Samples\Test\Saw_C4.wav" loNote="0" hiNote="127" rootNote="60" loVel="90" hiVel="127"
              volume="-3dB" volume="0dB"/>
      <sample path="Samples\test\SINE_C4.wav" loNote="0" hiNote="127" rootNote="60" loVel="0" hiVel="89"
              tuning="-0.25"/>
      <effects/>
    </group>
  </groups>
  <effects><effect type="convolution" mix="0.5" irFile="IR/Studio.wav"/></effects>
</DecentSampler>
"""

STACCATO_PRESET = r"""<?xml version="1.0" encoding="UTF-8"?>
<DecentSampler>
  <groups>
    <group release="0.1" decay="1" sustain="0" path="Samples/Test/Square_G4.wav" rootNote="67">
      <sample loNote="0" hiNote="127"/>
    </group>
  </groups>
</DecentSampler>
"""

TEST_MAP = {
    41: (Variant("test strings", sustain=(Layer("Test-sustain.dspreset", (0,)),),
                 staccato=(Layer("Test-staccato.dspreset", (0,)),)),),
    74: (Variant("test flute", sustain=(Layer("Test-sustain.dspreset", (0,)),)),),
}


def s(seconds: float) -> int:
    return int(round(seconds * SR))


def tone(freq: float, seconds: float, harmonics, decay: float = 0.0) -> np.ndarray:
    t = np.arange(s(seconds)) / SR
    x = sum(a * np.sin(2 * np.pi * freq * (k + 1) * t) for k, a in enumerate(harmonics) if freq * (k + 1) < SR / 2)
    x = x * np.exp(-decay * t)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def write_sample(path: Path, audio: np.ndarray, loop=None) -> Path:
    """A 16-bit WAV, with a ``smpl`` chunk holding one loop ``(start, end inclusive)`` if given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SR, subtype="PCM_16")
    if loop is not None:
        data = struct.pack("<9I", 0, 0, int(1e9 / SR), 60, 0, 0, 0, 1, 0) + struct.pack("<6I", 0, 0, *loop, 0, 0)
        content = path.read_bytes() + b"smpl" + struct.pack("<I", len(data)) + data
        path.write_bytes(content[:4] + struct.pack("<I", len(content) - 8) + content[8:])
    return path


@pytest.fixture
def library(tmp_path) -> Path:
    root = tmp_path / "library"
    folder = root / "samples" / "test"  # lower case on disk, "Samples\Test" in the presets
    write_sample(folder / "Saw_C4.wav", tone(C4, 1.0, [1 / k for k in range(1, 30)]), loop=SAW_LOOP)
    write_sample(folder / "sine_c4.wav", tone(C4 * 2 ** (SINE_DETUNE / 12), 1.0, [1.0]))
    write_sample(folder / "Square_G4.wav", tone(G4, 0.4, [1.0, 0, 1 / 3, 0, 1 / 5, 0, 1 / 7], decay=8.0))
    (root / "Test-sustain.dspreset").write_text(SUSTAIN_PRESET)
    (root / "Test-staccato.dspreset").write_text(STACCATO_PRESET)
    return root


def write_labels(root: Path, notes, rid: str = "1", split: str = "train") -> Path:
    path = root / f"{split}_labels" / f"{rid}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["start_time", "end_time", "instrument", "note", "start_beat", "end_beat", "note_value"])
        for start, end, program, pitch in notes:
            w.writerow([start, end, program, pitch, 0.0, 1.0, "Quarter"])
    return root


def render(tmp_path, library, notes, name="out", **options):
    options = {"instruments": TEST_MAP, "progress": False, "velocity_spread": 0, "velocity_jitter": 0,
               "velocity": 40, **options}
    labels = write_labels(tmp_path / f"labels_{name}", notes)
    (wav,) = sampler.render_corpus(labels, library, tmp_path / name, **options)
    audio, rate = sf.read(wav, dtype="float32")
    assert rate == SR and audio.ndim == 1
    rows = read_label_rows(tmp_path / name / "train_labels" / "1.csv")
    info = json.loads((tmp_path / name / "render_info.json").read_text())
    return audio, rows, info


def rms(audio: np.ndarray, start_s: float, end_s: float) -> float:
    seg = audio[s(start_s):s(end_s)].astype(np.float64)
    return float(np.sqrt(np.mean(seg ** 2)))


def peak_hz(audio: np.ndarray, start_s: float, end_s: float) -> float:
    seg = audio[s(start_s):s(end_s)].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), 8 * len(seg)))
    k = int(np.argmax(spectrum))
    a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-30)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * SR / (8 * len(seg))


def level_at(audio: np.ndarray, start_s: float, end_s: float, freq: float) -> float:
    """Amplitude of the partial at ``freq`` in a segment (a single-bin DFT with a Hann window)."""
    seg = audio[s(start_s):s(end_s)].astype(np.float64)
    t = np.arange(len(seg)) / SR
    return float(2 * np.abs(np.sum(seg * np.hanning(len(seg)) * np.exp(-2j * np.pi * freq * t))) / (len(seg) / 2))


def onset(audio: np.ndarray, search_from: int, rel_threshold: float = 1e-3) -> int:
    seg = np.abs(audio[search_from:])
    return search_from + int(np.flatnonzero(seg > rel_threshold * seg.max())[0])


def midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


# --------------------------------------------------------------------------- reading presets


def test_presets_are_read_leniently(library):
    (group,) = read_preset(library / "Test-sustain.dspreset")
    saw, sine = group.zones
    # backslashes, "Samples\Test" for samples/test, "SINE_C4.wav" for sine_c4.wav
    assert saw.path == library / "samples" / "test" / "Saw_C4.wav"
    assert sine.path == library / "samples" / "test" / "sine_c4.wav"
    assert (saw.root, saw.lo_vel, saw.hi_vel, sine.lo_vel, sine.hi_vel) == (60, 90, 127, 0, 89)
    assert saw.volume_db == pytest.approx(-3.0) and sine.volume_db == pytest.approx(0.0)  # first of repeats
    assert saw.attack == 0.0 and saw.release == 0.25  # group's first attack; release from <groups>
    assert sine.tuning == pytest.approx(-SINE_DETUNE)
    assert read_wav_loop(saw.path) == SAW_LOOP and read_wav_loop(sine.path) is None
    (staccato,) = read_preset(library / "Test-staccato.dspreset")
    # path and rootNote given by the group, as in VPO's xylophone
    assert staccato.zones[0].path.name == "Square_G4.wav" and staccato.zones[0].root == 67
    assert staccato.zones[0].sustain == 0.0


@pytest.mark.parametrize("text, message", [
    ("<groups><group><sample path='a.wav' rootNote='60'/></group></groups>", "no <DecentSampler> element"),
    ("<DecentSampler><groups><sample path='a.wav' rootNote='60'/></groups></DecentSampler>",
     "<sample> outside a <group>"),
    ("<DecentSampler><groups><group>\n<sample path='a.wav' rootNote='60'\n</group></groups></DecentSampler>",
     "line 2: malformed tag"),
    ("<DecentSampler><groups><group><sample path='a.wav' rootNote='C4'/></group></groups></DecentSampler>",
     "attribute rootNote='C4' is not a number"),
    ("<DecentSampler><groups><group><sample path='a.wav' rootNote='60'/></groups></DecentSampler>",
     "</groups> before </group>"),
    ("<DecentSampler><ui><tab></DecentSampler>", "unterminated <ui> element"),
    ("<DecentSampler></DecentSampler>", "no <groups> element"),
])
def test_malformed_presets_are_errors_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.dspreset"
    path.write_text(text)
    with pytest.raises(RenderError) as excinfo:
        read_preset(path)
    assert str(path) in str(excinfo.value) and message in str(excinfo.value)


def test_missing_or_unreadable_sample_is_an_error_naming_preset_and_sample(tmp_path, library):
    notes = [(s(0.1), s(0.6), 41, 60)]
    preset = library / "Test-sustain.dspreset"
    preset.write_text(SUSTAIN_PRESET.replace("SINE_C4.wav", "Missing_C4.wav"))
    with pytest.raises(RenderError) as excinfo:
        render(tmp_path, library, notes)
    assert str(preset) in str(excinfo.value) and "Missing_C4.wav" in str(excinfo.value)
    assert not (tmp_path / "out" / "train_data").exists()

    preset.write_text(SUSTAIN_PRESET)
    (library / "samples" / "test" / "sine_c4.wav").write_bytes(b"RIFF----WAVEjunk")
    with pytest.raises(RenderError) as excinfo:
        render(tmp_path, library, notes, name="out2")
    assert str(preset) in str(excinfo.value) and "sine_c4.wav" in str(excinfo.value)
    assert "unreadable audio" in str(excinfo.value)


def test_library_folder_and_presets_are_checked(tmp_path, library):
    labels = write_labels(tmp_path / "labels", [(0, s(0.5), 41, 60)])
    with pytest.raises(RenderError, match="sample library folder not found"):
        sampler.render_corpus(labels, tmp_path / "nowhere", tmp_path / "out", instruments=TEST_MAP, progress=False)
    with pytest.raises(RenderError, match="none of the presets of the instrument map"):
        sampler.render_corpus(labels, tmp_path, tmp_path / "out", instruments=TEST_MAP, progress=False)
    broken = {41: (Variant("x", sustain=(Layer("Test-sustain.dspreset", (3,)),)),)}
    with pytest.raises(RenderError, match=r"Test-sustain\.dspreset: no group 3"):
        sampler.render_corpus(labels, library, tmp_path / "out", instruments=broken, progress=False)


# --------------------------------------------------------------------------- pitch, timing, length


@pytest.mark.parametrize("velocity", [40, 120])  # the detuned sine zone, the saw zone
def test_pitch_of_notes_away_from_the_root(tmp_path, library, velocity):
    pitches = [48, 55, 64, 72, 79]
    notes = [(s(0.1 + 1.5 * i), s(1.1 + 1.5 * i), 41, p) for i, p in enumerate(pitches)]
    audio, _, _ = render(tmp_path, library, notes, velocity=velocity)
    for i, pitch in enumerate(pitches):
        found = peak_hz(audio, 0.3 + 1.5 * i, 1.0 + 1.5 * i)
        # the sine zone is tuned by -0.25 semitones: without it every note would be a quarter tone sharp
        assert found == pytest.approx(midi_hz(pitch), rel=0.003), (pitch, found)


def test_onsets_match_the_written_labels(tmp_path, library):
    starts = [s(0.5) + 17, s(1.9) + 3, s(3.71) + 5, s(5.0) + 63]
    notes = [(start, start + s(0.5), 41, pitch) for start, pitch in zip(starts, (60, 67, 53, 72))]
    audio, rows, _ = render(tmp_path, library, notes)
    assert [(r.start, r.end, r.instrument, r.note) for r in rows] == [tuple(n) for n in notes]  # not moved
    for row in rows:
        detected = onset(audio[: row.start + s(0.3)], row.start - s(0.4))
        assert 0 <= detected - row.start <= s(0.003), (row.start, detected)
    assert np.abs(audio).max() == pytest.approx(10 ** (-1 / 20), abs=2e-3)


@pytest.mark.parametrize("velocity", [40, 120])  # sine: no loop points (crossfaded auto loop); saw: smpl loop
def test_a_long_note_lasts_as_long_as_its_label(tmp_path, library, velocity):
    audio, _, info = render(tmp_path, library, [(s(0.1), s(10.1), 41, 62)], velocity=velocity)
    first = rms(audio, 0.3, 0.8)
    for second in range(1, 10):
        assert rms(audio, second + 0.1, second + 0.6) == pytest.approx(first, rel=0.3), second
    assert peak_hz(audio, 9.0, 10.0) == pytest.approx(midi_hz(62), rel=0.003)
    assert rms(audio, 10.1, 10.15) > 0.05 * first  # release tail (group release 0.25 s) ...
    assert rms(audio, 10.5, 11.0) < 1e-4  # ... and then silence
    assert info["recordings"]["train/1"]["looped_notes"] == 1


def test_release_tail_follows_the_group_release(tmp_path, library):
    audio, _, _ = render(tmp_path, library, [(s(0.2), s(1.2), 41, 60)])
    held = rms(audio, 0.8, 1.2)
    tail = [rms(audio, 1.2 + 0.05 * i, 1.25 + 0.05 * i) for i in range(5)]
    assert held > tail[0] > tail[2] > tail[4] > 0  # decays over the 0.25-s release
    assert tail[0] > 0.2 * held
    assert rms(audio, 1.46, 2.1) < 1e-4 * held  # gone after 0.25 s


def test_legato_hands_over_and_other_voices_keep_sounding(tmp_path, library):
    notes = [
        (s(0.2), s(1.2), 41, 60),  # handed over to the next note, which starts 50 ms before its end
        (s(1.15), s(2.2), 41, 67),
        (s(2.2), s(3.0), 41, 64),  # abuts the previous one: handed over as well
        (s(4.0), s(5.5), 74, 60),  # another instrument
        (s(4.5), s(5.5), 74, 72),  # overlaps by 1 s: a second voice, not legato
    ]
    audio, rows, info = render(tmp_path, library, notes)
    assert [(r.start, r.end) for r in rows] == [(a, b) for a, b, _, _ in notes]  # labels unchanged
    recording = info["recordings"]["train/1"]
    assert recording["legato_handovers"] == 2
    assert level_at(audio, 1.22, 1.4, midi_hz(60)) < 1e-3 * level_at(audio, 0.8, 1.1, midi_hz(60))
    assert level_at(audio, 2.27, 2.45, midi_hz(67)) < 1e-3 * level_at(audio, 1.5, 2.1, midi_hz(67))
    assert level_at(audio, 4.8, 5.4, midi_hz(60)) > 0.5 * level_at(audio, 4.1, 4.45, midi_hz(60))

    # without the hand-over the first note rings on through its 0.25-s release
    notes[1] = (s(1.4), s(2.2), 41, 67)
    audio, _, _ = render(tmp_path, library, notes, name="apart")
    assert level_at(audio, 1.22, 1.35, midi_hz(60)) > 1e-2 * level_at(audio, 0.8, 1.1, midi_hz(60))


# --------------------------------------------------------------------------- layers, articulations, seeds


def harmonic_ratio(audio: np.ndarray, start_s: float, end_s: float, f0: float, k: int) -> float:
    return level_at(audio, start_s, end_s, k * f0) / level_at(audio, start_s, end_s, f0)


def test_velocity_selects_the_layer(tmp_path, library):
    notes = [(s(0.1), s(1.1), 41, 60)]
    soft, _, soft_info = render(tmp_path, library, notes, velocity=40, name="soft")
    loud, _, loud_info = render(tmp_path, library, notes, velocity=120, name="loud")
    assert harmonic_ratio(soft, 0.3, 1.0, C4, 2) < 0.01  # the sine zone (hiVel 89)
    assert harmonic_ratio(loud, 0.3, 1.0, C4, 2) > 0.3  # the saw zone (loVel 90)
    assert soft_info["recordings"]["train/1"]["base_velocity"] == 40
    assert loud_info["recordings"]["train/1"]["base_velocity"] == 120


def test_short_detached_and_repeated_notes_are_played_staccato(tmp_path, library):
    notes = [
        (s(0.2), s(0.32), 41, 60),  # short and detached: staccato (square wave, odd harmonics)
        (s(1.2), s(2.2), 41, 60),  # long: sustain (sine at velocity 40)
        (s(3.0), s(3.25), 41, 64), (s(3.3), s(3.55), 41, 64),  # repeated short notes of one pitch
        (s(4.5), s(4.62), 74, 60),  # short, but this instrument has no staccato samples
    ]
    audio, rows, info = render(tmp_path, library, notes)
    assert len(rows) == 5
    assert harmonic_ratio(audio, 0.2, 0.32, C4, 3) > 0.15  # square: strong third harmonic
    assert harmonic_ratio(audio, 1.4, 2.1, C4, 3) < 0.01
    assert harmonic_ratio(audio, 3.0, 3.25, midi_hz(64), 3) > 0.15
    assert harmonic_ratio(audio, 4.5, 4.62, C4, 3) < 0.02
    assert info["recordings"]["train/1"]["articulations"] == {"sustain": 2, "staccato": 3, "accent": 0}


def test_choices_are_seeded_and_independent_of_order_and_workers(tmp_path, library):
    labels = tmp_path / "labels"
    notes = [(s(0.1 + 0.4 * i), s(0.45 + 0.4 * i), 41, 55 + 2 * i) for i in range(8)]
    write_labels(labels, notes, rid="8")
    write_labels(labels, [(0, s(1.0), 74, 62)], rid="7")  # rendered before 8 by the same worker
    common = {"instruments": TEST_MAP, "progress": False}
    sampler.render_corpus(labels, library, tmp_path / "a", seed=3, **common)
    sampler.render_corpus(labels, library, tmp_path / "b", seed=3, ids=["8"], **common)
    sampler.render_corpus(labels, library, tmp_path / "c", seed=4, ids=["8"], **common)
    sampler.render_corpus(labels, library, tmp_path / "d", seed=3, num_proc=2, **common)
    a, b, c, d = (sf.read(tmp_path / x / "train_data" / "8.wav")[0] for x in "abcd")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, d)
    assert not np.array_equal(a, c)  # other velocities


def test_programs_the_library_lacks_leave_audio_and_labels(tmp_path, library):
    labels = write_labels(tmp_path / "labels", [(s(0.2), s(1.0), 41, 72), (s(1.5), s(2.5), 1, 48),
                                                (s(1.6), s(2.4), 1, 52), (s(2.0), s(2.6), 7, 60)], rid="3")
    write_labels(labels, [(s(0.1), s(1.0), 1, 60)], rid="4")  # solo piano: nothing to render
    written = sampler.render_corpus(labels, library, tmp_path / "out", instruments=TEST_MAP, progress=False)
    assert [p.stem for p in written] == ["3"]
    rows = read_label_rows(tmp_path / "out" / "train_labels" / "3.csv")
    assert [(r.instrument, r.note) for r in rows] == [(41, 72)]
    audio = sf.read(written[0], dtype="float32")[0]
    assert rms(audio, 1.6, 2.6) < 1e-4 < rms(audio, 0.4, 0.9)
    info = json.loads((tmp_path / "out" / "render_info.json").read_text())
    assert info["recordings"]["train/3"]["left_out_notes"] == {"1": 2, "7": 1}
    assert info["renderer"] == "sampler" and info["library"] == str(library.resolve())
    with pytest.raises(RenderError, match="only programs the sample library lacks"):
        sampler.render_corpus(labels, library, tmp_path / "none", ids=["4"], instruments=TEST_MAP, progress=False)
    # --omit-programs leaves out instruments the library has, too
    sampler.render_corpus(labels, library, tmp_path / "omit", ids=["3"], omit_programs=(41,),
                          instruments={**TEST_MAP, 1: TEST_MAP[74]}, progress=False)
    assert {r.instrument for r in read_label_rows(tmp_path / "omit" / "train_labels" / "3.csv")} == {1}


# --------------------------------------------------------------------------- command line


def vpo_shaped_library(root: Path, library: Path) -> Path:
    """A library with VPO's woodwinds preset name, whose flute group (4) plays the test samples."""
    groups = "\n".join(f'<group><sample path="Samples\\Test\\Saw_C4.wav" rootNote="{60 + i}"/></group>'
                       for i in range(4))
    text = SUSTAIN_PRESET.replace("  <groups volume=\"0dB\" release=\"0.25\">\n",
                                  f"  <groups volume=\"0dB\" release=\"0.25\">\n{groups}\n")
    root.mkdir(parents=True)
    (root / "all-woodwinds-SEC-sustain.dspreset").write_text(text)
    os.symlink(library / "samples", root / "samples")
    return root


def test_cli_synth_with_a_sampler_library(tmp_path, library, capsys):
    from instrument_classifier.cli import main

    vpo = vpo_shaped_library(tmp_path / "vpo", library)
    labels = write_labels(tmp_path / "labels", [(s(0.1), s(0.9), 74, 72), (s(1.0), s(1.6), 1, 60)], rid="5")
    out = tmp_path / "out"
    assert main(["synth", "--sampler-library", str(vpo), "--labels", str(labels), "--out", str(out),
                 "--max-seconds", "2", "--seed", "1", "--velocity-jitter", "0"]) == 0
    assert "rendered 1 recordings" in capsys.readouterr().out
    assert sf.info(out / "train_data" / "5.wav").duration == pytest.approx(1.9)  # last note's end + 1 s tail
    assert [(r.instrument, r.note) for r in read_label_rows(out / "train_labels" / "5.csv")] == [(74, 72)]
    info = json.loads((out / "render_info.json").read_text())
    assert info["instrument_map"] == "vpo" and info["library_commit"] is None  # not a git checkout
    assert info["recordings"]["train/5"]["variants"] == {"74": "flute"}
    assert info["recordings"]["train/5"]["left_out_notes"] == {"1": 1}
    with open(out / "musicnet_metadata.csv") as f:
        assert [r["id"] for r in csv.DictReader(f)] == ["5"]

    with pytest.raises(SystemExit) as excinfo:  # one sample library at a time
        main(["synth", "--sampler-library", str(vpo), "--soundfont", "x.sf2", "--out", str(out)])
    assert excinfo.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert main(["synth", "--sampler-library", str(tmp_path / "nope"), "--labels", str(labels),
                 "--out", str(tmp_path / "o2")]) == 2
    assert "sample library folder not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- real score, real library


@pytest.mark.skipif(not (MUSICNET / "train_labels" / "1788.csv").is_file(),
                    reason=f"MusicNet label CSVs not at {MUSICNET}")
def test_a_real_string_quartet_score(tmp_path, library):
    """Mozart's quartet K. 465 (MusicNet 1788), 20 s from 120 s on, every instrument played by the test samples:
    the labels are the source rows of the window, the audio sounds where they say."""
    from instrument_classifier.data.render import clip_rows

    everything = {p: TEST_MAP[41] for p in (1, 41, 42, 43, 44)}
    sampler.render_corpus(MUSICNET, library, tmp_path / "out", ids=["1788"], start_seconds=120, max_seconds=20,
                          instruments=everything, progress=False)
    rows = read_label_rows(tmp_path / "out" / "train_labels" / "1788.csv")
    source = clip_rows(read_label_rows(MUSICNET / "train_labels" / "1788.csv"), s(120), s(140))
    assert [(r.start, r.end, r.instrument, r.note) for r in rows] == \
        sorted((r.start, r.end, r.instrument, r.note) for r in source)
    audio = sf.read(tmp_path / "out" / "train_data" / "1788.wav", dtype="float32")[0]
    assert len(audio) == s(20)
    active = np.zeros(len(audio), bool)
    for r in rows:
        active[r.start:r.end] = True
    frames = len(audio) // 4410
    sounding = [active[i * 4410:(i + 1) * 4410].any() for i in range(frames)]
    level = [rms(audio, i * 0.1, (i + 1) * 0.1) for i in range(frames)]
    assert min(lv for lv, on in zip(level, sounding) if on) > 1e-3
    recording = json.loads((tmp_path / "out" / "render_info.json").read_text())["recordings"]["train/1788"]
    assert recording["articulations"]["staccato"] > 0 and recording["legato_handovers"] > 0


@pytest.mark.skipif(not os.environ.get("VPO_LIBRARY"),
                    reason="set VPO_LIBRARY to a clone of github.com/eodowd/VirtualPlayingOrchestra")
def test_every_vpo_instrument_loads_and_plays(tmp_path):
    library = sampler.SampleLibrary(os.environ["VPO_LIBRARY"])
    for program, variants in sampler.VPO_INSTRUMENTS.items():
        for variant in variants:
            for articulation in sampler.ARTICULATIONS:
                for layer in getattr(variant, articulation):
                    assert np.isfinite(library.layer_gain_db(layer, -20.0)), (program, variant.name, layer)
        rows = [LabelRow(s(0.1 + 0.3 * i), s(0.35 + 0.3 * i), program, 60 + i) for i in range(4)]
        audio, labels, info = sampler.render_notes(rows, library, recording_id=str(program))
        assert len(labels) == 4 and rms(audio, 0.1, 1.2) > 1e-3, program


def test_ensemble_balance_changes_each_instruments_level_and_nothing_else(tmp_path, library):
    # two instruments, one after the other, on the same preset: their level ratio is the drawn balance
    notes = [(s(0.1), s(1.1), 41, 62), (s(1.5), s(2.5), 74, 62)]
    plain, rows, _ = render(tmp_path, library, notes, name="plain")
    ratios = []
    for seed in range(4):
        balanced, balanced_rows, info = render(tmp_path, library, notes, name=f"balanced{seed}", seed=seed,
                                               instrument_balance_db=6.0)
        assert [(r.start, r.end, r.instrument) for r in balanced_rows] == [(r.start, r.end, r.instrument)
                                                                            for r in rows]
        assert info["settings"]["instrument_balance_db"] == 6.0
        ratio_db = 20 * np.log10(rms(balanced, 0.3, 1.0) / rms(balanced, 1.7, 2.4))
        assert abs(ratio_db) <= 12.0 + 0.1  # two gains of at most +-6 dB each
        ratios.append(ratio_db)
    assert 20 * np.log10(rms(plain, 0.3, 1.0) / rms(plain, 1.7, 2.4)) == pytest.approx(0.0, abs=0.1)
    assert max(ratios) - min(ratios) > 1.0  # the balance is drawn per recording and seed
    with pytest.raises(Exception, match="instrument balance must be >= 0 dB"):
        render(tmp_path, library, notes, name="negative", instrument_balance_db=-1.0)
