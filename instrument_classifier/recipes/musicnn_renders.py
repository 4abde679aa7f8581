"""The musicnn recipe's render step: its training corpora (the MFCC recipe's renders, the Virtual Playing
Orchestra's recorded samples, FluidR3 with distractors) and the held-out validation pieces they add."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List, Sequence

from ..data import render as fluidsynth
from ..data import sampler
from ..data.perturb_corpus import perturb_corpus
from ..data.prepare import plan_validation_pieces
from . import mfcc
from .common import LIBRARIES, MusicnnSettings, RecipeSettings, StepLog, timed
from .renders import corpus_done, forget_renders_of_another_plan, library_perturbation_seed, render
from .sources import fetch_library

__all__ = ["recipe_corpora", "render_training_corpora", "validation_corpora"]


def recipe_corpora(workdir: Path, settings: RecipeSettings) -> Dict[str, object]:
    """The folders the MFCC recipe's render step makes that this stage reads: ``train`` (the perturbed training
    renders, one per training library), ``validation`` and ``test`` (the held-out library's, perturbed)."""
    h = settings.heldout_library
    return {"train": [workdir / "train" / f"{name}-{settings.train_perturbation}"
                      for name in settings.train_libraries],
            "validation": workdir / "heldout" / f"{h}-validation", "test": workdir / "heldout" / f"{h}-test"}


def _render_once(dry: Path, render: Callable[[], None]) -> None:
    render()
    (dry / ".done-train").write_text("ok\n")  # as renders.render: a render with its marker is complete


def render_training_corpora(workdir: Path, output: Path, settings: RecipeSettings, mset: MusicnnSettings,
                            vpo: Path, vpo_commit: str, log: StepLog, musicnet: Path) -> List[Path]:
    """The MFCC recipe's renders (if missing; perturbed again under ``mset.perturbation`` when it is not the MFCC
    recipe's), then the VPO and distractor corpora of the label CSVs in ``musicnet``; returns the four training
    corpora."""

    corpora = recipe_corpora(workdir, settings)
    ready = all(corpus_done(c) for c in [*corpora["train"], corpora["validation"], corpora["test"]])
    timed(log, "recipe.py renders (up to perturb)",
          lambda: mfcc.run_recipe(workdir, output, settings, stop_after="render", musicnet=musicnet), ready)

    perturbation = mset.perturbation
    library_corpora = corpora["train"]
    if perturbation != settings.train_perturbation:  # the MFCC recipe's dry renders under this stage's conditions
        library_corpora = []
        for i, name in enumerate(settings.train_libraries):
            dry, noisy = workdir / "render" / f"{name}-dry", workdir / "train" / f"{name}-{perturbation}"
            seed = library_perturbation_seed(settings, i)  # the MFCC recipe's seed for this library's conditions
            forget_renders_of_another_plan(
                {"dry_plan": json.loads((dry / "render_plan.json").read_text()), "perturbation": perturbation,
                 "perturbation_seed": seed}, [noisy], "perturb_plan.json")
            timed(log, f"perturb {name} ({perturbation})",
                  lambda: perturb_corpus(dry, noisy, perturbation, seed, split="train", num_proc=settings.num_proc),
                  corpus_done(noisy))
            library_corpora.append(noisy)

    vpo_dry, vpo_train = workdir / "render" / "vpo-dry", workdir / "train" / f"vpo-{perturbation}"
    start, seconds = mset.vpo_start_seconds, mset.vpo_seconds
    forget_renders_of_another_plan(
        {"library_commit": vpo_commit, "start": start, "seconds": seconds, "seed": mset.vpo_seed,
         "velocity": mset.velocity, "velocity_jitter": mset.velocity_jitter,
         "instrument_balance_db": mset.instrument_balance_db, "perturbation": perturbation,
         "perturbation_seed": mset.vpo_perturbation_seed}, [vpo_dry, vpo_train])
    timed(log, f"render vpo train [{start:g}, {start + seconds:g}) s",
          lambda: _render_once(vpo_dry, lambda: sampler.render_corpus(
              musicnet, vpo, vpo_dry, split="train", max_seconds=seconds, start_seconds=start, seed=mset.vpo_seed,
              velocity=mset.velocity, velocity_jitter=mset.velocity_jitter,
              instrument_balance_db=mset.instrument_balance_db, num_proc=settings.num_proc)),
          (vpo_dry / ".done-train").is_file())
    timed(log, f"perturb vpo ({perturbation})",
          lambda: perturb_corpus(vpo_dry, vpo_train, perturbation, mset.vpo_perturbation_seed, split="train",
                                 num_proc=settings.num_proc),
          corpus_done(vpo_train))

    library = LIBRARIES[mset.distractor_library]
    name = f"{library.name}-distractors"
    d_dry, d_train = workdir / "render" / f"{name}-dry", workdir / "train" / f"{name}-{perturbation}"
    start, seconds = mset.distractor_start_seconds, mset.distractor_seconds
    forget_renders_of_another_plan(
        {"library": library.name, "probability": mset.distractor_probability, "start": start, "seconds": seconds,
         "seed": mset.distractor_seed, "velocity": mset.velocity, "velocity_jitter": mset.velocity_jitter,
         "omitted_programs": list(library.excluded_programs), "perturbation": perturbation,
         "perturbation_seed": mset.distractor_perturbation_seed}, [d_dry, d_train])
    timed(log, f"render {name} train [{start:g}, {start + seconds:g}) s",
          lambda: _render_once(d_dry, lambda: fluidsynth.render_corpus(
              musicnet, fetch_library(library, workdir), d_dry, split="train", max_seconds=seconds,
              start_seconds=start, seed=mset.distractor_seed, velocity=mset.velocity,
              velocity_jitter=mset.velocity_jitter, num_proc=settings.num_proc,
              omit_programs=library.excluded_programs, distractor_probability=mset.distractor_probability)),
          (d_dry / ".done-train").is_file())
    timed(log, f"perturb {name} ({perturbation})",
          lambda: perturb_corpus(d_dry, d_train, perturbation, mset.distractor_perturbation_seed, split="train",
                                 num_proc=settings.num_proc),
          corpus_done(d_train))
    return [*library_corpora, vpo_train, d_train]


def validation_corpora(workdir: Path, settings: RecipeSettings, train_corpora: Sequence[Path],
                       log: StepLog, musicnet: Path) -> List[Path]:
    """The held-out validation corpora for ``train_corpora``: the MFCC recipe's, plus the pieces it lacks.

    ``prepare`` chooses the validation pieces from the labels of all training corpora. The MFCC recipe rendered those
    it chose from its own two; the VPO excerpts ([60, 105) s) can bring an instrument neither of them hears and
    so change the choice. Pieces the MFCC recipe did not render are rendered here as it would have (same seeds) into
    ``heldout/<library>-validation-musicnn``, from the label CSVs in ``musicnet``.
    """

    corpora = recipe_corpora(workdir, settings)
    pieces = plan_validation_pieces(train_corpora, settings.taxonomy, seed=settings.seed)
    have = {p.stem for p in (corpora["validation"] / "train_labels").glob("*.csv")}
    missing = sorted(set(pieces) - have)
    h = settings.heldout_library
    dry = workdir / "render" / f"{h}-validation-musicnn-dry"
    perturbed = workdir / "heldout" / f"{h}-validation-musicnn"
    forget_renders_of_another_plan({"pieces": missing, "seconds": settings.heldout_validation_seconds,
                                     "seed": settings.seed}, [dry, perturbed], "validation_plan.json")
    if not missing:
        return [corpora["validation"]]
    library = LIBRARIES[h]
    timed(log, f"render {h} (held out) {len(missing)} more validation pieces",
          lambda: render(fetch_library(library, workdir), dry, "train", settings.heldout_validation_seconds,
                         0.0, settings.seed + 50, settings, library.excluded_programs, ids=missing,
                         musicnet=musicnet),
          (dry / ".done-train").is_file())
    timed(log, f"perturb {h} more validation pieces (test conditions)",
          lambda: perturb_corpus(dry, perturbed, "test", settings.seed + 200, num_proc=settings.num_proc),
          corpus_done(perturbed))
    return [corpora["validation"], perturbed]
