"""The bundled default model (``inference.DEFAULT_MODEL_DIR``): the blend of the musicnn, YAMNet and EfficientAT
classifiers that ``make models`` writes, and the three folders it names."""

import csv
from pathlib import Path

import numpy as np
import pytest

from instrument_classifier import modeling
from instrument_classifier.ensemble import EnsembleConfig, InstrumentEnsemble
from instrument_classifier.inference import DEFAULT_MODEL_DIR, load_model, predict_timeline
from instrument_classifier.modeling import (
    InstrumentEfficientAtForAudioClassification,
    InstrumentMusicnnForAudioClassification,
    InstrumentYamnetForAudioClassification,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = DEFAULT_MODEL_DIR.parent
REAL_DEV = REPO_ROOT.parent / "shared" / "real-dev" / "manifest.csv"
# The bundled default passes these bounds with a little room; the default before the musicnn models (the MFCC
# CNN + Transformer blend) made several false detections per clip of other instruments (docs/experiments.md, "Real
# recordings"). The bounds leave room for a rebuilt model of the same quality and fail on one that hears real music
# as the old one did.
MIN_HEARD = 0.6
MAX_FALSE_PER_CLIP = 0.5
#: Each front end's folder: its class, the licence notice that goes with its weights, its weights budget in MiB.
FRONT_ENDS = {
    "musicnn": (InstrumentMusicnnForAudioClassification, "MUSICNN_LICENSE.md", 5),
    "yamnet": (InstrumentYamnetForAudioClassification, "YAMNET_LICENSE.md", 8),
    "efficientat": (InstrumentEfficientAtForAudioClassification, "EFFICIENTAT_LICENSE.md", 3),
}
MEMBERS = ("musicnn", "yamnet", "efficientat")


def test_default_is_the_blend_of_three_bundled_folders():
    assert DEFAULT_MODEL_DIR.name == "musicnn-yamnet-efficientat"
    config = EnsembleConfig.load(DEFAULT_MODEL_DIR)
    members = [(DEFAULT_MODEL_DIR / m).resolve() for m in config.members]
    assert members == [(PRETRAINED / name).resolve() for name in MEMBERS]
    assert abs(sum(config.weights) - 1.0) < 1e-6 and all(w > 0 for w in config.weights)
    assert len(config.thresholds) == 11 and all(0 <= t <= 1 for t in config.thresholds)
    card = (DEFAULT_MODEL_DIR / "README.md").read_text()
    assert card.index("real recordings") < card.index("synthetic held-out")
    model, fe = load_model(None, device="cpu")
    assert isinstance(model, InstrumentEnsemble) and fe is None
    assert [type(m) for m, _ in model.members] == [FRONT_ENDS[name][0] for name in MEMBERS]


@pytest.mark.parametrize("name", sorted(FRONT_ENDS))
def test_bundled_front_end_folder_carries_the_package_code_licence_and_safetensors_only(name):
    """Today's code next to the weights (what trust_remote_code runs), the front end's licence notice, no pickle,
    within its weights budget, thresholds in [0, 1] for every label."""
    model_class, notice, budget_mib = FRONT_ENDS[name]
    folder = PRETRAINED / name
    files = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", notice, "README.md"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt")) for f in files)
    assert (folder / "model.safetensors").stat().st_size <= budget_mib * 2**20
    package = Path(modeling.__file__).parent
    for code in sorted(f for f in files if f.endswith(".py")):
        assert (folder / code).read_text() == (package / code).read_text(), code
    model, fe = load_model(folder, device="cpu")
    assert isinstance(model, model_class) and fe.feature_type == name
    assert len(model.config.thresholds) == 11 and all(0 <= t <= 1 for t in model.config.thresholds)


@pytest.mark.skipif(not REAL_DEV.is_file(), reason="../shared/real-dev (recordings of real musicians) is not present")
def test_bundled_default_hears_real_soloists_and_stays_quiet_on_other_instruments():
    """The default model on real musicians (Medley-solos-DB clips of real-dev, 3 s each): the soloist is detected in
    most clips of piano, violin, clarinet and flute, and saxophone, trumpet, guitar or voice bring few detections."""
    model, fe = load_model(None, device="cpu")
    with open(REAL_DEV, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["file"].startswith("medley-solos/")]
    picked = {label: [r for r in rows if r["instruments"] == label][:5]
              for label in ("Piano", "Violin", "Clarinet", "Flute")}
    others = [r for r in rows if not r["instruments"]][:12]
    heard = [label in predict_timeline(model, fe, REAL_DEV.parent / r["file"]).detected
             for label, chosen in picked.items() for r in chosen]
    false_per_clip = np.mean([len(predict_timeline(model, fe, REAL_DEV.parent / r["file"]).detected) for r in others])
    assert np.mean(heard) >= MIN_HEARD, heard
    assert false_per_clip <= MAX_FALSE_PER_CLIP, false_per_clip


def test_an_array_needs_its_rate_for_the_default_and_warns_without_it_for_one_model():
    """The default's members read 16 and 32 kHz: an array without ``sampling_rate`` has no one rate to assume (it
    raised "the ensemble's members cut [3, 3, 2] windows"). One model reads it at its own rate, with a warning."""
    tone = (0.1 * np.sin(2 * np.pi * 440.0 * np.arange(3 * 44100) / 44100)).astype(np.float32)
    ensemble, _ = load_model()
    with pytest.raises(ValueError, match=r"needs sampling_rate: this ensemble's members read 16000 Hz and 32000 Hz"):
        predict_timeline(ensemble, None, tone)
    assert predict_timeline(ensemble, None, tone, sampling_rate=44100).duration_s == pytest.approx(3.0)
    model, fe = load_model("yamnet")
    with pytest.warns(UserWarning, match="given without sampling_rate: read as 16000 Hz"):
        assert predict_timeline(model, fe, tone).duration_s == pytest.approx(3 * 44100 / 16000)
