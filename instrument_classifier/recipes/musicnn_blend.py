"""The musicnn stage's blend of its three models (musicnn, YAMNet and EfficientAT): the weights and the clip
thresholds tuned on the labelled real clips (or, without them, on the held-out validation windows), the ensemble
folder, its evaluation and its export with a model card."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from ..atomic_write import write_dir
from ..data.prepare import load_prepared
from ..ensemble import EnsembleConfig
from ..evaluation.clips import evaluate_clips, read_manifest
from ..evaluation.evaluate_models import evaluate_models
from ..evaluation.predict_split import predict_split
from ..evaluation.report import fmt, markdown_table
from ..evaluation.tuning import tune_blend_on_clips, tune_ensemble
from ..inference import load_model, predict_timeline
from ..local_paths import strip_local_paths
from ..modeling.feature_extraction_instrument import default_feature_settings
from .cards import library_title
from .common import MusicnnSettings, RecipeSettings, as_json, write_json
from .musicnn_card import EFFICIENTAT_SOURCE, RESULTS_FILE, YAMNET_SOURCE, level_sentence
from .real_clips import clip_summary, cross_validated_long_row, long_clip_metrics
from .results import model_key, window_summary

__all__ = ["BLEND_NAME", "tune_blend", "evaluate_blend", "export_blend", "is_blend_exported", "blend_card"]

#: The ensemble folder's name, in the work folder and in OUTPUT.
BLEND_NAME = "musicnn-yamnet-efficientat"
#: How the card names each member.
TITLES = {"musicnn": "musicnn", "yamnet": "YAMNet", "efficientat": "EfficientAT"}


def _window_probs(model, extractor, clips) -> list:
    return [predict_timeline(model, extractor, row.file).window_probs for row in clips]


def tune_blend(member_dirs: dict, out: Path, manifest: Optional[Path], datasets: dict, mset: MusicnnSettings,
               taxonomy: str) -> dict:
    """Write the ensemble folder ``out`` (members ``member_dirs``, ``{name: model folder}`` with musicnn first, by
    relative path) with the weights and clip thresholds tuned on the clips of ``manifest``
    (:func:`~instrument_classifier.evaluation.tuning.tune_blend_on_clips`); without a manifest, both from the
    held-out validation windows of ``datasets`` (``{name: prepared dataset}``,
    :func:`~instrument_classifier.evaluation.tuning.tune_ensemble`). Returns what was tuned."""
    names = list(member_dirs)
    members = [load_model(member_dirs[name], device="cpu") for name in names]
    first = members[0][0]
    labels = [first.config.id2label[i] for i in range(first.config.num_labels)]
    if manifest is not None:
        clips = read_manifest(manifest, labels)
        y_true = np.array([[label in row.instruments for label in labels] for row in clips], dtype=np.int8)
        tuned = tune_blend_on_clips(y_true, [_window_probs(model, extractor, clips) for model, extractor in members])
        weights, thresholds = tuned["weights"], tuned["thresholds"]
        tuned_on, found = "real_dev", {"cross_validated": tuned["cross_validated"],
                                       "roc_auc_macro": tuned["roc_auc_macro"], "candidates": tuned["candidates"]}
    else:
        splits = [predict_split(member_dirs[name], datasets[name], "validation") for name in names]
        y_val, probs = splits[0][0], [p for _, p in splits]  # the members' windows are the same windows
        dataset, _, _ = load_prepared(datasets[names[0]])
        rows = dataset["validation"].select_columns(["recording_id", "start_frame"])
        tuned = tune_ensemble(y_val, probs, rows["recording_id"], rows["start_frame"], mset.window_frames)
        weights, thresholds = list(tuned["weights"]), tuned["thresholds"]
        tuned_on, found = "validation", {"validation": tuned["validation"]}
    weights = [round(float(w), 4) for w in weights]
    record = {"tuned_on": tuned_on, "weights": weights,
              "thresholds": dict(zip(labels, np.round(thresholds, 4).tolist())), **found}
    grid = default_feature_settings(names[0])
    config = EnsembleConfig(
        members=[_relative(member_dirs[name], out) for name in names], weights=weights, labels=labels,
        thresholds=[float(t) for t in thresholds], context=None, taxonomy=taxonomy, window_frames=mset.window_frames,
        sampling_rate=grid["sampling_rate"], hop_length=grid["hop_length"],
        validation={k: v for k, v in record.items() if k in ("tuned_on", "cross_validated", "roc_auc_macro",
                                                             "validation")})
    write_dir(out, lambda folder: config.save(folder))
    return record


def _relative(member: Path, ensemble: Path) -> str:
    """``member`` relative to ``ensemble`` (siblings' parents in the work folder: ``../musicnn/model-tuned``)."""
    return Path(os.path.relpath(Path(member).resolve(), Path(ensemble).resolve())).as_posix()


def evaluate_blend(blend_dir: Path, datasets: dict, manifest: Optional[Path], out: Path) -> dict:
    """The ensemble on the held-out test windows (its members' datasets, ``out/heldout``) and, with a manifest,
    on the real clips (``out/real-dev``). Returns ``{"merlin_test": window summary, "real_dev": ... or None}``."""
    report = evaluate_models([str(blend_dir)], dataset=[str(path) for path in datasets.values()], split="test",
                             output_dir=out / "heldout", progress=False)
    evaluated = {"merlin_test": window_summary(model_key(report, blend_dir.name)["window"], None), "real_dev": None}
    if manifest is not None:
        clips_dir = out / "real-dev"
        clip_report = evaluate_clips(str(blend_dir), manifest, output_dir=clips_dir, progress=False)
        entry = model_key(clip_report, blend_dir.name)
        evaluated["real_dev"] = {
            "manifest": str(manifest), "num_clips": clip_report["num_clips"], "tuned": clip_summary(entry["clips"]),
            "long_clips": long_clip_metrics(clips_dir, manifest),
            "by_folder": {folder: clip_summary(m) for folder, m in entry["by_folder"].items()},
        }
    return evaluated


def blend_card(results: dict, settings: RecipeSettings) -> str:
    """The ensemble folder's README.md: real-clip results first, then the held-out synthetic test, the members,
    licences and how to load it."""
    blend, heldout = results["blend"], library_title(settings.heldout_library)
    names, weights = blend["members"], blend["weights"]
    titles = " + ".join(TITLES[name] for name in names)
    blended = " + ".join(f"{w:g} {TITLES[name]}" for name, w in zip(names, weights))
    lines = [
        "---",
        "license: other",
        "license_name: musicnn-isc-yamnet-apache-2.0-efficientat-mit-and-training-data",
        "pipeline_tag: audio-classification",
        "tags: [audio, audio-classification, music, instrument-recognition, multi-label, musicnet, "
        f"{', '.join(names)}, ensemble, local-only]",
        "---",
        "",
        f"# instrument-classifier {titles}",
        "",
        f"Which of the {len(results['labels'])} MusicNet instruments play ({', '.join(results['labels'])}), window by "
        f"window (3 s) and per clip: the window probabilities of {len(names)} linear heads on frozen front ends, "
        f"blended {blended}, then scored per clip and cut at one threshold per instrument. Built by `make models` "
        f"(`python -m instrument_classifier.recipe_musicnn`); bundled as `instrument_classifier/pretrained/"
        f"{BLEND_NAME}`, the default model of `predict` and the Space.",
        "",
    ]
    real, cv = blend.get("real_dev"), blend.get("cross_validated")
    if real is not None:
        m, long = real["tuned"], real.get("long_clips")
        lines += [
            "## Results on real recordings (the development set)",
            "",
            f"The weights ({len(blend['candidates'])} weightings in tenths tried) and the clip thresholds were tuned "
            f"on these {real['num_clips']} labelled real clips: the weights with the best cross-validated micro F1 "
            f"(2-fold over the clips, {cv['repeats']} repeats; within 0.01 of the best, fewer false instruments, "
            "then higher macro ROC-AUC), the thresholds on all clips. The tuned row is therefore optimistic; the "
            "cross-validated row is what the tuning reaches on clips it did not see, for the chosen weights (their "
            "choice among the weightings is not cross-validated).",
            "",
        ]
        rows = [[f"all {m['num_clips']}", "tuned on them", fmt(m["roc_auc_macro"]), fmt(m["f1_micro"]),
                 fmt(m["false_alarms_per_clip"], 2)],
                [f"all {m['num_clips']}", "tuned on other clips (cross-validated)", fmt(m["roc_auc_macro"]),
                 fmt(cv["f1_micro"]), fmt(cv["false_alarms_per_clip"], 2)]]
        if long is not None:
            rows.append([f"the {long['num_clips']} of {long['min_seconds']:g} s or more", "tuned on all",
                         fmt(long["roc_auc_macro"]), fmt(long["f1_micro"]), fmt(long["false_alarms_per_clip"], 2)])
            cv_row = cross_validated_long_row(long)
            if cv_row:
                rows.append(cv_row)
        for name in names:
            member = results.get("real_dev") if name == "musicnn" else results[name].get("real_dev")
            if member is not None:
                rows.append([f"all {m['num_clips']}", f"{TITLES[name]} alone, cross-validated",
                             fmt(member["tuned"]["roc_auc_macro"]), fmt(member["cross_validated"]["f1_micro"]),
                             fmt(member["cross_validated"]["false_alarms_per_clip"], 2)])
        lines += markdown_table(["clips", "thresholds", "macro ROC-AUC", "micro F1", "false instruments per clip"],
                                rows) + [""]
    else:
        lines += ["No labelled real recordings were given: the weights (best validation macro ROC-AUC) and "
                  f"the thresholds were tuned on the held-out {heldout} validation windows.", ""]
    t = blend["merlin_test"]
    lines += [
        f"## Results on the synthetic held-out test ({heldout})",
        "",
        f"MusicNet's test pieces rendered in full with {heldout} + rooms and noise, window level (3-s windows), "
        f"with this folder's thresholds.{_prepared_windows_note(results)}",
        "",
        *markdown_table(["macro ROC-AUC", "micro F1", "macro F1"],
                        [[fmt(t["roc_auc_macro"]), fmt(t["f1_micro"]), fmt(t["f1_macro"])]]),
        "",
        "## Members",
        "",
        "- `../musicnn`: a linear head on musicnn's `MTT_musicnn` (187 frames of 16 ms per window); its own folder "
        "and card.",
        "- `../yamnet`: a linear head on Google's YAMNet (374 frames of 8 ms per window, the same 47,872 samples at "
        "16 kHz); its own folder and card.",
        "- `../efficientat`: a linear head on EfficientAT's `mn04` MobileNetV3 (1496 frames of 2 ms per window at "
        f"32 kHz, the same 2.992 s){_prior_clause(results)}; its own folder and card.",
        "",
        "The heads were trained on the same windows of the same renders (see their cards)."
        f"{level_sentence(results['training'].get('level'))} `ensemble_config.json` "
        "names the members by path relative to this folder and holds the weights and thresholds.",
        "",
        "## How to use",
        "",
        "With this package (the members must sit beside this folder, as "
        f"{', '.join(f'`../{name}`' for name in names)}):",
        "",
        "```bash",
        f"instrument-classifier predict --model path/to/{BLEND_NAME} recording.wav",
        "```",
        "",
        "```python",
        "from instrument_classifier.inference import load_model, predict_timeline",
        "",
        f"ensemble, _ = load_model(\"path/to/{BLEND_NAME}\")  # each member brings its own feature extractor",
        "timeline = predict_timeline(ensemble, None, \"recording.wav\")",
        "print(timeline.detected)",
        "```",
        "",
        "It cannot be loaded with `from_pretrained` alone (it has no weights of its own), and `instrument-classifier "
        "push-model` refuses it: push its members to the Hub instead (each loads with `from_pretrained(..., "
        "trust_remote_code=True)`) and list them in `ensemble_config.json`.",
        "",
        "## Licences",
        "",
        "- musicnn's weights (in `../musicnn`): ISC licence (musicnn 0.1.0, (c) Music Technology Group, Universitat "
        "Pompeu Fabra 2019); musicnn was trained on MagnaTagATune, licensed CC BY-NC-SA 3.0. Whether that licence "
        "reaches weights trained on it is unsettled; commercial users should check before relying on this model.",
        "- YAMNet's weights (in `../yamnet`): Apache-2.0 (Google, tensorflow/models), converted from "
        f"{YAMNET_SOURCE}; trained on AudioSet (labels CC BY 4.0).",
        "- EfficientAT's weights (in `../efficientat`): MIT (Copyright (c) 2022 Florian Schmid), converted from "
        f"{EFFICIENTAT_SOURCE}; trained on AudioSet (labels CC BY 4.0).",
        "- The labels the heads were trained on: MusicNet (Thickstun, Harchaoui & Kakade), CC BY 4.0. The training "
        "audio was rendered from sample libraries and is not shipped (see the members' cards).",
        "- The heads, the blend, the thresholds and the code: this package's licence.",
        "",
    ]
    return "\n".join(lines)


def export_blend(src: Path, folder: Path, results: dict, settings: RecipeSettings) -> None:
    """``folder`` (replaced atomically): ``src``'s ensemble config with its members as siblings (``../musicnn``
    etc.), README.md and recipe_musicnn_results.json."""
    config = EnsembleConfig.load(src)
    config.members = [f"../{name}" for name in results["blend"]["members"]]

    def write(tmp: Path) -> None:
        config.save(tmp)
        (tmp / "README.md").write_text(blend_card(results, settings))
        write_json(tmp / RESULTS_FILE, strip_local_paths(results))

    write_dir(folder, write)


def _prepared_windows_note(results: dict) -> str:
    """With a level normalisation: the held-out windows are read as prepared, without it (empty otherwise)."""
    if not results["training"].get("level"):  # the top level holds musicnn's results
        return ""
    return (" The windows are read as `prepare` cut them, at the levels the renders were made at; `predict` first "
            "brings each recording to one level, and its figures on these pieces differ (docs/experiments.md, "
            "\"Recording level\").")


def _prior_clause(results: dict) -> str:
    """The EfficientAT member's AudioSet prior, as a clause of the members list (empty without one)."""
    prior = results.get("efficientat", {}).get("training", {}).get("audioset_prior")
    if not prior:
        return ""
    return (f", whose logits for {', '.join(prior['labels'])} are mixed {1 - prior['weight']:g} / "
            f"{prior['weight']:g} with AudioSet's own class for that instrument (the AudioSet prior)")


def is_blend_exported(src: Path, folder: Path, results: dict) -> bool:
    """``folder`` holds these results and ``src``'s weights and thresholds (else the export is made again)."""
    try:
        if json.loads((folder / RESULTS_FILE).read_text()) != as_json(strip_local_paths(results)):
            return False
        ours, theirs = EnsembleConfig.load(src), EnsembleConfig.load(folder)
    except (OSError, ValueError):
        return False
    return (folder / "README.md").is_file() and (ours.weights, ours.thresholds) == (theirs.weights, theirs.thresholds)
