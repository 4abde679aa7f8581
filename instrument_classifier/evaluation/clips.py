"""``instrument-classifier evaluate --clips``: models on labelled recordings -> clip-level metrics.

A manifest lists recordings and the instruments that play in each, so anyone can measure a model on their
own real recordings (the project's own real development set is ``../shared/real-dev/manifest.csv``)::

    file,instruments,other_sounds
    solos/cello_01.flac,Cello,
    mixes/duo.mp3,Violin;Piano,
    other/sax.wav,,tenor saxophone

* ``file``: the audio file, relative to the manifest's folder (or absolute); any format ``predict`` reads.
* ``instruments``: ``;``-separated label names of the models (case does not matter); empty when none of
  them plays, which is how to ask "does the model stay quiet on music without its instruments?".
* ``other_sounds`` (optional): what else sounds, for the reader; not scored. Other columns are ignored.

What is measured
----------------
Each clip is run through :func:`~instrument_classifier.inference.predict_timeline`, exactly as ``predict``
runs a file (the same windows, recording context with ``context=True``, and decision rule). Per clip and
label that gives a **clip score** (``Timeline.clip``) and a **decision** (``Timeline.detected``: the
instruments ``predict`` reports as detected). Over all clips:

* per-class ROC-AUC of the clip scores, macro and micro precision / recall / F1 of the decisions and
  Hamming loss, as defined in :mod:`instrument_classifier.evaluation.metrics` (classes with both positive
  and negative clips enter the macro averages);
* **false alarms per clip**: detected instruments that do not play, averaged over clips; and **misses per
  clip**;
* **exact-set accuracy**: the share of clips whose detected set is exactly the labelled set;
* the same per top-level folder of ``file`` (a folder per source or condition), and for the clips whose
  ``instruments`` is empty.

Bad rows (a missing or unreadable audio file, an unknown label, a row without a file, a file listed twice) stop
the evaluation with an error naming the manifest and its row; with ``skip_bad`` they are skipped, counted and listed in
``metrics.json``. The report folder is written next to ``output`` and moved into place in one rename.

Output::

    metrics.json   {model: {"clips": {...metrics...}, "by_folder": {...}, "no_instrument": {...}, "source",
                    "thresholds"[, "tuned_thresholds", "tuned_cross_validated"]}, "manifest", "num_clips", "labels",
                    "skipped_rows", "context", "thresholds"[, "tuning"]}
    metrics.md     summary table, per-folder table, per-class table per model
    clips.csv      one row per clip: file, folder, instruments, then per model the detected set and clip scores
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm.auto import tqdm

from ..atomic_write import replace_dir
from ..audio import AudioError, audio_info
from ..inference import load_model, predict_timeline
from .errors import EvaluationError
from .metrics import compute_instrument_metrics, tune_thresholds_micro
from .report import check_output, fmt, markdown_table, md_escape, parse_thresholds, unique_model_names

__all__ = ["ManifestError", "ClipRow", "read_manifest", "evaluate_clips", "clip_set_metrics", "format_clip_summary",
           "tune_clip_thresholds", "cross_validated_tuning", "CLIP_OUTPUT_FILES"]

#: Files a clip report folder holds (an earlier report with only these is replaced; anything else is refused).
CLIP_OUTPUT_FILES = ("metrics.json", "metrics.md", "clips.csv")
#: Top-level keys of a clip metrics.json besides the model names.
CLIP_RESERVED_KEYS = ("manifest", "num_clips", "labels", "skipped_rows", "context", "thresholds", "tuning")
LABEL_SEPARATOR = ";"

PathLike = Union[str, os.PathLike]


class ManifestError(ValueError):
    """A manifest, or one of its rows, cannot be used; the message names the manifest (and row)."""


@dataclass
class ClipRow:
    """One manifest row: the audio file, the labels that play (model label names) and where it came from."""

    file: Path
    instruments: List[str]
    other_sounds: str
    row: int  # line number in the manifest (the header is line 1)
    name: str  # ``file`` as written in the manifest
    folder: str = field(default="")  # top-level folder of ``name`` ("." for a file at the top)


def _top_folder(name: str, manifest_dir: Path) -> str:
    """The first folder of ``name`` below the manifest's folder ("." for a file there); for a file elsewhere
    (an absolute path, or one that climbs out with ``..``), its whole parent folder as written."""
    path = Path(os.path.normpath(name))
    if path.is_absolute():
        try:
            path = path.relative_to(manifest_dir.resolve())
        except ValueError:
            return str(path.parent)
    parts = path.parts
    if parts[:1] == ("..",):  # its first part would be ".." for every such file, whatever folder it is in
        return str(path.parent)
    return parts[0] if len(parts) > 1 else "."


#: A manifest's bad rows listed in one error, at most (the count says how many more).
MAX_LISTED_PROBLEMS = 20


#: Other names users give the models' instruments, lower case -> the label.
_ALIASES = {"double bass": "Contrabass", "bass": "Contrabass", "string bass": "Contrabass",
            "upright bass": "Contrabass", "horn": "French Horn", "grand piano": "Piano", "fiddle": "Violin"}


def _unknown_hint(unknown: Sequence[str], by_name: Dict[str, str]) -> str:
    """What to write instead of ``unknown`` names in a manifest's instruments column (starts with "; ")."""
    hints = []
    for name in unknown:
        if "," in name or "|" in name or "/" in name:
            hints.append(f"separate instruments with '{LABEL_SEPARATOR}'")
        elif _ALIASES.get(name.lower(), "").lower() in by_name:
            hints.append(f"{name!r} is {_ALIASES[name.lower()]!r} here")
    hints.append("a sound none of the labels names goes in the other_sounds column")
    return "; " + "; ".join(dict.fromkeys(hints))


def read_manifest(path: PathLike, labels: Sequence[str], skip_bad: bool = False,
                  skipped: Optional[List[dict]] = None) -> List[ClipRow]:
    """Read and check a clip manifest.

    Parameters
    ----------
    path : path-like
        The CSV (``file``, ``instruments`` and optional ``other_sounds`` columns; see the module doc).
    labels : sequence of str
        The models' label names; ``instruments`` entries must be among them (case-insensitive).
    skip_bad : bool
        Skip bad rows (listed in ``skipped``) instead of raising.
    skipped : list, optional
        Receives ``{"row", "file", "reason"}`` for each skipped row.

    Returns
    -------
    list of ClipRow
        In manifest order, label names spelled as in ``labels``.

    Raises
    ------
    ManifestError
        Missing manifest or columns; without ``skip_bad``, its bad rows, all of them in one message that names
        the manifest and each row; with it, a manifest whose every row is bad.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    by_name = {label.lower(): label for label in labels}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc})") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ManifestError(f"{path}: empty manifest (expected a header with file and instruments columns)") from None
    except csv.Error as exc:
        raise ManifestError(f"{path} row 1: malformed CSV ({exc})") from None
    missing = [c for c in ("file", "instruments") if c not in header]
    if missing:
        raise ManifestError(f"{path}: no {' or '.join(missing)} column (header: {', '.join(header)}); expected "
                            "file,instruments[,other_sounds]")
    col = {name: header.index(name) for name in ("file", "instruments", "other_sounds") if name in header}
    rows: List[ClipRow] = []
    problems: List[Tuple[int, str]] = []  # all of them at once: one run to fix a manifest, not one per bad row
    seen: Dict[Path, int] = {}  # audio file -> the row that lists it
    line = reader.line_num
    while True:
        first = line + 1  # the row's first line: a quoted field may run over several
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. an unterminated quote: the rest of the file cannot be trusted
            raise ManifestError(f"{path} row {reader.line_num}: malformed CSV ({exc})") from None
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue  # blank line
        problem = None
        if line > first and any("\n" in v for v in values):
            problem = (f"a double quote opened on row {first} runs to row {line}, taking the rows between into one "
                       "field: close or remove it")
        elif len(values) < len(header) and len(values) > max(col["file"], col["instruments"]) and \
                all(h not in ("file", "instruments") for h in header[len(values):]):
            values = values + [""] * (len(header) - len(values))  # trailing optional fields left out: empty
        elif len(values) != len(header):
            problem = f"{len(values)} field{'' if len(values) == 1 else 's'}, the header has {len(header)}"
        name = values[col["file"]].strip() if len(values) > col["file"] else ""
        if problem is None and not name:
            problem = "no file"
        file = (path.parent / name) if name else path.parent
        names = [] if problem else [n.strip() for n in values[col["instruments"]].split(LABEL_SEPARATOR) if n.strip()]
        unknown = [n for n in names if n.lower() not in by_name]
        if problem is None and unknown:
            problem = (f"unknown instrument {', '.join(map(repr, unknown))} (the models' labels: {', '.join(labels)}"
                       f"{_unknown_hint(unknown, by_name)})")
        if problem is None and file.is_dir():
            problem = f"{file} is a directory, not an audio file"
        elif problem is None and not file.is_file():
            problem = f"audio file {file} not found"
        where = file.resolve()
        if problem is None and where in seen:  # counted twice, it would weigh twice in every figure
            problem = f"{file} is listed already, on row {seen[where]}"
        if problem is None:  # its header now: every unreadable file in the one report, before any model runs
            try:
                audio_info(file)
            except AudioError as exc:
                problem = str(exc)
        if problem is not None:
            problems.append((first, problem))
            if skip_bad and skipped is not None:
                skipped.append({"row": first, "file": name, "reason": problem})
            continue
        seen[where] = first
        other = values[col["other_sounds"]].strip() if "other_sounds" in col else ""
        rows.append(ClipRow(file=file, instruments=sorted({by_name[n.lower()] for n in names}, key=list(labels).index),
                            other_sounds=other, row=line, name=name,
                            folder=_top_folder(name, path.parent)))
    if problems and not skip_bad:
        if len(problems) == 1:
            raise ManifestError(f"{path} row {problems[0][0]}: {problems[0][1]}")
        listed = [f"  row {row}: {problem}" for row, problem in problems[:MAX_LISTED_PROBLEMS]]
        if len(problems) > MAX_LISTED_PROBLEMS:
            listed.append(f"  ... and {len(problems) - MAX_LISTED_PROBLEMS} more")
        raise ManifestError(f"{path}: {len(problems)} bad rows (--skip-bad skips them):\n" + "\n".join(listed))
    if not rows:
        raise ManifestError(f"{path}: no usable rows" + (f" ({len(problems)} bad, skipped)" if problems else ""))
    return rows


# -- metrics -------------------------------------------------------------------------------------------

def clip_set_metrics(y_true: np.ndarray, scores: np.ndarray, decisions: np.ndarray, labels: Sequence[str]) -> Dict:
    """Clip-level metrics of one model on some clips.

    Parameters
    ----------
    y_true, decisions : np.ndarray, shape (n_clips, n_labels)
        Labelled and detected instruments (0/1).
    scores : np.ndarray, shape (n_clips, n_labels)
        Clip scores in [0, 1].
    labels : sequence of str

    Returns
    -------
    dict
        :func:`compute_instrument_metrics`' keys (its thresholds are 0.5 on the 0/1 ``decisions``, so precision,
        recall and F1 are those of the decisions; ROC-AUC is computed on ``scores``) plus ``num_clips``,
        ``false_alarms_per_clip``, ``misses_per_clip``, ``exact_set_accuracy`` and
        ``clips_with_false_alarm``.
    """
    y_true = np.asarray(y_true, dtype=np.int8)
    decisions = np.asarray(decisions, dtype=np.int8)
    from_decisions = compute_instrument_metrics(y_true, decisions.astype(np.float64), 0.5, labels)
    from_scores = compute_instrument_metrics(y_true, scores, 0.5, labels)
    out = dict(from_decisions)
    out["roc_auc_macro"], out["roc_auc_micro"] = from_scores["roc_auc_macro"], from_scores["roc_auc_micro"]
    out["per_class"] = {label: {**from_decisions["per_class"][label],
                                "roc_auc": from_scores["per_class"][label]["roc_auc"]}
                        for label in labels}
    false_alarms = ((decisions == 1) & (y_true == 0)).sum(axis=1)
    out.update({
        "num_clips": int(len(y_true)),
        "false_alarms_per_clip": float(false_alarms.mean()),
        "misses_per_clip": float(((decisions == 0) & (y_true == 1)).sum(axis=1).mean()),
        "exact_set_accuracy": float((decisions == y_true).all(axis=1).mean()),
        "clips_with_false_alarm": int((false_alarms > 0).sum()),
    })
    return out


#: Labels with fewer positive clips than this are not tuned by :func:`tune_clip_thresholds`: a cut placed on one
#: to four clips says more about those clips than about the instrument.
MIN_TUNING_CLIPS = 5
#: The recipes' threshold for them when a new head is tuned: high, because on real recordings a wrong detection
#: costs more than a miss of a label the clips cannot vouch for (cross-validated on real recordings:
#: docs/experiments.md, "Decisions"). ``evaluate --tune-thresholds`` keeps the model's own instead.
UNTUNED_THRESHOLD = 0.8


def tune_clip_thresholds(y_true: np.ndarray, scores: np.ndarray, min_clips: int = MIN_TUNING_CLIPS,
                         untuned: Union[float, Sequence[float]] = UNTUNED_THRESHOLD) -> np.ndarray:
    """Clip-decision thresholds from labelled clips: micro-F1 cuts for the labels with at least ``min_clips``
    positive clips, ``untuned`` for the others (whose false alarms still count in the tuning).

    Parameters
    ----------
    y_true : np.ndarray, shape (n_clips, n_labels)
        Labelled instruments (0/1), e.g. of a real development set; never the test clips.
    scores : np.ndarray, shape (n_clips, n_labels)
        Clip scores (``Timeline.clip``).
    min_clips : int
        Positive clips a label needs to be tuned.
    untuned : float or sequence of float
        The threshold of the other labels: one for all, or one per label (e.g. the model's own).

    Returns
    -------
    np.ndarray, shape (n_labels,)
    """
    y_true = np.asarray(y_true)
    enough = y_true.sum(axis=0) >= min_clips
    kept = np.broadcast_to(np.asarray(untuned, dtype=np.float64), (y_true.shape[1],))
    # the tuned labels' coordinate ascent starts from UNTUNED_THRESHOLD whatever the others keep
    return tune_thresholds_micro(y_true, scores, np.where(enough, UNTUNED_THRESHOLD, kept), tune=enough)


def cross_validated_tuning(y_true: np.ndarray, scores: np.ndarray, tuner=tune_clip_thresholds, repeats: int = 20,
                           seed: int = 0, judged: Optional[np.ndarray] = None) -> Dict[str, float]:
    """What thresholds tuned on other clips reach: 2-fold cross-validation over the clips, ``repeats`` times.

    Each half's decisions use thresholds ``tuner(y, scores)`` fitted on the other half. Returns the means of micro
    F1, false alarms per clip and misses per clip, and ``repeats``.

    ``judged`` (boolean, one per clip) restricts the figures to some clips, e.g. the long ones, while the
    thresholds are still tuned on half of all clips, as the shipped ones are tuned on all of them.
    """
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    judged = np.ones(len(y_true), dtype=bool) if judged is None else np.asarray(judged, dtype=bool)
    if judged.shape != (len(y_true),) or not judged.any():
        raise ValueError(f"judged must mark some of the {len(y_true)} clips, got shape {judged.shape}")
    rng = np.random.default_rng(seed)
    names = [str(i) for i in range(y_true.shape[1])]
    out = []
    for _ in range(repeats):
        half = np.zeros(len(y_true), dtype=bool)
        half[rng.permutation(len(y_true))[: len(y_true) // 2]] = True
        decisions = np.zeros_like(y_true)
        for fit in (half, ~half):
            decisions[~fit] = scores[~fit] >= tuner(y_true[fit], scores[fit])
        m = clip_set_metrics(y_true[judged], scores[judged], decisions[judged], names)
        out.append((m["f1_micro"], m["false_alarms_per_clip"], m["misses_per_clip"]))
    f1, false_alarms, misses = np.mean(out, axis=0)
    return {"f1_micro": float(f1), "false_alarms_per_clip": float(false_alarms), "misses_per_clip": float(misses),
            "repeats": repeats}


# -- the evaluation ------------------------------------------------------------------------------------

def evaluate_clips(
    models: Union[str, Sequence[str]],
    manifest: PathLike,
    output_dir: Optional[PathLike] = None,
    thresholds: Union[str, float] = "config",
    context: bool = False,
    skip_bad: bool = False,
    batch_size: int = 32,
    device: str = "cpu",
    progress: bool = True,
    tune: bool = False,
    untuned: Optional[float] = None,
) -> Dict:
    """Evaluate models on the clips a manifest lists; optionally write metrics.json, metrics.md and clips.csv.

    Parameters
    ----------
    models : str or list of str
        Model folders, ensemble folders or Hub ids (as ``predict --model`` takes); all with the same labels.
    manifest : path-like
        See the module doc.
    output_dir : path-like, optional
        Report folder, replaced atomically (a folder that is not an earlier clip report is refused).
    thresholds : "config" or float
        The models' tuned decision thresholds, or one for every label.
    context : bool
        Apply each model's recording context (``predict --context``); models without one are refused.
    skip_bad : bool
        Skip bad manifest rows and unreadable audio, counting them, instead of stopping.
    batch_size : int
        Windows per forward pass.
    device : str
        Torch device.
    progress : bool
        A progress bar over the clips.
    tune : bool
        Also tune each model's clip thresholds on these clips (:func:`tune_clip_thresholds`): metrics.json then
        holds ``tuned_thresholds`` per model and ``tuned_cross_validated``, what such tuning reaches on clips
        it did not see (:func:`cross_validated_tuning`). The metrics above stay those of the given thresholds.
        Only the labels with at least ``MIN_TUNING_CLIPS`` positive clips are tuned (metrics.json's ``tuning``
        says which, and what the others keep).
    untuned : float, optional
        With ``tune``: the threshold of the labels with fewer clips. ``None`` (default) keeps the model's own, the
        one ``predict`` uses now; the recipes pass :data:`UNTUNED_THRESHOLD` for a head whose own thresholds were
        tuned on synthetic windows only.

    Returns
    -------
    dict
        The content of metrics.json.

    Raises
    ------
    ManifestError
        A bad manifest or row (named), or models with different labels; nothing is written then.
    """
    models = [models] if isinstance(models, (str, os.PathLike)) else [str(m) for m in models]
    if not models:
        raise ManifestError("no model given")
    if batch_size < 1:
        raise ManifestError(f"batch size must be >= 1, got {batch_size}")
    fixed = parse_thresholds(thresholds)
    output = None if output_dir is None else check_output(Path(output_dir), CLIP_OUTPUT_FILES)
    manifest = Path(manifest).expanduser().resolve()
    if not manifest.is_file():
        raise ManifestError(f"{manifest}: manifest not found")

    loaded = []
    for name in models:
        try:
            model, extractor = load_model(name, device=device)
        except (OSError, ValueError) as exc:
            raise EvaluationError(f"{name}: cannot load the model: {exc}") from None
        if context and not getattr(model.config, "context", None):
            raise EvaluationError(f"{name}: has no recording context in its config; evaluate without --context")
        loaded.append((model, extractor))
    labels = [loaded[0][0].config.id2label[i] for i in range(loaded[0][0].config.num_labels)]
    for name, (model, _) in zip(models[1:], loaded[1:]):
        other = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if other != labels:
            raise EvaluationError(f"{name}: labels {other} differ from {models[0]}'s {labels}; models compared on "
                                  "clips must share their labels")

    skipped: List[dict] = []
    rows = read_manifest(manifest, labels, skip_bad=skip_bad, skipped=skipped)
    y_true = np.array([[label in row.instruments for label in labels] for row in rows], dtype=np.int8)
    sources = [str(Path(m).resolve()) if Path(m).exists() else str(m) for m in models]
    names = unique_model_names(sources, models, CLIP_RESERVED_KEYS)
    cut = None if fixed is None else [fixed] * len(labels)
    scores = np.zeros((len(models), len(rows), len(labels)))
    decisions = np.zeros((len(models), len(rows), len(labels)), dtype=np.int8)
    used_thresholds: List[Optional[List[float]]] = [None] * len(models)
    unreadable = set()
    bar = tqdm(total=len(rows) * len(models), unit="clip", desc="evaluate clips", disable=not progress)
    for m, (model, extractor) in enumerate(loaded):
        for c, row in enumerate(rows):
            bar.update(1)
            if c in unreadable:
                continue
            try:
                timeline = predict_timeline(model, extractor, row.file, batch_size=batch_size, thresholds=cut,
                                            context=context)
            except (AudioError, OSError) as exc:
                message = str(exc) if str(row.file) in str(exc) else f"{row.file}: {exc}"
                if not skip_bad:
                    bar.close()
                    raise ManifestError(f"{manifest} row {row.row}: {message}") from None
                unreadable.add(c)
                skipped.append({"row": row.row, "file": row.name, "reason": message})
                continue
            scores[m, c] = [timeline.clip[label] for label in labels]
            decisions[m, c] = [label in timeline.detected for label in labels]
            used_thresholds[m] = [float(t) for t in timeline.thresholds]
    bar.close()
    keep = np.array([c not in unreadable for c in range(len(rows))])
    if not keep.any():
        raise ManifestError(f"{manifest}: none of the {len(rows)} clips could be read")
    rows = [row for row, k in zip(rows, keep) if k]
    y_true, scores, decisions = y_true[keep], scores[:, keep], decisions[:, keep]

    results: Dict = {}
    folders = sorted({row.folder for row in rows})
    empty = np.array([not row.instruments for row in rows])
    for m, name in enumerate(names):
        entry = {
            "clips": clip_set_metrics(y_true, scores[m], decisions[m], labels),
            "by_folder": {},
            "source": sources[m],
            "thresholds": used_thresholds[m],
        }
        for folder in folders:
            mask = np.array([row.folder == folder for row in rows])
            entry["by_folder"][folder] = clip_set_metrics(y_true[mask], scores[m][mask], decisions[m][mask], labels)
        if empty.any():
            entry["no_instrument"] = clip_set_metrics(y_true[empty], scores[m][empty], decisions[m][empty], labels)
        if tune:
            tuner = partial(tune_clip_thresholds, untuned=used_thresholds[m] if untuned is None else untuned)
            entry["tuned_thresholds"] = dict(zip(labels, tuner(y_true, scores[m]).round(4).tolist()))
            entry["tuned_cross_validated"] = cross_validated_tuning(y_true, scores[m], tuner=tuner)
        results[name] = entry
    results.update({
        "manifest": str(manifest),
        "num_clips": len(rows),
        "labels": labels,
        "skipped_rows": skipped,
        "context": bool(context),
        "thresholds": "config" if fixed is None else fixed,
    })
    if tune:
        results["tuning"] = {
            "min_clips": MIN_TUNING_CLIPS,
            "tuned_labels": [label for label, n in zip(labels, y_true.sum(axis=0)) if n >= MIN_TUNING_CLIPS],
            "others_keep": "the model's thresholds" if untuned is None else float(untuned),
        }
    if output is not None:
        _write_clip_report(results, rows, names, labels, scores, decisions, output)
    return results


# -- output --------------------------------------------------------------------------------------------

def _model_entries(results: Dict) -> List[str]:
    return [k for k in results if k not in CLIP_RESERVED_KEYS]


SUMMARY_COLUMNS = (
    ("clips", lambda m: str(m["num_clips"])),
    ("ROC-AUC macro", lambda m: fmt(m["roc_auc_macro"])),
    ("F1 micro", lambda m: fmt(m["f1_micro"])),
    ("F1 macro", lambda m: fmt(m["f1_macro"])),
    ("precision micro", lambda m: fmt(m["precision_micro"])),
    ("recall micro", lambda m: fmt(m["recall_micro"])),
    ("false alarms/clip", lambda m: fmt(m["false_alarms_per_clip"], 2)),
    ("misses/clip", lambda m: fmt(m["misses_per_clip"], 2)),
    ("exact set", lambda m: fmt(m["exact_set_accuracy"])),
)
#: The columns that mean something for clips with none of the labels.
NO_INSTRUMENT_COLUMNS = ("clips", "false alarms/clip", "exact set")


def _summary_rows(results: Dict) -> List[List[str]]:
    """``[model, subset, column values...]`` for every model: all clips, each folder, the clips with no label."""
    rows = []
    for name in _model_entries(results):
        entry = results[name]
        subsets = [("all clips", entry["clips"])] + [(f"{folder}/", m) for folder, m in entry["by_folder"].items()]
        for subset, metrics in subsets:
            rows.append([name, subset] + [f(metrics) for _, f in SUMMARY_COLUMNS])
        if "no_instrument" in entry:
            # no labelled instrument to find: only the false alarms (and the exact set, "nothing") say anything
            metrics = entry["no_instrument"]
            rows.append([name, "none of the labels"] + [f(metrics) if title in NO_INSTRUMENT_COLUMNS else "–"
                                                        for title, f in SUMMARY_COLUMNS])
    return rows


def _tuning_lines(results: Dict) -> List[str]:
    """With ``tune``: per model, what thresholds tuned on other clips of the manifest reach (the honest figure)."""
    tuned = {name: results[name]["tuned_cross_validated"] for name in _model_entries(results)
             if results[name].get("tuned_cross_validated")}
    if not tuned:
        return []
    repeats = next(iter(tuned.values()))["repeats"]
    tuning = results["tuning"]
    kept = tuning["others_keep"]
    kept = kept if isinstance(kept, str) else f"{kept:g}"
    which = ", ".join(tuning["tuned_labels"]) or "none of them"
    return [f"thresholds tuned on half of these clips, judged on the other half (2-fold, {repeats} repeats; "
            f"tuned_cross_validated in metrics.json), for the instruments with at least {tuning['min_clips']} clips "
            f"here ({which}; the others keep {kept}):"] + [
        f"{name}: micro F1 {fmt(cv['f1_micro'])}, false alarms/clip {fmt(cv['false_alarms_per_clip'], 2)}, "
        f"misses/clip {fmt(cv['misses_per_clip'], 2)}" for name, cv in tuned.items()]


def _skipped(results: Dict) -> int:
    return len(results["skipped_rows"])


def format_clip_summary(results: Dict) -> str:
    """Plain-text table: per model, all clips, each top-level folder and the clips with none of the labels; with
    ``tune``, the cross-validated figures of tuned thresholds below it."""
    head = ["model", "clips of"] + [title for title, _ in SUMMARY_COLUMNS]
    table = [head] + _summary_rows(results)
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = [f"clip level, {results['num_clips']} clips of {results['manifest']}"
             + (f" ({_skipped(results)} row{'' if _skipped(results) == 1 else 's'} skipped)"
                if results["skipped_rows"] else "")
             + ("; recording context applied" if results["context"] else "")]
    for i, r in enumerate(table):
        lines.append("  ".join(v.ljust(w) if j < 2 else v.rjust(w) for j, (v, w) in enumerate(zip(r, widths))))
        if i == 0:
            lines.append("-" * len(lines[-1]))
    tuning = _tuning_lines(results)
    if tuning:
        lines += [""] + tuning[:1] + [f"  {line}" for line in tuning[1:]]
    return "\n".join(lines)


def format_clip_markdown(results: Dict) -> str:
    """metrics.md of a clip evaluation."""
    lines = [
        "# Evaluation on labelled clips",
        "",
        f"Manifest: `{results['manifest']}`, {results['num_clips']} clips"
        + (f", {len(results['skipped_rows'])} rows skipped (listed in metrics.json)"
           if results["skipped_rows"] else "")
        + ". " + ("Recording context applied. " if results["context"] else "")
        + ("Decisions at each model's tuned thresholds." if results["thresholds"] == "config"
           else f"Decision threshold {results['thresholds']} for every label."),
        "",
        "A clip's score for an instrument is its `predict` clip score; an instrument is detected as `predict` "
        "detects it. ROC-AUC uses the scores, precision / recall / F1 the decisions. Macro averages cover the "
        "labels with both positive and negative clips; micro figures and false alarms count every label.",
        "",
    ]
    lines += markdown_table(["model", "clips of"] + [title for title, _ in SUMMARY_COLUMNS], _summary_rows(results))
    tuning = _tuning_lines(results)
    if tuning:
        lines += ["", tuning[0], ""] + [f"- {md_escape(line)}" for line in tuning[1:]]
    for name in _model_entries(results):
        m = results[name]["clips"]
        lines += ["", f"## {md_escape(name)}", "", f"Source: `{results[name]['source']}`", ""]
        thresholds = results[name]["thresholds"] or [None] * len(results["labels"])
        lines += markdown_table(
            ["instrument", "clips", "ROC-AUC", "precision", "recall", "F1", "threshold"],
            ([label, m["per_class"][label]["support"], fmt(m["per_class"][label]["roc_auc"]),
              fmt(m["per_class"][label]["precision"]), fmt(m["per_class"][label]["recall"]),
              fmt(m["per_class"][label]["f1"]), fmt(threshold)]
             for label, threshold in zip(results["labels"], thresholds)))
    return "\n".join(lines) + "\n"


def _clips_csv(rows: Sequence[ClipRow], names: Sequence[str], labels: Sequence[str], scores: np.ndarray,
               decisions: np.ndarray) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "folder", "instruments"]
                    + [f"{name}:{what}" for name in names for what in ["detected"] + list(labels)])
    for c, row in enumerate(rows):
        values = [row.name, row.folder, LABEL_SEPARATOR.join(row.instruments)]
        for m in range(len(names)):
            values.append(LABEL_SEPARATOR.join(label for label, d in zip(labels, decisions[m, c]) if d))
            values += [f"{s:.4f}" for s in scores[m, c]]
        writer.writerow(values)
    return buffer.getvalue()


def _write_clip_report(results: Dict, rows, names, labels, scores, decisions, output: Path) -> None:
    """Every file into a temporary sibling folder, then moved to ``output`` in one rename."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        (tmp / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
        (tmp / "metrics.md").write_text(format_clip_markdown(results))
        (tmp / "clips.csv").write_text(_clips_csv(rows, names, labels, scores, decisions))
        replace_dir(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
