"""Level normalisation: ``recording_level_gain`` and the feature extractor's ``level_dbfs``, and the bundled default,
whose members bring every recording to one level (the answer must not depend on how loud it was recorded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from instrument_classifier.inference import DEFAULT_MODEL_DIR, load_model, predict_timeline
from instrument_classifier.modeling.feature_extraction_instrument import (
    LEVEL_PERCENTILE,
    InstrumentFeatureExtractor,
    default_feature_settings,
    recording_level_gain,
)

RATE = 16000


def _playing(seconds: float = 6.0, seed: int = 0) -> np.ndarray:
    """Notes of a harmonic tone with pauses and a click: a recording whose louder passages set its level."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 220 * 2 ** (np.floor(t * 2) % 5 / 12)
    tone = sum(0.3 / k * np.sin(2 * np.pi * k * np.cumsum(pitch) / RATE) for k in range(1, 6))
    tone *= (t * 2 % 1 < 0.7)  # a pause after every note
    tone += 0.001 * rng.standard_normal(len(t))
    tone[RATE] = 0.99  # one click
    return tone.astype(np.float32)


def _level_dbfs(audio: np.ndarray) -> float:
    frame = RATE // 10
    rms = np.sqrt(np.mean(audio[: len(audio) // frame * frame].astype(np.float64).reshape(-1, frame) ** 2, axis=1))
    return 20 * np.log10(np.percentile(rms, LEVEL_PERCENTILE))


def test_the_gain_brings_the_95th_percentile_of_the_100ms_rms_to_the_level():
    audio = _playing()
    gain = recording_level_gain([audio], RATE, -12.0, 40.0)
    assert _level_dbfs(audio * gain) == pytest.approx(-12.0, abs=1e-4)
    assert recording_level_gain([audio * 10.0], RATE, -12.0, 40.0) == pytest.approx(gain / 10.0, rel=1e-6)


def test_the_gain_does_not_depend_on_the_blocks():
    audio = _playing()
    whole = recording_level_gain([audio], RATE, -20.0, 20.0)
    for cuts in ([1], [799, 1601, 50000], list(range(1000, len(audio), 1000))):
        blocks = np.split(audio, cuts)
        assert recording_level_gain(iter(blocks), RATE, -20.0, 20.0) == pytest.approx(whole, rel=1e-9)


def test_amplification_stops_at_the_limit_and_attenuation_does_not():
    audio = _playing()
    quiet = audio * 10 ** (-60 / 20)
    assert recording_level_gain([quiet], RATE, -12.0, 20.0) == pytest.approx(10.0)
    assert recording_level_gain([np.zeros(RATE, np.float32)], RATE, -12.0, 20.0) == pytest.approx(10.0)
    loud = audio * 3.0
    assert _level_dbfs(loud * recording_level_gain([loud], RATE, -30.0, 0.0)) == pytest.approx(-30.0, abs=1e-4)


def test_a_recording_shorter_than_one_frame_is_measured_whole():
    audio = 0.1 * np.ones(RATE // 20, np.float32)  # 50 ms at -20 dBFS
    assert recording_level_gain([audio], RATE, -12.0, 20.0) == pytest.approx(10 ** (8 / 20), rel=1e-6)


@pytest.mark.parametrize("feature_type", ["musicnn", "yamnet", "efficientat", "mfcc"])
def test_features_with_a_level_do_not_depend_on_the_recording_level(feature_type):
    settings = default_feature_settings(feature_type)
    extractor = InstrumentFeatureExtractor(**settings, level_dbfs=-12.0, level_max_gain_db=30.0)
    plain = InstrumentFeatureExtractor(**settings)
    audio = extractor.resample(_playing(), RATE)
    reference = extractor.extract(audio)
    for gain_db in (-25.0, -6.0, 10.0):
        np.testing.assert_allclose(extractor.extract(audio * 10 ** (gain_db / 20)), reference, atol=2e-3, rtol=1e-3)
    quieter = plain.extract(audio * 10 ** (-25 / 20))
    assert np.abs(quieter - plain.extract(audio)).max() > 0.1  # without a level, the features do move
    blocks = np.split(audio, [5000, 5001, 40000])
    np.testing.assert_array_equal(np.concatenate(list(extractor.extract_stream(iter(blocks)))), reference)
    np.testing.assert_array_equal(np.concatenate(list(extractor.extract_stream(lambda: iter(blocks)))), reference)


def test_the_level_is_saved_with_the_extractor_and_checked(tmp_path):
    extractor = InstrumentFeatureExtractor(**default_feature_settings("musicnn"), level_dbfs=-12.0,
                                           level_max_gain_db=15.0)
    extractor.save_pretrained(tmp_path)
    loaded = InstrumentFeatureExtractor.from_pretrained(tmp_path)
    assert (loaded.level_dbfs, loaded.level_max_gain_db) == (-12.0, 15.0)
    assert InstrumentFeatureExtractor(**default_feature_settings("musicnn")).level_dbfs is None
    for bad in ({"level_dbfs": 3.0}, {"level_dbfs": float("nan")}, {"level_max_gain_db": -1.0},
                {"level_max_gain_db": float("inf")}):
        with pytest.raises(ValueError, match="level_"):
            InstrumentFeatureExtractor(**default_feature_settings("musicnn"), **bad)


@pytest.mark.skipif(not (Path(DEFAULT_MODEL_DIR) / "ensemble_config.json").is_file(), reason="no bundled default")
def test_the_bundled_default_gives_the_same_answer_at_any_level():
    model, _ = load_model(DEFAULT_MODEL_DIR, device="cpu")
    assert all(extractor.level_dbfs is not None for _, extractor in model.members)
    audio = _playing(seconds=7.0)
    reference = predict_timeline(model, None, audio, sampling_rate=RATE)
    for gain_db in (-15.0, 6.0):
        timeline = predict_timeline(model, None, audio * 10 ** (gain_db / 20), sampling_rate=RATE)
        for label, score in reference.clip.items():
            assert timeline.clip[label] == pytest.approx(score, abs=2e-3), label
