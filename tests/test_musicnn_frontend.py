"""The PyTorch musicnn port: preprocessing against librosa, shapes, padding, per-patch outputs, and (when
converted weights are at ``$MUSICNN_WEIGHTS``) the tags musicnn's TensorFlow graph gave for a sine and noise.

No TensorFlow here: the TF numbers are in ``fixtures/musicnn_tf_reference.json`` (written by
``bench/bench_musicnn_port.py --write-fixture``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from instrument_classifier.modeling.musicnn_frontend import (
    MTT_TAGS,
    MusicnnConfig,
    MusicnnFrontend,
    musicnn_log_mel,
    musicnn_mel_filterbank,
    musicnn_patches,
    musicnn_preprocess,
)

SR = 16000
FIXTURE = Path(__file__).parent / "fixtures" / "musicnn_tf_reference.json"


def chirp(seconds: float, f0: float = 50.0, f1: float = 7000.0, amplitude: float = 0.3) -> np.ndarray:
    """Exponential sweep: every frame, hence every patch, has different content."""
    t = np.arange(int(seconds * SR)) / SR
    k = np.log(f1 / f0) / seconds
    return (amplitude * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)).astype(np.float32)


def reference_signal(spec: dict) -> np.ndarray:
    """Same signals as ``bench/bench_musicnn_port.py`` (the fixture also stores their energy, checked below)."""
    n = int(round(spec["seconds"] * SR))
    if spec["kind"] == "sine":
        return (spec["amplitude"] * np.sin(2 * np.pi * spec["frequency"] * np.arange(n) / SR)).astype(np.float32)
    if spec["kind"] == "noise":
        return (spec["std"] * np.random.default_rng(spec["seed"]).standard_normal(n)).astype(np.float32)
    raise ValueError(spec)


def random_model(seed: int = 0) -> MusicnnFrontend:
    """Random weights and random batch-norm statistics, with gammas of both signs as in the trained model."""
    torch.manual_seed(seed)
    model = MusicnnFrontend()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = module.num_features
                module.weight.copy_(torch.randn(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
    return model.eval()


# -- preprocessing -----------------------------------------------------------------------------------

def test_mel_filterbank_equals_librosa():
    np.testing.assert_allclose(
        musicnn_mel_filterbank(), librosa.filters.mel(sr=SR, n_fft=512, n_mels=96), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_log_mel_equals_librosa_melspectrogram(pad_mode):
    waveform = chirp(2.0) + 0.01 * np.random.default_rng(1).standard_normal(2 * SR).astype(np.float32)
    mel = librosa.feature.melspectrogram(y=waveform, sr=SR, n_fft=512, hop_length=256, n_mels=96, pad_mode=pad_mode).T
    ours = musicnn_log_mel(waveform, pad_mode=pad_mode, quantize_float16=False).numpy()
    assert ours.shape == (1 + len(waveform) // 256, 96) == mel.shape
    expected = np.log10(10000 * mel + 1)
    np.testing.assert_allclose(ours[:-1], expected[:-1], rtol=1e-5, atol=2e-5)
    # librosa >= 0.10 builds the reflected last frame from a separately padded tail; it differs from
    # reflecting the whole signal by ~1e-6 relative, which the log of quiet bins magnifies (8e-5 here).
    np.testing.assert_allclose(ours[-1], expected[-1], rtol=1e-5, atol=2e-5 if pad_mode == "constant" else 2e-4)


def test_log_mel_float16_rounding_as_musicnn():
    # musicnn: melspectrogram -> astype(float16) -> log10(10000 x + 1) (float32 arithmetic under numpy < 2).
    waveform = chirp(2.0)
    mel = librosa.feature.melspectrogram(y=waveform, sr=SR, n_fft=512, hop_length=256, n_mels=96).T
    upstream = np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1)
    ours = musicnn_log_mel(waveform).numpy()
    # Equal up to float32 noise of the log (1e-6), except where float32 noise of the mel power crosses a
    # float16 rounding boundary: one float16 step, 2^-11 relative, at most log10(1 + 2^-10) ~ 4.3e-4 after the log.
    assert np.mean(np.abs(ours - upstream) > 2e-6) < 0.01
    np.testing.assert_allclose(ours, upstream, rtol=0, atol=4.5e-4)
    # and the rounding is really there: unrounded values differ by more than float32 noise
    assert np.abs(ours - musicnn_log_mel(waveform, quantize_float16=False).numpy()).max() > 1e-5


def test_loud_audio_gives_finite_log_mel():
    # Under numpy >= 2 upstream's float16 arithmetic overflows to inf for mel power > 6.55; ours must not.
    log_mel = musicnn_log_mel(0.99 * np.sin(2 * np.pi * 100 * np.arange(SR) / SR).astype(np.float32))
    assert torch.isfinite(log_mel).all() and log_mel.max() > np.log10(10000 * 6.55)


def test_preprocessing_refuses_other_rates_and_empty_audio():
    with pytest.raises(ValueError, match="16000"):
        musicnn_log_mel(np.zeros(44100, np.float32), sampling_rate=44100)
    with pytest.raises(ValueError, match="zero-length"):
        musicnn_log_mel(np.zeros(0, np.float32))


# -- patches and padding ----------------------------------------------------------------------------

def test_patches_with_hop_are_slices_of_the_spectrogram():
    log_mel = torch.arange(400 * 96, dtype=torch.float32).reshape(400, 96)
    patches, starts = musicnn_patches(log_mel, hop_frames=62)
    assert starts.tolist() == list(range(0, 400 - 187 + 1, 62))
    for patch, start in zip(patches, starts):
        assert torch.equal(patch, log_mel[start : start + 187])
    # musicnn drops the frames after the last full patch; drop_last=False covers them with a padded patch
    tail, tail_starts = musicnn_patches(log_mel, hop_frames=62, drop_last=False)
    assert tail_starts.tolist() == starts.tolist() + [starts[-1].item() + 62]
    assert torch.equal(tail[-1, : 400 - tail_starts[-1]], log_mel[tail_starts[-1] :])


@pytest.mark.parametrize("seconds", [0.01, 0.5, 2.97])
def test_clips_shorter_than_one_patch_are_padded(seconds):
    # 2.97 s (Medley-solos-DB) is 186 frames: one short of a patch, where upstream extractor() crashes.
    waveform = chirp(seconds)
    log_mel = musicnn_log_mel(waveform)
    n_frames = log_mel.shape[0]
    assert n_frames < 187

    patches, starts = musicnn_preprocess(waveform)
    assert patches.shape == (1, 187, 96) and starts.tolist() == [0]
    assert torch.equal(patches[0, :n_frames], log_mel)
    assert torch.equal(patches[0, n_frames : 2 * n_frames][: 187 - n_frames], log_mel[: 187 - n_frames])  # repeated

    zeros, _ = musicnn_preprocess(waveform, pad_short="zeros")
    assert torch.equal(zeros[0, :n_frames], log_mel) and not zeros[0, n_frames:].any()

    out = random_model().embed_waveform(waveform)
    assert out.probabilities.shape == (1, 50) and torch.isfinite(out.penultimate).all()


# -- model ----------------------------------------------------------------------------------------

def test_shapes_and_size():
    model = random_model()
    assert len(MTT_TAGS) == len(set(MTT_TAGS)) == 50 and MTT_TAGS[12] == "violin" and MTT_TAGS[43] == "cello"
    # the checkpoint's 64 model variables hold 792,079 numbers
    assert sum(v.numel() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")) == 792079
    with torch.no_grad():
        out = model(torch.rand(2, 187, 96) * 3)
    expected = {
        "logits": (2, 50), "probabilities": (2, 50), "penultimate": (2, 200), "mean_pool": (2, 753),
        "max_pool": (2, 753), "timbral": (2, 187, 408), "temporal": (2, 187, 153), "cnn1": (2, 187, 64),
        "cnn2": (2, 187, 64), "cnn3": (2, 187, 64), "frame_features": (2, 187, 753),
    }
    assert {k: tuple(v.shape) for k, v in out.to_dict().items()} == expected
    torch.testing.assert_close(out.probabilities, torch.sigmoid(out.logits))
    torch.testing.assert_close(out.frame_features,
                               torch.cat([out.timbral, out.temporal, out.cnn1, out.cnn2, out.cnn3], -1))
    torch.testing.assert_close(out.max_pool, out.frame_features.amax(1))
    # fully convolutional before the pooling: other lengths run too
    with torch.no_grad():
        assert model(torch.rand(1, 100, 96), output_frame_features=False).penultimate.shape == (1, 200)
    with pytest.raises(ValueError, match="96"):
        model(torch.rand(1, 187, 128))


def test_inference_pooling_equals_literal_order():
    # The eval path pools before ReLU + batch norm (and takes the min where gamma < 0): must equal
    # musicnn's conv -> ReLU -> batch norm -> max over frequency.
    model = random_model(seed=3)
    spectrogram = model.front_end.input_norm((torch.rand(2, 187, 96) * 3).unsqueeze(1))
    with torch.no_grad():
        for block in [*model.front_end.timbral, *model.front_end.temporal]:
            assert (block.norm.weight < 0).any() and (block.norm.weight > 0).any()
            fast = block(spectrogram)
            pad = block.time_padding if isinstance(block.time_padding, tuple) else (block.time_padding,) * 2
            literal = block.norm(torch.relu(block.conv(torch.nn.functional.pad(spectrogram, (0, 0, *pad))))).amax(3)
            torch.testing.assert_close(fast, literal, rtol=0, atol=1e-6)


def test_each_overlapping_patch_gets_its_own_embedding():
    # Upstream extractor() returns the first patch's penultimate / mid-end features for every later patch.
    model = random_model()
    waveform = chirp(7.0)
    out = model.embed_waveform(waveform, hop_frames=41, batch_size=3, output_frame_features=True)
    patches, starts = musicnn_preprocess(waveform, hop_frames=41)
    assert len(starts) >= 6 and torch.equal(out.start_frames, starts)
    with torch.no_grad():
        for i, patch in enumerate(patches):
            alone = model(patch[None])
            torch.testing.assert_close(out.penultimate[i], alone.penultimate[0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out.cnn3[i], alone.cnn3[0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out.probabilities[i], alone.probabilities[0], rtol=1e-5, atol=1e-6)
    distances = torch.cdist(out.penultimate, out.penultimate)
    assert (distances + torch.eye(len(starts)) * 1e9).min() > 1e-3  # no two patches share an embedding


def test_safetensors_round_trip(tmp_path):
    from safetensors.torch import save_file

    model = random_model(seed=5)
    path = tmp_path / "musicnn.safetensors"
    save_file(model.state_dict(), str(path), metadata={"config": json.dumps(MusicnnConfig().to_dict())})
    loaded = MusicnnFrontend.from_safetensors(str(path))
    assert not loaded.training
    x = torch.rand(1, 187, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits, rtol=0, atol=0)
    state = model.state_dict()
    del state["back_end.classifier.bias"]
    save_file(state, str(path))
    with pytest.raises(RuntimeError, match="classifier.bias"):
        MusicnnFrontend.from_safetensors(str(path))


# -- converted weights against TensorFlow --------------------------------------------------------

def _weights() -> str:
    path = os.environ.get("MUSICNN_WEIGHTS", "")
    if not path or not os.path.exists(path):
        pytest.skip("set MUSICNN_WEIGHTS to the output of scripts/convert_musicnn.py")
    return path


@pytest.mark.parametrize("signal", ["sine440", "noise"])
def test_converted_weights_reproduce_tensorflow_tags(signal):
    model = MusicnnFrontend.from_safetensors(_weights())
    reference = json.loads(FIXTURE.read_text())["signals"][signal]
    waveform = reference_signal(reference["spec"])
    assert np.sum(waveform.astype(np.float64) ** 2) == pytest.approx(reference["waveform_sum_of_squares"], rel=1e-9)
    out = model.embed_waveform(waveform)  # patches of 187 frames, hop 187, as the fixture
    expected = np.array(reference["taggram"])
    assert out.probabilities.shape == expected.shape
    # TF ran on musicnn's librosa log-mel, this on ours: both float32 models, fixture rounded to 1e-7.
    np.testing.assert_allclose(out.probabilities.numpy(), expected, rtol=0, atol=5e-5)
    np.testing.assert_allclose(out.penultimate[:, :8].numpy(), np.array(reference["penultimate_first8"]),
                               rtol=0, atol=2e-4)
    # the tags are not flat: the fixture discriminates (a wrong mapping would move the top tag)
    assert out.probabilities.argmax(1).tolist() == expected.argmax(1).tolist()
