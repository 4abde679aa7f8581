"""The instrument classifier on the EfficientAT front end: its features, the conversion, the model, the probe.

EfficientAT's ``mn04`` checkpoint is not in git (``scripts/convert_efficientat.py`` converts it). The conversion is
tested on a checkpoint with seeded random weights and batch-norm statistics in EfficientAT's own layout, built here
by an independent reference network (convolution, then batch norm, as EfficientAT's modules are named); the model
family tests use the converted random network. With ``EFFICIENTAT_WEIGHTS`` pointing at the converted real file,
the port is also checked on signals whose AudioSet classes are known.
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
from torch import nn

from instrument_classifier.inference import load_model, predict_timeline
from instrument_classifier.modeling import (
    MODEL_CLASSES,
    InstrumentEfficientAtConfig,
    InstrumentEfficientAtForAudioClassification,
    InstrumentFeatureExtractor,
)
from instrument_classifier.modeling.efficientat_frontend import (
    BLOCKS,
    EfficientAtFrontend,
    efficientat_log_mel,
    efficientat_mel_filterbank,
    scaled_channels,
)
from instrument_classifier.modeling.feature_extraction_instrument import (
    default_feature_settings,
    preemphasized,
    yamnet_mel_filterbank,
)
from instrument_classifier.training import linear_probe

ROOT = Path(__file__).resolve().parents[1]
EFFICIENTAT_WEIGHTS = os.environ.get("EFFICIENTAT_WEIGHTS")
needs_weights = pytest.mark.skipif(not EFFICIENTAT_WEIGHTS,
                                   reason="EFFICIENTAT_WEIGHTS (scripts/convert_efficientat.py's file) unset")


# -- a reference network in EfficientAT's checkpoint layout (test only) ---------------------------------------------

def _conv_bn(cin, cout, kernel=1, stride=1, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout, eps=1e-3))


class _SE(nn.Module):
    def __init__(self, channels, squeezed):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(channels, squeezed), nn.Linear(squeezed, channels)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3))))))[:, :, None, None]


class _ConcSE(nn.Module):  # EfficientAT wraps its squeeze-excitation as conc_se_layers.0
    def __init__(self, channels, squeezed):
        super().__init__()
        self.conc_se_layers = nn.ModuleList([_SE(channels, squeezed)])

    def forward(self, x):
        return self.conc_se_layers[0](x)


class _Act(nn.Module):
    def __init__(self, inner, hard_swish):
        super().__init__()
        self.inner, self.act = inner, (nn.Hardswish() if hard_swish else nn.ReLU())

    def forward(self, x):
        return self.act(self.inner(x))


class _Block(nn.Module):
    def __init__(self, cin, kernel, expanded, cout, se, hard_swish, stride):
        super().__init__()
        layers = []
        if expanded != cin:
            layers.append(_conv_bn(cin, expanded))
        layers.append(_conv_bn(expanded, expanded, kernel, stride, expanded))
        if se:
            layers.append(_ConcSE(expanded, scaled_channels(expanded // 4, 1.0)))
        layers.append(_conv_bn(expanded, cout))
        self.block = nn.Sequential(*layers)
        self.hard_swish, self.residual = hard_swish, stride == 1 and cin == cout

    def forward(self, x):
        out = x
        for layer in self.block:
            out = layer(out)
            if layer is not self.block[-1] and isinstance(layer, nn.Sequential):
                out = nn.functional.hardswish(out) if self.hard_swish else torch.relu(out)
        return out + x if self.residual else out


class _Reference(nn.Module):
    def __init__(self, width=0.4):
        super().__init__()
        layers, cin = [_conv_bn(1, scaled_channels(16, width), 3, 2)], scaled_channels(16, width)
        for kernel, expanded, cout, se, hard_swish, stride in BLOCKS:
            cout = scaled_channels(cout, width)
            layers.append(_Block(cin, kernel, scaled_channels(expanded, width), cout, se, hard_swish, stride))
            cin = cout
        layers.append(_conv_bn(cin, 6 * cin))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(6 * cin, 512),
                                        nn.Hardswish(), nn.Dropout(0.0), nn.Linear(512, 527))

    def forward(self, log_mel):
        x = nn.functional.hardswish(self.features[0](log_mel.unsqueeze(1)))
        for block in self.features[1:-1]:
            x = block(x)
        x = nn.functional.hardswish(self.features[-1](x))
        return x.mean((2, 3)), self.classifier(x)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """``(reference network, converted safetensors file)``: a seeded random checkpoint with random batch-norm
    statistics, in EfficientAT's layout, through ``scripts/convert_efficientat.py``."""
    torch.manual_seed(0)
    reference = _Reference().eval()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    folder = tmp_path_factory.mktemp("efficientat")
    torch.save(reference.state_dict(), folder / "mn04_random.pt")
    output = folder / "efficientat_random.safetensors"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_efficientat.py"), "--checkpoint",
                          str(folder / "mn04_random.pt"), "--output", str(output)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "not the verified file's" in run.stderr  # the random checkpoint is not the released one
    return reference, output


def _tone(freq: float, seconds: float, sr: int = 32000, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


# -- features -------------------------------------------------------------------------------------------------------

def test_mel_filterbank_is_kaldis_and_features_are_efficientats_log_mel_on_an_8_ms_grid():
    bank = efficientat_mel_filterbank()
    assert bank.shape == (128, 513) and not bank[:, -1].any()
    np.testing.assert_array_equal(bank, yamnet_mel_filterbank(32000, 1024, 128, 0.0, 15000.0))
    audio = np.random.default_rng(0).normal(0, 0.1, 3 * 32000).astype(np.float32)
    fe = InstrumentFeatureExtractor(**{**default_feature_settings("efficientat"), "hop_length": 320})
    np.testing.assert_allclose(fe.extract(audio), efficientat_log_mel(audio).T.numpy(), atol=1e-5)
    fe = InstrumentFeatureExtractor(**default_feature_settings("efficientat"))
    assert fe.frame_rate == 500.0 and fe.feature_size == 128
    whole = fe.extract(audio)
    # every fifth 2-ms frame is one of EfficientAT's 10-ms frames
    np.testing.assert_allclose(whole[::5], efficientat_log_mel(audio).T.numpy(), atol=1e-5)
    # the pre-emphasis carries its last sample across blocks: any cut gives the same features
    cut = np.concatenate(list(fe.extract_stream([audio[:1001], audio[1001:1002], audio[1002:50000], audio[50000:]])))
    np.testing.assert_array_equal(whole, cut)
    emphasized = np.concatenate(list(preemphasized([audio[:7], audio[7:]])))
    np.testing.assert_allclose(emphasized, audio - 0.97 * np.r_[0.0, audio[:-1]], atol=1e-6)
    assert np.allclose(fe.extract(np.zeros(32000, np.float32)), (np.log(1e-5) + 4.5) / 5)


# -- the conversion and the front end ---------------------------------------------------------------------------------

def test_conversion_folds_batch_norms_and_gives_the_reference_networks_outputs(converted):
    reference, path = converted
    net = EfficientAtFrontend.from_safetensors(str(path))
    with safe_open(str(path), "pt") as f:
        names = set(f.keys())
    assert len(names) == 128 and not any("running" in n for n in names)  # every batch norm is folded away
    log_mel = torch.randn(2, 128, 300)
    with torch.no_grad():
        embedding, logits = reference(log_mel)
        out = net(log_mel, output_hidden_states=True)
    torch.testing.assert_close(out.embedding, embedding, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.logits, logits, rtol=1e-4, atol=1e-4)
    assert out.embedding.shape == (2, 384) and out.logits.shape == (2, 527) and len(out.hidden_states) == 17
    assert out.hidden_states[-1].shape[1:3] == (384, 4)  # 128 mel bands / 32
    with safe_open(str(path), "pt") as f:
        source = json.loads(f.metadata()["source"])
    assert source["commit"] == "2b362d97544673ef1da403b44ecbe1174d8619ec" and "MIT" in source["licence"]


def test_conversion_refuses_a_checkpoint_of_another_architecture(converted, tmp_path):
    reference, _ = converted
    state = dict(reference.state_dict(), **{"features.17.0.weight": torch.zeros(1)})
    torch.save(state, tmp_path / "other.pt")
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_efficientat.py"), "--checkpoint",
                          str(tmp_path / "other.pt"), "--output", str(tmp_path / "out.safetensors")],
                         capture_output=True, text=True)
    assert run.returncode != 0 and "not converted" in run.stderr and not (tmp_path / "out.safetensors").exists()


# -- the model --------------------------------------------------------------------------------------------------------

def test_model_freezes_the_backbone_repeats_window_logits_and_round_trips(converted, tmp_path):
    _, path = converted
    model, fe = linear_probe.new_classifier(str(path), backbone_type="efficientat")
    assert MODEL_CLASSES["efficientat"] == (InstrumentEfficientAtConfig, InstrumentEfficientAtForAudioClassification)
    assert fe.feature_type == "efficientat" and model.config.representation_size == 911
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["classifier.weight", "classifier.bias"]
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.05)
    x = torch.randn(3, 1496, 128) - 1
    labels = torch.zeros(3, 11)
    labels[0, 2] = 1
    model.train()
    out = model(input_features=x, labels=labels)
    out.loss.backward()
    assert model.classifier.weight.grad is not None and model.efficientat.stem.weight.grad is None
    assert out.frame_logits.shape == (3, 1496, 11) and torch.equal(out.frame_logits[:, -1], out.logits)
    model.eval()
    with torch.no_grad():
        # every fifth 2-ms frame (300 of them: EfficientAT's own 10-ms frames) goes through the network once
        direct = model.efficientat(x[:, [5 * k for k in range(300)]].transpose(1, 2))
        torch.testing.assert_close(model.representation(x), torch.cat([direct.embedding, direct.logits], dim=1))
        short = model(input_features=x[:, :100])
        padded = torch.cat([x[:, :100], torch.full((3, 1396, 128), (np.log(1e-5) + 4.5) / 5)], dim=1)
        torch.testing.assert_close(short.logits, model(input_features=padded).logits)
        assert model(input_features=torch.randn(1, 3600, 128)).frame_logits.shape == (1, 3600, 11)
    model.save_pretrained(tmp_path / "m")
    fe.save_pretrained(tmp_path / "m")
    saved = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"efficientat_frontend.py", "modeling_instrument_efficientat.py", "configuration_instrument_efficientat.py",
            "pipeline_instrument.py", "feature_extraction_instrument.py", "model.safetensors"} <= saved
    with safe_open(str(tmp_path / "m" / "model.safetensors"), "pt") as f:
        dtypes = {name: f.get_slice(name).get_dtype() for name in f.keys()}
    assert {d for n, d in dtypes.items() if n.startswith("efficientat.")} == {"F16"}
    again = InstrumentEfficientAtForAudioClassification.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        assert torch.equal(again(input_features=x).logits, model(input_features=x).logits)


def test_audioset_prior_mixes_audiosets_own_logit_into_the_named_labels_only(converted, tmp_path):
    _, path = converted
    model, fe = linear_probe.new_classifier(str(path), backbone_type="efficientat")
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.05)
        model.classifier.bias.normal_(0.0, 1.0)
    x = torch.randn(2, 1496, 128) - 1
    with torch.no_grad():
        head = model(input_features=x).logits
        representation = model.representation(x)
    prior = linear_probe.audioset_prior(list(model.config.label2id))
    assert prior == {"Piano": 153, "Harpsichord": 160, "Violin": 191, "Cello": 193, "Contrabass": 194,
                     "French Horn": 186, "Clarinet": 198, "Flute": 196}  # no AudioSet viola, oboe or bassoon
    linear_probe.set_audioset_prior(model, 0.3)
    with torch.no_grad():
        mixed = model(input_features=x).logits
    for label, j in model.config.label2id.items():
        if label in prior:
            expected = 0.7 * head[:, j] + 0.3 * representation[:, 384 + prior[label]]
            torch.testing.assert_close(mixed[:, j], expected)
        else:
            assert torch.equal(mixed[:, j], head[:, j])
    # the probe's threshold tuning reads the head as the forward pass does, the prior included
    probs = linear_probe.head_probabilities(model, representation.numpy())
    np.testing.assert_allclose(probs, torch.sigmoid(mixed).numpy(), atol=1e-6)
    model.save_pretrained(tmp_path / "m")
    again = InstrumentEfficientAtForAudioClassification.from_pretrained(tmp_path / "m").eval()
    assert again.config.audioset_prior == prior and again.config.audioset_prior_weight == 0.3
    with torch.no_grad():
        torch.testing.assert_close(again(input_features=x).logits, mixed)


def test_the_prior_can_be_limited_to_some_labels(converted):
    _, path = converted
    model, _ = linear_probe.new_classifier(str(path), backbone_type="efficientat")
    linear_probe.set_audioset_prior(model, 0.3, ["Violin", "Flute"])
    assert model.config.audioset_prior == {"Violin": 191, "Flute": 196}
    with pytest.raises(ValueError, match=r"no AudioSet class for \['Viola'\]"):
        linear_probe.set_audioset_prior(model, 0.3, ["Violin", "Viola"])


def test_config_refuses_a_prior_on_unknown_labels_or_classes():
    with pytest.raises(ValueError, match=r"labels \['Tuba'\] that are not in id2label"):
        InstrumentEfficientAtConfig(audioset_prior={"Tuba": 1}, audioset_prior_weight=0.3)
    with pytest.raises(ValueError, match="are not AudioSet classes"):
        InstrumentEfficientAtConfig(audioset_prior={"Violin": 527}, audioset_prior_weight=0.3)
    with pytest.raises(ValueError, match=r"audioset_prior_weight must be in \[0, 1\)"):
        InstrumentEfficientAtConfig(audioset_prior={"Violin": 191}, audioset_prior_weight=1.0)


def test_config_refuses_other_features_and_windows_too_short():
    with pytest.raises(ValueError, match="feature_type must be 'efficientat'"):
        InstrumentEfficientAtConfig(feature_type="yamnet")
    with pytest.raises(ValueError, match="fewer than 32"):
        InstrumentEfficientAtConfig(window_frames=150)
    with pytest.raises(ValueError, match="must be a multiple of hop_length"):
        InstrumentEfficientAtConfig(hop_length=256)
    with pytest.raises(ValueError, match="unknown backbone settings"):
        InstrumentEfficientAtConfig(backbone={"layers": 3})


def test_linear_probe_trains_a_model_that_predict_the_pipeline_and_remote_code_use(converted, rendered_corpus,
                                                                                  tmp_path):
    _, path = converted
    dataset = tmp_path / "dataset"
    prepare = subprocess.run(
        [sys.executable, "-m", "instrument_classifier.cli", "prepare", "--data-dir", str(rendered_corpus),
         "--output", str(dataset), "--taxonomy", "musicnet11", "--feature-type", "efficientat",
         "--window-frames", "1496", "--hop-frames", "1496", "--validation-fraction", "0.25"],
        capture_output=True, text=True)
    assert prepare.returncode == 0, prepare.stderr
    output = tmp_path / "model"
    refused = subprocess.run(  # a label without an AudioSet class is refused before any window is read
        [sys.executable, "-m", "instrument_classifier.training.linear_probe", "--backbone-weights", str(path),
         "--dataset", str(dataset), "--output_dir", str(output), "--audioset-prior-weight", "0.3",
         "--audioset-prior-labels", "Violin", "Oboe"], capture_output=True, text=True)
    assert refused.returncode == 2 and "no AudioSet class for ['Oboe']" in refused.stderr
    assert "representations" not in refused.stderr and not output.exists()
    probe = subprocess.run(
        [sys.executable, "-m", "instrument_classifier.training.linear_probe", "--backbone-weights", str(path),
         "--dataset", str(dataset), "--output_dir", str(output), "--C", "0.01", "--audioset-prior-weight", "0.3",
         "--audioset-prior-labels", "Violin", "Cello"], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    model, fe = load_model(output)
    assert isinstance(model, InstrumentEfficientAtForAudioClassification) and fe.sampling_rate == 32000
    assert model.config.audioset_prior_weight == 0.3 and model.config.audioset_prior == {"Violin": 191, "Cello": 193}
    assert "AudioSet prior 0.3 on Violin, Cello" in probe.stdout
    assert float(model.classifier.weight.detach().abs().sum()) > 0
    wav = tmp_path / "tone.wav"
    sf.write(wav, np.concatenate([_tone(440.0, 2.0, 22050), _tone(330.0, 3.5, 22050, 0.3)]), 22050)
    timeline = predict_timeline(model, fe, wav)
    assert timeline.window_probs.shape == (-(-fe.num_frames(int(round(timeline.duration_s * 32000))) // 1496), 11)
    from transformers import pipeline

    result = pipeline("audio-classification", model=str(output), trust_remote_code=True)(str(wav))
    assert sorted(r["label"] for r in result) == sorted(model.config.label2id)
    # the folder's own code loads it, with no package installed: the copied files are self-contained
    code = ("import sys, torch, transformers\n"
            "m = transformers.AutoModelForAudioClassification.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
            "print(type(m).__module__, m(input_features=torch.zeros(1, 1496, 128)).logits.shape[-1], "
            "'instrument_classifier' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code, str(output)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    module, labels, package_imported = run.stdout.split()
    assert module.startswith("transformers_modules.") and module.endswith(".modeling_instrument_efficientat")
    assert labels == "11" and package_imported == "False"
    # an ensemble blends it with the bundled musicnn classifier (16 kHz) window by window: same 2.992-s windows,
    # each member decoding the audio at its own rate
    from instrument_classifier.ensemble import EnsembleConfig

    config = EnsembleConfig.load(ROOT / "instrument_classifier" / "pretrained" / "ensemble")
    config.members = [str(ROOT / "instrument_classifier" / "pretrained" / "musicnn"), str(output)]
    config.weights, config.window_frames, config.hop_length, config.sampling_rate = [0.5, 0.5], 187, 256, 16000
    (tmp_path / "ensemble").mkdir()
    config.save(tmp_path / "ensemble")
    ensemble, _ = load_model(tmp_path / "ensemble")
    blended = predict_timeline(ensemble, None, wav)
    runs = [predict_timeline(m, member_fe, wav) for m, member_fe in ensemble.members]
    np.testing.assert_allclose(blended.window_probs, 0.5 * runs[0].window_probs + 0.5 * runs[1].window_probs,
                               rtol=1e-5, atol=1e-6)
    assert blended.frame_probs.shape == runs[0].frame_probs.shape  # the grid is the first member's
    # a member whose windows last another time does not fit
    config.window_frames = 188
    config.save(tmp_path / "ensemble")
    with pytest.raises(ValueError, match="does not fit the ensemble"):
        load_model(tmp_path / "ensemble")


# -- the converted weights --------------------------------------------------------------------------------------

@needs_weights
def test_converted_mn04_tags_a_sine_and_white_noise_as_audioset_does():
    with safe_open(EFFICIENTAT_WEIGHTS, framework="pt") as handle:
        metadata = handle.metadata()
    names = json.loads(metadata["class_names"])
    assert len(names) == 527 and json.loads(metadata["source"])["sha256"].startswith("899a8c62")
    net = EfficientAtFrontend.from_safetensors(EFFICIENTAT_WEIGHTS)
    noise = np.random.default_rng(0).normal(0, 0.1, 3 * 32000).astype(np.float32)
    for expected, audio in {"Sine wave": _tone(440.0, 3.0), "White noise": noise}.items():
        top = [names[i] for i in net.tag_waveform(audio).logits[0].topk(3).indices]
        assert expected in top, (expected, top)
