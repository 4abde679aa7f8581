"""Render the Space's example clips from MusicNet *test* labels (deterministic).

For each chosen test excerpt shipped in ``instrument_classifier/data/excerpts/test_labels/``, the
10-second window (on a 1 s grid) where every instrument of the excerpt plays for longest is
rendered with FluidSynth and the FluidR3 GM sample library (the renderer of
``instrument-classifier synth``), then encoded as Ogg Vorbis, mono 44.1 kHz, so the four clips
stay well under 1 MB together. ``examples.csv`` records where each clip comes from and which
instruments play in it (General MIDI programs, as in MusicNet).

Run from the repository root::

    .venv/bin/python space/examples/make_examples.py
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from instrument_classifier.data.render import SAMPLE_RATE, default_labels_dir, read_label_rows, render_corpus
from instrument_classifier.data.taxonomy import MUSICNET_PROGRAMS

HERE = Path(__file__).resolve().parent

#: test id -> (file name, caption); one clip per ensemble type of the test split
CLIPS = {
    "2628": ("beethoven_violin_sonata_10.ogg", "Beethoven: Violin Sonata No 10 (piano, violin)"),
    "2416": ("beethoven_wind_sextet.ogg", "Beethoven: Wind Sextet (horn, bassoon, clarinet)"),
    "2106": ("haydn_string_quartet_53.ogg", "Haydn: String Quartet No 53 (violin, viola, cello)"),
    "2556": ("beethoven_piano_sonata_30.ogg", "Beethoven: Piano Sonata No 30 (piano)"),
}
CLIP_SECONDS = 10
VORBIS_QUALITY = 0.55  # soundfile's compression_level for Vorbis: 0 = best quality, 1 = smallest


def best_window(label_csv: Path, seconds: int = CLIP_SECONDS) -> int:
    """Start second of the window where the least-heard instrument of the excerpt sounds longest."""
    rows = read_label_rows(label_csv)
    programs = sorted({r.instrument for r in rows})
    total = int(np.ceil(max(r.end for r in rows) / SAMPLE_RATE))
    best, best_score = 0, (-1.0, -1.0)
    for start in range(0, max(1, total - seconds) + 1):
        lo, hi = start * SAMPLE_RATE, (start + seconds) * SAMPLE_RATE
        sounding = {p: 0.0 for p in programs}
        for r in rows:
            sounding[r.instrument] += max(0, min(r.end, hi) - max(r.start, lo)) / SAMPLE_RATE
        score = (min(sounding.values()), sum(sounding.values()))
        if score > best_score:
            best, best_score = start, score
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: this folder)")
    args = parser.parse_args()
    labels_root = default_labels_dir()
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for rid, (name, caption) in CLIPS.items():
            start = best_window(labels_root / "test_labels" / f"{rid}.csv")
            corpus = Path(tmp) / rid
            render_corpus(None, None, corpus, split="test", ids=[rid], start_seconds=start,
                          max_seconds=CLIP_SECONDS, seed=0, progress=False)
            audio, sr = sf.read(corpus / "test_data" / f"{rid}.wav", dtype="float32")
            audio = audio[: CLIP_SECONDS * sr]  # drop the release tail the renderer appends
            programs = sorted({r.instrument for r in read_label_rows(corpus / "test_labels" / f"{rid}.csv")})
            target = args.out / name
            tmp_target = target.with_name(f".{target.name}.tmp")
            sf.write(tmp_target, audio, sr, format="OGG", subtype="VORBIS", compression_level=VORBIS_QUALITY)
            os.replace(tmp_target, target)
            records.append({
                "file": name, "musicnet_id": rid, "split": "test", "excerpt_start_s": start,
                "seconds": CLIP_SECONDS, "programs": " ".join(map(str, programs)),
                "instruments": ", ".join(MUSICNET_PROGRAMS[p] for p in programs), "caption": caption,
            })
            print(f"{name}: id {rid}, excerpt {start}-{start + CLIP_SECONDS} s, {target.stat().st_size / 1e3:.0f} kB")
    with open(args.out / "examples.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)


if __name__ == "__main__":
    main()
