"""How long each command takes to answer ``--help``, against importing the module that does its work. One line.

    python bench/bench_help.py              # median of 3 fresh processes per command

``instrument-classifier COMMAND --help`` is what a user types first, and a usage error takes the same path. The
command line imports only the chosen command's argument module; the alternative timed beside it is importing the
module that does the command's work (what ``--help`` cost while the arguments were defined there: ``prepare`` and
``evaluate`` took about 5 s). Each figure is the wall clock of a fresh interpreter, median of ``--repeats``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: command -> the module that does its work (imported when the command runs)
WORK_MODULES = {
    "synth": "instrument_classifier.data.render",
    "prepare": "instrument_classifier.data.prepare",
    "train": "instrument_classifier.training.run_train",
    "evaluate": "instrument_classifier.evaluation.evaluate_models",
    "predict": "instrument_classifier.inference",
    "demo": "instrument_classifier.space_app",
    "push-model": "instrument_classifier.hub",
}


def _wall(cmd: list) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench_help: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per figure (median)")
    args = parser.parse_args(argv)

    _wall([sys.executable, "-c", f"import {WORK_MODULES['evaluate']}"])  # warm the file cache and the bytecode once
    figures = []
    for command, module in WORK_MODULES.items():
        help_s = statistics.median(_wall([sys.executable, "-m", "instrument_classifier.cli", command, "--help"])
                                   for _ in range(args.repeats))
        work_s = statistics.median(_wall([sys.executable, "-c", f"import {module}"]) for _ in range(args.repeats))
        figures.append(f"{command} {help_s:.2f} s (work module {work_s:.2f} s, {work_s / help_s:.0f}x)")
    print(f"bench_help: --help wall clock, fresh processes, median of {args.repeats}: {'; '.join(figures)}; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
