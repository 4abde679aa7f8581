"""How fast a model could run on this machine at best: its multiply-accumulates per audio second against the
machine's dense matrix-multiply throughput. One line.

    python bench/bench_compute_ceiling.py                                   # the bundled default
    python bench/bench_compute_ceiling.py --model instrument_classifier/pretrained/cnn

Counted: the MACs of every ``Conv1d``, ``Conv2d`` and ``Linear`` of the model on one window
(``output elements x weights per output``; the feature extraction, pooling and normalisation are left out, so the
count is a lower bound of the work). Measured in the same run: the model's own throughput on batches of 8 windows
(``torch.inference_mode``, float32, all threads), and the GMAC/s of a 2048 x 2048 float32 matmul, about the best
a dense kernel reaches here. ``ceiling`` = matmul GMAC/s / GMAC per audio second: the real-time factor the model
cannot exceed on this CPU, whatever the implementation.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from instrument_classifier.inference import load_model  # noqa: E402


def _window_macs(model, window: torch.Tensor) -> int:
    counted = []

    def hook(module, inputs, output):
        counted.append(output.numel() * module.weight[0].numel())

    layers = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layers)]
    try:
        with torch.inference_mode():
            model(input_features=window)
    finally:
        for handle in handles:
            handle.remove()
    return sum(counted)


def _seconds(run, repeats: int) -> float:
    run()  # warm-up: allocations and kernel selection
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model folder (default: the bundled default)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    model, fe = load_model(args.model, device="cpu")
    frames = model.config.window_frames
    n_features = model.config.num_features if hasattr(model.config, "num_features") else fe.feature_size
    window_seconds = frames * fe.hop_length / fe.sampling_rate
    window = torch.rand(1, frames, n_features)
    macs = _window_macs(model, window)
    per_second = macs / window_seconds / 1e9

    batch = torch.rand(8, frames, n_features)
    with torch.inference_mode():
        model_seconds = _seconds(lambda: model(input_features=batch), args.repeats)
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    matmul_seconds = _seconds(lambda: a @ b, args.repeats)
    model_gmacs = 8 * macs / model_seconds / 1e9
    peak_gmacs = 2048**3 / matmul_seconds / 1e9
    name = Path(args.model).name if args.model else "default"
    load = os.getloadavg()[0]
    print(f"bench_compute_ceiling: {name}: {macs / 1e9:.3f} GMAC per {window_seconds:.2f}-s window = "
          f"{per_second:.3f} GMAC per audio second; model {model_gmacs:.1f} GMAC/s "
          f"({8 * window_seconds / model_seconds:.0f}x real time, model only), 2048^2 matmul {peak_gmacs:.1f} GMAC/s "
          f"(ratio {model_gmacs / peak_gmacs:.2f}); ceiling {peak_gmacs / per_second:.0f}x real time; "
          f"{torch.get_num_threads()} threads, load {load:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
