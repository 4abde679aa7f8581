"""`prepare` on the full MusicNet-synth corpus: wall time, peak memory over the run, Arrow size. Prints one line.

    python bench/bench_prepare_full.py --labels ../shared/musicnet --corpus corpora/musicnet_fluidr3 \
        --num-proc 2 [--render-proc 1] [--work DIR] [--keep] [--no-rerun]

1. Renders every MusicNet label CSV under ``--labels`` (330 recordings, about 34 h) with FluidR3 GM into
   ``--corpus``, skipping recordings already rendered there (a killed render resumes; ~25 min on one core).
2. Runs ``prepare --num-proc N`` in a subprocess into a fresh output and a fresh ``datasets`` cache under
   ``--work``, sampling the RSS of the whole process tree every 20 ms (``bench_prepare.TreeRSS``).
3. Reruns it on the same cache into a second output (the cached path), unless ``--no-rerun``.

Memory is reported as the peak of each quarter of the cold run's wall time: the generation quarters show
whether memory grows with the number of recordings processed (it should not: one recording's audio and
features per worker); the last quarter includes the memory-mapped Arrow pages read back for the train
statistics, label counts and the final save, which the kernel may count in RSS.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prepare import TreeRSS, run_sampled  # noqa: E402

from instrument_classifier.data.render import render_corpus  # noqa: E402

SPLITS = ("train", "test")


class TreeRSSSeries(TreeRSS):
    """``TreeRSS`` that also keeps ``(time, rss)`` samples."""

    def __init__(self, pid: int, interval: float = 0.02):
        super().__init__(pid, interval)
        self.samples = []
        self._start = time.perf_counter()

    def record(self, rss: int) -> None:
        self.samples.append((time.perf_counter() - self._start, rss))

    def quarter_peaks(self, duration: float):
        peaks = [0, 0, 0, 0]
        for t, rss in self.samples:
            q = min(3, int(4 * t / max(duration, 1e-9)))
            peaks[q] = max(peaks[q], rss)
        return peaks


def render_missing(labels: Path, corpus: Path, render_proc: int) -> tuple:
    """Render the recordings of ``labels`` not yet in ``corpus``; ``(count rendered, seconds taken)``."""
    started, count = time.perf_counter(), 0
    for split in SPLITS:
        wanted = sorted(p.stem for p in (labels / f"{split}_labels").glob("*.csv"))
        have = {p.stem for p in (corpus / f"{split}_data").glob("*.wav")}
        missing = [rid for rid in wanted if rid not in have]
        if missing:
            render_corpus(labels, None, corpus, split=split, ids=missing, seed=0, num_proc=render_proc, progress=True)
            count += len(missing)
    return count, time.perf_counter() - started


def run_prepare(corpus: Path, output: Path, cache: Path, num_proc: int):
    cmd = [sys.executable, "-m", "instrument_classifier.cli", "prepare", "--data-dir", str(corpus),
           "--output", str(output), "--cache-dir", str(cache), "--num-proc", str(num_proc)]
    elapsed, code, out, err, sampler = run_sampled(cmd, TreeRSSSeries)
    if code != 0:
        sys.stderr.write(out + "".join(err.splitlines(keepends=True)[-50:]))
        raise SystemExit(f"prepare failed with exit code {code}")
    return elapsed, sampler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=REPO_ROOT.parent / "shared" / "musicnet",
                        help="MusicNet label folder (train_labels/, test_labels/, musicnet_metadata.csv)")
    parser.add_argument("--corpus", type=Path, default=REPO_ROOT / "corpora" / "musicnet_fluidr3",
                        help="where the rendered corpus is (or is rendered to)")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "bench" / "out" / "prepare_full",
                        help="outputs and datasets cache (emptied first)")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--render-proc", type=int, default=1)
    parser.add_argument("--no-rerun", action="store_true", help="skip the cached rerun")
    parser.add_argument("--keep", action="store_true", help="keep --work afterwards")
    args = parser.parse_args()

    rendered, render_s = render_missing(args.labels, args.corpus, args.render_proc)
    wavs = sorted(args.corpus.glob("*_data/*.wav"))
    durations = [sf.info(str(w)).duration for w in wavs]
    hours, longest = sum(durations) / 3600, max(durations) / 60

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    try:
        cold, sampler = run_prepare(args.corpus, args.work / "out1", args.work / "cache", args.num_proc)
        quarters = sampler.quarter_peaks(cold)
        arrow = sum(p.stat().st_size for p in (args.work / "out1").rglob("*.arrow"))
        info = json.loads((args.work / "out1" / "prepare_info.json").read_text())
        rerun = ""
        if not args.no_rerun:
            warm, warm_sampler = run_prepare(args.corpus, args.work / "out2", args.work / "cache", args.num_proc)
            rerun = f" | cached rerun {warm:.0f} s, peak {warm_sampler.peak / 2**30:.2f} GiB"
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    windows = "/".join(str(info["splits"][s]["windows"]) for s in ("train", "validation", "test"))
    render = f"rendered {rendered} recordings in {render_s / 60:.1f} min; " if rendered else ""
    print(
        f"bench_prepare_full: {render}{hours:.1f} h in {len(wavs)} recordings (longest {longest:.1f} min) -> "
        f"{windows} train/val/test windows, {arrow / 2**30:.2f} GiB Arrow, --num-proc {args.num_proc}: "
        f"cold {cold / 60:.1f} min ({hours * 3600 / cold:.0f} audio-s/s), peak RSS of process tree "
        f"{sampler.peak / 2**30:.2f} GiB (by quarter of the run: "
        f"{'/'.join(f'{q / 2**30:.2f}' for q in quarters)} GiB){rerun}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
