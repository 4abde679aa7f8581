"""The musicnn recipe's sources: the converted musicnn weights and the VirtualPlayingOrchestra samples, checked
and recorded (sha256, git commit) before anything is rendered or trained; and the provenance file a converter
writes beside its weights, read here for musicnn's and by :mod:`~.musicnn_yamnet` for YAMNet's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Tuple

from safetensors import safe_open

from ..data.sampler import ARTICULATIONS, VPO_INSTRUMENTS, library_commit
from ..modeling.musicnn_frontend import MusicnnFrontend

from .common import REPO_ROOT, RecipeError, sha256, write_json

DEFAULT_WEIGHTS = REPO_ROOT / "musicnn_mtt.safetensors"
VPO_URL = "https://github.com/eodowd/VirtualPlayingOrchestra"
#: The VPO commit the experiments of docs/experiments.md rendered with; another commit is used, with a warning.
VPO_COMMIT = "f6d77b7971d900b7b3d97b9e3098aa345032e791"
#: scripts/convert_musicnn.py's docstring: how the weights are made (a test keeps the two equal).
CONVERSION_COMMANDS = (
    "python scripts/convert_musicnn.py --wheel musicnn-0.1.0-py3-none-any.whl \\\n"
    "    --output musicnn_mtt.safetensors\n"
    "python scripts/convert_musicnn.py --output ...   # from the installed musicnn package"
)
#: musicnn 0.1.0's LICENSE.md, for weights converted without convert_musicnn.py's JSON beside them (which
#: carries the text read from the wheel).
MUSICNN_LICENCE = (
    "Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019. Code developed by Jordi Pons "
    "(www.jordipons.me).\n\n"
    "Permission to use, copy, modify, and/or distribute this software for any purpose with or without fee is hereby "
    "granted, provided that the above copyright notice and this permission notice appear in all copies.\n\n"
    "THE SOFTWARE IS PROVIDED \"AS IS\" AND THE AUTHOR DISCLAIMS ALL WARRANTIES WITH REGARD TO THIS SOFTWARE "
    "INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR ANY "
    "SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES WHATSOEVER RESULTING FROM LOSS OF USE, DATA "
    "OR PROFITS, WHETHER IN AN ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF OR IN "
    "CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.\n"
)


def missing_weights_message(weights: Path) -> str:
    return (f"{weights}: musicnn weights not found. scripts/convert_musicnn.py converts them from the musicnn 0.1.0 "
            "wheel (ISC licence), in a Python with tensorflow 2.15 (tensorflow-cpu==2.15.1 with numpy 1.26), torch, "
            "numpy and safetensors, run from the repository:\n\n"
            "    pip download --no-deps musicnn==0.1.0\n"
            + "\n".join(f"    {line}" for line in CONVERSION_COMMANDS.splitlines())
            + f"\n\nthen pass the file with --musicnn-weights (default {DEFAULT_WEIGHTS}).")


def missing_vpo_message(vpo: Path) -> str:
    return (f"{vpo}: the Virtual Playing Orchestra sample library is not there. Get it (about 1 GB; its samples are "
            "never shipped, see the licences in README.md) with\n\n"
            f"    git clone {VPO_URL} {vpo}\n"
            f"    git -C {vpo} checkout {VPO_COMMIT}\n\n"
            "or pass your clone with --sampler-library.")


def check_weights(weights: Path) -> None:
    """Refuse a file that is not a musicnn (``MTT_musicnn``) state dict of ``MusicnnFrontend`` (names, shapes)."""

    expected = {k: tuple(v.shape) for k, v in MusicnnFrontend().state_dict().items()}
    try:
        with safe_open(str(weights), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for a file that is not safetensors
        raise RecipeError(f"{weights}: not a safetensors file ({exc})") from None
    if found != expected:
        wrong = sorted(set(found) ^ set(expected)) or sorted(k for k in found if found[k] != expected[k])
        raise RecipeError(f"{weights}: not MTT_musicnn weights of musicnn_frontend.MusicnnFrontend (tensors differ: "
                          f"{', '.join(wrong[:4])}{', ...' if len(wrong) > 4 else ''}); make them with "
                          "scripts/convert_musicnn.py")


def _vpo_presets() -> List[str]:
    return sorted({layer.preset for variants in VPO_INSTRUMENTS.values() for variant in variants
                   for articulation in ARTICULATIONS for layer in getattr(variant, articulation)})


def read_provenance(weights: Path, converter: str) -> Tuple[Path, dict]:
    """The provenance file ``converter`` (a script of scripts/) writes beside ``weights``, and its content.

    Returns
    -------
    (Path, dict)
        ``weights.with_suffix(".json")`` and what it holds; ``{}`` when there is none (weights converted by other
        means).

    Raises
    ------
    RecipeError
        The file is there but is not JSON.
    """
    provenance_file = weights.with_suffix(".json")
    if not provenance_file.is_file():
        return provenance_file, {}
    try:
        return provenance_file, json.loads(provenance_file.read_text())
    except ValueError:
        raise RecipeError(f"{provenance_file}: not JSON ({converter} writes it beside the weights)") from None


def check_sources(weights: Path, vpo: Path, out: Path) -> dict:
    """Check the musicnn weights and the VPO checkout, and record them in ``out`` (JSON); returns the record.

    Raises
    ------
    RecipeError
        Either is missing (the message says how to make or get it) or is not what it should be.
    """

    weights, vpo = Path(weights).expanduser(), Path(vpo).expanduser()
    if not weights.is_file():
        raise RecipeError(missing_weights_message(weights))
    check_weights(weights)
    provenance_file, provenance = read_provenance(weights, "convert_musicnn.py")
    if not vpo.is_dir():
        raise RecipeError(missing_vpo_message(vpo))
    missing = [name for name in _vpo_presets() if not (vpo / name).is_file()]
    if missing:
        raise RecipeError(f"{vpo}: not a Virtual Playing Orchestra checkout, it lacks {', '.join(missing[:3])}"
                          f"{', ...' if len(missing) > 3 else ''} ({VPO_URL} at {VPO_COMMIT})")
    commit = library_commit(vpo) or "unknown"
    if commit not in ("unknown", VPO_COMMIT):
        print(f"[recipe musicnn] warning: {vpo} is at commit {commit}, not {VPO_COMMIT} (the one measured in "
              "docs/experiments.md); its note maps may differ", flush=True)
    licence = provenance.get("licence", {})
    record = {
        "musicnn_weights": {
            "path": str(weights.resolve()), "sha256": sha256(weights),
            "source": provenance.get("source", {}), "licence": licence.get("name"),
            "licence_text": licence.get("text"), "provenance_file": str(provenance_file) if provenance else None,
        },
        "sampler_library": {"path": str(vpo.resolve()), "commit": commit, "url": VPO_URL},
    }
    write_json(out, record)
    return record
