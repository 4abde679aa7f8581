"""The musicnn recipe's train steps: the linear head learned on the frozen front end's (musicnn's or YAMNet's)
representation of every window (cached), its window thresholds tuned on the held-out validation windows."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic_write import write_dir
from ..data.prepare import load_prepared
from ..evaluation.metrics import compute_instrument_metrics, tune_thresholds
from ..training import linear_probe
from ..training.linear_probe import window_representations
from .common import MusicnnSettings, RecipeError, digest, sha256
from .results import window_summary

__all__ = ["train_probe"]

def _representations(model, dataset, split: str, key: str, cache: Path, batch_size: int):
    """``(x, y)`` of a prepared split: the front end's representations and window labels, cached under ``key`` (the
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


def train_probe(dataset_path: Path, weights: Path, out: Path, cache: Path, mset: MusicnnSettings, seed: int,
                backbone_type: str = "musicnn", audioset_prior_weight: float = 0.0,
                audioset_prior_labels: Sequence[str] = ()) -> dict:
    """Fit the linear head on the train windows, tune window thresholds on the validation windows, save to ``out``.

    ``backbone_type`` is the front end's family ("musicnn", "yamnet" or "efficientat",
    :func:`~instrument_classifier.training.linear_probe.new_classifier`); ``weights`` its converted safetensors.
    ``audioset_prior_weight`` (EfficientAT only): the share of AudioSet's own logit in the logits of
    ``audioset_prior_labels`` (the config's ``audioset_prior``); the window thresholds are tuned with it.

    The saved feature extractor brings every recording to ``mset.level_dbfs`` (when set): the model's inputs
    from then on, while the training windows keep the levels they were prepared at.

    Returns ``{"absent_labels", "train_windows", "validation_windows", "validation": window summary,
    "validation_thresholds": {label: t}}``, with a prior ``"audioset_prior": {"weight", "labels"}``, with a level
    ``"level": {"dbfs", "max_gain_db"}``.
    """

    model, fe = linear_probe.new_classifier(str(weights), backbone_type=backbone_type)
    info = linear_probe._check_datasets([str(dataset_path)], fe)
    if info["taxonomy"] != model.config.taxonomy:
        model, fe = linear_probe.new_classifier(str(weights), info["taxonomy"], fe, backbone_type)
    data, prepared, _ = load_prepared(dataset_path)
    backbone = sha256(Path(weights))

    def key(split: str) -> str:
        return digest({"split": prepared["split_fingerprints"][split], "backbone": backbone})

    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    with_prior = bool(audioset_prior_weight and audioset_prior_labels)
    if with_prior:
        if backbone_type != "efficientat":
            raise ValueError(f"an AudioSet prior needs the EfficientAT head, not {backbone_type!r}")
        linear_probe.set_audioset_prior(model, audioset_prior_weight, audioset_prior_labels)
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
    fe = linear_probe.with_level(fe, mset.level_dbfs, mset.level_max_gain_db)
    write_dir(out, lambda folder: (model.save_pretrained(folder), fe.save_pretrained(folder)))
    return {"absent_labels": absent, "train_windows": int(len(x)), "validation_windows": int(len(x_val)),
            **({"audioset_prior": {"weight": audioset_prior_weight, "labels": list(model.config.audioset_prior)}}
               if with_prior else {}),
            **({"level": {"dbfs": mset.level_dbfs, "max_gain_db": mset.level_max_gain_db}}
               if mset.level_dbfs is not None else {}),
            "validation": window_summary(metrics, None),
            "validation_thresholds": dict(zip(labels, np.round(thresholds, 4).tolist()))}
