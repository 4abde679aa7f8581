"""The recipe of the musicnn classifier, the default model-to-be: ``make models`` runs it after the MFCC recipe.

    python -m instrument_classifier.recipe_musicnn --workdir corpora/recipe \\
        --output instrument_classifier/pretrained \\
        [--sampler-library DIR] [--musicnn-weights FILE] [--yamnet-weights FILE] [--real-dev MANIFEST] \\
        [--stop-after STEP]

:class:`~instrument_classifier.modeling.InstrumentMusicnnForAudioClassification` keeps musicnn (``MTT_musicnn``, a
tagger trained on real recordings) frozen and learns one linear head on its representation of 3-s windows
(:mod:`instrument_classifier.training.linear_probe`). On the real development clips that front end carries over
where MFCC models do not (docs/experiments.md, "A front end learned from real music: musicnn"), and training
audio closer to real playing (recorded samples) and tracks of other instruments (distractors) moved it further
("Training audio from recorded samples, and distractors"). This module builds exactly that model; the MFCC recipe
(:mod:`~instrument_classifier.recipes.mfcc`) keeps building the CNN and the Transformer, and this stage reuses its
renders. After the musicnn model it builds the same probe on Google's YAMNet (Apache-2.0, trained on AudioSet;
:class:`~instrument_classifier.modeling.InstrumentYamnetForAudioClassification`) from the same windows, and a blend
of the two (an :mod:`~instrument_classifier.ensemble` folder): on the real development clips both beat the
musicnn head alone (docs/experiments.md).

Steps (each skipped when its output is complete, so an interrupted run resumes where it stopped)::

    sources   the musicnn weights (``scripts/convert_musicnn.py``'s safetensors) and a Virtual Playing Orchestra
              checkout: checked, their sha256 and git commit recorded in musicnn/sources.json. Nothing of either
              is shipped but the converted weights inside the model (ISC licence, kept with them). The YAMNet
              weights (``scripts/convert_yamnet.py``'s): loaded, their sha256 recorded in yamnet/sources.json
    render    the MFCC recipe's renders up to perturb (FluidR3 and MuseScore training excerpts, the held-out Merlin
              validation and test pieces; run here if missing), plus two training corpora of the train pieces:
              VPO's recorded samples ([60, 105) s, seed 3) and FluidR3 with distractors (each track played by
              another instrument with probability 0.5, its notes left out of the labels; [20, 65) s), each
              perturbed with the recipe's "train" conditions (seeds 102 and 103)
    prepare   datasets/musicnn: musicnn windows (187 frames = 3 s at 16 kHz, hop 187) of the four training
              corpora; validation windows from the held-out library's validation renders, test windows from its
              test renders (as the MFCC recipe's datasets/heldout)
    train     the linear probe: the musicnn representation of every window (cached in musicnn/representations),
              one logistic regression per label (C 0.001), window thresholds tuned on the held-out validation
              windows -> musicnn/model
    tune      clip thresholds tuned on labelled real recordings (``evaluate --clips MANIFEST --tune-thresholds``;
              default ../shared/real-dev/manifest.csv) written into the config -> musicnn/model-tuned; without a
              manifest the held-out validation thresholds stay
    evaluate  window level on the held-out test renders (both threshold sets), clip level on the real clips ->
              WORKDIR/recipe_musicnn_results.json
    export    OUTPUT/musicnn: the model folder (save_pretrained), its feature extractor, a model card, the
              licence of the musicnn weights, recipe_musicnn_results.json (the musicnn results)
    yamnet-prepare   datasets/yamnet: the corpora, splits, seed and taxonomy of datasets/musicnn read by YAMNet's
              feature extractor, windows of 374 frames (8 ms) and hop 374: the same samples as musicnn's windows
    yamnet-train, yamnet-tune, yamnet-evaluate   as train, tune and evaluate, with YAMNet's front end
              (representations cached in yamnet/representations) -> yamnet/model, yamnet/model-tuned, results
    blend     musicnn-yamnet: an ensemble of musicnn/model-tuned and yamnet/model-tuned whose YAMNet weight (0,
              0.1, ..., 1) has the best cross-validated clip micro F1 on the real clips (within 0.01: fewer false
              instruments per clip, then higher macro ROC-AUC; :func:`~instrument_classifier.evaluation.tuning.
              tune_blend_on_clips`), its clip thresholds tuned on all of them; without a manifest, weight and
              thresholds from the held-out validation windows (``tune_ensemble``)
    blend-evaluate   the ensemble on the held-out test windows (both datasets) and on the real clips -> the
              results' "blend" (the YAMNet model's are under "yamnet")
    export-yamnet    OUTPUT/yamnet (as OUTPUT/musicnn, YAMNet's card and licence) and OUTPUT/musicnn-yamnet (the
              ensemble config naming ../musicnn and ../yamnet, a card), both with every result

Timings go to ``WORKDIR/recipe_musicnn_log.json`` (the MFCC recipe's own steps, when run from here, to its
``recipe_log.json``).

This module runs the steps in order, skips those already done, and is the command line; the steps' work is in
:mod:`~.musicnn_sources` (sources), :mod:`~.musicnn_renders` (render), :mod:`~.musicnn_probe` (train),
:mod:`~.musicnn_evaluation` (tune, evaluate), :mod:`~.musicnn_card` (export), :mod:`~.musicnn_yamnet` (the
YAMNet weights and model) and :mod:`~.musicnn_blend` (blend, blend-evaluate, the ensemble's export).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

from ..data.musicnet import MusicNetError, find_musicnet_root
from ..data.prepare import build_dataset
from ..data.render import RenderError
from ..evaluation.clips import ManifestError
from ..modeling import InstrumentFeatureExtractor
from ..modeling.feature_extraction_instrument import default_feature_settings
from .common import (
    DEFAULT_MUSICNET_LABELS,
    DEFAULT_REAL_DEV,
    MusicnnSettings,
    RecipeError,
    RecipeSettings,
    StepLog,
    as_json,
    digest,
    sha256,
    write_json,
)
from .musicnn_blend import BLEND_NAME, evaluate_blend, export_blend, is_blend_exported, tune_blend
from .musicnn_card import RESULTS_FILE, export_model, is_exported
from .musicnn_evaluation import evaluate_model, format_blend_results, format_results, tune_on_real_clips
from .musicnn_probe import train_probe
from .musicnn_renders import recipe_corpora, render_training_corpora, validation_corpora
from .musicnn_sources import DEFAULT_WEIGHTS, VPO_URL, check_sources
from .musicnn_yamnet import DEFAULT_YAMNET_WEIGHTS, check_yamnet_weights, run_yamnet_model
from .real_clips import LONG_CLIP_SECONDS

__all__ = ["run_musicnn_recipe", "main", "STEPS"]

STEPS = ("sources", "render", "prepare", "train", "tune", "evaluate", "export", "yamnet-prepare", "yamnet-train",
         "yamnet-tune", "yamnet-evaluate", "blend", "blend-evaluate", "export-yamnet")
LOG_FILE = "recipe_musicnn_log.json"


# -- bookkeeping ---------------------------------------------------------------------------------------------

def step_log(workdir: Path) -> StepLog:
    """This recipe's step log: ``WORKDIR/recipe_musicnn_log.json``, its step names starting with "musicnn: "."""
    return StepLog(workdir, LOG_FILE, prefix="musicnn: ")


def _stamp_matches(stamp: Path, inputs: dict, *outputs: Path) -> Optional[dict]:
    """The stamp's content if it was written for ``inputs`` and every output is there; else ``None``.

    A step writes its stamp (``{"inputs", ...}``) after its outputs, so a stamp never vouches for an output an
    interrupted run left half-written.
    """
    if not stamp.is_file() or not all(path.exists() for path in outputs):
        return None
    try:
        data = json.loads(stamp.read_text())
    except ValueError:
        return None
    return data if data.get("inputs") == as_json(inputs) else None


# -- the stage -----------------------------------------------------------------------------------------------------

def run_musicnn_recipe(workdir: Path, output: Path, settings: RecipeSettings, mset: MusicnnSettings,
                       weights: Path = DEFAULT_WEIGHTS, sampler_library: Optional[Path] = None,
                       real_dev: Optional[Path] = DEFAULT_REAL_DEV, stop_after: Optional[str] = None,
                       musicnet: Path = DEFAULT_MUSICNET_LABELS,
                       yamnet_weights: Path = DEFAULT_YAMNET_WEIGHTS) -> dict:
    """Build the musicnn model; see the module doc. Returns the results (``{}`` when stopped early).

    Parameters
    ----------
    workdir : Path
        The MFCC recipe's work folder (its renders are reused); this stage adds ``musicnn/``, ``datasets/musicnn`` and
        its renders beside the MFCC recipe's.
    output : Path
        The model goes to ``output/musicnn``.
    settings, mset : RecipeSettings, MusicnnSettings
    weights : Path
        ``scripts/convert_musicnn.py``'s safetensors.
    sampler_library : Path, optional
        The Virtual Playing Orchestra checkout; default ``workdir/libraries/VirtualPlayingOrchestra``.
    real_dev : Path, optional
        A clip manifest of labelled real recordings to tune the clip thresholds on and to report; absent or
        ``None``: the tuning is skipped (with a message) and the held-out validation thresholds stay.
    stop_after : str, optional
        One of :data:`STEPS` but the last.
    musicnet : Path
        The MusicNet folder whose label CSVs (``train_labels/``, ``test_labels/``) are rendered, here and by the
        MFCC recipe's renders when they are missing.
    yamnet_weights : Path
        ``scripts/convert_yamnet.py``'s safetensors.
    """
    workdir, output = Path(workdir), Path(output)
    workdir.mkdir(parents=True, exist_ok=True)
    log = step_log(workdir)
    home = workdir / "musicnn"
    home.mkdir(parents=True, exist_ok=True)
    vpo = Path(sampler_library) if sampler_library is not None else workdir / "libraries" / "VirtualPlayingOrchestra"

    # sources ---------------------------------------------------------------------------------------------------
    t = time.perf_counter()
    records = [home / "sources.json", workdir / "yamnet" / "sources.json"]
    previous = [path.read_text() if path.is_file() else None for path in records]
    sources = check_sources(Path(weights), vpo, records[0])
    (workdir / "yamnet").mkdir(exist_ok=True)
    yamnet_sources = check_yamnet_weights(Path(yamnet_weights), records[1])
    log.step("sources", time.perf_counter() - t, [path.read_text() for path in records] == previous)
    if stop_after == "sources":
        return {}

    # render ----------------------------------------------------------------------------------------------------
    if not (musicnet / "train_labels").is_dir():
        raise RecipeError(f"{musicnet}: MusicNet label CSVs not found (train_labels/, test_labels/)")
    train_corpora = render_training_corpora(workdir, output, settings, mset, vpo, sources["sampler_library"]["commit"],
                                            log, musicnet)
    if stop_after == "render":
        return {}

    # prepare ---------------------------------------------------------------------------------------------------

    dataset_path = workdir / "datasets" / "musicnn"

    def fingerprint() -> Optional[str]:
        try:
            return json.loads((dataset_path / "prepare_info.json").read_text()).get("fingerprint")
        except (OSError, ValueError):
            return None

    t = time.perf_counter()
    before = fingerprint()
    val_corpora = validation_corpora(workdir, settings, train_corpora, log, musicnet)
    build_dataset(train_corpora, dataset_path, taxonomy=settings.taxonomy, window_frames=mset.window_frames,
                  hop_frames=mset.hop_frames, num_proc=settings.num_proc, seed=settings.seed,
                  eval_data_dirs=[recipe_corpora(workdir, settings)["test"]], validation_data_dirs=val_corpora,
                  feature_extractor=InstrumentFeatureExtractor(**default_feature_settings("musicnn")),
                  cache_dir=workdir / "datasets" / ".cache")
    info = json.loads((dataset_path / "prepare_info.json").read_text())
    log.step("prepare datasets/musicnn", time.perf_counter() - t, before is not None and fingerprint() == before)
    if stop_after == "prepare":
        return {}

    # train -----------------------------------------------------------------------------------------------------
    model_dir, tuned_dir = home / "model", home / "model-tuned"
    train_inputs = {"dataset": info["fingerprint"], "backbone_sha256": sources["musicnn_weights"]["sha256"],
                    "C": mset.C, "seed": settings.seed}
    t = time.perf_counter()
    trained = _stamp_matches(home / "train.json", train_inputs, model_dir / "model.safetensors")
    done = trained is not None
    if not done:
        result = train_probe(dataset_path, Path(weights), model_dir, home / "representations", mset, settings.seed)
        trained = {"inputs": as_json(train_inputs), **result}
        write_json(home / "train.json", trained)
    log.step("train (linear probe)", time.perf_counter() - t, done)
    if stop_after == "train":
        return {}

    # tune ------------------------------------------------------------------------------------------------------

    manifest = None if real_dev is None else Path(real_dev).expanduser().resolve()
    if manifest is not None and not manifest.is_file():
        print(f"[recipe musicnn] {manifest}: no labelled real clips there: the clip thresholds are not tuned on "
              f"real recordings and stay those of the {settings.heldout_library} validation windows (pass "
              "--real-dev MANIFEST to tune them)", flush=True)
        manifest = None
    tune_inputs = {"model": digest(trained["inputs"]), "manifest": None if manifest is None else str(manifest),
                   "manifest_sha256": None if manifest is None else sha256(manifest)}
    t = time.perf_counter()
    tuned = _stamp_matches(home / "tune.json", tune_inputs, tuned_dir / "model.safetensors")
    done = tuned is not None
    if not done:
        tuned = {"inputs": as_json(tune_inputs),
                 **tune_on_real_clips(model_dir, tuned_dir, manifest, home / "tune-real-dev")}
        write_json(home / "tune.json", tuned)
    log.step("tune (real clips)" if manifest is not None else "tune (no real clips: validation thresholds kept)",
             time.perf_counter() - t, done)
    if stop_after == "tune":
        return {}

    # evaluate --------------------------------------------------------------------------------------------------

    eval_inputs = {"tuned": digest(tuned["inputs"]), "test": info["split_fingerprints"].get("test"),
                   "min_seconds": LONG_CLIP_SECONDS}
    t = time.perf_counter()
    evaluated = _stamp_matches(home / "evaluate.json", eval_inputs, home / "evaluation" / "heldout" / "metrics.json")
    done = evaluated is not None
    if not done:
        evaluated = {"inputs": as_json(eval_inputs),
                     **evaluate_model(model_dir, tuned_dir, dataset_path, manifest, tuned, home / "evaluation")}
        write_json(home / "evaluate.json", evaluated)
    labels = list(info["labels"])
    results = {
        "settings": {"recipe": as_json(asdict(settings)), "musicnn": as_json(asdict(mset))},
        "sources": sources,
        "labels": labels,
        "dataset": {split: {k: v for k, v in entry.items() if k in ("recordings", "windows", "label_counts")}
                    for split, entry in info["splits"].items()},
        "training": {k: v for k, v in trained.items() if k not in ("inputs", "validation_thresholds")},
        "thresholds": {"validation": trained["validation_thresholds"], "real_dev": tuned["thresholds"],
                       "exported": "real_dev" if tuned["thresholds"] is not None else "validation"},
        "merlin_test": evaluated["merlin_test"],
        "real_dev": evaluated.get("real_dev"),
    }
    write_json(workdir / RESULTS_FILE, results)
    log.step("evaluate", time.perf_counter() - t, done)
    print(format_results(results), flush=True)
    if stop_after == "evaluate":
        return results

    # export ----------------------------------------------------------------------------------------------------
    t = time.perf_counter()
    done = is_exported(output / "musicnn", results)
    if not done:
        export_model(tuned_dir, output / "musicnn", results, settings, mset)
    log.step(f"export {output / 'musicnn'}", time.perf_counter() - t, done)
    if stop_after == "export":
        return results

    # yamnet-prepare ... yamnet-evaluate ---------------------------------------------------------------------------
    yamnet = run_yamnet_model(workdir, settings, mset, Path(yamnet_weights), yamnet_sources, train_corpora,
                              val_corpora, recipe_corpora(workdir, settings)["test"], manifest, log, _stamp_matches,
                              stop_after)
    if yamnet is None:
        return results
    datasets = {"musicnn": dataset_path, "yamnet": yamnet.pop("_dataset")}
    yamnet_tuned, yamnet_tune_inputs = yamnet.pop("_tuned"), yamnet.pop("_tune_inputs")
    yamnet_eval_inputs = yamnet.pop("_eval_inputs")
    results["yamnet"] = yamnet

    # blend -------------------------------------------------------------------------------------------------------
    blend_dir = workdir / BLEND_NAME
    blend_inputs = {"musicnn": digest(tuned["inputs"]), "yamnet": digest(yamnet_tune_inputs),
                    "validation": None if manifest is not None else [info["split_fingerprints"].get("validation")]}
    t = time.perf_counter()
    blended = _stamp_matches(home / "blend.json", blend_inputs, blend_dir / "ensemble_config.json")
    done = blended is not None
    if not done:
        blended = {"inputs": as_json(blend_inputs),
                   **tune_blend(tuned_dir, yamnet_tuned, blend_dir, manifest, datasets, mset, settings.taxonomy)}
        write_json(home / "blend.json", blended)
    log.step("blend (YAMNet weight tuned on real clips)" if manifest is not None
             else "blend (YAMNet weight tuned on validation windows)", time.perf_counter() - t, done)
    if stop_after == "blend":
        return results

    # blend-evaluate ------------------------------------------------------------------------------------------------
    blend_eval_inputs = {"blend": digest(blended["inputs"]), "musicnn": digest(eval_inputs),
                         "yamnet": digest(yamnet_eval_inputs)}
    t = time.perf_counter()
    blend_evaluated = _stamp_matches(home / "blend-evaluate.json", blend_eval_inputs,
                                     home / "blend-evaluation" / "heldout" / "metrics.json")
    done = blend_evaluated is not None
    if not done:
        blend_evaluated = {"inputs": as_json(blend_eval_inputs),
                           **evaluate_blend(blend_dir, datasets, manifest, home / "blend-evaluation")}
        write_json(home / "blend-evaluate.json", blend_evaluated)
    weight = blended["weight"]
    results["blend"] = {
        "members": ["musicnn", "yamnet"], "weights": [round(1.0 - weight, 4), round(weight, 4)],
        **{k: v for k, v in blended.items() if k != "inputs"},
        **{k: v for k, v in blend_evaluated.items() if k != "inputs"},
    }
    write_json(workdir / RESULTS_FILE, results)
    log.step("blend evaluate", time.perf_counter() - t, done)
    print(format_blend_results(results), flush=True)
    if stop_after == "blend-evaluate":
        return results

    # export-yamnet ------------------------------------------------------------------------------------------------
    t = time.perf_counter()
    card_results = {**yamnet, "labels": results["labels"],
                    "sources": {**yamnet["sources"], "sampler_library": sources["sampler_library"]}}
    done = is_exported(output / "yamnet", results)
    if not done:
        export_model(yamnet_tuned, output / "yamnet", card_results, settings, mset, name="yamnet", shipped=results)
    log.step(f"export {output / 'yamnet'}", time.perf_counter() - t, done)
    t = time.perf_counter()
    done = is_blend_exported(blend_dir, output / BLEND_NAME, results)
    if not done:
        export_blend(blend_dir, output / BLEND_NAME, results, settings)
    log.step(f"export {output / BLEND_NAME}", time.perf_counter() - t, done)
    return results


# -- command line -------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m instrument_classifier.recipe_musicnn",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("corpora/recipe"),
                        help="recipe.py's work folder: its renders are reused, this stage's files go beside them")
    parser.add_argument("--output", type=Path, default=Path("instrument_classifier/pretrained"),
                        help="the model folders go to OUTPUT/musicnn, OUTPUT/yamnet and OUTPUT/musicnn-yamnet")
    parser.add_argument("--musicnet", type=Path, default=DEFAULT_MUSICNET_LABELS, metavar="DIR",
                        help="your MusicNet folder, as recipe.py's --musicnet (only the label CSVs are read; "
                             f"default {DEFAULT_MUSICNET_LABELS})")
    parser.add_argument("--sampler-library", type=Path, default=None, metavar="DIR",
                        help=f"your clone of {VPO_URL} (default WORKDIR/libraries/VirtualPlayingOrchestra)")
    parser.add_argument("--musicnn-weights", type=Path, default=DEFAULT_WEIGHTS, metavar="FILE",
                        help=f"scripts/convert_musicnn.py's output (default {DEFAULT_WEIGHTS})")
    parser.add_argument("--yamnet-weights", type=Path, default=DEFAULT_YAMNET_WEIGHTS, metavar="FILE",
                        help=f"scripts/convert_yamnet.py's output (default {DEFAULT_YAMNET_WEIGHTS})")
    parser.add_argument("--real-dev", type=Path, default=None, metavar="MANIFEST",
                        help="labelled real clips (evaluate --clips manifest) to tune the clip thresholds on and "
                             f"to report (default {DEFAULT_REAL_DEV}; tuning is skipped when it is absent)")
    parser.add_argument("--stop-after", choices=STEPS[:-1], default=None)
    parser.add_argument("--num-proc", type=int, default=None, help="worker processes for render/perturb/prepare")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.real_dev is not None and not args.real_dev.expanduser().is_file():
        parser.error(f"--real-dev: {args.real_dev}: no such manifest")  # asked for by name: a typo, not "absent"
    try:
        musicnet = find_musicnet_root(args.musicnet.expanduser())
    except MusicNetError as exc:
        parser.error(f"--musicnet: {exc}")
    if not (musicnet / "train_labels").is_dir():
        parser.error(f"--musicnet: {musicnet} has no train_labels/ (the MusicNet label CSVs)")
    settings = RecipeSettings()
    if args.num_proc is not None:
        settings.num_proc = args.num_proc
    started = time.perf_counter()
    try:
        run_musicnn_recipe(args.workdir, args.output, settings, MusicnnSettings(), weights=args.musicnn_weights,
                           sampler_library=args.sampler_library,
                           real_dev=args.real_dev if args.real_dev is not None else DEFAULT_REAL_DEV,
                           stop_after=args.stop_after, musicnet=musicnet, yamnet_weights=args.yamnet_weights)
    except (RecipeError, RenderError, ManifestError, MusicNetError) as exc:
        print(f"recipe_musicnn: error: {exc}", file=sys.stderr)
        return 2
    print(f"recipe_musicnn finished in {(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
