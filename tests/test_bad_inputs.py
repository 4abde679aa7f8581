"""Bad and unusual inputs across every entry point: each works correctly, or fails with a clear error.

"Clear" means: a non-zero exit status (CLIs) or one of the package's own exceptions (APIs), a message that
names the file (and the CSV row), no traceback from deep inside a library, and nothing half-written: the
output is absent, or a previous output is left exactly as it was. "Works" means the result agrees with
the clean mono 44.1 kHz reference (same labels, same features within PCM16 quantisation).

The inputs come from ``badfiles.py``. The matrix (rows: entry points; columns: cases; W = works and agrees
with the reference, E = clear error, - = not applicable)::

                           audio errors¹  audio OK²  CSV errors³  CSV OK⁴  folders⁵  3-hour file
    load_audio / stream_audio   E            W           -           -        -        W (streamed, RSS bound)
    feature extractor⁶          E            W           -           -        -        -
    prepare (CLI)               E            W           E           W        E, skip  -  (whole recording in memory)
    synth (CLI)                 -            -           E           W        -        -
    evaluate --data-dir (CLI)   E            W           E           W        E        -
    train.py --data_dir         E            -⁷          E           -⁷       E        -
    predict (CLI)               E            W           -           -        -        bench/bench_long_audio.py
    pipeline                    E            W           -           -        -        -
    Space handler               E            W           -           -        -        E (duration limit, header only)

    ¹ empty, zero-length, text renamed .wav, truncated wav, NaN and inf samples (float wav)
    ² stereo, 8 kHz, 96 kHz, 8-bit and 24-bit PCM, 1-second clip shorter than a window
    ³ missing column, end before start, instrument not a GM program, non-numeric value, a GM program the
      taxonomy does not map, a stray double quote (it swallowed the rows after it), end_time 1e30 or 2^62
    ⁴ UTF-8 BOM, extra columns (+ an unmapped GM program, which synth renders)
    ⁵ a wav without its CSV, a CSV without its wav
    ⁶ arrays: empty, NaN/inf, (samples, channels) stereo, 8/96 kHz with ``sampling_rate``, integer PCM
    ⁷ the same ``build_dataset`` call as prepare and evaluate; training itself is tested in test_train.py

Single cases already tested elsewhere (test_prepare.py, test_musicnet_reader.py, test_render.py) are not
repeated here; this file crosses the cases with the entry points.

Inputs that lost data or were silently wrong, at the end of the file: RF64, W64 and Ogg files cut short are refused by
load_audio / stream_audio, predict, the Space handler and prepare (the pipeline decodes with its own code,
shipped with the weights, and knows WAV and AIFF only), and a FLAC whose header gives no length is read in full
by them; a stray quote in a 140-KB label file; ``predict x.wav --output x.wav``; ``prepare --output`` over a
dataset with the user's files beside it; a training run killed while writing a checkpoint; a validation split
ROC-AUC cannot score; broken model configs; ``evaluate --device cuda`` without CUDA. The security cases
(model folders that would run their own code, decompression bombs, links in ``push-model``, ``nan`` limits)
are in test_security.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import badfiles
from badfiles import (
    AUDIO_ERRORS,
    AUDIO_OK,
    CSV_ERRORS,
    FOLDER_ERRORS,
    REF_NOTES,
    SHORT_SECONDS,
    SR,
    bad_row,
    break_corpus,
    make_corpus,
    reference_audio,
    small_corpus,
    tree_snapshot,
    write_audio_case,
    write_labels,
)
from instrument_classifier.audio import AudioError, load_audio, stream_audio
from instrument_classifier.modeling.feature_extraction_instrument import InstrumentFeatureExtractor

#: PCM16 quantisation moves the reference's MFCCs by up to 0.4 (of a range of about 900); a wrong scale,
#: channel or resampling moves them by tens to hundreds
FEATURE_ATOL = 0.5
EDGE = 5  # frames at the ends where resampling filters and zero padding legitimately differ


def run_cli(argv, capsys):
    """``instrument-classifier ARGV`` in-process: ``(exit status, stdout, stderr)``.

    An exception escaping ``main`` fails the test: from a shell it would be a bare traceback.
    """
    from instrument_classifier import cli

    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_clear_failure(code: int, err: str, *must_contain: str) -> None:
    assert code != 0, "the command should have failed"
    assert "Traceback" not in err, err
    for text in must_contain:
        assert text in err, f"{text!r} not in stderr:\n{err}"


def assert_features_match(features: np.ndarray, reference: np.ndarray, atol: float = FEATURE_ATOL) -> None:
    n = min(len(features), len(reference))
    assert n > 2 * EDGE + 10
    np.testing.assert_allclose(features[EDGE : n - EDGE], reference[EDGE : n - EDGE], atol=atol)


@pytest.fixture(scope="module")
def extractor():
    return InstrumentFeatureExtractor()


@pytest.fixture(scope="module")
def ref_features(extractor):
    return extractor.extract(reference_audio())


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory):
    """One file per audio case (and the reference), named after the case."""
    folder = tmp_path_factory.mktemp("audio_cases")
    return {case: write_audio_case(folder / f"{case}.wav", case)
            for case in ("reference", *AUDIO_ERRORS, *AUDIO_OK)}


def expected_features(case: str, path: Path, extractor, ref_features) -> np.ndarray:
    """What a correct reader must produce for an accepted audio case."""
    if case == "pcm_u8":
        # 8-bit quantisation noise (-48 dB) legitimately changes the quiet mel bands: the file must decode to
        # the reference within one 8-bit step (unsigned, centred on 0, full scale) and give the decoded
        # samples' features
        decoded, _ = sf.read(path, dtype="float32")
        assert np.abs(decoded - reference_audio()).max() <= 1.0 / 128 + 1e-6
        return extractor.extract(decoded)
    if case == "short_1s":
        return ref_features[: extractor.num_frames(int(SHORT_SECONDS * SR))]
    return ref_features


# -- audio loading -----------------------------------------------------------------------------------

def _stream(path) -> np.ndarray:
    # blocks of 0.7 s: several block edges, where a streamed resampler could click or drop samples
    return np.concatenate(list(stream_audio(path, block_seconds=0.7)))


LOADERS = {"load_audio": lambda p: load_audio(p)[0], "stream_audio": _stream}


@pytest.mark.parametrize("case", list(AUDIO_ERRORS))
@pytest.mark.parametrize("loader", list(LOADERS))
def test_audio_loading_refuses_bad_files_naming_them(loader, case, audio_files):
    path = audio_files[case]
    with pytest.raises(AudioError) as err:
        LOADERS[loader](path)
    assert str(path) in str(err.value) and AUDIO_ERRORS[case] in str(err.value)
    if case in ("nan", "inf"):  # where in the file, also when streamed in blocks
        assert f"sample {badfiles.BAD_SAMPLE}" in str(err.value)


@pytest.mark.parametrize("case", AUDIO_OK)
@pytest.mark.parametrize("loader", list(LOADERS))
def test_audio_loading_accepts_formats_consistently(loader, case, audio_files, extractor, ref_features):
    path = audio_files[case]
    audio = LOADERS[loader](path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    seconds = SHORT_SECONDS if case == "short_1s" else badfiles.REF_SECONDS
    assert len(audio) == int(round(seconds * SR))  # resampled to exactly the reference's length
    assert_features_match(extractor.extract(audio), expected_features(case, path, extractor, ref_features))


# Peak RSS from VmHWM, the high-water mark of this process's own memory: ru_maxrss would also count
# the parent's (pytest's) memory at fork time, which Linux carries across exec.
STREAM_PROBE = """
import re, sys
import numpy as np
from instrument_classifier.audio import stream_audio
count, power = 0, 0.0
for block in stream_audio(sys.argv[1], block_seconds=60.0):
    count += len(block)
    power += float(np.square(block, dtype=np.float64).sum())
hwm_kib = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(count, power / count, hwm_kib / 1024)
"""


def test_three_hour_file_is_streamed_and_resampled_in_bounded_memory(tmp_path):
    """3 h at 8 kHz (173 MB of PCM16) read and resampled to 44.1 kHz block by block, in a fresh process.

    Decoding it whole at 44.1 kHz would hold 476 M float32 samples (1.9 GB); the stream holds one block.
    (The whole `predict` on 3 hours is timed with its memory in bench/bench_long_audio.py.)
    """
    import subprocess
    import sys

    path = badfiles.long_pcm16(tmp_path / "three_hours.wav", hours=3.0, sr=8000)
    proc = subprocess.run([sys.executable, "-c", STREAM_PROBE, str(path)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    count, power, peak_mib = proc.stdout.split()
    assert int(count) == 3 * 3600 * SR  # every sample, resampled to exactly 44.1 kHz
    assert float(power) == pytest.approx(badfiles.LONG_MEAN_POWER, rel=0.01)  # the content survived
    assert float(peak_mib) < 400, f"peak RSS {float(peak_mib):.0f} MiB: the file was not streamed"


# -- feature extractor (arrays) ------------------------------------------------------------------------

def _pcm(audio: np.ndarray, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.round(audio * info.max).astype(dtype) if info.min < 0 else np.round(audio * 127 + 128).astype(dtype)


FE_ERRORS = {
    "zero_length": (lambda a: a[:0], ValueError, "zero-length"),
    "nan": (lambda a: np.where(np.arange(len(a)) == 1000, np.nan, a).astype(np.float32), ValueError, "NaN"),
    "inf": (lambda a: np.where(np.arange(len(a)) == 1000, np.inf, a).astype(np.float32), ValueError, "infinite"),
    "stereo": (lambda a: np.stack([a, a], axis=1), ValueError, "multi-channel"),  # (samples, channels)
    "pcm_u8": (lambda a: _pcm(a, np.uint8), TypeError, "expected float audio"),
    "pcm_24": (lambda a: _pcm(a, np.int32), TypeError, "expected float audio"),  # 24-bit PCM as int32
}


@pytest.mark.parametrize("case", list(FE_ERRORS))
def test_feature_extractor_refuses_bad_arrays(case, extractor):
    make, error, message = FE_ERRORS[case]
    with pytest.raises(error, match=message):
        extractor(make(reference_audio()), sampling_rate=SR)


@pytest.mark.parametrize("case", ["stereo_channels_first", "sr_8k", "sr_96k", "pcm_24_scaled", "short_1s"])
def test_feature_extractor_accepts_arrays_consistently(case, extractor, ref_features):
    import soxr

    audio, rate = reference_audio(), SR
    if case == "stereo_channels_first":  # (channels, samples) is a batch: one identical result per channel
        out = extractor(np.stack([audio, audio]), sampling_rate=SR, normalize=False)["input_features"]
        assert out.shape == (2, len(ref_features), 13)
        for feats in out:
            assert_features_match(feats, ref_features, atol=1e-3)
        return
    if case in ("sr_8k", "sr_96k"):
        rate = 8000 if case == "sr_8k" else 96000
        audio = soxr.resample(audio, SR, rate, quality="HQ")
    elif case == "pcm_24_scaled":  # integer PCM converted as the error message says
        pcm = _pcm(audio, np.int32)
        audio = (pcm / np.iinfo(np.int32).max).astype(np.float32)
    elif case == "short_1s":
        audio = audio[: int(SHORT_SECONDS * SR)]
    feats = extractor(audio, sampling_rate=rate, normalize=False)["input_features"][0]
    expected = ref_features[: len(feats)] if case == "short_1s" else ref_features
    assert len(feats) == extractor.num_frames(int(round(len(audio) * SR / rate)))
    assert_features_match(feats, expected)


# -- prepare -------------------------------------------------------------------------------------------

PREPARE_OK = {"101": "stereo", "102": "sr_8k", "103": "sr_96k", "104": "pcm_u8", "105": "pcm_24", "106": "short_1s"}
PREPARE_CSV_OK = {"107": "bom", "108": "extra_columns"}


def prepare_argv(corpus, out, cache, *extra):
    return ["prepare", "--data-dir", corpus, "--output", out, "--cache-dir", cache, *extra]


@pytest.fixture(scope="module")
def prepared_variants(tmp_path_factory):
    """One `prepare` run over the reference (100), every accepted audio case and every accepted CSV case."""
    from instrument_classifier.data.prepare import load_prepared

    root = tmp_path_factory.mktemp("prepare_ok")
    recordings = {"100": ("train", "reference", "plain"), "200": ("test", "reference", "plain")}
    recordings.update({rid: ("train", case, "plain") for rid, case in PREPARE_OK.items()})
    recordings.update({rid: ("train", "reference", case) for rid, case in PREPARE_CSV_OK.items()})
    corpus = make_corpus(root / "corpus", recordings)
    from instrument_classifier import cli

    # every piece in train (no validation split), so all recordings get the same (overlapping) windows
    assert cli.main([str(a) for a in prepare_argv(corpus, root / "out", root / "cache",
                                                  "--validation-fraction", "0")]) == 0
    dataset, info, _ = load_prepared(root / "out")
    rows = dataset["train"].with_format("numpy")[:]
    by_id = {}
    for rid in recordings:
        mask = rows["recording_id"] == f"corpus/{rid}"
        by_id[rid] = {k: v[mask] for k, v in rows.items()}
    return by_id, corpus


def _global_frames(start_frames: np.ndarray, window: int) -> np.ndarray:
    return start_frames[:, None] + np.arange(window)[None, :]


@pytest.mark.parametrize("rid", list(PREPARE_OK) + list(PREPARE_CSV_OK))
def test_prepare_accepts_formats_and_csv_variants_consistently(rid, prepared_variants, extractor):
    by_id, corpus = prepared_variants
    case = {**PREPARE_OK, **PREPARE_CSV_OK}[rid]
    ref, got = by_id["100"], by_id[rid]
    real = extractor.num_frames(int(round((SHORT_SECONDS if case == "short_1s" else badfiles.REF_SECONDS) * SR)))
    if case == "short_1s":  # one zero-padded window; labels as the reference's where audio is, 0 after it
        # (the last real frame straddles the clip's end, where the flute note of the reference begins)
        assert list(got["start_frame"]) == [0]
        np.testing.assert_array_equal(got["frame_labels"][0][: real - 1], ref["frame_labels"][0][: real - 1])
        assert not got["frame_labels"][0][real:].any()
        np.testing.assert_array_equal(got["labels"][0], ref["frame_labels"][0][: real - 1].max(axis=0))
        assert got["labels"][0].sum() == 2  # violin (Strings) and piano (Keyboard)
    else:
        np.testing.assert_array_equal(got["start_frame"], ref["start_frame"])
        np.testing.assert_array_equal(got["frame_labels"], ref["frame_labels"])
        np.testing.assert_array_equal(got["labels"], ref["labels"])
        assert got["labels"][0].sum() == 3  # violin, piano, flute: the labels really are there
    frames = _global_frames(got["start_frame"], got["input_features"].shape[1])
    inside = (frames >= EDGE) & (frames < real - EDGE)
    if case == "pcm_u8":
        expected = expected_features(case, corpus / "train_data" / f"{rid}.wav", extractor, None)
        np.testing.assert_allclose(got["input_features"][inside], expected[frames[inside]], atol=FEATURE_ATOL)
    else:
        ref_by_frame = {}
        for window, start in zip(ref["input_features"], ref["start_frame"]):
            for i, row in enumerate(window):
                ref_by_frame.setdefault(start + i, row)
        expected = np.stack([ref_by_frame[f] for f in frames[inside]])
        np.testing.assert_allclose(got["input_features"][inside], expected, atol=FEATURE_ATOL)


@pytest.fixture(scope="module")
def previous_dataset(tmp_path_factory):
    """A good prepared dataset: every failing run below starts with a copy of it under --output."""
    root = tmp_path_factory.mktemp("previous")
    corpus = small_corpus(root / "corpus")
    from instrument_classifier import cli

    assert cli.main([str(a) for a in prepare_argv(corpus, root / "out", root / "cache")]) == 0
    return root / "out"


PREPARE_ERRORS = [*AUDIO_ERRORS, *CSV_ERRORS, "unmapped_instrument", *FOLDER_ERRORS]


@pytest.mark.parametrize("case", PREPARE_ERRORS)
def test_prepare_refuses_bad_input_naming_file_and_keeps_previous_output(case, tmp_path, previous_dataset, capsys):
    corpus = small_corpus(tmp_path / "corpus")
    named = break_corpus(corpus, case)
    out = tmp_path / "data" / "out"
    shutil.copytree(previous_dataset, out)
    before = tree_snapshot(out)
    code, _, err = run_cli(prepare_argv(corpus, out, tmp_path / "cache"), capsys)
    must = [named] + ([f"row {bad_row(case)}"] if case in CSV_ERRORS or case == "unmapped_instrument" else [])
    assert_clear_failure(code, err, *must)
    assert tree_snapshot(out) == before  # the previous dataset is untouched
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # and no temporary folder is left


@pytest.mark.parametrize("case", ["truncated", "nan", "non_numeric", "wav_without_csv", "csv_without_wav"])
def test_prepare_skip_bad_leaves_out_only_the_bad_recording(case, tmp_path, capsys):
    from instrument_classifier.data.prepare import load_prepared

    corpus = small_corpus(tmp_path / "corpus")
    break_corpus(corpus, case)
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="12"):
        code, _, err = run_cli(prepare_argv(corpus, out, tmp_path / "cache", "--skip-bad",
                                            "--validation-fraction", "0"), capsys)
    assert code == 0, err
    dataset, info, _ = load_prepared(out)
    assert sorted(set(dataset["train"]["recording_id"])) == ["corpus/11", "corpus/13", "corpus/14"]
    assert len(info["skipped"]) == 1 and "12" in info["skipped"][0]["recording"] + info["skipped"][0]["reason"]


# -- synth ---------------------------------------------------------------------------------------------

def _labels_tree(root: Path, cases: dict) -> Path:
    """A labels-only MusicNet folder: ``{id: CSV case}`` in train_labels/."""
    for rid, case in cases.items():
        write_labels(root / "train_labels" / f"{rid}.csv", REF_NOTES, case)
    badfiles.write_metadata(root, list(cases))
    return root


@pytest.mark.parametrize("case", list(CSV_ERRORS))
def test_synth_refuses_bad_csv_naming_file_and_row(case, tmp_path, capsys):
    labels = _labels_tree(tmp_path / "labels", {"11": "plain", "12": case})
    out = tmp_path / "out"
    code, _, err = run_cli(["synth", "--labels", labels, "--out", out, "--max-seconds", "1"], capsys)
    assert_clear_failure(code, err, "12.csv", f"row {bad_row(case)}", CSV_ERRORS[case])
    assert not out.exists()  # every CSV is checked before anything is rendered


def test_synth_accepts_bom_extra_columns_and_any_gm_program(tmp_path, capsys):
    from instrument_classifier.data.musicnet import read_labels

    cases = {"11": "plain", "12": "bom", "13": "extra_columns", "14": "unmapped_instrument"}
    labels = _labels_tree(tmp_path / "labels", cases)
    out = tmp_path / "out"
    code, _, err = run_cli(["synth", "--labels", labels, "--out", out, "--max-seconds", str(badfiles.REF_SECONDS)],
                           capsys)
    assert code == 0, err
    rendered = {rid: read_labels(out / "train_labels" / f"{rid}.csv") for rid in cases}
    fields = ["start", "end", "instrument", "note"]
    for rid in ("12", "13"):
        np.testing.assert_array_equal(rendered[rid][fields], rendered["11"][fields], err_msg=cases[rid])
    assert badfiles.UNMAPPED_PROGRAM in rendered["14"]["instrument"]
    for rid in cases:
        audio, rate = sf.read(out / "train_data" / f"{rid}.wav")
        assert rate == SR and np.abs(audio).max() > 0.5  # peak-normalised to -1 dBFS: there is sound


# -- models: predict, pipeline, Space handler, evaluate, train.py --------------------------------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, ref_features):
    """A random-initialised CNN saved as a model folder (safetensors + code + feature extractor)."""
    import torch
    from instrument_classifier.modeling import MODEL_CLASSES

    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    config_class, model_class = MODEL_CLASSES["cnn"]
    model_class(config_class(taxonomy="seed12")).save_pretrained(folder)
    extractor = InstrumentFeatureExtractor()
    extractor.fit_normalization([ref_features])
    extractor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def loaded_model(model_dir):
    from instrument_classifier import inference
    return inference.load_model(str(model_dir))


def expected_clip(case: str, path: Path, loaded_model) -> dict:
    """Clip scores a correct reader must give ``case`` (from arrays, the reference's where it must agree)."""
    from instrument_classifier.inference import predict_timeline

    model, extractor = loaded_model
    if case == "pcm_u8":
        audio, _ = sf.read(path, dtype="float32")
    elif case == "short_1s":
        audio = reference_audio()[: int(SHORT_SECONDS * SR)]
    else:
        audio = reference_audio()
    return predict_timeline(model, extractor, audio, sampling_rate=SR).clip


CLIP_ATOL = 0.02  # a random model amplifies small feature differences a little


@pytest.fixture(scope="module")
def predicted_ok(audio_files, model_dir, tmp_path_factory):
    """One `predict --format json --output F` over every accepted audio case."""
    import json

    from instrument_classifier import cli

    out = tmp_path_factory.mktemp("predict") / "results.json"
    files = [audio_files[case] for case in AUDIO_OK]
    code = cli.main(["predict", *map(str, files), "--model", str(model_dir), "--format", "json",
                     "--output", str(out), "--no-progress"])
    assert code == 0
    return {Path(r["file"]).stem: r for r in json.loads(out.read_text())}


@pytest.mark.parametrize("case", AUDIO_OK)
def test_predict_accepts_formats_consistently(case, predicted_ok, audio_files, loaded_model):
    got = predicted_ok[case]
    seconds = SHORT_SECONDS if case == "short_1s" else badfiles.REF_SECONDS
    assert got["duration_s"] == pytest.approx(seconds, abs=1e-3)
    expected = expected_clip(case, audio_files[case], loaded_model)
    assert got["clip"].keys() == expected.keys()
    for label, score in expected.items():
        assert got["clip"][label] == pytest.approx(score, abs=CLIP_ATOL), label
    assert all(0 <= s["start_s"] < s["end_s"] <= seconds + 1e-3 for s in got["segments"])


@pytest.mark.parametrize("case", list(AUDIO_ERRORS))
def test_predict_names_each_bad_file_and_still_writes_the_good_ones(case, audio_files, model_dir, tmp_path, capsys):
    import csv as csv_module

    out = tmp_path / "segments.csv"
    bad, good = audio_files[case], audio_files["reference"]
    code, _, err = run_cli(["predict", bad, good, "--model", model_dir, "--format", "csv", "--output", out,
                            "--no-progress"], capsys)
    assert_clear_failure(code, err, str(bad), AUDIO_ERRORS[case])
    with open(out, newline="") as f:
        files = {row["file"] for row in csv_module.DictReader(f)}
    assert files == {str(good)}  # the good file's segments, nothing of the bad one


def test_predict_writes_nothing_when_every_file_failed(audio_files, model_dir, tmp_path, capsys):
    out = tmp_path / "segments.csv"
    out.write_text("previous results\n")
    code, _, err = run_cli(["predict", audio_files["empty"], audio_files["nan"], "--model", model_dir,
                            "--format", "csv", "--output", out, "--no-progress"], capsys)
    assert_clear_failure(code, err, "empty.wav", "nan.wav")
    assert out.read_text() == "previous results\n"  # not replaced by a header-only file that looks like "no segments"


@pytest.fixture(scope="module")
def classifier_pipeline(model_dir):
    from transformers import pipeline

    import instrument_classifier.modeling  # noqa: F401

    return pipeline("audio-classification", model=str(model_dir), trust_remote_code=True)


@pytest.mark.parametrize("case", AUDIO_OK)
def test_pipeline_accepts_formats_consistently(case, classifier_pipeline, audio_files):
    got = {d["label"]: d["score"] for d in classifier_pipeline(str(audio_files[case]))}
    if case == "pcm_u8":
        decoded, _ = sf.read(audio_files[case], dtype="float32")
        reference = {"raw": decoded, "sampling_rate": SR}
    elif case == "short_1s":
        reference = {"raw": reference_audio()[: int(SHORT_SECONDS * SR)], "sampling_rate": SR}
    else:
        reference = str(audio_files["reference"])
    expected = {d["label"]: d["score"] for d in classifier_pipeline(reference)}
    assert got.keys() == expected.keys()
    for label in expected:
        assert got[label] == pytest.approx(expected[label], abs=CLIP_ATOL), label


@pytest.mark.parametrize("case", list(AUDIO_ERRORS))
def test_pipeline_refuses_bad_files_naming_them(case, classifier_pipeline, audio_files):
    path = audio_files[case]
    with pytest.raises(ValueError) as err:
        classifier_pipeline(str(path))
    assert str(path) in str(err.value) and AUDIO_ERRORS[case] in str(err.value)


@pytest.fixture(scope="module")
def space_classify(model_dir):
    """The Space's ``classify`` handler (the function behind the /classify endpoint), in-process."""
    from instrument_classifier import space_app
    demo = space_app.build_demo(models=[str(model_dir)], examples_dir=None)
    return next(f.fn for f in demo.fns.values() if f.api_name == "classify")


def test_space_handler_refuses_a_three_hour_upload_from_its_header(space_classify, tmp_path):
    import time

    import gradio as gr

    # FLAC: 23 MB, under the upload size limit, so the duration limit is what refuses it
    path = badfiles.long_pcm16(tmp_path / "concert.flac", hours=3.0, sr=8000, format="FLAC")
    started = time.perf_counter()
    with pytest.raises(gr.Error) as err:
        space_classify(str(path), None)
    assert "concert.flac" in err.value.message and "180 min" in err.value.message and "at most" in err.value.message
    assert time.perf_counter() - started < 5  # read from the header, not decoded


@pytest.mark.parametrize("case", list(AUDIO_ERRORS))
def test_space_handler_refuses_bad_uploads_naming_them_without_server_paths(case, space_classify, audio_files):
    import gradio as gr

    path = audio_files[case]
    with pytest.raises(gr.Error) as err:
        space_classify(str(path), None)
    message = err.value.message
    assert path.name in message and AUDIO_ERRORS[case] in message
    assert str(path.parent) not in message  # the server's upload folder is not shown


@pytest.mark.parametrize("case", AUDIO_OK)
def test_space_handler_accepts_formats_consistently(case, space_classify, audio_files, loaded_model):
    clip, image, table, csv_path, timeline, summary = space_classify(str(audio_files[case]), None)
    expected = expected_clip(case, audio_files[case], loaded_model)
    for label, score in expected.items():
        assert clip[label] == pytest.approx(score, abs=CLIP_ATOL), label
    assert image.ndim == 3 and Path(csv_path).is_file() and case + ".wav" in summary


DATA_DIR_ERRORS = PREPARE_ERRORS  # evaluate --data-dir and train.py --data_dir prepare the folder first


def test_evaluate_data_dir_accepts_every_format_and_csv_variant(model_dir, tmp_path, capsys):
    import json
    recordings = {rid: ("test", case, "plain") for rid, case in PREPARE_OK.items()}
    recordings.update({rid: ("test", "reference", case) for rid, case in PREPARE_CSV_OK.items()})
    recordings.update({"100": ("train", "reference", "plain"), "300": ("train", "reference", "plain")})
    corpus = make_corpus(tmp_path / "corpus", recordings)
    code, out, err = run_cli(["evaluate", "--model", model_dir, "--data-dir", corpus, "--output", tmp_path / "report",
                              "--cache-dir", tmp_path / "prepared"], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    # one non-overlapping window per 3 s recording (the tail is under a quarter window), one for the 1 s clip
    assert metrics["num_windows"] == len(PREPARE_OK) + len(PREPARE_CSV_OK)


@pytest.mark.parametrize("case", DATA_DIR_ERRORS)
def test_evaluate_data_dir_refuses_bad_corpus_naming_file(case, model_dir, tmp_path, capsys):
    corpus = small_corpus(tmp_path / "corpus")
    named = break_corpus(corpus, case, rid="21", split="test")  # the split evaluate reads
    out = tmp_path / "report"
    code, _, err = run_cli(["evaluate", "--model", model_dir, "--data-dir", corpus, "--output", out,
                            "--cache-dir", tmp_path / "prepared"], capsys)
    row = [f"row {bad_row(case)}"] if case in CSV_ERRORS or case == "unmapped_instrument" else []
    assert_clear_failure(code, err, named, *row)
    assert not out.exists() and {p.name for p in tmp_path.iterdir()} <= {"corpus", "prepared"}
    assert not any((tmp_path / "prepared").rglob("prepare_info.json"))  # no prepared dataset that looks complete


@pytest.fixture(scope="module")
def train_cli():
    import importlib.util

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("train_script", repo / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert hasattr(module, "cli"), "train.py has no cli() entry point"
    return module.cli


@pytest.mark.parametrize("case", DATA_DIR_ERRORS)
def test_train_data_dir_refuses_bad_corpus_naming_file(case, train_cli, tmp_path, capsys):
    corpus = small_corpus(tmp_path / "corpus")
    named = break_corpus(corpus, case)
    out, prepared = tmp_path / "run", tmp_path / "prepared"
    code = train_cli(["--model_type", "cnn", "--data_dir", str(corpus), "--prepared_dir", str(prepared),
                      "--output_dir", str(out), "--report_to", "none", "--disable_tqdm", "true"])
    err = capsys.readouterr().err
    row = [f"row {bad_row(case)}"] if case in CSV_ERRORS or case == "unmapped_instrument" else []
    assert_clear_failure(code, err, named, *row)
    assert not prepared.exists() and not (out / "model.safetensors").exists()
    assert not out.exists() or not any(out.iterdir())


# -- where the output goes -------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["prepare", "synth", "evaluate", "predict"])
def test_output_path_of_the_wrong_kind_is_refused_and_left_alone(command, tmp_path, model_dir, capsys):
    """An existing file where a folder is written (or a folder where a file is): refused, untouched."""
    corpus = small_corpus(tmp_path / "corpus")
    target = tmp_path / ("results" if command == "predict" else "notes.txt")
    if command == "predict":
        target.mkdir()
        (target / "keep.csv").write_text("mine\n")
    else:
        target.write_text("my notes\n")
    before = tree_snapshot(tmp_path / "results") if command == "predict" else target.read_text()
    argv = {
        "prepare": ["prepare", "--data-dir", corpus, "--output", target, "--cache-dir", tmp_path / "cache"],
        "synth": ["synth", "--ids", "1727", "--max-seconds", "1", "--out", target],
        "evaluate": ["evaluate", "--model", model_dir, "--data-dir", corpus, "--output", target],
        "predict": ["predict", corpus / "test_data" / "21.wav", "--model", model_dir, "--format", "csv",
                    "--output", target],
    }[command]
    code, _, err = run_cli(argv, capsys)
    assert_clear_failure(code, err, target.name)
    after = tree_snapshot(tmp_path / "results") if command == "predict" else target.read_text()
    assert after == before


# -- inputs that lost data or were silently wrong -----------------------------------------------------------

@pytest.mark.parametrize("spelling", ["same", "relative", "linked_folder"])
def test_predict_refuses_to_write_its_results_over_an_input(spelling, audio_files, model_dir, tmp_path, capsys,
                                                            monkeypatch):
    """``predict x.wav --output x.wav`` used to replace the recording with its results."""
    audio = tmp_path / "x.wav"
    shutil.copyfile(audio_files["reference"], audio)
    before = audio.read_bytes()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    output = {"same": audio, "relative": Path("sub/../x.wav"), "linked_folder": Path("elsewhere/x.wav")}[spelling]
    code, _, err = run_cli(["predict", audio_files["reference"], audio, "--model", model_dir, "--format", "json",
                            "--output", output, "--no-progress"], capsys)
    assert_clear_failure(code, err, str(output), "input")
    assert audio.read_bytes() == before


@pytest.mark.parametrize("foreign", ["NOTES.txt", "my_runs/run1/log.txt"])
def test_prepare_never_replaces_a_dataset_folder_holding_other_files(foreign, tmp_path, previous_dataset, capsys):
    """A DatasetDict with the user's notes or runs beside it used to be replaced, notes and all.

    Now the folder is replaced only when it holds nothing but what ``prepare`` writes, as ``evaluate`` does
    for its reports.
    """
    corpus = small_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    shutil.copytree(previous_dataset, out)
    (out / foreign).parent.mkdir(parents=True, exist_ok=True)
    (out / foreign).write_text("mine\n")
    before = tree_snapshot(out)
    code, _, err = run_cli(prepare_argv(corpus, out, tmp_path / "cache", "--seed", "1"), capsys)
    assert_clear_failure(code, err, str(out), foreign.split("/")[0])
    assert tree_snapshot(out) == before


@pytest.mark.parametrize("skip_bad", [False, True])
def test_a_stray_quote_in_a_long_label_file_is_an_error_naming_file_and_row(skip_bad, tmp_path, capsys):
    """Past 128 KB the run-on quoted field was a ``_csv.Error`` traceback, with ``--skip-bad`` too.

    (Shorter files kept the rows before the quote and dropped the rest silently: the ``stray_quote`` column
    of the matrix above.)
    """
    from instrument_classifier.data.prepare import load_prepared

    corpus = small_corpus(tmp_path / "corpus")
    notes = [(30 * i, 30 * i + 100, 41, 60 + i % 12) for i in range(4000)]  # 4,000 rows, 140 KB
    labels = write_labels(corpus / "train_labels" / "12.csv", notes, "stray_quote")
    assert labels.stat().st_size > 128 * 1024
    out = tmp_path / "out"
    argv = prepare_argv(corpus, out, tmp_path / "cache", "--validation-fraction", "0", *(["--skip-bad"] * skip_bad))
    if not skip_bad:
        code, _, err = run_cli(argv, capsys)
        assert_clear_failure(code, err, "12.csv", "row 3", "double quote")
        assert not out.exists()
        return
    with pytest.warns(UserWarning, match=r"12\.csv, row 3"):
        code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    dataset, info, _ = load_prepared(out)
    assert sorted(set(dataset["train"]["recording_id"])) == ["corpus/11", "corpus/13", "corpus/14"]
    assert "row 3" in info["skipped"][0]["reason"]


class _KilledWhileSaving(Exception):
    """Stands for the kill: the run stops right after its checkpoint at step 4 is complete."""


@pytest.fixture(scope="module")
def train_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_script", Path(__file__).resolve().parents[1] / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    """The small corpus prepared: 6 train windows (3 pieces), 2 validation windows, 2 test windows."""
    from instrument_classifier.data.prepare import build_dataset

    root = tmp_path_factory.mktemp("small_dataset")
    build_dataset(small_corpus(root / "corpus"), root / "dataset", cache_dir=root / "cache", progress=False)
    return root / "dataset"


@pytest.mark.parametrize("how", ["--resume_from_checkpoint true", "rerun without the flag"])
def test_training_killed_while_writing_a_checkpoint_resumes_from_the_last_complete_one(how, train_module,
                                                                                       small_dataset, tmp_path):
    """A run killed while ``checkpoint-6`` is written leaves it without ``trainer_state.json``.

    Before, ``--resume_from_checkpoint true`` picked it and ended in a ``ValueError`` traceback, and a rerun
    without the flag failed on the missing ``trainer_state.json``. Now both skip it, say so, and resume from
    ``checkpoint-4``, the last complete one.
    """
    import json
    import os
    import re
    import subprocess
    import sys

    from transformers import TrainerCallback

    class KillAfterCheckpoint4(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step >= 4:
                raise _KilledWhileSaving

    run = tmp_path / "run"
    args = ["--model_type", "cnn", "--config_overrides", "channels=[8,16]", "--dataset_path", str(small_dataset),
            "--output_dir", str(run), "--per_device_train_batch_size", "2", "--max_steps", "6",
            "--save_strategy", "steps", "--save_steps", "2", "--eval_strategy", "no",
            "--load_best_model_at_end", "false", "--logging_steps", "1", "--seed", "0", "--report_to", "none",
            "--disable_tqdm", "true"]
    with pytest.raises(_KilledWhileSaving):
        train_module.main(args, callbacks=[KillAfterCheckpoint4()])
    assert (run / "checkpoint-4" / "trainer_state.json").is_file() and not (run / "model.safetensors").exists()
    # killed while writing checkpoint-6: its weights half written, the trainer state (written last) not yet
    partial = run / "checkpoint-6"
    partial.mkdir()
    weights = (run / "checkpoint-4" / "model.safetensors").read_bytes()
    (partial / "model.safetensors").write_bytes(weights[: len(weights) // 2])

    extra = ["--resume_from_checkpoint", "true"] if how.startswith("--") else []
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "train.py"), *args, *extra],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"), stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in output, output[-4000:]
    assert "checkpoint-6" in output and "incomplete" in output, output[-4000:]
    assert re.search(r"resuming from \S*checkpoint-4\b", output), output[-4000:]
    assert json.loads((run / "trainer_state.json").read_text())["global_step"] == 6
    assert (run / "model.safetensors").is_file() and (run / "checkpoint-6" / "trainer_state.json").is_file()


# Truncated files in the other containers: libsndfile reads them as shorter recordings. The check
# used to know WAV and AIFF only.
TRUNCATED_CONTAINERS = {
    "rf64": ("RF64", "PCM_16"),  # cut in the data: libsndfile reports only the frames present
    "w64": ("W64", "PCM_16"),
    "ogg_page": ("OGG", "VORBIS"),  # cut between pages: the end-of-stream page is missing
    "ogg_mid_page": ("OGG", "VORBIS"),  # cut inside the last page
}


def write_truncated(path: Path, case: str) -> Path:
    """The reference in the case's container, cut short as an interrupted download would be."""
    fmt, subtype = TRUNCATED_CONTAINERS[case]
    sf.write(path, reference_audio(), SR, format=fmt, subtype=subtype)
    data = path.read_bytes()
    if case == "ogg_page":
        cut = data.rfind(b"OggS")  # the last page, which carries the end-of-stream flag
    elif case == "ogg_mid_page":
        cut = data.rfind(b"OggS") + (len(data) - data.rfind(b"OggS")) // 2
    else:
        cut = len(data) * 3 // 4
    path.write_bytes(data[:cut])
    return path


def write_streamed_flac(path: Path) -> Path:
    """The reference as FLAC whose header gives no length (total samples 0, no MD5), as a FLAC encoder
    writing to a pipe leaves it: legitimate, and it must be read in full."""
    sf.write(path, reference_audio(), SR, format="FLAC", subtype="PCM_24")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first
    fields = int.from_bytes(data[18:26], "big")  # rate (20 bits), channels (3), bits (5), total samples (36)
    data[18:26] = (fields & ~((1 << 36) - 1)).to_bytes(8, "big")
    data[26:42] = bytes(16)
    path.write_bytes(bytes(data))
    assert sf.info(path).frames == 2**63 - 1  # libsndfile: unknown length
    return path


@pytest.mark.parametrize("case", list(TRUNCATED_CONTAINERS))
@pytest.mark.parametrize("loader", list(LOADERS))
def test_truncated_files_in_every_container_are_refused(loader, case, tmp_path):
    path = write_truncated(tmp_path / f"{case}.wav", case)
    with pytest.raises(AudioError) as err:
        LOADERS[loader](path)
    assert str(path) in str(err.value) and "truncated" in str(err.value)


@pytest.mark.parametrize("case", list(TRUNCATED_CONTAINERS))
def test_predict_space_and_prepare_refuse_truncated_files_in_every_container(case, model_dir, space_classify,
                                                                              tmp_path, capsys):
    import gradio as gr

    path = write_truncated(tmp_path / f"{case}.wav", case)
    code, _, err = run_cli(["predict", path, "--model", model_dir, "--no-progress"], capsys)
    assert_clear_failure(code, err, str(path), "truncated")
    with pytest.raises(gr.Error) as refused:
        space_classify(str(path), None)
    assert path.name in refused.value.message and "truncated" in refused.value.message
    corpus = small_corpus(tmp_path / "corpus")
    write_truncated(corpus / "train_data" / "12.wav", case)
    code, _, err = run_cli(prepare_argv(corpus, tmp_path / "out", tmp_path / "cache"), capsys)
    assert_clear_failure(code, err, "12.wav", "truncated")


def test_a_streamed_flac_without_length_is_read_in_full(model_dir, space_classify, tmp_path, capsys, extractor,
                                                       ref_features):
    """Before: ``psf_fseek() failed`` (soundfile asks libsndfile where it is, which FLAC cannot say here)."""
    import json

    path = write_streamed_flac(tmp_path / "streamed.flac")
    for loader in LOADERS.values():
        audio = loader(path)
        assert len(audio) == len(reference_audio())
        assert_features_match(extractor.extract(audio), ref_features)
    out = tmp_path / "result.json"
    code, _, err = run_cli(["predict", path, "--model", model_dir, "--format", "json", "--output", out,
                            "--no-progress"], capsys)
    assert code == 0, err
    assert json.loads(out.read_text())[0]["duration_s"] == pytest.approx(badfiles.REF_SECONDS, abs=1e-3)
    clip, *_ = space_classify(str(path), None)
    assert set(clip) == set(json.loads(out.read_text())[0]["clip"])


def test_training_on_a_validation_split_roc_auc_cannot_score_falls_back_to_the_loss(train_module, small_dataset,
                                                                                 tmp_path, caplog):
    """The small corpus's validation split is one piece: in both of its windows the same instruments play, so no
    class has positives and negatives and macro ROC-AUC is NaN every epoch.

    Before, early stopping ended the run after 6 of 20 epochs with no best checkpoint; now the best checkpoint
    and early stopping follow the validation loss, and the run says so.
    """
    import json

    from instrument_classifier.data.prepare import load_prepared

    dataset, _, _ = load_prepared(small_dataset)
    labels = np.asarray(dataset["validation"]["labels"]) > 0.5
    assert not (labels.any(axis=0) & ~labels.all(axis=0)).any()  # no class can be scored
    run = tmp_path / "run"
    train_module.main(["--model_type", "cnn", "--config_overrides", "channels=[8,16]", "--dataset_path",
                       str(small_dataset), "--output_dir", str(run), "--per_device_train_batch_size", "2",
                       "--num_train_epochs", "8", "--early_stopping_patience", "2", "--seed", "0",
                       "--report_to", "none", "--disable_tqdm", "true"])
    assert "validation loss" in caplog.text and "ROC-AUC" in caplog.text, caplog.text[-3000:]
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] is not None and state["best_metric"] == state["best_metric"]  # not NaN


BROKEN_CONFIGS = {  # case -> (file, field, value); the bundled CNN with one field broken
    "window_frames_1e8": ("config.json", "window_frames", 100_000_000),  # a 191-GiB MemoryError
    "std_0": ("preprocessor_config.json", "std", 0.0),  # every score NaN; --format json wrote NaN
}


def _broken_model(dest: Path, case: str) -> Path:
    import json

    name, field, value = BROKEN_CONFIGS[case]
    shutil.copytree(Path(__file__).resolve().parents[1] / "instrument_classifier" / "pretrained" / "cnn", dest,
                    ignore=shutil.ignore_patterns("figures"))
    config = json.loads((dest / name).read_text())
    if isinstance(config[field], list):
        config[field][3] = value
    else:
        config[field] = value
    (dest / name).write_text(json.dumps(config))
    return dest


@pytest.mark.parametrize("case", list(BROKEN_CONFIGS))
def test_broken_model_configs_are_refused_on_load_naming_file_and_field(case, audio_files, tmp_path, capsys):
    import json

    from instrument_classifier import space_app
    from instrument_classifier.evaluation.evaluate_models import EvaluationError, load_model_for_evaluation

    model = _broken_model(tmp_path / "model", case)
    name, field, _ = BROKEN_CONFIGS[case]
    out = tmp_path / "result.json"
    try:
        code, _, err = run_cli(["predict", audio_files["reference"], "--model", model, "--format", "json",
                                "--output", out, "--no-progress"], capsys)
    except MemoryError as exc:
        pytest.fail(f"MemoryError: {exc}")
    if code == 0:
        json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON output"))
    assert_clear_failure(code, err, str(model / name), field)
    with pytest.raises(EvaluationError, match=field):
        load_model_for_evaluation(str(model))
    with pytest.raises(RuntimeError, match=field):  # the Space's loader, at start-up
        space_app.build_demo(models=[str(model)], examples_dir=None)


def test_evaluate_on_a_device_this_torch_does_not_have_is_a_message(model_dir, small_dataset, tmp_path, capsys):
    """``evaluate --device cuda`` on a CPU-only torch ended in torch's ``AssertionError`` traceback."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for a torch without it")
    out = tmp_path / "report"
    code, _, err = run_cli(["evaluate", "--model", model_dir, "--dataset", small_dataset, "--output", out,
                            "--device", "cuda"], capsys)
    assert_clear_failure(code, err, "cuda")
    assert not out.exists()
