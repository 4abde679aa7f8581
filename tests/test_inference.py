"""Timeline inference: streamed features, windows, segments, errors, loading, bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import SR, synth_notes
from instrument_classifier import inference
from instrument_classifier.audio import AudioError
from instrument_classifier.inference import (
    Segment, clip_scores, detected_segments, load_model, predict_timeline, segments_from_probs, stream_features,
)
from instrument_classifier.modeling import (
    InstrumentCNNConfig,
    InstrumentCNNForAudioClassification,
    InstrumentFeatureExtractor,
    InstrumentTransformerConfig,
    InstrumentTransformerForAudioClassification,
)
from instrument_classifier.modeling import feature_extraction_instrument as feature_extraction
from instrument_classifier.modeling.feature_extraction_instrument import default_feature_settings

NOTES = [(0, 2 * SR, 1, 48), (SR // 2, 3 * SR, 41, 64), (2 * SR, 5 * SR, 74, 79), (4 * SR, 6 * SR, 43, 36)]


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    """6.5 s of tones whose last 2 s are 60 dB quieter: a block-relative top_db floor would differ there."""
    audio = synth_notes(NOTES, int(6.5 * SR) + 123, seed=1)
    audio[int(4.5 * SR) :] *= 1e-3
    return audio


@pytest.fixture(scope="module")
def fitted_fe(music) -> InstrumentFeatureExtractor:
    fe = InstrumentFeatureExtractor()
    return fe.fit_normalization([fe.extract(music)])


#: Feature types with a fixed log compression and no top_db floor: one pass over the file.
NO_FLOOR = ("musicnn", "yamnet", "efficientat")


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(inference, "BLOCK_SECONDS", 0.7)  # many blocks, edges at odd frame offsets


@pytest.mark.parametrize("feature_type,delta_order", [("mfcc", 0), ("mfcc", 1), ("mfcc", 2), ("logmel", 2),
                                                       ("cqt", 1), ("musicnn", 2), ("yamnet", 1),
                                                       ("efficientat", 0)])
@pytest.mark.parametrize("cache_mb", [feature_extraction.FIRST_PASS_CACHE_MB, 0],
                         ids=["first-pass-kept", "decoded-twice"])
def test_streamed_features_equal_whole_file_features(tmp_path, music, small_blocks, feature_type, delta_order,
                                                     cache_mb, monkeypatch):
    monkeypatch.setattr(feature_extraction, "FIRST_PASS_CACHE_MB", cache_mb)
    decodes = []
    real_stream_audio = inference.stream_audio
    monkeypatch.setattr(inference, "stream_audio", lambda *a, **k: decodes.append(a) or real_stream_audio(*a, **k))
    fe = InstrumentFeatureExtractor(**default_feature_settings(feature_type), include_deltas=delta_order > 0,
                                    delta_order=max(1, delta_order))
    audio = fe.resample(music, SR)
    whole = fe.extract(audio)
    from_array = np.concatenate(list(stream_features(audio, fe)))
    path = tmp_path / "music.wav"
    sf.write(path, audio, fe.sampling_rate, subtype="FLOAT")
    from_file = np.concatenate(list(stream_features(path, fe)))
    # the file is read once when its first pass fits the cache (always for musicnn features: no top_db floor)
    assert len(decodes) == (1 if cache_mb or feature_type in NO_FLOOR else 2)
    span = float(whole.max() - whole.min())
    assert from_array.shape == from_file.shape == whole.shape == (fe.num_frames(len(audio)), fe.feature_size)
    np.testing.assert_array_equal(from_array, whole)
    np.testing.assert_array_equal(from_file, whole)
    if feature_type in NO_FLOOR:
        return
    # the whole-file floor matters: the quiet block alone, floored at its own maximum, looks different
    quiet = slice(int(5.0 * SR), int(5.7 * SR))
    frames = slice(fe.num_frames(quiet.start) + 2, fe.num_frames(quiet.stop) - 4)
    alone = fe.extract(audio[quiet])[2:-4][: frames.stop - frames.start]
    assert np.abs(alone - whole[frames]).max() > 1e-2 * span


def model_and_fe(kind: str, fe, window_frames: int = 128):
    torch.manual_seed(0)
    if kind == "cnn":
        model = InstrumentCNNForAudioClassification(InstrumentCNNConfig(window_frames=window_frames))
    else:
        model = InstrumentTransformerForAudioClassification(InstrumentTransformerConfig(window_frames=window_frames))
    return model.eval(), fe


@pytest.mark.parametrize("kind", ["cnn", "transformer"])
def test_timeline_matches_the_model_on_whole_file_features(music, fitted_fe, small_blocks, kind):
    model, fe = model_and_fe(kind, fitted_fe)
    timeline = predict_timeline(model, fe, music, batch_size=2)
    n = fe.num_frames(len(music))  # 563 frames: four full windows, and a fifth the audio fills with silence,
    # as prepare pads a recording's last window: features of the audio followed by zeros up to 640 frames
    feats = torch.from_numpy(fe.extract(np.pad(music, (0, (640 - 1) * 512 - len(music)))))[None]
    assert feats.shape[1] == 640
    starts = [0, 128, 256, 384, 512]
    with torch.no_grad():
        outs = [model(feats[:, s : s + 128]) for s in starts]
    assert timeline.frame_probs.shape == (n, 12) and timeline.frame_rate == pytest.approx(SR / 512)
    expected_frames = torch.sigmoid(torch.cat([o.frame_logits[0] for o in outs]))[:n].numpy()
    np.testing.assert_allclose(timeline.frame_probs, expected_frames, atol=2e-4)
    np.testing.assert_allclose(timeline.window_times_s, np.array(starts) / fe.frame_rate)
    expected_windows = torch.sigmoid(torch.cat([o.logits for o in outs]))
    np.testing.assert_allclose(timeline.window_probs, expected_windows.numpy(), atol=2e-4)
    # from three windows on, a clip score is the mean of the two highest window probabilities
    assert len(outs) >= 3
    top2 = expected_windows.sort(0, descending=True).values[:2].mean(0)
    assert timeline.clip == pytest.approx(dict(zip(timeline.labels, top2.tolist())), abs=2e-4)
    assert timeline.duration_s == pytest.approx(len(music) / SR)
    assert timeline.labels == list(InstrumentCNNConfig().label2id)


def test_a_model_on_delta_deltas_gets_its_39_features(music, small_blocks):
    """delta_order=2 (prepare --delta-order 2): inference streams the extractor's 39 features, not 26."""
    fe = InstrumentFeatureExtractor(include_deltas=True, delta_order=2)
    fe.fit_normalization([fe.extract(music)])
    torch.manual_seed(0)
    model = InstrumentCNNForAudioClassification(InstrumentCNNConfig(feature_size=39, window_frames=128)).eval()
    timeline = predict_timeline(model, fe, music)
    feats = torch.from_numpy(fe.extract(np.pad(music, (0, (640 - 1) * 512 - len(music)))))[None]
    assert feats.shape == (1, 640, 39)
    with torch.no_grad():
        windows = torch.sigmoid(torch.cat([model(feats[:, s : s + 128]).logits for s in range(0, 640, 128)]))
    np.testing.assert_allclose(timeline.window_probs, windows.numpy(), atol=1e-5)


def test_file_and_array_give_the_same_timeline(tmp_path, music, fitted_fe):
    model, fe = model_and_fe("cnn", fitted_fe)
    stereo = np.stack([music, music], axis=1)
    path = tmp_path / "music.wav"
    sf.write(path, stereo, SR, subtype="FLOAT")
    from_file = predict_timeline(model, fe, str(path))
    from_array = predict_timeline(model, fe, stereo)
    np.testing.assert_allclose(from_file.frame_probs, from_array.frame_probs, atol=1e-5)
    assert from_file.to_dict() == from_array.to_dict()
    json.dumps(from_file.to_dict())  # JSON-ready
    # another rate (no band lost): resampled to 44.1 kHz, nearly the same probabilities
    import soxr

    at_48k = predict_timeline(model, fe, soxr.resample(music, SR, 48000), sampling_rate=48000)
    assert abs(len(at_48k.frame_probs) - len(from_array.frame_probs)) <= 1
    assert np.abs(at_48k.window_probs - from_array.window_probs).max() < 0.05


def test_clip_shorter_than_a_window_is_padded_with_silence(music, fitted_fe):
    model, fe = model_and_fe("transformer", fitted_fe)
    short = music[: SR // 2]
    timeline = predict_timeline(model, fe, short)
    assert timeline.frame_probs.shape == (fe.num_frames(len(short)), 12) and timeline.window_probs.shape == (1, 12)
    padded = np.pad(short, (0, 127 * 512 - len(short)))  # as the dataset builder pads short recordings
    with torch.no_grad():
        out = model(torch.from_numpy(fe.extract(padded))[None])
    np.testing.assert_allclose(timeline.window_probs[0], torch.sigmoid(out.logits[0]).numpy(), atol=1e-4)
    np.testing.assert_allclose(
        timeline.frame_probs, torch.sigmoid(out.frame_logits[0, : len(timeline.frame_probs)]).numpy(), atol=1e-4
    )


def test_bad_audio_raises_audio_error_naming_the_file(tmp_path, fitted_fe):
    model, fe = model_and_fe("cnn", fitted_fe)
    missing = tmp_path / "missing.wav"
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF1234WAVEnot really audio" * 10)
    for path in (missing, empty, garbage):
        with pytest.raises(AudioError, match=str(path)):
            predict_timeline(model, fe, path)
    nan_audio = np.zeros(SR, np.float32)
    nan_audio[1000] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        predict_timeline(model, fe, nan_audio)
    nan_file = tmp_path / "nan.wav"
    sf.write(nan_file, nan_audio, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=f"{nan_file}.*NaN"):
        predict_timeline(model, fe, nan_file)
    with pytest.raises(AudioError, match="zero-length"):
        predict_timeline(model, fe, np.zeros(0, np.float32))
    # digital silence is valid input
    silent = predict_timeline(model, fe, np.zeros(3 * SR, np.float32), thresholds=[0.999] * 12)
    assert silent.segments == [] and np.isfinite(silent.frame_probs).all()


def test_segments_from_a_synthetic_probability_track():
    rate = 100.0  # frames per second
    probs = np.zeros((1000, 3), np.float32)
    probs[100:300, 0] = 0.9  # 1.0 s - 3.0 s
    probs[310:400, 0] = 0.8  # gap of 0.1 s: merged into 1.0 s - 4.0 s
    probs[600:610, 0] = 0.9  # 0.1 s blip: dropped
    probs[500:900, 1] = 0.4  # label 1 with threshold 0.3: 5.0 s - 9.0 s
    probs[950:, 2] = 0.7  # label 2 runs to the end: clipped at duration 9.97 s
    probs[700:800, 2] = 0.55  # below label 2's threshold 0.6
    segments = segments_from_probs(
        probs, rate, ["a", "b", "c"], [0.5, 0.3, 0.6], min_duration_s=0.25, merge_gap_s=0.15, duration_s=9.97
    )
    assert [(s.label, round(s.start_s, 3), round(s.end_s, 3)) for s in segments] == [
        ("a", 0.995, 3.995),
        ("b", 4.995, 8.995),
        ("c", 9.495, 9.97),
    ]
    merged = segments[0]
    assert merged.score == pytest.approx((200 * 0.9 + 90 * 0.8) / 300)  # mean over the merged frames, gap included
    # without merging, the two parts are separate; a larger min_duration drops the short one
    apart = segments_from_probs(probs, rate, ["a", "b", "c"], [0.5, 0.3, 0.6], min_duration_s=0.95, merge_gap_s=0.05)
    a_segments = [(s.label, round(s.start_s, 3), round(s.end_s, 3)) for s in apart if s.label == "a"]
    assert a_segments == [("a", 0.995, 2.995)]
    assert segments_from_probs(np.zeros((10, 1)), rate, ["a"], 0.5) == []
    whole = segments_from_probs(np.ones((10, 1)), rate, ["a"], 0.5, min_duration_s=0.0)
    assert whole == [Segment(0.0, 0.1, "a", 1.0)]  # a run through the last frame lasts to the recording's end
    ends_early = np.ones((10, 1))
    ends_early[-1] = 0.0
    assert segments_from_probs(ends_early, rate, ["a"], 0.5, min_duration_s=0.0) == [Segment(0.0, 0.085, "a", 1.0)]
    with pytest.raises(ValueError, match=r"frame_probs must have shape \(n_frames, 2\)"):
        segments_from_probs(probs, rate, ["a", "b"], 0.5)


def test_timeline_segments_use_the_config_thresholds(music, fitted_fe):
    model, fe = model_and_fe("cnn", fitted_fe)
    timeline = predict_timeline(model, fe, music)
    starts = np.round(timeline.window_times_s * fe.frame_rate).astype(int)
    expected = detected_segments(timeline.frame_probs, fe.frame_rate, timeline.labels, model.config.thresholds,
                                 list(timeline.clip.values()), timeline.window_probs, starts, 128,
                                 duration_s=timeline.duration_s)
    assert timeline.segments == expected and timeline.thresholds == model.config.thresholds
    none = predict_timeline(model, fe, music, thresholds=[1.0] * 12)
    assert none.segments == []
    with pytest.raises(ValueError, match="12 entries"):
        predict_timeline(model, fe, music, thresholds=[0.5])


def test_segments_only_for_detected_instruments_and_every_detected_one_has_one():
    """The one decision rule: the clip decides whether, the frames say when (inference docstring, step 7)."""
    rate, window = 100.0, 100  # four windows of 1 s
    starts = [0, 100, 200, 300]
    frames = np.full((400, 3), 0.1, np.float32)
    windows = np.full((4, 3), 0.1, np.float32)
    windows[:, 0] = [0.9, 0.8, 0.2, 0.2]  # "a": detected (clip 0.85), frames active over 0.5 s - 1.8 s
    frames[50:180, 0] = 0.9
    windows[2, 1] = 0.9  # "b": one stray window (clip 0.5 < 0.6), its frames above the threshold for 0.6 s
    frames[220:280, 1] = 0.95
    windows[[1, 3], 2] = [0.7, 0.65]  # "c": detected (clip 0.675), its frames reach 0.6 for 30 ms only
    frames[120:123, 2] = 0.62
    clip = clip_scores(windows)
    thresholds = [0.6, 0.6, 0.6]
    segments = detected_segments(frames, rate, ["a", "b", "c"], thresholds, clip, windows, starts, window,
                                 min_duration_s=0.2, merge_gap_s=0.3, duration_s=3.9)
    assert [(s.label, round(s.start_s, 3), round(s.end_s, 3)) for s in segments] == [
        ("a", 0.495, 1.795),  # its frame run
        ("c", 0.995, 1.995),  # no frame run is left: the window that reaches the threshold
        ("c", 2.995, 3.9),  # ... each of them, clipped to the recording
    ]
    assert segments[1].score == pytest.approx(frames[100:200, 2].mean())
    # thresholding every frame on its own (the old rule) gave "b" a segment and "c" none
    alone = {s.label for s in segments_from_probs(frames, rate, ["a", "b", "c"], thresholds, 0.2, 0.3, 3.9)}
    assert alone == {"a", "b"}
    # the clip's decision is the Timeline's: equal to the threshold counts as detected, in both
    timeline = inference.Timeline(["a", "b", "c"], 3.9, rate, frames, np.array(starts) / rate, windows,
                                  dict(zip("abc", clip.tolist())), segments, thresholds=thresholds)
    assert timeline.detected == ["a", "c"] == sorted({s.label for s in segments})
    at_c = [0.6, 0.6, float(clip[2])]
    segments = detected_segments(frames, rate, list("abc"), at_c, clip, windows, starts, window)
    assert {s.label for s in segments} == {"a", "c"}


@pytest.mark.parametrize("kind,context", [("musicnn", False), ("ensemble", False), ("ensemble", True)],
                         ids=["default", "ensemble", "ensemble-context"])
def test_bundled_model_decisions_and_segments_agree_on_real_clips(kind, context):
    """The space/examples clips through the bundled default and ensemble: a segment for each detected instrument,
    no other. (Thresholding frames alone gave e.g. the piano sonata Cello, Contrabass, Viola and Violin segments.)"""
    from pathlib import Path

    from instrument_classifier.inference import DEFAULT_MODEL_DIR

    model, fe = load_model(DEFAULT_MODEL_DIR.parent / kind)
    clips = sorted((Path(__file__).resolve().parents[1] / "space" / "examples").glob("*.ogg"))
    assert len(clips) == 4
    for clip in clips:
        timeline = predict_timeline(model, fe, str(clip), context=context)
        assert timeline.detected, clip.name
        assert sorted({s.label for s in timeline.segments}) == sorted(timeline.detected), clip.name
        summary = timeline.to_dict()
        assert {s["label"] for s in summary["segments"]} == set(summary["detected"])


@pytest.mark.parametrize("kind", ["cnn", "transformer"])
def test_pipeline_scores_are_the_clip_scores(kind):
    """The decision rule's clip scores are what pipeline("audio-classification") returns for a bundled model."""
    from pathlib import Path

    from transformers import pipeline

    from instrument_classifier.modeling import InstrumentAudioClassificationPipeline

    model, fe = load_model(inference.DEFAULT_MODEL_DIR.parent / kind, device="cpu")
    clip = Path(__file__).resolve().parents[1] / "space" / "examples" / "beethoven_wind_sextet.ogg"
    classifier = pipeline("audio-classification", model=model, feature_extractor=fe,
                          pipeline_class=InstrumentAudioClassificationPipeline)
    scores = {r["label"]: r["score"] for r in classifier(str(clip))}
    assert scores == pytest.approx(predict_timeline(model, fe, str(clip)).clip, abs=1e-5)


def test_load_model_safetensors_only_and_clear_errors(tmp_path, fitted_fe, monkeypatch):
    model, fe = model_and_fe("transformer", fitted_fe)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    fe.save_pretrained(folder)
    loaded, loaded_fe = load_model(folder)
    assert type(loaded) is type(model) and not loaded.training and loaded_fe.mean == fe.mean
    x = torch.randn(1, 128, 13)
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model(x).logits)

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((folder / "config.json").read_text())
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin.*refused"):
        load_model(pickled)
    with pytest.raises(ValueError, match="pickled weights are refused"):
        load_model("weights/model.pth")
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        load_model(tmp_path / "nowhere")

    no_fe = tmp_path / "no_fe"
    model.save_pretrained(no_fe)
    with pytest.raises(ValueError, match="preprocessor_config.json"):
        load_model(no_fe)
    InstrumentFeatureExtractor(include_deltas=True).save_pretrained(no_fe)
    with pytest.raises(ValueError, match="feature_size: model 13 vs feature extractor 26"):
        load_model(no_fe)

    monkeypatch.setattr(inference, "DEFAULT_MODEL_DIR", tmp_path / "pretrained" / "cnn")
    with pytest.raises(FileNotFoundError, match="no bundled model.*make models"):
        load_model()
    monkeypatch.setattr(inference, "DEFAULT_MODEL_DIR", folder)
    assert type(load_model()[0]) is type(model)


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, threading, time
    import numpy as np, soundfile as sf, torch
    from instrument_classifier.inference import predict_timeline
    from instrument_classifier.modeling import (
        InstrumentCNNConfig, InstrumentCNNForAudioClassification, InstrumentFeatureExtractor,
    )

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    def sampled_max_rss(fn):
        # ru_maxrss also catches sub-millisecond allocator spikes inside a forward pass, which vary from
        # run to run; the resident size sampled every 10 ms shows what stays allocated
        samples, done = [], threading.Event()
        def sample():
            while not done.is_set():
                samples.append(rss_mb())
                time.sleep(0.01)
        thread = threading.Thread(target=sample)
        thread.start()
        try:
            result = fn()
        finally:
            done.set()
            thread.join()
        return max(samples), result

    import instrument_classifier.modeling.feature_extraction_instrument as feature_extraction
    # the first pass's band power is kept up to a cap (FIRST_PASS_CACHE_MB, ~49 min by default); below it
    # memory grows by 44 kB per second of audio, by design. Both files here exceed a 1 MB cap, so both
    # take the bounded two-pass path, and what is compared is that path's memory at two lengths
    feature_extraction.FIRST_PASS_CACHE_MB = 1
    path, minutes = sys.argv[1], float(sys.argv[2])
    rng = np.random.default_rng(0)
    chunk = (0.1 * rng.standard_normal(10 * 44100)).astype(np.float32)  # cheap audio: one 10 s chunk repeated
    for name, count in ((path + ".warm.wav", 10), (path, int(minutes * 6))):
        with sf.SoundFile(name, "w", 44100, 1, subtype="PCM_16") as f:
            for _ in range(count):
                f.write(chunk)
    model = InstrumentCNNForAudioClassification(InstrumentCNNConfig()).eval()
    fe = InstrumentFeatureExtractor()
    # a 100 s file (more than a 30 s block and a batch of 8 windows): decoder buffers, allocator,
    # thread pools, batch-sized activations; what the long file needs beyond that grows with length
    short_mb, _ = sampled_max_rss(lambda: predict_timeline(model, fe, path + ".warm.wav", batch_size=8))
    long_mb, timeline = sampled_max_rss(lambda: predict_timeline(model, fe, path, batch_size=8))
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork/exec, so a 1 GB
    # pytest process would show up here as this script's peak
    with open("/proc/self/status") as f:
        peak_mb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    print(json.dumps({"short_mb": short_mb, "long_mb": long_mb, "peak_mb": peak_mb,
                      "frames": len(timeline.frame_probs)}))
    """
)


def test_memory_is_bounded_by_blocks_not_by_file_length(tmp_path):
    minutes = 6  # the audio alone would take 64 MB as float32
    # A fixed mmap threshold turns off glibc's adaptive one, under which freed large blocks stay resident
    # by chance (0-50 MB between identical runs); then the resident size is what the code keeps.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(2**20)}
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "long.wav"), str(minutes)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["frames"] == 1 + minutes * 60 * SR // 512
    # 3.6x the audio: whole-file buffering would add >= 64 MB; with the fixed threshold runs differ by < 10 MB
    assert result["long_mb"] - result["short_mb"] < 40, result
    assert result["peak_mb"] < 1024, result


def test_one_stray_window_does_not_decide_a_recording():
    from instrument_classifier.inference import clip_scores

    probs = np.full((6, 2), 0.1)
    probs[3, 0] = 0.95  # label 0: one window
    probs[[1, 4], 1] = [0.9, 0.8]  # label 1: two windows
    assert clip_scores(probs).tolist() == pytest.approx([0.525, 0.85])  # the stray window weighs half
    assert clip_scores(probs[2:4]).tolist() == pytest.approx([0.95, 0.1])  # two windows: the highest
    assert clip_scores(probs[3:4]).tolist() == pytest.approx([0.95, 0.1])


def test_bundled_models_load_by_their_short_names_from_anywhere(tmp_path, monkeypatch):
    """``cnn`` and ``pretrained/cnn``, as the README names the bundled folders, from any working directory; a
    name that is none of them, nor a Hub id (owner/name), fails at once, listing the bundled names."""
    bundled = inference.DEFAULT_MODEL_DIR.parent / "cnn"
    if not (bundled / "model.safetensors").is_file():
        pytest.skip("no bundled CNN")
    monkeypatch.chdir(tmp_path)
    for name in ("cnn", "pretrained/cnn"):
        model, fe = load_model(name, device="cpu")
        assert model.config.taxonomy and fe.feature_type == "mfcc"
    assert "cnn" in inference.bundled_model_names() and "musicnn-yamnet-efficientat" in inference.bundled_model_names()
    with pytest.raises(FileNotFoundError, match=r"cnnn: no such model folder .*the bundled models: .*\bcnn\b"):
        load_model("cnnn")
    (tmp_path / "cnn").mkdir()  # a folder here named like a bundled one is the user's: it is the one read
    with pytest.raises(FileNotFoundError, match="cnn: not a model folder"):
        load_model("cnn")


def test_a_hub_id_that_cannot_be_loaded_says_it_is_no_folder_here(tmp_path):
    # the real Hub client, offline (as this machine is; HF_HUB_OFFLINE spares its retries)
    code = ("from instrument_classifier.inference import load_model\n"
            "try:\n    load_model('runs/cnn', device='cpu')\nexcept OSError as exc:\n    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = "runs/cnn: no such model folder here, and it could not be loaded as a Hub repo id ("
    assert proc.stdout.startswith(expected), proc.stdout
