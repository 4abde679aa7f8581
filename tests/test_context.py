"""Recording context: neighbour means, tuning on validation, and its use by predict, evaluate and the recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SR, make_musicnet, synth_notes
from instrument_classifier import cli
from instrument_classifier.context import RecordingContext, blend, neighbour_means
from instrument_classifier.evaluation.tuning import tune_context
from instrument_classifier.data.prepare import build_dataset, load_prepared
from instrument_classifier.evaluation.evaluate_models import evaluate_models, format_summary
from instrument_classifier.evaluation.metrics import compute_instrument_metrics
from instrument_classifier.inference import predict_timeline, segments_from_probs
from instrument_classifier.modeling import (
    InstrumentCNNConfig,
    InstrumentCNNForAudioClassification,
    InstrumentFeatureExtractor,
)
from instrument_classifier.recipes.train_models import add_missing_context

NOTES = [(0, 2 * SR, 1, 48), (SR // 2, 5 * SR, 41, 64), (3 * SR, 8 * SR, 74, 79)]


def test_neighbour_means_are_direct_means_in_any_row_order_and_with_overlapping_windows():
    rng = np.random.default_rng(0)
    recordings = np.array(["a"] * 7 + ["b"] * 5)
    starts = np.array(list(range(0, 7 * 128, 128)) + list(range(0, 5 * 128, 128)))  # half-window hop of 256
    probs = rng.random((12, 3)).astype(np.float32)
    order = rng.permutation(12)
    for radius in (0, 1, 2, None):
        got = neighbour_means(probs[order], recordings[order], starts[order], radius, window_frames=256)
        for row, i in enumerate(order):
            near = [j for j in range(12) if recordings[j] == recordings[i]
                    and (radius is None or abs(starts[j] - starts[i]) <= radius * 256)]
            np.testing.assert_allclose(got[row], probs[near].mean(axis=0), rtol=1e-6)
    # one recording of consecutive windows by default; radius 0 leaves every window as it is
    np.testing.assert_allclose(neighbour_means(probs, radius_windows=0), probs, rtol=1e-6)
    with pytest.raises(ValueError, match="12 windows, but 3 recordings"):
        neighbour_means(probs, ["a", "a", "b"], None, 1)


def _validation_like(seed: int = 0):
    """6 recordings x 20 windows: class 0 plays throughout recordings 0-2 (noisy scores); class 1 never plays,
    with isolated confident false alarms; class 2 plays in every window."""
    rng = np.random.default_rng(seed)
    recordings = np.repeat(np.arange(6), 20)
    starts = np.tile(np.arange(20) * 256, 6)
    y = np.zeros((120, 3), dtype=np.int64)
    y[:60, 0] = 1
    y[:, 2] = 1
    p = np.empty((120, 3), dtype=np.float32)
    p[:, 0] = np.clip(np.where(y[:, 0] == 1, 0.6, 0.4) + rng.normal(0, 0.2, 120), 0.01, 0.99)
    p[:, 1] = 0.05
    p[rng.choice(120, 12, replace=False), 1] = 0.9  # isolated false alarms
    p[:, 2] = 0.9
    return y, p, recordings, starts


def test_tuned_context_beats_the_windows_alone_on_validation_and_its_thresholds_are_for_the_blend():
    y, p, recordings, starts = _validation_like()
    context = tune_context(y, p, recordings, starts, window_frames=256)
    assert context.validation_f1_micro > context.validation_f1_micro_without + 0.05
    blended = context.apply(p, recordings, starts, 256)
    scored = compute_instrument_metrics(y, blended, thresholds=context.thresholds)
    assert scored["f1_micro"] == pytest.approx(context.validation_f1_micro)
    # what the blend is
    means = neighbour_means(p, recordings, starts, context.radius_windows, 256)
    np.testing.assert_allclose(blended, p ** (1 - context.weight) * means ** context.weight, rtol=1e-5)


def test_ties_go_to_the_narrowest_context_and_bad_settings_are_refused():
    y, _, recordings, starts = _validation_like()
    perfect = np.where(y == 1, 0.9, 0.1).astype(np.float32)  # every context scores F1 = 1: nothing to gain
    context = tune_context(y, perfect, recordings, starts, 256)
    assert (context.radius_windows, context.weight) == (1, 0.25)
    assert context.describe() == "+-1 windows, weight 0.25"
    for bad, match in (({"weight": 0.0}, "weight"), ({"radius_windows": -1}, "radius"),
                       ({"thresholds": [1.5, 0.5, 0.5]}, "thresholds")):
        with pytest.raises(ValueError, match=match):
            RecordingContext(**{"radius_windows": 2, "weight": 0.5, "thresholds": [0.5] * 3, **bad})
    with pytest.raises(ValueError, match="context thresholds must be 12"):
        InstrumentCNNConfig(context={"radius_windows": None, "weight": 1.0, "thresholds": [0.5]})
    assert RecordingContext.from_config(InstrumentCNNConfig()) is None


def _model_with_context(context, window_frames: int = 64):
    torch.manual_seed(0)
    config = InstrumentCNNConfig(window_frames=window_frames, context=context)
    return InstrumentCNNForAudioClassification(config).eval()


def test_predict_with_context_blends_windows_and_frames_as_the_config_says(tmp_path):
    audio = synth_notes(NOTES, 9 * SR + 321, seed=2)
    fe = InstrumentFeatureExtractor()
    fe = fe.fit_normalization([fe.extract(audio)])
    model = _model_with_context({"radius_windows": 1, "weight": 0.5, "thresholds": [0.3] * 12})
    plain = predict_timeline(model, fe, audio)
    with_context = predict_timeline(model, fe, audio, context=True)

    starts = np.round(plain.window_times_s * fe.frame_rate).astype(int)  # 12 full windows, one padded with silence
    assert len(starts) == 13 and starts.tolist() == list(range(0, 13 * 64, 64)) and len(plain.frame_probs) < 13 * 64
    means = neighbour_means(plain.window_probs, None, starts, 1, 64)
    np.testing.assert_allclose(with_context.window_probs, np.sqrt(plain.window_probs * means), rtol=1e-4)
    # every frame is blended with the neighbourhood of the window it was taken from (the first that holds it)
    owner = np.minimum(np.arange(len(plain.frame_probs)) // 64, 12)
    np.testing.assert_allclose(with_context.frame_probs, np.sqrt(plain.frame_probs * means[owner]), rtol=1e-4)
    top_two = np.sort(with_context.window_probs, 0)[-2:].mean(0)
    assert with_context.clip == pytest.approx(dict(zip(plain.labels, top_two)), abs=1e-6)
    # segments at the context's thresholds, not config.thresholds
    assert with_context.segments == segments_from_probs(with_context.frame_probs, fe.frame_rate, plain.labels,
                                                        [0.3] * 12, duration_s=plain.duration_s)
    assert with_context.to_dict()["context"] == "+-1 windows, weight 0.5" and "context" not in plain.to_dict()

    no_context = _model_with_context(None)
    with pytest.raises(ValueError, match="no recording context"):
        predict_timeline(no_context, fe, audio, context=True)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("context")
    build_dataset(make_musicnet(root / "corpus"), root / "dataset", cache_dir=root / "cache", progress=False)
    dataset, _, extractor = load_prepared(root / "dataset")
    return root, dataset, extractor


def _save(folder: Path, extractor, context=None) -> Path:
    torch.manual_seed(0)
    config = InstrumentCNNConfig(feature_size=extractor.feature_size, context=context)
    InstrumentCNNForAudioClassification(config).eval().save_pretrained(folder)
    extractor.save_pretrained(folder)
    return folder


def test_evaluate_scores_a_model_with_its_context_as_predict_applies_it(prepared, tmp_path):
    root, dataset, extractor = prepared
    context = {"radius_windows": None, "weight": 0.75, "thresholds": [0.45] * 12}
    folder = _save(tmp_path / "cnn", extractor, context)
    results = evaluate_models([str(folder)], dataset=root / "dataset", split="test", progress=False)
    entry = results["cnn"]
    assert {k: entry["context"]["settings"][k] for k in context} == context

    from transformers import AutoModelForAudioClassification

    model = AutoModelForAudioClassification.from_pretrained(folder).eval()
    rows = dataset["test"].with_format("numpy")[:]
    with torch.inference_mode():
        out = model(input_features=torch.from_numpy(extractor.normalize(rows["input_features"])))
    window_p = torch.sigmoid(out.logits).numpy()
    means = neighbour_means(window_p, rows["recording_id"], rows["start_frame"], None, model.config.window_frames)
    labels = list(model.config.label2id)
    expected = compute_instrument_metrics(rows["labels"].astype(int), blend(window_p, means, 0.75), [0.45] * 12,
                                          labels)
    assert entry["context"]["window"]["f1_micro"] == pytest.approx(expected["f1_micro"], abs=1e-6)
    assert entry["context"]["window"]["roc_auc_macro"] == pytest.approx(expected["roc_auc_macro"], abs=1e-6)
    frame_p = torch.sigmoid(out.frame_logits).numpy()
    frames = blend(frame_p, means[:, None, :], 0.75).reshape(-1, 12)
    expected_frames = compute_instrument_metrics(rows["frame_labels"].reshape(-1, 12).astype(int), frames,
                                                 [0.45] * 12, labels)
    assert entry["context"]["frame"]["f1_micro"] == pytest.approx(expected_frames["f1_micro"], abs=1e-6)
    assert "window+ctx" in format_summary(results) and "frame+ctx" in format_summary(results)
    # a model without a context is scored without one
    plain = evaluate_models([str(_save(tmp_path / "plain", extractor))], dataset=root / "dataset", progress=False)
    assert "context" not in plain["plain"] and "window+ctx" not in format_summary(plain)


def test_predict_cli_context_flag(prepared, tmp_path, capsys):
    root, _, extractor = prepared
    wav = next((root / "corpus" / "test_data").glob("*.wav"))
    plain = _save(tmp_path / "plain", extractor)
    assert cli.main(["predict", "--model", str(plain), str(wav), "--context"]) == 2
    assert "has no recording context" in capsys.readouterr().err
    tuned = _save(tmp_path / "tuned", extractor, {"radius_windows": 2, "weight": 1.0, "thresholds": [0.5] * 12})
    assert cli.main(["predict", "--model", str(tuned), str(wav), "--context", "--format", "json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["context"] == "+-2 windows, weight 1"
    assert cli.main(["predict", "--model", str(tuned), str(wav), "--format", "json"]) == 0
    assert "context" not in json.loads(capsys.readouterr().out)[0]


def test_recipe_tunes_a_context_into_a_model_trained_without_one(prepared, tmp_path):
    root, dataset, extractor = prepared
    folder = _save(tmp_path / "cnn", extractor)
    assert add_missing_context(folder, root / "dataset") is True
    stored = json.loads((folder / "config.json").read_text())["context"]
    from instrument_classifier.evaluation.predict_split import predict_split

    y, p = predict_split(folder, root / "dataset", "validation")
    rows = dataset["validation"].select_columns(["recording_id", "start_frame"])
    expected = tune_context(y, p, rows["recording_id"], rows["start_frame"], 256)
    assert (stored["radius_windows"], stored["weight"]) == (expected.radius_windows, expected.weight)
    np.testing.assert_allclose(stored["thresholds"], expected.thresholds, atol=1e-6)
    before = (folder / "config.json").read_text()
    assert add_missing_context(folder, root / "dataset") is False  # kept as it is
    assert (folder / "config.json").read_text() == before
