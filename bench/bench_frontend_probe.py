"""Which front end carries over to real recordings? The same linear probe on musicnn features and on MFCCs.

Both front ends see the same 3-s patches: the first ``--seconds`` of every recording of the rendered training
corpora (``--corpus``, MusicNet layout; a patch is labelled with the instruments sounding in at least 10 % of
it), and every clip of the real development set (``--manifest``). Per front end, one logistic regression per
instrument (balanced classes, standardised features) is trained on the renders and scores the real clips
(clip score: the maximum over its patches). Front ends:

* ``musicnn``: the MagnaTagATune ``MTT_musicnn`` model (:mod:`instrument_classifier.modeling.musicnn_frontend`,
  weights converted by ``scripts/convert_musicnn.py``) at 16 kHz: its 200-d penultimate embedding, the time
  mean and maximum of its 753 per-frame features and its 50 tag logits;
* ``mfcc``: the bundled models' features (13 MFCCs + deltas at 44.1 kHz, :class:`InstrumentFeatureExtractor`),
  mean and standard deviation over the patch.

Prints one line: per front end the macro ROC-AUC over all clips and over the clips of at least 2.5 s, micro F1
and false alarms per clip with thresholds tuned for micro F1 under 2-fold cross-validation over the clips, and
the ratio of the two AUCs.

    python bench/bench_frontend_probe.py --musicnn-weights musicnn_mtt.safetensors \\
        --corpus corpora/recipe/train/fluidr3-train --corpus corpora/recipe/train/vpo-train
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_real_recordings import REAL_DEV  # noqa: E402
from instrument_classifier.data.taxonomy import get_taxonomy  # noqa: E402
from instrument_classifier.evaluation.clips import (  # noqa: E402
    clip_set_metrics, cross_validated_tuning, read_manifest,
)
from instrument_classifier.modeling.feature_extraction_instrument import InstrumentFeatureExtractor  # noqa: E402
from instrument_classifier.modeling.musicnn_frontend import MusicnnFrontend  # noqa: E402

PATCH_SECONDS = 187 * 256 / 16000  # musicnn's patch: 187 frames of 16 ms


def musicnn_features(weights: Path):
    model = MusicnnFrontend.from_safetensors(str(weights)).eval()

    def features(audio: np.ndarray, rate: int) -> np.ndarray:
        audio = resample_poly(audio, 16000 // 100, rate // 100).astype(np.float32) if rate != 16000 else audio
        with torch.inference_mode():
            out = model.embed_waveform(audio, 16000)
        return torch.cat([out.penultimate, out.mean_pool, out.max_pool, out.logits], 1).numpy()

    return features


def mfcc_features():
    extractor = InstrumentFeatureExtractor(include_deltas=True)
    patch = int(round(PATCH_SECONDS * extractor.frame_rate))

    def features(audio: np.ndarray, rate: int) -> np.ndarray:
        if rate != extractor.sampling_rate:
            audio = extractor.resample(audio, rate)
        frames = extractor.extract(audio)
        starts = range(0, max(1, len(frames) - patch + 1), patch)
        return np.stack([np.r_[frames[s:s + patch].mean(0), frames[s:s + patch].std(0)] for s in starts])

    return features


def read_mono(path: Path, seconds=None):
    info = sf.info(str(path))
    audio, rate = sf.read(str(path), dtype="float32", frames=-1 if seconds is None else int(seconds * info.samplerate))
    return (audio.mean(axis=1) if audio.ndim > 1 else audio), rate


def patch_labels(labels_csv: Path, n: int, programs: dict, num_labels: int) -> np.ndarray:
    """Multi-hot labels of ``n`` consecutive patches from the recording's start (sample times at 44.1 kHz)."""
    y = np.zeros((n, num_labels))
    length = PATCH_SECONDS * 44100
    with open(labels_csv, newline="") as f:
        for note in csv.DictReader(f):
            start, end, label = int(note["start_time"]), int(note["end_time"]), programs[int(note["instrument"])]
            for k in range(n):
                if min(end, (k + 1) * length) - max(start, k * length) > 0.1 * length:
                    y[k, label] = 1
    return y


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, action="append", required=True, help="rendered training corpus")
    parser.add_argument("--musicnn-weights", type=Path, default=os.environ.get("MUSICNN_WEIGHTS"))
    parser.add_argument("--manifest", type=Path, default=REAL_DEV)
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of each training recording")
    parser.add_argument("--C", type=float, default=0.001, help="inverse L2 strength of the probe")
    args = parser.parse_args(argv)
    if not args.manifest.is_file() or args.musicnn_weights is None or not Path(args.musicnn_weights).is_file():
        print("bench_frontend_probe: skipped, needs the real development set and converted musicnn weights "
              "(--musicnn-weights or MUSICNN_WEIGHTS)")
        return 0
    torch.set_num_threads(1)
    taxonomy = get_taxonomy("musicnet11")
    labels = list(taxonomy.labels)
    programs = {p: taxonomy.index_of(p) for p in (1, 7, 41, 42, 43, 44, 61, 69, 71, 72, 74)}
    clips = read_manifest(args.manifest, labels)
    y_clips = np.array([[label in c.instruments for label in labels] for c in clips], dtype=int)
    long_enough = np.array([sf.info(str(c.file)).duration >= 2.5 for c in clips])
    recordings = [(wav, corpus / "train_labels" / f"{wav.stem}.csv")
                  for corpus in args.corpus for wav in sorted((corpus / "train_data").glob("*.wav"))]
    parts = []
    t0 = time.perf_counter()
    for name, features in (("musicnn", musicnn_features(args.musicnn_weights)), ("mfcc", mfcc_features())):
        x_train, y_train = [], []
        for wav, labels_csv in recordings:
            f = features(*read_mono(wav, args.seconds))
            x_train.append(f)
            y_train.append(patch_labels(labels_csv, len(f), programs, len(labels)))
        x_train, y_train = np.concatenate(x_train), np.concatenate(y_train)
        per_clip = [features(*read_mono(c.file)) for c in clips]
        scaler = StandardScaler().fit(x_train)
        scores = np.zeros((len(clips), len(labels)))
        for j in range(len(labels)):
            if y_train[:, j].sum() < 5:  # an instrument the renders lack (the sampler has no harpsichord)
                continue
            probe = LogisticRegression(C=args.C, max_iter=3000, class_weight="balanced")
            probe.fit(scaler.transform(x_train), y_train[:, j])
            scores[:, j] = [probe.predict_proba(scaler.transform(f))[:, 1].max() for f in per_clip]
        everything = clip_set_metrics(y_clips, scores, scores >= 0.5, labels)
        long = clip_set_metrics(y_clips[long_enough], scores[long_enough], scores[long_enough] >= 0.5, labels)
        cv = cross_validated_tuning(y_clips, scores, repeats=10)
        f1, false_alarms = cv["f1_micro"], cv["false_alarms_per_clip"]
        parts.append((name, everything["roc_auc_macro"], long["roc_auc_macro"], f1, false_alarms, len(x_train)))
    text = "; ".join(f"{n} ({k} patches): macro AUC {a:.3f} (>= 2.5 s: {b:.3f}), CV micro F1 {f:.3f}, "
                     f"false alarms/clip {fa:.2f}" for n, a, b, f, fa, k in parts)
    print(f"linear probes on {len(recordings)} rendered recordings, {len(clips)} real clips: {text}; "
          f"AUC ratio musicnn/mfcc {parts[0][1] / parts[1][1]:.2f} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
