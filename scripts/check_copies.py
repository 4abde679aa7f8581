"""Check (or fix) the copied code of the self-contained model files, as transformers' ``utils/check_copies.py``.

A model folder carries its own code for ``trust_remote_code`` (``save_pretrained`` copies the modeling,
configuration, feature extraction and pipeline files next to the weights), so each model's files repeat the code
they share with the others instead of importing it. Two kinds of copies are kept equal here:

1. Blocks marked ``# Copied from instrument_classifier.modeling.<module>.<Name>`` in ``instrument_classifier/modeling``
   (the line right above the ``def``/``class``/assignment, or above its decorators) must equal that definition of
   ``<module>``, after the optional replacements of the marker: ``... <Name> with A->B, C->D``. ``<Name>`` may be a
   method of a top-level class, ``<Class>.<method>``, marked (indented) right above the method; a marker longer than
   a line may end in ``# noqa: E501``.
2. The code files of the bundled model folders, ``instrument_classifier/pretrained/*/*.py``, must equal the
   package's ``instrument_classifier/modeling`` files of the same name (the weights stay as they are).

Usage: ``python scripts/check_copies.py`` exits 1 and lists the differences; ``--fix`` rewrites the marked blocks
from their sources and refreshes the model folders' files (``make check-copies``, ``make fix-copies``).
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "instrument_classifier.modeling"
MARKER = re.compile(
    rf"^# Copied from {re.escape(PACKAGE)}\.(?P<module>\w+)\.(?P<name>\w+(?:\.\w+)?)(?:\s+with\s+(?P<rules>.+?))?"
    r"(?:\s+# noqa: E501)?$"
)


@dataclass
class Copy:
    """One marked block: lines ``start`` to ``end`` (0-based, end exclusive) of ``path`` copy ``module.name``."""

    path: Path
    line: int  # the marker's line (0-based)
    start: int
    end: int
    module: str
    name: str
    replacements: List[Tuple[str, str]]


def _definitions(source: str) -> Dict[str, Tuple[int, int]]:
    """Top-level names, and ``Class.method`` for the methods of top-level classes -> ``(start, end)`` lines (0-based,
    end exclusive) of their definitions, decorators included: functions, classes, methods and assignments to one
    name."""
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        else:
            continue
        for name in names:
            out[name] = _lines(node)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out[f"{node.name}.{item.name}"] = _lines(item)
    return out


def _lines(node: ast.AST) -> Tuple[int, int]:
    """``(start, end)`` lines of a definition (0-based, end exclusive), its decorators included."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return first - 1, node.end_lineno


def _rules(text: Optional[str]) -> List[Tuple[str, str]]:
    if not text:
        return []
    rules = []
    for rule in text.split(","):
        old, sep, new = rule.strip().partition("->")
        if not sep or not old:
            raise ValueError(f"replacement {rule.strip()!r} is not of the form A->B")
        rules.append((old.strip(), new.strip()))
    return rules


def find_copies(path: Path) -> List[Copy]:
    """The marked blocks of one file; a marker not directly above a top-level definition or a method of a top-level
    class is an error."""
    source = path.read_text()
    lines = source.splitlines()
    starts = {start: (start, end) for start, end in _definitions(source).values()}
    copies = []
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("# Copied from"):
            continue
        match = MARKER.match(line.strip())
        if match is None:
            raise ValueError(f"{path}:{i + 1}: a marker must read '# Copied from {PACKAGE}.<module>.<Name>' "
                             f"(optionally 'with A->B, C->D'): {line.strip()!r}")
        if i + 1 not in starts:
            raise ValueError(f"{path}:{i + 1}: the marker is not directly above a top-level def, class or assignment, "
                             "or a method of a top-level class")
        start, end = starts[i + 1]
        copies.append(Copy(path, i, start, end, match["module"], match["name"], _rules(match["rules"])))
    return copies


def expected_block(copy: Copy, modeling_dir: Path) -> List[str]:
    """The lines the marked block must have: its source's definition with the marker's replacements applied."""
    source_path = modeling_dir / f"{copy.module}.py"
    if not source_path.is_file():
        raise ValueError(f"{copy.path}:{copy.line + 1}: no module {PACKAGE}.{copy.module}")
    source = source_path.read_text()
    definitions = _definitions(source)
    if copy.name not in definitions:
        raise ValueError(f"{copy.path}:{copy.line + 1}: {PACKAGE}.{copy.module} defines no {copy.name}")
    start, end = definitions[copy.name]
    text = "\n".join(source.splitlines()[start:end])
    for old, new in copy.replacements:
        text = text.replace(old, new)
    return text.split("\n")


def check(root: Path = ROOT, fix: bool = False) -> List[str]:
    """The differences under ``root`` (a checkout's layout), each a line of text; with ``fix``, repaired."""
    modeling_dir = root / "instrument_classifier" / "modeling"
    problems = []
    for path in sorted(modeling_dir.glob("*.py")):
        copies = find_copies(path)
        lines = path.read_text().splitlines()
        changed = False
        for copy in reversed(copies):  # bottom up, so that a fix keeps the earlier blocks' line numbers
            expected = expected_block(copy, modeling_dir)
            if lines[copy.start : copy.end] != expected:
                problems.append(f"{path.relative_to(root)}:{copy.line + 1}: {copy.name} differs from "
                                f"{PACKAGE}.{copy.module}.{copy.name}")
                lines[copy.start : copy.end] = expected
                changed = True
        if fix and changed:
            path.write_text("\n".join(lines) + "\n")
    for folder in sorted(p for p in (root / "instrument_classifier" / "pretrained").iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.py")):
            original = modeling_dir / path.name
            if not original.is_file():
                problems.append(f"{path.relative_to(root)}: no {PACKAGE} file of this name to be a copy of")
            elif path.read_bytes() != original.read_bytes():
                problems.append(f"{path.relative_to(root)}: differs from {original.relative_to(root)}")
                if fix:
                    shutil.copyfile(original, path)
    return problems


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fix", action="store_true", help="rewrite the copies from their sources")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to check (default: this one)")
    args = parser.parse_args(argv)
    problems = check(args.root, fix=args.fix)
    for problem in problems:
        print(problem)
    if problems and not args.fix:
        print(f"{len(problems)} copies differ from their sources; run `make fix-copies` (python "
              "scripts/check_copies.py --fix) to update them", file=sys.stderr)
        return 1
    if problems:
        print(f"fixed {len(problems)} copies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
