"""The package's public API: ``from instrument_classifier import load_model, ...``, lazily, and the README's
Python quickstart run as written (with a shipped example clip for its file)."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import instrument_classifier

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "space" / "examples" / "haydn_string_quartet_53.ogg"


def test_the_api_is_importable_from_the_package():
    from instrument_classifier import InstrumentFeatureExtractor, load_model, predict_timeline  # noqa: F401
    from instrument_classifier.inference import load_model as defined

    assert load_model is defined
    for name in instrument_classifier.__all__:
        value = getattr(instrument_classifier, name)
        if name != "__version__":
            module = importlib.import_module(f"instrument_classifier.{instrument_classifier._EXPORTS[name]}")
            assert value is getattr(module, name), name
    assert set(instrument_classifier.__all__) <= set(dir(instrument_classifier))
    with pytest.raises(ImportError, match="no_such_name"):
        from instrument_classifier import no_such_name  # noqa: F401
    from instrument_classifier import inference  # submodules are still importable this way

    assert inference.load_model is load_model


def test_importing_the_package_loads_nothing_heavy():
    """``import instrument_classifier`` stays as cheap as it was (~2 ms): no torch, transformers or numpy."""
    code = ("import json, sys, time; t = time.perf_counter(); import instrument_classifier; "
            "print(json.dumps([time.perf_counter() - t, sorted(m for m in ('torch', 'transformers', 'numpy', "
            "'datasets', 'gradio') if m in sys.modules)]))")
    seconds, heavy = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                               check=True).stdout)
    assert heavy == [] and seconds < 0.5
    # the first use of a name imports what it needs
    code = "import sys, instrument_classifier as ic; ic.load_model; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "True"


def test_readme_quickstart_runs_as_written(tmp_path):
    readme = (REPO_ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart (Python)", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", quickstart, re.S).group(1)
    assert '"quartet.flac"' in code
    script = tmp_path / "quickstart.py"
    script.write_text(code.replace('"quartet.flac"', repr(str(EXAMPLE))))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert lines[0] == "['Violin', 'Viola', 'Cello']"  # a string quartet
    assert "Loading weights" not in run.stderr
