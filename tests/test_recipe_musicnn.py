"""The musicnn recipe stage (``python -m instrument_classifier.recipe_musicnn``) end to end, on real components at
tiny scale: four shipped MusicNet label excerpts, three small SoundFonts (two training libraries, one held out,
checked disjoint), a small DecentSampler library shaped like the Virtual Playing Orchestra (every preset of its
note map, in a git checkout), a musicnn network with seeded random weights saved as safetensors, and real audio
(excerpts of the Space's examples) as the labelled real clips the thresholds are tuned on.
"""

from __future__ import annotations

import ast
import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from instrument_classifier.data import sampler
from instrument_classifier.recipes import (
    common,
    mfcc,
    musicnn,
    musicnn_blend,
    musicnn_card,
    musicnn_evaluation,
    musicnn_renders,
    musicnn_sources,
    musicnn_frontends,
    renders,
)
from instrument_classifier.recipes.common import Library, MusicnnSettings, RecipeSettings
from instrument_classifier.recipes.musicnn import run_musicnn_recipe
from test_soundfonts import tone, write_sf

REPO_ROOT = Path(__file__).resolve().parents[1]
EXCERPTS = REPO_ROOT / "instrument_classifier" / "data" / "excerpts"
EXAMPLES = REPO_ROOT / "space" / "examples"
SR = 44100
#: wind quintet, piano quintet with contrabass, wind and strings octet (the validation piece), solo cello; test:
#: a string quartet
TRAIN_IDS, TEST_IDS = ("2082", "1727", "2221", "2285"), ("2106",)
MUSICNET11 = (1, 7, 41, 42, 43, 44, 61, 69, 71, 72, 74)
DISTRACTORS = (57, 66, 25)  # trumpet, alto sax, nylon guitar


@pytest.fixture(scope="module")
def backbone_file(musicnn_backbone_file):
    return musicnn_backbone_file


@pytest.fixture(scope="module")
def yamnet_file(tmp_path_factory) -> Path:
    """A YamnetFrontend state dict with seeded random weights, saved as scripts/convert_yamnet.py saves it."""
    from instrument_classifier.modeling.yamnet_frontend import YamnetFrontend

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("yamnet") / "yamnet_random.safetensors"
    save_file({k: v.contiguous() for k, v in YamnetFrontend().state_dict().items()}, str(path),
              metadata={"format": "pt"})
    return path


@pytest.fixture(scope="module")
def efficientat_file(tmp_path_factory) -> Path:
    """An EfficientAtFrontend state dict with seeded random weights, saved as scripts/convert_efficientat.py saves
    it."""
    from instrument_classifier.modeling.efficientat_frontend import EfficientAtFrontend

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("efficientat") / "efficientat_random.safetensors"
    save_file({k: v.contiguous() for k, v in EfficientAtFrontend().state_dict().items()}, str(path),
              metadata={"format": "pt"})
    return path


def tiny_musicnet(root: Path) -> Path:
    """The excerpts of TRAIN_IDS and TEST_IDS; the test pieces cut to 12 s (recipe.py renders them in full)."""
    from instrument_classifier.data.render import clip_rows, read_label_rows, write_label_rows

    for split, ids in (("train", TRAIN_IDS), ("test", TEST_IDS)):
        (root / f"{split}_labels").mkdir(parents=True)
        for rid in ids:
            rows = read_label_rows(EXCERPTS / f"{split}_labels" / f"{rid}.csv")
            write_label_rows(root / f"{split}_labels" / f"{rid}.csv",
                             clip_rows(rows, 0, 12 * SR) if split == "test" else rows)
    with open(EXCERPTS / "musicnet_metadata.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["id"] in TRAIN_IDS + TEST_IDS]
    with open(root / "musicnet_metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def tiny_soundfont(path: Path, seed: int, distractors=()) -> Path:
    """One preset per program, each its own recording (seeded): libraries of other seeds share none."""
    programs = list(MUSICNET11) + list(distractors)
    presets = [(f"P{p}", p, [(i, (0, 127), (0, 127))]) for i, p in enumerate(programs)]
    samples = [(f"s{p}", tone(110 * 2 ** (i / 7), seconds=1.5, seed=seed * 100 + i, vibrato=0.2 * seed), 45 + i)
               for i, p in enumerate(programs)]
    return write_sf(path, presets, samples)


def fake_vpo(root: Path) -> Path:
    """Every preset of sampler.VPO_INSTRUMENTS, each group one looped saw sample; a git checkout."""
    groups = {}
    for variants in sampler.VPO_INSTRUMENTS.values():
        for variant in variants:
            for articulation in sampler.ARTICULATIONS:
                for layer in getattr(variant, articulation):
                    groups[layer.preset] = max(groups.get(layer.preset, 0), *layer.groups)
    (root / "Samples").mkdir(parents=True)
    t = np.arange(int(1.5 * SR)) / SR
    saw = sum(np.sin(2 * np.pi * 261.63 * k * t) / k for k in range(1, 12))
    sf.write(root / "Samples" / "saw_c4.wav", (0.3 * saw / np.abs(saw).max()).astype(np.float32), SR,
             subtype="PCM_16")
    group = '<group><sample path="Samples\\saw_c4.wav" rootNote="60" loNote="0" hiNote="127"/></group>'
    for preset, last in groups.items():
        (root / preset).write_text(f"<DecentSampler><groups>{group * (last + 1)}</groups></DecentSampler>\n")
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "fake VPO"], check=True)
    return root


def real_clips(folder: Path) -> Path:
    """3-s excerpts of the Space's four examples (real renders of MusicNet test pieces), three per file, and one
    1-s clip; a manifest with their instruments (durations given for some rows only)."""
    folder.mkdir()
    with open(EXAMPLES / "examples.csv", newline="") as f:
        examples = list(csv.DictReader(f))
    rows = []
    for example in examples:
        audio, sr = sf.read(EXAMPLES / example["file"], dtype="float32")
        for k, start in enumerate((0.0, 3.5, 7.0)):
            name = f"{Path(example['file']).stem}_{k}.wav"
            sf.write(folder / name, audio[int(start * sr): int((start + 3) * sr)], sr)
            rows.append([name, example["instruments"].replace(", ", ";"), "3.0" if k else ""])
    audio, sr = sf.read(EXAMPLES / examples[0]["file"], dtype="float32")
    sf.write(folder / "short.wav", audio[: sr], sr)
    rows.append(["short.wav", examples[0]["instruments"].replace(", ", ";"), ""])
    with open(folder / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "instruments", "duration_s"])
        writer.writerows(rows)
    return folder / "manifest.csv"


@pytest.fixture
def tiny_recipe(tmp_path, monkeypatch, backbone_file, yamnet_file, efficientat_file):
    """Settings and inputs of a run that takes about a minute: 6-s excerpts, tiny libraries, one process."""
    libraries = tmp_path / "soundfonts"
    libraries.mkdir()
    # FluidR3 plays the distractors as well, as the real one does
    monkeypatch.setitem(common.LIBRARIES, "fluidr3", Library(
        "fluidr3", str(tiny_soundfont(libraries / "fluidr3.sf2", 1, DISTRACTORS)), "test"))
    monkeypatch.setitem(common.LIBRARIES, "musescore", Library(
        "musescore", str(tiny_soundfont(libraries / "musescore.sf2", 2)), "test"))
    monkeypatch.setitem(common.LIBRARIES, "merlin", Library(
        "merlin", str(tiny_soundfont(libraries / "merlin.sf2", 3)), "test"))
    settings = RecipeSettings(excerpt_seconds=6.0, excerpt_stride_seconds=3.0, heldout_validation_seconds=6.0,
                              num_proc=1)
    mset = MusicnnSettings(vpo_start_seconds=0.0, vpo_seconds=6.0, distractor_start_seconds=2.0,
                           distractor_seconds=6.0, batch_size=16)
    return {"workdir": tmp_path / "work", "output": tmp_path / "pretrained", "settings": settings, "mset": mset,
            "weights": backbone_file, "yamnet_weights": yamnet_file, "efficientat_weights": efficientat_file,
            "sampler_library": fake_vpo(tmp_path / "VirtualPlayingOrchestra"),
            "real_dev": real_clips(tmp_path / "real-dev"), "musicnet": tiny_musicnet(tmp_path / "musicnet")}


def _run(tiny, **changes):
    kwargs = {**tiny, **changes}
    return run_musicnn_recipe(kwargs.pop("workdir"), kwargs.pop("output"), kwargs.pop("settings"),
                              kwargs.pop("mset"), **kwargs)


def test_the_stage_builds_tunes_evaluates_and_exports_a_model_and_resumes(tiny_recipe, monkeypatch, capsys):
    from instrument_classifier.inference import load_model, predict_timeline
    from instrument_classifier.modeling import InstrumentMusicnnForAudioClassification

    results = _run(tiny_recipe)
    workdir, folder = tiny_recipe["workdir"], tiny_recipe["output"] / "musicnn"

    # sources: the weights' hash, the checkout's commit
    commit = subprocess.run(["git", "-C", str(tiny_recipe["sampler_library"]), "rev-parse", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert results["sources"]["sampler_library"]["commit"] == commit
    assert results["sources"]["musicnn_weights"]["licence"] == "ISC"
    info = json.loads((workdir / "render" / "vpo-dry" / "render_info.json").read_text())
    assert info["renderer"] == "sampler" and info["library_commit"] == commit
    distractors = json.loads((workdir / "render" / "fluidr3-distractors-dry" / "render_info.json").read_text())
    assert distractors["distractors"]["probability"] == 0.5
    assert set(distractors["distractors"]["programs"]) == set(DISTRACTORS)

    # one dataset of the four training corpora, validation and test from the held-out library
    prepared = json.loads((workdir / "datasets" / "musicnn" / "prepare_info.json").read_text())
    assert [Path(d).name for d in prepared["data_dirs"]] == [
        "fluidr3-room", "musescore-room", "vpo-room", "fluidr3-distractors-room"]
    assert [Path(d).name for d in prepared["validation_data_dirs"]] == ["merlin-validation"]
    assert [Path(d).name for d in prepared["eval_data_dirs"]] == ["merlin-test"]
    assert prepared["window_frames"] == prepared["hop_frames"] == 187
    assert {r.split("/")[0] for r in prepared["splits"]["train"]["recording_ids"]} == {
        "fluidr3-room", "musescore-room", "vpo-room", "fluidr3-distractors-room"}
    # the stage's own recording conditions: the MFCC recipe's dry renders perturbed again, the VPO balance
    for corpus in ("fluidr3-room", "musescore-room", "vpo-room", "fluidr3-distractors-room"):
        perturbed = json.loads((workdir / "train" / corpus / "perturb_info.json").read_text())
        assert perturbed["strength"] == "room" and perturbed["recordings"], corpus
    assert info["settings"]["instrument_balance_db"] == tiny_recipe["mset"].instrument_balance_db > 0
    assert {r.split("/")[0] for r in prepared["splits"]["validation"]["recording_ids"]} == {"merlin-validation"}

    # thresholds: tuned on the real clips, in the exported config; the training's own from validation windows
    tune = json.loads((workdir / "musicnn" / "tune-real-dev" / "metrics.json").read_text())
    tuned = tune["model"]["tuned_thresholds"]
    assert results["thresholds"]["real_dev"] == tuned and results["thresholds"]["exported"] == "real_dev"
    assert tuned["Piano"] != 0.8 and tuned["Oboe"] == 0.8  # 6 piano clips: tuned; no oboe clip: the default cut
    model, extractor = load_model(folder)
    assert isinstance(model, InstrumentMusicnnForAudioClassification) and extractor.feature_type == "musicnn"
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    assert model.config.thresholds == pytest.approx([tuned[label] for label in labels])
    timeline = predict_timeline(model, extractor, EXAMPLES / "haydn_string_quartet_53.ogg")
    assert timeline.window_probs.shape == (4, 11) and set(timeline.clip) == set(labels)

    # results: real clips (all, cross-validated, the 12 of 2.5 s or more), then the held-out test windows
    real = results["real_dev"]
    assert real["num_clips"] == 13 and real["long_clips"]["num_clips"] == 12
    assert set(real["cross_validated"]) >= {"f1_micro", "false_alarms_per_clip"}
    assert set(real["long_clips"]["cross_validated"]) >= {"f1_micro", "false_alarms_per_clip"}
    assert set(results["merlin_test"]) == {"validation_thresholds", "tuned_thresholds"}
    # (one test piece, a string quartet: its instruments play in every window, so no class has an AUC here)
    assert 0.0 <= results["merlin_test"]["tuned_thresholds"]["f1_micro"] <= 1.0
    assert json.loads((workdir / "recipe_musicnn_results.json").read_text()) == results
    # the shipped copy names no folder of this machine (it is pushed with the model)
    from instrument_classifier.local_paths import strip_local_paths

    shipped = (folder / "recipe_musicnn_results.json").read_text()
    musicnn_results = {k: v for k, v in results.items() if k not in ("yamnet", "efficientat", "blend")}
    assert json.loads(shipped) == strip_local_paths(musicnn_results) and '": "/' not in shipped

    # the exported folder: weights, code, feature extractor, card, the musicnn licence; nothing else
    files = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "modeling_instrument_musicnn.py",
            "musicnn_frontend.py", "README.md", "MUSICNN_LICENSE.md", "recipe_musicnn_results.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl", ".npz")) for name in files)
    card = (folder / "README.md").read_text()
    assert (folder / "MUSICNN_LICENSE.md").read_text().startswith("ISC License\n\nCopyright (c) 2019, Jordi Pons")
    for phrase in ("FluidR3 GM and MuseScore General", "Virtual Playing Orchestra", "distractors", "Merlin",
                   "CC BY-NC-SA 3.0", "ISC", "CC BY 4.0", "cross-validated", "development set"):
        assert phrase in card, phrase
    assert card.index("Results on real recordings") < card.index("synthetic held-out test")
    assert "simulated room" in card and "MP3-encoded" in card and "ensemble balance" in card  # its conditions
    assert f"| all 13 | tuned on them | {real['tuned']['roc_auc_macro']:.3f} |" in card
    assert not [p for p in tiny_recipe["output"].iterdir() if p.name.startswith(".")]  # no temporary folders

    log = json.loads((workdir / "recipe_musicnn_log.json").read_text())["steps"]
    for step in ("sources", "perturb fluidr3 (room)", "perturb musescore (room)", "render vpo train [0, 6) s",
                 "perturb vpo (room)", "prepare datasets/musicnn", "train (linear probe)", "tune (real clips)",
                 "evaluate"):
        assert f"musicnn: {step}" in log, (step, list(log))
    assert "render fluidr3 train [0, 6) s" in json.loads((workdir / "recipe_log.json").read_text())["steps"]

    # the YAMNet model: the same corpora and windows (374 YAMNet frames = 187 musicnn ones), the same probe
    yprepared = json.loads((workdir / "datasets" / "yamnet" / "prepare_info.json").read_text())
    for key in ("data_dirs", "validation_data_dirs", "eval_data_dirs", "seed", "taxonomy"):
        assert yprepared[key] == prepared[key], key
    assert yprepared["window_frames"] == yprepared["hop_frames"] == 374
    for split in ("train", "validation", "test"):
        assert yprepared["splits"][split]["windows"] == prepared["splits"][split]["windows"], split
    yamnet_sha = musicnn.sha256(tiny_recipe["yamnet_weights"])
    assert json.loads((workdir / "yamnet" / "sources.json").read_text())["yamnet_weights"]["sha256"] == yamnet_sha
    assert results["yamnet"]["sources"]["yamnet_weights"]["sha256"] == yamnet_sha
    assert any((workdir / "yamnet" / "representations").glob("train-*.npz"))
    ytuned = json.loads((workdir / "yamnet" / "tune-real-dev" / "metrics.json").read_text())["model"]
    assert results["yamnet"]["thresholds"]["real_dev"] == ytuned["tuned_thresholds"]
    ymodel, yextractor = load_model(workdir / "yamnet" / "model-tuned")
    assert type(ymodel).__name__ == "InstrumentYamnetForAudioClassification"
    assert yextractor.feature_type == "yamnet" and ymodel.config.window_frames == 374
    assert ymodel.config.thresholds == pytest.approx([ytuned["tuned_thresholds"][label] for label in labels])
    assert results["yamnet"]["real_dev"]["num_clips"] == 13
    assert set(results["yamnet"]["merlin_test"]) == {"validation_thresholds", "tuned_thresholds"}

    # the EfficientAT model: the same windows in seconds (1496 frames of 2 ms at 32 kHz), its own C
    eprepared = json.loads((workdir / "datasets" / "efficientat" / "prepare_info.json").read_text())
    assert eprepared["window_frames"] == 1496 and eprepared["splits"]["train"]["windows"] == prepared["splits"][
        "train"]["windows"]
    emodel, eextractor = load_model(workdir / "efficientat" / "model-tuned")
    assert eextractor.feature_type == "efficientat" and eextractor.sampling_rate == 32000
    etrained = json.loads((workdir / "efficientat" / "train.json").read_text())["inputs"]
    assert etrained["C"] == 0.003
    # the AudioSet prior goes to the instruments with a class that at least 5 real clips hold: piano and violin here
    # (7 clips each; cello and clarinet 3)
    assert etrained["audioset_prior"] == {"weight": 0.3, "labels": ["Piano", "Violin"]}
    assert emodel.config.audioset_prior == {"Piano": 153, "Violin": 191} and emodel.config.audioset_prior_weight == 0.3
    assert results["efficientat"]["training"]["audioset_prior"] == {"weight": 0.3, "labels": ["Piano", "Violin"]}
    assert results["efficientat"]["real_dev"]["num_clips"] == 13

    # the blend: the three members' weights tuned on the real clips, an ensemble folder that loads and predicts
    from instrument_classifier.ensemble import EnsembleConfig, InstrumentEnsemble

    blend = results["blend"]
    assert blend["tuned_on"] == "real_dev" and blend["members"] == ["musicnn", "yamnet", "efficientat"]
    assert len(blend["candidates"]) == 66 and sum(blend["weights"]) == pytest.approx(1.0)
    assert blend["weights"] in [c["weights"] for c in blend["candidates"]]
    for where, members in ((workdir / "musicnn-yamnet-efficientat",
                            ["../musicnn/model-tuned", "../yamnet/model-tuned", "../efficientat/model-tuned"]),
                           (tiny_recipe["output"] / "musicnn-yamnet-efficientat",
                            ["../musicnn", "../yamnet", "../efficientat"])):
        config = EnsembleConfig.load(where)
        assert config.members == members and config.weights == pytest.approx(blend["weights"])
        assert (config.window_frames, config.hop_length, config.sampling_rate) == (187, 256, 16000)
        assert config.thresholds == pytest.approx([blend["thresholds"][label] for label in labels], abs=1e-4)
        ensemble, none = load_model(where)
        assert isinstance(ensemble, InstrumentEnsemble) and none is None
        timeline = predict_timeline(ensemble, None, EXAMPLES / "haydn_string_quartet_53.ogg")
        assert timeline.window_probs.shape == (4, 11)
    assert blend["real_dev"]["num_clips"] == 13 and 0.0 <= blend["real_dev"]["tuned"]["f1_micro"] <= 1.0
    assert set(blend["cross_validated"]) >= {"f1_micro", "false_alarms_per_clip"}
    assert 0.0 <= blend["merlin_test"]["f1_micro"] <= 1.0

    # the exports: the YAMNet folder with its card, the ensemble folder with its card
    yfolder = tiny_recipe["output"] / "yamnet"
    yfiles = {p.name for p in yfolder.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "modeling_instrument_yamnet.py",
            "yamnet_frontend.py", "README.md", "recipe_musicnn_results.json"} <= yfiles
    assert "MUSICNN_LICENSE.md" not in yfiles
    notice = (yfolder / "YAMNET_LICENSE.md").read_text()
    assert "Apache License, Version 2.0" in notice and "4ec29b6938f1051fe36b46786f8d486d8b74a38e" in notice
    assert json.loads((yfolder / "recipe_musicnn_results.json").read_text()) == strip_local_paths(results)
    ycard = (yfolder / "README.md").read_text()
    for phrase in ("# instrument-classifier yamnet", "license: apache-2.0", "Apache-2.0", "AudioSet",
                   "Jaskaran197/Speaker-Detector", "4ec29b6938f1051fe36b46786f8d486d8b74a38e",
                   "7f54d20da3b32164849274af1ab0651c75cac681", "scripts/convert_yamnet.py",
                   "Virtual Playing Orchestra"):
        assert phrase in ycard, phrase
    assert "MUSICNN_LICENSE" not in ycard and "MagnaTagATune" not in ycard
    assert ycard.index("Results on real recordings") < ycard.index("synthetic held-out test")
    efolder = tiny_recipe["output"] / "efficientat"
    assert {"modeling_instrument_efficientat.py", "efficientat_frontend.py", "EFFICIENTAT_LICENSE.md",
            "README.md"} <= {p.name for p in efolder.iterdir()}
    assert "Copyright (c) 2022 Florian Schmid" in (efolder / "EFFICIENTAT_LICENSE.md").read_text()
    ecard = (efolder / "README.md").read_text()
    for phrase in ("# instrument-classifier efficientat", "license: mit", "AudioSet", "(C 0.003)",
                   "The logits of Piano, Violin are then mixed 0.7 / 0.3 with the logit of AudioSet's class",
                   "nikih94/swch-audio-classification", "2b362d97544673ef1da403b44ecbe1174d8619ec",
                   "scripts/convert_efficientat.py"):
        assert phrase in ecard, phrase
    bcard = (tiny_recipe["output"] / "musicnn-yamnet-efficientat" / "README.md").read_text()
    assert bcard.startswith("---\n")
    for phrase in ("ISC", "MagnaTagATune", "Apache-2.0", "MIT", "AudioSet", "instrument-classifier predict --model",
                   "load_model", "from_pretrained", "cross-validated", "66 weightings",
                   "whose logits for Piano, Violin are mixed 0.7 / 0.3 with AudioSet's own class"):
        assert phrase in bcard, phrase
    assert bcard.index("Results on real recordings") < bcard.index("synthetic held-out test")
    for member in ("musicnn", "YAMNet", "EfficientAT"):
        assert f"| all 13 | {member} alone, cross-validated |" in bcard, member
    for c in (card, ycard, ecard, bcard):  # the long clips, as unseen recordings are long, judged by other clips' cuts
        assert "| the 12 of 2.5 s or more | tuned on other clips (cross-validated) |" in c
    for step in ("prepare datasets/yamnet", "yamnet train (linear probe)", "yamnet tune (real clips)",
                 "yamnet evaluate", "prepare datasets/efficientat", "efficientat train (linear probe)",
                 "efficientat evaluate", "blend (weights tuned on real clips)", "blend evaluate",
                 f"export {yfolder}", f"export {efolder}"):
        assert f"musicnn: {step}" in log, (step, list(log))

    # a second run finds everything done: nothing is rendered, trained, tuned or evaluated again
    def refuse(*args, **kwargs):
        raise AssertionError("a finished step ran again")

    from instrument_classifier.data import perturb_corpus, render
    from instrument_classifier.evaluation import clips, evaluate_models

    with pytest.MonkeyPatch.context() as patch:
        # each name where it is defined and where the recipe's modules read it
        for module, name in ((mfcc, "run_recipe"), (sampler, "render_corpus"), (render, "render_corpus"),
                             (renders, "render_corpus"), (perturb_corpus, "perturb_corpus"),
                             (musicnn_renders, "perturb_corpus"), (musicnn, "train_probe"),
                             (musicnn, "export_model"), (clips, "evaluate_clips"),
                             (musicnn_evaluation, "evaluate_clips"), (evaluate_models, "evaluate_models"),
                             (musicnn_evaluation, "evaluate_models"),
                             (musicnn, "tune_blend"), (musicnn_blend, "predict_timeline"),
                             (musicnn_blend, "evaluate_models"), (musicnn_blend, "evaluate_clips"),
                             (musicnn, "export_blend"), (musicnn_blend, "predict_split")):
            patch.setattr(module, name, refuse)
        capsys.readouterr()
        stamp = (folder / "model.safetensors").stat().st_mtime_ns
        assert _run(tiny_recipe) == results
        out = capsys.readouterr().out
        # stopping after the YAMNet model leaves the EfficientAT one and the blend out of the results
        stopped = _run(tiny_recipe, stop_after="yamnet-evaluate")
        assert "yamnet" in stopped and "efficientat" not in stopped and "blend" not in stopped
        capsys.readouterr()
    assert out.count("done earlier, skipped") == 26, out  # every step, each render and perturb, each export
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp

    # without labelled real clips the thresholds stay those of the held-out validation windows
    missing = tiny_recipe["real_dev"].parent / "no-such-manifest.csv"
    without = _run(tiny_recipe, real_dev=missing, stop_after="evaluate")
    assert "no labelled real clips there" in capsys.readouterr().out
    assert without["real_dev"] is None and without["thresholds"]["real_dev"] is None
    assert without["thresholds"]["exported"] == "validation"
    config = json.loads((workdir / "musicnn" / "model-tuned" / "config.json").read_text())
    trained = json.loads((workdir / "musicnn" / "train.json").read_text())["validation_thresholds"]
    assert config["thresholds"] == pytest.approx([trained[config["id2label"][str(i)]] for i in range(11)], abs=1e-4)
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # stopped before the export
    card = musicnn_card.model_card(without, tiny_recipe["settings"], tiny_recipe["mset"])
    assert "no labelled real recordings" in card and "Results on real recordings" not in card

    # ... and the blend's weights and thresholds come from the held-out validation windows
    elsewhere = tiny_recipe["output"].parent / "pretrained-without-real-clips"
    without = _run(tiny_recipe, real_dev=missing, output=elsewhere)
    assert without["blend"]["tuned_on"] == "validation" and without["blend"]["real_dev"] is None
    assert without["yamnet"]["thresholds"]["exported"] == "validation"
    # no real clips to confirm the AudioSet prior on: the EfficientAT head goes without
    assert "audioset_prior" not in without["efficientat"]["training"]
    assert json.loads((elsewhere / "efficientat" / "config.json").read_text())["audioset_prior"] is None
    config = json.loads((elsewhere / "musicnn-yamnet-efficientat" / "ensemble_config.json").read_text())
    assert config["weights"] == pytest.approx(without["blend"]["weights"]) and len(config["weights"]) == 3
    bcard = (elsewhere / "musicnn-yamnet-efficientat" / "README.md").read_text()
    assert "No labelled real recordings" in bcard and "Results on real recordings" not in bcard
    # every exported front end brings recordings to one level; the results, the stamps and the cards say so
    for name in ("musicnn", "yamnet", "efficientat"):
        extractor = json.loads((elsewhere / name / "preprocessor_config.json").read_text())
        assert (extractor["level_dbfs"], extractor["level_max_gain_db"]) == (-12.0, 20.0)
        assert "brought to one level" in (elsewhere / name / "README.md").read_text()
    assert without["training"]["level"] == {"dbfs": -12.0, "max_gain_db": 20.0}
    assert json.loads((workdir / "musicnn" / "train.json").read_text())["inputs"]["level"]["dbfs"] == -12.0
    assert "brought to one level" in bcard and "read as `prepare` cut them" in bcard

    # validation pieces recipe.py did not render (the new corpora changed prepare's choice) are rendered here
    train_corpora = [Path(d) for d in prepared["data_dirs"]]
    log, labels = musicnn.step_log(workdir), tiny_recipe["musicnet"]
    extra = workdir / "heldout" / "merlin-validation-musicnn"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(musicnn_renders, "plan_validation_pieces", lambda *args, **kwargs: ["2221", "2285"])
        assert musicnn_renders.validation_corpora(workdir, tiny_recipe["settings"], train_corpora, log, labels) == [
            workdir / "heldout" / "merlin-validation", extra]
    assert sorted(p.name for p in (extra / "train_data").iterdir()) == ["2285.wav"]
    assert musicnn_renders.validation_corpora(workdir, tiny_recipe["settings"], train_corpora, log, labels) == [
        workdir / "heldout" / "merlin-validation"]
    assert not extra.exists()  # made for another choice of pieces


def test_missing_weights_say_how_to_convert_them(tmp_path, capsys):
    """The message carries convert_musicnn.py's own commands (checked against its docstring)."""
    docstring = ast.get_docstring(ast.parse((REPO_ROOT / "scripts" / "convert_musicnn.py").read_text()))
    for line in musicnn_sources.CONVERSION_COMMANDS.splitlines():
        assert line in docstring, line
    labels = tiny_musicnet(tmp_path / "musicnet")
    code = musicnn.main(["--workdir", str(tmp_path / "work"), "--musicnet", str(labels),
                                "--musicnn-weights", str(tmp_path / "none.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path / 'none.safetensors'}: musicnn weights not found" in err
    assert "scripts/convert_musicnn.py --wheel musicnn-0.1.0-py3-none-any.whl" in err
    assert "pip download --no-deps musicnn==0.1.0" in err


@pytest.mark.parametrize("name, option, script", [("yamnet", "--yamnet-weights", "convert_yamnet.py"),
                                                   ("efficientat", "--efficientat-weights", "convert_efficientat.py")])
def test_missing_front_end_weights_say_how_to_convert_them(tmp_path, capsys, backbone_file, yamnet_file, name, option,
                                                           script):
    """Checked in the sources step, before anything is rendered: the message carries the conversion script's
    command (checked against its docstring); a file that is not weights of that front end is refused."""
    front = musicnn_frontends.FRONT_ENDS[name]
    docstring = ast.get_docstring(ast.parse((REPO_ROOT / "scripts" / script).read_text()))
    assert " ".join(front.conversion_command.split()) in " ".join(docstring.replace("\\\n", " ").split())
    labels = tiny_musicnet(tmp_path / "musicnet")
    vpo = fake_vpo(tmp_path / "VPO")
    given = {"--yamnet-weights": str(yamnet_file), option: str(tmp_path / "none.safetensors")}
    code = musicnn.main(["--workdir", str(tmp_path / "work"), "--musicnet", str(labels), "--sampler-library", str(vpo),
                         "--musicnn-weights", str(backbone_file), *[x for kv in given.items() for x in kv]])
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path / 'none.safetensors'}: {front.title} weights not found" in err
    assert front.conversion_command in err and option in err
    assert not (tmp_path / "work" / "render").exists()  # stopped before rendering anything
    from instrument_classifier.recipes.common import RecipeError

    with pytest.raises(RecipeError, match=f"not {front.title} weights"):
        musicnn_frontends.check_front_end_weights(name, backbone_file, tmp_path / "sources.json")


def test_missing_or_wrong_sources_are_refused_with_what_to_do(tmp_path, backbone_file):
    from instrument_classifier.recipes.common import RecipeError

    vpo = tmp_path / "VPO"
    with pytest.raises(RecipeError) as missing:
        musicnn_sources.check_sources(backbone_file, vpo, tmp_path / "sources.json")
    assert f"git clone https://github.com/eodowd/VirtualPlayingOrchestra {vpo}" in str(missing.value)
    assert f"git -C {vpo} checkout f6d77b7971d900b7b3d97b9e3098aa345032e791" in str(missing.value)
    vpo.mkdir()
    with pytest.raises(RecipeError, match="not a Virtual Playing Orchestra checkout"):
        musicnn_sources.check_sources(backbone_file, vpo, tmp_path / "sources.json")
    wrong = tmp_path / "wrong.safetensors"
    save_file({"weight": torch.zeros(3)}, str(wrong))
    with pytest.raises(RecipeError, match=f"{wrong}: not MTT_musicnn weights"):
        musicnn_sources.check_sources(wrong, vpo, tmp_path / "sources.json")
    (tmp_path / "text.safetensors").write_text("not weights")
    with pytest.raises(RecipeError, match="not a safetensors file"):
        musicnn_sources.check_sources(tmp_path / "text.safetensors", vpo, tmp_path / "sources.json")
    assert not (tmp_path / "sources.json").exists()


def test_make_models_runs_the_stage_after_the_recipe():
    makefile = (REPO_ROOT / "Makefile").read_text()
    models = makefile[makefile.index("\nmodels:"):].split("\n\n")[0]
    assert models.index("-m instrument_classifier.recipe ") < models.index("-m instrument_classifier.recipe_musicnn ")
