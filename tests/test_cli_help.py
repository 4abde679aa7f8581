"""The command line's help: every option of every command says what it does (``prepare --taxonomy`` did not)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from instrument_classifier import cli


def _commands():
    parser = cli.build_parser()  # every command's module, with its options
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sub.choices


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_option_has_help(name):
    parser = _commands()[name]
    bare = [a.option_strings or a.dest for a in parser._actions if not a.help and a.dest != "help"]
    assert bare == [], f"{name}: options without help: {bare}"


def test_prepare_taxonomy_help_names_both_label_sets(capsys):
    with pytest.raises(SystemExit):
        cli.main(["prepare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--taxonomy {musicnet11,seed12} the labels: musicnet11, the 11 instruments" in text
    assert "seed12, the 12 instrument families" in text and "(default seed12)" in text


@pytest.mark.parametrize("name", sorted(set(cli.COMMANDS) - {"train"}))  # train's flags are transformers' dataclasses
def test_help_loads_no_framework(name):
    """``--help`` and usage errors answer at once: building a command's parser loads neither torch, transformers,
    datasets, scikit-learn nor gradio (``evaluate --help`` and ``prepare --help`` took 5 s when they did)."""
    code = (f"import sys; from instrument_classifier import cli; cli.build_parser({name!r}); "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'sklearn', 'gradio') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
