"""Build hook: the wheel also carries the Space's app (``space/``) as ``instrument_classifier/space/``.

Everything else is declared in pyproject.toml. ``space/`` stays at the top of the checkout (the Space's own
folder, next to the package it runs); copying it into the built package lets ``instrument-classifier push-space``
and ``demo`` (its example clips) work after a ``pip install`` that has no checkout
(:data:`instrument_classifier.hub.DEFAULT_SPACE_DIR`).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SPACE = Path(__file__).resolve().parent / "space"


class BuildPyWithSpace(build_py):
    def run(self):
        super().run()
        if not (SPACE / "app.py").is_file():  # e.g. a wheel built from an sdist made without MANIFEST.in
            raise FileNotFoundError(f"{SPACE}: the Space's folder (app.py) is missing; it ships in the wheel")
        target = Path(self.build_lib) / "instrument_classifier" / "space"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(SPACE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "flagged"))


setup(cmdclass={"build_py": BuildPyWithSpace})
