"""The model card (``README.md``) of a trained model folder: Hub metadata plus what a user needs to trust it.

Metadata: ``library_name: transformers``, ``pipeline_tag: audio-classification``, license, tags, datasets and a
``model-index`` with the window-level validation and test results. Body: the labels (taxonomy table with the
tuned thresholds), the data and its split, results, figures, how to load with ``trust_remote_code``, the
training procedure, and intended use and limitations (including whether the audio was synthesised).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..atomic_write import write_text
from ..data.taxonomy import MUSICNET_PROGRAMS, _ranges, get_taxonomy
from ..evaluation.report import fmt, markdown_table

__all__ = ["usage_lines", "describe_corpus", "build_model_card", "write_model_card"]

#: (key in compute_instrument_metrics, Hub metric type, readable name) reported in the model-index.
INDEX_METRICS = (
    ("roc_auc_macro", "roc_auc", "macro ROC-AUC"),
    ("roc_auc_micro", "roc_auc", "micro ROC-AUC"),
    ("f1_macro", "f1", "macro F1"),
    ("f1_micro", "f1", "micro F1"),
    ("precision_macro", "precision", "macro precision"),
    ("recall_macro", "recall", "macro recall"),
    ("hamming_loss", "hamming_loss", "Hamming loss"),
)
TABLE_METRICS = ("roc_auc_macro", "roc_auc_micro", "hamming_loss", "precision_macro", "recall_macro", "f1_macro",
                 "f1_micro")
MODEL_KINDS = {"instrument_cnn": "small CNN", "instrument_transformer": "small Transformer encoder"}


def usage_lines(load_id: str, window_seconds: float = 2.97) -> List[str]:
    """The card's "How to use": the pipeline with the tuned thresholds applied, as the command line decides.

    The pipeline cuts a clip into windows of ``window_seconds`` and scores each label by its highest window (from
    three windows on, the mean of the two highest): the clip score the thresholds were tuned on and that
    ``instrument-classifier predict`` uses. Running the model on a whole clip's features at once scores other
    windows (the last one aligned to the end, not padded), so a card shows the pipeline.

    Parameters
    ----------
    load_id : str
        The Hub id or the placeholder path shown in the snippet.
    window_seconds : float
        The model's window length, for the text.

    Returns
    -------
    list of str
        Markdown lines.
    """
    return [
        "```python",
        "from transformers import pipeline",
        "",
        f'classifier = pipeline("audio-classification", model="{load_id}", trust_remote_code=True)',
        'result = classifier("recording.flac")  # a file, or {"raw": mono_float_array, "sampling_rate": rate}',
        'detected = [r["label"] for r in result if r["detected"]]  # score >= the label\'s tuned threshold',
        "for r in result:",
        "    print(f\"{r['label']:<12} {r['score']:.2f}  threshold {r['threshold']:.2f}\")",
        "```",
        "",
        f"The pipeline cuts the clip into {window_seconds:.2f}-s windows (the last one padded with silence, as the "
        "training windows were) and gives each instrument the highest window probability, from three windows on "
        "the mean of the two highest. An instrument is **detected** when that clip score reaches its threshold "
        "(`config.thresholds`, tuned on scores of such windows): the same scores and the same rule as "
        "`instrument-classifier predict`. The model code travels with the weights, so loading "
        "needs `trust_remote_code=True` (read the `*.py` files first: they are short and import only `torch`, "
        "`numpy`, `scipy` and `transformers`; reading files takes `soundfile`).",
        "",
        "With the `instrument-classifier` package (`pip install`), when each instrument plays:",
        "",
        "```python",
        "from instrument_classifier import load_model, predict_timeline",
        "",
        f'model, extractor = load_model("{load_id}")',
        'timeline = predict_timeline(model, extractor, "recording.flac")  # any length, streamed',
        "print(timeline.detected)  # the same instruments as the pipeline's detected ones",
        "for s in timeline.segments:",
        '    print(f"{s.start_s:.1f}-{s.end_s:.1f} s {s.label}")',
        "```",
        "",
        f"or `instrument-classifier predict --model {load_id} recording.flac`.",
    ]


def describe_corpus(info: dict, part: str = "train") -> dict:
    """Where the audio came from: ``{"kind": "rendered"|"recorded"|"unknown", "soundfonts": [...], "text": str}``.

    Parameters
    ----------
    info : dict
        ``prepare_info.json`` of the dataset.
    part : {"train", "evaluation"}
        The training windows' corpora (``data_dirs``), or those of the validation and test windows
        (``eval_data_dirs`` and ``validation_data_dirs`` when the dataset was prepared with held-out corpora, else
        the same as training). A held-out sample library is never named as training data.

    A corpus rendered by ``instrument-classifier synth`` has a ``render_info.json`` naming its sample library.
    Folders that no longer exist (e.g. a dataset prepared on another machine) give ``"unknown"``.
    """
    if part not in ("train", "evaluation"):
        raise ValueError(f"part must be 'train' or 'evaluation', got {part!r}")
    folders = list(info.get("data_dirs", []))
    if part == "evaluation" and (info.get("eval_data_dirs") or info.get("validation_data_dirs")):
        folders = list(info.get("eval_data_dirs") or []) + list(info.get("validation_data_dirs") or [])
    soundfonts, kinds = [], set()
    for folder in folders:
        render_info = Path(folder) / "render_info.json"
        if render_info.is_file():
            try:
                soundfonts.append(Path(json.loads(render_info.read_text())["soundfont"]).name)
            except (ValueError, KeyError, TypeError):
                soundfonts.append("unknown sample library")
            kinds.add("rendered")
        elif Path(folder).is_dir():
            kinds.add("recorded")
        else:
            kinds.add("unknown")
    soundfonts = sorted(set(soundfonts))
    if kinds == {"rendered"}:
        kind = "rendered"
        text = (f"MusicNet scores **synthesised** with FluidSynth and the General MIDI sample library "
                f"{', '.join(soundfonts)}; not recordings of musicians")
    elif kinds == {"recorded"}:
        kind, text = "recorded", "MusicNet-layout audio recordings (no render_info.json: assumed real recordings)"
    elif "rendered" in kinds:
        kind = "mixed"
        text = f"partly MusicNet scores synthesised with {', '.join(soundfonts)}, partly other audio"
    else:
        kind, text = "unknown", "a prepared MusicNet-layout dataset whose audio source is not recorded here"
    return {"kind": kind, "soundfonts": soundfonts, "text": text}


def _describe_features(config, info: dict) -> str:
    """"13 MFCCs and their deltas (26 values)", from the dataset's feature extractor when known."""
    fe = info.get("feature_extractor") or {}
    kind = {"mfcc": "MFCCs", "logmel": "log-mel bands", "cqt": "constant-Q bands"}.get(config.feature_type,
                                                                                       config.feature_type)
    if fe.get("include_deltas"):
        order = fe.get("delta_order", 1)
        deltas = "deltas and delta-deltas" if order == 2 else "deltas"
        n = fe.get("n_coefficients", config.feature_size // (1 + order))
        return f"{n} {kind} and their {deltas} ({config.feature_size} values)"
    return f"{config.feature_size} {kind}"


def _taxonomy_rows(config, info: dict) -> List[str]:
    taxonomy = None
    try:
        taxonomy = get_taxonomy(info["taxonomy"])
    except (KeyError, ValueError):
        pass
    counts = info.get("splits", {}).get("train", {}).get("label_counts", {})
    rows = []
    for i in range(config.num_labels):
        label = config.id2label[i]
        programs = taxonomy.programs_of(label) if taxonomy else ()
        in_musicnet = ", ".join(f"{MUSICNET_PROGRAMS[p].lower()} ({p})" for p in programs
                                if p in MUSICNET_PROGRAMS) or "–"
        rows.append([label, _ranges(programs) if programs else "–", in_musicnet, counts.get(label, "–"),
                     f"{config.thresholds[i]:.3f}"])
    return markdown_table(["label", "GM programs", "MusicNet instruments", "train windows", "threshold"], rows,
                          align="lllrr")


def _split_rows(info: dict) -> List[str]:
    rows = [[split, stats.get("recordings", "–"), len(stats.get("pieces", [])), stats.get("windows", "–")]
            for split, stats in info.get("splits", {}).items()]
    return markdown_table(["split", "recordings", "pieces", "windows"], rows, align="lrrr")


def _results_rows(columns: Dict[str, Optional[dict]]) -> List[str]:
    names = [name for name, m in columns.items() if m]
    rows = [[key, *(fmt(columns[n].get(key)) for n in names)] for key in TABLE_METRICS]
    rows.append(["classes skipped (absent or always present)",
                 *(", ".join(columns[n]["skipped_classes"]) or "none" for n in names)])
    return markdown_table(["metric", *names], rows, align="l" + "r" * len(names))


def _per_class_rows(metrics: dict) -> List[str]:
    rows = [[label, m["support"], fmt(m["roc_auc"]), fmt(m["precision"]), fmt(m["recall"]), fmt(m["f1"])]
            for label, m in metrics["per_class"].items()]
    return markdown_table(["label", "support", "ROC-AUC", "precision", "recall", "F1"], rows, align="lrrrrr")


def build_model_card(
    config,
    info: dict,
    metrics: Dict[str, Optional[dict]],
    hyperparameters: Dict[str, object],
    model_name: str,
    frame_metrics: Optional[Dict[str, Optional[dict]]] = None,
    repo_id: Optional[str] = None,
    base_model: Optional[str] = None,
    figures: Sequence[str] = (),
    command: Optional[str] = None,
    license: str = "apache-2.0",
):
    """A :class:`huggingface_hub.ModelCard` for a trained model.

    Parameters
    ----------
    config : PreTrainedConfig
        The saved config (labels, tuned thresholds, features).
    info : dict
        ``prepare_info.json`` of the training data, plus ``source`` (path or Hub id).
    metrics : dict
        ``{"validation": metrics, "test": metrics or None}`` from ``compute_instrument_metrics`` (window level,
        tuned thresholds).
    frame_metrics : dict, optional
        ``{"test": metrics}`` at frame level (every 11.6-ms frame scored), if computed.
    hyperparameters : dict
        What to list under "Training procedure" (learning rate, batch size, epochs, ...).
    model_name, repo_id, base_model : str
        Title; Hub id used in the loading example (a local path placeholder otherwise); fine-tuned-from model.
    figures : sequence of str
        Image paths relative to the model folder.
    command : str, optional
        The training command line.
    """

    corpus = describe_corpus(info, "train")
    evaluation = describe_corpus(info, "evaluation")
    held_out = bool(info.get("eval_data_dirs") or info.get("validation_data_dirs"))
    source = str(info.get("source", "MusicNet"))
    dataset_id = source if (source.count("/") == 1 and not Path(source).exists()) else None
    # a local folder is no dataset name a Hub reader can follow: name the audio instead
    shown_source = dataset_id or f"a dataset prepared with `instrument-classifier prepare` (`{Path(source).name}`)"
    dataset_type = dataset_id or ("musicnet-synthesized" if evaluation["kind"] == "rendered" else "musicnet")
    dataset_name = "MusicNet"
    if evaluation["kind"] == "rendered":
        dataset_name = (f"MusicNet scores synthesized with {', '.join(evaluation['soundfonts'])}"
                        + (" (sample libraries held out from training)" if held_out else ""))
    frame_metrics = frame_metrics or {}
    eval_results = []
    for level, by_split in (("window", metrics), ("frame", frame_metrics)):
        for split, split_metrics in by_split.items():
            if not split_metrics:
                continue
            for key, metric_type, readable in INDEX_METRICS:
                if split_metrics.get(key) is not None:
                    eval_results.append(EvalResult(
                        task_type="audio-classification",
                        task_name=f"Instrument recognition (multi-label, {level} level)",
                        dataset_type=dataset_type, dataset_name=dataset_name, dataset_split=split,
                        metric_type=metric_type, metric_name=f"{readable} ({split}, {level} level)",
                        metric_value=round(float(split_metrics[key]), 4),
                    ))
    kind = MODEL_KINDS.get(config.model_type, config.model_type)
    data = ModelCardData(
        model_name=model_name,
        license=license,
        library_name="transformers",
        pipeline_tag="audio-classification",
        tags=["audio", "audio-classification", "music", "instrument-recognition", "multi-label", "musicnet",
              {"mfcc": "mfcc", "logmel": "log-mel", "cqt": "cqt"}.get(config.feature_type, config.feature_type),
              config.model_type, "custom_code"],
        datasets=[dataset_id] if dataset_id else None,  # "musicnet" would name the real recordings
        metrics=sorted({m[1] for m in INDEX_METRICS}),
        base_model=base_model,
        eval_results=eval_results or None,
    )
    seconds = config.window_frames * config.hop_length / config.sampling_rate
    load_id = repo_id or "path/to/this/folder"
    test = metrics.get("test")
    lines = [
        f"# {model_name}",
        "",
        f"A {kind} that tells which musical instruments play in a {seconds:.2f}-s window of audio, and when "
        f"(frame-level scores every {1000 * config.hop_length / config.sampling_rate:.1f} ms). Multi-label: "
        f"{config.num_labels} classes of the `{config.taxonomy}` taxonomy, from "
        f"{_describe_features(config, info)} per frame. Trained with "
        "the `instrument-classifier` package's `train.py` (🤗 Trainer).",
        "",
        "## How to use",
        "",
        *usage_lines(load_id, seconds),
        "",
        "`predict --context` also blends each window with its neighbours in the recording as `config.context` "
        "says (radius, weight and thresholds, tuned on validation): surer on unfamiliar recordings, vaguer about "
        "when an instrument enters.",
        "",
        "## Labels",
        "",
        f"Taxonomy `{config.taxonomy}`. Thresholds are per class, tuned on the **validation** split to maximise F1 "
        "(never on test); classes without both positive and negative validation windows keep the thresholds of "
        "the model this one was fine-tuned from (0.5 for a new model or new labels).",
        "",
        *_taxonomy_rows(config, info),
        "",
        "## Training data and splits",
        "",
        f"Training audio: {corpus['text']}. Dataset: {shown_source}, windows of {config.window_frames} frames "
        f"({seconds:.2f} s), train windows overlapping by half, validation and test windows not overlapping.",
        "",
        "Splits are **by recording and piece**, never by frame: `test` is MusicNet's own test split; `validation` "
        "is a set of MusicNet train pieces chosen (stratified by label, deterministic) before training, so no "
        "piece is in two splits. The feature normalisation (mean/std in `preprocessor_config.json`) is fitted on "
        "the training windows only.",
        "",
        *_split_rows(info),
        "",
    ]
    if held_out:
        folders = list(info.get("eval_data_dirs") or []) + list(info.get("validation_data_dirs") or [])
        lines += [f"Validation and test windows come from corpora held out from training "
                  f"({', '.join(Path(d).name for d in folders)}): {evaluation['text']}.", ""]
    lines += [
        "## Evaluation",
        "",
        "Thresholds tuned on validation. Window level: one reference and one score per 3-s window (score = "
        "the model's window output); frame level: every 11.6-ms frame of the split. Macro averages run over the "
        "classes that have both positive and negative windows (frames) in the split (the others are listed); "
        "Hamming loss and micro scores count every class. Validation numbers are optimistic: the thresholds "
        "and the best checkpoint were chosen on it.",
        "",
        *_results_rows({**{f"{s} (window)": m for s, m in metrics.items()},
                        **{f"{s} (frame)": m for s, m in frame_metrics.items()}}),
        "",
    ]
    if test:
        lines += ["Per class, test split:", "", *_per_class_rows(test), ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(f).stem.replace('_', ' ')}]({f})" for f in figures] + [""]
    lines += ["## Training procedure", "", *markdown_table(["hyperparameter", "value"], hyperparameters.items()), ""]
    if command:
        lines += ["```bash", command, "```", ""]
    limitation = (
        "It was trained on **synthesised renditions** of MusicNet scores "
        f"({', '.join(corpus['soundfonts'])})"
        + (f" and evaluated on renditions with {', '.join(evaluation['soundfonts'])}"
           if held_out and evaluation["soundfonts"] else "")
        + ", not on recordings of musicians: expect lower scores on real recordings, other sample libraries, rooms "
        "and microphones than the numbers above."
        if corpus["kind"] in ("rendered", "mixed") else
        "Its scores hold for audio like its training data; other recording conditions, genres and instruments "
        "will score lower."
    )
    lines += [
        "## Intended use and limitations",
        "",
        "Intended for tagging and locating the instruments of Western classical chamber and orchestral music "
        "(the instruments of MusicNet) in research, music-library search and teaching demos.",
        "",
        f"- {limitation}",
        "- Only MusicNet's instruments occur in the training data; the other classes of the taxonomy "
        "(if any) were never seen and are never reliably predicted. Voices, percussion and electronic sounds are "
        "out of scope.",
        "- MFCC windows of 3 s: very short notes and soft inner voices are often missed; frame-level output is "
        "coarser than the 11.6-ms frame grid suggests.",
        "- Not for decisions about people; no personal data is involved.",
        "",
        "## Credits",
        "",
        "MusicNet labels: John Thickstun, Zaid Harchaoui, Sham M. Kakade, *Learning Features of Music from "
        "Scratch*, ICLR 2017 (CC BY 4.0).",
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def write_model_card(card, output_dir: str | os.PathLike) -> Path:
    """Write ``README.md`` into ``output_dir`` atomically (a temporary file renamed into place)."""
    return write_text(Path(output_dir) / "README.md", str(card))
