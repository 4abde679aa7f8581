"""The "room" recording conditions: simulated shoebox rooms with a microphone distance (pyroomacoustics' image
sources and a decaying tail), MP3 round trips, and the sampler's ensemble balance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from instrument_classifier.data.augment import (
    STRENGTHS, Perturbation, apply_perturbation, mp3_round_trip, sample_perturbation, shoebox_impulse_response,
)
from instrument_classifier.data.perturb_corpus import INFO_FILE, PerturbError, perturb_corpus

SR = 44100


def _direct_to_reverberant_db(ir: np.ndarray) -> float:
    k = int(0.0025 * SR)  # the direct sound: the first 2.5 ms (the response starts with it)
    return float(10 * np.log10(np.sum(ir[:k] ** 2) / np.sum(ir[k:] ** 2)))


def _rt60_s(ir: np.ndarray) -> float:
    """Schroeder's backward integration, -5 to -25 dB, extrapolated to 60 dB."""
    energy = np.cumsum(ir[::-1].astype(np.float64) ** 2)[::-1]
    decay = 10 * np.log10(energy / energy[0] + 1e-30)
    return 3.0 * (np.argmax(decay < -25) - np.argmax(decay < -5)) / SR


def test_room_drawings_are_seeded_inside_their_room_and_half_of_them_mp3():
    drawn = [sample_perturbation(np.random.default_rng([7, i]), "room") for i in range(200)]
    assert [p.to_dict() for p in drawn[:5]] == [sample_perturbation(np.random.default_rng([7, i]), "room").to_dict()
                                                for i in range(5)]
    rooms = [p for p in drawn if p.room_m is not None]
    assert 0.7 < len(rooms) / len(drawn) < 0.9
    for p in rooms:
        room, source, mic = (np.array(v) for v in (p.room_m, p.source_m, p.microphone_m))
        assert np.all(source >= 0.5) and np.all(source <= room - 0.5)
        assert np.all(mic >= 0.5) and np.all(mic <= room - 0.5)
        volume, surface = np.prod(room), 2 * (room[0] * room[1] + room[0] * room[2] + room[1] * room[2])
        assert p.rt60_s >= 0.161 * volume / surface  # a reverberation time the room can have (Sabine)
    distances = [np.linalg.norm(np.array(p.source_m) - np.array(p.microphone_m)) for p in rooms]
    assert min(distances) < 1.0 and max(distances) > 5.0
    levels = [p.mp3_level for p in drawn if p.mp3_level is not None]
    assert 0.4 < len(levels) / len(drawn) < 0.6 and all(0.0 <= v < 1.0 for v in levels)
    assert all(p.room_m is None and p.mp3_level is None for p in
               (sample_perturbation(np.random.default_rng(i), "train") for i in range(50)))
    with pytest.raises(ValueError, match="strength must be one of"):
        sample_perturbation(np.random.default_rng(0), "hall")
    assert "room" in STRENGTHS


def test_a_farther_microphone_hears_more_room_and_the_rt60_is_the_rooms():
    room, source = [20.0, 15.0, 8.0], [5.0, 5.0, 2.0]
    near, far = (shoebox_impulse_response(room, source, [5.0 + d, 5.0, 2.0], 1.5, SR, np.random.default_rng(0))
                 for d in (1.0, 8.0))
    for ir in (near, far):
        assert ir.dtype == np.float32 and np.sum(ir.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-4)
        # starts at the direct sound (labels stay aligned); early reflections can be nearly as loud
        assert np.max(np.abs(ir[:int(0.001 * SR)])) > 0.5 * np.max(np.abs(ir))
        assert _rt60_s(ir[int(0.1 * SR):]) == pytest.approx(1.5, rel=0.2)  # the late decay, after the direct sound
    # a diffuse field: the direct sound falls with the distance (about 20 log10(8) = 18 dB), the room does not
    assert _direct_to_reverberant_db(near) - _direct_to_reverberant_db(far) == pytest.approx(18.0, abs=6.0)
    again = shoebox_impulse_response(room, source, [6.0, 5.0, 2.0], 1.5, SR, np.random.default_rng(0))
    assert np.array_equal(near, again)


def test_mp3_round_trip_keeps_length_and_signal():
    t = np.arange(int(2.3 * SR)) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * np.minimum(1, t * 10)).astype(np.float32)
    for level in (0.0, 0.99):
        decoded = mp3_round_trip(tone, SR, level)
        assert decoded.shape == tone.shape and decoded.dtype == np.float32
        assert np.corrcoef(decoded, tone)[0, 1] > 0.99  # aligned: the encoder's delay is removed
    for level in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"in \[0, 1\)"):
            mp3_round_trip(tone, SR, level)


def test_apply_room_conditions_keeps_length_and_full_scale():
    rng = np.random.default_rng(1)
    audio = (0.5 * rng.standard_normal(3 * SR)).astype(np.float32)
    p = Perturbation(rt60_s=0.8, room_m=[8.0, 6.0, 3.0], source_m=[2.0, 2.0, 1.5], microphone_m=[5.0, 3.0, 1.5],
                     mp3_level=0.5, gain_db=0.0)
    out = apply_perturbation(audio, SR, p, np.random.default_rng(2))
    assert out.shape == audio.shape and out.dtype == np.float32 and np.all(np.isfinite(out))
    assert np.max(np.abs(out)) <= 0.99 + 1e-6
    assert not np.allclose(out, audio, atol=1e-2)


def test_perturb_corpus_with_rooms_records_them(rendered_corpus, tmp_path):
    out = tmp_path / "rooms"
    written = perturb_corpus(rendered_corpus, out, strength="room", seed=5, split="test", progress=False)
    info = json.loads((out / INFO_FILE).read_text())
    assert info["strength"] == "room" and len(info["recordings"]) == len(written)
    for entry in info["recordings"].values():
        assert set(entry["perturbation"]) >= {"room_m", "source_m", "microphone_m", "mp3_level"}
    with pytest.raises(PerturbError, match="strength must be one of"):
        perturb_corpus(rendered_corpus, tmp_path / "bad", strength="hall", progress=False)
