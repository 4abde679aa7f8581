"""Rendering MusicNet scores with a sample library, and forgetting renders made for another plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional, Sequence

from . import common
from .common import RecipeSettings, write_json


def corpus_done(folder: Path) -> bool:
    return (folder / "musicnet_metadata.csv").is_file()


def render(soundfont: Path, out: Path, split: str, seconds: Optional[float], start: float, seed: int,
            settings: RecipeSettings, excluded_programs: Sequence[int] = (), ids: Optional[Sequence[str]] = None,
            eq_db: float = 0.0) -> None:
    from ..data.render import render_corpus

    marker = out / f".done-{split}"
    if marker.is_file():
        return
    render_corpus(common.MUSICNET_LABELS, soundfont, out, split=split, ids=ids, max_seconds=seconds,
                  start_seconds=start, seed=seed, velocity=settings.velocity, velocity_jitter=settings.velocity_jitter,
                  num_proc=settings.num_proc, instrument_eq_db=eq_db, omit_programs=excluded_programs)
    marker.write_text("ok\n")


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
