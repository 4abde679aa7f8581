"""``instrument-classifier demo``: run the Space's Gradio app locally.

The app is :func:`instrument_classifier.space_app.build_demo`, the same code ``space/app.py`` runs on
Hugging Face Spaces; the example clips come from the Space's ``examples/`` (shipped in the wheel, or
``space/examples`` of a source checkout).
Serves on 127.0.0.1 by default (this machine only); ``--host 0.0.0.0`` exposes it to the network.
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace
from pathlib import Path

__all__ = ["add_demo_arguments", "run_demo"]


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", default=None, metavar="PATH_OR_ID",
                        help="model folder or Hub id; repeat to offer several "
                             "(default: $MODEL_ID, else the bundled models, the musicnn + YAMNet + EfficientAT blend "
                             "first)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--max-upload-mb", type=_limit("--max-upload-mb"), default=None,
                        help="largest accepted upload in MB (default: $MAX_UPLOAD_MB or 100)")
    parser.add_argument("--max-duration", type=_limit("--max-duration"), default=None, metavar="SECONDS",
                        help="longest accepted recording in seconds (default: $MAX_DURATION_S or 600)")
    parser.add_argument("--examples-dir", type=Path, default=None,
                        help="folder with examples.csv and clips (default: the Space's examples, in the installed "
                             "package or space/examples of the checkout)")
    parser.add_argument("--open", action="store_true", help="open the page in a browser")
    parser.add_argument("--device", default="auto", metavar="auto|cuda|mps|cpu",
                        help="where the models run: auto (default: a CUDA GPU if there is one, else MPS, else the "
                             "CPU), cuda (or cuda:N), mps or cpu")


def _limit(option: str):
    """argparse type of a limit: a positive, finite number (``nan`` or ``inf`` would limit nothing)."""
    def parse(text: str) -> float:
        from .space_app import parse_limit  # space_app loads torch: see run_demo

        try:
            return parse_limit(option, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def run_demo(args: argparse.Namespace) -> int:
    # imported when the demo runs: `instrument-classifier demo --help` imports this module, and space_app loads
    # torch, transformers and matplotlib (seconds); gradio (the optional [space] extra) loads in build_demo
    from .inference import DeviceError, resolve_device
    from .space_app import AppLimits, build_demo, launch_kwargs

    try:
        device = resolve_device(args.device)
    except DeviceError as exc:
        print(f"error: --device: {exc}", file=sys.stderr)
        return 2
    try:
        limits = AppLimits.from_env()  # MAX_UPLOAD_MB, MAX_DURATION_S: positive and finite
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.max_upload_mb is not None:
        limits = replace(limits, max_upload_mb=args.max_upload_mb)
    if args.max_duration is not None:
        limits = replace(limits, max_duration_s=args.max_duration)
    try:
        demo = build_demo(models=args.model, limits=limits, examples_dir=args.examples_dir, device=device)
    except RuntimeError as exc:  # no model, or a model that does not load
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # `kill` (SIGTERM) ends the demo as Ctrl-C does, through Python's exit, so that the app's temporary folder of
    # per-request files is removed (an atexit handler) rather than left behind
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    demo.launch(server_name=args.host, server_port=args.port, inbrowser=args.open, **launch_kwargs(limits))
    return 0
