"""`predict` on a 3-hour recording: wall time and peak memory against a 10-minute one. Prints one line.

    python bench/bench_long_audio.py [--hours 3] [--short-minutes 10] [--rate 8000] [--model DIR]

Writes a real ``--hours`` PCM16 wav at ``--rate`` (tones and silence, block by block: ``tests/badfiles.py``)
and a ``--short-minutes`` one, runs ``instrument-classifier predict --format csv --output F`` on each in a
subprocess and samples the RSS of its process tree every 20 ms. If inference is streamed, the long file's
peak is about the short file's (the only thing growing with duration is the timeline itself, 12 labels x
4 bytes x 86 frames/s ≈ 15 MB per hour); decoding it whole would need 1.9 GB per hour at 44.1 kHz.
Without ``--model``: the bundled Transformer if present (constant-Q bands), else a randomly initialised CNN.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import badfiles  # noqa: E402
import torch  # noqa: E402
from bench_prepare import run_sampled  # noqa: E402

from instrument_classifier.modeling import MODEL_CLASSES  # noqa: E402
from instrument_classifier.modeling.feature_extraction_instrument import InstrumentFeatureExtractor  # noqa: E402


def model_folder(tmp: Path, given: str | None) -> str:
    if given:
        return given
    bundled = REPO / "instrument_classifier" / "pretrained" / "transformer"
    if (bundled / "config.json").is_file():
        return str(bundled)
    torch.manual_seed(0)
    config_class, model_class = MODEL_CLASSES["cnn"]
    model_class(config_class(taxonomy="seed12")).save_pretrained(tmp / "model")
    extractor = InstrumentFeatureExtractor(mean=[0.0] * 13, std=[50.0] * 13)
    extractor.save_pretrained(tmp / "model")
    return str(tmp / "model")


def run_predict(wav: Path, model: str, out: Path):
    cmd = [sys.executable, "-m", "instrument_classifier.cli", "predict", str(wav), "--model", model,
           "--format", "csv", "--output", str(out), "--no-progress"]
    elapsed, code, _, err, sampler = run_sampled(cmd)
    if code != 0:
        raise SystemExit(f"predict failed ({code}):\n{err[-3000:]}")
    return elapsed, sampler.peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--short-minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=8000, help="sampling rate of the files (resampled to 44.1 kHz)")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_long_audio-") as tmp:
        tmp = Path(tmp)
        model = model_folder(tmp, args.model)
        short = badfiles.long_pcm16(tmp / "short.wav", args.short_minutes / 60, sr=args.rate)
        long = badfiles.long_pcm16(tmp / "long.wav", args.hours, sr=args.rate)
        short_s, short_peak = run_predict(short, model, tmp / "short.csv")
        long_s, long_peak = run_predict(long, model, tmp / "long.csv")
        rows = sum(1 for _ in open(tmp / "long.csv")) - 1
    audio_s = args.hours * 3600
    print(
        f"bench_long_audio: predict on {args.hours:g} h at {args.rate} Hz: {long_s / 60:.1f} min "
        f"({audio_s / long_s:.0f}x real time, {rows} segments), peak RSS {long_peak / 2**30:.2f} GiB | "
        f"{args.short_minutes:g} min: {short_s:.0f} s, peak {short_peak / 2**30:.2f} GiB | "
        f"peak ratio long/short {long_peak / short_peak:.2f} for {audio_s / (args.short_minutes * 60):.0f}x the audio"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
