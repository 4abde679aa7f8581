"""``bench/bench_level.py``: its scaled copies of a manifest, its copy of a model without level normalisation, and
its one line on a bundled model and clips made here (conftest's two labelled clips)."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import bench_module, two_labelled_clips
from instrument_classifier.inference import DEFAULT_MODEL_DIR, load_model

REPO = Path(__file__).resolve().parents[1]
YAMNET = REPO / "instrument_classifier" / "pretrained" / "yamnet"


def test_scaled_manifest_scales_and_keeps_labels(tmp_path):
    manifest = two_labelled_clips(tmp_path)
    for gain in (-20.0, 6.0):
        out = tmp_path / str(gain)
        out.mkdir()
        rows = list(csv.DictReader(open(bench_module("bench_level").scaled_manifest(manifest, out, gain), newline="")))
        assert [r["instruments"] for r in rows] == ["Flute", ""] and [r["other_sounds"] for r in rows] == ["", "noise"]
        for row, original in zip(rows, ["a/tone.wav", "noise.flac"]):
            scaled, _ = sf.read(out / row["file"])
            source, _ = sf.read(tmp_path / original, always_2d=True)
            assert sf.info(out / row["file"]).subtype == "FLOAT" and scaled.ndim == 1
            np.testing.assert_allclose(scaled, source.mean(axis=1) * 10 ** (gain / 20), rtol=1e-5, atol=1e-7)


@pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "ensemble_config.json").is_file(), reason="no bundled default")
def test_the_copy_without_level_keeps_everything_else(tmp_path):
    copy = bench_module("bench_level").without_level(DEFAULT_MODEL_DIR, tmp_path)
    model, _ = load_model(copy, device="cpu")
    shipped, _ = load_model(DEFAULT_MODEL_DIR, device="cpu")
    assert [extractor.level_dbfs for _, extractor in shipped.members] == [-12.0, -12.0, -12.0]
    assert [extractor.level_dbfs for _, extractor in model.members] == [None, None, None]
    assert model.config.thresholds == shipped.config.thresholds and model.config.weights == shipped.config.weights
    for (member, extractor), (theirs, their_extractor) in zip(model.members, shipped.members):
        assert {k: v for k, v in extractor.to_dict().items() if k != "level_dbfs"} == \
            {k: v for k, v in their_extractor.to_dict().items() if k != "level_dbfs"}
        assert {k: v for k, v in member.config.to_dict().items() if k != "_name_or_path"} == \
            {k: v for k, v in theirs.config.to_dict().items() if k != "_name_or_path"}
    assert json.loads((DEFAULT_MODEL_DIR.parent / "musicnn" / "preprocessor_config.json").read_text())["level_dbfs"]


@pytest.mark.skipif(not (YAMNET / "model.safetensors").is_file(), reason="no bundled YAMNet model")
def test_bench_level_prints_one_line(tmp_path):
    manifest = two_labelled_clips(tmp_path)
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
        rf"bench_level: yamnet on 2 clips of \S+, shipped thresholds; as shipped: \+0 dB: {figures}, -20 dB: "
        rf"{figures}; level normalisation off: \+0 dB: {figures}, -20 dB: {figures} \(\d+ s\)", lines[0]), lines[0]
