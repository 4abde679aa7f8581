"""Smoke test of ``bench/bench_predict.py``: a --quick run on the bundled CNN, without AST, prints one
line with a real-time factor per length, the startup time and the peak RSS (~30 s on a quiet 2-core machine)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from instrument_classifier.data.render import DEFAULT_SOUNDFONT

REPO = Path(__file__).resolve().parents[1]
CNN = REPO / "instrument_classifier" / "pretrained" / "cnn"


@pytest.mark.skipif(not DEFAULT_SOUNDFONT.is_file(), reason="FluidR3 GM not installed (apt fluid-soundfont-gm)")
@pytest.mark.skipif(not (CNN / "model.safetensors").is_file(), reason="no bundled CNN")
def test_quick_run_prints_one_line_with_every_field():
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_predict.py"), "--quick", "--no-default", "--skip-ast",
         "--model", str(CNN)],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    line = lines[0]
    assert line.startswith("bench_predict: predict --format json, fresh process, load included")
    assert "device cpu" in line and re.search(r"load \d+\.\d -> \d+\.\d", line)
    assert re.search(r"pretrained/cnn: 30 s \d+\.\dx, 2 min \d+\.\dx, startup \d+\.\d\d s, "
                     r"peak RSS \d+/\d+/\d+ MB", line), line
    assert line.endswith("| AST skipped")
