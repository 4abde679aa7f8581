"""The ensemble of the bundled models: tuning on validation, loading, and timelines that blend the members'."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import instrument_classifier
from instrument_classifier.ensemble import CONFIG_NAME, EnsembleConfig, InstrumentEnsemble
from instrument_classifier.evaluation.tuning import tune_ensemble, weight_grid
from instrument_classifier.inference import detected_segments, load_model, predict_timeline
from instrument_classifier.evaluation.predict_split import predict_split
from instrument_classifier.recipes.common import RecipeSettings

PRETRAINED = Path(instrument_classifier.__file__).parent / "pretrained"
EXAMPLE = Path(__file__).resolve().parents[1] / "space" / "examples" / "beethoven_wind_sextet.ogg"


def test_weight_grid_covers_the_simplex_first_member_first():
    assert weight_grid(2, 0.5) == [(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)]
    grid = weight_grid(3, 0.25)
    assert len(grid) == 15 and all(np.isclose(sum(w), 1.0) for w in grid)


def test_tuning_weights_the_members_by_what_each_knows():
    """Member A ranks class 0 well and class 1 at random, member B the reverse: the blend needs both; a member
    that only adds noise gets no weight."""
    rng = np.random.default_rng(0)
    y = rng.random((400, 2)) < 0.4
    informative = 1 / (1 + np.exp(-(4 * y - 2 + rng.normal(0, 2, y.shape))))  # probabilities that rank y
    noise = rng.random(y.shape)
    a = np.stack([informative[:, 0], noise[:, 1]], axis=1)
    b = np.stack([noise[:, 0], informative[:, 1]], axis=1)
    recordings, starts = np.repeat(np.arange(40), 10), np.tile(np.arange(10) * 256, 40)

    both = tune_ensemble(y, [a, b], recordings, starts, 256)
    assert 0.3 <= both["weights"][0] <= 0.7 and np.isclose(sum(both["weights"]), 1.0)
    assert both["validation"]["roc_auc_macro"] > max(both["validation"]["member_roc_auc_macro"]) + 0.1
    assert len(both["thresholds"]) == 2 and both["context"].thresholds is not None

    alone = tune_ensemble(y, [informative, rng.random(y.shape)], recordings, starts, 256)
    assert alone["weights"] == [1.0, 0.0]


def test_bundled_ensemble_was_tuned_on_validation_by_todays_recipe():
    folder = PRETRAINED / "ensemble"
    config = EnsembleConfig.load(folder)
    assert config.members == ["../cnn", "../transformer"] and np.isclose(sum(config.weights), 1.0)
    assert 0.0 < config.weights[1] < 1.0  # both members contribute
    # the blend beat each member on validation, the reason it exists
    val = config.validation
    assert val["roc_auc_macro"] > max(val["member_roc_auc_macro"])
    recorded = json.loads((folder / "recipe_results.json").read_text())
    current = {k: v for k, v in json.loads(json.dumps(asdict(RecipeSettings()))).items() if k != "num_proc"}
    assert {k: v for k, v in recorded["settings"].items() if k != "num_proc"} == current
    card = (folder / "README.md").read_text()
    held_out = recorded["results"]["heldout"]
    assert (f"| held-out library (merlin) + room/noise | {held_out['roc_auc_macro']:.3f} | "
            f"{held_out['f1_micro']:.3f} |") in card


@pytest.fixture(scope="module")
def bundled():
    ensemble, extractor = load_model(PRETRAINED / "ensemble")
    return ensemble, extractor


def test_ensemble_timeline_is_the_weighted_blend_of_its_members(bundled):
    ensemble, extractor = bundled
    assert isinstance(ensemble, InstrumentEnsemble) and extractor is None
    audio, sr = sf.read(EXAMPLE, dtype="float32")
    audio = audio[: 8 * sr]  # three windows, the last one padded
    timeline = predict_timeline(ensemble, None, audio, sampling_rate=sr)
    runs = [predict_timeline(m, fe, audio, sampling_rate=sr) for m, fe in ensemble.members]
    w = ensemble.config.weights
    np.testing.assert_allclose(timeline.window_probs, w[0] * runs[0].window_probs + w[1] * runs[1].window_probs,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(timeline.frame_probs, w[0] * runs[0].frame_probs + w[1] * runs[1].frame_probs,
                               rtol=1e-5, atol=1e-6)
    assert timeline.frame_probs.shape == runs[0].frame_probs.shape
    np.testing.assert_array_equal(timeline.window_times_s, runs[0].window_times_s)
    # decisions at the ensemble's own thresholds, not a member's
    assert timeline.thresholds == ensemble.config.thresholds
    starts = np.round(timeline.window_times_s * timeline.frame_rate).astype(int)
    expected = detected_segments(timeline.frame_probs, timeline.frame_rate, timeline.labels,
                                 ensemble.config.thresholds, list(timeline.clip.values()), timeline.window_probs,
                                 starts, ensemble.config.window_frames, duration_s=timeline.duration_s)
    assert timeline.segments == expected and expected
    # the recording context, tuned for the blend, applies as for a single model
    with_context = predict_timeline(ensemble, None, audio, sampling_rate=sr, context=True)
    assert with_context.context is not None
    if ensemble.config.context["radius_windows"] is None and ensemble.config.context["weight"] == 1.0:
        assert np.allclose(with_context.window_probs, with_context.window_probs[0])


def test_ensemble_decodes_a_file_once_and_shows_one_bar_named_after_it(bundled, tmp_path, monkeypatch, capsys):
    """One decode for all members, one progress bar per file (named after it, not "instruments" per member), in
    whole seconds that end at the duration (it was "98.20000000000002 s" for a 96.4-s file)."""
    import tqdm.auto

    from instrument_classifier import inference

    ensemble, _ = bundled
    audio, sr = sf.read(EXAMPLE, dtype="float32")
    path = tmp_path / "sextet twice.wav"
    sf.write(path, np.concatenate([audio, audio, audio[: int(0.4 * sr)]]), sr)  # 20.4 s: the last window padded
    decodes, bars = [], []
    real_stream_audio = inference.stream_audio
    monkeypatch.setattr(inference, "stream_audio", lambda *a, **k: decodes.append(a) or real_stream_audio(*a, **k))

    class Recorded(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.counts = []
            bars.append(self)

        def update(self, n=1):
            super().update(n)
            self.counts.append(self.n)

    monkeypatch.setattr(inference, "tqdm", Recorded)  # the progress bar inference draws
    timeline = predict_timeline(ensemble, None, str(path), progress=True)
    assert len(decodes) == 1
    assert [bar.desc for bar in bars] == ["sextet twice.wav"]
    bar = bars[0]
    assert bar.total == 20 and bar.n == 20 and max(bar.counts) == 20 and all(isinstance(n, int) for n in bar.counts)
    assert "0000000" not in capsys.readouterr().err
    # the shared decode gives what each member decoding on its own gave
    runs = [predict_timeline(m, fe, str(path)) for m, fe in ensemble.members]
    assert len(decodes) == 3
    w = ensemble.config.weights
    np.testing.assert_allclose(timeline.window_probs, w[0] * runs[0].window_probs + w[1] * runs[1].window_probs,
                               rtol=1e-5, atol=1e-6)
    # longer than the decode cache: each member decodes again, with the same result
    monkeypatch.setattr(inference, "DECODED_CACHE_MB", 1)
    again = predict_timeline(ensemble, None, str(path))
    assert len(decodes) == 5
    np.testing.assert_array_equal(again.window_probs, timeline.window_probs)


def test_ensemble_folder_errors_name_the_file_and_member(tmp_path):
    folder = tmp_path / "ensemble"
    shutil.copytree(PRETRAINED / "ensemble", folder)
    config = json.loads((folder / CONFIG_NAME).read_text())

    (folder / CONFIG_NAME).write_text(json.dumps({**config, "weights": [0.5, 0.7]}))
    with pytest.raises(ValueError, match=rf"{CONFIG_NAME}.*sum to 1"):
        load_model(folder)

    # members resolve relative to the ensemble folder: here they are missing
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"member '../cnn' could not be loaded"):
        load_model(folder)

    # a member with other labels does not fit
    (folder / CONFIG_NAME).write_text(json.dumps({**config, "members": [str(PRETRAINED / "cnn"),
                                                                        str(PRETRAINED / "transformer")],
                                                  "labels": config["labels"][:-1] + ["Tuba"]}))
    with pytest.raises(ValueError, match="does not fit the ensemble"):
        load_model(folder)


def test_evaluate_scores_an_ensemble_as_the_blend_of_its_members(rendered_corpus, tmp_path):
    """`evaluate --model pretrained/ensemble`: each member on the dataset matching its features, then blended."""
    from instrument_classifier.data.prepare import build_dataset
    from instrument_classifier.evaluation.evaluate_models import evaluate_models
    from instrument_classifier.evaluation.metrics import compute_instrument_metrics
    from instrument_classifier.modeling.feature_extraction_instrument import InstrumentFeatureExtractor

    datasets = {}
    for member in ("cnn", "transformer"):
        extractor = InstrumentFeatureExtractor.from_pretrained(PRETRAINED / member)
        datasets[member] = tmp_path / member
        build_dataset(rendered_corpus, datasets[member], taxonomy="musicnet11", feature_extractor=extractor,
                      cache_dir=tmp_path / "cache", progress=False)
    results = evaluate_models([PRETRAINED / "ensemble", PRETRAINED / "cnn"], dataset=list(datasets.values()),
                              split="test", output_dir=tmp_path / "report", progress=False)
    config = EnsembleConfig.load(PRETRAINED / "ensemble")
    runs = {m: predict_split(PRETRAINED / m, datasets[m], "test") for m in datasets}
    y = runs["cnn"][0]
    blended = config.weights[0] * runs["cnn"][1] + config.weights[1] * runs["transformer"][1]
    expected = compute_instrument_metrics(y, blended, thresholds=config.thresholds, labels=config.labels)
    got = results["ensemble"]["window"]
    assert got["f1_micro"] == pytest.approx(expected["f1_micro"], abs=1e-6)
    assert got["roc_auc_macro"] == pytest.approx(expected["roc_auc_macro"], abs=1e-4)
    assert results["ensemble"]["thresholds"] == pytest.approx(config.thresholds)
    assert "context" in results["ensemble"] and (tmp_path / "report" / "roc_ensemble.png").is_file()
    # the CNN alone, in the same run, is scored as it would be on its own
    alone = evaluate_models(PRETRAINED / "cnn", dataset=datasets["cnn"], split="test", progress=False)
    assert results["cnn"]["window"] == alone["cnn"]["window"]


def test_members_with_different_hops_blend_on_the_first_members_grid(tmp_path):
    """Members may read frames at different hops when their windows hold the same samples (musicnn's 16-ms frames
    and YAMNet's 8-ms ones): windows blend one to one, and each frame of the ensemble's grid takes the other
    member's frame at the same time. A member whose window holds other samples is refused."""
    cnn, extractor = load_model(PRETRAINED / "cnn")
    fine = tmp_path / "cnn-hop256"
    cnn.config.window_frames, cnn.config.hop_length = 2 * cnn.config.window_frames, cnn.config.hop_length // 2
    cnn.save_pretrained(fine)
    extractor.hop_length = extractor.hop_length // 2
    extractor.save_pretrained(fine)
    folder = tmp_path / "ensemble"
    config = EnsembleConfig.load(PRETRAINED / "ensemble")
    config.members, config.weights = [str(PRETRAINED / "cnn"), str(fine)], [0.6, 0.4]
    folder.mkdir()
    config.save(folder)
    ensemble, _ = load_model(folder)
    audio, sr = sf.read(EXAMPLE, dtype="float32")
    audio = audio[: 13 * sr]  # five windows of 3 s, the last one padded
    timeline = predict_timeline(ensemble, None, audio, sampling_rate=sr)
    coarse, fine_run = [predict_timeline(m, fe, audio, sampling_rate=sr) for m, fe in ensemble.members]
    assert len(fine_run.frame_probs) == 2 * len(coarse.frame_probs) - 1
    np.testing.assert_allclose(timeline.window_probs, 0.6 * coarse.window_probs + 0.4 * fine_run.window_probs,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(timeline.frame_probs, 0.6 * coarse.frame_probs + 0.4 * fine_run.frame_probs[::2],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(timeline.window_times_s, coarse.window_times_s)
    np.testing.assert_allclose(fine_run.window_times_s, coarse.window_times_s)

    config.members = [str(PRETRAINED / "cnn"), str(PRETRAINED / "cnn")]
    cnn.config.window_frames = cnn.config.window_frames + 2
    cnn.save_pretrained(fine)
    config.members[1] = str(fine)
    config.save(folder)
    with pytest.raises(ValueError, match="does not fit the ensemble"):
        load_model(folder)


def test_evaluate_blends_members_of_different_hops_on_the_same_windows(rendered_corpus, tmp_path):
    """`evaluate --dataset A B` with an ensemble whose members read frames at different hops (windows of the same
    samples): each member on its own dataset, windows blended one to one, frames on the first member's grid."""
    from instrument_classifier.data.prepare import build_dataset
    from instrument_classifier.evaluation.evaluate_models import evaluate_models
    from instrument_classifier.evaluation.metrics import compute_instrument_metrics
    from instrument_classifier.modeling.feature_extraction_instrument import InstrumentFeatureExtractor

    cnn, extractor = load_model(PRETRAINED / "cnn")
    window = int(cnn.config.window_frames)
    fine = tmp_path / "cnn-hop256"
    cnn.config.window_frames, cnn.config.hop_length = 2 * window, cnn.config.hop_length // 2
    cnn.save_pretrained(fine)
    fine_extractor = InstrumentFeatureExtractor.from_pretrained(PRETRAINED / "cnn")
    fine_extractor.hop_length //= 2
    fine_extractor.save_pretrained(fine)
    datasets = {"cnn": tmp_path / "coarse", "fine": tmp_path / "fine"}
    for (name, path), fe, frames in zip(datasets.items(), (extractor, fine_extractor), (window, 2 * window)):
        build_dataset(rendered_corpus, path, taxonomy="musicnet11", feature_extractor=fe, window_frames=frames,
                      hop_frames=frames, cache_dir=tmp_path / "cache", progress=False)
    config = EnsembleConfig.load(PRETRAINED / "ensemble")
    config.members, config.weights = [str(PRETRAINED / "cnn"), str(fine)], [0.6, 0.4]
    (tmp_path / "ensemble").mkdir()
    config.save(tmp_path / "ensemble")
    results = evaluate_models([tmp_path / "ensemble", PRETRAINED / "cnn", fine], dataset=list(datasets.values()),
                              split="test", output_dir=tmp_path / "report", progress=False)
    y, coarse = predict_split(PRETRAINED / "cnn", datasets["cnn"], "test")
    _, fine_windows = predict_split(fine, datasets["fine"], "test")
    expected = compute_instrument_metrics(y, 0.6 * coarse + 0.4 * fine_windows, thresholds=config.thresholds,
                                          labels=config.labels)
    got = results["ensemble"]["window"]
    assert got["f1_micro"] == pytest.approx(expected["f1_micro"], abs=1e-6)
    assert got["roc_auc_macro"] == pytest.approx(expected["roc_auc_macro"], abs=1e-4)
    assert results["cnn-hop256"]["window"]["roc_auc_macro"] is not None
