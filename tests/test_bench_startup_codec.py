"""Smoke tests of ``bench/bench_startup.py`` and ``bench/bench_codec.py``: each prints its one line, on the bundled
models and on clips made here (bench_codec's MP3 round trip keeps every clip's length, so labels stay valid)."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from conftest import bench_module, two_labelled_clips

REPO = Path(__file__).resolve().parents[1]
YAMNET = REPO / "instrument_classifier" / "pretrained" / "yamnet"


def test_encode_manifest_keeps_lengths_and_labels(tmp_path):
    manifest = two_labelled_clips(tmp_path)
    out = tmp_path / "mp3"
    out.mkdir()
    encoded, kbps = bench_module("bench_codec").encode_manifest(manifest, out, 0.5)
    rows = list(csv.DictReader(open(encoded, newline="")))
    assert [r["instruments"] for r in rows] == ["Flute", ""] and [r["other_sounds"] for r in rows] == ["", "noise"]
    for row, original in zip(rows, ["a/tone.wav", "noise.flac"]):
        decoded = sf.info(encoded.parent / row["file"])
        assert decoded.format == "MP3" and decoded.channels == 1
        assert decoded.frames == sf.info(manifest.parent / original).frames
    assert 8 < kbps < 320


@pytest.mark.skipif(not (YAMNET / "model.safetensors").is_file(), reason="no bundled YAMNet model")
def test_bench_codec_prints_one_line(tmp_path):
    manifest = two_labelled_clips(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_codec.py"), "--manifest", str(manifest), "--model", str(YAMNET),
         "--compression-level", "0.5"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    assert re.fullmatch(
        r"bench_codec: yamnet on 2 clips of \S+, shipped thresholds: original: macro AUC (nan|\d\.\d{3}), micro F1 "
        r"\d\.\d{3}, false alarms/clip \d\.\d\d \| MP3 level 0\.5 \(\d+ kbit/s\): macro AUC (nan|\d\.\d{3}), "
        r"micro F1 \d\.\d{3}, false alarms/clip \d\.\d\d \(\d+ s\)", lines[0]), lines[0]


@pytest.mark.skipif(not (YAMNET / "model.safetensors").is_file(), reason="no bundled YAMNet model")
def test_bench_startup_prints_every_stage():
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_startup.py"), "--model", str(YAMNET), "--repeats", "1"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = proc.stdout.strip()
    stages = re.findall(r"(interpreter|torch\+audio|\+transformers configs|\+PreTrainedModel|package imports|"
                        r"predict 1 s) (\d+\.\d\d) s", line)
    assert [name for name, _ in stages] == ["interpreter", "torch+audio", "+transformers configs",
                                            "+PreTrainedModel", "package imports", "predict 1 s"], line
    assert line.startswith("bench_startup: yamnet, fresh processes, median of 1:")
    assert re.search(r"floor with transformers model classes \d+\.\d\d s, without them \(estimate\) \d+\.\d\d s", line)
