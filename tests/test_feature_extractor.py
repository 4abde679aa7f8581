"""InstrumentFeatureExtractor against librosa, input validation, normalisation and save/load."""

from __future__ import annotations

import json

import librosa
import numpy as np
import pytest
import soxr

from conftest import SR, synth_notes
from instrument_classifier.modeling.feature_extraction_instrument import (
    InstrumentFeatureExtractor,
    default_feature_settings,
)


@pytest.fixture(scope="module")
def tones() -> np.ndarray:
    """4 s of overlapping harmonic tones (piano, violin, flute) over -80 dB noise, at 44.1 kHz."""
    notes = [(0, 2 * SR, 1, 48), (SR // 2, 3 * SR, 41, 64), (2 * SR, 4 * SR, 74, 79), (3 * SR, 4 * SR, 43, 36)]
    return synth_notes(notes, 4 * SR, seed=3)


def assert_close_to_range(actual: np.ndarray, expected: np.ndarray, fraction: float = 1e-3) -> None:
    assert actual.shape == expected.shape
    span = float(expected.max() - expected.min())
    err = float(np.abs(actual - expected).max())
    assert err <= fraction * span, f"max error {err:.4g} > {fraction} of the value range {span:.4g}"


def test_mfcc_matches_librosa(tones):
    fe = InstrumentFeatureExtractor()
    ours = fe.extract(tones)
    ref = librosa.feature.mfcc(y=tones, sr=SR, n_mfcc=13, n_fft=2048, hop_length=512).T
    assert ours.dtype == np.float32 and ours.shape == (fe.num_frames(len(tones)), 13)
    assert_close_to_range(ours, ref)


@pytest.mark.parametrize("seconds", [11.9, 12.0, 25.3])
def test_mfcc_matches_librosa_across_stft_blocks(tones, seconds):
    # extract() takes the STFT in blocks of 1024 frames (~11.9 s): block edges must not show
    n = int(seconds * SR)
    audio = np.tile(tones, n // len(tones) + 1)[:n]
    ours = InstrumentFeatureExtractor().extract(audio)
    ref = librosa.feature.mfcc(y=audio, sr=SR, n_mfcc=13, n_fft=2048, hop_length=512).T
    assert_close_to_range(ours, ref)


@pytest.mark.parametrize("rate", [22050, 48000])
def test_call_resamples_other_rates_like_librosa(tones, rate):
    fe = InstrumentFeatureExtractor()
    audio = soxr.resample(tones, SR, rate).astype(np.float32)
    batch = fe(audio, sampling_rate=rate, return_tensors="np")
    ours = batch["input_features"][0]
    # librosa's pipeline on the same input: soxr's HQ resampling to 44.1 kHz (what the extractor and the
    # package's audio reader use), then MFCCs
    resampled = librosa.resample(audio, orig_sr=rate, target_sr=SR, res_type="soxr_hq")
    ref = librosa.feature.mfcc(y=resampled, sr=SR, n_mfcc=13, n_fft=2048, hop_length=512).T
    assert batch["input_features"].shape == (1, len(ref), 13)
    assert abs(len(ref) - 4 * fe.frame_rate) <= 2
    assert_close_to_range(ours, ref)


def test_logmel_matches_librosa(tones):
    fe = InstrumentFeatureExtractor(feature_type="logmel", n_coefficients=64)
    mel = librosa.feature.melspectrogram(y=tones, sr=SR, n_fft=2048, hop_length=512, n_mels=64)
    ref = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0).T
    assert fe.feature_size == 64
    assert_close_to_range(fe.extract(tones), ref)


@pytest.mark.parametrize("freq", [98.0, 220.0, 440.0, 1000.0, 3000.0])
def test_cqt_puts_a_tone_in_its_semitone_band(freq):
    fe = InstrumentFeatureExtractor(**default_feature_settings("cqt"))
    assert (fe.n_fft, fe.feature_size) == (8192, 84)
    t = np.arange(2 * SR) / SR
    frames = fe.extract((0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
    centres = fe.band_frequencies()
    assert centres[0] == pytest.approx(32.7032, abs=1e-3) and centres[45] == pytest.approx(440.0)
    assert frames.shape == (fe.num_frames(2 * SR), 84)
    assert frames[fe.num_frames(SR)].argmax() == round(12 * np.log2(freq / centres[0]))


def test_cqt_resembles_librosa_cqt(tones):
    # a pseudo-CQT (one 8192-point STFT), not librosa's multi-resolution CQT: the same bands, blurrier at the bottom
    fe = InstrumentFeatureExtractor(**default_feature_settings("cqt"))
    ours = fe.extract(tones)
    ref = librosa.amplitude_to_db(np.abs(librosa.cqt(tones, sr=SR, hop_length=512, fmin=librosa.note_to_hz("C1"),
                                                      n_bins=84)), ref=np.max, top_db=80.0).T
    middle = slice(20, -20)  # away from the edges, where the two windows' lengths differ most
    r = [np.corrcoef(a, b)[0, 1] for a, b in zip(ours[middle], ref[middle])]
    assert np.median(r) > 0.85, np.median(r)


def test_cqt_bands_above_nyquist_are_refused():
    with pytest.raises(ValueError, match="Nyquist"):
        InstrumentFeatureExtractor(feature_type="cqt", n_coefficients=120, n_fft=8192)
    with pytest.raises(ValueError, match="bins_per_octave"):
        InstrumentFeatureExtractor(feature_type="cqt", bins_per_octave=0)


def test_deltas_double_the_features(tones):
    plain = InstrumentFeatureExtractor().extract(tones)
    fe = InstrumentFeatureExtractor(include_deltas=True)
    both = fe.extract(tones)
    assert fe.feature_size == 26 and both.shape == (len(plain), 26)
    np.testing.assert_allclose(both[:, :13], plain, rtol=1e-6)
    np.testing.assert_allclose(both[1:-1, 13:], 0.5 * (plain[2:] - plain[:-2]), rtol=1e-5, atol=1e-4)


def test_delta_order_two_appends_the_differences_of_the_deltas(tones):
    both = InstrumentFeatureExtractor(include_deltas=True).extract(tones)
    fe = InstrumentFeatureExtractor(include_deltas=True, delta_order=2)
    three = fe.extract(tones)
    assert fe.feature_size == 39 and three.shape == (len(both), 39)
    np.testing.assert_allclose(three[:, :26], both, rtol=1e-6)
    deltas = both[:, 13:]
    np.testing.assert_allclose(three[1:-1, 26:], 0.5 * (deltas[2:] - deltas[:-2]), rtol=1e-5, atol=1e-4)
    assert InstrumentFeatureExtractor(delta_order=2).feature_size == 13  # orders only count with deltas
    with pytest.raises(ValueError, match="delta_order must be 1 or 2"):
        InstrumentFeatureExtractor(include_deltas=True, delta_order=3)


def test_feature_settings_of_a_config_saved_before_delta_order_match_first_order_deltas():
    from instrument_classifier.modeling.feature_extraction_instrument import feature_settings

    saved = InstrumentFeatureExtractor(include_deltas=True).to_dict()
    del saved["delta_order"]  # as written by earlier versions
    assert feature_settings(saved) == feature_settings(InstrumentFeatureExtractor(include_deltas=True))
    assert feature_settings(saved) != feature_settings(InstrumentFeatureExtractor(include_deltas=True, delta_order=2))


@pytest.mark.parametrize(
    "audio, error, message",
    [
        (np.zeros((2, 3, 100), np.float32), ValueError, "expected mono audio"),
        (np.zeros(1000, np.int16), TypeError, "expected float audio"),
        (np.array([0.0, np.nan, 0.1], np.float32), ValueError, "NaN"),
        (np.zeros(0, np.float32), ValueError, "zero-length"),
        ([np.zeros(100, np.float32), np.zeros((100, 2), np.float32)], ValueError, "clip 1: expected mono"),
        ("audio.wav", TypeError, "expected a numpy array"),
    ],
)
def test_call_rejects_wrong_shape_and_dtype(audio, error, message):
    with pytest.raises(error, match=message):
        InstrumentFeatureExtractor()(audio, sampling_rate=SR)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="feature_type"):
        InstrumentFeatureExtractor(feature_type="chroma")
    with pytest.raises(ValueError, match="together"):
        InstrumentFeatureExtractor(mean=[0.0] * 13)
    with pytest.raises(ValueError, match="13 entries"):
        InstrumentFeatureExtractor(mean=[0.0] * 12, std=[1.0] * 12)
    with pytest.raises(ValueError, match="sampling_rate"):
        InstrumentFeatureExtractor()(np.zeros(100, np.float32), sampling_rate=0)


@pytest.fixture(scope="module")
def quiet_ending() -> np.ndarray:
    """7 s of tones whose last 3 s are 60 dB quieter (a block-relative top_db floor would differ there)."""
    notes = [(0, 2 * SR, 1, 48), (SR // 2, 3 * SR, 41, 64), (2 * SR, 5 * SR, 74, 79), (4 * SR, 6 * SR, 43, 36)]
    audio = synth_notes(notes, 7 * SR + 123, seed=4)
    audio[4 * SR :] *= 1e-3
    return audio


@pytest.mark.parametrize("delta_order", [0, 1, 2])
@pytest.mark.parametrize("feature_type", ["mfcc", "logmel", "cqt", "musicnn", "yamnet", "efficientat"])
def test_streamed_features_equal_whole_recording_features_exactly(quiet_ending, feature_type, delta_order,
                                                                  monkeypatch):
    """extract_stream on blocks that never divide the hop gives extract()'s frames bit for bit: deltas (of both
    orders) across block edges, the whole recording's top_db floor, STFT chunk edges, the second pass."""
    from instrument_classifier.modeling import feature_extraction_instrument as module

    settings = dict(default_feature_settings(feature_type), include_deltas=delta_order > 0,
                    delta_order=max(1, delta_order))
    fe = InstrumentFeatureExtractor(**settings)
    audio = fe.resample(quiet_ending, SR)
    whole = fe.extract(audio)
    assert whole.shape == (fe.num_frames(len(audio)), fe.feature_size) and whole.dtype == np.float32
    # short STFT chunks (64 to 400 frames instead of 1024 to 4096): several chunk edges in 7 s
    monkeypatch.setattr(module, "_FRAMES_PER_BLOCK", 100)
    rechunked = fe.extract(audio)
    np.testing.assert_allclose(rechunked, whole, rtol=0, atol=1e-5 * float(whole.max() - whole.min()))
    for size in (333, fe.hop_length - 1, 3 * fe.hop_length + 7, 50_001):
        def blocks():
            return (audio[i : i + size] for i in range(0, len(audio), size))

        parts = list(fe.extract_stream(blocks))
        assert all(part.dtype == np.float32 and part.shape[1] == fe.feature_size for part in parts)
        np.testing.assert_array_equal(np.concatenate(parts), rechunked, err_msg=f"blocks of {size}")
    # a one-shot iterator and a list give the same frames
    np.testing.assert_array_equal(np.concatenate(list(fe.extract_stream(blocks()))), rechunked)
    np.testing.assert_array_equal(np.concatenate(list(fe.extract_stream(list(blocks())))), rechunked)
    # too long to keep the first pass: read and transformed again, the same frames
    monkeypatch.setattr(module, "FIRST_PASS_CACHE_MB", 0)
    read = []
    again = np.concatenate(list(fe.extract_stream(lambda: read.append(1) or iter([audio[:12345], audio[12345:]]))))
    np.testing.assert_array_equal(again, rechunked)
    # the features of musicnn, YAMNet and EfficientAT have no top_db floor: one pass
    assert len(read) == (1 if feature_type in ("musicnn", "yamnet", "efficientat") else 2)


def test_streamed_features_of_very_short_audio_equal_whole_features(tones):
    fe = InstrumentFeatureExtractor(include_deltas=True, delta_order=2)
    for length in (1, 511, 512, 513, 2000):
        whole = fe.extract(tones[:length])
        streamed = np.concatenate(list(fe.extract_stream(tones[i : min(length, i + 100)]
                                                         for i in range(0, length, 100))))
        assert whole.shape == (1 + length // 512, 39)
        np.testing.assert_array_equal(streamed, whole)


def test_resampling_is_soxr_and_other_rates_need_it_only(tones, monkeypatch):
    fe = InstrumentFeatureExtractor()
    audio = soxr.resample(tones, SR, 22050).astype(np.float32)
    np.testing.assert_array_equal(fe.resample(audio, 22050), soxr.resample(audio, 22050, SR, quality="HQ"))
    assert fe.resample(tones, SR) is tones
    monkeypatch.setitem(__import__("sys").modules, "soxr", None)  # an environment without soxr
    assert fe.resample(tones, SR) is tones
    with pytest.raises(ImportError, match="pip install soxr"):
        fe.resample(audio, 22050)


def test_batches_of_different_lengths_are_padded_with_a_mask(tones):
    fe = InstrumentFeatureExtractor()
    out = fe([tones[: SR // 2], tones[:SR]], sampling_rate=SR, return_tensors="np")
    long_frames = fe.num_frames(SR)
    assert out["input_features"].shape == (2, long_frames, 13)
    assert out["attention_mask"].sum(axis=1).tolist() == [fe.num_frames(SR // 2), long_frames]
    np.testing.assert_allclose(out["input_features"][1], fe.extract(tones[:SR]), rtol=1e-6)


def test_normalisation_fit_apply_and_round_trip(tmp_path, tones):
    fe = InstrumentFeatureExtractor()
    blocks = [fe.extract(tones[: 2 * SR]), fe.extract(tones[2 * SR :])]
    fe.fit_normalization(iter(blocks))
    frames = np.concatenate(blocks).astype(np.float64)
    np.testing.assert_allclose(fe.mean, frames.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fe.std, frames.std(0), rtol=1e-5)
    normed = fe(tones, sampling_rate=SR)["input_features"][0]
    np.testing.assert_allclose(normed, (fe.extract(tones, normalize=False) - fe.mean) / fe.std, rtol=1e-4, atol=1e-5)
    raw = fe(tones, sampling_rate=SR, normalize=False)["input_features"][0]
    np.testing.assert_allclose(raw, fe.extract(tones, normalize=False), rtol=1e-6)

    fe.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["mean"] == fe.mean and saved["std"] == fe.std and "_basis" not in saved
    loaded = InstrumentFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.mean == fe.mean and loaded.std == fe.std and loaded.feature_size == 13
    np.testing.assert_array_equal(loaded.extract(tones), fe.extract(tones))


def test_auto_feature_extractor_round_trip(tmp_path, tones):
    from transformers import AutoFeatureExtractor
    from transformers.models.auto.feature_extraction_auto import feature_extractor_class_from_name

    import instrument_classifier.modeling  # noqa: F401  (registers the Auto classes)

    assert feature_extractor_class_from_name("InstrumentFeatureExtractor") is not None
    stats = [np.random.default_rng(0).normal(size=(50, 26))]
    fe = InstrumentFeatureExtractor(include_deltas=True).fit_normalization(stats)
    fe.save_pretrained(tmp_path)
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "InstrumentFeatureExtractor"
    assert loaded.mean == fe.mean and loaded.std == fe.std and loaded.include_deltas
    np.testing.assert_array_equal(loaded.extract(tones), fe.extract(tones))
