"""The MFCC recipe's models: their datasets, their training runs, their recording context, the seed12 view of
their scores and the ensemble blending them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..context import RecordingContext
from ..data.prepare import build_dataset, load_prepared
from ..data.taxonomy import get_taxonomy
from ..ensemble import EnsembleConfig, blend_probabilities
from ..evaluation.metrics import compute_instrument_metrics, tune_thresholds
from ..evaluation.predict_split import predict_split
from ..evaluation.tuning import tune_context, tune_ensemble
from ..modeling.feature_extraction_instrument import InstrumentFeatureExtractor, default_feature_settings
from .common import RecipeSettings, StepLog, timed, write_json
from .results import window_summary


def settings_of(settings: RecipeSettings, model_type: str) -> dict:
    """What decides one model: every setting but the worker count and the other models' own arguments."""
    current = {k: v for k, v in asdict(settings).items() if k != "num_proc"}
    current["models"] = {model_type: current["models"].get(model_type)}
    current["model_features"] = {model_type: current["model_features"].get(model_type, {})}
    return json.loads(json.dumps(current))  # as read back from JSON (tuples are lists)


def forget_results_of_other_settings(workdir: Path, settings: RecipeSettings) -> None:
    """Models and evaluations of a run with other settings are not "done" for this one: set them aside
    (``models.previous/<model>``, ``evaluation.previous``) so that they are trained and evaluated again.

    Each model is judged by its own settings (``models/recipe_settings.json``, one entry per model), so a
    change to the Transformer's arguments retrains the Transformer and leaves the CNN as it is.
    """
    stamp = workdir / "models" / "recipe_settings.json"
    made_with = json.loads(stamp.read_text()) if stamp.is_file() else {}
    if "train_libraries" in made_with:  # one stamp for all models, as written before per-model stamps
        made_with = {m: {**made_with, "models": {m: made_with["models"].get(m)},
                         "model_features": {m: made_with.get("model_features", {}).get(m, {})}}
                     for m in made_with["models"]}
    current = {m: settings_of(settings, m) for m in settings.models}
    changed = False
    for model_type in settings.models:
        folder = workdir / "models" / model_type
        if made_with.get(model_type) != current[model_type] and folder.is_dir() and any(folder.iterdir()):
            previous = workdir / "models.previous" / model_type
            shutil.rmtree(previous, ignore_errors=True)
            previous.parent.mkdir(parents=True, exist_ok=True)
            os.replace(folder, previous)
            changed = True
            print(f"[recipe] {model_type} settings changed: {folder} set aside as {previous}", flush=True)
    evaluation = workdir / "evaluation"
    if (changed or {m: made_with.get(m) for m in current} != current) and evaluation.is_dir() \
            and any(evaluation.iterdir()):
        previous = workdir / "evaluation.previous"
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(evaluation, previous)
        print(f"[recipe] settings changed: {evaluation} set aside as {previous}", flush=True)
    write_json(stamp, {**{m: v for m, v in made_with.items() if m not in current}, **current})


def dataset_paths(workdir: Path, settings: RecipeSettings, model_type: str) -> Dict[str, Path]:
    """``{"heldout": path, "indomain": path}`` of the datasets ``model_type`` trains and is evaluated on.

    The shared feature settings use ``datasets/heldout`` and ``datasets/indomain``; a model with features
    of its own gets ``datasets/heldout-<features>``, e.g. ``heldout-cqt84-deltas``.
    """
    features = settings.features_of(model_type)
    suffix = ""
    if features != settings.features_of(""):  # "": a model without features of its own

        n = default_feature_settings(features["feature_type"], features["n_coefficients"])["n_coefficients"]
        suffix = f"-{features['feature_type']}{n}" + ("-deltas" if features["include_deltas"] else "")
    return {kind: workdir / "datasets" / f"{kind}{suffix}" for kind in ("heldout", "indomain")}


def train_command(arguments: Sequence[str]) -> List[str]:
    """The command line that trains one model: the package's entry point in a new interpreter.

    A process per model gives each training run its own memory and its own ``accelerate`` state; the module
    (not a checkout's ``train.py``) is what an installed package has.
    """
    return [sys.executable, "-m", "instrument_classifier.training.run_train", *arguments]


def train_environment() -> Dict[str, str]:
    """The environment of :func:`train_command`: this very package first on the import path.

    ``python -m`` would otherwise import whichever ``instrument_classifier`` the working directory or the
    environment holds, which need not be the one running the recipe.
    """
    path = [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}


def family_view(y, p, labels: Sequence[str], taxonomy: str = "seed12"):
    """musicnet11 labels and scores seen through a coarser taxonomy: a family plays if any member plays,
    its score is the highest member score. Returns ``(y, p, family labels)``."""
    fine, coarse = get_taxonomy("musicnet11"), get_taxonomy(taxonomy)
    member = [coarse.label_of(fine.programs_of(label)[0]) for label in labels]
    families = [f for f in coarse.labels if f in member]
    yf = np.stack([np.max(y[:, [i for i, m in enumerate(member) if m == f]], axis=1) for f in families], axis=1)
    pf = np.stack([np.max(p[:, [i for i, m in enumerate(member) if m == f]], axis=1) for f in families], axis=1)
    return yf, pf, families


def seed12_metrics(scores: dict, context: Optional[dict], dataset_path: Path, window_frames: int,
                   labels: Sequence[str]) -> dict:
    """Window-level seed12 metrics of musicnet11 scores: family thresholds tuned on validation, scored on test.

    ``scores``: ``{split: (y_true, probabilities)}`` of the validation and test windows of ``dataset_path``.
    Returns ``{False: metrics}``, and ``True: metrics`` with the instrument scores first blended as the
    recording ``context`` (a stored :class:`~instrument_classifier.context.RecordingContext`) says, if given.
    """
    views = {False: scores}
    if context:
        context, (dataset, _, _) = RecordingContext(**context), load_prepared(dataset_path)
        positions = {split: dataset[split].select_columns(["recording_id", "start_frame"]) for split in scores}
        views[True] = {split: (y, context.apply(p, positions[split]["recording_id"], positions[split]["start_frame"],
                                                window_frames))
                       for split, (y, p) in scores.items()}
    metrics = {}
    for with_context, view in views.items():
        yv, pv, families = family_view(*view["validation"], labels)
        yt, pt, _ = family_view(*view["test"], labels)
        metrics[with_context] = compute_instrument_metrics(yt, pt, thresholds=tune_thresholds(yv, pv), labels=families)
    return metrics


def build_ensemble(scores, datasets: Dict[str, Dict[str, Path]], settings: RecipeSettings):
    """Blend the trained models: weights, thresholds and context tuned on the held-out validation windows
    (:func:`~instrument_classifier.evaluation.tuning.tune_ensemble`), then scored on both test sets as the models are.

    ``scores(model_type, kind, split)``: ``(y_true, probabilities)`` of a model on ``datasets[model_type][kind]``.
    Returns ``(EnsembleConfig, {kind: window summary, kind + "+context": ...})``.
    """
    members = list(settings.models)
    labels = list(get_taxonomy(settings.taxonomy).labels)

    def blended(kind: str, split: str):
        runs = [scores(m, kind, split) for m in members]
        return runs[0][0], [p for _, p in runs]

    def positions(kind: str, split: str):
        dataset, _, _ = load_prepared(datasets[members[0]][kind])
        rows = dataset[split].select_columns(["recording_id", "start_frame"])
        return rows["recording_id"], rows["start_frame"]

    y_val, p_val = blended("heldout", "validation")
    tuned = tune_ensemble(y_val, p_val, *positions("heldout", "validation"), settings.window_frames)
    config = EnsembleConfig(members=[f"../{m}" for m in members], weights=tuned["weights"], labels=labels,
                            thresholds=tuned["thresholds"], context=tuned["context"].to_dict(),
                            taxonomy=settings.taxonomy, window_frames=settings.window_frames,
                            validation=tuned["validation"])
    context = RecordingContext(**config.context)
    results = {}
    for kind in ("heldout", "indomain"):
        mixed = {}
        for split in ("validation", "test"):
            y, probs = blended(kind, split)
            mixed[split] = (y, blend_probabilities(probs, config.weights))
        family = seed12_metrics(mixed, config.context, datasets[members[0]][kind], settings.window_frames, labels)
        y_test, p_test = mixed["test"]
        results[kind] = window_summary(
            compute_instrument_metrics(y_test, p_test, thresholds=config.thresholds, labels=labels), family[False])
        with_context = context.apply(p_test, *positions(kind, "test"), settings.window_frames)
        results[f"{kind}+context"] = {
            **window_summary(compute_instrument_metrics(y_test, with_context, thresholds=context.thresholds,
                                                         labels=labels), family[True]),
            "context": config.context,
        }
    return config, results


def add_missing_context(model_dir: Path, dataset_path: Path) -> bool:
    """Tune the recording context on validation into ``model_dir/config.json`` if it has none; True if it did."""
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    if config.get("context"):
        return False
    y, p = predict_split(model_dir, dataset_path, "validation")
    dataset, _, _ = load_prepared(dataset_path)
    rows = dataset["validation"].select_columns(["recording_id", "start_frame"])
    context = tune_context(y, p, rows["recording_id"], rows["start_frame"], int(config["window_frames"]))
    write_json(config_path, {**config, "context": context.to_dict()})
    print(f"[recipe] {model_dir.name}: recording context {context.describe()} (validation micro F1 "
          f"{context.validation_f1_micro:.3f}, without {context.validation_f1_micro_without:.3f})", flush=True)
    return True


def prepare_datasets(workdir: Path, settings: RecipeSettings, datasets: Dict[str, Dict[str, Path]],
                     train_corpora: Sequence[Path], indomain_corpora: Sequence[Path], h_test: Path, h_val: Path,
                     log: StepLog) -> None:
    """The prepare step: each distinct dataset of ``datasets`` (:func:`dataset_paths`) built once.

    ``heldout`` datasets take their validation and test windows from the held-out library (``h_val``,
    ``h_test``), ``indomain`` ones from the training libraries' dry renders; both share the training windows.
    """

    prepared = set()
    for model_type in settings.models:
        features = settings.features_of(model_type)
        extractor = InstrumentFeatureExtractor(
            **default_feature_settings(features["feature_type"], features["n_coefficients"]),
            include_deltas=features["include_deltas"])
        for kind, eval_dirs, val_dirs in (("heldout", [h_test], [h_val]), ("indomain", indomain_corpora, None)):
            path = datasets[model_type][kind]
            if path in prepared:
                continue
            t = time.perf_counter()
            build_dataset(train_corpora, path, taxonomy=settings.taxonomy, window_frames=settings.window_frames,
                          hop_frames=settings.hop_frames, num_proc=settings.num_proc, seed=settings.seed,
                          eval_data_dirs=eval_dirs, validation_data_dirs=val_dirs, feature_extractor=extractor,
                          cache_dir=workdir / "datasets" / ".cache")
            prepared.add(path)
            log.step(f"prepare {path.name}", time.perf_counter() - t, False)


def train_all(workdir: Path, settings: RecipeSettings, datasets: Dict[str, Dict[str, Path]], log: StepLog) -> None:
    """The train step: each model of ``settings.models`` trained in its own process on its held-out dataset
    (skipped when its folder holds a finished run made with the same settings)."""
    models_dir = workdir / "models"
    forget_results_of_other_settings(workdir, settings)
    for model_type, args in settings.models.items():
        out = models_dir / model_type
        done = (out / "model.safetensors").is_file() and (out / "all_results.json").is_file()
        seed = [] if "--seed" in args else ["--seed", str(settings.seed)]  # a model's own seed wins, once
        command = train_command(["--model_type", model_type, "--dataset_path", str(datasets[model_type]["heldout"]),
                                 "--output_dir", str(out), *seed, *settings.common_train_args, *args])
        timed(log, f"train {model_type}", lambda: subprocess.run(command, check=True, env=train_environment()), done)
