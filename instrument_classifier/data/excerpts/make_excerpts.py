"""Regenerate the shipped excerpt label set from the MusicNet labels (reproducible selection).

Usage::

    python instrument_classifier/data/excerpts/make_excerpts.py --musicnet ../shared/musicnet

Selection (deterministic, no randomness beyond a fixed seed):

* Train excerpts come only from MusicNet's ``train_labels``, test excerpts only from ``test_labels``.
  A train recording of a composition that is also in the test selection is never chosen, and recordings
  whose label file is identical to one already chosen (MusicNet has a few duplicates) are skipped.
* Recordings are chosen per ensemble (quotas below) so that every one of the 11 MusicNet instruments is
  in the train split, in several pieces (contrabass and harpsichord in three), and the test split has
  every instrument MusicNet's test set has (7: no harpsichord, contrabass, oboe or flute there).
  Within an ensemble, candidates are taken in a seeded random order, preferring compositions not yet used.
* The excerpt is the ``--seconds`` window (1 s steps) with the most instruments playing at least 2 s of
  notes, then the most note-seconds: where the ensemble is actually playing together.
* Each excerpt CSV holds the notes overlapping the window, clipped to it and shifted to start at 0
  (same 7 columns; score columns kept verbatim). ``windows.csv`` records where each excerpt came from.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from instrument_classifier.atomic_write import write_text
from instrument_classifier.data.render import (
    SAMPLE_RATE,
    LabelRow,
    clip_rows,
    read_label_rows,
    read_metadata,
    write_label_rows,
)
from instrument_classifier.data.taxonomy import MUSICNET_PROGRAMS

HERE = Path(__file__).resolve().parent
EXCERPT_SECONDS = 40
MIN_PRESENT_SECONDS = 2.0  # an instrument counts as present in a window with this many seconds of notes
SEED = 0

#: (ensemble, number of recordings) per split, in MusicNet's ensemble names.
TRAIN_QUOTA: Sequence[Tuple[str, int]] = (
    ("Solo Piano", 2),
    ("String Quartet", 2),
    ("Wind Quintet", 2),  # flute, oboe, clarinet, bassoon, horn
    ("Violin and Harpsichord", 3),  # the only harpsichord in MusicNet
    ("Piano Quintet", 2),  # Schubert's Trout: contrabass
    ("Wind and Strings Octet", 1),  # contrabass, flute, clarinet, bassoon, horn, strings
    ("Wind Octet", 1),
    ("Solo Flute", 1),
    ("Horn Piano Trio", 1),
    ("Accompanied Clarinet", 1),
    ("Solo Cello", 1),
    ("Accompanied Violin", 1),
    ("Clarinet Quintet", 1),
    ("Pairs Clarinet-Horn-Bassoon", 1),
    ("Piano Quartet", 1),
    ("Accompanied Cello", 1),
)
TEST_QUOTA: Sequence[Tuple[str, int]] = (
    ("Solo Piano", 1),
    ("Pairs Clarinet-Horn-Bassoon", 1),
    ("String Quartet", 1),
    ("Solo Violin", 1),
    ("Solo Cello", 1),
    ("Accompanied Violin", 1),
)


def best_window(rows: Sequence[LabelRow], seconds: int) -> Tuple[int, Tuple[int, float]]:
    """Start second of the ``seconds``-long window with the most instruments present, then the most notes."""
    last = max((r.end for r in rows), default=0)
    num_bins = max(1, int(np.ceil(last / SAMPLE_RATE)))
    programs = sorted({r.instrument for r in rows})
    activity = np.zeros((len(programs), num_bins + 1))  # note-seconds per program and 1-s bin
    index = {p: i for i, p in enumerate(programs)}
    for r in rows:
        start, end = r.start / SAMPLE_RATE, r.end / SAMPLE_RATE
        for b in range(int(start), min(int(np.ceil(end)), num_bins)):
            activity[index[r.instrument], b] += min(end, b + 1) - max(start, b)
    cumulative = np.concatenate([np.zeros((len(programs), 1)), np.cumsum(activity, axis=1)], axis=1)
    best_start, best_score = 0, (-1, -1.0)
    for start in range(0, max(1, num_bins - seconds + 1)):
        per_program = cumulative[:, min(start + seconds, num_bins)] - cumulative[:, start]
        score = (int(np.sum(per_program >= MIN_PRESENT_SECONDS)), round(float(per_program.sum()), 6))
        if score > best_score:
            best_start, best_score = start, score
    return best_start, best_score


def _fingerprint(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def select(musicnet: Path, seconds: int = EXCERPT_SECONDS, seed: int = SEED) -> List[Dict]:
    """The excerpt plan: one dict per excerpt with id, split, ensemble, start second, rows and programs."""
    _, metadata = read_metadata(musicnet)
    rng = np.random.default_rng(seed)
    chosen: List[Dict] = []
    seen_files = set()
    test_compositions = set()
    for split, quota in (("test", TEST_QUOTA), ("train", TRAIN_QUOTA)):
        ids = sorted(p.stem for p in (musicnet / f"{split}_labels").glob("*.csv"))
        used_compositions = set()
        for ensemble, count in quota:
            candidates = [i for i in ids if metadata.get(i, {}).get("ensemble") == ensemble]
            candidates = [candidates[k] for k in rng.permutation(len(candidates))]
            # fresh compositions first, then the rest (stable within each group)
            candidates.sort(key=lambda i: _composition(metadata[i]) in used_compositions)
            picked = 0
            for rid in candidates:
                composition = _composition(metadata[rid])
                path = musicnet / f"{split}_labels" / f"{rid}.csv"
                digest = _fingerprint(path)
                if digest in seen_files or (split == "train" and composition in test_compositions):
                    continue
                rows = read_label_rows(path)
                start, score = best_window(rows, seconds)
                clipped = clip_rows(rows, start * SAMPLE_RATE, (start + seconds) * SAMPLE_RATE)
                seen_files.add(digest)
                used_compositions.add(composition)
                chosen.append({"id": rid, "split": split, "ensemble": ensemble, "start_s": start,
                               "seconds": seconds, "rows": clipped,
                               "programs": sorted({r.instrument for r in clipped}), "score": score})
                picked += 1
                if picked == count:
                    break
            if picked < count:
                raise SystemExit(f"only {picked} of {count} {ensemble!r} recordings available in {split}")
        if split == "test":
            test_compositions = {_composition(metadata[c["id"]]) for c in chosen}
    return chosen


def _composition(meta: Dict[str, str]) -> Tuple[str, str]:
    return meta.get("composer", ""), meta.get("composition", "")


def check(chosen: Sequence[Dict]) -> Dict[str, Counter]:
    """Pieces per instrument per split; fails if the train split lacks an instrument."""
    counts = {split: Counter() for split in ("train", "test")}
    for c in chosen:
        counts[c["split"]].update(c["programs"])
    missing = set(MUSICNET_PROGRAMS) - set(counts["train"])
    if missing:
        raise SystemExit(f"train excerpts lack instrument program(s) {sorted(missing)}")
    return counts


def write(chosen: Sequence[Dict], musicnet: Path, out: Path) -> None:
    """Replace ``out``'s label folders, metadata and windows.csv with the chosen excerpts."""
    columns, metadata = read_metadata(musicnet)
    for split in ("train", "test"):
        folder = out / f"{split}_labels"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    for c in chosen:
        write_label_rows(out / f"{c['split']}_labels" / f"{c['id']}.csv", c["rows"])
    meta_rows = []
    for c in sorted(chosen, key=lambda c: int(c["id"])):
        row = dict(metadata[c["id"]])
        row["seconds"] = str(c["seconds"])
        meta_rows.append(row)
    _write_csv(out / "musicnet_metadata.csv", columns, meta_rows)
    window_columns = ["id", "split", "ensemble", "start_seconds", "end_seconds", "instruments", "notes"]
    _write_csv(out / "windows.csv", window_columns, [
        {"id": c["id"], "split": c["split"], "ensemble": c["ensemble"], "start_seconds": c["start_s"],
         "end_seconds": c["start_s"] + c["seconds"], "instruments": " ".join(map(str, c["programs"])),
         "notes": len(c["rows"])}
        for c in sorted(chosen, key=lambda c: (c["split"] != "train", int(c["id"])))
    ])


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--musicnet", type=Path, default=HERE.parents[2].parent / "shared" / "musicnet",
                        help="MusicNet folder with train_labels/, test_labels/, musicnet_metadata.csv")
    parser.add_argument("--out", type=Path, default=HERE, help="where to write (default: next to this script)")
    parser.add_argument("--seconds", type=int, default=EXCERPT_SECONDS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    chosen = select(args.musicnet, args.seconds, args.seed)
    counts = check(chosen)
    write(chosen, args.musicnet, args.out)
    for split in ("train", "test"):
        items = [c for c in chosen if c["split"] == split]
        print(f"{split}: {len(items)} excerpts, {sum(c['seconds'] for c in items) / 60:.1f} min")
        for program in sorted(counts[split]):
            print(f"  {MUSICNET_PROGRAMS[program]:<12} {counts[split][program]} piece(s)")
    size = sum(p.stat().st_size for p in args.out.rglob("*.csv"))
    print(f"label CSVs: {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
