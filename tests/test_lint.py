"""ruff, with pyproject.toml's settings, passes on the repository (`make lint`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ruff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_the_repository_passes_ruff():
    proc = ruff(".")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]


def test_the_configuration_refuses_a_line_of_120_characters(tmp_path):
    # the repository's settings, applied to a file outside it: 119 characters pass, 120 do not
    config = str(ROOT / "pyproject.toml")
    path = tmp_path / "long.py"
    path.write_text("x = " + repr("a" * 113) + "\n")  # 119 characters
    assert ruff("--config", config, str(path), cwd=tmp_path).returncode == 0
    path.write_text("x = " + repr("a" * 114) + "\n")
    proc = ruff("--config", config, str(path), cwd=tmp_path)
    assert proc.returncode == 1 and "E501" in proc.stdout
