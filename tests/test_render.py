"""Rendering MusicNet label CSVs with FluidSynth: audio where the labels say, and nowhere else."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instrument_classifier.data import render
from instrument_classifier.data.render import (
    BLOCK_SIZE,
    DEFAULT_SOUNDFONT,
    LabelRow,
    RenderError,
    default_labels_dir,
    read_label_rows,
    render_corpus,
)
from instrument_classifier.data.taxonomy import MUSICNET_PROGRAMS

SR = 44100
MUSICNET_TEST_IDS = {"1759", "1819", "2106", "2191", "2298", "2303", "2382", "2416", "2556", "2628"}
pytestmark = pytest.mark.skipif(not DEFAULT_SOUNDFONT.is_file(),
                                reason="FluidR3 GM not installed (apt fluid-soundfont-gm)")


def write_csv(path: Path, notes, header=("start_time", "end_time", "instrument", "note", "start_beat", "end_beat",
                                         "note_value")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for note in notes:
            w.writerow(list(note) + [0.0, 1.0, "Quarter"][: len(header) - len(note)])
    return path


def labels_folder(tmp_path: Path, notes, rid="1", split="train") -> Path:
    root = tmp_path / "labels"
    write_csv(root / f"{split}_labels" / f"{rid}.csv", notes)
    return root


def s(seconds: float) -> int:
    return int(round(seconds * SR))


def snap(sample: int) -> int:
    """Nearest point of FluidSynth's 64-sample block grid."""
    return int(round(sample / BLOCK_SIZE)) * BLOCK_SIZE


def frame_rms(audio: np.ndarray, start_s: float, end_s: float) -> float:
    seg = audio[s(start_s):s(end_s)]
    return float(np.sqrt(np.mean(seg.astype(np.float64) ** 2)))


def onset(audio: np.ndarray, search_from: int, rel_threshold: float = 1e-3) -> int:
    """First sample after ``search_from`` above -60 dB of the peak that follows it."""
    seg = np.abs(audio[search_from:])
    return search_from + int(np.flatnonzero(seg > rel_threshold * seg.max())[0])


def test_audio_sounds_where_notes_are_and_is_silent_in_gaps(tmp_path):
    notes = [
        (s(0.2), s(1.2), 41, 67),  # violin
        (s(2.5), s(3.5), 74, 72),  # flute
        (s(2.5), s(3.5), 43, 48),  # cello, same time
        (s(5.0), s(5.6), 1, 60),  # piano
    ]
    root = labels_folder(tmp_path, notes)
    (wav,) = render_corpus(root, None, tmp_path / "out", progress=False)
    audio, sr = sf.read(wav, dtype="float32")
    assert sr == SR and audio.ndim == 1
    assert len(audio) == snap(s(5.6)) + SR  # last (grid-aligned) note-off plus the 1 s release tail
    sounding = [frame_rms(audio, a, b) for a, b in [(0.3, 1.1), (2.6, 3.4), (5.05, 5.5)]]
    # gaps start 0.6 s after a note-off: release tails of these presets fade within ~0.5 s
    gaps = [frame_rms(audio, a, b) for a, b in [(0.0, 0.19), (1.8, 2.45), (4.1, 4.95)]]
    assert min(sounding) > 1000 * max(gaps + [1e-9]), (sounding, gaps)  # > 60 dB apart
    assert np.abs(audio).max() == pytest.approx(10 ** (-1 / 20), abs=2e-3)  # peak-normalised to -1 dBFS, no clipping


@pytest.mark.parametrize("program", [1, 41, 74])
def test_onsets_match_labels_to_the_sample_grid_even_late_in_the_excerpt(tmp_path, program):
    starts = [s(0.5), s(5.3) + 17, s(9.71) + 3]  # off the 64-sample grid on purpose; late ones catch drift
    notes = [(start, start + s(0.4), program, 64) for start in starts]
    root = labels_folder(tmp_path, notes)
    (wav,) = render_corpus(root, None, tmp_path / "out", progress=False)
    audio, _ = sf.read(wav, dtype="float32")
    rendered = read_label_rows(tmp_path / "out" / "train_labels" / "1.csv")
    assert [r.start for r in rendered] == [snap(x) for x in starts]
    for row, original in zip(rendered, starts):
        assert abs(row.start - original) <= BLOCK_SIZE // 2  # labels moved at most 0.73 ms
        assert row.start % BLOCK_SIZE == 0 and row.end % BLOCK_SIZE == 0
        detected = onset(audio[: row.start + s(0.3)], row.start - s(0.3))
        assert 0 <= detected - row.start <= s(0.003), (program, row.start, detected)  # audio starts at the label


def test_excerpt_window_clips_and_shifts_labels(tmp_path):
    notes = [
        (s(0.0), s(0.5), 1, 60),  # before the window: dropped
        (s(0.8), s(1.6), 41, 70),  # starts before, ends inside: starts at 0
        (s(1.5), s(2.0), 42, 62),  # inside
        (s(2.5), s(4.0), 43, 50),  # ends after the window: cut at its end
        (s(3.2), s(3.2), 43, 52),  # zero length: skipped
        (s(3.5), s(4.0), 44, 40),  # after the window: dropped
    ]
    root = labels_folder(tmp_path, notes, rid="42")
    render_corpus(root, None, tmp_path / "out", start_seconds=1.0, max_seconds=2.0, progress=False)
    audio, _ = sf.read(tmp_path / "out" / "train_data" / "42.wav", dtype="float32")
    assert len(audio) == s(2.0)
    rows = read_label_rows(tmp_path / "out" / "train_labels" / "42.csv")
    assert [(r.instrument, r.note) for r in rows] == [(41, 70), (42, 62), (43, 50)]
    window = s(1.0)
    assert [(r.start, r.end) for r in rows] == [
        (0, snap(s(1.6) - window)),
        (snap(s(1.5) - window), snap(s(2.0) - window)),
        (snap(s(2.5) - window), snap(s(2.0))),  # cut at the end of the window
    ]
    with open(tmp_path / "out" / "train_labels" / "42.csv") as f:
        assert next(csv.reader(f)) == list(render.LABEL_COLUMNS)
    assert frame_rms(audio, 0.0, 0.5) > 0.01  # the violin carried over from before the window sounds from 0


def test_overlapping_unison_notes_both_sound(tmp_path):
    # two violins on the same pitch: 0-2 s and 1-3 s. On one MIDI channel the first note-off (2 s) would
    # silence the second note; on separate channels the second keeps sounding until 3 s.
    root = labels_folder(tmp_path, [(0, s(2.0), 41, 69), (s(1.0), s(3.0), 41, 69), (s(4.0), s(4.5), 41, 50)])
    render_corpus(root, None, tmp_path / "out", progress=False)
    audio, _ = sf.read(tmp_path / "out" / "train_data" / "1.wav", dtype="float32")
    assert frame_rms(audio, 2.2, 2.9) > 0.3 * frame_rms(audio, 0.2, 0.9)
    assert frame_rms(audio, 3.6, 3.95) < 1e-3 * frame_rms(audio, 2.2, 2.9)
    info = json.loads((tmp_path / "out" / "render_info.json").read_text())["recordings"]["train/1"]
    assert info["extra_channels"] == 1 and info["notes"] == 3 and info["trimmed_overlaps"] == 0
    assert len(read_label_rows(tmp_path / "out" / "train_labels" / "1.csv")) == 3


def test_velocity_jitter_is_seeded_and_results_do_not_depend_on_rendering_order(tmp_path):
    notes = [(s(0.1 + 0.3 * i), s(0.35 + 0.3 * i), 1, 60 + i) for i in range(6)]
    root = labels_folder(tmp_path, notes, rid="8")
    write_csv(root / "train_labels" / "7.csv", [(0, s(1.0), 1, 62)])  # rendered before 8 by the same worker
    out_a, out_b, out_c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    render_corpus(root, None, out_a, seed=3, progress=False)
    render_corpus(root, None, out_b, seed=3, ids=["8"], progress=False)  # 8 alone
    render_corpus(root, None, out_c, seed=4, ids=["8"], progress=False)
    a = sf.read(out_a / "train_data" / "8.wav")[0]
    b = sf.read(out_b / "train_data" / "8.wav")[0]
    c = sf.read(out_c / "train_data" / "8.wav")[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)  # another seed, other velocities
    assert sorted(p.name for p in (out_b / "train_data").iterdir()) == ["8.wav"]


def test_parallel_rendering_equals_serial(tmp_path):
    root = tmp_path / "labels"
    for rid in ("11", "12", "13"):
        write_csv(root / "train_labels" / f"{rid}.csv",
                  [(s(0.1), s(0.9), 72, 50 + int(rid)), (s(0.5), s(1.5), 71, 40)])
    serial = render_corpus(root, None, tmp_path / "serial", progress=False)
    parallel = render_corpus(root, None, tmp_path / "parallel", num_proc=2, progress=False)
    assert [p.name for p in serial] == [p.name for p in parallel] == ["11.wav", "12.wav", "13.wav"]
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(sf.read(a)[0], sf.read(b)[0])


def test_metadata_rows_for_rendered_ids_and_merging(tmp_path):
    root = labels_folder(tmp_path, [(0, s(0.5), 1, 60)], rid="1759", split="test")
    write_csv(root / "train_labels" / "2202.csv", [(0, s(0.5), 74, 72)])
    (root / "musicnet_metadata.csv").write_text(
        'id,composer,composition,movement,ensemble,source,transcriber,catalog_name,seconds\n'
        '1759,"Schubert","Sonata","1. Allegro","Solo Piano","x","y","D1",194\n'
        '9999,"Nobody","Other","1","Solo","x","y","Z",10\n'
    )
    out = tmp_path / "out"
    render_corpus(root, None, out, split="test", progress=False)
    render_corpus(root, None, out, split="train", progress=False)
    with open(out / "musicnet_metadata.csv") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"1759", "2202"}
    assert rows["1759"]["composer"] == "Schubert" and rows["1759"]["seconds"] == "2"  # 0.5 s + 1 s tail, rounded
    assert rows["2202"]["composer"] == ""  # no source metadata: id and seconds only
    assert sorted(p.name for p in out.rglob("*.wav")) == ["1759.wav", "2202.wav"]
    assert not list(out.rglob("*.tmp"))


def test_layout_loads_with_the_musicnet_reader(tmp_path):
    from instrument_classifier.data import musicnet
    root = labels_folder(tmp_path, [(s(0.2), s(0.7), 1, 60), (s(0.4), s(1.0), 41, 72)], rid="5")
    write_csv(root / "test_labels" / "6.csv", [(0, s(0.5), 72, 60)])
    out = tmp_path / "out"
    render_corpus(root, None, out, progress=False)
    recordings = musicnet.list_recordings(out)
    assert [(r.split, r.id) for r in recordings] == [("train", "5"), ("test", "6")]
    notes = musicnet.read_labels(recordings[0].labels_path)
    rows = read_label_rows(recordings[0].labels_path)
    assert list(notes["start"]) == [r.start for r in rows] and list(notes["instrument"]) == [1, 41]


@pytest.mark.parametrize(
    "content, message",
    [
        ("start_time,end_time,instrument,note,start_beat,end_beat,note_value\n0,100,1,60,0,1,Q\nabc,200,1,60,0,1,Q\n",
         "row 3: start_time is not a number"),
        ("start_time,end_time,instrument,note,start_beat,end_beat,note_value\n500,100,1,60,0,1,Q\n",
         "row 2: end_time 100 is before start_time 500"),
        ("start_time,end_time,instrument,note,start_beat,end_beat,note_value\n0,100,1,60,0,1,Q\n0,100,0,60,0,1,Q\n",
         "row 3: instrument 0 is not a General MIDI program"),
        ("start_time,end_time,instrument,note,start_beat,end_beat,note_value\n0,100,130,60,0,1,Q\n",
         "row 2: instrument 130 is not a General MIDI program"),
        ("start_time,end_time,instrument,note,start_beat,end_beat,note_value\n0,100,1,200,0,1,Q\n",
         "row 2: note 200 is not a MIDI pitch"),
        ("start_time,end_time,program,note\n0,100,1,60\n", "row 1: missing column(s) instrument"),
        ("", "empty file"),
    ],
)
def test_bad_label_csv_names_file_and_row(tmp_path, content, message):
    root = tmp_path / "labels"
    (root / "train_labels").mkdir(parents=True)
    bad = root / "train_labels" / "3.csv"
    bad.write_text(content)
    with pytest.raises(RenderError) as excinfo:
        render_corpus(root, None, tmp_path / "out", progress=False)
    assert str(bad) in str(excinfo.value) and message in str(excinfo.value)
    assert not (tmp_path / "out").exists()  # validated before anything is written


def test_bom_and_extra_columns_are_tolerated(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_text("\ufeffstart_time,end_time,instrument,note,start_beat,end_beat,note_value,extra\n"
                    "10,20,41,60,1.0,0.5,Eighth,x\n", encoding="utf-8")
    assert read_label_rows(path) == [LabelRow(10, 20, 41, 60, "1.0", "0.5", "Eighth", 2)]


def test_missing_soundfont_and_missing_ids_are_clear_errors(tmp_path, monkeypatch, capsys):
    root = labels_folder(tmp_path, [(0, 100, 1, 60)])
    with pytest.raises(RenderError, match=r"nope\.sf2: sample library \(SoundFont\) not found"):
        render_corpus(root, tmp_path / "nope.sf2", tmp_path / "out", progress=False)
    monkeypatch.setattr(render, "DEFAULT_SOUNDFONT", tmp_path / "FluidR3_GM.sf2")
    with pytest.raises(RenderError, match="apt-get install fluid-soundfont-gm"):
        render_corpus(root, None, tmp_path / "out", progress=False)
    with pytest.raises(RenderError, match="no label CSV for id"):
        render_corpus(root, DEFAULT_SOUNDFONT, tmp_path / "out", ids=["404"], progress=False)
    # the command line reports it without a traceback
    import argparse

    parser = argparse.ArgumentParser()
    render.add_synth_arguments(parser)
    code = render.run_synth(parser.parse_args(["--labels", str(root), "--soundfont", str(tmp_path / "x.sf2"),
                                               "--out", str(tmp_path / "out")]))
    assert code == 2 and "x.sf2: sample library (SoundFont) not found" in capsys.readouterr().err


def test_cli_renders_shipped_excerpts_by_id_and_window(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    render.add_synth_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "out"), "--ids", "2202,2298", "--max-seconds", "3",
                              "--velocity-jitter", "0"])
    assert render.run_synth(args) == 0
    assert "rendered 2 recordings" in capsys.readouterr().out
    assert sf.info(tmp_path / "out" / "train_data" / "2202.wav").duration == pytest.approx(3.0)
    assert sf.info(tmp_path / "out" / "test_data" / "2298.wav").samplerate == SR
    rows = read_label_rows(tmp_path / "out" / "train_labels" / "2202.csv")
    assert rows and all(r.instrument == 74 and r.end <= s(3.0) for r in rows)


# --------------------------------------------------------------------------- the shipped excerpts


def _excerpt_rows():
    root = default_labels_dir()
    return {(split, p.stem): read_label_rows(p) for split in ("train", "test")
            for p in sorted((root / f"{split}_labels").glob("*.csv"))}


def test_shipped_excerpts_constraints():
    root = default_labels_dir()
    size = sum(p.stat().st_size for p in root.rglob("*.csv"))
    assert size <= 2_000_000
    rows = _excerpt_rows()
    train_ids = {rid for split, rid in rows if split == "train"}
    test_ids = {rid for split, rid in rows if split == "test"}
    assert len(train_ids) >= 12 and len(test_ids) >= 4 and not train_ids & test_ids
    # test excerpts come from MusicNet's test split (these 10 recordings), train excerpts never do
    assert test_ids <= MUSICNET_TEST_IDS and not train_ids & MUSICNET_TEST_IDS
    programs = {split: set() for split in ("train", "test")}
    seconds = 0.0
    for (split, _), notes in rows.items():
        assert notes, "empty excerpt"
        programs[split] |= {r.instrument for r in notes}
        seconds += max(r.end for r in notes) / SR
        assert all(0 <= r.start < r.end <= s(40) for r in notes)
    assert programs["train"] == set(MUSICNET_PROGRAMS)  # all 11 instruments to learn
    assert programs["test"] == {1, 41, 42, 43, 61, 71, 72}  # every instrument MusicNet's test split has
    assert 15 * 60 <= seconds <= 20 * 60  # `make run` budget
    with open(root / "musicnet_metadata.csv") as f:
        meta_ids = {r["id"] for r in csv.DictReader(f)}
    assert meta_ids == train_ids | test_ids


def test_excerpt_selection_is_reproducible(tmp_path):
    source = Path(__file__).resolve().parents[2] / "shared" / "musicnet"  # ../shared beside the checkout
    if not source.is_dir():
        pytest.skip(f"{source} (the real MusicNet label CSVs, ../shared/musicnet) not here")
    assert (source / "train_labels").is_dir(), (
        f"MusicNet label CSVs not found at {source}: the development data belongs in ../shared/musicnet")
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_excerpts", default_labels_dir() / "make_excerpts.py")
    make_excerpts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_excerpts)
    assert make_excerpts.main(["--musicnet", str(source), "--out", str(tmp_path)]) == 0
    shipped = default_labels_dir()
    for path in sorted(shipped.rglob("*.csv")):
        regenerated = tmp_path / path.relative_to(shipped)
        assert regenerated.read_text() == path.read_text(), path
    assert len(list(tmp_path.rglob("*.csv"))) == len(list(shipped.rglob("*.csv")))


def test_rendered_corpus_fixture(rendered_corpus):
    wavs = sorted(p.relative_to(rendered_corpus).as_posix() for p in rendered_corpus.rglob("*.wav"))
    assert wavs == ["test_data/2106.wav", "test_data/2416.wav", "test_data/2628.wav", "train_data/1727.wav",
                    "train_data/2082.wav", "train_data/2127.wav", "train_data/2221.wav", "train_data/2285.wav"]
    programs = set()
    for csv_path in (rendered_corpus / "train_labels").glob("*.csv"):
        programs |= {r.instrument for r in read_label_rows(csv_path)}
        assert sf.info(rendered_corpus / "train_data" / f"{csv_path.stem}.wav").duration <= 10.0
    assert programs == set(MUSICNET_PROGRAMS)


def _band_db(audio: np.ndarray, start_s: float, end_s: float) -> tuple:
    """Long-term spectrum (dB) of a segment, and the bins worth comparing (100 Hz .. 8 kHz, within 40 dB)."""
    from scipy import signal

    f, pxx = signal.welch(audio[s(start_s):s(end_s)].astype(np.float64), SR, nperseg=4096)
    db = 10 * np.log10(pxx + 1e-20)
    keep = (f > 100) & (f < 8000) & (db > db.max() - 40)
    return db, keep


def test_instrument_eq_gives_each_instrument_its_own_smooth_timbre_change(tmp_path):
    """--instrument-eq-db: every instrument is filtered by its own random curve (a mix-level EQ would move both
    instruments' spectra alike), within the dB bound, without moving onsets or labels; seeded."""
    notes = [(s(0.2), s(1.4), 41, 67), (s(0.3), s(1.2), 41, 74),   # violin
             (s(2.2), s(3.4), 74, 72), (s(2.3), s(3.2), 74, 79)]   # flute, later
    root = labels_folder(tmp_path, notes, rid="5")
    plain, = render_corpus(root, None, tmp_path / "plain", seed=2, progress=False)
    eq, = render_corpus(root, None, tmp_path / "eq", seed=2, instrument_eq_db=10.0, progress=False)
    again, = render_corpus(root, None, tmp_path / "again", seed=2, instrument_eq_db=10.0, progress=False)
    a, b = sf.read(plain, dtype="float32")[0], sf.read(eq, dtype="float32")[0]
    np.testing.assert_array_equal(b, sf.read(again, dtype="float32")[0])
    assert len(a) == len(b) and not np.allclose(a, b, atol=1e-3)
    assert read_label_rows(tmp_path / "plain" / "train_labels" / "5.csv") == \
        read_label_rows(tmp_path / "eq" / "train_labels" / "5.csv")
    for row in read_label_rows(tmp_path / "eq" / "train_labels" / "5.csv")[::2]:  # zero phase: onsets stay
        assert abs(onset(b, row.start - s(0.1)) - onset(a, row.start - s(0.1))) <= s(0.003)

    curves = []
    for start_s, end_s in ((0.4, 1.1), (2.4, 3.1)):
        (db_a, keep), (db_b, _) = _band_db(a, start_s, end_s), _band_db(b, start_s, end_s)
        change = (db_b - db_a)[keep]
        change -= np.median(change)  # the recording's peak normalisation is one constant
        assert np.ptp(np.percentile(change, [5, 95])) <= 2 * 10.0 + 2.0
        curves.append(np.interp(np.arange(200, 6000, 50.0), np.flatnonzero(keep) * SR / 4096, change))
    assert np.std(curves[0] - curves[1]) > 1.0  # violin and flute got different curves


def test_random_smooth_eq_stays_within_its_bound_and_is_identity_at_zero():
    from instrument_classifier.data.augment import random_smooth_eq

    t = np.arange(SR) / SR
    freqs = [110, 440, 1760, 7040]
    tones = np.stack([np.sin(2 * np.pi * f * t) for f in freqs])
    x = tones.sum(0).astype(np.float32)
    np.testing.assert_array_equal(random_smooth_eq(x, SR, 0.0, 4, np.random.default_rng(0)), x)
    for seed in range(5):
        y = random_smooth_eq(x, SR, 6.0, 4, np.random.default_rng(seed))
        assert y.shape == x.shape and y.dtype == np.float32
        gains = 20 * np.log10(np.abs(tones @ y.astype(np.float64)) / np.abs(tones @ x.astype(np.float64)))
        assert np.all(np.abs(gains) <= 6.0 + 1e-6) and np.ptp(gains) > 0.1
    np.testing.assert_array_equal(random_smooth_eq(x, SR, 6.0, 4, np.random.default_rng(1)),
                                  random_smooth_eq(x, SR, 6.0, 4, np.random.default_rng(1)))


def test_omitted_programs_are_neither_played_nor_labelled(tmp_path):
    """omit_programs (a library whose cello is a held-out library's recording): the piece is rendered as if
    the cello were silent — no cello notes in the labels, silence where only the cello played — and the other
    instruments sound as without the option. A piece with only omitted programs is not rendered."""
    notes = [(s(0.2), s(1.2), 41, 72),   # violin
             (s(1.6), s(2.6), 43, 48)]   # cello, alone
    root = labels_folder(tmp_path, notes, rid="7")
    write_csv(root / "train_labels" / "8.csv", [(s(0.2), s(1.0), 43, 50)])  # a cello solo
    written = render_corpus(root, None, tmp_path / "out", seed=1, omit_programs=(43,), progress=False)
    assert [p.stem for p in written] == ["7"]
    rows = read_label_rows(tmp_path / "out" / "train_labels" / "7.csv")
    assert {r.instrument for r in rows} == {41}
    audio = sf.read(written[0], dtype="float32")[0]
    assert frame_rms(audio, 1.9, 2.5) < 1e-4 < frame_rms(audio, 0.4, 1.0)
    full, = render_corpus(root, None, tmp_path / "full", ids=["7"], seed=1, progress=False)
    assert frame_rms(sf.read(full, dtype="float32")[0], 1.9, 2.5) > 1e-3
    with pytest.raises(RenderError, match="only the omitted programs"):
        render_corpus(root, None, tmp_path / "none", ids=["8"], omit_programs=(43,), progress=False)
