"""Shared fixtures: small MusicNet-layout folders built from deterministic tones.

Each instrument gets its own harmonic profile and envelope, so the audio is
distinguishable per instrument and labels are exact to the sample.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pytest
import soundfile as sf

SR = 44100
HEADER = ["start_time", "end_time", "instrument", "note", "start_beat", "end_beat", "note_value"]

# program -> (harmonic amplitudes, decay per second)
_TIMBRES: Dict[int, Tuple[Sequence[float], float]] = {
    1: ((1.0, 0.5, 0.3, 0.1), 3.0),  # piano: bright, decaying
    7: ((0.6, 0.6, 0.5, 0.4, 0.3), 6.0),
    41: ((1.0, 0.7, 0.5, 0.4, 0.3, 0.2), 0.0),  # sawtooth-like strings
    42: ((1.0, 0.6, 0.4, 0.3), 0.0),
    43: ((1.0, 0.8, 0.5, 0.3), 0.0),
    44: ((1.0, 0.9, 0.3), 0.0),
    61: ((1.0, 0.4, 0.1), 0.0),
    69: ((0.3, 1.0, 0.6, 0.5), 0.0),
    71: ((0.8, 1.0, 0.4), 0.0),
    72: ((1.0, 0.05, 0.5, 0.05, 0.3), 0.0),  # clarinet: odd harmonics
    74: ((1.0, 0.1), 0.0),  # flute: nearly sine
}

Note = Tuple[int, int, int, int]  # start, end (samples), program, midi pitch


def synth_notes(notes: Sequence[Note], num_samples: int, seed: int = 0) -> np.ndarray:
    """Render notes as harmonic tones; silence elsewhere (plus -80 dB noise)."""
    rng = np.random.default_rng(seed)
    out = 1e-4 * rng.standard_normal(num_samples).astype(np.float64)
    for start, end, program, pitch in notes:
        end = min(end, num_samples)
        if end <= start:
            continue
        t = np.arange(end - start) / SR
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        amps, decay = _TIMBRES.get(program, ((1.0,), 0.0))
        tone = sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t) for k, a in enumerate(amps) if f0 * (k + 1) < SR / 2)
        env = np.exp(-decay * t) * np.minimum(1.0, t / 0.005)
        out[start:end] += 0.1 * tone * env
    return out.astype(np.float32)


def bench_module(name: str):
    """The script ``bench/<name>.py`` imported as a module (the bench folder is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def two_labelled_clips(folder: Path) -> Path:
    """Two labelled 3-s clips (a harmonic tone, and stereo noise that is none of the labels) and their manifest."""
    rng = np.random.default_rng(0)
    t = np.arange(3 * 22050) / 22050
    tone = sum(0.2 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 6))
    (folder / "a").mkdir()
    sf.write(folder / "a" / "tone.wav", tone.astype(np.float32), 22050)
    sf.write(folder / "noise.flac", (0.1 * rng.standard_normal((len(t), 2))).astype(np.float32), 22050)
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        f.write("file,instruments,other_sounds\na/tone.wav,Flute,\nnoise.flac,,noise\n")
    return manifest


def write_labels(path: Path, notes: Sequence[Note]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for start, end, program, pitch in notes:
            w.writerow([start, end, program, pitch, 0.0, 1.0, "Quarter"])


def default_recordings(seconds: float = 8.0) -> Dict[str, Dict]:
    """Six train recordings and two test recordings covering all 11 programs."""
    n = int(seconds * SR)
    groups = {
        "1001": ("train", [1, 41]),
        "1002": ("train", [41, 42, 43]),
        "1003": ("train", [44, 61, 71]),
        "1004": ("train", [69, 72, 74]),
        "1005": ("train", [1, 7]),
        "1006": ("train", [43, 72]),
        "2001": ("test", [1, 41, 74]),
        "2002": ("test", [42, 43, 69, 71]),
    }
    recordings = {}
    for rid, (split, programs) in groups.items():
        notes: List[Note] = []
        step = SR // 2
        for i, start in enumerate(range(0, n - step, step)):
            program = programs[i % len(programs)]
            pitch = 48 + (i * 5 + int(rid)) % 24
            notes.append((start, start + step + SR // 4, program, pitch))
        recordings[rid] = {"split": split, "notes": notes, "num_samples": n}
    return recordings


def make_musicnet(root: Path, recordings: Dict[str, Dict] | None = None, layout: str = "original",
                  sr: int = SR, subtype: str = "PCM_16") -> Path:
    """Write a MusicNet-layout folder; returns the path to pass as ``--data-dir``.

    ``layout="kaggle"`` nests it as ``root/musicnet/musicnet/...`` with the metadata one level up.
    """
    recordings = default_recordings() if recordings is None else recordings
    base = root / "musicnet" / "musicnet" if layout == "kaggle" else root
    meta_dir = root / "musicnet" if layout == "kaggle" else root
    for rid, rec in recordings.items():
        audio = synth_notes(rec["notes"], rec["num_samples"], seed=int(rid))
        if sr != SR:
            import soxr

            audio = soxr.resample(audio, SR, sr)
        (base / f"{rec['split']}_data").mkdir(parents=True, exist_ok=True)
        sf.write(base / f"{rec['split']}_data" / f"{rid}.wav", audio, sr, subtype=subtype)
        write_labels(base / f"{rec['split']}_labels" / f"{rid}.csv", rec["notes"])
    meta_dir.mkdir(parents=True, exist_ok=True)
    with open(meta_dir / "musicnet_metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "composer", "composition", "movement", "ensemble", "source", "transcriber", "catalog_name",
                    "seconds"])
        for rid, rec in recordings.items():
            w.writerow([rid, "Synthetic", "Tones", "1", "Test", "tests", "tests", "T1", rec["num_samples"] // SR])
    return root


@pytest.fixture
def make_synthetic_musicnet():
    """Factory fixture: ``make_synthetic_musicnet(tmp_path, layout="original", recordings=None)``."""
    return make_musicnet


#: Shipped excerpts rendered by ``rendered_corpus``: together all 11 MusicNet instruments in train
#: (piano quintet with contrabass, wind quintet, violin + harpsichord, wind and strings octet, solo cello)
#: and 7 in test (accompanied violin, clarinet/bassoon pairs, string quartet).
RENDERED_CORPUS_IDS = {"train": ("1727", "2082", "2127", "2221", "2285"), "test": ("2106", "2416", "2628")}


@pytest.fixture(scope="session")
def rendered_corpus(tmp_path_factory) -> Path:
    """A real rendered MusicNet-layout corpus: 8 shipped excerpts, first 10 s each, FluidR3 GM (~2 s to build).

    Layout: ``train_data/ID.wav``, ``train_labels/ID.csv``, ``test_data/``, ``test_labels/``,
    ``musicnet_metadata.csv``, ``render_info.json``. Fails (never skips) if FluidR3 GM is missing:
    ``make test`` installs it.
    """
    from instrument_classifier.data import render

    if not render.DEFAULT_SOUNDFONT.is_file():
        pytest.fail(f"{render.DEFAULT_SOUNDFONT} not installed (apt fluid-soundfont-gm; `make test` installs it)")
    out = tmp_path_factory.mktemp("rendered_corpus")
    for split, ids in RENDERED_CORPUS_IDS.items():
        render.render_corpus(None, None, out, split=split, ids=ids, max_seconds=10.0, seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def musicnn_backbone_file(tmp_path_factory) -> Path:
    """A musicnn state dict with seeded random weights and non-trivial batch-norm statistics, saved as
    ``scripts/convert_musicnn.py`` saves the real one (the converted MTT weights are not in git), with the
    provenance file it writes beside them (the licence text goes with every copy)."""
    import json

    import torch
    from safetensors.torch import save_file

    from instrument_classifier.modeling.musicnn_frontend import MusicnnFrontend

    torch.manual_seed(0)
    net = MusicnnFrontend()
    for module in net.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("musicnn") / "musicnn_random.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    path.with_suffix(".json").write_text(json.dumps({
        "source": {"package": "musicnn", "version": "0.1.0"},
        "licence": {"name": "ISC", "text": "ISC License\n\nCopyright (c) 2019, Jordi Pons (test copy)\n"}}))
    return path
