"""The recipe of the musicnn classifier, the default model-to-be: ``make models`` runs it after the MFCC recipe.

    python -m instrument_classifier.recipe_musicnn --workdir corpora/recipe \\
        --output instrument_classifier/pretrained \\
        [--sampler-library DIR] [--musicnn-weights FILE] [--yamnet-weights FILE] [--efficientat-weights FILE] \\
        [--real-dev MANIFEST] [--stop-after STEP]

:class:`~instrument_classifier.modeling.InstrumentMusicnnForAudioClassification` keeps musicnn (``MTT_musicnn``, a
tagger trained on real recordings) frozen and learns one linear head on its representation of 3-s windows
(:mod:`instrument_classifier.training.linear_probe`). On the real development clips that front end carries over
where MFCC models do not (docs/experiments.md, "A front end learned from real music: musicnn"), and training
audio closer to real playing (recorded samples) and tracks of other instruments (distractors) moved it further
("Training audio from recorded samples, and distractors"). This module builds exactly that model; the MFCC recipe
(:mod:`~instrument_classifier.recipes.mfcc`) keeps building the CNN and the Transformer, and this stage reuses its
renders. After the musicnn model it builds the same probe on two front ends trained on AudioSet, Google's YAMNet
(Apache-2.0; :class:`~instrument_classifier.modeling.InstrumentYamnetForAudioClassification`) and EfficientAT's
``mn04`` (MIT; :class:`~instrument_classifier.modeling.InstrumentEfficientAtForAudioClassification`), from the same
windows, and a blend of the three (an :mod:`~instrument_classifier.ensemble` folder, the default model): on the
real development clips it beats every member alone and the blend of musicnn and YAMNet alone
(docs/experiments.md).

Steps (each skipped when its output is complete, so an interrupted run resumes where it stopped)::

    sources   the musicnn weights (``scripts/convert_musicnn.py``'s safetensors) and a Virtual Playing Orchestra
              checkout: checked, their sha256 and git commit recorded in musicnn/sources.json. Nothing of either
              is shipped but the converted weights inside the model (ISC licence, kept with them). The YAMNet
              and EfficientAT weights (``scripts/convert_yamnet.py``'s, ``scripts/convert_efficientat.py``'s):
              loaded, their sha256 recorded in yamnet/sources.json and efficientat/sources.json
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
    efficientat-prepare ... efficientat-evaluate   the same with EfficientAT's front end: datasets/efficientat
              (windows of 1496 frames of 2 ms at 32 kHz, the same seconds; about 15 GB for the recipe's corpora),
              head C 0.003, and the head's logits mixed 0.7 / 0.3 with AudioSet's own logit for the instruments
              with an AudioSet class that at least 5 real clips hold (piano, violin, clarinet and flute in
              real-dev; the config's ``audioset_prior``) -> efficientat/model, efficientat/model-tuned, results
    blend     musicnn-yamnet-efficientat: an ensemble of the three tuned models whose weights (every weighting in
              tenths) have the best cross-validated clip micro F1 on the real clips (within 0.01: fewer false
              instruments per clip, then higher macro ROC-AUC; :func:`~instrument_classifier.evaluation.tuning.
              tune_blend_on_clips`), its clip thresholds tuned on all of them; without a manifest, weights and
              thresholds from the held-out validation windows (``tune_ensemble``)
    blend-evaluate   the ensemble on the held-out test windows (the three datasets) and on the real clips -> the
              results' "blend" (the other front ends' models are under "yamnet" and "efficientat")
    export-members   OUTPUT/yamnet and OUTPUT/efficientat (as OUTPUT/musicnn, each with its card and licence) and
              OUTPUT/musicnn-yamnet-efficientat (the ensemble config naming ../musicnn, ../yamnet and
              ../efficientat, a card), all with every result

Timings go to ``WORKDIR/recipe_musicnn_log.json`` (the MFCC recipe's own steps, when run from here, to its
``recipe_log.json``).

This module runs the steps in order, skips those already done, and is the command line; prepare, train, tune and
evaluate run for both front ends by one function (:func:`run_front_end`, given a :class:`FrontEnd`). The steps'
work is in :mod:`~.musicnn_sources` (sources), :mod:`~.musicnn_renders` (render), :mod:`~.musicnn_probe` (train),
:mod:`~.musicnn_evaluation` (tune, evaluate), :mod:`~.musicnn_card` (export), :mod:`~.musicnn_frontends` (the
YAMNet and EfficientAT weights and windows) and :mod:`~.musicnn_blend` (blend, blend-evaluate, the ensemble's export).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from ..data.musicnet import MusicNetError, find_musicnet_root
from ..data.prepare import build_dataset
from ..data.render import RenderError
from ..evaluation.clips import ManifestError
from ..modeling import InstrumentFeatureExtractor
from ..modeling.feature_extraction_instrument import default_feature_settings
from ..training.linear_probe import audioset_prior
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
from .musicnn_frontends import FRONT_ENDS, check_front_end_weights, front_end_window_frames
from .real_clips import LONG_CLIP_SECONDS, well_covered_labels

__all__ = ["run_musicnn_recipe", "run_front_end", "FrontEnd", "FrontEndRun", "main", "STEPS"]

STEPS = ("sources", "render", "prepare", "train", "tune", "evaluate", "export", "yamnet-prepare", "yamnet-train",
         "yamnet-tune", "yamnet-evaluate", "efficientat-prepare", "efficientat-train", "efficientat-tune",
         "efficientat-evaluate", "blend", "blend-evaluate", "export-members")
#: The front ends after musicnn, in the order they run and are blended.
AUDIOSET_FRONT_ENDS = ("yamnet", "efficientat")
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


def _stamped(stamp: Path, inputs: dict, output: Path, run: Callable[[], dict]) -> Tuple[dict, bool]:
    """A step's record and whether an earlier run had made it: the stamp's content if it matches ``inputs`` and
    ``output`` is there (:func:`_stamp_matches`), else ``{"inputs": inputs, **run()}``, written to ``stamp``."""
    record = _stamp_matches(stamp, inputs, output)
    if record is not None:
        return record, True
    record = {"inputs": as_json(inputs), **run()}
    write_json(stamp, record)
    return record, False


# -- one front end's probe: prepare, train, tune, evaluate ---------------------------------------------------------

@dataclass(frozen=True)
class FrontEnd:
    """What a front end's prepare, train, tune and evaluate steps depend on.

    Attributes
    ----------
    name : str
        "musicnn", "yamnet" or "efficientat": the work folder ``WORKDIR/<name>``, the dataset
        ``WORKDIR/datasets/<name>``, the feature extractor's settings (``default_feature_settings(name)``) and
        ``train_probe``'s ``backbone_type``.
    weights : Path
        The converted backbone weights.
    weights_sha256 : str
        Their sha256, as the sources step recorded it; the train step's stamp names it.
    window_frames, hop_frames : int
        Window length and hop, in the front end's own frames.
    C : float
        Inverse L2 strength of its head's logistic regressions.
    audioset_prior_weight : float
        The share of AudioSet's own logit in the head's logits of ``audioset_prior_labels`` (EfficientAT's
        ``audioset_prior``); 0: none.
    audioset_prior_labels : tuple of str
        The instruments with an AudioSet class that the real clips hold enough of to confirm the prior on.
    prefix : str
        "" for musicnn, the name for the others, whose steps are ``yamnet-train`` etc. in :data:`STEPS` and "yamnet
        train (linear probe)" etc. in the log (names older work folders' logs already hold).
    """

    name: str
    weights: Path
    weights_sha256: str
    window_frames: int
    hop_frames: int
    C: float
    audioset_prior_weight: float = 0.0
    audioset_prior_labels: Tuple[str, ...] = ()
    prefix: str = ""

    def step(self, name: str) -> str:
        """The ``--stop-after`` name of the step ``name``."""
        return f"{self.prefix}-{name}" if self.prefix else name

    def log_name(self, name: str) -> str:
        """The step log's name of the step described by ``name``."""
        return f"{self.prefix} {name}" if self.prefix else name


@dataclass(frozen=True)
class FrontEndRun:
    """A front end's finished probe: what the results, the blend and the exports read of it.

    Attributes
    ----------
    dataset : Path
        ``WORKDIR/datasets/<name>``.
    info : dict
        Its ``prepare_info.json``.
    tuned_dir : Path
        The model with the clip thresholds, ``WORKDIR/<name>/model-tuned``.
    tuned, evaluated : dict
        The tune and evaluate steps' records (their stamps' content; the blend's stamps name their inputs).
    results : dict
        ``dataset``, ``training``, ``thresholds``, ``merlin_test`` and ``real_dev``, in that order (the results
        file's).
    """

    dataset: Path
    info: dict
    tuned_dir: Path
    tuned: dict
    evaluated: dict
    results: dict


def run_front_end(front: FrontEnd, workdir: Path, settings: RecipeSettings, mset: MusicnnSettings,
                  train_corpora: List[Path], val_corpora: List[Path], test_corpus: Path, manifest: Optional[Path],
                  log: StepLog, stop_after: Optional[str] = None) -> Optional[FrontEndRun]:
    """The prepare, train, tune and evaluate steps of one front end (see the module doc), each skipped when done.

    Parameters
    ----------
    front : FrontEnd
    workdir : Path
        The stage's work folder: writes ``<front.name>/`` and ``datasets/<front.name>`` there.
    settings, mset : RecipeSettings, MusicnnSettings
    train_corpora, val_corpora : list of Path
        The training corpora and the held-out validation corpora the dataset is prepared from.
    test_corpus : Path
        The held-out test renders: the dataset's test split.
    manifest : Path, optional
        The labelled real clips the clip thresholds are tuned on and evaluated on; ``None``: none.
    log : StepLog
    stop_after : str, optional
        A step of :data:`STEPS`: the front end's prepare, train or tune stops the run there (after its evaluate
        the caller decides, as the musicnn results are written first).

    Returns
    -------
    FrontEndRun or None
        ``None`` when ``stop_after`` stopped it before the evaluation.
    """
    home = workdir / front.name
    home.mkdir(parents=True, exist_ok=True)

    # prepare
    dataset_path = workdir / "datasets" / front.name

    def fingerprint() -> Optional[str]:
        try:
            return json.loads((dataset_path / "prepare_info.json").read_text()).get("fingerprint")
        except (OSError, ValueError):
            return None

    t = time.perf_counter()
    before = fingerprint()
    build_dataset(train_corpora, dataset_path, taxonomy=settings.taxonomy, window_frames=front.window_frames,
                  hop_frames=front.hop_frames, num_proc=settings.num_proc, seed=settings.seed,
                  eval_data_dirs=[test_corpus], validation_data_dirs=val_corpora,
                  feature_extractor=InstrumentFeatureExtractor(**default_feature_settings(front.name)),
                  cache_dir=workdir / "datasets" / ".cache")
    info = json.loads((dataset_path / "prepare_info.json").read_text())
    log.step(f"prepare datasets/{front.name}", time.perf_counter() - t, before is not None and fingerprint() == before)
    if stop_after == front.step("prepare"):
        return None

    # train
    model_dir, tuned_dir = home / "model", home / "model-tuned"
    train_inputs = {"dataset": info["fingerprint"], "backbone_sha256": front.weights_sha256, "C": front.C,
                    "seed": settings.seed}
    if front.audioset_prior_weight and front.audioset_prior_labels:  # named only when used: the other heads'
        # stamps stay those of earlier runs
        train_inputs["audioset_prior"] = {"weight": front.audioset_prior_weight,
                                          "labels": list(front.audioset_prior_labels)}
    if mset.level_dbfs is not None:
        train_inputs["level"] = {"dbfs": mset.level_dbfs, "max_gain_db": mset.level_max_gain_db}
    t = time.perf_counter()
    trained, done = _stamped(home / "train.json", train_inputs, model_dir / "model.safetensors",
                             lambda: train_probe(dataset_path, front.weights, model_dir, home / "representations",
                                                 replace(mset, C=front.C), settings.seed,
                                                 backbone_type=front.name,
                                                 audioset_prior_weight=front.audioset_prior_weight,
                                                 audioset_prior_labels=front.audioset_prior_labels))
    log.step(front.log_name("train (linear probe)"), time.perf_counter() - t, done)
    if stop_after == front.step("train"):
        return None

    # tune
    tune_inputs = {"model": digest(trained["inputs"]), "manifest": None if manifest is None else str(manifest),
                   "manifest_sha256": None if manifest is None else sha256(manifest)}
    t = time.perf_counter()
    tuned, done = _stamped(home / "tune.json", tune_inputs, tuned_dir / "model.safetensors",
                           lambda: tune_on_real_clips(model_dir, tuned_dir, manifest, home / "tune-real-dev"))
    log.step(front.log_name("tune (real clips)" if manifest is not None
                            else "tune (no real clips: validation thresholds kept)"), time.perf_counter() - t, done)
    if stop_after == front.step("tune"):
        return None

    # evaluate
    eval_inputs = {"tuned": digest(tuned["inputs"]), "test": info["split_fingerprints"].get("test"),
                   "min_seconds": LONG_CLIP_SECONDS}
    t = time.perf_counter()
    evaluated, done = _stamped(home / "evaluate.json", eval_inputs, home / "evaluation" / "heldout" / "metrics.json",
                               lambda: evaluate_model(model_dir, tuned_dir, dataset_path, manifest, tuned,
                                                      home / "evaluation"))
    log.step(front.log_name("evaluate"), time.perf_counter() - t, done)
    results = {
        "dataset": {split: {k: v for k, v in entry.items() if k in ("recordings", "windows", "label_counts")}
                    for split, entry in info["splits"].items()},
        "training": {k: v for k, v in trained.items() if k not in ("inputs", "validation_thresholds")},
        "thresholds": {"validation": trained["validation_thresholds"], "real_dev": tuned["thresholds"],
                       "exported": "real_dev" if tuned["thresholds"] is not None else "validation"},
        "merlin_test": evaluated["merlin_test"],
        "real_dev": evaluated.get("real_dev"),
    }
    return FrontEndRun(dataset_path, info, tuned_dir, tuned, evaluated, results)


def _head_C(mset: MusicnnSettings, name: str) -> float:
    """The inverse L2 strength of the front end ``name``'s head."""
    return mset.efficientat_C if name == "efficientat" else mset.C


# -- the stage -----------------------------------------------------------------------------------------------------

def run_musicnn_recipe(workdir: Path, output: Path, settings: RecipeSettings, mset: MusicnnSettings,
                       weights: Path = DEFAULT_WEIGHTS, sampler_library: Optional[Path] = None,
                       real_dev: Optional[Path] = DEFAULT_REAL_DEV, stop_after: Optional[str] = None,
                       musicnet: Path = DEFAULT_MUSICNET_LABELS,
                       yamnet_weights: Path = FRONT_ENDS["yamnet"].default_weights,
                       efficientat_weights: Path = FRONT_ENDS["efficientat"].default_weights) -> dict:
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
    yamnet_weights, efficientat_weights : Path
        ``scripts/convert_yamnet.py``'s and ``scripts/convert_efficientat.py``'s safetensors.
    """
    workdir, output = Path(workdir), Path(output)
    workdir.mkdir(parents=True, exist_ok=True)
    log = step_log(workdir)
    home = workdir / "musicnn"
    home.mkdir(parents=True, exist_ok=True)
    vpo = Path(sampler_library) if sampler_library is not None else workdir / "libraries" / "VirtualPlayingOrchestra"

    # sources ---------------------------------------------------------------------------------------------------
    t = time.perf_counter()
    front_weights = {"yamnet": Path(yamnet_weights), "efficientat": Path(efficientat_weights)}
    records = [home / "sources.json"] + [workdir / name / "sources.json" for name in AUDIOSET_FRONT_ENDS]
    previous = [path.read_text() if path.is_file() else None for path in records]
    sources = check_sources(Path(weights), vpo, records[0])
    front_sources = {}
    for name, record in zip(AUDIOSET_FRONT_ENDS, records[1:]):
        record.parent.mkdir(exist_ok=True)
        front_sources[name] = check_front_end_weights(name, front_weights[name], record)
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

    # prepare ... evaluate ------------------------------------------------------------------------------------------
    # the validation pieces are chosen from the labels of all four training corpora (VPO's can change the choice)
    val_corpora = validation_corpora(workdir, settings, train_corpora, log, musicnet)
    test_corpus = recipe_corpora(workdir, settings)["test"]
    manifest = None if real_dev is None else Path(real_dev).expanduser().resolve()
    if manifest is not None and not manifest.is_file():
        print(f"[recipe musicnn] {manifest}: no labelled real clips there: the clip thresholds are not tuned on "
              f"real recordings and stay those of the {settings.heldout_library} validation windows (pass "
              "--real-dev MANIFEST to tune them)", flush=True)
        manifest = None
    musicnn_run = run_front_end(
        FrontEnd("musicnn", Path(weights), sources["musicnn_weights"]["sha256"], mset.window_frames, mset.hop_frames,
                 mset.C),
        workdir, settings, mset, train_corpora, val_corpora, test_corpus, manifest, log, stop_after)
    if musicnn_run is None:
        return {}
    results = {
        "settings": {"recipe": as_json(asdict(settings)), "musicnn": as_json(asdict(mset))},
        "sources": sources,
        "labels": list(musicnn_run.info["labels"]),
        **musicnn_run.results,
    }
    write_json(workdir / RESULTS_FILE, results)
    print(format_results(results), flush=True)
    if stop_after == "evaluate":
        return results

    # export ----------------------------------------------------------------------------------------------------
    t = time.perf_counter()
    done = is_exported(output / "musicnn", results)
    if not done:
        export_model(musicnn_run.tuned_dir, output / "musicnn", results, settings, mset)
    log.step(f"export {output / 'musicnn'}", time.perf_counter() - t, done)
    if stop_after == "export":
        return results

    # yamnet-prepare ... efficientat-evaluate: the same corpora, windows of the same seconds ------------------------
    runs = {"musicnn": musicnn_run}
    # the EfficientAT head's AudioSet prior goes only where the real clips can confirm it: the instruments with an
    # AudioSet class that enough of them hold for their clip thresholds to be tuned
    prior_labels = tuple(audioset_prior(well_covered_labels(manifest, results["labels"])))
    for name in AUDIOSET_FRONT_ENDS:
        frames = front_end_window_frames(mset, name)
        front = FrontEnd(name, front_weights[name], front_sources[name][f"{name}_weights"]["sha256"], frames,
                         front_end_window_frames(mset, name, mset.hop_frames), _head_C(mset, name),
                         mset.efficientat_audioset_prior if name == "efficientat" else 0.0,
                         prior_labels if name == "efficientat" else (), prefix=name)
        run = run_front_end(front, workdir, settings, mset, train_corpora, val_corpora, test_corpus, manifest, log,
                            stop_after)
        if run is None:
            return results
        runs[name] = run
        results[name] = {"sources": front_sources[name], "window_frames": frames, **run.results}
        if stop_after == f"{name}-evaluate":
            return results
    datasets = {name: run.dataset for name, run in runs.items()}

    # blend -------------------------------------------------------------------------------------------------------
    blend_dir = workdir / BLEND_NAME
    blend_inputs = {**{name: digest(run.tuned["inputs"]) for name, run in runs.items()},
                    "validation": None if manifest is not None
                    else [musicnn_run.info["split_fingerprints"].get("validation")]}
    t = time.perf_counter()
    blended, done = _stamped(home / "blend.json", blend_inputs, blend_dir / "ensemble_config.json",
                             lambda: tune_blend({name: run.tuned_dir for name, run in runs.items()}, blend_dir,
                                                manifest, datasets, mset, settings.taxonomy))
    log.step("blend (weights tuned on real clips)" if manifest is not None
             else "blend (weights tuned on validation windows)", time.perf_counter() - t, done)
    if stop_after == "blend":
        return results

    # blend-evaluate ------------------------------------------------------------------------------------------------
    blend_eval_inputs = {"blend": digest(blended["inputs"]),
                         **{name: digest(run.evaluated["inputs"]) for name, run in runs.items()}}
    t = time.perf_counter()
    blend_evaluated, done = _stamped(home / "blend-evaluate.json", blend_eval_inputs,
                                     home / "blend-evaluation" / "heldout" / "metrics.json",
                                     lambda: evaluate_blend(blend_dir, datasets, manifest, home / "blend-evaluation"))
    results["blend"] = {
        "members": list(runs), **{k: v for k, v in blended.items() if k != "inputs"},
        **{k: v for k, v in blend_evaluated.items() if k != "inputs"},
    }
    write_json(workdir / RESULTS_FILE, results)
    log.step("blend evaluate", time.perf_counter() - t, done)
    print(format_blend_results(results), flush=True)
    if stop_after == "blend-evaluate":
        return results

    # export-members: the AudioSet front ends' folders and the blend's ------------------------------------------------
    for name in AUDIOSET_FRONT_ENDS:
        t = time.perf_counter()
        card_results = {**results[name], "labels": results["labels"],
                        "sources": {**results[name]["sources"], "sampler_library": sources["sampler_library"]}}
        done = is_exported(output / name, results)
        if not done:
            export_model(runs[name].tuned_dir, output / name, card_results, settings,
                         replace(mset, C=_head_C(mset, name)), name=name, shipped=results)
        log.step(f"export {output / name}", time.perf_counter() - t, done)
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
                        help="the model folders go to OUTPUT/musicnn, OUTPUT/yamnet, OUTPUT/efficientat and "
                             f"OUTPUT/{BLEND_NAME}")
    parser.add_argument("--musicnet", type=Path, default=DEFAULT_MUSICNET_LABELS, metavar="DIR",
                        help="your MusicNet folder, as recipe.py's --musicnet (only the label CSVs are read; "
                             f"default {DEFAULT_MUSICNET_LABELS})")
    parser.add_argument("--sampler-library", type=Path, default=None, metavar="DIR",
                        help=f"your clone of {VPO_URL} (default WORKDIR/libraries/VirtualPlayingOrchestra)")
    parser.add_argument("--musicnn-weights", type=Path, default=DEFAULT_WEIGHTS, metavar="FILE",
                        help=f"scripts/convert_musicnn.py's output (default {DEFAULT_WEIGHTS})")
    for name in AUDIOSET_FRONT_ENDS:
        front = FRONT_ENDS[name]
        parser.add_argument(front.option, type=Path, default=front.default_weights, metavar="FILE",
                            help=f"scripts/{front.script}'s output (default {front.default_weights})")
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
                           stop_after=args.stop_after, musicnet=musicnet, yamnet_weights=args.yamnet_weights,
                           efficientat_weights=args.efficientat_weights)
    except (RecipeError, RenderError, ManifestError, MusicNetError) as exc:
        print(f"recipe_musicnn: error: {exc}", file=sys.stderr)
        return 2
    print(f"recipe_musicnn finished in {(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
