"""``instrument-classifier prepare``: its arguments and what it runs.

The work is :func:`instrument_classifier.data.prepare.build_dataset`. It is imported only once the command runs, so
``prepare --help`` and a usage error answer before torch, transformers and datasets load.
"""

from __future__ import annotations

import argparse
import sys
import time

from .taxonomy import DEFAULT_TAXONOMY, TAXONOMIES, UnknownInstrumentError

__all__ = ["add_prepare_arguments", "run_prepare"]


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", nargs="+", required=True, metavar="DIR",
                        help="MusicNet-layout folder(s) (original or Kaggle musicnet/musicnet/ nesting)")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="where to write the dataset (replaced atomically)")
    parser.add_argument("--taxonomy", choices=sorted(TAXONOMIES), default=DEFAULT_TAXONOMY,
                        help="the labels: musicnet11, the 11 instruments that occur in MusicNet, one class each "
                             "(the bundled models'); seed12, the 12 instrument families of the original study, by "
                             f"General MIDI program range (default {DEFAULT_TAXONOMY})")
    parser.add_argument("--window-frames", type=int, default=256, metavar="N",
                        help="frames per window (default 256 = 2.97 s)")
    parser.add_argument("--hop-frames", type=int, default=None, metavar="N",
                        help="hop between train windows (default: half a window); validation/test never overlap")
    parser.add_argument("--validation-fraction", type=float, default=0.1, metavar="F",
                        help="share of train pieces held out for validation, by piece (default 0.1)")
    parser.add_argument("--num-proc", type=int, default=1, metavar="N", help="feature extraction processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation split")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unusable recordings with a warning instead of failing")
    parser.add_argument("--eval-data-dir", nargs="+", default=None, metavar="DIR",
                        help="held-out corpora for validation and test windows (e.g. another sample library)")
    parser.add_argument("--validation-data-dir", nargs="+", default=None, metavar="DIR",
                        help="corpora of the validation pieces alone, for the validation windows instead")
    parser.add_argument("--feature-type", choices=["mfcc", "logmel", "cqt", "musicnn", "yamnet", "efficientat"],
                        default="mfcc",
                        help="MFCCs (the study's), log-mel bands, constant-Q bands (semitones, n_fft 8192), the "
                             "musicnn front end's input (96 mel bands at 16 kHz; use --window-frames 187), the "
                             "YAMNet front end's (64 mel bands at 16 kHz, 8-ms frames; use --window-frames 374), or "
                             "EfficientAT's (128 mel bands at 32 kHz, 2-ms frames; use --window-frames 1496)")
    parser.add_argument("--n-coefficients", type=int, default=None, metavar="N",
                        help="MFCCs (default 13), mel bands for logmel (default 64) or constant-Q bands (default 84)")
    parser.add_argument("--include-deltas", action="store_true", help="append first-order deltas")
    parser.add_argument("--delta-order", type=int, choices=[1, 2], default=1,
                        help="with --include-deltas: 2 also appends delta-deltas (default 1)")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="datasets cache (default: the datasets cache)")
    parser.add_argument("--push-to-hub", default=None, metavar="REPO_ID",
                        help="also upload the dataset to this Hub dataset repo, in one commit: parquet shards, a "
                             "dataset card (CC BY 4.0, label names, audio source, MusicNet citation), "
                             "prepare_info.json without local paths, the feature extractor")


def run_prepare(args: argparse.Namespace) -> int:
    started = time.perf_counter()  # the time printed is the command's, loading torch and datasets included
    from ..audio import AudioError
    from ..modeling.feature_extraction_instrument import InstrumentFeatureExtractor, default_feature_settings
    from .musicnet import MusicNetError
    from .prepare import build_dataset, format_summary, push_prepared, read_info

    extractor = InstrumentFeatureExtractor(**default_feature_settings(args.feature_type, args.n_coefficients),
                                           include_deltas=args.include_deltas, delta_order=args.delta_order)
    try:
        build_dataset(
            args.data_dir, args.output, taxonomy=args.taxonomy, window_frames=args.window_frames,
            hop_frames=args.hop_frames or max(1, args.window_frames // 2),
            validation_fraction=args.validation_fraction, num_proc=args.num_proc, seed=args.seed,
            skip_bad=args.skip_bad, eval_data_dirs=args.eval_data_dir,
            validation_data_dirs=args.validation_data_dir, feature_extractor=extractor, cache_dir=args.cache_dir,
        )
    except (MusicNetError, AudioError, UnknownInstrumentError, FileExistsError, ValueError) as exc:
        print(f"prepare: error: {exc}", file=sys.stderr)
        return 2
    info = read_info(args.output)
    print(f"prepared {args.output} in {time.perf_counter() - started:.1f} s")
    print(format_summary(info))
    if args.push_to_hub:
        print(f"pushed to {push_prepared(args.output, args.push_to_hub)}")
    return 0
