"""The bundled MFCC folders: their export (model files, results, card) and their model cards."""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

from huggingface_hub import EvalResult, ModelCardData

from ..atomic_write import replace_dir, write_text
from ..data.taxonomy import get_taxonomy
from ..evaluation.report import fmt, markdown_table
from ..training.model_card import usage_lines
from .common import LIBRARIES, MODELING_DIR, RecipeError, RecipeSettings, write_json
from .real_clips import measure_real_clips


def _synthetic_results(entry: dict, settings: RecipeSettings) -> List[str]:
    """The card's text on the synthetic held-out and in-domain tests (``entry``: one model's recipe results)."""
    seconds = settings.heldout_validation_seconds
    validation = ("the train pieces set aside from training, rendered in full" if seconds is None
                  else f"the first {seconds:g} s of the train pieces set aside from training")
    rows = []
    test_sets = {"heldout": f"held-out library ({settings.heldout_library}) + room/noise",
                 "indomain": f"training libraries ({', '.join(settings.train_libraries)}), dry"}
    for kind, label in test_sets.items():
        for key, name in ((kind, label), (f"{kind}+context", f"{label}, with recording context")):
            if key not in entry:
                continue
            m = entry[key]
            seven = "–" if m["mean_f1_7"] is None else f"{m['mean_f1_7']:.3f}"
            s12 = f"{m['seed12']['f1_macro']:.3f}" if "seed12" in m else "–"
            rows.append([name, f"{m['roc_auc_macro']:.3f}", f"{m['f1_micro']:.3f}", f"{m['f1_macro']:.3f}",
                         seven, s12])
    context = entry.get("heldout+context", {}).get("context")
    return [
        f"MusicNet's 320 train scores synthesized with {describe_libraries(settings.train_libraries)} (velocity "
        f"jitter ±{settings.velocity_jitter}, drawn rooms, EQ, noise and levels) trained it. The sample library "
        f"**{settings.heldout_library}** shares no recording with them (checked sample by sample for the 11 "
        f"MusicNet instruments) and was used only for validation (best checkpoint, thresholds) and test, always "
        f"with a room and noise. Validation pieces: {validation}; test pieces: MusicNet's 10 test recordings, "
        f"rendered in full. Window level (2.97 s), thresholds tuned on validation:",
        "",
        *markdown_table(["test set", "macro ROC-AUC", "micro F1", "macro F1",
                         "mean F1 (piano, violin, viola, cello, clarinet, bassoon, horn)",
                         "seed12 families, macro F1"], rows),
        "",
        "seed12 families: the musicnet11 scores seen as instrument families (a family's score is its highest "
        "member's), family thresholds tuned on validation. Macro averages cover the classes present in the test "
        "pieces. These are renderings, not recordings of musicians: real recordings will score lower.",
        *([] if context is None else [
            "",
            f"Recording context (`predict --context`): each window's probabilities blended with the mean over "
            f"{_describe_context(context)} (weight {context['weight']:g}); radius, weight and thresholds chosen on "
            f"validation. It trades time resolution for accuracy: {_context_cost(context)}",
        ]),
    ]


def describe_libraries(names: Sequence[str]) -> str:
    """``"fluidr3, timgm6mb (without Cello, Oboe)"``: the libraries and the instruments each leaves out."""
    musicnet11 = get_taxonomy("musicnet11")
    parts = []
    for name in names:
        omitted = LIBRARIES[name].excluded_programs
        parts.append(name if not omitted else
                     f"{name} (without {', '.join(musicnet11.label_of(p) for p in omitted)})")
    return ", ".join(parts)


def _describe_context(context: dict) -> str:
    radius = context["radius_windows"]
    return "all windows of the recording" if radius is None else f"the windows within ±{radius} of it"


def _context_cost(context: dict) -> str:
    if context["radius_windows"] is None and context["weight"] == 1.0:
        return ("every window of a recording gets the same scores, so it says which instruments play in the "
                "recording, and no longer when.")
    return "an instrument's entry or exit is smeared over the windows averaged."


def export_models(models_dir: Path, output: Path, settings: RecipeSettings, results: dict, workdir: Path,
                  ensemble=None) -> None:
    """Copy each trained model folder (no checkpoints) to ``output/<type>``, atomically, with the recipe's card;
    and the ensemble of them (an :class:`~instrument_classifier.ensemble.EnsembleConfig`) to ``output/ensemble``."""
    output.mkdir(parents=True, exist_ok=True)
    if ensemble is not None:
        export_ensemble(ensemble, output / "ensemble", settings, results)
    for model_type in settings.models:
        src = models_dir / model_type
        tmp = Path(tempfile.mkdtemp(prefix=f".{model_type}.tmp-", dir=output))
        try:
            for item in src.iterdir():
                # not the run's bookkeeping, and not training_args.bin: a pickle has no place in a model we ship
                if item.is_file() and not item.name.endswith(("_results.json", ".bin")) \
                        and item.name != "trainer_state.json":
                    shutil.copy2(item, tmp / item.name)
            if (src / "figures").is_dir():  # the card shows them
                shutil.copytree(src / "figures", tmp / "figures")
            # the package's current model code, not the copy saved at training time: trust_remote_code users
            # of the bundled folders then run what the package runs (a code change need not retrain)
            for code in tmp.glob("*.py"):
                if (MODELING_DIR / code.name).is_file():
                    shutil.copy2(MODELING_DIR / code.name, code)
            weights = tmp / "model.safetensors"
            size = weights.stat().st_size
            if size > 5 * 1024 * 1024:
                raise RecipeError(f"{src}: model.safetensors is {size / 2**20:.1f} MB, above the 5 MB budget")
            recorded = {"settings": results["settings"], "results": results["models"][model_type]}
            write_json(tmp / "recipe_results.json", recorded)
            # the card of train's output describes one run's dataset (the held-out library among its corpora);
            # the bundled folder's card says what trained it, what tested it, and how it does on real recordings
            config = json.loads((tmp / "config.json").read_text())
            figures = sorted(f"figures/{p.name}" for p in (tmp / "figures").glob("*.png"))
            write_text(tmp / "README.md", bundled_model_card(model_type, config, recorded, None, figures))
            replace_dir(tmp, output / model_type)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def export_ensemble(config, folder: Path, settings: RecipeSettings, results: dict) -> None:
    """``folder``: ensemble_config.json (members as paths relative to it), a model card, recipe_results.json."""
    tmp = Path(tempfile.mkdtemp(prefix=".ensemble.tmp-", dir=folder.parent))
    try:
        config.save(tmp)
        recorded = {"settings": results["settings"], "results": results["models"]["ensemble"]}
        write_json(tmp / "recipe_results.json", recorded)
        config_json = json.loads((tmp / "ensemble_config.json").read_text())
        write_text(tmp / "README.md", bundled_model_card("ensemble", config_json, recorded))
        replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: How the cards name recipe.LIBRARIES (the General MIDI sample libraries).
LIBRARY_TITLES = {"fluidr3": "FluidR3 GM", "musescore": "MuseScore General (Lite)", "timgm6mb": "TimGM6mb",
                  "gmbank": "sf_GMbank", "opl3": "OPL-3 FM", "merlin": "Merlin", "generaluser": "GeneralUser GS"}


#: What each bundled folder is, for its card title, summary and model-index name.
BUNDLED_KINDS = {
    "cnn": ("CNN", "a small CNN on 13 MFCCs and their deltas (26 values per 11.6-ms frame)"),
    "transformer": ("Transformer", "a small Transformer encoder on 84 constant-Q bands and their deltas"),
    "ensemble": ("ensemble", "the bundled CNN and Transformer blended (a weighted mean of their probabilities)"),
}


def library_title(name: str) -> str:
    """The library as a card names it (``"Merlin"``), with the instruments it leaves out."""
    described = describe_libraries([name]) if name in LIBRARIES else name
    return described.replace(name, LIBRARY_TITLES.get(name, name), 1)


def _real_clip_section(real: Optional[dict], heldout: str) -> List[str]:
    lines = ["## Results on real recordings", ""]
    if real is None:
        return lines + ["Not measured: no labelled real recordings were given to the recipe (`--real-dev`). The "
                        "numbers below are on synthesized audio only and say little about recordings of musicians.",
                        ""]
    everything, long, cv = real["all"], real.get("long_clips"), real["cross_validated"]
    none = real.get("no_instrument")
    folders = ", ".join(f"{name} ({n})" for name, n in real["clips_per_folder"].items())
    lines += [
        f"The development set `{real['manifest']}`: {real['num_clips']} clips of musicians playing ({folders}); "
        f"{none['num_clips'] if none else 0} of them hold none of the 11 instruments (other instruments and "
        "voices). Clip level: an instrument's clip score is its highest 3-s window's (from three windows on, the "
        "mean of the two highest), detected where it reaches the folder's threshold: what `predict` and the "
        f"pipeline report. The thresholds were tuned on synthesized {heldout} validation pieces, never on these "
        "clips.",
        "",
    ]
    rows = [[f"all {everything['num_clips']}", "this folder's", fmt(everything["roc_auc_macro"]),
             fmt(everything["f1_micro"]), fmt(everything["false_alarms_per_clip"], 2),
             fmt(everything["exact_set_accuracy"])]]
    if long is not None:
        rows.append([f"the {long['num_clips']} of {long['min_seconds']:g} s or more", "this folder's",
                     fmt(long["roc_auc_macro"]), fmt(long["f1_micro"]), fmt(long["false_alarms_per_clip"], 2),
                     fmt(long["exact_set_accuracy"])])
    rows.append([f"all {everything['num_clips']}",
                 f"tuned on other clips of the set (2-fold cross-validation, {cv['repeats']} repeats)",
                 fmt(everything["roc_auc_macro"]), fmt(cv["f1_micro"]), fmt(cv["false_alarms_per_clip"], 2), "–"])
    lines += markdown_table(["clips", "thresholds", "macro ROC-AUC", "micro F1", "false instruments per clip",
                             "exact set"], rows)
    per_class = everything["per_class"]
    lines += [
        "",
        "Per instrument (all clips): " + ", ".join(
            f"{label} AUC {fmt(m['roc_auc'], 2)} / F1 {fmt(m['f1'], 2)} ({m['support']} clips)"
            for label, m in per_class.items() if m["support"]) + ".",
        "",
    ]
    return lines


def _limitations(real: Optional[dict], train: str, heldout: str) -> List[str]:
    lines = [
        "## Limitations",
        "",
        f"- **Trained on synthesized audio only** ({train}, with drawn rooms and noise): no recording of a "
        "musician was in its training data. On real recordings it is far weaker than on the synthetic test: "
        "see the first table.",
    ]
    if real is not None:
        worst = sorted(((n / total, label, n, total) for label, (n, total) in real["false_alarms"].items() if total),
                       reverse=True)[:3]
        lines.append("- It reports instruments that do not play: on the real clips "
                     + ", ".join(f"{label} in {n} of the {total} clips without it" for _, label, n, total in worst)
                     + (f"; on the clips with none of its instruments (guitar, voice, saxophone, trumpet) "
                        f"{real['no_instrument']['false_alarms_per_clip']:.1f} instruments per clip"
                        if real.get("no_instrument") else "") + ".")
    lines += [
        f"- On the synthetic test ({heldout}) a solo cello is also reported as piano in most of its windows, and "
        "instruments that play softly inside an ensemble are missed (docs/experiments.md has the per-piece errors).",
        "- Harpsichord, contrabass, oboe and flute are absent from MusicNet's test pieces: their synthetic results "
        "are not measured, and harpsichord has few training windows.",
        "- Only the 11 instruments of MusicNet (Western classical chamber and orchestral music); voices, "
        "percussion, guitars and electronic sounds are out of scope and may be reported as one of the 11.",
        "- Not for decisions about people; no personal data is involved.",
        "",
    ]
    return lines


def bundled_model_card(model_type: str, config: dict, recorded: dict, real: Optional[dict] = None,
                       figures: Sequence[str] = ()) -> str:
    """The README.md of a bundled MFCC folder (``cnn``, ``transformer`` or ``ensemble``), from stored results only.

    Parameters
    ----------
    model_type : {"cnn", "transformer", "ensemble"}
    config : dict
        The folder's ``config.json`` (``ensemble_config.json`` for the ensemble): labels and thresholds.
    recorded : dict
        The folder's ``recipe_results.json``: ``{"settings": RecipeSettings as a dict, "results": {...}}``.
    real : dict, optional
        :func:`measure_real_clips` of the folder (real recordings), reported first.
    figures : sequence of str
        Images of the synthetic test, relative to the folder.

    Returns
    -------
    str
        The card: YAML front matter (licence, tags, a model-index naming the real and the synthetic test data
        apart, no local path) and the text.
    """
    settings, results = recorded["settings"], recorded["results"]
    title, what = BUNDLED_KINDS[model_type]
    heldout = library_title(settings["heldout_library"])
    train = " and ".join(library_title(name) for name in settings["train_libraries"])
    is_ensemble = model_type == "ensemble"
    name = f"instrument-classifier {title} (musicnet11, trained on synthesized audio)"
    heldout_data = (f"MusicNet test scores synthesized with the held-out sample library {heldout}, with room and "
                    "noise")
    eval_results = []
    if real is not None:
        real_name = f"real recordings ({real['num_clips']} clips: " + ", ".join(real["clips_per_folder"]) + ")"
        for key, metric_type, readable in (("roc_auc_macro", "roc_auc", "macro ROC-AUC"),
                                           ("f1_micro", "f1", "micro F1")):
            eval_results.append(EvalResult(
                task_type="audio-classification", task_name="Instrument recognition (multi-label, clip level)",
                dataset_type="real-dev", dataset_name=real_name, dataset_split="test", metric_type=metric_type,
                metric_name=f"{readable} (real recordings, clip level)",
                metric_value=round(float(real["all"][key]), 4)))
    for key, metric_type, readable in (("roc_auc_macro", "roc_auc", "macro ROC-AUC"), ("f1_micro", "f1", "micro F1"),
                                       ("f1_macro", "f1", "macro F1")):
        eval_results.append(EvalResult(
            task_type="audio-classification", task_name="Instrument recognition (multi-label, window level)",
            dataset_type=f"musicnet-synthesized-{settings['heldout_library']}", dataset_name=heldout_data,
            dataset_split="test", metric_type=metric_type,
            metric_name=f"{readable} (synthetic held-out test, window level)",
            metric_value=round(float(results["heldout"][key]), 4)))
    tags = ["audio", "audio-classification", "music", "instrument-recognition", "multi-label", "musicnet",
            "synthetic-training-data"]
    tags += ["ensemble", "local-only"] if is_ensemble else [f"instrument_{model_type}", "custom_code"]
    data = ModelCardData(
        model_name=name, license="apache-2.0", library_name=None if is_ensemble else "transformers",
        pipeline_tag="audio-classification", tags=tags, metrics=["roc_auc", "f1"], eval_results=eval_results)
    labels = (list(config["labels"]) if is_ensemble else
              [config["id2label"][str(i)] for i in range(len(config["id2label"]))])
    thresholds = config["thresholds"]
    lines = [
        f"# {name}",
        "",
        f"Which of the {len(labels)} MusicNet instruments play ({', '.join(labels)}), per 2.97-s window and per "
        f"clip: {what}. Trained by `make models` (`python -m instrument_classifier.recipe`) on **synthesized "
        "renditions of MusicNet scores**, never on recordings of musicians; the package's default model, "
        "`pretrained/musicnn-yamnet-efficientat` (musicnn, YAMNet and EfficientAT heads blended), hears real "
        "recordings much better (its card, and the first table below).",
        "",
        "## How to use",
        "",
    ]
    if is_ensemble:
        lines += [
            "A local choice of the `instrument-classifier` package, not a transformers model: `ensemble_config.json` "
            "names its members by relative paths (`../cnn`, `../transformer`) and the weights that blend them, so "
            "it works next to them, inside the package, and is not pushed to the Hub (`push-model` refuses it: "
            "push a member).",
            "",
            "```python",
            "from instrument_classifier import load_model, predict_timeline",
            "",
            'model, _ = load_model("instrument_classifier/pretrained/ensemble")',
            'timeline = predict_timeline(model, None, "recording.flac")',
            "print(timeline.detected)  # clip score >= the ensemble's threshold (ensemble_config.json)",
            "```",
            "",
            "or `instrument-classifier predict --model instrument_classifier/pretrained/ensemble recording.flac`.",
            "",
        ]
    else:
        lines += [*usage_lines("path/to/this/folder"), ""]
    lines += _real_clip_section(real, heldout)
    lines += [f"## Results on the synthetic held-out test ({heldout})", "",
              *_synthetic_results(results, RecipeSettings(**settings)), ""]
    if is_ensemble:
        val = config["validation"]
        members = ", ".join(f"`{Path(m).name}` ({w:g})" for m, w in zip(config["members"], config["weights"]))
        lines += [
            f"Blend weights {members}: the best validation macro ROC-AUC on a 0.1 grid; with the per-class "
            f"thresholds and the recording context tuned on the same {heldout} validation pieces: macro ROC-AUC "
            f"{val['roc_auc_macro']:.3f} and micro F1 {val['f1_micro']:.3f} there, against "
            + ", ".join(f"{Path(m).name} {auc:.3f} / {f1:.3f}" for m, auc, f1 in
                        zip(config["members"], val["member_roc_auc_macro"], val["member_f1_micro"])) + " alone.",
            "",
        ]
    lines += [
        "## Training and evaluation data",
        "",
        f"- **Training**: MusicNet's train scores (labels by Thickstun et al., CC BY 4.0) synthesized with the "
        f"General MIDI sample libraries {train} (FluidSynth; velocity jitter ±{settings['velocity_jitter']}, "
        f"{settings['excerpt_seconds']:g}-s excerpts), then \"recorded\" in drawn rooms with microphone EQ, noise and "
        "levels. No real recording.",
        f"- **Validation** (best checkpoint, decision thresholds, recording context): the train pieces set aside "
        f"from training, synthesized with the held-out library {heldout} only, with room and noise.",
        f"- **Test**: MusicNet's 10 test pieces synthesized with {heldout} (room and noise); {heldout} shares no "
        "recording with the training libraries (checked sample by sample). Renderings, not musicians.",
        "- **Real recordings** (first table): clips of musicians the model never trained on, used only to measure.",
        "",
        "| label | threshold |",
        "| --- | ---: |",
        *(f"| {label} | {t:.3f} |" for label, t in zip(labels, thresholds)),
        "",
    ]
    if figures:
        lines += [f"Figures of the synthetic test ({heldout}):", ""]
        lines += [f"![{Path(f).stem.replace('_', ' ')}]({f})" for f in figures] + [""]
    if not is_ensemble:
        own = settings["models"].get(model_type, [])
        seed = [] if "--seed" in own else ["--seed", str(settings["seed"])]  # as the train step runs it
        args = " ".join(["--model_type", model_type, "--dataset_path", "datasets/heldout", *seed,
                         *settings["common_train_args"], *(shlex.quote(a) for a in own)])
        lines += ["## Training procedure", "", "```bash", f"instrument-classifier train {args}", "```", ""]
    lines += _limitations(real, train, heldout)
    lines += [
        "## Credits and licences",
        "",
        "- MusicNet labels: John Thickstun, Zaid Harchaoui, Sham M. Kakade, *Learning Features of Music from "
        "Scratch*, ICLR 2017 (CC BY 4.0).",
        f"- Sample libraries used to synthesize the audio (not shipped): {train}; held out: {heldout}.",
        "- The model, its thresholds and the code: Apache-2.0 (this package's licence).",
        "",
    ]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)


def write_bundled_cards(output: Path, manifest: Optional[Path] = None,
                        model_types: Sequence[str] = ("cnn", "transformer", "ensemble")) -> List[Path]:
    """Rewrite the README.md of the bundled MFCC folders in ``output`` from what they store (no training).

    With ``manifest`` (labelled real clips), each folder is measured on them first and the summary is stored in
    its ``recipe_results.json`` (``"real_dev"``); without, a summary stored earlier is used.

    Returns
    -------
    list of Path
        The cards written.
    """
    written = []
    for model_type in model_types:
        folder = Path(output) / model_type
        results_file = folder / "recipe_results.json"
        if not results_file.is_file():
            raise RecipeError(f"{results_file}: missing; export the models first (make models)")
        recorded = json.loads(results_file.read_text())
        if manifest is not None:
            recorded["real_dev"] = measure_real_clips(folder, Path(manifest))
            write_json(results_file, recorded)
        config_name = "ensemble_config.json" if model_type == "ensemble" else "config.json"
        config = json.loads((folder / config_name).read_text())
        figures = sorted(f"figures/{p.name}" for p in (folder / "figures").glob("*.png"))
        card = bundled_model_card(model_type, config, recorded, recorded.get("real_dev"), figures)
        written.append(write_text(folder / "README.md", card))
    return written
