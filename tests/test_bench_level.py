"""``bench/bench_level.py``: its level normalisation, its scaled copies of a manifest, and its one line on a bundled
model and clips made here."""

from __future__ import annotations

import csv
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
YAMNET = REPO / "instrument_classifier" / "pretrained" / "yamnet"


def _bench_level():
    spec = importlib.util.spec_from_file_location("bench_level", REPO / "bench" / "bench_level.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _clips(folder: Path) -> Path:
    """A harmonic tone (stereo, 22.05 kHz) and quiet noise, labelled, and their manifest."""
    rng = np.random.default_rng(0)
    t = np.arange(3 * 22050) / 22050
    tone = sum(0.2 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 6))
    (folder / "a").mkdir()
    sf.write(folder / "a" / "tone.flac", np.stack([tone, tone], axis=1).astype(np.float32), 22050)
    sf.write(folder / "noise.wav", (0.01 * rng.standard_normal(len(t))).astype(np.float32), 22050)
    manifest = folder / "manifest.csv"
    manifest.write_text("file,instruments,other_sounds\na/tone.flac,Flute,\nnoise.wav,,noise\n")
    return manifest


def _level_dbfs(audio: np.ndarray, sr: int) -> float:
    frame = int(0.1 * sr)
    rms = np.sqrt(np.mean(audio[: len(audio) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    return 20 * np.log10(np.percentile(rms, 95))


def test_level_gain_reaches_the_target_and_caps_amplification():
    bench = _bench_level()
    t = np.arange(44100) / 44100
    loud = 0.5 * np.sin(2 * np.pi * 440 * t)
    assert _level_dbfs(loud * bench.level_gain(loud, 44100, -12.0, 20.0), 44100) == pytest.approx(-12.0, abs=1e-6)
    quiet = loud * 10 ** (-60 / 20)  # 60 dB down: raised by the 20 dB cap only
    assert bench.level_gain(quiet, 44100, -12.0, 20.0) == pytest.approx(10.0)
    short = loud[:1000]  # shorter than one 100-ms frame: its whole RMS
    scaled = short * bench.level_gain(short, 44100, -12.0, 20.0)
    assert 10 * np.log10(np.mean(scaled**2)) == pytest.approx(-12.0, abs=1e-6)


def test_scaled_manifest_scales_keeps_labels_and_normalises(tmp_path):
    bench = _bench_level()
    manifest = _clips(tmp_path)
    for gain, target in [(-20.0, None), (6.0, None), (-20.0, -12.0), (6.0, -12.0)]:
        out = tmp_path / f"{gain}_{target}"
        out.mkdir()
        scaled = bench.scaled_manifest(manifest, out, gain, target, 40.0)  # a limit the tone does not reach
        rows = list(csv.DictReader(open(scaled, newline="")))
        assert [r["instruments"] for r in rows] == ["Flute", ""] and [r["other_sounds"] for r in rows] == ["", "noise"]
        tone, sr = sf.read(out / rows[0]["file"])
        original, _ = sf.read(tmp_path / "a" / "tone.flac")
        assert tone.ndim == 1 and sf.info(out / rows[0]["file"]).subtype == "FLOAT" and len(tone) == len(original)
        if target is None:
            np.testing.assert_allclose(tone, original.mean(axis=1) * 10 ** (gain / 20), rtol=1e-5, atol=1e-7)
        else:  # brought to the target whatever the gain before it
            assert _level_dbfs(tone, sr) == pytest.approx(-12.0, abs=1e-3)


@pytest.mark.skipif(not (YAMNET / "model.safetensors").is_file(), reason="no bundled YAMNet model")
def test_bench_level_prints_one_line(tmp_path):
    manifest = _clips(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_level.py"), "--manifest", str(manifest), "--model", str(YAMNET),
         "--gain-db", "0", "--gain-db", "-20"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    figures = r"AUC (nan|\d\.\d{3}), micro F1 \d\.\d{3}, false/clip \d\.\d\d"
    assert re.fullmatch(
        rf"bench_level: yamnet on 2 clips of \S+, shipped thresholds; as recorded: \+0 dB: {figures}, -20 dB: "
        rf"{figures}; normalised to -12 dBFS: -20 dB: {figures}, \+0 dB: {figures} \(at most \+20 dB; \d+ s\)",
        lines[0]), lines[0]
