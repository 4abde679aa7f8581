"""A model folder is data, never code: every loader refuses a folder that would need its own code to load.

transformers imports Python files shipped in a model folder when ``config.json`` names a ``model_type`` it
does not know together with an ``auto_map`` to the folder's modules, or when ``preprocessor_config.json``
maps ``AutoFeatureExtractor`` to the folder's module without naming a known extractor class. Unless
``trust_remote_code`` is given, it *asks* on the terminal (and waits 15 s), so ``echo y | ...`` would run
whatever the folder holds. This package's own folders also carry an ``auto_map`` (so they load elsewhere
with ``trust_remote_code=True``), but their types are registered here, so their code is never needed.

Every loader of the package therefore

* passes :data:`NO_REMOTE_CODE` (``trust_remote_code=False``) to each ``from_pretrained``: never a prompt,
  never the folder's code; a Hub repo that needs its code then fails inside transformers;
* calls :func:`check_no_remote_code` on a local folder first, which refuses it with a message that names
  the folder and the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from transformers import CONFIG_MAPPING
from transformers.models.auto.feature_extraction_auto import feature_extractor_class_from_name

from . import modeling  # noqa: F401  (registers our model types and feature extractor: known, not remote)

__all__ = ["NO_REMOTE_CODE", "RemoteCodeError", "check_no_remote_code"]

#: keyword arguments for every ``from_pretrained`` of this package
NO_REMOTE_CODE = {"trust_remote_code": False}


class RemoteCodeError(ValueError):
    """A model folder that could only be loaded by running code shipped in it."""


def check_no_remote_code(folder: str | os.PathLike) -> None:
    """Refuse a local model folder whose loading would import Python files of the folder.

    Parameters
    ----------
    folder : path
        A model folder; anything that is not a local folder (a Hub id) is left to transformers, which
        refuses such a repo itself under ``trust_remote_code=False``.

    Raises
    ------
    RemoteCodeError
        ``config.json`` has an ``auto_map`` and a ``model_type`` that neither transformers nor this package
        registers, or ``preprocessor_config.json`` has an ``auto_map`` and no feature extractor class that
        either knows. The message names the folder and the file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    config = _read_json(folder / "config.json")
    if config.get("auto_map") and not _known_model_type(config.get("model_type")):
        raise RemoteCodeError(
            f"{folder}: config.json has model_type {config.get('model_type')!r}, which is not an "
            "instrument-classifier "
            f"or transformers model, and an auto_map to code in the folder ({_modules(config['auto_map'])}); "
            "refusing to run a model folder's code. Use a model saved by this package (train.py, save_pretrained)."
        )
    preprocessor = _read_json(folder / "preprocessor_config.json")
    if preprocessor.get("auto_map") and not _known_extractor(preprocessor.get("feature_extractor_type")):
        raise RemoteCodeError(
            f"{folder}: preprocessor_config.json has feature_extractor_type "
            f"{preprocessor.get('feature_extractor_type')!r}, which is not a known feature extractor, and an auto_map "
            f"to code in the folder ({_modules(preprocessor['auto_map'])}); refusing to run a model folder's code. "
            "Use a model saved by this package (train.py, save_pretrained)."
        )


def _read_json(path: Path) -> dict:
    # an unreadable or missing file is the loaders' own error to report; here it maps nothing
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _known_model_type(model_type: Optional[str]) -> bool:
    return isinstance(model_type, str) and model_type in CONFIG_MAPPING


def _known_extractor(name: Optional[str]) -> bool:
    return isinstance(name, str) and feature_extractor_class_from_name(name) is not None


def _modules(auto_map) -> str:
    refs = []
    for ref in auto_map.values() if isinstance(auto_map, dict) else [auto_map]:
        refs.extend(ref if isinstance(ref, (list, tuple)) else [ref])  # tokenizers map to [slow, fast]
    # "module.Class", or "repo--module.Class" for code in another repo
    files = sorted({ref.split("--")[-1].split(".")[0] + ".py" for ref in refs if isinstance(ref, str)})
    return ", ".join(files) or "auto_map"
