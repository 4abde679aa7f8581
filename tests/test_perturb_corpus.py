"""perturb_corpus: a rendered corpus "recorded" in drawn rooms, seeded, resumable, labels untouched."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from instrument_classifier.data.perturb_corpus import INFO_FILE, PerturbError, perturb_corpus


def _wavs(folder):
    return sorted(p.relative_to(folder) for p in folder.glob("*_data/*.wav"))


def test_copies_every_recording_with_same_length_and_identical_labels(rendered_corpus, tmp_path):
    out = tmp_path / "perturbed"
    written = perturb_corpus(rendered_corpus, out, strength="test", seed=3, progress=False)
    assert sorted(p.relative_to(out) for p in written) == _wavs(rendered_corpus)
    info = json.loads((out / INFO_FILE).read_text())
    assert info["strength"] == "test" and info["seed"] == 3
    for rel in _wavs(rendered_corpus):
        dry, sr = sf.read(rendered_corpus / rel, dtype="float32")
        wet, sr2 = sf.read(out / rel, dtype="float32")
        assert sr == sr2 and len(dry) == len(wet)
        assert not np.allclose(dry, wet, atol=1e-3)
        labels = rel.parent.name.replace("_data", "_labels") + f"/{rel.stem}.csv"
        assert (out / labels).read_bytes() == (rendered_corpus / labels).read_bytes()
        params = info["recordings"][f"{rel.parent.name.split('_')[0]}/{rel.stem}"]["perturbation"]
        assert params["rt60_s"] is not None and params["snr_db"] is not None  # "test" always adds a room and noise
    assert (out / "musicnet_metadata.csv").read_bytes() == (rendered_corpus / "musicnet_metadata.csv").read_bytes()
    # still a rendering: the sample library stays on record for model cards
    assert json.loads((out / "render_info.json").read_text())["soundfont"].endswith("FluidR3_GM.sf2")


def test_seeded_per_recording_and_independent_of_num_proc(rendered_corpus, tmp_path):
    a = perturb_corpus(rendered_corpus, tmp_path / "a", strength="train", seed=0, split="test", progress=False)
    b = perturb_corpus(rendered_corpus, tmp_path / "b", strength="train", seed=0, split="test", num_proc=2,
                       progress=False)
    c = perturb_corpus(rendered_corpus, tmp_path / "c", strength="train", seed=1, split="test", progress=False)
    for pa, pb, pc in zip(a, b, c):
        assert pa.read_bytes() == pb.read_bytes()
        assert pa.read_bytes() != pc.read_bytes()
    drawn = [v["perturbation"] for v in json.loads((tmp_path / "a" / INFO_FILE).read_text())["recordings"].values()]
    assert len({json.dumps(d, sort_keys=True) for d in drawn}) == len(drawn)  # every recording its own room


def test_resume_skips_finished_recordings_and_redoes_missing_ones(rendered_corpus, tmp_path):
    out = tmp_path / "p"
    first = perturb_corpus(rendered_corpus, out, seed=0, split="train", progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in first}
    keep = first[0].read_bytes()
    first[0].unlink()
    again = perturb_corpus(rendered_corpus, out, seed=0, split="train", progress=False)
    assert again == first
    assert first[0].read_bytes() == keep  # redone identically
    assert all(p.stat().st_mtime_ns == stamps[p] for p in first[1:])  # others untouched


def test_errors_name_the_file(rendered_corpus, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(rendered_corpus, src)
    victim = sorted((src / "train_labels").glob("*.csv"))[0]
    victim.unlink()
    with pytest.raises(PerturbError, match=victim.stem + ".wav"):
        perturb_corpus(src, tmp_path / "out", progress=False)
    with pytest.raises(PerturbError, match="must differ"):
        perturb_corpus(src, src, progress=False)
    with pytest.raises(PerturbError, match="strength"):
        perturb_corpus(src, tmp_path / "o2", strength="loud", progress=False)
