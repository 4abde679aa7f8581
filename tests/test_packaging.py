"""``pip install``: the wheel built from this checkout, unpacked and used without the checkout.

The wheel is built for real (``pip wheel``, setuptools of the venv, no index) from a copy of the files a clone
has; then a fresh interpreter imports the package from the unpacked wheel only (``PYTHONPATH``, outside the
checkout) and runs ``instrument-classifier push-space`` with ``HfApi``'s network calls recorded, as
tests/test_hub.py does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from instrument_classifier import __version__

REPO_ROOT = Path(__file__).resolve().parents[1]
CLONE_FILES = ("pyproject.toml", "setup.py", "MANIFEST.in", "LICENSE", "README.md")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("clone")
    for name in CLONE_FILES:
        shutil.copy2(REPO_ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for folder in ("instrument_classifier", "space"):
        shutil.copytree(REPO_ROOT / folder, source / folder, ignore=ignore)
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(out), str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    (path,) = out.glob("instrument_classifier-*.whl")
    return path


def test_wheel_metadata_licence_version_and_torch_range(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(f"instrument_classifier-{__version__}.dist-info/METADATA").decode()
        licence = z.read(f"instrument_classifier-{__version__}.dist-info/licenses/LICENSE").decode()
    assert wheel.name == f"instrument_classifier-{__version__}-py3-none-any.whl"
    assert f"\nVersion: {__version__}\n" in metadata
    assert "\nLicense-Expression: Apache-2.0\n" in metadata and "\nLicense-File: LICENSE\n" in metadata
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    # a range, so that pip keeps a CUDA build of torch already installed (the Makefile pins 2.13.0 for .venv)
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist: torch")]
    assert requires == ["Requires-Dist: torch<3,>=2.6"], requires  # (the README, the long description, may say "==")
    assert "instrument_classifier/space/app.py" in names and "instrument_classifier/pretrained/ensemble/" \
        "ensemble_config.json" in names


def test_push_space_and_version_work_from_the_installed_wheel(wheel, tmp_path):
    site = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    script = tmp_path / "push.py"
    script.write_text(textwrap.dedent("""
        import json, sys
        from pathlib import Path
        import huggingface_hub
        from instrument_classifier import cli, hub, space_app

        uploaded = {}
        def upload_folder(self, *, repo_id, folder_path, **kwargs):
            root = Path(folder_path)
            uploaded["files"] = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
            return "mock-commit"
        huggingface_hub.HfApi.create_repo = lambda self, repo_id, **kwargs: None
        huggingface_hub.HfApi.upload_folder = upload_folder
        code = cli.main(["push-space", "--repo-id", "someone/instruments"])
        print(json.dumps({"code": code, "package": str(Path(hub.__file__).parent), "space": str(hub.DEFAULT_SPACE_DIR),
                          "examples": str(space_app.default_examples_dir()), **uploaded}))
    """))
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["code"] == 0
    assert result["package"] == str(site / "instrument_classifier")  # the wheel's copy, not the checkout's
    assert result["space"] == str(site / "instrument_classifier" / "space")
    assert result["examples"] == str(site / "instrument_classifier" / "space" / "examples")
    files = set(result["files"])
    for name in ("app.py", "README.md", "requirements.txt", "examples/examples.csv",
                 "instrument_classifier/space_app.py",
                 "instrument_classifier/pretrained/ensemble/ensemble_config.json"):
        assert name in files, name
    assert len([f for f in files if f.startswith("examples/") and f.endswith(".ogg")]) == 4
    assert not any(f.startswith("instrument_classifier/space/") for f in files)  # the app once, at the top
    version = subprocess.run([sys.executable, "-m", "instrument_classifier.cli", "--version"], capture_output=True,
                             text=True, cwd=tmp_path, env=env, timeout=60)
    assert version.stdout.strip() == f"instrument-classifier {__version__}"
    # training is a command of the installed wheel's package (train.py of a checkout is only a wrapper around it)
    assert "train.py" not in zipfile.ZipFile(wheel).namelist()  # no top-level script: the module
    train = subprocess.run([sys.executable, "-m", "instrument_classifier.cli", "train", "--help"], capture_output=True,
                           text=True, cwd=tmp_path, env=env, timeout=300)
    assert train.returncode == 0, train.stderr[-3000:]
    assert train.stdout.startswith("usage: instrument-classifier train") and "--dataset_path" in train.stdout


def test_version_of_the_installed_command():
    cli = Path(sys.executable).with_name("instrument-classifier")
    run = subprocess.run([str(cli), "--version"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == f"instrument-classifier {__version__}"
