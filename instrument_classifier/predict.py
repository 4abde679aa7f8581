"""``instrument-classifier predict``: which instruments play, and when, in audio files.

For each file: the clip summary (a score per instrument: its highest window probability, the mean of the two
highest from three windows on, see ``inference.clip_scores``; detected where it reaches the threshold: the
per-class thresholds tuned at training time, or ``--threshold``) and the segments (``start_s, end_s, label,
score``) of the detected instruments, where their frame probability reaches the threshold. One decision rule
(``inference`` module docstring, step 7): a segment exists only for a detected instrument, and every detected
instrument has at least one. The table, ``--format json`` and ``--format csv`` carry the same decisions:
the JSON has ``clip``, ``detected``, ``thresholds`` and ``segments`` per file, the CSV a ``clip`` row per
instrument (clip score, threshold, detected 0/1, spanning the file) and a ``segment`` row per segment.
``--context`` blends each 3-s window with its neighbours in the recording, as the model's tuned recording
context says (:mod:`instrument_classifier.context`): more accurate on unfamiliar recordings, less precise
about when an instrument enters.

A file that cannot be read (missing, empty, not audio, truncated, NaN samples) is reported on stderr
with its name and skipped; the other files are still processed and the exit status is 1 at the end.
If every file fails, nothing is written (an existing ``--output`` file is left as it was).
``--output FILE`` is written atomically: a temporary file in the same folder, then ``os.replace``,
so an interrupted run never leaves a truncated file under the final name.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, TextIO

from .atomic_write import overwritten_input, write_text as write_atomic

__all__ = ["add_predict_arguments", "run_predict", "predict_files", "format_results", "write_atomic",
           "PROGRESS_MIN_SECONDS"]

FORMATS = ("table", "json", "csv")
#: files at least this long get a progress bar (shorter ones finish in about a second)
PROGRESS_MIN_SECONDS = 60.0
#: ``--format csv``: per file one ``clip`` row per instrument (the clip score over the whole file, its threshold and
#: the decision), then one ``segment`` row per segment (its mean frame probability; detected is always 1)
CSV_COLUMNS = ("file", "kind", "start_s", "end_s", "instrument", "score", "threshold", "detected")
#: The table lists the instruments whose clip score reaches this (JSON and CSV list them all).
MIN_SHOWN_SCORE = 0.01


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", nargs="+", metavar="AUDIO",
                        help="audio files (any format libsndfile reads: wav, flac, ogg, mp3, ...; any rate, "
                             "mono or stereo)")
    parser.add_argument("--model", default=None, metavar="PATH_OR_ID",
                        help="model folder (or ensemble folder) or Hub id (default: the bundled musicnn + YAMNet + "
                             "EfficientAT blend, instrument_classifier/pretrained/musicnn-yamnet-efficientat)")
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="table (readable), json (list of {file, duration_s, clip, detected, thresholds, "
                             "segments}), "
                             "or csv (per file a 'clip' row per instrument: score, threshold, detected; then a "
                             "'segment' row per segment)")
    parser.add_argument("--threshold", type=float, default=None, metavar="T",
                        help="one decision threshold in (0, 1) for every instrument (default: the per-instrument "
                             "thresholds stored in the model, tuned on labelled real clips for the bundled default "
                             "and its members, on validation windows for the MFCC models)")
    parser.add_argument("--output", "-o", type=Path, default=None, metavar="FILE",
                        help="write the results to FILE (atomically) instead of stdout")
    parser.add_argument("--context", action="store_true",
                        help="blend each window with its neighbours in the recording, as tuned on validation and "
                             "stored in the model (only models with a tuned context: the bundled MFCC models; the "
                             "default has none; smears entries in time)")
    parser.add_argument("--min-segment", type=float, default=None, metavar="SECONDS",
                        help="drop segments shorter than this (default 0.2 s)")
    parser.add_argument("--merge-gap", type=float, default=None, metavar="SECONDS",
                        help="bridge gaps up to this long between two segments of an instrument (default 0.3 s)")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per forward pass (default 32)")
    parser.add_argument("--device", default="auto", metavar="auto|cuda|mps|cpu",
                        help="where the model runs: auto (default: a CUDA GPU if there is one, else MPS, else the "
                             "CPU), cuda (or cuda:N), mps or cpu")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on long files")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="also show what the libraries report while loading (transformers' weight-loading bars)")


def run_predict(args: argparse.Namespace) -> int:
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        print(f"error: --threshold must be between 0 and 1 (exclusive), got {args.threshold}", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print(f"error: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    for flag, value in (("--min-segment", args.min_segment), ("--merge-gap", args.merge_gap)):
        if value is not None and not 0.0 <= value < float("inf"):
            print(f"error: {flag} must be a number of seconds >= 0, got {value}", file=sys.stderr)
            return 2
    if args.output is not None and args.output.is_dir():
        print(f"error: --output {args.output} is a folder; give a file name", file=sys.stderr)
        return 2
    clash = None if args.output is None else overwritten_input(args.output, args.audio)
    if clash is not None:  # the results would replace the recording
        print(f"error: --output {args.output} is the input file {clash}; refusing to replace it with the results. "
              "Give another file name", file=sys.stderr)
        return 2

    # imported once the arguments are checked: a wrong flag is reported before torch and transformers load
    from .inference import DeviceError, load_model, resolve_device

    try:  # before loading: "cuda" on a machine without it is a usage error, not a failed model
        device = resolve_device(args.device)
    except DeviceError as exc:
        print(f"error: --device: {exc}", file=sys.stderr)
        return 2
    try:
        model, feature_extractor = load_model(args.model, device=device, verbose=args.verbose)
    except Exception as exc:  # missing folder, unknown Hub id, no network, .bin weights, ...
        where = args.model or "the bundled default model"
        print(f"error: could not load {where}: {exc}", file=sys.stderr)
        return 2
    if args.context and not getattr(model.config, "context", None):
        print(f"error: --context: {args.model or 'the bundled default model'} has no recording context in its "
              "config; the bundled MFCC models have one (--model ensemble, cnn or transformer), and "
              "`instrument-classifier train` tunes one for the models it trains", file=sys.stderr)
        return 2

    results, failed = predict_files(model, feature_extractor, args.audio, threshold=args.threshold,
                                    batch_size=args.batch_size, progress=not args.no_progress, context=args.context,
                                    stream=None if args.output or args.format != "table" else sys.stdout,
                                    min_segment_s=args.min_segment, merge_gap_s=args.merge_gap)
    if not results:  # every file failed: write nothing, so a previous result file is not replaced by an empty one
        where = f"; {args.output} left unchanged" if args.output is not None else ""
        print(f"error: none of the {len(args.audio)} file(s) could be processed{where}", file=sys.stderr)
        return 1
    if args.output is not None or args.format != "table":
        text = format_results(results, args.format)
        if args.output is not None:
            try:
                write_atomic(args.output, text)
            except OSError as exc:
                print(f"error: could not write {args.output}: {exc}", file=sys.stderr)
                return 2
            print(f"wrote {len(results)} result(s) to {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
    if failed:
        print(f"{len(failed)} of {len(args.audio)} file(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def predict_files(model, feature_extractor, paths: Sequence[str], threshold: Optional[float] = None,
                  batch_size: int = 32, progress: bool = True,
                  stream: Optional[TextIO] = None, context: bool = False, min_segment_s: Optional[float] = None,
                  merge_gap_s: Optional[float] = None) -> tuple[List[Dict], List[str]]:
    """Run :func:`~instrument_classifier.inference.predict_timeline` on each file.

    Parameters
    ----------
    model, feature_extractor :
        As returned by :func:`~instrument_classifier.inference.load_model`.
    paths : sequence of str
        Audio files.
    threshold : float or None
        One threshold for every label; ``None`` keeps the model's per-label thresholds.
    batch_size : int
        Windows per forward pass.
    progress : bool
        Show a progress bar (stderr) for files of at least :data:`PROGRESS_MIN_SECONDS`.
    stream : text stream or None
        If given, each file's table is written there as soon as it is done.
    context : bool
        Apply the model's recording context (``config.context``) and its thresholds.
    min_segment_s, merge_gap_s : float or None
        Segments shorter than this are dropped; gaps up to this long are bridged (``None``: ``predict_timeline``'s
        defaults, 0.2 s and 0.3 s).

    Returns
    -------
    results : list of dict
        ``{"file", "clip", "detected", "thresholds", "segments", "duration_s"}`` per readable file, in input order.
    failed : list of str
        The files that could not be processed (each was reported on stderr).
    """
    # as in run_predict: `predict --help` imports this module; inference loads torch and transformers
    from .audio import AudioError, audio_info
    from .inference import predict_timeline

    num_labels = len(model.config.id2label)
    thresholds = None if threshold is None else [float(threshold)] * num_labels
    segments = {k: v for k, v in (("min_duration_s", min_segment_s), ("merge_gap_s", merge_gap_s)) if v is not None}
    results, failed = [], []
    for path in paths:
        try:
            info = audio_info(path)
            long_file = info.frames / info.samplerate >= PROGRESS_MIN_SECONDS
            timeline = predict_timeline(model, feature_extractor, path, batch_size=batch_size,
                                        thresholds=thresholds, progress=progress and long_file, context=context,
                                        **segments)
        except (AudioError, OSError) as exc:
            message = str(exc)
            if path not in message:  # AudioError names the file already; OSError may not
                message = f"{path}: {message}"
            print(f"error: {message}", file=sys.stderr)
            failed.append(path)
            continue
        record = {"file": path, **_jsonable(timeline.to_dict())}
        results.append(record)
        if stream is not None:
            stream.write(_table(record))
            stream.flush()
    return results, failed


def format_results(results: List[Dict], fmt: str) -> str:
    """Render results as ``table``, ``json`` or ``csv`` text."""
    if fmt == "json":
        out = [{"file": r["file"], "duration_s": r["duration_s"], "clip": r["clip"], "detected": r["detected"],
                "thresholds": r["thresholds"], "segments": r["segments"],
                **({"context": r["context"]} if r.get("context") else {})} for r in results]
        return json.dumps(out, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in results:
            detected = set(r["detected"])
            for label, score in r["clip"].items():
                writer.writerow([r["file"], "clip", "0.000", f"{r['duration_s']:.3f}", label, f"{score:.4f}",
                                 f"{r['thresholds'][label]:.4f}", int(label in detected)])
            for s in r["segments"]:
                writer.writerow([r["file"], "segment", f"{s['start_s']:.3f}", f"{s['end_s']:.3f}", s["label"],
                                 f"{s['score']:.4f}", f"{r['thresholds'][s['label']]:.4f}", 1])
        return buffer.getvalue()
    if fmt == "table":
        return "".join(_table(r) for r in results)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _table(record: Dict) -> str:
    lines = [f"{record['file']}  ({_clock(record['duration_s'])})"]
    detected = set(record.get("detected", []))
    ranked = sorted(record["clip"].items(), key=lambda kv: -kv[1])
    shown = [(label, score) for label, score in ranked if score >= MIN_SHOWN_SCORE]
    hidden = len(ranked) - len(shown)
    # each score beside its instrument's threshold: why a 0.66 is not detected where a 0.61 is
    lines.append("  clip score/threshold: " + ", ".join(
        f"{label}{'*' if label in detected else ''} {_score_and_threshold(score, record['thresholds'][label])}"
        for label, score in shown
    ) + ("  (* = detected" if detected else "  (nothing detected")
      + (f"; {hidden} more below {MIN_SHOWN_SCORE:g})" if hidden else ")"))
    if record.get("context"):
        lines.append(f"  recording context: {record['context']}")
    if record["segments"]:
        width = max([len("instrument")] + [len(s["label"]) for s in record["segments"]])
        lines.append(f"  {'start':>9}  {'end':>9}  {'instrument':<{width}}  score")
        for s in record["segments"]:
            lines.append(f"  {_clock(s['start_s']):>9}  {_clock(s['end_s']):>9}  {s['label']:<{width}}  "
                         f"{s['score']:5.2f}")
    else:
        lines.append("  no segments above threshold")
    return "\n".join(lines) + "\n\n"


def _score_and_threshold(score: float, threshold: float) -> str:
    """``"0.97/0.40"``: a score under its threshold rounded down, so that it never prints as reaching it
    (``0.79/0.80`` for 0.7953, not ``0.80/0.80`` beside an instrument that is not detected)."""
    shown = math.floor(score * 100) / 100 if score < threshold else score
    return f"{shown:.2f}/{threshold:.2f}"


def _clock(seconds: float) -> str:
    minutes, sec = divmod(float(seconds), 60.0)
    return f"{int(minutes)}:{sec:06.3f}" if minutes else f"{sec:.3f}s"


def _jsonable(value):
    """numpy scalars/arrays -> plain Python, so ``json.dumps`` works on ``Timeline.to_dict()``."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
