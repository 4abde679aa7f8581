"""Interrupted work and determinism.

* ``prepare`` killed mid-run (SIGKILL to its whole process group, as a job scheduler or the out-of-memory
  killer would) leaves no partial output; the rerun completes and its files equal an uninterrupted run's,
  byte for byte, and the killed run's temporary folder does not survive it.
* ``prepare`` with a fixed seed writes byte-identical files across runs and across ``--num-proc 1`` / ``2``.
* ``predict --format csv --output F`` killed while writing leaves no truncated file under ``F``.

Training killed and resumed from its last checkpoint is tested in ``test_train.py``.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import default_recordings, make_musicnet
from instrument_classifier.data.prepare import build_dataset

REPO = Path(__file__).resolve().parents[1]


def file_hashes(folder: Path) -> dict:
    """``{relative path: sha256}`` of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def cli_command(*args) -> list:
    return [sys.executable, "-m", "instrument_classifier.cli", *map(str, args)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Eight recordings of 8 s (about 2 s of feature extraction): long enough to be killed half-way."""
    return make_musicnet(tmp_path_factory.mktemp("interrupt") / "corpus", recordings=default_recordings(seconds=8.0))


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """An uninterrupted run (one process): the files every other run must reproduce exactly."""
    root = tmp_path_factory.mktemp("reference")
    build_dataset(corpus, root / "out", cache_dir=root / "cache", num_proc=1, seed=0, progress=False)
    return file_hashes(root / "out")


def test_prepare_is_byte_identical_across_runs_and_num_proc(corpus, reference, tmp_path):
    for name, num_proc in (("again", 1), ("two", 2)):
        out = tmp_path / name
        build_dataset(corpus, out, cache_dir=tmp_path / f"cache-{name}", num_proc=num_proc, seed=0, progress=False)
        got = file_hashes(out)
        assert got.keys() == reference.keys()
        differ = [f for f in got if got[f] != reference[f]]
        assert not differ, f"--num-proc {num_proc}: these files differ from the first run: {differ}"
    # and the seed matters: another split seed moves other pieces to validation
    build_dataset(corpus, tmp_path / "seed1", cache_dir=tmp_path / "cache-again", seed=1, progress=False)
    assert file_hashes(tmp_path / "seed1")["prepare_info.json"] != reference["prepare_info.json"]


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"prepare finished (status {proc.returncode}) before it could be killed:\n"
                                 f"{proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("prepare did not start generating in time")
        time.sleep(0.02)


def test_prepare_killed_mid_generation_then_rerun_equals_uninterrupted(corpus, reference, tmp_path):
    out, cache = tmp_path / "data" / "out", tmp_path / "cache"
    args = ["prepare", "--data-dir", corpus, "--output", out, "--cache-dir", cache]
    # the killed run uses two worker processes, the rerun one: the cache left behind must not matter
    proc = subprocess.Popen(cli_command(*args, "--num-proc", "2"), cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # a split is being generated: datasets' ".incomplete" folder holds a shard being written
        _wait_for(lambda: any(p.is_file() for d in cache.rglob("*.incomplete") for p in d.iterdir()), proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not out.exists()  # nothing that looks like a dataset

    rerun = subprocess.run(cli_command(*args, "--num-proc", "1"), cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert file_hashes(out) == reference
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]


def test_prepare_killed_while_writing_leaves_no_partial_output_and_rerun_cleans_up(corpus, reference, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    # A run killed between writing its temporary folder and moving it into place: simulated with the
    # folder a real run names after its host and (now dead) process id, half-written.
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.tmp-{socket.gethostname()}-{dead.pid}-abc123"
    (stale / "train").mkdir(parents=True)
    (stale / "train" / "data-00000-of-00001.arrow").write_bytes(b"\0" * 4096)
    live = tmp_path / f".out.tmp-{socket.gethostname()}-{os.getpid()}-def456"  # a run still going: kept
    live.mkdir()
    build_dataset(corpus, out, cache_dir=cache, progress=False)
    assert file_hashes(out) == reference
    assert not stale.exists() and live.exists()


# -- predict --output ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import torch
    from instrument_classifier.modeling import MODEL_CLASSES
    from instrument_classifier.modeling.feature_extraction_instrument import InstrumentFeatureExtractor

    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    config_class, model_class = MODEL_CLASSES["cnn"]
    model_class(config_class(taxonomy="seed12", conv_channels=[8, 16])).save_pretrained(folder)
    InstrumentFeatureExtractor(mean=[0.0] * 13, std=[50.0] * 13).save_pretrained(folder)
    return folder


def test_predict_killed_mid_run_leaves_the_previous_output_file(model_dir, tmp_path):
    import threading

    import badfiles

    wav = badfiles.long_pcm16(tmp_path / "six_minutes.wav", hours=0.1, sr=8000)  # long enough for a progress bar
    out = tmp_path / "segments.csv"
    out.write_text("previous results\n")
    proc = subprocess.Popen(cli_command("predict", wav, "--model", model_dir, "--format", "csv", "--output", out),
                            cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = bytearray()
    reader = threading.Thread(target=lambda: [seen.extend(c) for c in iter(lambda: proc.stderr.read(1), b"")],
                              daemon=True)
    reader.start()
    try:
        # the progress bar, named after the file: it is being analysed
        _wait_for(lambda: b"six_minutes.wav" in seen, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["segments.csv", "six_minutes.wav"]


def test_predict_output_interrupted_while_writing_keeps_the_previous_file(tmp_path, monkeypatch):
    from instrument_classifier import predict
    out = tmp_path / "segments.csv"
    out.write_text("previous results\n")

    def interrupted(fd):  # the bytes are written, the rename has not happened: the worst moment to die
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict.write_atomic(out, "file,start_s,end_s,instrument,score\n" + "x.wav,0.000,1.000,Strings,0.9\n" * 5000)
    assert out.read_text() == "previous results\n"
    assert [p.name for p in tmp_path.iterdir()] == ["segments.csv"]
