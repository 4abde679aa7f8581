"""`instrument-classifier evaluate` end to end: a real prepared dataset, real saved models, real figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import default_recordings, make_musicnet
from instrument_classifier.cli import main
from instrument_classifier.data.prepare import build_dataset, load_prepared
from instrument_classifier.evaluation.evaluate_models import EvaluationError, evaluate_models, plot_heatmap
from instrument_classifier.evaluation.report import _safe_name, unique_model_names
from instrument_classifier.evaluation.metrics import METRIC_KEYS, compute_instrument_metrics
from instrument_classifier.modeling import MODEL_CLASSES
from instrument_classifier.modeling.feature_extraction_instrument import InstrumentFeatureExtractor

ISSUE_KEYS = {"roc_auc_macro", "roc_auc_micro", "hamming_loss", "precision_macro", "recall_macro", "f1_macro",
              "f1_micro", "skipped_classes", "per_class"}


def save_model(folder: Path, kind: str, extractor, seed: int, train_split=None, **config_kwargs) -> Path:
    """A random-initialised model (optionally a few plain torch steps on ``train_split``) + its extractor."""
    torch.manual_seed(seed)
    config_class, model_class = MODEL_CLASSES[kind]
    model = model_class(config_class(taxonomy="seed12", feature_size=extractor.feature_size, **config_kwargs))
    if train_split is not None:
        rows = train_split.with_format("numpy")[::2]  # a few steps on 10 windows: cheap, and no longer random
        x = torch.from_numpy(extractor.normalize(rows["input_features"]))
        y = torch.from_numpy(rows["labels"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(3):
            loss = model(input_features=x, labels=y).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
    model.save_pretrained(folder)
    extractor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The synthetic MusicNet corpus (conftest), prepared; a briefly trained CNN and a random transformer."""
    root = tmp_path_factory.mktemp("evaluate")
    corpus = make_musicnet(root / "corpus")
    build_dataset(corpus, root / "dataset", cache_dir=root / "cache", progress=False)
    dataset, info, extractor = load_prepared(root / "dataset")
    cnn = save_model(root / "models" / "cnn", "cnn", extractor, seed=0, train_split=dataset["train"],
                     thresholds=[0.4] * 12)
    # the transformer was "trained" with other normalisation statistics than the dataset's
    shifted = InstrumentFeatureExtractor.from_dict(
        {**extractor.to_dict(), "mean": [m + 3.0 for m in extractor.mean], "std": [2 * s for s in extractor.std]})
    transformer = save_model(root / "models" / "transformer", "transformer", shifted, seed=1)
    return SimpleNamespace(root=root, corpus=corpus, dataset_path=root / "dataset", dataset=dataset, info=info,
                           extractor=extractor, shifted=shifted, cnn=cnn, transformer=transformer)


def expected_metrics(model_dir: Path, split, extractor, thresholds):
    """Window and frame metrics from an independent forward pass with the given normalisation."""
    import instrument_classifier.modeling  # noqa: F401
    from transformers import AutoModelForAudioClassification

    model = AutoModelForAudioClassification.from_pretrained(model_dir).eval()
    rows = split.with_format("numpy")[:]
    with torch.inference_mode():
        out = model(input_features=torch.from_numpy(extractor.normalize(rows["input_features"])))
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    window = compute_instrument_metrics(rows["labels"].astype(int), torch.sigmoid(out.logits).numpy(), thresholds,
                                        labels)
    frame_true = rows["frame_labels"].reshape(-1, len(labels))
    frame = compute_instrument_metrics(frame_true, torch.sigmoid(out.frame_logits).numpy().reshape(-1, len(labels)),
                                       thresholds, labels)
    return window, frame


def assert_metrics_close(actual, expected):
    assert actual["skipped_classes"] == expected["skipped_classes"]
    for key in METRIC_KEYS:
        if key in ("skipped_classes", "per_class"):
            continue
        assert actual[key] == pytest.approx(expected[key], abs=1e-6), key
    for label, values in expected["per_class"].items():
        for k, v in values.items():
            assert actual["per_class"][label][k] == pytest.approx(v, abs=1e-6), (label, k)


def leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


# -- end to end ------------------------------------------------------------------------------------

def test_two_models_end_to_end(setup, capsys):
    out = setup.root / "report"
    rc = main(["evaluate", "--model", str(setup.cnn), "--model", str(setup.transformer),
               "--dataset", str(setup.dataset_path), "--split", "test", "--output", str(out), "--batch-size", "4"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "cnn" in printed and "transformer" in printed and "ROC-AUC" in printed

    results = json.loads((out / "metrics.json").read_text())
    assert results["split"] == "test" and results["dataset"] == str(setup.dataset_path.resolve())
    assert results["num_windows"] == setup.dataset["test"].num_rows
    assert results["num_frames"] == setup.dataset["test"].num_rows * 256
    for name in ("cnn", "transformer"):
        for level in ("window", "frame"):
            assert ISSUE_KEYS <= set(results[name][level])
            assert tuple(results[name][level]) == METRIC_KEYS
            assert set(results[name][level]["per_class"]) == set(setup.info["labels"])
            assert set(results[name][level]["per_class"]["Keyboard"]) == {"roc_auc", "precision", "recall", "f1",
                                                                          "support"}
    # the config thresholds are used (0.4 were saved in the CNN's config)
    assert results["cnn"]["thresholds"] == [0.4] * 12 and results["transformer"]["thresholds"] == [0.5] * 12

    # the numbers are those of an independent forward pass with each MODEL's normalisation
    test = setup.dataset["test"]
    window, frame = expected_metrics(setup.cnn, test, setup.extractor, 0.4)
    assert_metrics_close(results["cnn"]["window"], window)
    assert_metrics_close(results["cnn"]["frame"], frame)
    window, frame = expected_metrics(setup.transformer, test, setup.shifted, 0.5)
    assert_metrics_close(results["transformer"]["frame"], frame)
    assert_metrics_close(results["transformer"]["window"], window)
    wrong_window, wrong_frame = expected_metrics(setup.transformer, test, setup.extractor, 0.5)  # dataset stats
    assert results["transformer"]["frame"]["roc_auc_micro"] != pytest.approx(wrong_frame["roc_auc_micro"], abs=1e-6)

    # frame labels: the split has absent seed12 families, named in skipped_classes at both levels
    assert "Guitar" in results["cnn"]["window"]["skipped_classes"]
    assert results["cnn"]["frame"]["per_class"]["Keyboard"]["support"] == int(
        np.asarray(test["frame_labels"])[..., 0].sum())

    md = (out / "metrics.md").read_text()
    assert "| model | level | ROC-AUC macro |" in md
    assert "| class | support | ROC-AUC | precision | recall | F1 | threshold |" in md
    assert "## cnn" in md and "## transformer" in md and "### Frame level" in md
    f1 = results["cnn"]["window"]["per_class"]["Keyboard"]["f1"]
    assert f"| Keyboard | {results['cnn']['window']['per_class']['Keyboard']['support']} |" in md
    assert f"{f1:.3f}" in md

    files = sorted(p.name for p in out.iterdir())
    assert files == ["heatmap.png", "metrics.json", "metrics.md", "roc_cnn.png", "roc_transformer.png"]
    for name in ("heatmap.png", "roc_cnn.png", "roc_transformer.png"):
        with Image.open(out / name) as image:
            image.verify()
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[0] > 500 and image.size[1] > 150
            assert len(image.convert("L").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 20  # not blank
    with Image.open(out / "heatmap.png") as image:
        assert image.text["Description"] == "models: cnn, transformer"
        two_rows = image.size[1]
    with Image.open(out / "roc_cnn.png") as image:
        present = [c for c in setup.info["labels"] if c not in results["cnn"]["window"]["skipped_classes"]]
        assert image.text["Description"] == "classes: " + ", ".join(present)
    plot_heatmap({k: v for k, v in results.items() if k != "transformer"}, setup.root / "one.png")
    with Image.open(setup.root / "one.png") as image:
        assert image.text["Description"] == "models: cnn" and image.size[1] < two_rows  # one row fewer

    # a second run replaces the earlier report, atomically
    rc = main(["evaluate", "--model", str(setup.cnn), "--dataset", str(setup.dataset_path), "--output", str(out),
               "--thresholds", "0.5"])
    assert rc == 0
    results = json.loads((out / "metrics.json").read_text())
    assert [k for k in results if k in ("cnn", "transformer")] == ["cnn"] and results["thresholds"] == 0.5
    assert results["cnn"]["thresholds"] == [0.5] * 12
    assert not (out / "roc_transformer.png").exists()
    assert leftovers(setup.root) == []


def test_data_dir_prepares_with_each_models_feature_settings(setup, tmp_path, capsys):
    # a model trained on MFCCs with deltas (26 features): the 13-MFCC dataset does not fit it ...
    deltas = InstrumentFeatureExtractor(include_deltas=True).fit_normalization(
        [np.random.default_rng(0).normal(size=(50, 26))])
    model = save_model(tmp_path / "deltas", "cnn", deltas, seed=2)
    rc = main(["evaluate", "--model", str(model), "--dataset", str(setup.dataset_path),
               "--output", str(tmp_path / "o1")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not match dataset" in err and "include_deltas: model True, dataset False" in err
    assert str(setup.dataset_path.resolve()) in err and not (tmp_path / "o1").exists()

    # ... but --data-dir prepares the MusicNet folder with its settings, next to the 13-MFCC CNN
    results = evaluate_models([model, setup.cnn], data_dir=setup.corpus, split="test",
                              output_dir=tmp_path / "o2", progress=False, cache_dir=tmp_path / "cache")
    assert results["dataset"] == str(setup.corpus.resolve())
    assert results["num_windows"] == setup.dataset["test"].num_rows
    reference = evaluate_models(setup.cnn, dataset=setup.dataset_path, progress=False)
    assert results["cnn"]["window"] == reference["cnn"]["window"]  # same rows as `prepare` made
    assert results["deltas"]["window"]["per_class"].keys() == reference["cnn"]["window"]["per_class"].keys()
    assert len(list((tmp_path / "cache").glob("prepared-*"))) == 2  # one dataset per feature setting
    assert (tmp_path / "o2" / "roc_deltas.png").is_file()

    # ... and so does a second prepared dataset of the same recordings: each model takes the one it matches
    build_dataset(setup.corpus, tmp_path / "ds_deltas",
                  feature_extractor=InstrumentFeatureExtractor(include_deltas=True),
                  cache_dir=tmp_path / "cache", progress=False)
    rc = main(["evaluate", "--model", str(model), "--model", str(setup.cnn), "--dataset", str(setup.dataset_path),
               str(tmp_path / "ds_deltas"), "--output", str(tmp_path / "o3")])
    assert rc == 0
    both = json.loads((tmp_path / "o3" / "metrics.json").read_text())
    assert both["dataset"] == [str(setup.dataset_path.resolve()), str((tmp_path / "ds_deltas").resolve())]
    assert both["cnn"]["window"] == reference["cnn"]["window"]
    assert both["deltas"]["window"] == results["deltas"]["window"]

    # a dataset of other recordings is refused: the models would not be compared on the same audio
    fewer = default_recordings()
    del fewer[next(rid for rid, rec in fewer.items() if rec["split"] == "test")]
    build_dataset(make_musicnet(tmp_path / "fewer", fewer), tmp_path / "ds_fewer",
                  feature_extractor=InstrumentFeatureExtractor(include_deltas=True), cache_dir=tmp_path / "cache",
                  progress=False)
    capsys.readouterr()
    rc = main(["evaluate", "--model", str(model), "--model", str(setup.cnn), "--dataset", str(setup.dataset_path),
               str(tmp_path / "ds_fewer"), "--output", str(tmp_path / "o4")])
    err = capsys.readouterr().err
    assert rc == 2 and "hold different windows" in err and not (tmp_path / "o4").exists()
    # and a model that matches none of them is named with each dataset's differences
    rc = main(["evaluate", "--model", str(model), "--dataset", str(setup.dataset_path), str(setup.dataset_path),
               "--output", str(tmp_path / "o5")])
    err = capsys.readouterr().err
    assert rc == 2 and "matches none of the datasets" in err and "include_deltas: model True, dataset False" in err


# -- bad input: exit 2, a message naming the path, nothing written ----------------------------------

def run_bad(args, capsys, out: Path):
    rc = main(["evaluate", *args, "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "\nevaluate: error: " in "\n" + err
    assert not out.exists()
    assert leftovers(out.parent) == []
    return err


def test_data_dir_with_only_test_recordings(setup, tmp_path, capsys):
    """Evaluation needs no training split (the models carry their normalisation): a MusicNet-layout folder with only
    test_data/ and test_labels/ is scored like the test split of the whole corpus (it stopped with "no usable
    training recordings")."""
    test_only = tmp_path / "test only"
    for folder in ("test_data", "test_labels"):
        shutil.copytree(setup.corpus / folder, test_only / folder)
    rc = main(["evaluate", "--model", str(setup.cnn), "--data-dir", str(test_only), "--output", str(tmp_path / "o")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    results = json.loads((tmp_path / "o" / "metrics.json").read_text())
    reference = evaluate_models(setup.cnn, dataset=setup.dataset_path, progress=False)
    assert results["num_windows"] == setup.dataset["test"].num_rows
    assert_metrics_close(results["cnn"]["window"], reference["cnn"]["window"])
    assert_metrics_close(results["cnn"]["frame"], reference["cnn"]["frame"])
    # the train split is still needed where it is the one asked for
    rc = main(["evaluate", "--model", str(setup.cnn), "--data-dir", str(test_only), "--split", "train",
               "--output", str(tmp_path / "o2")])
    assert rc == 2 and "no usable training recordings" in capsys.readouterr().err


def test_missing_model_folder(setup, tmp_path, capsys):
    missing = tmp_path / "no_such_model"
    err = run_bad(["--model", str(missing), "--dataset", str(setup.dataset_path)], capsys, tmp_path / "out")
    assert str(missing) in err and "not found" in err


def test_model_without_safetensors(setup, tmp_path, capsys):
    broken = tmp_path / "pickled"
    shutil.copytree(setup.cnn, broken)
    (broken / "model.safetensors").unlink()
    (broken / "pytorch_model.bin").write_bytes(b"not loaded")
    err = run_bad(["--model", str(broken), "--dataset", str(setup.dataset_path)], capsys, tmp_path / "out")
    assert str(broken) in err and "no model.safetensors" in err and "pytorch_model.bin" in err


def test_missing_split_and_missing_dataset(setup, tmp_path, capsys):
    err = run_bad(["--model", str(setup.cnn), "--dataset", str(setup.dataset_path), "--split", "dev"], capsys,
                  tmp_path / "out")
    assert str(setup.dataset_path) in err and "no 'dev' split" in err
    err = run_bad(["--model", str(setup.cnn), "--dataset", str(setup.corpus)], capsys, tmp_path / "out")
    assert str(setup.corpus) in err and "not a prepared dataset" in err


def test_output_that_is_not_a_report_is_never_replaced(setup, tmp_path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    rc = main(["evaluate", "--model", str(setup.cnn), "--dataset", str(setup.dataset_path), "--output", str(precious)])
    err = capsys.readouterr().err
    assert rc == 2 and str(precious) in err and "refusing" in err
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]
    # a path with '..' is resolved first: the refusal names the real folder
    sneaky = tmp_path / "elsewhere" / ".." / "precious"
    assert main(["evaluate", "--model", str(setup.cnn), "--dataset", str(setup.dataset_path),
                 "--output", str(sneaky)]) == 2
    assert str(precious) in capsys.readouterr().err
    # an earlier report with a file of the user's in it is not replaced either
    report = tmp_path / "report"
    report.mkdir()
    (report / "metrics.json").write_text("{}")
    (report / "my_notes.md").write_text("keep me")
    assert main(["evaluate", "--model", str(setup.cnn), "--dataset", str(setup.dataset_path),
                 "--output", str(report)]) == 2
    assert "my_notes.md" in capsys.readouterr().err and (report / "my_notes.md").read_text() == "keep me"
    with pytest.raises(EvaluationError, match="exactly one"):
        evaluate_models(setup.cnn, dataset=setup.dataset_path, data_dir=setup.corpus)


# -- names -----------------------------------------------------------------------------------------

def test_model_names_are_unique_and_file_names_safe():
    sources = ["/runs/a/model", "/runs/b/model", "org/instrument-cnn", "/x/split", "/y/cnn", "/y/cnn"]
    names = unique_model_names(sources, ["a/model", "b/model", "org/instrument-cnn", "/x/split", "y/cnn", "y/cnn"])
    assert names == ["a/model", "b/model", "org/instrument-cnn", "split-2", "y/cnn", "y/cnn-2"]
    taken = set()
    files = [_safe_name(f"roc_{n}", taken) for n in ["../../etc/passwd", "org/x", "org_x", ".."]]
    assert files == ["roc_.._.._etc_passwd", "roc_org_x", "roc_org_x-2", "roc"]
    assert all("/" not in f for f in files)
