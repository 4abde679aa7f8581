"""Outputs that are either complete or absent: written next to their final name, then renamed into place.

A file is written to ``.NAME.PID.tmp`` in its own folder and moved over ``NAME`` with ``os.replace``
(atomic on one file system); an interrupted write leaves the previous ``NAME`` untouched and removes its
temporary file. A folder is built elsewhere and swapped in with :func:`replace_dir`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Optional

__all__ = ["write_file", "write_text", "copy_file", "replace_dir", "write_dir", "overwritten_input"]


def write_file(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` (newlines as given), flushed to disk before the rename."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return write_file(path, write)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy ``src`` to ``dst`` (contents only)."""
    return write_file(dst, lambda tmp: shutil.copyfile(src, tmp))


def overwritten_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> Optional[str]:
    """The first of ``inputs`` that writing ``output`` would replace, or ``None``.

    Compared as the renames of :func:`write_file` land: the folders resolved (``..``, linked folders), the
    names kept, so ``x.wav``, ``sub/../x.wav`` and ``link-to-this-folder/x.wav`` are the same file.
    """
    target = _entry(output)
    return next((str(path) for path in inputs if _entry(path) == target), None)


def _entry(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser().absolute()
    return path.parent.resolve() / path.name


def replace_dir(tmp: str | os.PathLike, output: str | os.PathLike, old_prefix: Optional[str] = None) -> None:
    """Move the finished folder ``tmp`` to ``output``; a previous ``output`` is removed only afterwards.

    ``old_prefix`` names the folder the previous ``output`` waits in (in ``output``'s parent) until it is
    removed; default ``.NAME.old-``.
    """
    output = Path(output)
    old = None
    if output.exists():
        old = Path(tempfile.mkdtemp(prefix=old_prefix or f".{output.name}.old-", dir=output.parent))
        os.replace(output, old / output.name)
    os.replace(tmp, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_dir(output: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Build a folder with ``write(tmp)`` in a temporary sibling of ``output``, then swap it in with
    :func:`replace_dir`; if ``write`` fails, the temporary folder is removed and ``output`` is untouched."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))  # same file system: atomic
    try:
        write(tmp)
        replace_dir(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output
