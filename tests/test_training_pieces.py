"""The pieces train.py is made of, on real features: collator, feature augmentation, pos_weight, config
overrides, and the one-line errors of the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from instrument_classifier.modeling.feature_extraction_instrument import (
    InstrumentFeatureExtractor,
    default_feature_settings,
)
from instrument_classifier.training.class_weights import pos_weight_from_labels
from instrument_classifier.training.collator import InstrumentDataCollator
from instrument_classifier.training.errors import TrainingSetupError
from instrument_classifier.training.feature_augmentation import FeatureAugmentation
from instrument_classifier.training.model_factory import apply_config_overrides, parse_config_overrides

REPO = Path(__file__).resolve().parents[1]


def _tones(seconds: float = 3.0, sr: int = 44100) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(0.2 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 6)) * (1 + np.sin(2 * np.pi * 0.5 * t)) / 2
    return (wave + 1e-3 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def fitted_extractor():
    extractor = InstrumentFeatureExtractor()
    return extractor.fit_normalization([extractor.extract(_tones(), normalize=False)])


def test_collator_normalises_raw_windows_like_the_feature_extractor(fitted_extractor):
    rng = np.random.default_rng(0)
    raw = [fitted_extractor.extract(_tones(), normalize=False)[:256] + rng.normal(0, 1, (256, 13)).astype(np.float32)
           for _ in range(3)]
    rows = [{"input_features": r, "labels": np.eye(12, dtype=np.float32)[i],
             "frame_labels": np.zeros((256, 12), np.uint8), "recording_id": "x"} for i, r in enumerate(raw)]
    batch = InstrumentDataCollator.from_feature_extractor(fitted_extractor)(rows)
    assert set(batch) == {"input_features", "labels", "frame_labels"}
    np.testing.assert_allclose(batch["input_features"].numpy(), np.stack([fitted_extractor.normalize(r) for r in raw]),
                               rtol=1e-6, atol=1e-6)
    assert batch["labels"].dtype == batch["frame_labels"].dtype == torch.float32
    assert batch["frame_labels"].shape == (3, 256, 12)
    with pytest.raises(ValueError, match="features per frame"):
        InstrumentDataCollator([0.0] * 20, [1.0] * 20)(rows)


@pytest.mark.parametrize("feature_type,n", [("mfcc", 13), ("logmel", 32), ("cqt", 84)])
def test_gain_augmentation_equals_a_level_change_of_the_audio(feature_type, n):
    """+g dB on the audio shifts every mel band by g dB: MFCC c0 by g*sqrt(n_mels), log-mel bands by g."""
    extractor = InstrumentFeatureExtractor(**default_feature_settings(feature_type, n))
    audio = _tones()
    extractor.fit_normalization([extractor.extract(audio, normalize=False)])
    quiet = extractor.extract(audio, normalize=True)
    gain_db = -9.0
    louder = extractor.extract(audio * 10 ** (gain_db / 20), normalize=True)
    scale = FeatureAugmentation.gain_scale_for(extractor).numpy()
    np.testing.assert_allclose(louder - quiet, np.broadcast_to(gain_db * scale, quiet.shape), atol=2e-3)

    augment = FeatureAugmentation(gain_db=12.0, gain_scale=torch.from_numpy(scale))
    torch.manual_seed(0)
    x = torch.from_numpy(np.stack([quiet, quiet]))
    shifted = augment(x)
    delta = (shifted - x).numpy()
    per_window_gain = delta[:, 0, np.argmax(scale)] / scale.max()
    np.testing.assert_allclose(delta, np.broadcast_to(per_window_gain[:, None, None] * scale, delta.shape), atol=1e-4)
    assert np.all(np.abs(per_window_gain) <= 12.0) and per_window_gain[0] != per_window_gain[1]


def _equalise(audio: np.ndarray, extractor: InstrumentFeatureExtractor, a_db: np.ndarray) -> np.ndarray:
    """The audio through the EQ whose dB curve over the (continuous) band index is
    sum_k a_k cos(pi k (m + 1/2) / n)."""
    from transformers.audio_utils import hertz_to_mel
    n = extractor.n_mels
    freqs = np.fft.rfftfreq(len(audio), 1 / extractor.sampling_rate)
    if extractor.feature_type == "cqt":  # band centres sit at fmin * 2 ** (m / bins_per_octave)
        m = extractor.bins_per_octave * np.log2(np.maximum(freqs, 1.0) / extractor.band_frequencies()[0])
    else:
        lo, hi = hertz_to_mel(0.0, "slaney"), hertz_to_mel(extractor.sampling_rate / 2, "slaney")
        m = (hertz_to_mel(freqs, "slaney") - lo) / (hi - lo) * (n + 1) - 1  # band centres sit at m = 0..n-1
    k = np.arange(1, len(a_db) + 1)
    curve = (a_db[:, None] * np.cos(np.pi * k[:, None] * (m[None, :] + 0.5) / n)).sum(0)
    return np.fft.irfft(np.fft.rfft(audio) * 10 ** (curve / 20), n=len(audio)).astype(np.float32)


@pytest.mark.parametrize("feature_type,n", [("mfcc", 13), ("logmel", 32), ("cqt", 84)])
def test_eq_augmentation_equals_an_equaliser_on_the_audio(feature_type, n):
    """A smooth EQ on the audio moves the features by a_k on the EQ basis; the augmentation draws such EQs."""
    extractor = InstrumentFeatureExtractor(**default_feature_settings(feature_type, n), include_deltas=True)
    audio = _tones() + 0.01 * np.random.default_rng(1).standard_normal(3 * 44100).astype(np.float32)
    extractor.fit_normalization([extractor.extract(audio, normalize=False)])
    a_db = np.array([4.0, -3.0, 2.0, 1.5])
    dry = extractor.extract(audio, normalize=True)
    wet = extractor.extract(_equalise(audio, extractor, a_db), normalize=True)
    basis = FeatureAugmentation.eq_basis_for(extractor, bands=4).numpy()
    predicted = a_db @ basis
    inner = slice(10, -10)  # frames away from the FFT filter's wrap-around at the ends
    np.testing.assert_allclose(np.median(wet[inner] - dry[inner], axis=0), predicted,
                               atol=0.02 * np.abs(predicted).max())
    assert np.all(basis[:, n:] == 0)  # deltas are untouched by a static EQ

    augment = FeatureAugmentation(eq_db=8.0, eq_basis=torch.from_numpy(basis))
    torch.manual_seed(0)
    x = torch.from_numpy(np.stack([dry, dry]))
    delta = (augment(x) - x).numpy()
    assert np.allclose(delta, delta[:, :1, :], atol=1e-5)  # one curve per window, the same in every frame
    drawn, *_ = np.linalg.lstsq(basis.T, delta[:, 0, :].T, rcond=None)  # (bands, windows)
    np.testing.assert_allclose(drawn.T @ basis, delta[:, 0, :], atol=1e-4)  # inside the EQ basis
    assert np.all(np.abs(drawn) <= 8.0 / 4 + 1e-4) and not np.allclose(drawn[:, 0], drawn[:, 1])
    with pytest.raises(ValueError, match="fewer than"):
        FeatureAugmentation.eq_basis_for(InstrumentFeatureExtractor(n_coefficients=4), bands=4)
    with pytest.raises(ValueError, match="at least 1"):
        FeatureAugmentation.eq_basis_for(extractor, bands=0)


def _coloured_noise(envelope_db, alpha: float, seconds: float = 3.0, sr: int = 44100) -> np.ndarray:
    """White noise through the dB curve ``envelope_db(f / alpha)``: the envelope stretched by ``alpha``."""
    spectrum = np.fft.rfft(np.random.default_rng(2).standard_normal(int(seconds * sr)))
    freqs = np.fft.rfftfreq(int(seconds * sr), 1 / sr)
    return (0.05 * np.fft.irfft(spectrum * 10 ** (envelope_db(freqs / alpha) / 20))).astype(np.float32)


@pytest.mark.parametrize("feature_type,n", [("mfcc", 13), ("logmel", 32), ("cqt", 84)])
def test_warp_augmentation_equals_a_stretched_spectral_envelope(feature_type, n):
    """The warp of the features of a sound equals the features of that sound with its envelope stretched."""

    def formants(f):  # two resonances, smooth at the scale of a mel band
        octaves = np.log2(np.maximum(f, 20.0))
        return (18 * np.exp(-((octaves - np.log2(700)) / 0.5) ** 2)
                + 12 * np.exp(-((octaves - np.log2(2500)) / 0.4) ** 2))

    extractor = InstrumentFeatureExtractor(**default_feature_settings(feature_type, n), include_deltas=True)
    a, b = FeatureAugmentation.warp_maps_for(extractor, warp=0.15, steps=7)  # raw features: no normalisation yet
    np.testing.assert_allclose(a[3].numpy(), np.eye(extractor.feature_size), atol=1e-5)  # alpha = 1: identity
    assert np.all(b.numpy() == 0)
    dry = np.median(extractor.extract(_coloured_noise(formants, 1.0), normalize=False), axis=0)
    statics = slice(0, n)  # deltas of stationary noise are ~0 either way
    for k, alpha in ((0, 0.85), (6, 1.15)):
        stretched = np.median(extractor.extract(_coloured_noise(formants, alpha), normalize=False), axis=0)
        predicted = dry @ a[k].numpy()
        # the maps see only the envelope the kept coefficients describe: close, not exact (14-20 % for 13 MFCCs)
        relative = np.linalg.norm((predicted - stretched)[statics]) / np.linalg.norm((stretched - dry)[statics])
        assert relative < 0.3, (alpha, relative)

    raw_a = a
    extractor.fit_normalization([extractor.extract(_tones(), normalize=False)])
    a, b = FeatureAugmentation.warp_maps_for(extractor, warp=0.15, steps=7)
    raw = extractor.extract(_coloured_noise(formants, 1.0), normalize=False)
    np.testing.assert_allclose(extractor.normalize(raw) @ a[6].numpy() + b[6].numpy(),
                               extractor.normalize(raw @ raw_a[6].numpy()), atol=1e-3)  # the same warp, normalised

    augment = FeatureAugmentation(warp=0.15, warp_maps=(a, b))
    torch.manual_seed(0)
    windows = torch.from_numpy(np.stack([extractor.extract(_tones(), normalize=True)] * 8))
    out = augment(windows)
    per_window = [min(range(7), key=lambda k: float((windows[i] @ a[k] + b[k] - out[i]).abs().max()))
                  for i in range(8)]
    for i, k in enumerate(per_window):  # each window is one of the grid's warps, in every frame
        torch.testing.assert_close(out[i], windows[i] @ a[k] + b[k], atol=1e-4, rtol=0)
    assert len(set(per_window)) > 1
    with pytest.raises(ValueError, match="warp must be"):
        FeatureAugmentation.warp_maps_for(extractor, warp=0.6)


def test_masks_zero_random_spans_and_are_reproducible():
    augment = FeatureAugmentation(time_masks=2, time_mask_frames=20, feature_masks=1, feature_mask_width=3)
    x = torch.randn(64, 256, 13) + 5.0  # no natural zeros
    torch.manual_seed(1)
    a = augment(x)
    torch.manual_seed(1)
    assert torch.equal(a, augment(x))
    zero = a == 0
    masked_frames = zero.all(dim=2).sum(dim=1)  # frames masked across all coefficients
    masked_coefs = zero.all(dim=1).sum(dim=1)
    assert masked_frames.max() <= 40 and masked_coefs.max() <= 3
    assert masked_frames.float().mean() > 5 and (masked_coefs > 0).any()
    assert torch.equal(a[~zero], x[~zero])
    assert FeatureAugmentation().enabled is False
    assert torch.equal(FeatureAugmentation(time_masks=2, prob=0.0)(x), x)


def test_pos_weight_lifts_rare_classes_only():
    labels = np.zeros((100, 4))
    labels[:60, 0] = 1  # frequent: weight 1
    labels[:10, 1] = 1  # rare: 90 / 10
    labels[:1, 2] = 1  # very rare: clipped
    assert pos_weight_from_labels(labels, max_weight=20.0) == [1.0, 9.0, 20.0, 1.0]


def test_config_overrides_parse_aliases_lists_and_are_validated():
    from instrument_classifier.modeling import InstrumentCNNConfig, InstrumentTransformerConfig

    overrides = parse_config_overrides("d_model=64, num_layers=2,channels=[16,32],pooling=max,dropout=0.1")
    assert overrides == {"hidden_size": 64, "num_hidden_layers": 2, "conv_channels": [16, 32], "pooling": "max",
                         "dropout": 0.1}
    config = apply_config_overrides(InstrumentTransformerConfig(), {"hidden_size": 64, "num_hidden_layers": 2})
    assert (config.hidden_size, config.num_hidden_layers) == (64, 2)
    cnn = apply_config_overrides(InstrumentCNNConfig(), {"conv_channels": [8, 16], "kernel_sizes": [5, 3]})
    assert cnn.kernel_sizes == [[5, 5], [3, 3]]
    deeper = {"conv_channels": [32, 64, 64], "kernel_sizes": [3] * 3, "pool_sizes": [3] * 3}  # three convolutions
    assert apply_config_overrides(InstrumentCNNConfig(), deeper).conv_channels == [32, 64, 64]
    strided = apply_config_overrides(InstrumentCNNConfig(feature_size=168), {"feature_strides": [3, 2]})
    assert strided.feature_strides == [3, 2]
    with pytest.raises(TrainingSetupError, match="does not divide"):
        apply_config_overrides(InstrumentTransformerConfig(), {"hidden_size": 30})
    with pytest.raises(TrainingSetupError, match="unknown config field"):
        apply_config_overrides(InstrumentCNNConfig(), {"d_modle": 3})
    with pytest.raises(TrainingSetupError, match="key=value"):
        parse_config_overrides("hidden_size")


def test_command_line_errors_are_one_line(tmp_path, capsys):
    sys.path.insert(0, str(REPO))
    import train

    assert train.cli(["--model_type", "cnn", "--dataset_path", str(tmp_path / "missing"),
                      "--output_dir", str(tmp_path / "out")]) == 2
    assert "not a prepared dataset folder" in capsys.readouterr().err
    assert train.cli(["--model_type", "cnn", "--output_dir", str(tmp_path / "out")]) == 2
    assert "exactly one of --dataset_path" in capsys.readouterr().err
    # a model folder that is not here is named as such, before any data is read, not tried as a Hub id
    assert train.cli(["--model_name_or_path", str(tmp_path / "no-model"), "--dataset_path", str(tmp_path / "missing"),
                      "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"--model_name_or_path {tmp_path / 'no-model'}: no such model folder" in err and "cnn" in err
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_model_name_or_path_takes_bundled_names_from_any_directory(tmp_path, monkeypatch):
    from instrument_classifier.training.model_factory import resolve_model_source

    bundled = str(REPO / "instrument_classifier" / "pretrained" / "cnn")
    monkeypatch.chdir(tmp_path)  # no checkout here: the README's relative path names the installed package's folder
    for name in ("cnn", "pretrained/cnn", "instrument_classifier/pretrained/cnn"):
        assert resolve_model_source(name) == bundled
    (tmp_path / "cnn").mkdir()  # a folder of the user's own comes first
    assert resolve_model_source("cnn") == "cnn"
    assert resolve_model_source("someone/model") == "someone/model"  # a Hub id stays one


def test_model_card_names_the_features_deltas_included():
    from types import SimpleNamespace

    from instrument_classifier.training.model_card import _describe_features

    config = SimpleNamespace(feature_type="mfcc", feature_size=26)
    info = {"feature_extractor": {"n_coefficients": 13, "include_deltas": True}}
    assert _describe_features(config, info) == "13 MFCCs and their deltas (26 values)"
    info = {"feature_extractor": {"n_coefficients": 13, "include_deltas": True, "delta_order": 2}}
    assert _describe_features(SimpleNamespace(feature_type="mfcc", feature_size=39), info) == (
        "13 MFCCs and their deltas and delta-deltas (39 values)")
    assert _describe_features(SimpleNamespace(feature_type="logmel", feature_size=64), {}) == "64 log-mel bands"
    info = {"feature_extractor": {"n_coefficients": 84, "include_deltas": True}}
    assert _describe_features(SimpleNamespace(feature_type="cqt", feature_size=168), info) == (
        "84 constant-Q bands and their deltas (168 values)")


def test_train_is_a_command_of_the_installed_package(tmp_path, capsys):
    """`instrument-classifier train` runs the package's entry point with the same flags as the checkout's train.py."""
    from instrument_classifier import cli

    missing = tmp_path / "missing"
    assert cli.main(["train", "--model_type", "cnn", "--dataset_path", str(missing), "--output_dir",
                     str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("instrument-classifier train: error: ") and str(missing) in err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: instrument-classifier train")
    for flag in ("--model_type", "--dataset_path", "--per_device_train_batch_size", "--use_pos_weight"):
        assert flag in text
    assert "train" in cli.COMMANDS


def test_train_runs_as_a_module_outside_the_checkout(tmp_path):
    """What the recipe runs (train_models.train_command): no repo-root train.py needed, from any working directory."""
    import subprocess

    from instrument_classifier.recipes import train_models

    command = train_models.train_command(["--model_type", "cnn", "--dataset_path", str(tmp_path / "missing"),
                                          "--output_dir", str(tmp_path / "out")])
    assert "train.py" not in " ".join(command)
    proc = subprocess.run(command, cwd=tmp_path, env=train_models.train_environment(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"instrument-classifier train: error: {tmp_path / 'missing'}" in proc.stderr


def test_checkout_train_py_is_the_package_entry_point():
    sys.path.insert(0, str(REPO))
    import train

    from instrument_classifier.training import run_train

    assert train.main is run_train.main and train.cli is run_train.cli
    text = (REPO / "train.py").read_text()
    assert len(text.splitlines()) < 30 and 'cli(prog="train.py")' in text
