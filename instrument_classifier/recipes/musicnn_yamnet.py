"""The musicnn stage's YAMNet model: the same linear probe as musicnn's on Google's YAMNet front end, from the same
corpora and windows, tuned and evaluated as musicnn's (``yamnet-prepare`` to ``yamnet-evaluate`` in
:mod:`~.musicnn`'s step list), and its sources check (the converted weights)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, List, Optional

from ..data.prepare import build_dataset
from ..modeling import InstrumentFeatureExtractor
from ..modeling.feature_extraction_instrument import default_feature_settings
from ..modeling.yamnet_frontend import YamnetFrontend
from .common import (
    REPO_ROOT,
    MusicnnSettings,
    RecipeError,
    RecipeSettings,
    StepLog,
    as_json,
    digest,
    sha256,
    write_json,
)
from .musicnn_evaluation import evaluate_model, tune_on_real_clips
from .musicnn_probe import train_probe
from .real_clips import LONG_CLIP_SECONDS

__all__ = ["DEFAULT_YAMNET_WEIGHTS", "check_yamnet_weights", "yamnet_window_frames", "run_yamnet_model"]

DEFAULT_YAMNET_WEIGHTS = REPO_ROOT / "yamnet_audioset.safetensors"
#: scripts/convert_yamnet.py's docstring: how the weights are made (a test keeps the two equal).
YAMNET_CONVERSION_COMMAND = (
    "python scripts/convert_yamnet.py --tflite yamnet.tflite --output yamnet_audioset.safetensors"
)


def missing_yamnet_message(weights: Path) -> str:
    return (f"{weights}: YAMNet weights not found. scripts/convert_yamnet.py converts them from the TF-Hub YAMNet "
            "TFLite model (Apache-2.0; yamnet.tflite of github.com/Jaskaran197/Speaker-Detector at "
            "4ec29b6938f1051fe36b46786f8d486d8b74a38e, sha1 7f54d20da3b32164849274af1ab0651c75cac681), in a Python "
            "with tensorflow 2.15, torch, numpy and safetensors, run from the repository:\n\n"
            f"    {YAMNET_CONVERSION_COMMAND}\n\n"
            f"then pass the file with --yamnet-weights (default {DEFAULT_YAMNET_WEIGHTS}).")


def check_yamnet_weights(weights: Path, out: Path) -> dict:
    """Load ``weights`` into :class:`YamnetFrontend` (strictly) and record its sha256 and provenance in ``out``.

    Raises
    ------
    RecipeError
        The file is missing (the message says how to convert it) or is not a YamnetFrontend state dict.
    """
    weights = Path(weights).expanduser()
    if not weights.is_file():
        raise RecipeError(missing_yamnet_message(weights))
    try:
        YamnetFrontend.from_safetensors(str(weights))
    except Exception as exc:  # safetensors' and torch's own error types: not a file of convert_yamnet.py
        raise RecipeError(f"{weights}: not YAMNet weights of yamnet_frontend.YamnetFrontend ({str(exc)[:200]}); "
                          "make them with scripts/convert_yamnet.py") from None
    provenance_file = weights.with_suffix(".json")  # convert_yamnet.py writes it beside the weights
    provenance = {}
    if provenance_file.is_file():
        try:
            provenance = json.loads(provenance_file.read_text())
        except ValueError:
            raise RecipeError(f"{provenance_file}: not JSON (convert_yamnet.py writes it beside the "
                              "weights)") from None
    record = {"yamnet_weights": {"path": str(weights.resolve()), "sha256": sha256(weights),
                                 "source": provenance.get("source", {}), "licence": provenance.get("licence"),
                                 "provenance_file": str(provenance_file) if provenance else None}}
    write_json(out, record)
    return record


def yamnet_window_frames(mset: MusicnnSettings) -> int:
    """YAMNet frames of a musicnn window (374 for 187): windows of the same samples, so the two coincide."""
    musicnn_hop = default_feature_settings("musicnn")["hop_length"]
    yamnet_hop = default_feature_settings("yamnet")["hop_length"]
    if (mset.window_frames * musicnn_hop) % yamnet_hop or (mset.hop_frames * musicnn_hop) % yamnet_hop:
        raise RecipeError(f"musicnn windows of {mset.window_frames} frames (hop {mset.hop_frames}) are no whole "
                          "number of YAMNet frames")
    return mset.window_frames * musicnn_hop // yamnet_hop


def run_yamnet_model(workdir: Path, settings: RecipeSettings, mset: MusicnnSettings, weights: Path, sources: dict,
                     train_corpora: List[Path], val_corpora: List[Path], test_corpus: Path,
                     manifest: Optional[Path], log: StepLog, stamp_matches: Callable,
                     stop_after: Optional[str] = None) -> Optional[dict]:
    """The YAMNet model's prepare, train, tune and evaluate steps (``workdir/yamnet``, ``datasets/yamnet``).

    ``sources`` is :func:`check_yamnet_weights`' record; ``stamp_matches`` the stage's stamp check. Returns the
    model's results (as the stage's musicnn results: ``sources``, ``dataset``, ``training``, ``thresholds``,
    ``merlin_test``, ``real_dev``) plus the paths the blend needs (``_dataset``, ``_tuned``, ``_tune_inputs``),
    or ``None`` when ``stop_after`` stopped it.
    """
    home = workdir / "yamnet"
    home.mkdir(parents=True, exist_ok=True)

    # yamnet-prepare: the same corpora, windows of the same samples
    dataset_path = workdir / "datasets" / "yamnet"
    frames = yamnet_window_frames(mset)
    hop = mset.hop_frames * frames // mset.window_frames

    def fingerprint() -> Optional[str]:
        try:
            return json.loads((dataset_path / "prepare_info.json").read_text()).get("fingerprint")
        except (OSError, ValueError):
            return None

    t = time.perf_counter()
    before = fingerprint()
    build_dataset(train_corpora, dataset_path, taxonomy=settings.taxonomy, window_frames=frames, hop_frames=hop,
                  num_proc=settings.num_proc, seed=settings.seed, eval_data_dirs=[test_corpus],
                  validation_data_dirs=val_corpora,
                  feature_extractor=InstrumentFeatureExtractor(**default_feature_settings("yamnet")),
                  cache_dir=workdir / "datasets" / ".cache")
    info = json.loads((dataset_path / "prepare_info.json").read_text())
    log.step("prepare datasets/yamnet", time.perf_counter() - t, before is not None and fingerprint() == before)
    if stop_after == "yamnet-prepare":
        return None

    # yamnet-train
    model_dir, tuned_dir = home / "model", home / "model-tuned"
    train_inputs = {"dataset": info["fingerprint"], "backbone_sha256": sources["yamnet_weights"]["sha256"],
                    "C": mset.C, "seed": settings.seed}
    t = time.perf_counter()
    trained = stamp_matches(home / "train.json", train_inputs, model_dir / "model.safetensors")
    done = trained is not None
    if not done:
        result = train_probe(dataset_path, Path(weights), model_dir, home / "representations", mset, settings.seed,
                             backbone_type="yamnet")
        trained = {"inputs": as_json(train_inputs), **result}
        write_json(home / "train.json", trained)
    log.step("yamnet train (linear probe)", time.perf_counter() - t, done)
    if stop_after == "yamnet-train":
        return None

    # yamnet-tune
    tune_inputs = {"model": digest(trained["inputs"]), "manifest": None if manifest is None else str(manifest),
                   "manifest_sha256": None if manifest is None else sha256(manifest)}
    t = time.perf_counter()
    tuned = stamp_matches(home / "tune.json", tune_inputs, tuned_dir / "model.safetensors")
    done = tuned is not None
    if not done:
        tuned = {"inputs": as_json(tune_inputs),
                 **tune_on_real_clips(model_dir, tuned_dir, manifest, home / "tune-real-dev")}
        write_json(home / "tune.json", tuned)
    log.step("yamnet tune (real clips)" if manifest is not None else "yamnet tune (no real clips: validation "
             "thresholds kept)", time.perf_counter() - t, done)
    if stop_after == "yamnet-tune":
        return None

    # yamnet-evaluate
    eval_inputs = {"tuned": digest(tuned["inputs"]), "test": info["split_fingerprints"].get("test"),
                   "min_seconds": LONG_CLIP_SECONDS}
    t = time.perf_counter()
    evaluated = stamp_matches(home / "evaluate.json", eval_inputs, home / "evaluation" / "heldout" / "metrics.json")
    done = evaluated is not None
    if not done:
        evaluated = {"inputs": as_json(eval_inputs),
                     **evaluate_model(model_dir, tuned_dir, dataset_path, manifest, tuned, home / "evaluation")}
        write_json(home / "evaluate.json", evaluated)
    log.step("yamnet evaluate", time.perf_counter() - t, done)
    results = {
        "sources": sources,
        "window_frames": frames,
        "dataset": {split: {k: v for k, v in entry.items() if k in ("recordings", "windows", "label_counts")}
                    for split, entry in info["splits"].items()},
        "training": {k: v for k, v in trained.items() if k not in ("inputs", "validation_thresholds")},
        "thresholds": {"validation": trained["validation_thresholds"], "real_dev": tuned["thresholds"],
                       "exported": "real_dev" if tuned["thresholds"] is not None else "validation"},
        "merlin_test": evaluated["merlin_test"],
        "real_dev": evaluated.get("real_dev"),
    }
    return {**results, "_dataset": dataset_path, "_tuned": tuned_dir, "_tune_inputs": tuned["inputs"],
            "_eval_inputs": evaluated["inputs"]}
