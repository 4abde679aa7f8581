"""`prepare` wall time and peak memory (RSS of the whole process tree) with ``--num-proc 2``, then the cached rerun.

Runs ``prepare`` as a subprocess into a fresh output and a fresh ``datasets`` cache, samples the RSS of that
process and all its children every 20 ms (the sum over the tree, as the machine sees it), then reruns it with
the same cache to a new output (the cached path). Prints one line.

    python bench/bench_prepare.py [--data-dir DIR ...] [--num-proc 2] [--minutes 10]

Without ``--data-dir`` a synthetic MusicNet-layout corpus of ``--minutes`` minutes (30 s recordings of
harmonic tones, the test fixtures' generator) is written to a temporary folder first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import make_musicnet  # noqa: E402

from instrument_classifier.data.musicnet import find_musicnet_root  # noqa: E402

SR = 44100


def synthetic_corpus(root: Path, minutes: float, seconds_each: float = 30.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    programs = [1, 7, 41, 42, 43, 44, 61, 69, 71, 72, 74]
    count = max(2, round(minutes * 60 / seconds_each))
    n = int(seconds_each * SR)
    recordings = {}
    for i in range(count):
        split = "test" if i % 5 == 4 else "train"
        ensemble = rng.choice(programs, size=3, replace=False)
        notes, t = [], 0
        while t < n:
            length = int(rng.uniform(0.25, 1.0) * SR)
            notes.append((t, min(n, t + length), int(rng.choice(ensemble)), int(rng.integers(40, 80))))
            t += int(length * rng.uniform(0.5, 1.0))
        recordings[str(3000 + i)] = {"split": split, "notes": notes, "num_samples": n}
    return make_musicnet(root, recordings=recordings)


class TreeRSS(threading.Thread):
    """Peak of the summed RSS of a process and its descendants, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.02):
        super().__init__(daemon=True)
        self.proc, self.interval, self.peak, self.done = psutil.Process(pid), interval, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                procs = [self.proc] + self.proc.children(recursive=True)
            except psutil.NoSuchProcess:
                break
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self.record(total)
            time.sleep(self.interval)

    def record(self, rss: int) -> None:
        """Called with every sample (subclasses keep them)."""


def run_sampled(cmd, sampler_class=TreeRSS):
    """Run ``cmd`` with its process tree's RSS sampled: ``(seconds, returncode, stdout, stderr, sampler)``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = sampler_class(proc.pid)
    sampler.start()
    out, err = proc.communicate()  # drains both pipes as it runs, so neither fills
    elapsed = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    return elapsed, proc.returncode, out, err, sampler


def run_prepare(data_dirs, output: Path, cache: Path, num_proc: int):
    code = ("import argparse, sys; "
            "from instrument_classifier.data.prepare_command import add_prepare_arguments, run_prepare; "
            "p = argparse.ArgumentParser(); add_prepare_arguments(p); sys.exit(run_prepare(p.parse_args()))")
    cmd = [sys.executable, "-c", code, "--data-dir", *map(str, data_dirs), "--output", str(output),
           "--cache-dir", str(cache), "--num-proc", str(num_proc)]
    elapsed, code, out, err, sampler = run_sampled(cmd)
    if code != 0:
        sys.stderr.write(out + err)
        raise SystemExit(f"prepare failed with exit code {code}")
    return elapsed, sampler.peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", nargs="+", default=None)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=10.0, help="size of the synthetic corpus (no --data-dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_prepare-") as tmp:
        tmp = Path(tmp)
        data_dirs = args.data_dir or [synthetic_corpus(tmp / "synthetic", args.minutes)]
        wavs = [w for d in data_dirs for w in find_musicnet_root(d).glob("*_data/*.wav")]
        audio_s = sum(sf.info(str(w)).duration for w in wavs)
        cold, peak = run_prepare(data_dirs, tmp / "out1", tmp / "cache", args.num_proc)
        warm, warm_peak = run_prepare(data_dirs, tmp / "out2", tmp / "cache", args.num_proc)
        info = json.loads((tmp / "out1" / "prepare_info.json").read_text())
    windows = "/".join(str(info["splits"][s]["windows"]) for s in ("train", "validation", "test"))
    print(
        f"bench_prepare: {audio_s / 60:.1f} min of audio in {len(wavs)} recordings -> {windows} train/val/test "
        "windows, "
        f"--num-proc {args.num_proc}: "
        f"cold {cold:.1f} s ({audio_s / cold:.0f} audio-s/s), peak RSS of process tree {peak / 2**30:.2f} GiB | "
        f"cached rerun {warm:.1f} s, peak {warm_peak / 2**30:.2f} GiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
