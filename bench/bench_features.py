"""Feature-extraction throughput: InstrumentFeatureExtractor.extract vs librosa.feature.mfcc on 10 minutes of audio.

Prints one line: audio seconds processed per wall-clock second (median of ``--repeats`` runs) for both, their
ratio, and the largest difference between the two relative to the MFCC value range.

    python bench/bench_features.py [--minutes 10] [--repeats 3] [--audio FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import librosa
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import synth_notes  # noqa: E402

from instrument_classifier.audio import load_audio  # noqa: E402
from instrument_classifier.modeling.feature_extraction_instrument import InstrumentFeatureExtractor  # noqa: E402

SR = 44100


def synthetic_audio(minutes: float, seed: int = 0) -> np.ndarray:
    """Two voices of harmonic tones from the test fixtures' instrument timbres, changing every 0.5-1.5 s."""
    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * SR)
    programs = [1, 7, 41, 42, 43, 44, 61, 69, 71, 72, 74]
    notes = []
    for voice in range(2):
        t = int(rng.integers(0, SR // 2))
        while t < total:
            length = int(rng.uniform(0.5, 1.5) * SR)
            pitch = int(rng.integers(36 + 12 * voice, 72 + 12 * voice))
            notes.append((t, min(total, t + length), int(rng.choice(programs)), pitch))
            t += length
    return synth_notes(notes, total, seed=seed)


def timed_alternately(fns, repeats: int):
    """Median wall time of each function; runs alternate so machine load hits all of them alike."""
    times, outs = [[] for _ in fns], [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            outs[i] = fn()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times], outs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--audio", default=None, help="use this file (first --minutes) instead of synthetic tones")
    args = parser.parse_args()

    if args.audio:
        audio = load_audio(args.audio)[0][: int(args.minutes * 60 * SR)]
        source = Path(args.audio).name
    else:
        audio = synthetic_audio(args.minutes)
        source = "synthetic tones"
    seconds = len(audio) / SR
    fe = InstrumentFeatureExtractor()
    fe.extract(audio[:SR])  # warm-up: filterbank, torch kernels
    (ours_t, ref_t), (ours, ref) = timed_alternately(
        [lambda: fe.extract(audio, normalize=False),
         lambda: librosa.feature.mfcc(y=audio, sr=SR, n_mfcc=13, n_fft=2048, hop_length=512)],
        args.repeats,
    )
    diff = float(np.abs(ours - ref.T).max() / (ref.max() - ref.min()))
    print(
        f"bench_features: {seconds / 60:.1f} min of {source} at 44.1 kHz, MFCC-13, median of {args.repeats}: "
        f"InstrumentFeatureExtractor.extract {seconds / ours_t:.0f} audio-s/s ({ours_t:.2f} s, "
        f"torch {torch.get_num_threads()} threads) | "
        f"librosa.feature.mfcc {seconds / ref_t:.0f} audio-s/s ({ref_t:.2f} s) | "
        f"speed-up over librosa {ref_t / ours_t:.1f}x | max diff {diff:.1e} of range"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
