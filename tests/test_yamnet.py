"""The instrument classifier on the YAMNet front end: its features, the front end, the model, the probe.

The converted YAMNet weights are not in git (``scripts/convert_yamnet.py`` makes them from the TFLite model); the
model-family tests use a YAMNet network with seeded random weights saved as the converter saves it. With
``YAMNET_WEIGHTS`` pointing at the converted file, the torch port itself is checked on signals whose AudioSet
classes are known.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open

from instrument_classifier.inference import load_model, predict_timeline
from instrument_classifier.modeling import (
    MODEL_CLASSES,
    InstrumentFeatureExtractor,
    InstrumentYamnetConfig,
    InstrumentYamnetForAudioClassification,
)
from instrument_classifier.modeling.feature_extraction_instrument import default_feature_settings
from instrument_classifier.modeling.yamnet_frontend import (
    YamnetFrontend,
    patch_starts,
    resample_frames,
    yamnet_log_mel,
    yamnet_mel_filterbank,
    yamnet_patches,
)
from instrument_classifier.training import linear_probe

YAMNET_WEIGHTS = os.environ.get("YAMNET_WEIGHTS")
needs_weights = pytest.mark.skipif(not YAMNET_WEIGHTS,
                                   reason="YAMNET_WEIGHTS (scripts/convert_yamnet.py's file) unset")


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory) -> Path:
    """A YamnetFrontend state dict with seeded random weights, saved as scripts/convert_yamnet.py saves the real
    one."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = YamnetFrontend()
    path = tmp_path_factory.mktemp("yamnet") / "yamnet_random.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata={"format": "pt"})
    return path


def _tone(freq: float, seconds: float, sr: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


# -- features and front end -------------------------------------------------------------------------------------

def test_yamnet_mel_filterbank_is_tensorflows_htk_triangles_in_mel_space():
    from transformers.audio_utils import mel_filter_bank

    reference = mel_filter_bank(num_frequency_bins=257, num_mel_filters=64, min_frequency=125.0, max_frequency=7500.0,
                                sampling_rate=16000, norm=None, mel_scale="htk", triangularize_in_mel_space=True)
    np.testing.assert_allclose(yamnet_mel_filterbank(), reference.T, atol=1e-6)
    fe = InstrumentFeatureExtractor(**default_feature_settings("yamnet"))
    np.testing.assert_allclose(fe.filterbank(), reference.T, atol=1e-6)
    assert fe.band_frequencies()[0] > 125.0 and fe.band_frequencies()[-1] < 7500.0


def test_yamnet_features_are_yamnets_log_mel_on_an_8_ms_grid():
    """At hop 160 and shifted by 120 samples (centred frames vs YAMNet's left-aligned ones), the feature
    extractor's frames are YAMNet's own log-mel frames; the package's setting reads them every 8 ms instead."""
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(16000) + _tone(440.0, 1.0, amplitude=0.3)).astype(np.float32)
    settings = default_feature_settings("yamnet")
    assert settings["hop_length"] == 128 and settings["win_length"] == 400 and settings["n_fft"] == 512
    fe = InstrumentFeatureExtractor(**{**settings, "hop_length": 160})
    ours = fe.extract(np.concatenate([np.zeros(120, np.float32), audio]))
    reference = yamnet_log_mel(audio).numpy()
    np.testing.assert_allclose(ours[2 : 2 + len(reference)], reference, atol=1e-4)
    # a window of 47,872 samples (one musicnn window) gives 374 frames + the closing one
    fe = InstrumentFeatureExtractor(**settings)
    assert fe.num_frames(47_872) == 375 and fe.frame_rate == 125.0 and fe.do_normalize is False
    silence = fe.extract(np.zeros(4000, np.float32))
    np.testing.assert_allclose(silence, np.log(0.001), rtol=1e-6)


def test_resampling_reads_yamnets_10_ms_frames_from_8_ms_ones_and_patches_are_spread_over_the_window():
    x = torch.randn(2, 374, 64, dtype=torch.float64)
    y = resample_frames(x, 1.25)
    assert y.shape == (2, 299, 64)  # 1.25 * 298 = 372.5 <= 373
    for k in (0, 4, 8, 296):  # integer positions: the input frame itself
        torch.testing.assert_close(y[:, k], x[:, 5 * k // 4], rtol=0, atol=1e-12)
    for k, (low, weight) in {1: (1, 0.25), 2: (2, 0.5), 3: (3, 0.75), 298: (372, 0.5)}.items():
        torch.testing.assert_close(y[:, k], (1 - weight) * x[:, low] + weight * x[:, low + 1], rtol=0, atol=1e-12)
    assert patch_starts(299, 5) == [0, 51, 102, 152, 203]  # round(linspace(0, 203, 5)), halves to even
    assert patch_starts(96, 5) == [0] * 5
    with pytest.raises(ValueError):
        patch_starts(95, 5)


def test_frontend_shapes_and_hidden_states():
    torch.manual_seed(0)
    net = YamnetFrontend().eval()
    assert sum(p.numel() for p in net.parameters()) == 3_729_481  # the converted file's count
    with torch.no_grad():
        out = net(torch.randn(3, 96, 64), output_hidden_states=True)
    assert out.embedding.shape == (3, 1024) and out.logits.shape == (3, 521)
    shapes = [tuple(h.shape[1:]) for h in out.hidden_states]
    assert len(shapes) == 27 and shapes[0] == (32, 48, 32) and shapes[-1] == (1024, 3, 2)
    torch.testing.assert_close(out.embedding, out.hidden_states[-1].mean(dim=(2, 3)))
    assert yamnet_patches(yamnet_log_mel(np.zeros(16000, np.float32))).shape == (1, 96, 64)
    with pytest.raises(ValueError, match="log-mel patches"):
        net(torch.randn(2, 96, 63))


# -- the classifier ---------------------------------------------------------------------------------------------

def test_window_representation_is_the_mean_and_max_over_five_patches_of_embedding_and_logits(backbone_file):
    model, fe = linear_probe.new_classifier(str(backbone_file), backbone_type="yamnet")
    assert fe.feature_type == "yamnet" and model.config.representation_size == 3090
    x = torch.randn(2, 374, 64) - 4
    with torch.no_grad():
        rep = model.representation(x)
        frames = torch.stack([torch.stack([(1 - (1.25 * k) % 1) * w[int(1.25 * k)]
                                           + ((1.25 * k) % 1) * w[min(int(1.25 * k) + 1, 373)]
                                           for k in range(299)]) for w in x])
        patches = torch.stack([frames[:, s : s + 96] for s in (0, 51, 102, 152, 203)], dim=1)
        out = model.yamnet(patches.flatten(0, 1))
        emb, logits = out.embedding.view(2, 5, 1024), out.logits.view(2, 5, 521)
    expected = torch.cat([emb.mean(1), emb.amax(1), logits.mean(1), logits.amax(1)], dim=1)
    torch.testing.assert_close(rep, expected, rtol=1e-5, atol=1e-5)


def test_model_freezes_the_backbone_repeats_window_logits_and_round_trips(backbone_file, tmp_path):
    model, fe = linear_probe.new_classifier(str(backbone_file), backbone_type="yamnet")
    assert MODEL_CLASSES["yamnet"] == (InstrumentYamnetConfig, InstrumentYamnetForAudioClassification)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["classifier.weight", "classifier.bias"]
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.05)
    x = torch.randn(3, 374, 64) - 4
    labels = torch.zeros(3, 11)
    labels[0, 2] = 1
    model.train()
    out = model(input_features=x, labels=labels)
    out.loss.backward()
    assert model.classifier.weight.grad is not None and model.yamnet.stem.conv.weight.grad is None
    assert out.frame_logits.shape == (3, 374, 11)
    assert torch.equal(out.frame_logits[:, 0], out.logits) and torch.equal(out.frame_logits[:, -1], out.logits)
    model.eval()
    # a short input is completed with silence up to a window; a long one is cut into windows
    with torch.no_grad():
        short = model(input_features=x[:, :100])
        padded = torch.cat([x[:, :100], torch.full((3, 274, 64), float(np.log(0.001)))], dim=1)
        torch.testing.assert_close(short.logits, model(input_features=padded).logits)
        assert short.frame_logits.shape == (3, 100, 11)
        assert model(input_features=torch.randn(1, 900, 64)).frame_logits.shape == (1, 900, 11)
    model.save_pretrained(tmp_path / "m")
    fe.save_pretrained(tmp_path / "m")
    saved = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"yamnet_frontend.py", "modeling_instrument_yamnet.py", "configuration_instrument_yamnet.py",
            "pipeline_instrument.py", "feature_extraction_instrument.py", "model.safetensors"} <= saved
    # the frozen backbone is stored in float16 (the head in float32), and new_classifier rounded it to that
    # already: loading gives float32 weights and exactly the same logits
    with safe_open(str(tmp_path / "m" / "model.safetensors"), "pt") as f:
        dtypes = {name: f.get_slice(name).get_dtype() for name in f.keys()}
    assert {d for n, d in dtypes.items() if n.startswith("yamnet.")} == {"F16"}
    assert dtypes["classifier.weight"] == "F32" and dtypes["representation_mean"] == "F32"
    again = InstrumentYamnetForAudioClassification.from_pretrained(tmp_path / "m").eval()
    assert {p.dtype for p in again.parameters()} == {torch.float32}
    with torch.no_grad():
        assert torch.equal(again(input_features=x).logits, model(input_features=x).logits)


def test_config_refuses_other_features_and_windows_too_short_for_a_patch():
    with pytest.raises(ValueError, match="feature_type must be 'yamnet'"):
        InstrumentYamnetConfig(feature_type="musicnn")
    with pytest.raises(ValueError, match="fewer than one patch"):
        InstrumentYamnetConfig(window_frames=100)
    with pytest.raises(ValueError, match="unknown backbone settings"):
        InstrumentYamnetConfig(backbone={"layers": 3})


def test_linear_probe_trains_a_yamnet_model_that_predict_and_the_pipeline_use(backbone_file, rendered_corpus,
                                                                              tmp_path):
    dataset = tmp_path / "dataset"
    prepare = subprocess.run(
        [sys.executable, "-m", "instrument_classifier.cli", "prepare", "--data-dir", str(rendered_corpus),
         "--output", str(dataset), "--taxonomy", "musicnet11", "--feature-type", "yamnet",
         "--window-frames", "374", "--hop-frames", "374", "--validation-fraction", "0.25"],
        capture_output=True, text=True)
    assert prepare.returncode == 0, prepare.stderr
    output = tmp_path / "model"
    # the family is the dataset's (no --backbone-type)
    probe = subprocess.run(
        [sys.executable, "-m", "instrument_classifier.training.linear_probe", "--backbone-weights", str(backbone_file),
         "--dataset", str(dataset), "--output_dir", str(output), "--C", "0.01"], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    model, fe = load_model(output)
    assert isinstance(model, InstrumentYamnetForAudioClassification) and fe.feature_type == "yamnet"
    assert float(model.classifier.weight.detach().abs().sum()) > 0 and float(model.representation_scale.min()) > 0
    wav = tmp_path / "tone.wav"
    sf.write(wav, np.concatenate([_tone(440.0, 2.0), _tone(330.0, 3.5, amplitude=0.3)]), 22050)
    timeline = predict_timeline(model, fe, wav)
    n_windows = -(-fe.num_frames(int(round(timeline.duration_s * 16000))) // 374)
    assert timeline.window_probs.shape == (n_windows, 11)
    np.testing.assert_allclose(timeline.frame_probs[0], timeline.window_probs[0], rtol=1e-5)
    from transformers import pipeline

    classifier = pipeline("audio-classification", model=str(output), trust_remote_code=True)
    result = classifier(str(wav))
    assert sorted(r["label"] for r in result) == sorted(model.config.label2id)
    # evaluate --clips reads the folder as predict does
    from instrument_classifier.cli import main as cli_main

    manifest = tmp_path / "clips.csv"
    manifest.write_text("file,instruments\ntone.wav,Violin\n")
    report = tmp_path / "report"
    assert cli_main(["evaluate", "--model", str(output), "--clips", str(manifest), "--output", str(report)]) == 0
    assert json.loads((report / "metrics.json").read_text())["num_clips"] == 1
    # an ensemble with the bundled musicnn classifier blends window by window (same samples per window)
    from instrument_classifier.ensemble import EnsembleConfig

    pretrained = Path(__file__).resolve().parents[1] / "instrument_classifier" / "pretrained"
    config = EnsembleConfig.load(pretrained / "ensemble")
    config.members, config.weights = [str(pretrained / "musicnn"), str(output)], [0.5, 0.5]
    config.window_frames, config.hop_length, config.sampling_rate = 187, 256, 16000
    (tmp_path / "ensemble").mkdir()
    config.save(tmp_path / "ensemble")
    ensemble, _ = load_model(tmp_path / "ensemble")
    blended = predict_timeline(ensemble, None, wav)
    runs = [predict_timeline(m, member_fe, wav) for m, member_fe in ensemble.members]
    np.testing.assert_allclose(blended.window_probs, 0.5 * runs[0].window_probs + 0.5 * runs[1].window_probs,
                               rtol=1e-5, atol=1e-6)
    # YAMNet weights are not taken for musicnn's
    with pytest.raises(ValueError, match="not musicnn weights"):
        linear_probe.main(["--backbone-type", "musicnn", "--backbone", str(backbone_file), "--dataset", str(dataset),
                           "--output_dir", str(tmp_path / "out")])


# -- the converted weights --------------------------------------------------------------------------------------

@needs_weights
def test_converted_yamnet_tags_a_sine_and_white_noise_as_audioset_does():
    from safetensors import safe_open

    with safe_open(YAMNET_WEIGHTS, framework="pt") as handle:
        metadata = handle.metadata()
    names = json.loads(metadata["class_names"])
    source = json.loads(metadata["source"])
    assert len(names) == 521 and source["sha1"] == "7f54d20da3b32164849274af1ab0651c75cac681"
    assert "Apache-2.0" in metadata["licence"]
    net = YamnetFrontend.from_safetensors(YAMNET_WEIGHTS)
    rng = np.random.default_rng(0)
    signals = {"Sine wave": _tone(440.0, 2.0), "White noise": (0.1 * rng.standard_normal(32000)).astype(np.float32)}
    for expected, audio in signals.items():
        scores = torch.sigmoid(net.embed_waveform(audio).logits).mean(0)
        top = [names[i] for i in scores.argsort(descending=True)[:10]]
        assert expected in top, (expected, top)
    # the classifier's window path (8-ms frames resampled to 10 ms) agrees with YAMNet's own framing
    model, fe = linear_probe.new_classifier(YAMNET_WEIGHTS, backbone_type="yamnet")
    features = torch.from_numpy(fe.extract(_tone(440.0, 3.0)))[None, :374]
    with torch.no_grad():
        rep = model.representation(features)[0]
    window_top = [names[i] for i in rep[2048 + 521 :].argsort(descending=True)[:10]]  # max over patches of logits
    assert "Sine wave" in window_top, window_top
