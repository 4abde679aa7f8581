"""The instrument classifier on the musicnn front end: its features, labels on a 16-kHz grid, the model, the probe.

The converted MTT_musicnn weights are not in git (``scripts/convert_musicnn.py`` makes them); these tests use a
musicnn network with seeded random weights, saved as the converter saves it, so every path runs as with the real
backbone. The bundled musicnn folder (real weights) is tested with the default model (tests/test_default_model.py).
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from instrument_classifier.data.musicnet import MUSICNET_SR, frame_activity, read_labels
from instrument_classifier.inference import predict_timeline, stream_features
from instrument_classifier.modeling import (
    InstrumentFeatureExtractor,
    InstrumentMusicnnConfig,
    InstrumentMusicnnForAudioClassification,
)
from instrument_classifier.modeling.feature_extraction_instrument import default_feature_settings
from instrument_classifier.modeling.musicnn_frontend import musicnn_log_mel
from instrument_classifier.training import linear_probe

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "space" / "examples" / "haydn_string_quartet_53.ogg"


def _mono(path):
    audio, sr = sf.read(path, dtype="float32")
    return (audio.mean(axis=1) if audio.ndim > 1 else audio), sr


@pytest.fixture(scope="module")
def backbone_file(musicnn_backbone_file):
    return musicnn_backbone_file


def test_musicnn_features_equal_the_networks_own_preprocessing_and_stream_exactly():
    fe = InstrumentFeatureExtractor(**default_feature_settings("musicnn"))
    audio, sr = _mono(EXAMPLE)
    audio = fe.resample(audio, sr)
    features = fe.extract(audio)
    reference = musicnn_log_mel(torch.from_numpy(audio)).numpy()  # (frames, 96); rounds mel power to float16
    assert features.shape == reference.shape == (fe.num_frames(len(audio)), 96)
    np.testing.assert_allclose(features, reference, atol=1e-3)
    streamed = np.concatenate(list(stream_features(audio, fe)))
    np.testing.assert_allclose(streamed, features, atol=1e-5)
    assert fe.frame_rate == 62.5 and fe.do_normalize is False and fe.top_db is None


def test_frame_activity_places_44k_label_times_on_a_16k_frame_grid(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("start_time,end_time,instrument,note,start_beat,end_beat,note_value\n"
                   f"{MUSICNET_SR},{2 * MUSICNET_SR},41,60,0,1,Quarter\n")
    notes = read_labels(csv)
    # 16 kHz, hop 256: frame t is centred on t * 16 ms and covers [t - 0.5, t + 0.5) * 16 ms
    active = frame_activity(notes, 200, "musicnet11", hop_length=256, sampling_rate=16000)[:, 2]
    on = np.flatnonzero(active)
    # [1 s, 2 s) = samples [16000, 32000): frame 62 covers [15744, 16000), outside; frame 125 covers [31872, 32128)
    assert on[0] == 63 and on[-1] == 125
    # at the default rate the grid is MusicNet's own, as before
    assert np.array_equal(frame_activity(notes, 200, "musicnet11", hop_length=512)[:, 2],
                          frame_activity(notes, 200, "musicnet11", hop_length=512, sampling_rate=MUSICNET_SR)[:, 2])


def test_model_freezes_the_backbone_and_round_trips_through_save_pretrained(backbone_file, tmp_path):
    model, fe = linear_probe.new_musicnn_classifier(str(backbone_file))
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["classifier.weight", "classifier.bias"]
    model.train()
    assert not model.musicnn.training and model.classifier.training  # frozen: batch norm keeps its statistics
    x = torch.rand(3, 187, 96) * 4
    labels = torch.zeros(3, 11)
    labels[0, 2] = 1
    out = model(input_features=x, labels=labels)
    out.loss.backward()
    assert model.classifier.weight.grad is not None and model.musicnn.front_end.input_norm.weight.grad is None
    assert out.frame_logits.shape == (3, 187, 11)
    # every frame of a window carries the window's logits
    assert torch.equal(out.frame_logits[:, 0], out.logits) and torch.equal(out.frame_logits[:, -1], out.logits)
    model.eval()
    model.save_pretrained(tmp_path / "m")
    fe.save_pretrained(tmp_path / "m")
    saved = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert {"musicnn_frontend.py", "modeling_instrument_musicnn.py", "model.safetensors"} <= set(saved)
    again = InstrumentMusicnnForAudioClassification.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        assert torch.allclose(again(input_features=x).logits, model(input_features=x).logits)


def test_config_refuses_other_features_and_unknown_backbone_settings():
    with pytest.raises(ValueError, match="feature_type must be 'musicnn'"):
        InstrumentMusicnnConfig(feature_type="mfcc")
    with pytest.raises(ValueError, match="unknown backbone settings"):
        InstrumentMusicnnConfig(backbone={"timbral_filterz": 3})
    assert InstrumentMusicnnConfig().representation_size == 200 + 2 * 753 + 50


def test_fit_linear_head_learns_separable_labels_and_leaves_rare_ones_undetected(backbone_file):
    model, _ = linear_probe.new_musicnn_classifier(str(backbone_file))
    rng = np.random.default_rng(0)
    size = model.config.representation_size
    x = rng.normal(size=(400, size)).astype(np.float32) * 3 + 5
    y = np.zeros((400, 11), dtype=np.float32)
    y[:, 2] = x[:, 0] > 5  # Violin: one direction of the representation
    y[:3, 7] = 1  # Oboe: three windows, too few for a head
    absent = linear_probe.fit_linear_head(model, x, y, C=1.0)
    assert "Oboe" in absent and "Violin" not in absent
    p = linear_probe.head_probabilities(model, x)
    assert ((p[:, 2] > 0.5) == (y[:, 2] > 0)).mean() > 0.95
    assert p[:, 7].max() < 1e-3


def test_head_probabilities_are_the_forward_pass_without_the_backbone(backbone_file):
    model, _ = linear_probe.new_musicnn_classifier(str(backbone_file))
    rng = np.random.default_rng(1)
    reps = rng.normal(size=(300, model.config.representation_size)).astype(np.float32)
    labels = np.zeros((300, 11), dtype=np.float32)
    labels[:, 4] = reps[:, 3] > 0
    linear_probe.fit_linear_head(model, reps, labels, C=1.0)
    model.eval()
    windows = torch.rand(4, 187, 96) * 4
    with torch.no_grad():
        forward = torch.sigmoid(model(input_features=windows).logits).numpy()
        representations = model.representation(windows).numpy()
    assert np.allclose(linear_probe.head_probabilities(model, representations), forward, atol=1e-6)


def test_linear_probe_command_trains_a_model_that_predict_and_the_auto_classes_load(
        backbone_file, rendered_corpus, tmp_path):
    dataset = tmp_path / "dataset"
    prepare = subprocess.run(
        [sys.executable, "-m", "instrument_classifier.cli", "prepare", "--data-dir", str(rendered_corpus),
         "--output", str(dataset), "--taxonomy", "musicnet11", "--feature-type", "musicnn",
         "--window-frames", "187", "--hop-frames", "187", "--validation-fraction", "0.25"],
        capture_output=True, text=True)
    assert prepare.returncode == 0, prepare.stderr
    info = json.loads((dataset / "prepare_info.json").read_text())
    assert info["window_frames"] == 187
    output = tmp_path / "model"
    probe = subprocess.run(
        [sys.executable, "-m", "instrument_classifier.training.linear_probe", "--backbone", str(backbone_file),
         "--dataset", str(dataset), "--output_dir", str(output), "--C", "0.01"],
        capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    assert "saved" in probe.stdout
    from instrument_classifier.inference import load_model

    model, fe = load_model(output)
    assert isinstance(model, InstrumentMusicnnForAudioClassification) and fe.feature_type == "musicnn"
    timeline = predict_timeline(model, fe, EXAMPLE)
    n_windows = -(-fe.num_frames(int(timeline.duration_s * 16000)) // 187)
    assert timeline.window_probs.shape == (n_windows, 11)
    assert len(timeline.frame_probs) == fe.num_frames(round(timeline.duration_s * 16000))
    # the frames of the first window carry its probabilities
    np.testing.assert_allclose(timeline.frame_probs[0], timeline.window_probs[0], rtol=1e-5)
    assert fe.level_dbfs is None  # as recorded, unless asked
    # a second run of the command replaces the folder atomically; --level-dbfs is saved with the extractor
    probe = subprocess.run(
        [sys.executable, "-m", "instrument_classifier.training.linear_probe", "--backbone", str(output),
         "--dataset", str(dataset), "--output_dir", str(output), "--level-dbfs", "-12", "--level-max-gain-db", "15"],
        capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]
    _, fe = load_model(output)
    assert (fe.level_dbfs, fe.level_max_gain_db) == (-12.0, 15.0)
    with pytest.raises(SystemExit):  # a usage error, before any window is read
        linear_probe.main(["--backbone", str(output), "--dataset", str(dataset), "--output_dir",
                           str(tmp_path / "never"), "--level-dbfs", "6"])
    assert not (tmp_path / "never").exists()


def test_linear_probe_refuses_a_dataset_of_other_features(backbone_file, rendered_corpus, tmp_path):
    dataset = tmp_path / "mfcc"
    subprocess.run([sys.executable, "-m", "instrument_classifier.cli", "prepare", "--data-dir", str(rendered_corpus),
                    "--output", str(dataset), "--taxonomy", "musicnet11"], check=True, capture_output=True)
    with pytest.raises(ValueError, match="other features than musicnn"):
        linear_probe.main(["--backbone", str(backbone_file), "--dataset", str(dataset), "--output_dir",
                           str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
