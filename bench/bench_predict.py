"""Speed of ``predict`` as users run it: a fresh process, load included, against AST on the same audio. One line.

    python bench/bench_predict.py                                   # bundled default, 10 min and 1 h, with AST
    python bench/bench_predict.py --model instrument_classifier/pretrained/cnn \\
        --model instrument_classifier/pretrained/ensemble           # the default and these two
    python bench/bench_predict.py --no-default --model instrument_classifier/pretrained/cnn --minutes 10
    python bench/bench_predict.py --quick --no-default --model instrument_classifier/pretrained/cnn --skip-ast
    python bench/bench_predict.py --device cuda                     # predict --device cuda; AST on the GPU too

What is timed
-------------
The command users run, ``instrument-classifier predict --format json --device DEVICE FILE`` (the venv's console
script next to ``sys.executable``, else ``python -m instrument_classifier.cli``; stdout to a file, the JSON checked
for the file's duration), in a fresh process per measurement: interpreter start, imports, model load, decoding,
features, model, output. Once without ``--model`` (the bundled default, wherever
``instrument_classifier.inference.DEFAULT_MODEL_DIR`` points; left out, and said so, when that folder has no model,
or with ``--no-default``) and once per ``--model``. The same files go through transformers'
``ASTForAudioClassification(ASTConfig())`` (default config, random init: speed does not depend on the weights; no
download) with its ``ASTFeatureExtractor``, in a fresh process too (``--ast-worker``, load included): the file
streamed in 30-s blocks, downmixed, resampled to 16 kHz (soxr, streamed), cut into consecutive 10.24-s chunks
(1024 frames, AST's input; the last one padded by the extractor), 4 chunks per forward pass, sigmoid scores.

Per model and AST, printed:

* the real-time factor on each length (audio seconds / wall seconds of the whole command, load included) and,
  for the models, its ratio to AST's on the same file;
* startup: wall clock of the command on a 1-s file (median of ``--startup-repeats``);
* peak RSS of the command's process, in MB, on the 1-s file (the highest of its runs) and on each length.

Audio: the shipped MusicNet label excerpts (``instrument_classifier/data/excerpts``, 40 s each) rendered with the
package's FluidR3 GM renderer (:mod:`instrument_classifier.data.render`, seed 0, dry, peak-normalised), as many
as the longest file needs (at most all 28, ~19 min), concatenated and looped to ``--minutes`` each, written block
by block as 44.1 kHz mono 16-bit FLAC to a temporary folder; the 1-s file is the first second of the first one.

Peak RSS and wall time come from a small wrapper process per measurement (this script with ``--measure``, which
imports only the standard library): it starts the command and reaps it with ``os.wait4``, whose ``ru_maxrss`` is
that one child's peak. (A child's ``ru_maxrss`` also counts the RSS of the process that spawned it, at the time
it did: the wrapper is small, this process, holding the rendered audio, is not.)

The lengths are measured in turn, models in the order given, then AST, so a load change on a shared machine
moves all of them; the line starts with the load average before and after.
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

REPO = Path(__file__).resolve().parents[1]
SR = 44100
AST_BATCH = 4  # 10.24-s chunks per AST forward pass


# -- the wrapper: one measured process ------------------------------------------------------------------

def measure(stdout_path: str, cmd: list) -> dict:
    """Run ``cmd`` (stdout to ``stdout_path``, stderr beside it), reaped by ``os.wait4``: wall seconds, exit code,
    the child's peak RSS in MB."""
    with open(stdout_path, "wb") as out, open(stdout_path + ".err", "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return {"wall_s": wall, "code": proc.returncode, "peak_mb": usage.ru_maxrss / 1024.0}  # ru_maxrss: kB


def run_measured(cmd: list, out: Path) -> dict:
    """``cmd`` in a fresh wrapper process; exits with the command's stderr if it failed."""
    wrapper = [sys.executable, str(Path(__file__).resolve()), "--measure", str(out), "--", *cmd]
    proc = subprocess.run(wrapper, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"bench_predict: the wrapper failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["code"] != 0:
        err = Path(str(out) + ".err").read_text(errors="replace")
        raise SystemExit(f"bench_predict: {' '.join(cmd)} failed (exit {result['code']}):\n{err[-3000:]}")
    return result


# -- AST, in its own process ----------------------------------------------------------------------------

def ast_worker(path: str, device: str) -> dict:
    """AST over the whole file in consecutive 10.24-s chunks, streamed (bounded memory whatever the length)."""
    # this script imports only the standard library at the top: the --measure wrapper it also runs stays small
    import numpy as np
    import soundfile as sf
    import soxr
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    torch.manual_seed(0)
    model = ASTForAudioClassification(ASTConfig()).to(device).eval()
    fe = ASTFeatureExtractor()
    chunk = int(fe.max_length * 0.01 * fe.sampling_rate)  # 1024 frames of 10 ms: 163 840 samples at 16 kHz
    rate = sf.info(path).samplerate
    stream = soxr.ResampleStream(rate, fe.sampling_rate, 1, dtype="float32")
    pending = np.zeros(0, np.float32)
    batch, chunks, samples = [], 0, 0

    def forward(clips):
        inputs = fe(clips, sampling_rate=fe.sampling_rate, return_tensors="pt")
        with torch.inference_mode():
            model(**{k: v.to(device) for k, v in inputs.items()}).logits.sigmoid().cpu()

    def cut(resampled, last=False):
        nonlocal pending, batch, chunks, samples
        pending = np.concatenate([pending, resampled])
        while len(pending) >= chunk or (last and len(pending)):
            batch.append(pending[:chunk])
            samples += len(batch[-1])
            pending = pending[chunk:]
            if len(batch) == AST_BATCH:
                forward(batch)
                chunks, batch = chunks + len(batch), []
        if last and batch:
            forward(batch)
            chunks, batch = chunks + len(batch), []

    for block in sf.blocks(path, blocksize=30 * rate, dtype="float32", always_2d=True):
        cut(stream.resample_chunk(block.mean(axis=1)))
    cut(stream.resample_chunk(np.zeros(0, np.float32), last=True), last=True)
    return {"audio_s": samples / fe.sampling_rate, "chunks": chunks}


# -- audio ----------------------------------------------------------------------------------------------

def render_pool(seconds: float):
    """The shipped excerpts rendered with FluidR3 GM, in id order (train, then test), until ``seconds`` of audio
    (or all of them): a list of float32 arrays at 44.1 kHz."""
    from instrument_classifier.data import render  # as in ast_worker: the top imports only the standard library

    root = render.default_labels_dir()
    files = sorted(root.glob("train_labels/*.csv")) + sorted(root.glob("test_labels/*.csv"))
    pool, total = [], 0
    with render.FluidSynthRenderer(render.DEFAULT_SOUNDFONT, SR) as renderer:
        for f in files:
            rows = render.read_label_rows(f)
            audio, _, _ = render.render_notes(rows, renderer, seed=0, recording_id=f.stem, source=str(f))
            pool.append(audio)
            total += len(audio)
            if total >= seconds * SR:
                break
    return pool


def write_looped(path: Path, pool, seconds: float) -> None:
    """``seconds`` of the pool, concatenated and looped, written piece by piece as 16-bit FLAC."""
    import soundfile as sf  # as in ast_worker

    remaining = int(round(seconds * SR))
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16", format="FLAC") as f:
        i = 0
        while remaining > 0:
            piece = pool[i % len(pool)][:remaining]
            f.write(piece)
            remaining -= len(piece)
            i += 1


# -- main -----------------------------------------------------------------------------------------------

def predict_command(model, device: str, audio: Path) -> list:
    script = Path(sys.executable).parent / "instrument-classifier"
    base = [str(script)] if script.is_file() else [sys.executable, "-m", "instrument_classifier.cli"]
    return [*base, "predict", "--format", "json", "--device", device,
            *([] if model is None else ["--model", str(model)]), str(audio)]


def check_json(out: Path, seconds: float) -> None:
    results = json.loads(out.read_text())
    duration = results[0]["duration_s"]
    if abs(duration - seconds) > 0.1:
        raise SystemExit(f"bench_predict: predict reported {duration} s for a file of {seconds} s")


def short_name(path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO / "instrument_classifier"))
    except ValueError:
        return str(path)


def lengths_label(minutes: float) -> str:
    return f"{minutes * 60:g} s" if minutes < 1 else f"{minutes:g} min"


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--measure":  # the wrapper: `--measure OUT -- CMD...`
        print(json.dumps(measure(sys.argv[2], sys.argv[4:])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=None,
                        help="lengths of the files, in minutes (default 10 60; --quick: 0.5 2)")
    parser.add_argument("--model", action="append", default=[], metavar="DIR_OR_ID",
                        help="also time predict --model DIR_OR_ID (repeatable)")
    parser.add_argument("--no-default", action="store_true", help="do not time the bundled default (no --model)")
    parser.add_argument("--device", default="cpu", help="predict's --device, and AST's (default cpu)")
    parser.add_argument("--skip-ast", action="store_true", help="no AST runs (no ratios)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 30 s and 2 min, one startup run")
    parser.add_argument("--startup-repeats", type=int, default=None,
                        help="runs on the 1-s file per model, median reported (default 3; --quick: 1)")
    parser.add_argument("--ast-worker", nargs=2, metavar=("FILE", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ast_worker:
        print(json.dumps(ast_worker(*args.ast_worker)))
        return 0
    minutes = args.minutes or ([0.5, 2.0] if args.quick else [10.0, 60.0])
    repeats = args.startup_repeats or (1 if args.quick else 3)

    models = []  # (label, --model value or None)
    default_note = ""
    if not args.no_default:
        # as in ast_worker: the top imports only the standard library
        from instrument_classifier.ensemble import is_ensemble_folder
        from instrument_classifier.inference import DEFAULT_MODEL_DIR

        if is_ensemble_folder(DEFAULT_MODEL_DIR) or (DEFAULT_MODEL_DIR / "config.json").is_file():
            models.append((f"default ({short_name(DEFAULT_MODEL_DIR)})", None))
        else:
            default_note = f"default ({short_name(DEFAULT_MODEL_DIR)}) absent, not timed; "
        given = [m for m in args.model if not (Path(m).is_dir() and Path(m).resolve() == DEFAULT_MODEL_DIR.resolve())]
    else:
        given = list(args.model)
    models += [(short_name(m) if Path(m).is_dir() else m, m) for m in given]
    if not models and args.skip_ast:
        raise SystemExit("bench_predict: nothing to time (no default model, no --model, --skip-ast)")

    load_before = os.getloadavg()[0]
    results = {label: {"startup": [], "rtf": {}, "peak": {}} for label, _ in models}
    ast = {"startup": [], "rtf": {}, "peak": {}}
    with tempfile.TemporaryDirectory(prefix="bench_predict-") as tmp:
        tmp = Path(tmp)
        pool = render_pool(max(minutes) * 60)
        files = {}
        write_looped(tmp / "startup.flac", pool, 1.0)
        for m in minutes:
            files[m] = tmp / f"audio-{m:g}min.flac"
            write_looped(files[m], pool, m * 60)
        del pool

        runs = [(label, model) for label, model in models] + ([] if args.skip_ast else [("AST", "AST")])

        def command(model, audio):
            if model == "AST":
                return [sys.executable, str(Path(__file__).resolve()), "--ast-worker", str(audio), args.device]
            return predict_command(model, args.device, audio)

        def record(model, audio: Path, seconds: float) -> dict:
            out = tmp / "out.json"
            result = run_measured(command(model, audio), out)
            if model == "AST":
                got = json.loads(out.read_text().strip().splitlines()[-1])["audio_s"]
                if abs(got - seconds) > 0.1:
                    raise SystemExit(f"bench_predict: AST saw {got} s of a {seconds}-s file")
            else:
                check_json(out, seconds)
            return result

        for label, model in runs:  # startup: a 1-s file
            target = ast if model == "AST" else results[label]
            for _ in range(repeats):
                r = record(model, tmp / "startup.flac", 1.0)
                target["startup"].append(r["wall_s"])
                target["peak"]["startup"] = max(target["peak"].get("startup", 0.0), r["peak_mb"])
        for m in minutes:
            for label, model in runs:
                target = ast if model == "AST" else results[label]
                r = record(model, files[m], m * 60)
                target["rtf"][m] = m * 60 / r["wall_s"]
                target["peak"][m] = r["peak_mb"]

    def peaks(entry) -> str:
        return "/".join(f"{entry['peak'][key]:.0f}" for key in ["startup", *minutes]) + " MB"

    parts = []
    for label, _ in models:
        entry = results[label]
        speeds = ", ".join(
            f"{lengths_label(m)} {entry['rtf'][m]:.1f}x"
            + ("" if args.skip_ast else f" ({entry['rtf'][m] / ast['rtf'][m]:.1f}x AST)") for m in minutes)
        parts.append(f"{label}: {speeds}, startup {statistics.median(entry['startup']):.2f} s, "
                     f"peak RSS {peaks(entry)}")
    if args.skip_ast:
        parts.append("AST skipped")
    else:
        speeds = ", ".join(f"{lengths_label(m)} {ast['rtf'][m]:.2f}x" for m in minutes)
        parts.append(f"AST (default config, random init, 10.24-s chunks): {speeds}, "
                     f"startup {statistics.median(ast['startup']):.2f} s, peak RSS {peaks(ast)}")
    print(
        f"bench_predict: predict --format json, fresh process, load included, real time x on "
        f"{' / '.join(lengths_label(m) for m in minutes)} of rendered excerpts (FLAC), device {args.device}, "
        f"{os.cpu_count()} CPUs, load {load_before:.1f} -> {os.getloadavg()[0]:.1f}, startup = 1-s file "
        f"(median of {repeats}), peak RSS on 1 s/{'/'.join(lengths_label(m) for m in minutes)}: {default_note}"
        + " | ".join(parts)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
