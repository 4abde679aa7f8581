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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_startup import median_wall, wall_clock  # noqa: E402

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per figure (median)")
    args = parser.parse_args(argv)

    wall_clock([sys.executable, "-c", f"import {WORK_MODULES['evaluate']}"])  # warm the file cache and bytecode
    figures = []
    for command, module in WORK_MODULES.items():
        help_s = median_wall([sys.executable, "-m", "instrument_classifier.cli", command, "--help"], args.repeats)
        work_s = median_wall([sys.executable, "-c", f"import {module}"], args.repeats)
        figures.append(f"{command} {help_s:.2f} s (work module {work_s:.2f} s, {work_s / help_s:.0f}x)")
    print(f"bench_help: --help wall clock, fresh processes, median of {args.repeats}: {'; '.join(figures)}; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
