"""The PyTorch musicnn port against the original TensorFlow graph, patch by patch, on real and synthetic clips.

Prints one line: the largest absolute differences between ``MusicnnFrontend`` (converted weights) and
musicnn's TF graph (its own checkpoint) fed the same log-mel patches, for the taggram, the 200-d
penultimate embedding and every other output; the same for the whole pipelines (musicnn's librosa
log-mel + TF vs :func:`musicnn_preprocess` + torch) and for the log-mel alone; and how much faster torch
runs the patches than TF, both timed in this run, one patch at a time (as ``musicnn.extractor``) and in
batches of 32.

The TF reference runs the graph one patch per ``session.run`` and reads every output of that run,
rather than trusting ``musicnn.extractor.extractor()``, which returns the first patch's penultimate and
mid-end features for every later patch (and crashes on clips shorter than 187 frames).

Needs TensorFlow (2.15.1), ``musicnn==0.1.0``, torch, librosa and safetensors, e.g. a venv at
``.tfenv/`` beside this repository's ``.venv/`` (or ``$MUSICNN_TF_PYTHON``), which this script re-runs itself
with when the current Python lacks TensorFlow; without one it says so and exits. Weights:
``scripts/convert_musicnn.py``.

    python bench/bench_musicnn_port.py [--weights FILE] [--hop-frames 62] [--real-dev DIR]
    python bench/bench_musicnn_port.py --write-fixture tests/fixtures/musicnn_tf_reference.json
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TF_PYTHON = str(REPO_ROOT / ".tfenv" / "bin" / "python")  # or $MUSICNN_TF_PYTHON
# scripts/convert_musicnn.py's output, or $MUSICNN_WEIGHTS
DEFAULT_WEIGHTS = str(REPO_ROOT / "musicnn_mtt.safetensors")
DEFAULT_REAL_DEV = str(REPO_ROOT.parent / "shared" / "real-dev")
SR = 16000


def ensure_tensorflow() -> None:
    """Re-run this script with a Python that has TensorFlow, or explain and exit."""
    if importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("musicnn") is not None:
        return
    tf_python = os.environ.get("MUSICNN_TF_PYTHON", DEFAULT_TF_PYTHON)
    # Not realpath: a venv's python links to the same interpreter as the one running now.
    if os.path.exists(tf_python) and not os.environ.get("_MUSICNN_BENCH_REEXEC"):
        os.environ["_MUSICNN_BENCH_REEXEC"] = "1"  # no loop if that Python lacks TensorFlow too
        os.execv(tf_python, [tf_python, *sys.argv])
    print("bench_musicnn_port: skipped: needs a Python with tensorflow-cpu==2.15.1 and musicnn==0.1.0 "
          f"(this one has none, nor has {tf_python}; set MUSICNN_TF_PYTHON to one)")
    sys.exit(0)


def load_frontend_module():
    # By path: the TF environment need not have transformers, which the package's __init__ imports.
    path = REPO_ROOT / "instrument_classifier" / "modeling" / "musicnn_frontend.py"
    spec = importlib.util.spec_from_file_location("musicnn_frontend", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def reference_signal(spec: dict):
    """The synthetic test signals; ``tests/test_musicnn_frontend.py`` builds them from the same specs."""
    # once ensure_tensorflow has picked the Python: the top imports only the standard library
    import numpy as np

    n = int(round(spec["seconds"] * SR))
    if spec["kind"] == "sine":
        return (spec["amplitude"] * np.sin(2 * np.pi * spec["frequency"] * np.arange(n) / SR)).astype(np.float32)
    if spec["kind"] == "noise":
        return (spec["std"] * np.random.default_rng(spec["seed"]).standard_normal(n)).astype(np.float32)
    if spec["kind"] == "chirp":  # exponential sweep: every patch sees different content
        t = np.arange(n) / SR
        k = np.log(spec["f1"] / spec["f0"]) / spec["seconds"]
        return (spec["amplitude"] * np.sin(2 * np.pi * spec["f0"] * (np.exp(k * t) - 1) / k)).astype(np.float32)
    raise ValueError(spec)


SYNTHETIC = {
    "sine440": {"kind": "sine", "frequency": 440.0, "amplitude": 0.5, "seconds": 6.0},
    "noise": {"kind": "noise", "std": 0.1, "seed": 0, "seconds": 6.0},
    "chirp": {"kind": "chirp", "f0": 50.0, "f1": 7000.0, "amplitude": 0.3, "seconds": 10.0},
    "short_sine": {"kind": "sine", "frequency": 220.0, "amplitude": 0.3, "seconds": 1.0},
}


def upstream_log_mel(waveform):
    """musicnn.extractor.batch_data's spectrogram, on a waveform already loaded at 16 kHz."""
    # once ensure_tensorflow has picked the Python: the top imports only the standard library
    import librosa
    import numpy as np

    audio_rep = librosa.feature.melspectrogram(y=waveform, sr=SR, hop_length=256, n_fft=512, n_mels=96).T
    audio_rep = audio_rep.astype(np.float16)
    return np.log10(10000 * audio_rep.astype(np.float32) + 1)  # what numpy < 2 computes (see musicnn_log_mel)


class TFMusicnn:
    """musicnn's own graph and checkpoint; ``run`` feeds one batch and returns every output."""

    OUTPUTS = ("probabilities", "logits", "timbral", "temporal", "cnn1", "cnn2", "cnn3", "mean_pool", "max_pool",
               "penultimate")

    def __init__(self, threads: int):
        # once ensure_tensorflow has picked the Python: the top imports only the standard library
        import musicnn
        import tensorflow as tf
        from musicnn import models

        tf.compat.v1.disable_eager_execution()
        tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
        self.graph = tf.Graph()
        with self.graph.as_default(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.compat.v1.layers deprecation notices
            self.x = tf.compat.v1.placeholder(tf.float32, [None, 187, 96])
            self.is_training = tf.compat.v1.placeholder(tf.bool)
            logits, timbral, temporal, cnn1, cnn2, cnn3, mean_pool, max_pool, penultimate = models.define_model(
                self.x, self.is_training, "MTT_musicnn", 50)
            self.fetches = [tf.nn.sigmoid(logits), logits, timbral, temporal, cnn1, cnn2, cnn3, mean_pool, max_pool,
                            penultimate]
            config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
            self.session = tf.compat.v1.Session(graph=self.graph, config=config)
            checkpoint = os.path.join(os.path.dirname(musicnn.__file__), "MTT_musicnn") + "/"
            tf.compat.v1.train.Saver().restore(self.session, checkpoint)

    def run(self, patches):
        values = self.session.run(self.fetches, feed_dict={self.x: patches, self.is_training: False})
        # The mid-end maps keep a trailing channel axis of 1 in the graph (extractor() squeezes it).
        return {name: (v[..., 0] if name.startswith("cnn") else v) for name, v in zip(self.OUTPUTS, values)}


def run_torch(model, patches):
    # once ensure_tensorflow has picked the Python: the top imports only the standard library
    import torch

    with torch.inference_mode():
        out = model(torch.from_numpy(patches))
    return {name: getattr(out, name).numpy() for name in TFMusicnn.OUTPUTS}


def one_at_a_time(run, patches):
    """Run patch by patch (the reference: no batch effects), concatenating every output."""
    # once ensure_tensorflow has picked the Python: the top imports only the standard library
    import numpy as np

    outs = [run(patches[i : i + 1]) for i in range(len(patches))]
    return {name: np.concatenate([o[name] for o in outs]) for name in outs[0]}


def load_clips(real_dev: Path, per_folder: int):
    """A few real-dev clips per folder (read in place), then the synthetic signals."""
    # once ensure_tensorflow has picked the Python: the top imports only the standard library
    import librosa

    clips = []
    manifest = real_dev / "manifest.csv"
    if manifest.exists():
        seen = {}
        for row in csv.DictReader(manifest.open()):
            folder = row["file"].split("/")[0]
            if seen.get(folder, 0) < per_folder:
                seen[folder] = seen.get(folder, 0) + 1
                clips.append((row["file"], librosa.load(str(real_dev / row["file"]), sr=SR)[0]))
    clips += [(name, reference_signal(spec)) for name, spec in SYNTHETIC.items()]
    return clips


def write_fixture(path: Path, tf_model, frontend) -> None:
    """Tags of the sine and noise signals through the whole upstream pipeline (librosa log-mel + TF)."""
    # once ensure_tensorflow has picked the Python: the top imports only the standard library
    import numpy as np

    record = {
        "about": "musicnn 0.1.0 MTT_musicnn, TensorFlow graph on musicnn's own log-mel (librosa, float16), "
                 "patches of 187 frames with hop 187; written by bench/bench_musicnn_port.py --write-fixture",
        "signals": {},
    }
    for name in ("sine440", "noise"):
        waveform = reference_signal(SYNTHETIC[name])
        patches, _ = frontend.musicnn_patches(upstream_log_mel(waveform))
        out = one_at_a_time(tf_model.run, patches.numpy())
        record["signals"][name] = {
            "spec": SYNTHETIC[name],
            "waveform_sum_of_squares": float(np.sum(waveform.astype(np.float64) ** 2)),
            "taggram": np.round(out["probabilities"].astype(np.float64), 7).tolist(),
            "penultimate_first8": np.round(out["penultimate"][:, :8].astype(np.float64), 6).tolist(),
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    # One line per signal field, so the file stays short and diffs readably.
    text = json.dumps(record, indent=1)
    path.write_text(re.sub(r"\[\s+([^\[\]]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n")
    print(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=os.environ.get("MUSICNN_WEIGHTS", DEFAULT_WEIGHTS))
    parser.add_argument("--real-dev", type=Path, default=Path(DEFAULT_REAL_DEV))
    parser.add_argument("--per-folder", type=int, default=2, help="real-dev clips per folder")
    parser.add_argument("--hop-frames", type=int, default=62, help="patch hop (overlapping patches: ~1 s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write-fixture", type=Path)
    args = parser.parse_args()

    ensure_tensorflow()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # once ensure_tensorflow has picked the Python: the top imports only the standard library
    import numpy as np
    import torch

    if not os.path.exists(args.weights):
        print(f"bench_musicnn_port: no converted weights at {args.weights}: run scripts/convert_musicnn.py first")
        return 1
    torch.set_num_threads(args.threads)
    frontend = load_frontend_module()
    model = frontend.MusicnnFrontend.from_safetensors(args.weights)
    tf_model = TFMusicnn(args.threads)
    if args.write_fixture:
        write_fixture(args.write_fixture, tf_model, frontend)
        return 0

    diffs = {name: 0.0 for name in TFMusicnn.OUTPUTS}
    end_to_end = {"probabilities": 0.0, "penultimate": 0.0}
    log_mel_diff, all_patches = 0.0, []
    clips = load_clips(args.real_dev, args.per_folder)
    for name, waveform in clips:
        # 1) The model alone: identical patches (ours) into both.
        patches = frontend.musicnn_preprocess(waveform, hop_frames=args.hop_frames)[0].numpy()
        all_patches.append(patches)
        tf_out = one_at_a_time(tf_model.run, patches)
        torch_out = one_at_a_time(lambda p: run_torch(model, p), patches)
        for key in diffs:
            diffs[key] = max(diffs[key], float(np.abs(tf_out[key] - torch_out[key]).max()))
        # 2) The whole pipeline: musicnn's librosa log-mel + TF against ours + torch.
        upstream = upstream_log_mel(waveform)
        ours = frontend.musicnn_log_mel(waveform).numpy()
        log_mel_diff = max(log_mel_diff, float(np.abs(upstream - ours).max()))
        upstream_patches = frontend.musicnn_patches(upstream, hop_frames=args.hop_frames)[0].numpy()
        tf_full = one_at_a_time(tf_model.run, upstream_patches)
        for key in end_to_end:
            end_to_end[key] = max(end_to_end[key], float(np.abs(tf_full[key] - torch_out[key]).max()))

    # Speed on the same patches, alternating so load hits both alike; best of 3.
    patches = np.concatenate(all_patches)
    timings = {}
    for label, run_tf, run_pt in (
        ("batch 1", lambda: one_at_a_time(tf_model.run, patches),
         lambda: one_at_a_time(lambda p: run_torch(model, p), patches)),
        ("batch 32", lambda: [tf_model.run(patches[i : i + 32]) for i in range(0, len(patches), 32)],
         lambda: [run_torch(model, patches[i : i + 32]) for i in range(0, len(patches), 32)]),
    ):
        best = [float("inf"), float("inf")]
        for _ in range(3):
            for j, fn in enumerate((run_tf, run_pt)):
                start = time.perf_counter()
                fn()
                best[j] = min(best[j], time.perf_counter() - start)
        timings[label] = best
    others = max(v for k, v in diffs.items() if k not in ("probabilities", "penultimate"))
    print(
        f"musicnn port, {len(clips)} clips / {len(patches)} patches (hop {args.hop_frames}): max|torch-TF| "
        f"taggram {diffs['probabilities']:.2e}, penultimate {diffs['penultimate']:.2e}, other outputs {others:.2e}; "
        f"whole pipeline taggram {end_to_end['probabilities']:.2e}, penultimate {end_to_end['penultimate']:.2e} "
        f"(log-mel {log_mel_diff:.2e}); speed torch/TF "
        + ", ".join(f"{tf_t / pt_t:.2f}x at {label} ({1e3 * pt_t / len(patches):.1f} vs "
                    f"{1e3 * tf_t / len(patches):.1f} ms/patch)"
                    for label, (tf_t, pt_t) in timings.items())
        + f", {args.threads} threads"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
