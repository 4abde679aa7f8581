"""``instrument-classifier predict`` end to end: real models, real audio files, bad files among them."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instrument_classifier import cli, inference, predict


@pytest.fixture(scope="module")
def random_model(tmp_path_factory) -> Path:
    """A real saved model folder with random weights: enough for the command's mechanics."""
    from instrument_classifier.modeling import InstrumentCNNConfig, InstrumentCNNForAudioClassification
    from instrument_classifier.modeling import InstrumentFeatureExtractor

    import torch

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("random_cnn")
    InstrumentCNNForAudioClassification(InstrumentCNNConfig(taxonomy="musicnet11")).save_pretrained(folder)
    InstrumentFeatureExtractor(mean=[0.0] * 13, std=[10.0] * 13).save_pretrained(folder)
    return folder


@pytest.fixture
def audio_files(rendered_corpus, tmp_path) -> dict:
    """Two rendered excerpts (one as stereo FLAC at 22.05 kHz), a text file named .wav, an empty file."""
    import soxr

    good = rendered_corpus / "test_data" / "2628.wav"
    audio, sr = sf.read(rendered_corpus / "test_data" / "2416.wav", dtype="float32")
    stereo = tmp_path / "winds stereo.flac"
    sf.write(stereo, soxr.resample(np.stack([audio, audio], axis=1), sr, 22050), 22050)
    text = tmp_path / "notes.wav"
    text.write_text("not audio\n")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    return {"good": str(good), "stereo": str(stereo), "text": str(text), "empty": str(empty)}


def _default_model(monkeypatch):
    override = os.environ.get("SPACE_TEST_MODEL")  # development only, before the bundled models exist
    if override:
        monkeypatch.setattr(inference, "DEFAULT_MODEL_DIR", Path(override))
    elif not (inference.DEFAULT_MODEL_DIR / "config.json").is_file() and \
            not inference.is_ensemble_folder(inference.DEFAULT_MODEL_DIR):
        pytest.fail(f"no bundled model at {inference.DEFAULT_MODEL_DIR}; run `make models`")


def test_json_with_default_model_reports_good_files_and_names_bad_ones(audio_files, rendered_corpus, capsys,
                                                                        monkeypatch):
    _default_model(monkeypatch)
    files = [audio_files["good"], audio_files["text"], audio_files["stereo"], audio_files["empty"]]
    code = cli.main(["predict", *files, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 1
    results = json.loads(out)
    assert [r["file"] for r in results] == [audio_files["good"], audio_files["stereo"]]
    for r in results:
        assert set(r) == {"file", "duration_s", "clip", "detected", "thresholds", "segments"}
        # a program reproduces the table's decisions from the JSON alone
        assert r["detected"] == [label for label, score in r["clip"].items() if score >= r["thresholds"][label]]
        assert r["duration_s"] == pytest.approx(sf.info(r["file"]).duration, abs=0.01)
        assert r["clip"] and all(0.0 <= v <= 1.0 for v in r["clip"].values())
        for s in r["segments"]:
            assert set(s) == {"start_s", "end_s", "label", "score"}
            assert 0.0 <= s["start_s"] < s["end_s"] <= r["duration_s"] + 1e-6
            assert s["label"] in r["clip"]
    assert results[0]["segments"], "a 10 s excerpt of a violin sonata has some detected segment"
    assert f"error: {audio_files['text']}: not a readable audio file" in err
    assert f"error: {audio_files['empty']}: empty file" in err
    assert "2 of 4 file(s) failed" in err


def test_json_and_csv_reproduce_the_table(audio_files, capsys, monkeypatch):
    """What the table shows (clip scores, which are detected, segments) is in the JSON and in the CSV alone."""
    _default_model(monkeypatch)
    files = [audio_files["good"], audio_files["stereo"]]
    outputs = {}
    for fmt in ("table", "json", "csv"):
        assert cli.main(["predict", *files, "--format", fmt, "--no-progress"]) == 0
        outputs[fmt] = capsys.readouterr().out
    results = json.loads(outputs["json"])
    rows = list(csv.DictReader(io.StringIO(outputs["csv"])))
    tables = outputs["table"].split("\n\n")
    for r, table in zip(results, tables):
        assert table.startswith(r["file"])
        line = table.splitlines()[1]  # "clip score/threshold: Violin* 0.97/0.40, Viola 0.12/0.80 (...)"
        starred = set(re.findall(r"([A-Z][A-Za-z ]*?)\* \d", line))
        assert starred == set(r["detected"]) and r["detected"]
        shown = re.findall(r"([A-Z][A-Za-z ]*?)\*? (\d\.\d\d)/(\d\.\d\d)", line)
        for label, score, threshold in shown:
            assert float(score) == pytest.approx(r["clip"][label], abs=0.01)
            assert float(threshold) == pytest.approx(r["thresholds"][label], abs=0.005)
        hidden = len(r["clip"]) - len(shown)
        assert (f"; {hidden} more below 0.01)" in line) == (hidden > 0)
        clip_rows = [row for row in rows if row["file"] == r["file"] and row["kind"] == "clip"]
        assert {row["instrument"]: float(row["score"]) for row in clip_rows} == pytest.approx(r["clip"], abs=1e-4)
        assert {row["instrument"]: float(row["threshold"]) for row in clip_rows} == \
            pytest.approx(r["thresholds"], abs=1e-4)
        assert {row["instrument"] for row in clip_rows if row["detected"] == "1"} == set(r["detected"])
        assert [float(row["end_s"]) for row in clip_rows] == \
            [pytest.approx(r["duration_s"], abs=1e-3)] * len(r["clip"])
        segment_rows = [row for row in rows if row["file"] == r["file"] and row["kind"] == "segment"]
        assert [(row["instrument"], float(row["start_s"]), float(row["end_s"])) for row in segment_rows] == \
            [(s["label"], pytest.approx(s["start_s"], abs=1e-3), pytest.approx(s["end_s"], abs=1e-3))
             for s in r["segments"]]
        # the decision rule: segments for exactly the detected instruments
        assert {row["instrument"] for row in segment_rows} == set(r["detected"])
        assert all(row["detected"] == "1" for row in segment_rows)
    assert {row["kind"] for row in rows} == {"clip", "segment"}


def test_table_and_csv_and_atomic_output(random_model, audio_files, tmp_path, capsys):
    code = cli.main(["predict", "--model", str(random_model), audio_files["good"], audio_files["stereo"],
                     "--threshold", "0.3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert audio_files["good"] in out and audio_files["stereo"] in out and "clip score/threshold:" in out
    header = next(line for line in out.splitlines() if line.split() == ["start", "end", "instrument", "score"])
    rows = [line for line in out.splitlines() if line.strip().endswith(tuple("0123456789")) and "s  " in line]
    assert rows and {len(line) for line in rows} == {len(header)}  # the score column sits under its header

    target = tmp_path / "out" / "segments.csv"
    target.parent.mkdir()
    target.write_text("old content\n")
    code = cli.main(["predict", "--model", str(random_model), audio_files["good"], audio_files["text"],
                     "--format", "csv", "--output", str(target), "--threshold", "0.01"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert audio_files["text"] in err
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert rows and {r["file"] for r in rows} == {audio_files["good"]}
    assert list(rows[0]) == ["file", "kind", "start_s", "end_s", "instrument", "score", "threshold", "detected"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["segments.csv"]  # no temp file left behind


def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("[]\n")

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        predict.write_atomic(target, "[{\"file\": ")
    assert target.read_text() == "[]\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_progress_bar_only_on_long_files(random_model, tmp_path, capsys):
    long_file = tmp_path / "long.wav"
    t = np.arange(int((predict.PROGRESS_MIN_SECONDS + 5) * 8000)) / 8000
    sf.write(long_file, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)
    short_file = tmp_path / "short.wav"
    sf.write(short_file, (0.2 * np.sin(2 * np.pi * 440 * t[:8000])).astype(np.float32), 8000)
    assert cli.main(["predict", "--model", str(random_model), str(short_file)]) == 0
    assert "short.wav" not in capsys.readouterr().err
    assert cli.main(["predict", "--model", str(random_model), str(long_file)]) == 0
    assert "long.wav" in capsys.readouterr().err  # tqdm's bar, named after the file, in seconds of audio
    assert cli.main(["predict", "--model", str(random_model), "--no-progress", str(long_file)]) == 0
    assert "long.wav" not in capsys.readouterr().err


def test_weight_loading_bars_only_in_verbose_mode(audio_files, capsys, monkeypatch):
    """transformers prints a "Loading weights" bar per model loaded (two for the ensemble) on every run."""
    _default_model(monkeypatch)
    assert cli.main(["predict", audio_files["good"], "--no-progress"]) == 0
    assert "Loading weights" not in capsys.readouterr().err
    ensemble = str(inference.DEFAULT_MODEL_DIR.parent / "ensemble")
    assert cli.main(["predict", "--model", ensemble, audio_files["good"], "--no-progress"]) == 0
    assert "Loading weights" not in capsys.readouterr().err
    assert cli.main(["predict", "--model", ensemble, audio_files["good"], "--no-progress", "--verbose"]) == 0
    assert capsys.readouterr().err.count("Loading weights: 100%") >= 2  # both of the ensemble's members


def test_a_directory_is_reported_as_a_directory(random_model, audio_files, tmp_path, capsys):
    """It was "not a readable audio file (... Format not recognised.)"."""
    folder = tmp_path / "takes"
    folder.mkdir()
    assert cli.main(["predict", "--model", str(random_model), str(folder), audio_files["good"]]) == 1
    err = capsys.readouterr().err
    assert f"error: {folder}: a directory, not an audio file; give the files in it (e.g. {folder}/*.wav)" in err
    assert "Format not recognised" not in err and "1 of 2 file(s) failed" in err


def test_a_damaged_mp3_is_not_called_missing(random_model, audio_files, tmp_path, capsys):
    """libsndfile says "File does not exist or is not a regular file" of an MP3 it cannot parse."""
    damaged = tmp_path / "damaged.mp3"
    damaged.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 40)
    assert cli.main(["predict", "--model", str(random_model), str(damaged), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"error: {damaged}: not a readable audio file (its contents are not audio libsndfile can decode" in err
    assert "does not exist" not in err


def test_segment_options_reach_the_timeline(random_model, audio_files, capsys):
    """--min-segment and --merge-gap are predict_timeline's min_duration_s and merge_gap_s; their help names its
    defaults."""
    import inspect

    def segments(*options):
        assert cli.main(["predict", "--model", str(random_model), audio_files["good"], "--threshold", "0.3",
                         "--format", "json", *options]) == 0
        return json.loads(capsys.readouterr().out)[0]["segments"]

    default, coarse = segments(), segments("--min-segment", "1.5", "--merge-gap", "2")
    model, fe = inference.load_model(str(random_model), device="cpu")
    timeline = inference.predict_timeline(model, fe, audio_files["good"], thresholds=[0.3] * 11,
                                          min_duration_s=1.5, merge_gap_s=2.0)
    assert coarse == json.loads(json.dumps(timeline.to_dict()["segments"]))
    assert len(coarse) < len(default) and all(s["end_s"] - s["start_s"] >= 1.5 for s in coarse)
    defaults = inspect.signature(inference.predict_timeline).parameters
    parser = cli.build_parser("predict")
    help_text = " ".join(parser._subparsers._group_actions[0].choices["predict"].format_help().split())
    assert f"default {defaults['min_duration_s'].default:g} s" in help_text
    assert f"default {defaults['merge_gap_s'].default:g} s" in help_text


@pytest.mark.parametrize("argv,expected", [
    (["--threshold", "1.5"], "--threshold must be between 0 and 1"),
    (["--model", "/nonexistent/model"], "/nonexistent/model"),
    (["--min-segment", "-1"], "--min-segment must be a number of seconds >= 0"),
    (["--merge-gap", "nan"], "--merge-gap must be a number of seconds >= 0"),
])
def test_usage_errors_exit_2(audio_files, capsys, argv, expected):
    assert cli.main(["predict", audio_files["good"], *argv]) == 2
    assert expected in capsys.readouterr().err


def test_a_score_just_under_its_threshold_never_prints_equal_to_it():
    from instrument_classifier.predict import _score_and_threshold

    assert _score_and_threshold(0.97, 0.4) == "0.97/0.40"
    assert _score_and_threshold(0.7953, 0.8) == "0.79/0.80"
    assert _score_and_threshold(0.79996, 0.8) == "0.79/0.80"
    assert _score_and_threshold(0.8, 0.8) == "0.80/0.80"  # reaches it: detected, and shown so
    assert _score_and_threshold(0.4368, 0.4367) == "0.44/0.44"
    assert _score_and_threshold(0.4366, 0.4367) == "0.43/0.44"
