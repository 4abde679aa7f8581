"""Saved model folders: trust_remote_code loading without the package, and pipeline("audio-classification")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap

import numpy as np
import pytest
import soxr
import torch

from conftest import SR, synth_notes
from instrument_classifier.modeling import MODEL_CLASSES, InstrumentFeatureExtractor
from instrument_classifier.modeling.feature_extraction_instrument import default_feature_settings


#: The classifiers on frozen pretrained front ends, each on its own log-mel features.
FROZEN = ("musicnn", "yamnet", "efficientat")


def save_model_folder(folder, model_type: str, taxonomy: str = "musicnet11"):
    """A model with random weights and a fitted feature extractor, saved the way models are distributed."""
    config_class, model_class = MODEL_CLASSES[model_type]
    torch.manual_seed(1)
    rng = np.random.default_rng(0)
    if model_type in FROZEN:  # their own log-mel input, unnormalised; a random (seeded) backbone
        # short windows keep the tests fast (EfficientAT's network needs 32 of its frames: 160 of its 2-ms ones)
        window = 320 if model_type == "efficientat" else 128
        model = model_class(config_class(taxonomy=taxonomy, window_frames=window)).eval()
        with torch.no_grad():
            model.classifier.weight.normal_(0.0, 0.05)  # the head starts at zero: give the logits something to show
        if hasattr(model, "round_backbone_to_storage"):  # as new_classifier does: the folder stores it in float16
            model.round_backbone_to_storage()
        fe = InstrumentFeatureExtractor(**default_feature_settings(model_type))
    else:
        model = model_class(config_class(taxonomy=taxonomy, window_frames=128)).eval()
        fe = InstrumentFeatureExtractor().fit_normalization([rng.normal(-20, 40, size=(500, 13))])
    model.save_pretrained(folder)
    fe.save_pretrained(folder)
    return model, fe


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory):
    """model type -> (folder, model, feature extractor) for both models."""
    out = {}
    for model_type in sorted(MODEL_CLASSES):
        folder = tmp_path_factory.mktemp(f"model_{model_type}")
        out[model_type] = (folder, *save_model_folder(folder, model_type))
    return out


@pytest.fixture(params=sorted(MODEL_CLASSES))
def model_folder(request, model_folders):
    return model_folders[request.param]


@pytest.fixture(params=sorted(t for t in MODEL_CLASSES if t not in FROZEN))
def mfcc_model_folder(request, model_folders):
    """The models on 44.1-kHz MFCC-grid features: the tests that build their windows by hand at that rate."""
    return model_folders[request.param]


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """7 s of piano, violin and flute tones at 44.1 kHz (longer than two 128-frame windows)."""
    notes = [(0, 3 * SR, 1, 48), (SR, 5 * SR, 41, 67), (4 * SR, 7 * SR, 74, 79)]
    return synth_notes(notes, 7 * SR, seed=5)


# The child sees site-packages without running its .pth files (-S), so the editable install of
# instrument_classifier is not importable, and not the repo either (-I, cwd elsewhere).
FRESH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.append({site!r})
    import importlib.util
    assert importlib.util.find_spec("instrument_classifier") is None, "package still importable"
    import numpy as np, torch
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, pipeline

    out = {out!r}
    wave = np.load(out + "/wave.npy")
    results = {{}}
    for name, folder in {folders!r}.items():
        result = results[name] = {{}}
        try:
            AutoModelForAudioClassification.from_pretrained(folder)
        except Exception as exc:
            result["without_trust"] = [type(exc).__name__, str(exc)]
        model = AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True).eval()
        fe = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
        feats = fe(wave, sampling_rate=22050, return_tensors="pt")["input_features"]
        with torch.no_grad():
            output = model(feats)
        np.save(f"{{out}}/{{name}}_features.npy", feats.numpy())
        np.save(f"{{out}}/{{name}}_logits.npy", output.logits.numpy())
        np.save(f"{{out}}/{{name}}_frame_logits.npy", output.frame_logits.numpy())
        classifier = pipeline("audio-classification", model=folder, trust_remote_code=True)
        result["pipeline"] = classifier({{"raw": wave, "sampling_rate": 22050}})
        result["classes"] = [type(model).__module__, type(fe).__module__, type(classifier).__module__]
    with open(out + "/result.json", "w") as f:
        json.dump(results, f)
    """
)


def test_fresh_environment_loads_with_trust_remote_code_and_gives_identical_logits(model_folders, clip, tmp_path):
    wave = soxr.resample(clip, SR, 22050).astype(np.float32)
    np.save(tmp_path / "wave.npy", wave)
    folders = {name: str(folder) for name, (folder, _, _) in model_folders.items()}
    script = FRESH_SCRIPT.format(site=sysconfig.get_paths()["purelib"], folders=folders, out=str(tmp_path))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "result.json").read_text())

    for name, (folder, model, fe) in model_folders.items():
        result = results[name]
        # the classes came from the folder's copied code (transformers_modules), not from this package
        assert all(m.startswith("transformers_modules.") for m in result["classes"]), result["classes"]
        # without trust_remote_code: transformers' standard refusal
        error, message = result["without_trust"]
        assert error == "ValueError" and "trust_remote_code=True" in message and "custom code" in message

        ours = fe(wave, sampling_rate=22050, return_tensors="pt")["input_features"]
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}_features.npy"), ours.numpy())
        with torch.no_grad():
            expected = model(ours)
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}_logits.npy"), expected.logits.numpy())
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}_frame_logits.npy"), expected.frame_logits.numpy())
        assert sorted(r["label"] for r in result["pipeline"]) == sorted(model.config.label2id)


def test_pipeline_scores_every_label_with_sigmoid(mfcc_model_folder, clip):
    from transformers import pipeline

    folder, model, fe = mfcc_model_folder
    classifier = pipeline("audio-classification", model=str(folder), trust_remote_code=True)
    result = classifier(clip[: 2 * SR])  # a bare array is taken to be at the model rate
    assert [r["label"] for r in result] != [] and len(result) == model.config.num_labels == 11
    assert {r["label"] for r in result} == set(model.config.label2id)
    scores = [r["score"] for r in result]
    assert scores == sorted(scores, reverse=True) and all(0.0 < s < 1.0 for s in scores)
    # sigmoid of the model's logits: independent per label (they do not sum to 1)
    with torch.no_grad():  # 173 frames, two windows of 128: the second filled up with silence
        feats = fe(silence_to_window_end(clip[: 2 * SR], model.config.window_frames, fe.hop_length),
                   sampling_rate=SR, return_tensors="pt")["input_features"]
        assert feats.shape[1] == 2 * model.config.window_frames
        probs = torch.sigmoid(model(feats).logits[0])  # the maximum over the two windows
    expected = {model.config.id2label[i]: float(p) for i, p in enumerate(probs)}
    for r in result:
        assert r["score"] == pytest.approx(expected[r["label"]], abs=1e-5)
    assert classifier(clip[: 2 * SR], top_k=3) == result[:3]


@pytest.mark.parametrize("rate", [16000, 22050, 48000])
def test_pipeline_resamples_any_rate(mfcc_model_folder, clip, rate):
    from transformers import pipeline

    folder, model, fe = mfcc_model_folder
    classifier = pipeline("audio-classification", model=str(folder), trust_remote_code=True)
    audio = soxr.resample(clip, SR, rate).astype(np.float32)
    as_dict = classifier({"raw": audio, "sampling_rate": rate})
    as_kwarg = classifier(audio, sampling_rate=rate)
    stereo = classifier({"array": np.stack([audio, audio], axis=1), "sampling_rate": rate})
    assert as_dict == as_kwarg
    assert [r["label"] for r in stereo] == [r["label"] for r in as_dict]
    native = {r["label"]: r["score"] for r in classifier(clip)}
    # resampled input gives (nearly) the same scores as the 44.1 kHz original
    for r in as_dict:
        assert r["score"] == pytest.approx(native[r["label"]], abs=0.05)


def silence_to_window_end(audio: np.ndarray, window: int, hop: int) -> np.ndarray:
    """The audio followed by zeros up to the end of its last window, as prepare pads a recording."""
    total = -(-(1 + len(audio) // hop) // window) * window
    return np.pad(audio, (0, (total - 1) * hop - len(audio)))


def test_pipeline_long_clip_is_the_mean_of_the_two_highest_windows(mfcc_model_folder, clip):
    from transformers import pipeline

    folder, model, fe = mfcc_model_folder
    classifier = pipeline("audio-classification", model=str(folder), trust_remote_code=True)
    window = model.config.window_frames
    assert fe.num_frames(len(clip)) % window  # the last window is partly silence
    feats = fe(silence_to_window_end(clip, window, fe.hop_length), sampling_rate=SR,
               return_tensors="pt")["input_features"]
    assert feats.shape[1] > 2 * window and feats.shape[1] % window == 0
    starts = list(range(0, feats.shape[1], window))
    with torch.no_grad():
        per_window = torch.stack([torch.sigmoid(model(feats[:, s : s + window]).logits[0]) for s in starts])
    expected = per_window.sort(0, descending=True).values[:2].mean(0)  # three windows or more
    result = {r["label"]: r["score"] for r in classifier(clip)}
    for i, label in model.config.id2label.items():
        assert result[label] == pytest.approx(float(expected[i]), abs=1e-5)


def test_pipeline_reads_files(model_folder, clip, tmp_path):
    import soundfile as sf
    from transformers import pipeline

    folder, model, fe = model_folder
    path = tmp_path / "clip.wav"
    sf.write(path, soxr.resample(clip, SR, 32000), 32000, subtype="FLOAT")
    classifier = pipeline("audio-classification", model=str(folder), trust_remote_code=True)
    from_file = classifier(str(path))
    from_array = classifier({"raw": sf.read(path, dtype="float32")[0], "sampling_rate": 32000})
    assert from_file == from_array and len(from_file) == 11


def test_in_package_pipeline_class_needs_no_remote_code(model_folder, clip):
    from transformers import pipeline

    from instrument_classifier.modeling import InstrumentAudioClassificationPipeline

    folder, model, fe = model_folder
    local = pipeline("audio-classification", model=str(folder), pipeline_class=InstrumentAudioClassificationPipeline)
    remote = pipeline("audio-classification", model=str(folder), trust_remote_code=True)
    assert type(local) is InstrumentAudioClassificationPipeline
    assert local(clip[: 3 * SR]) == remote(clip[: 3 * SR])
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        pipeline("audio-classification", model=str(folder))


def test_pipeline_says_which_labels_are_detected_by_the_config_thresholds(model_folders, clip, tmp_path):
    """detected = score >= config.thresholds[label], whatever scores function_to_apply shows."""
    from transformers import pipeline

    folder, model, fe = model_folders["cnn"]
    scored = pipeline("audio-classification", model=str(folder), trust_remote_code=True)(clip[: 3 * SR])
    # every other label's threshold below its score (detected), the others' above it
    thresholds = {r["label"]: (r["score"] / 2 if i % 2 else (1 + r["score"]) / 2) for i, r in enumerate(scored)}
    custom = tmp_path / "custom"
    model.config.thresholds = [thresholds[model.config.id2label[i]] for i in range(model.config.num_labels)]
    try:
        model.save_pretrained(custom)
    finally:
        model.config.thresholds = [0.5] * model.config.num_labels
    fe.save_pretrained(custom)
    classifier = pipeline("audio-classification", model=str(custom), trust_remote_code=True)
    result = classifier(clip[: 3 * SR])
    assert [r["score"] for r in result] == pytest.approx([r["score"] for r in scored], abs=1e-6)
    for r in result:
        assert r["threshold"] == pytest.approx(thresholds[r["label"]])
        assert r["detected"] is (r["score"] >= r["threshold"])
    assert 0 < sum(r["detected"] for r in result) < len(result)
    as_logits = classifier(clip[: 3 * SR], function_to_apply="none")
    assert {r["label"]: r["detected"] for r in as_logits} == {r["label"]: r["detected"] for r in result}


@pytest.mark.parametrize("member", FROZEN)
def test_pipeline_detects_what_predict_detects_with_the_bundled_default_members(clip, member):
    """Each member of the bundled default (the blend itself is an ensemble folder, which only this package loads):
    the pipeline's clip scores and detected set are predict_timeline's."""
    from transformers import pipeline

    from instrument_classifier.inference import DEFAULT_MODEL_DIR, load_model, predict_timeline

    folder = DEFAULT_MODEL_DIR.parent / member
    model, extractor = load_model(folder, device="cpu")
    classifier = pipeline("audio-classification", model=str(folder), trust_remote_code=True)
    rate = extractor.sampling_rate  # at the model's rate: no resampler in either path, the same samples
    notes = [(0, 4 * SR, 41, 67), (2 * SR, 9 * SR, 1, 48)]
    for audio in (clip, synth_notes(notes, 10 * SR, seed=3), clip[:SR]):  # 3 windows, 4 windows, a short clip
        audio = soxr.resample(audio, SR, rate).astype(np.float32)
        timeline = predict_timeline(model, extractor, audio, sampling_rate=rate)
        result = classifier({"raw": audio, "sampling_rate": rate})
        assert {r["label"]: r["score"] for r in result} == pytest.approx(timeline.clip, abs=1e-5)
        assert sorted(r["label"] for r in result if r["detected"]) == sorted(timeline.detected)
        assert {r["label"]: r["threshold"] for r in result} == pytest.approx(
            dict(zip(timeline.labels, timeline.thresholds)))


@pytest.mark.parametrize("member", FROZEN)
def test_the_pushed_default_members_load_without_the_package(clip, tmp_path, monkeypatch, member):
    """push-model's upload of each member of the bundled default (HfApi mocked at its network calls), loaded in a
    fresh environment with transformers alone: the same logits as the package, and the pipeline detects what
    predict does."""
    import shutil

    import huggingface_hub

    from instrument_classifier import hub
    from instrument_classifier.inference import DEFAULT_MODEL_DIR, load_model, predict_timeline

    pushed = tmp_path / "pushed"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):  # what the Hub repo would hold
        shutil.copytree(folder_path, pushed)
        return "mock-commit"

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kwargs: None)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    folder = DEFAULT_MODEL_DIR.parent / member
    with pytest.raises(hub.HubError, match="an ensemble"):  # the blend itself is local only
        hub.push_model("someone/instrument-default", DEFAULT_MODEL_DIR)
    assert hub.push_model(f"someone/instrument-{member}", folder) == "mock-commit"

    wave = soxr.resample(clip, SR, 22050).astype(np.float32)
    np.save(tmp_path / "wave.npy", wave)
    script = FRESH_SCRIPT.format(site=sysconfig.get_paths()["purelib"], folders={member: str(pushed)},
                                 out=str(tmp_path))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", script], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())[member]
    assert all(m.startswith("transformers_modules.") for m in result["classes"]), result["classes"]

    model, extractor = load_model(str(folder), device="cpu")
    ours = extractor(wave, sampling_rate=22050, return_tensors="pt")["input_features"]
    with torch.no_grad():
        np.testing.assert_allclose(np.load(tmp_path / f"{member}_logits.npy"), model(ours).logits.numpy(), atol=1e-5)
    timeline = predict_timeline(model, extractor, wave, sampling_rate=22050)
    # both resample 22.05 -> 16 kHz, with different resamplers: scores agree to ~1e-3, decisions away from a cut
    assert {r["label"]: r["score"] for r in result["pipeline"]} == pytest.approx(timeline.clip, abs=5e-3)
    clear = [r for r in result["pipeline"] if abs(r["score"] - r["threshold"]) > 5e-3]
    assert len(clear) >= 9
    assert all(r["detected"] is (r["label"] in timeline.detected) for r in clear)
