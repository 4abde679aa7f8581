"""The recipe of the musicnn classifier, the default model-to-be: ``make models`` runs it after the MFCC recipe.

    python -m instrument_classifier.recipe_musicnn --workdir corpora/recipe \\
        --output instrument_classifier/pretrained \\
        [--sampler-library DIR] [--musicnn-weights FILE] [--real-dev MANIFEST] [--stop-after STEP]

:class:`~instrument_classifier.modeling.InstrumentMusicnnForAudioClassification` keeps musicnn (``MTT_musicnn``, a
tagger trained on real recordings) frozen and learns one linear head on its representation of 3-s windows
(:mod:`instrument_classifier.training.linear_probe`). On the real development clips that front end carries over
where MFCC models do not (docs/experiments.md, "A front end learned from real music: musicnn"), and training
audio closer to real playing (recorded samples) and tracks of other instruments (distractors) moved it further
("Training audio from recorded samples, and distractors"). This module builds exactly that model; the MFCC recipe
(:mod:`~instrument_classifier.recipes.mfcc`) keeps building the CNN and the Transformer, and this stage reuses its
renders.

Steps (each skipped when its output is complete, so an interrupted run resumes where it stopped)::

    sources   the musicnn weights (``scripts/convert_musicnn.py``'s safetensors) and a Virtual Playing Orchestra
              checkout: checked, their sha256 and git commit recorded in musicnn/sources.json. Nothing of either
              is shipped but the converted weights inside the model (ISC licence, kept with them)
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
              licence of the musicnn weights, recipe_musicnn_results.json

Timings go to ``WORKDIR/recipe_musicnn_log.json`` (the MFCC recipe's own steps, when run from here, to its
``recipe_log.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..data import render as fluidsynth
from ..data import sampler
from ..data.musicnet import MusicNetError, find_musicnet_root
from ..data.perturb_corpus import perturb_corpus
from ..data.prepare import build_dataset, load_prepared, plan_validation_pieces
from ..data.render import RenderError
from ..evaluation.clips import ManifestError, evaluate_clips
from ..evaluation.evaluate_models import evaluate_models
from ..evaluation.metrics import compute_instrument_metrics, tune_thresholds
from ..modeling import InstrumentFeatureExtractor, InstrumentMusicnnForAudioClassification
from ..modeling.feature_extraction_instrument import default_feature_settings
from ..training import linear_probe
from ..training.linear_probe import window_representations

from ..atomic_write import write_dir
from ..evaluation.report import fmt
from . import common, mfcc
from .common import (
    DEFAULT_REAL_DEV,
    LIBRARIES,
    MusicnnSettings,
    RecipeError,
    RecipeSettings,
    StepLog,
    as_json,
    sha256,
    timed,
    write_json,
)
from .musicnn_card import RESULTS_FILE, export_model, is_exported
from .musicnn_sources import DEFAULT_WEIGHTS, VPO_URL, check_sources
from .real_clips import LONG_CLIP_SECONDS, clip_summary, long_clip_metrics
from .renders import corpus_done, forget_renders_of_another_plan, render
from .results import model_key, window_summary
from .sources import fetch_library

__all__ = ["run_musicnn_recipe", "main", "STEPS"]

STEPS = ("sources", "render", "prepare", "train", "tune", "evaluate", "export")
LOG_FILE = "recipe_musicnn_log.json"


# -- bookkeeping ---------------------------------------------------------------------------------------------

def step_log(workdir: Path) -> StepLog:
    """This recipe's step log: ``WORKDIR/recipe_musicnn_log.json``, its step names starting with "musicnn: "."""
    return StepLog(workdir, LOG_FILE, prefix="musicnn: ")


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


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


# -- sources ---------------------------------------------------------------------------------------------------


# -- render ------------------------------------------------------------------------------------------------------

def recipe_corpora(workdir: Path, settings: RecipeSettings) -> Dict[str, object]:
    """The folders the MFCC recipe's render step makes that this stage reads: ``train`` (the perturbed training
    renders, one per training library), ``validation`` and ``test`` (the held-out library's, perturbed)."""
    h = settings.heldout_library
    return {"train": [workdir / "train" / f"{name}-{settings.train_perturbation}"
                      for name in settings.train_libraries],
            "validation": workdir / "heldout" / f"{h}-validation", "test": workdir / "heldout" / f"{h}-test"}


def _render_once(dry: Path, render: Callable[[], None]) -> None:
    render()
    (dry / ".done-train").write_text("ok\n")  # as renders.render: a render with its marker is complete


def render_training_corpora(workdir: Path, output: Path, settings: RecipeSettings, mset: MusicnnSettings,
                            vpo: Path, vpo_commit: str, log: StepLog) -> List[Path]:
    """The MFCC recipe's renders (if missing), then the VPO and distractor corpora; returns the four training
    corpora."""

    corpora = recipe_corpora(workdir, settings)
    ready = all(corpus_done(c) for c in [*corpora["train"], corpora["validation"], corpora["test"]])
    timed(log, "recipe.py renders (up to perturb)",
           lambda: mfcc.run_recipe(workdir, output, settings, stop_after="render"), ready)

    labels, perturbation = common.MUSICNET_LABELS, settings.train_perturbation
    vpo_dry, vpo_train = workdir / "render" / "vpo-dry", workdir / "train" / f"vpo-{perturbation}"
    start, seconds = mset.vpo_start_seconds, mset.vpo_seconds
    forget_renders_of_another_plan(
        {"library_commit": vpo_commit, "start": start, "seconds": seconds, "seed": mset.vpo_seed,
         "velocity": mset.velocity, "velocity_jitter": mset.velocity_jitter, "perturbation": perturbation,
         "perturbation_seed": mset.vpo_perturbation_seed}, [vpo_dry, vpo_train])
    timed(log, f"render vpo train [{start:g}, {start + seconds:g}) s",
           lambda: _render_once(vpo_dry, lambda: sampler.render_corpus(
               labels, vpo, vpo_dry, split="train", max_seconds=seconds, start_seconds=start, seed=mset.vpo_seed,
               velocity=mset.velocity, velocity_jitter=mset.velocity_jitter, num_proc=settings.num_proc)),
           (vpo_dry / ".done-train").is_file())
    timed(log, f"perturb vpo ({perturbation})",
           lambda: perturb_corpus(vpo_dry, vpo_train, perturbation, mset.vpo_perturbation_seed, split="train",
                                  num_proc=settings.num_proc),
           corpus_done(vpo_train))

    library = LIBRARIES[mset.distractor_library]
    name = f"{library.name}-distractors"
    d_dry, d_train = workdir / "render" / f"{name}-dry", workdir / "train" / f"{name}-{perturbation}"
    start, seconds = mset.distractor_start_seconds, mset.distractor_seconds
    forget_renders_of_another_plan(
        {"library": library.name, "probability": mset.distractor_probability, "start": start, "seconds": seconds,
         "seed": mset.distractor_seed, "velocity": mset.velocity, "velocity_jitter": mset.velocity_jitter,
         "omitted_programs": list(library.excluded_programs), "perturbation": perturbation,
         "perturbation_seed": mset.distractor_perturbation_seed}, [d_dry, d_train])
    timed(log, f"render {name} train [{start:g}, {start + seconds:g}) s",
           lambda: _render_once(d_dry, lambda: fluidsynth.render_corpus(
               labels, fetch_library(library, workdir), d_dry, split="train", max_seconds=seconds,
               start_seconds=start, seed=mset.distractor_seed, velocity=mset.velocity,
               velocity_jitter=mset.velocity_jitter, num_proc=settings.num_proc,
               omit_programs=library.excluded_programs, distractor_probability=mset.distractor_probability)),
           (d_dry / ".done-train").is_file())
    timed(log, f"perturb {name} ({perturbation})",
           lambda: perturb_corpus(d_dry, d_train, perturbation, mset.distractor_perturbation_seed, split="train",
                                  num_proc=settings.num_proc),
           corpus_done(d_train))
    return [*corpora["train"], vpo_train, d_train]


def validation_corpora(workdir: Path, settings: RecipeSettings, train_corpora: Sequence[Path],
                       log: StepLog) -> List[Path]:
    """The held-out validation corpora for ``train_corpora``: the MFCC recipe's, plus the pieces it lacks.

    ``prepare`` chooses the validation pieces from the labels of all training corpora. The MFCC recipe rendered those
    it chose from its own two; the VPO excerpts ([60, 105) s) can bring an instrument neither of them hears and
    so change the choice. Pieces the MFCC recipe did not render are rendered here as it would have (same seeds) into
    ``heldout/<library>-validation-musicnn``.
    """

    corpora = recipe_corpora(workdir, settings)
    pieces = plan_validation_pieces(train_corpora, settings.taxonomy, seed=settings.seed)
    have = {p.stem for p in (corpora["validation"] / "train_labels").glob("*.csv")}
    missing = sorted(set(pieces) - have)
    h = settings.heldout_library
    dry = workdir / "render" / f"{h}-validation-musicnn-dry"
    perturbed = workdir / "heldout" / f"{h}-validation-musicnn"
    forget_renders_of_another_plan({"pieces": missing, "seconds": settings.heldout_validation_seconds,
                                     "seed": settings.seed}, [dry, perturbed], "validation_plan.json")
    if not missing:
        return [corpora["validation"]]
    library = LIBRARIES[h]
    timed(log, f"render {h} (held out) {len(missing)} more validation pieces",
           lambda: render(fetch_library(library, workdir), dry, "train", settings.heldout_validation_seconds,
                                  0.0, settings.seed + 50, settings, library.excluded_programs, ids=missing),
           (dry / ".done-train").is_file())
    timed(log, f"perturb {h} more validation pieces (test conditions)",
           lambda: perturb_corpus(dry, perturbed, "test", settings.seed + 200, num_proc=settings.num_proc),
           corpus_done(perturbed))
    return [corpora["validation"], perturbed]


# -- train -----------------------------------------------------------------------------------------------------

def _representations(model, dataset, split: str, key: str, cache: Path, batch_size: int):
    """``(x, y)`` of a prepared split: musicnn representations and window labels, cached under ``key`` (the
    split's fingerprint and the backbone's): reading every window is the slow part, about 40x real time on 2
    cores, and a run interrupted after it, or one with another C, need not read them again."""

    path = cache / f"{split}-{key}.npz"
    if path.is_file():
        stored = np.load(path)
        return stored["x"], stored["y"]
    x = window_representations(model, dataset[split], batch_size, progress=True)
    y = np.asarray(dataset[split].with_format("numpy", columns=["labels"])["labels"], dtype=np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob(f"{split}-*.npz"):  # another dataset's or backbone's: never read again
        old.unlink()
    tmp = cache / f".{split}-{key}.tmp.npz"
    np.savez(tmp, x=x, y=y)
    tmp.replace(path)
    return x, y


def train_probe(dataset_path: Path, weights: Path, out: Path, cache: Path, mset: MusicnnSettings, seed: int) -> dict:
    """Fit the linear head on the train windows, tune window thresholds on the validation windows, save to ``out``.

    Returns ``{"absent_labels", "train_windows", "validation_windows", "validation": window summary,
    "validation_thresholds": {label: t}}``.
    """

    model, fe = linear_probe.new_musicnn_classifier(str(weights))
    info = linear_probe._check_datasets([str(dataset_path)], fe)
    if info["taxonomy"] != model.config.taxonomy:
        model, fe = linear_probe.new_musicnn_classifier(str(weights), info["taxonomy"], fe)
    data, prepared, _ = load_prepared(dataset_path)
    backbone = sha256(Path(weights))

    def key(split: str) -> str:
        return _digest({"split": prepared["split_fingerprints"][split], "backbone": backbone})

    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    x, y = _representations(model, data, "train", key("train"), cache, mset.batch_size)
    if len(x) == 0:
        raise RecipeError(f"{dataset_path}: no training windows")
    absent = linear_probe.fit_linear_head(model, x, y, C=mset.C, seed=seed)
    x_val, y_val = _representations(model, data, "validation", key("validation"), cache, mset.batch_size)
    if len(x_val) == 0:
        raise RecipeError(f"{dataset_path}: no validation windows to tune the window thresholds on")
    scores = linear_probe.head_probabilities(model, x_val)
    thresholds = [float(t) for t in tune_thresholds(y_val, scores)]
    model.config.thresholds = thresholds
    metrics = compute_instrument_metrics(y_val, scores, thresholds, labels)
    write_dir(out, lambda folder: (model.save_pretrained(folder), fe.save_pretrained(folder)))
    return {"absent_labels": absent, "train_windows": int(len(x)), "validation_windows": int(len(x_val)),
            "validation": window_summary(metrics, None),
            "validation_thresholds": dict(zip(labels, np.round(thresholds, 4).tolist()))}


# -- tune and evaluate -------------------------------------------------------------------------------------------

def _write_thresholds(src: Path, out: Path, thresholds: Optional[Dict[str, float]]) -> None:
    """``src`` saved again to ``out`` (atomically) with ``thresholds`` ({label: t}) in its config, if given."""

    model = InstrumentMusicnnForAudioClassification.from_pretrained(str(src), use_safetensors=True)
    extractor = InstrumentFeatureExtractor.from_pretrained(str(src))
    if thresholds is not None:
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if sorted(thresholds) != sorted(labels):
            raise RecipeError(f"tuned thresholds for {sorted(thresholds)}, but {src} has labels {labels}")
        model.config.thresholds = [float(thresholds[label]) for label in labels]
    write_dir(out, lambda folder: (model.save_pretrained(folder), extractor.save_pretrained(folder)))


def _model_entry(report: dict, folder: Path) -> dict:
    """One model's entry in an evaluate / evaluate --clips report (keyed by its folder name)."""
    return model_key(report, folder.name)


# -- the card ----------------------------------------------------------------------------------------------------


# -- the stage -----------------------------------------------------------------------------------------------------

def run_musicnn_recipe(workdir: Path, output: Path, settings: RecipeSettings, mset: MusicnnSettings,
                       weights: Path = DEFAULT_WEIGHTS, sampler_library: Optional[Path] = None,
                       real_dev: Optional[Path] = DEFAULT_REAL_DEV, stop_after: Optional[str] = None) -> dict:
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
    """
    workdir, output = Path(workdir), Path(output)
    workdir.mkdir(parents=True, exist_ok=True)
    log = step_log(workdir)
    home = workdir / "musicnn"
    home.mkdir(parents=True, exist_ok=True)
    vpo = Path(sampler_library) if sampler_library is not None else workdir / "libraries" / "VirtualPlayingOrchestra"

    # sources ---------------------------------------------------------------------------------------------------
    t = time.perf_counter()
    previous = (home / "sources.json").read_text() if (home / "sources.json").is_file() else None
    sources = check_sources(Path(weights), vpo, home / "sources.json")
    log.step("sources", time.perf_counter() - t, (home / "sources.json").read_text() == previous)
    if stop_after == "sources":
        return {}

    # render ----------------------------------------------------------------------------------------------------
    if not (common.MUSICNET_LABELS / "train_labels").is_dir():
        raise RecipeError(f"{common.MUSICNET_LABELS}: MusicNet label CSVs not found (train_labels/, test_labels/)")
    train_corpora = render_training_corpora(workdir, output, settings, mset, vpo, sources["sampler_library"]["commit"],
                                            log)
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
    val_corpora = validation_corpora(workdir, settings, train_corpora, log)
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
    tune_inputs = {"model": _digest(trained["inputs"]), "manifest": None if manifest is None else str(manifest),
                   "manifest_sha256": None if manifest is None else sha256(manifest)}
    t = time.perf_counter()
    tuned = _stamp_matches(home / "tune.json", tune_inputs, tuned_dir / "model.safetensors")
    done = tuned is not None
    if not done:
        tuned = {"inputs": as_json(tune_inputs), "thresholds": None, "report": None}
        if manifest is not None:
            report_dir = home / "tune-real-dev"
            report = evaluate_clips(str(model_dir), manifest, output_dir=report_dir, tune=True)
            entry = _model_entry(report, model_dir)
            tuned.update(thresholds=entry["tuned_thresholds"], report=str(report_dir),
                         cross_validated=entry["tuned_cross_validated"],
                         validation_thresholds=clip_summary(entry["clips"]))
        _write_thresholds(model_dir, tuned_dir, tuned["thresholds"])
        write_json(home / "tune.json", tuned)
    log.step("tune (real clips)" if manifest is not None else "tune (no real clips: validation thresholds kept)",
             time.perf_counter() - t, done)
    if stop_after == "tune":
        return {}

    # evaluate --------------------------------------------------------------------------------------------------

    eval_inputs = {"tuned": _digest(tuned["inputs"]), "test": info["split_fingerprints"].get("test"),
                   "min_seconds": LONG_CLIP_SECONDS}
    t = time.perf_counter()
    evaluated = _stamp_matches(home / "evaluate.json", eval_inputs, home / "evaluation" / "heldout" / "metrics.json")
    done = evaluated is not None
    if not done:
        report = evaluate_models([str(model_dir), str(tuned_dir)], dataset=dataset_path, split="test",
                                 output_dir=home / "evaluation" / "heldout")
        evaluated = {"inputs": as_json(eval_inputs), "merlin_test": {
            "validation_thresholds": window_summary(_model_entry(report, model_dir)["window"], None),
            "tuned_thresholds": window_summary(_model_entry(report, tuned_dir)["window"], None)}}
        if manifest is not None:
            clips_dir = home / "evaluation" / "real-dev"
            clip_report = evaluate_clips(str(tuned_dir), manifest, output_dir=clips_dir)
            entry = _model_entry(clip_report, tuned_dir)
            evaluated["real_dev"] = {
                "manifest": str(manifest), "num_clips": clip_report["num_clips"],
                "tuned": clip_summary(entry["clips"]),
                "cross_validated": tuned["cross_validated"],
                "validation_thresholds": tuned["validation_thresholds"],
                "long_clips": long_clip_metrics(clips_dir, manifest),
                "by_folder": {folder: clip_summary(m) for folder, m in entry["by_folder"].items()},
                "no_instrument": None if "no_instrument" not in entry else clip_summary(entry["no_instrument"]),
            }
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
    return results


def format_results(results: dict) -> str:
    """A few lines: real clips first, then the held-out synthetic test."""
    lines = []
    real = results.get("real_dev")
    if real is None:
        lines.append("real clips: none given (thresholds from the held-out validation windows)")
    else:
        m, cv = real["tuned"], real["cross_validated"]
        lines.append(f"real clips ({real['num_clips']}, the development set the thresholds were tuned on): macro AUC "
                     f"{fmt(m['roc_auc_macro'])}, micro F1 {fmt(m['f1_micro'])}, false instruments per clip "
                     f"{fmt(m['false_alarms_per_clip'], 2)}; tuned on other clips (cross-validated): micro F1 "
                     f"{fmt(cv['f1_micro'])}, false per clip {fmt(cv['false_alarms_per_clip'], 2)}")
        if real.get("long_clips"):
            long = real["long_clips"]
            lines.append(f"  the {long['num_clips']} clips of {long['min_seconds']:g} s or more: macro AUC "
                         f"{fmt(long['roc_auc_macro'])}, micro F1 {fmt(long['f1_micro'])}, false per clip "
                         f"{fmt(long['false_alarms_per_clip'], 2)}")
    for name, m in results["merlin_test"].items():
        lines.append(f"held-out test windows, {name.replace('_', ' ')}: macro AUC {fmt(m['roc_auc_macro'])}, micro F1 "
                     f"{fmt(m['f1_micro'])}, macro F1 {fmt(m['f1_macro'])}")
    return "\n".join(lines)


# -- command line -------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m instrument_classifier.recipe_musicnn",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("corpora/recipe"),
                        help="recipe.py's work folder: its renders are reused, this stage's files go beside them")
    parser.add_argument("--output", type=Path, default=Path("instrument_classifier/pretrained"),
                        help="the model folder goes to OUTPUT/musicnn")
    parser.add_argument("--musicnet", type=Path, default=common.MUSICNET_LABELS, metavar="DIR",
                        help="your MusicNet folder, as recipe.py's --musicnet (only the label CSVs are read; "
                             f"default {common.MUSICNET_LABELS})")
    parser.add_argument("--sampler-library", type=Path, default=None, metavar="DIR",
                        help=f"your clone of {VPO_URL} (default WORKDIR/libraries/VirtualPlayingOrchestra)")
    parser.add_argument("--musicnn-weights", type=Path, default=DEFAULT_WEIGHTS, metavar="FILE",
                        help=f"scripts/convert_musicnn.py's output (default {DEFAULT_WEIGHTS})")
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
    common.MUSICNET_LABELS = musicnet  # the MFCC recipe's renders (run from here when missing) read it there
    settings = RecipeSettings()
    if args.num_proc is not None:
        settings.num_proc = args.num_proc
    started = time.perf_counter()
    try:
        run_musicnn_recipe(args.workdir, args.output, settings, MusicnnSettings(), weights=args.musicnn_weights,
                           sampler_library=args.sampler_library,
                           real_dev=args.real_dev if args.real_dev is not None else DEFAULT_REAL_DEV,
                           stop_after=args.stop_after)
    except (RecipeError, RenderError, ManifestError, MusicNetError) as exc:
        print(f"recipe_musicnn: error: {exc}", file=sys.stderr)
        return 2
    print(f"recipe_musicnn finished in {(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
