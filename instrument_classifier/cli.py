"""The ``instrument-classifier`` command line: one entry point, one subcommand per task.

Each subcommand lives in the module that does the work; for a command ``name`` that module exposes
``add_<name>_arguments(parser)`` and ``run_<name>(args) -> int`` (``-`` becomes ``_``: ``run_push_model``);
``train`` is the exception, its flags are the ``HfArgumentParser`` dataclasses of
:mod:`instrument_classifier.training.run_train`. Only the chosen command's module is imported, so ``--help``
and light commands start fast and heavy dependencies stay optional.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from . import __version__

# name -> (module, one-line help)
COMMANDS = {
    "synth": ("instrument_classifier.data.render",
              "render MusicNet label CSVs to a MusicNet-layout corpus (FluidSynth, or recorded samples)"),
    "prepare": ("instrument_classifier.data.prepare_command",
                "build a `datasets` dataset of feature windows (MFCC, log-mel, constant-Q, or the mel bands of "
                "musicnn, YAMNet or EfficientAT) from a MusicNet folder"),
    "train": ("instrument_classifier.training.run_train",
              "train a CNN or Transformer with the 🤗 Trainer (`instrument-classifier train --help` lists the flags)"),
    "evaluate": ("instrument_classifier.evaluation.evaluate_command",
                 "evaluate models on a split or on labelled recordings: metrics.json, tables, figures"),
    "predict": ("instrument_classifier.predict", "which instruments play when, in audio files"),
    "demo": ("instrument_classifier.demo", "launch the Gradio demo (the Space) locally"),
    "push-model": ("instrument_classifier.hub", "upload a trained or bundled model to the Hugging Face Hub"),
    "push-space": ("instrument_classifier.hub", "upload the Gradio app as a Hugging Face Space"),
}


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The command-line parser; only ``command``'s module is imported (all of them when ``None``)."""
    parser = argparse.ArgumentParser(
        prog="instrument-classifier",
        description="Frame-level musical instrument recognition (MusicNet, Hugging Face models).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name, _name=name)
        if command is None or name == command:
            module = importlib.import_module(module_name)
            getattr(module, f"add_{name.replace('-', '_')}_arguments")(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # its flags are read by HfArgumentParser (transformers' dataclass arguments)
        from .training.run_train import cli  # loads torch and transformers: only when `train` is the command

        return cli(argv[1:])
    # Import only the chosen subcommand's module: fast start, and heavy dependencies stay optional.
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else "").parse_args(argv)
    module = importlib.import_module(args._module)
    runner = getattr(module, f"run_{args._name.replace('-', '_')}")
    try:
        return int(runner(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
