"""Copy a MusicNet-layout corpus, putting every recording through drawn recording conditions.

Rendered sample libraries are dry, close-miked and noise-free. ``perturb_corpus`` turns a rendered corpus
into one "recorded" in rooms with microphones, noise and levels drawn by
:func:`instrument_classifier.data.augment.sample_perturbation` (``"train"`` strength for training
diversity, ``"test"`` for the held-out protocol, which always applies a room and noise, ``"room"`` for simulated
rooms, microphone distances and MP3).

* Lengths are kept (:func:`~instrument_classifier.data.augment.apply_perturbation` is length-preserving), so
  the label CSVs are copied unchanged and stay sample-accurate.
* Each recording's conditions are drawn from a generator seeded by ``seed`` and ``"{split}/{id}"``: the
  same for any ``num_proc`` and any order, different for every recording and every ``seed``.
* ``perturb_info.json`` records the drawn parameters per recording, the source corpus and the strength;
  the source's ``render_info.json`` (which sample library rendered it) is copied along.
* Resumable: a recording whose output wav exists and is listed in ``perturb_info.json`` with the same
  seed and strength is skipped. Outputs are written atomically (temp file, then ``os.replace``);
  ``musicnet_metadata.csv`` is written last, so a corpus with metadata is complete.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from ..atomic_write import copy_file, write_text
from .augment import STRENGTHS, apply_perturbation, sample_perturbation
from .render import write_wav

__all__ = ["PerturbError", "perturb_corpus", "recording_rng", "main"]

SPLITS = ("train", "test")
INFO_FILE = "perturb_info.json"


class PerturbError(ValueError):
    """A corpus that cannot be perturbed; the message names the file."""


def recording_rng(seed: int, key: str) -> np.random.Generator:
    """The generator of one recording's conditions (``key`` = ``"split/id"``)."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def _perturb_one(job: tuple) -> Dict:
    src_wav, src_csv, out_dir, split, rid, strength, seed = job
    key = f"{split}/{rid}"
    try:
        audio, sr = sf.read(src_wav, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise PerturbError(f"{src_wav}: unreadable audio ({exc})") from None
    audio = audio.mean(axis=1)
    if not np.all(np.isfinite(audio)):
        raise PerturbError(f"{src_wav}: audio contains NaN or infinite samples")
    rng = recording_rng(seed, key)
    params = sample_perturbation(rng, strength)
    out = apply_perturbation(audio, sr, params, rng)
    wav = Path(out_dir) / f"{split}_data" / f"{rid}.wav"
    write_wav(wav, out, sr)
    copy_file(Path(src_csv), Path(out_dir) / f"{split}_labels" / f"{rid}.csv")
    return {"key": key, "perturbation": params.to_dict(), "samples": int(len(out))}


def _read_info(path: Path) -> Dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def perturb_corpus(
    src_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    strength: str = "train",
    seed: int = 0,
    split: Optional[str] = None,
    num_proc: int = 1,
    progress: bool = True,
) -> List[Path]:
    """Write a perturbed copy of a MusicNet-layout corpus.

    Parameters
    ----------
    src_dir : path
        Corpus with ``{split}_data/*.wav`` and ``{split}_labels/*.csv`` (as written by ``synth``).
    out_dir : path
        Destination (MusicNet layout). Must differ from ``src_dir``.
    strength : {"train", "test", "room", "none"}
        Passed to :func:`~instrument_classifier.data.augment.sample_perturbation` (``"room"``: simulated rooms
        with a drawn microphone distance, and MP3 for half of the recordings).
    seed : int
        Seeds every recording's conditions (with ``"split/id"``).
    split : {"train", "test"} or None
        Only this split (default: every split present).
    num_proc : int
        Worker processes.

    Returns
    -------
    list of Path
        The perturbed wav files (including ones already done by an earlier run).
    """

    src, out = Path(src_dir), Path(out_dir)
    if strength not in STRENGTHS:
        raise PerturbError(f"strength must be one of {', '.join(STRENGTHS)}, got {strength!r}")
    if not src.is_dir():
        raise PerturbError(f"{src}: no such corpus folder")
    if src.resolve() == out.resolve():
        raise PerturbError(f"{out}: the output must differ from the source corpus")
    splits = SPLITS if split is None else (split,)
    info_path = out / INFO_FILE
    info = _read_info(info_path)
    done = info.get("recordings", {}) if (info.get("seed"), info.get("strength")) == (seed, strength) else {}
    jobs, written = [], []
    for s in splits:
        for wav in sorted((src / f"{s}_data").glob("*.wav")):
            csv = src / f"{s}_labels" / f"{wav.stem}.csv"
            if not csv.is_file():
                raise PerturbError(f"{wav}: no label file {csv}")
            target = out / f"{s}_data" / wav.name
            written.append(target)
            if f"{s}/{wav.stem}" in done and target.is_file():
                continue
            jobs.append((str(wav), str(csv), str(out), s, wav.stem, strength, seed))
    if not written:
        raise PerturbError(f"{src}: no recordings in {', '.join(f'{s}_data/' for s in splits)}")

    recordings = dict(done)
    bar = tqdm(total=len(jobs), desc=f"perturb {src.name} ({strength})", unit="rec", disable=not progress)

    def save() -> None:
        payload = {"source": str(src.resolve()), "strength": strength, "seed": seed,
                   "recordings": dict(sorted(recordings.items()))}
        write_text(info_path, json.dumps(payload, indent=1) + "\n")

    try:
        if num_proc <= 1 or len(jobs) <= 1:
            results = map(_perturb_one, jobs)
            pool = None
        else:
            pool = multiprocessing.get_context("spawn").Pool(min(num_proc, len(jobs)))
            results = pool.imap_unordered(_perturb_one, jobs)
        try:
            for i, result in enumerate(results):
                recordings[result["key"]] = {"perturbation": result["perturbation"], "samples": result["samples"]}
                bar.update(1)
                if i % 50 == 49:
                    save()  # progress survives an interruption
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    finally:
        bar.close()
        if recordings:
            save()
    if (src / "render_info.json").is_file():  # still a rendering: model cards name its sample library
        copy_file(src / "render_info.json", out / "render_info.json")
    if (src / "musicnet_metadata.csv").is_file():
        copy_file(src / "musicnet_metadata.csv", out / "musicnet_metadata.csv")  # last: marks completeness
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Copy a MusicNet-layout corpus through drawn recording conditions.")
    parser.add_argument("src", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--strength", choices=STRENGTHS, default="train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=SPLITS, default=None)
    parser.add_argument("--num-proc", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        written = perturb_corpus(args.src, args.out, args.strength, args.seed, args.split, args.num_proc)
    except PerturbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"perturbed {len(written)} recordings into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
