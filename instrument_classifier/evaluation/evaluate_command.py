"""``instrument-classifier evaluate``: its arguments and what it runs.

The work is :func:`instrument_classifier.evaluation.evaluate_models.evaluate_models` (a prepared split) and
:func:`instrument_classifier.evaluation.clips.evaluate_clips` (labelled recordings). They are imported only once the
command runs, so ``evaluate --help`` and a usage error answer before torch and transformers load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_evaluate_arguments", "run_evaluate"]


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", default=None, metavar="PATH_OR_ID",
                        help="model folder or Hub id (repeat to compare models; default: the bundled musicnn + "
                             "YAMNet + EfficientAT blend, as predict)")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--dataset", nargs="+", metavar="PATH",
                      help="prepared dataset (`instrument-classifier prepare` output); several, prepared from the "
                           "same recordings with different features: each model is scored on the one matching it")
    data.add_argument("--data-dir", metavar="DIR", help="MusicNet-layout folder, prepared with the models' settings")
    data.add_argument("--clips", metavar="MANIFEST.csv",
                      help="labelled recordings (columns file, instruments, optional other_sounds): clip-level "
                           "metrics of what `predict` reports on each")
    parser.add_argument("--split", default=None, help="with --dataset or --data-dir: the split to evaluate (default "
                                                        "test)")
    parser.add_argument("--output", required=True, metavar="DIR", help="report folder (replaced atomically)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N",
                        help="windows per forward pass (default 32)")
    parser.add_argument("--thresholds", default="config", metavar="config|T",
                        help="'config': the models' tuned thresholds (default); or one threshold for every class")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="with --data-dir: keep the prepared dataset here and reuse it next time")
    parser.add_argument("--device", default="auto", metavar="auto|cuda|mps|cpu",
                        help="where the models run: auto (default: a CUDA GPU if there is one, else MPS, else the "
                             "CPU), cuda (or cuda:N), mps or cpu")
    parser.add_argument("--context", action="store_true",
                        help="with --clips: apply each model's recording context, as `predict --context` does")
    parser.add_argument("--skip-bad", action="store_true",
                        help="with --clips: skip bad manifest rows and unreadable audio (counted and listed)")
    parser.add_argument("--tune-thresholds", action="store_true",
                        help="with --clips: also tune clip thresholds on these clips, for the instruments with at "
                             "least 5 clips (the others keep the model's thresholds; metrics.json: tuned_thresholds, "
                             "and what they reach on unseen clips by 2-fold cross-validation)")


def run_evaluate(args: argparse.Namespace) -> int:
    # usage errors first: they need nothing loaded
    if args.clips is not None and (args.split is not None or args.cache_dir is not None):
        print("evaluate: error: --split and --cache-dir go with --dataset or --data-dir (--clips evaluates every clip "
              "of the manifest)", file=sys.stderr)
        return 2
    if args.clips is None and (args.context or args.skip_bad or args.tune_thresholds):
        print("evaluate: error: --context, --skip-bad and --tune-thresholds go with --clips (a prepared split is "
              "scored with and without the recording context already)", file=sys.stderr)
        return 2
    from ..inference import DEFAULT_MODEL_DIR, DeviceError, resolve_device

    if not args.model:
        args.model = [str(DEFAULT_MODEL_DIR)]
    try:  # before anything is loaded: "cuda" on a machine without it is a usage error, not a traceback
        args.device = str(resolve_device(args.device))
    except DeviceError as exc:
        print(f"evaluate: error: --device: {exc}", file=sys.stderr)
        return 2
    if args.clips is not None:
        return _run_clip_evaluation(args)
    from ..audio import AudioError
    from ..data.musicnet import MusicNetError
    from ..data.taxonomy import UnknownInstrumentError
    from .errors import EvaluationError
    from .evaluate_models import evaluate_models
    from .report import format_summary, model_names

    try:
        results = evaluate_models(
            args.model, dataset=args.dataset, data_dir=args.data_dir, split=args.split or "test",
            output_dir=args.output, batch_size=args.batch_size, thresholds=args.thresholds, device=args.device,
            cache_dir=args.cache_dir,
        )
    except (EvaluationError, MusicNetError, AudioError, UnknownInstrumentError, FileExistsError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(results))
    print(f"wrote {Path(args.output).expanduser().resolve()}: metrics.json, metrics.md, heatmap.png, "
          f"{len(model_names(results))} ROC figure(s)")
    return 0


def _run_clip_evaluation(args: argparse.Namespace) -> int:
    from .clips import ManifestError, evaluate_clips, format_clip_summary
    from .errors import EvaluationError

    try:
        results = evaluate_clips(args.model, args.clips, output_dir=args.output, thresholds=args.thresholds,
                                 context=args.context, skip_bad=args.skip_bad, batch_size=args.batch_size,
                                 device=args.device, tune=args.tune_thresholds)
    except (EvaluationError, ManifestError, FileExistsError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(format_clip_summary(results))
    for skipped in results["skipped_rows"]:
        print(f"skipped row {skipped['row']} ({skipped['file']}): {skipped['reason']}", file=sys.stderr)
    print(f"wrote {Path(args.output).expanduser().resolve()}: metrics.json, metrics.md, clips.csv")
    return 0
