"""What leaves the machine names no local folder: absolute paths in JSON-like data cut to their last components.

Results and dataset info record where their inputs were (``/home/me/corpora/merlin-test``); a model folder or a
dataset pushed to the Hub, or a bundled model, should not carry that. :func:`strip_local_paths` keeps the part
that means something to a reader (``corpora/merlin-test``, ``real-dev/manifest.csv``).
"""

from __future__ import annotations

import ntpath
import posixpath
from typing import Any

__all__ = ["is_local_path", "strip_local_paths"]


def is_local_path(value: Any) -> bool:
    """``True`` for a string that is an absolute POSIX or Windows path (``/a/b``, ``~/a``, ``C:\\a``)."""
    if not isinstance(value, str) or not value or "\n" in value:
        return False
    return value.startswith(("/", "~")) or (ntpath.isabs(value) and ntpath.splitdrive(value)[0] != "")


def strip_local_paths(value: Any, keep: int = 2) -> Any:
    """A copy of ``value`` (dicts, lists, tuples, strings, numbers) with every absolute path string shortened to its
    last ``keep`` components.

    Parameters
    ----------
    value : object
        JSON-like data.
    keep : int
        Path components kept (2: the file and its folder).

    Returns
    -------
    object
        The same structure; tuples become lists, as in JSON.
    """
    if isinstance(value, dict):
        return {k: strip_local_paths(v, keep) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strip_local_paths(v, keep) for v in value]
    if is_local_path(value):
        parts = [p for p in value.replace("\\", "/").split("/") if p and p != "~" and not p.endswith(":")]
        return posixpath.join(*parts[-keep:]) if parts else ""
    return value
