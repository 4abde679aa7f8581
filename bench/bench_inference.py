"""End-to-end timeline inference speed and memory: our CNN and Transformer vs AST, on the same audio.

Writes ``--minutes`` of synthetic multi-instrument audio (harmonic tones, 44.1 kHz, 16-bit WAV) to a
temporary folder, then, each in its own process (clean peak-RSS figures):

* ``predict_timeline`` of the CNN and of the Transformer (default configs, random weights: speed does
  not depend on the values): decode (streamed) + MFCC (two streaming passes, see inference.py) +
  model, median wall time of ``--repeats`` runs, realtime factor and peak RSS (``VmHWM``);
* transformers' ``ASTForAudioClassification`` (default ``ASTConfig``, random init, no download) through
  its own ``ASTFeatureExtractor``: decode + resample to 16 kHz + fbank + model on consecutive 10.24 s
  windows. AST is slow, so it is timed on the first ``--ast-minutes`` only and its realtime factor
  extrapolated (the output says so).

Prints one line with realtime factors, peak RSS and the speed ratios (ours / AST).

    python bench/bench_inference.py [--minutes 30] [--repeats 3] [--ast-minutes 1] [--threads N] [--audio FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SR = 44100
REPO = Path(__file__).resolve().parents[1]


def write_audio(path: Path, minutes: float, seed: int = 0) -> None:
    """Two voices of harmonic tones with the test fixtures' instrument timbres, written block by block."""
    sys.path.insert(0, str(REPO / "tests"))
    # here, not at the top: the workers (this script again) report their peak RSS, and only this process writes
    from conftest import synth_notes

    rng = np.random.default_rng(seed)
    programs = [1, 7, 41, 42, 43, 44, 61, 69, 71, 72, 74]
    block = 60 * SR
    total = int(minutes * 60 * SR)
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
        for offset in range(0, total, block):
            n = min(block, total - offset)
            notes = []
            for voice in range(2):
                t = int(rng.integers(0, SR // 2))
                while t < n:
                    length = int(rng.uniform(0.5, 1.5) * SR)
                    pitch = int(rng.integers(36 + 12 * voice, 72 + 12 * voice))
                    notes.append((t, min(n, t + length), int(rng.choice(programs)), pitch))
                    t += length
            f.write(np.clip(synth_notes(notes, n, seed=seed + offset), -1, 1))


def peak_rss_mb() -> float:
    # VmHWM: this process's own high-water mark (ru_maxrss would include the parent's RSS at fork time)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024.0  # kB


def worker_ours(model_type: str, path: str, repeats: int) -> dict:
    # each worker imports only what it runs: its peak RSS is reported
    from instrument_classifier.inference import predict_timeline
    from instrument_classifier.modeling import MODEL_CLASSES, InstrumentFeatureExtractor

    config_class, model_class = MODEL_CLASSES[model_type]
    torch.manual_seed(0)
    model = model_class(config_class()).eval()
    fe = InstrumentFeatureExtractor()
    head, _ = sf.read(path, frames=60 * SR, dtype="float32")
    fe.fit_normalization([fe.extract(head)])
    predict_timeline(model, fe, head[: 10 * SR])  # warm-up (allocator, thread pool)
    rss_before = peak_rss_mb()
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        timeline = predict_timeline(model, fe, path)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {
        "seconds": statistics.median(times),
        "cpu_seconds": statistics.median(cpu),
        "audio_s": timeline.duration_s,
        "rss_mb": peak_rss_mb(),
        "rss_before_mb": rss_before,
        "frames": int(timeline.frame_probs.shape[0]),
    }


def worker_ast(path: str, minutes: float, batch: int = 4) -> dict:
    # each worker imports only what it runs: its peak RSS is reported
    import soxr
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    torch.manual_seed(0)
    model = ASTForAudioClassification(ASTConfig()).eval()
    fe = ASTFeatureExtractor()
    chunk = int(fe.max_length * 0.01 * fe.sampling_rate)  # 1024 frames of 10 ms = 10.24 s
    with torch.inference_mode():  # warm-up
        model(**fe([np.zeros(chunk, np.float32)], sampling_rate=fe.sampling_rate, return_tensors="pt"))
    start = time.perf_counter()
    audio, rate = sf.read(path, frames=int(minutes * 60 * SR), dtype="float32")
    audio = soxr.resample(audio, rate, fe.sampling_rate)
    clips = [audio[i : i + chunk] for i in range(0, len(audio), chunk)]
    with torch.inference_mode():
        for i in range(0, len(clips), batch):
            inputs = fe(clips[i : i + batch], sampling_rate=fe.sampling_rate, return_tensors="pt")
            model(**inputs).logits.sigmoid()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "audio_s": len(audio) / fe.sampling_rate, "rss_mb": peak_rss_mb()}


def run_worker(args: list) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", *args], capture_output=True, text=True, cwd=REPO
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ast-minutes", type=float, default=1.0, help="AST is timed on this many minutes")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch intra-op threads for every model, ours and AST (default: torch's choice). On a machine "
        "shared with other jobs use 1: two threads then wait for each other at every op and run slower",
    )
    parser.add_argument("--audio", type=Path, default=None, help="use this 44.1 kHz file instead of synthetic audio")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        kind, *rest = args.worker
        result = worker_ast(rest[0], float(rest[1])) if kind == "ast" else worker_ours(kind, rest[0], int(rest[1]))
        print(json.dumps(result))
        return

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        path = args.audio or Path(tmp) / "audio.wav"
        if args.audio is None:
            write_audio(path, args.minutes)
        threads = ["--threads", str(args.threads)] if args.threads else []
        ours = {m: run_worker([m, str(path), str(args.repeats), *threads]) for m in ("cnn", "transformer")}
        ast = run_worker(["ast", str(path), str(args.ast_minutes), *threads])

    rtf = {m: r["audio_s"] / r["seconds"] for m, r in ours.items()}
    per_cpu = {m: r["audio_s"] / r["cpu_seconds"] for m, r in ours.items()}
    ast_rtf = ast["audio_s"] / ast["seconds"]
    minutes = ours["cnn"]["audio_s"] / 60
    print(
        f"timeline inference on {minutes:.1f} min (decode+MFCC+model, median of {args.repeats}, "
        f"{os.cpu_count()} CPUs, torch threads {args.threads or 'default'}, "
        f"load avg {load_before:.1f} -> {os.getloadavg()[0]:.1f}): "
        f"cnn {rtf['cnn']:.0f}x realtime ({ours['cnn']['seconds']:.2f} s, {per_cpu['cnn']:.0f}x per CPU-second, "
        f"peak RSS {ours['cnn']['rss_mb']:.0f} MB), "
        f"transformer {rtf['transformer']:.0f}x realtime ({ours['transformer']['seconds']:.2f} s, "
        f"{per_cpu['transformer']:.0f}x per CPU-second, peak RSS {ours['transformer']['rss_mb']:.0f} MB); "
        f"AST (random init, timed on the first {ast['audio_s'] / 60:.1f} min) {ast_rtf:.2f}x realtime, "
        f"peak RSS {ast['rss_mb']:.0f} MB; speed ratio vs AST: cnn {rtf['cnn'] / ast_rtf:.0f}x, "
        f"transformer {rtf['transformer'] / ast_rtf:.0f}x"
    )


if __name__ == "__main__":
    main()
