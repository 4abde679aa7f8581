"""The recipes' render step: MusicNet scores rendered with sample libraries and perturbed, renders made for
another plan forgotten first."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..data.perturb_corpus import perturb_corpus
from ..data.prepare import plan_validation_pieces
from ..data.render import render_corpus
from .common import LIBRARIES, RecipeSettings, StepLog, timed, write_json


def corpus_done(folder: Path) -> bool:
    return (folder / "musicnet_metadata.csv").is_file()


def render(soundfont: Path, out: Path, split: str, seconds: Optional[float], start: float, seed: int,
            settings: RecipeSettings, excluded_programs: Sequence[int] = (), ids: Optional[Sequence[str]] = None,
            eq_db: float = 0.0, *, musicnet: Path) -> None:
    """Render the pieces of ``split`` in ``musicnet`` (the MusicNet label CSVs) with ``soundfont`` into ``out``,
    unless an earlier render left its marker there."""
    marker = out / f".done-{split}"
    if marker.is_file():
        return
    render_corpus(musicnet, soundfont, out, split=split, ids=ids, max_seconds=seconds,
                  start_seconds=start, seed=seed, velocity=settings.velocity, velocity_jitter=settings.velocity_jitter,
                  num_proc=settings.num_proc, instrument_eq_db=eq_db, omit_programs=excluded_programs)
    marker.write_text("ok\n")


def library_perturbation_seed(settings: RecipeSettings, index: int) -> int:
    """The seed of the recording conditions drawn for the training renders of ``settings.train_libraries[index]``."""
    return settings.seed + 100 + index


def forget_renders_of_another_plan(plan: dict, folders: Sequence[Path], plan_name: str = "render_plan.json") -> None:
    """Renders made for other pieces or settings (or of unknown settings) are not "done" for this plan:
    remove them, together with the folders derived from them. The plan is kept in ``folders[0]/plan_name``."""
    plan_file = folders[0] / plan_name
    same = plan_file.is_file() and json.loads(plan_file.read_text()) == plan
    if not same and any(folder.is_dir() and any(folder.iterdir()) for folder in folders):
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        print(f"[recipe] pieces or render settings changed: {', '.join(map(str, folders))} removed", flush=True)
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    write_json(plan_file, plan)


def render_corpora(workdir: Path, settings: RecipeSettings, train_paths: Dict[str, Path],
                   heldout_paths: Dict[str, Path], log: StepLog,
                   musicnet: Path) -> Tuple[List[Path], List[Path], Path, Path]:
    """The MFCC recipe's render and perturb steps, each skipped when its output is complete.

    Every training library renders its own excerpt of each train piece and the test pieces in full, then the
    excerpts get drawn "train" conditions; the held-out library renders the validation pieces ``prepare`` will
    choose and the test pieces, both given "test" conditions. Renders made for another plan are removed first.

    Parameters
    ----------
    workdir : Path
        The recipe's work folder (``render/``, ``train/``, ``heldout/`` go in it).
    settings : RecipeSettings
        Excerpts, seeds, velocities and conditions.
    train_paths, heldout_paths : dict
        ``{library name: sample library file}`` of the training libraries and of the one held out.
    log : StepLog
        Where the steps' timings go.
    musicnet : Path
        The MusicNet folder whose label CSVs are rendered.

    Returns
    -------
    tuple
        ``(train corpora, in-domain corpora, held-out test corpus, held-out validation corpus)``: the perturbed
        training renders, the training libraries' dry renders, and the held-out library's perturbed renders.
    """
    render_dir, train_dir, eval_dir = workdir / "render", workdir / "train", workdir / "heldout"
    train_corpora, indomain_corpora = [], []
    for i, (name, path) in enumerate(train_paths.items()):
        dry, excluded = render_dir / f"{name}-dry", LIBRARIES[name].excluded_programs
        start = i * settings.excerpt_stride_seconds
        noisy = train_dir / f"{name}-{settings.train_perturbation}"
        forget_renders_of_another_plan(
            {"start": start, "seconds": settings.excerpt_seconds, "seed": settings.seed + i + 1,
             "velocity": settings.velocity, "velocity_jitter": settings.velocity_jitter,
             "omitted_programs": list(excluded), "perturbation": settings.train_perturbation,
             "instrument_eq_db": settings.instrument_eq_db}, [dry, noisy])
        timed(log, f"render {name} train [{start:.0f}, {start + settings.excerpt_seconds:.0f}) s",
              lambda: render(path, dry, "train", settings.excerpt_seconds, start, settings.seed + i + 1, settings,
                             excluded, eq_db=settings.instrument_eq_db, musicnet=musicnet),
              (dry / ".done-train").is_file())
        timed(log, f"render {name} test",
              lambda: render(path, dry, "test", None, 0.0, settings.seed + i + 1, settings, excluded,
                             musicnet=musicnet),
              (dry / ".done-test").is_file())
        timed(log, f"perturb {name} ({settings.train_perturbation})",
              lambda: perturb_corpus(dry, noisy, settings.train_perturbation, library_perturbation_seed(settings, i),
                                     split="train", num_proc=settings.num_proc),
              corpus_done(noisy))
        train_corpora.append(noisy)
        indomain_corpora.append(dry)
    (h_name, h_path), = heldout_paths.items()
    h_dry, h_test = render_dir / f"{h_name}-dry", eval_dir / f"{h_name}-test"
    h_val_dry, h_val = render_dir / f"{h_name}-validation-dry", eval_dir / f"{h_name}-validation"
    h_excluded = LIBRARIES[h_name].excluded_programs
    validation_pieces = plan_validation_pieces(train_corpora, settings.taxonomy, seed=settings.seed)
    forget_renders_of_another_plan({"pieces": validation_pieces, "seconds": settings.heldout_validation_seconds,
                                     "seed": settings.seed}, [h_val_dry, h_val], "validation_plan.json")
    timed(log, f"render {h_name} (held out) {len(validation_pieces)} validation pieces",
          lambda: render(h_path, h_val_dry, "train", settings.heldout_validation_seconds, 0.0, settings.seed + 50,
                         settings, h_excluded, ids=validation_pieces, musicnet=musicnet),
          (h_val_dry / ".done-train").is_file())
    timed(log, f"render {h_name} (held out) test",
          lambda: render(h_path, h_dry, "test", None, 0.0, settings.seed + 50, settings, h_excluded,
                         musicnet=musicnet),
          (h_dry / ".done-test").is_file())
    timed(log, f"perturb {h_name} validation (test conditions)",
          lambda: perturb_corpus(h_val_dry, h_val, "test", settings.seed + 200, num_proc=settings.num_proc),
          corpus_done(h_val))
    timed(log, f"perturb {h_name} test (test conditions)",
          lambda: perturb_corpus(h_dry, h_test, "test", settings.seed + 200, split="test", num_proc=settings.num_proc),
          corpus_done(h_test))
    return train_corpora, indomain_corpora, h_test, h_val
