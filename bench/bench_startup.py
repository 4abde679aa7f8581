"""Where the start-up of ``predict`` goes: the imports it cannot avoid, and the rest. One line.

    python bench/bench_startup.py                    # the bundled default, median of 5 fresh processes per stage
    python bench/bench_startup.py --model instrument_classifier/pretrained/cnn --repeats 3

Each stage is a fresh interpreter (``sys.executable``), timed from outside (wall clock of the process), median of
``--repeats``; the stages are cumulative:

1. ``python -c pass``: the interpreter;
2. ``import numpy, torch, soundfile, soxr, safetensors.torch``: what any torch model reading audio needs;
3. ``+ transformers``, ``PreTrainedConfig`` and ``SequenceFeatureExtractor``: what loading our configs and feature
   extractors needs (``import transformers`` indexes its model folders);
4. ``+ transformers.modeling_utils``: ``PreTrainedModel``, the base class of our models (it imports
   ``torch.distributed.tensor``, ``torch._dynamo``, ``scipy.optimize`` and sympy on the way);
5. ``import instrument_classifier.inference``: everything ``predict`` imports;
6. ``instrument-classifier predict --format json`` on a 1-s file (a 440 Hz tone, 44.1 kHz FLAC): load, decode,
   features, model and output on top of 5.

Printed: each stage, the work after the imports (6 - 5), and two floors: the imports up to 4 plus that work (what
``predict`` cannot go under while it builds transformers models), and the imports up to 3 plus that work (an
estimate for a ``predict`` that ran the networks without transformers' model classes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_TORCH = "import numpy, torch, soundfile, soxr, safetensors.torch"
_CONFIGS = f"{_TORCH}; import transformers; from transformers import PreTrainedConfig, SequenceFeatureExtractor"
STAGES = [  # each stage imports what the one before did, and more
    ("interpreter", "pass"),
    ("torch+audio", _TORCH),
    ("+transformers configs", _CONFIGS),
    ("+PreTrainedModel", f"{_CONFIGS}; import transformers.modeling_utils"),
    ("package imports", "import instrument_classifier.inference"),
]


def wall_clock(cmd: list) -> float:
    """Seconds a fresh process of ``cmd`` takes, run in the checkout; a failure ends the benchmark with its stderr."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        bench = Path(sys.argv[0]).stem
        raise SystemExit(f"{bench}: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall


def median_wall(cmd: list, repeats: int) -> float:
    return statistics.median(wall_clock(cmd) for _ in range(repeats))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model folder for predict (default: the bundled default)")
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per stage (median)")
    args = parser.parse_args(argv)

    import numpy as np
    import soundfile as sf

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "one_second.flac"
        t = np.arange(44100) / 44100
        sf.write(clip, (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32), 44100)
        wall_clock([sys.executable, "-c", STAGES[-1][1]])  # warm the file cache and the bytecode once
        stages = {name: median_wall([sys.executable, "-c", code], args.repeats) for name, code in STAGES}
        predict = [sys.executable, "-m", "instrument_classifier.cli", "predict", "--format", "json", str(clip)]
        if args.model:
            predict += ["--model", args.model]
        stages["predict 1 s"] = median_wall(predict, args.repeats)

    work = stages["predict 1 s"] - stages["package imports"]
    with_models = stages["+PreTrainedModel"] + work
    without_models = stages["+transformers configs"] + work
    name = Path(args.model).name if args.model else "default"
    listed = ", ".join(f"{key} {value:.2f} s" for key, value in stages.items())
    print(f"bench_startup: {name}, fresh processes, median of {args.repeats}: {listed}; work after imports "
          f"{work:.2f} s; floor with transformers model classes {with_models:.2f} s, without them (estimate) "
          f"{without_models:.2f} s; {os.cpu_count()} CPUs, load {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
