"""train.py end to end on a tiny real dataset (8 rendered MusicNet excerpts of 10 s): both models, 2-process
DDP with bf16 on CPU, resume after a kill, determinism, and a Hub push against a mocked ``HfApi``.

These are the suite's heavy tests (each run is a real Trainer run in a subprocess, as users launch it).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
import torch

from local_server import free_port

REPO = Path(__file__).resolve().parents[1]
TRAIN_PY = REPO / "train.py"

# Small, quick and deterministic: no progress bars, 0 dataloader workers, fixed seed.
COMMON = ["--per_device_eval_batch_size", "16", "--seed", "0", "--disable_tqdm", "true", "--report_to", "none"]


@pytest.fixture(scope="module")
def tiny_dataset(rendered_corpus, tmp_path_factory) -> Path:
    """Prepared windows of the rendered excerpts: 18 train, 8 validation (2 pieces), 12 test windows."""
    from instrument_classifier.data.prepare import build_dataset

    out = tmp_path_factory.mktemp("train") / "dataset"
    build_dataset(rendered_corpus, out, validation_fraction=0.1, progress=False)
    return out


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def run_train(args, *, launcher=None, expect_rc=0, timeout=300, **env) -> subprocess.CompletedProcess:
    """Run ``python train.py ARGS`` (or ``LAUNCHER... train.py ARGS``) from the repo root; check the exit code."""
    cmd = (launcher or [sys.executable]) + [str(TRAIN_PY)] + [str(a) for a in args]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(**env), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != expect_rc:
        raise AssertionError(f"exit code {proc.returncode} (expected {expect_rc}) for {' '.join(cmd)}\n"
                             f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def train_in_process(args) -> dict:
    """``train.main(ARGS)`` in this process: the same code path without a new interpreter's import time."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import train

    return train.main([str(a) for a in args])


def state_of(folder: Path) -> dict:
    return json.loads((folder / "trainer_state.json").read_text())


def step_losses(folder: Path) -> dict:
    return {h["step"]: h["loss"] for h in state_of(folder)["log_history"] if "loss" in h}


def validation_windows(dataset_path: Path):
    from instrument_classifier.data.prepare import load_prepared

    dataset, _, _ = load_prepared(dataset_path)
    val = dataset["validation"].with_format("numpy")
    return np.asarray(val["input_features"]), np.asarray(val["labels"])


# -- both models end to end ---------------------------------------------------------------------------------

@pytest.mark.parametrize("model_type,extra", [
    ("cnn", ["--use_pos_weight", "--frame_loss_weight", "0.25"]),
    ("transformer", ["--config_overrides", "d_model=32,num_layers=1,num_heads=2,dim_feedforward=64",
                     "--time_masks", "2", "--feature_masks", "1", "--gain_db", "6", "--eq_db", "6", "--warp", "0.1"]),
])
def test_train_end_to_end_gives_a_loadable_model_with_validation_tuned_thresholds(tiny_dataset, rendered_corpus,
                                                                                 tmp_path, model_type, extra):
    from huggingface_hub import ModelCard
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    from instrument_classifier.data.prepare import load_prepared
    from instrument_classifier.evaluation.metrics import tune_thresholds
    from instrument_classifier.training.class_weights import pos_weight_from_labels

    out = tmp_path / model_type
    args = ["--model_type", model_type, "--output_dir", out, "--num_train_epochs", "2",
            "--per_device_train_batch_size", "8", *COMMON, *extra]
    if model_type == "cnn":
        run_train([*args, "--dataset_path", tiny_dataset])  # as users run it: `python train.py ...`
    else:  # from the MusicNet folder, prepared on the fly (the same windows as tiny_dataset)
        train_in_process([*args, "--data_dir", rendered_corpus, "--prepared_dir", tmp_path / "prepared"])
        assert (tmp_path / "prepared" / "prepare_info.json").is_file()

    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "README.md",
                 f"configuration_instrument_{model_type}.py", f"modeling_instrument_{model_type}.py",
                 "feature_extraction_instrument.py", "all_results.json", "eval_results.json", "test_results.json",
                 "figures/test_roc_curves.png", "figures/test_heatmap.png"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin")) or [p.name for p in out.glob("*.bin")] == ["training_args.bin"]

    model = AutoModelForAudioClassification.from_pretrained(out, trust_remote_code=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(out, trust_remote_code=True)
    assert model.config.model_type == f"instrument_{model_type}"
    _, info, data_extractor = load_prepared(tiny_dataset)
    assert extractor.mean == pytest.approx(data_extractor.mean) and extractor.std == pytest.approx(data_extractor.std)

    # the thresholds in the config are the F1-optimal cuts on the validation windows, not defaults or test cuts
    features, labels = validation_windows(tiny_dataset)
    with torch.no_grad():
        probs = torch.sigmoid(model(input_features=torch.from_numpy(extractor.normalize(features))).logits).numpy()
    thresholds = np.asarray(model.config.thresholds)
    np.testing.assert_allclose(thresholds, tune_thresholds(labels.astype(int), probs), atol=1e-4)
    present = (labels.sum(0) > 0) & (labels.sum(0) < len(labels))
    assert np.all(thresholds[~present] == 0.5) and not np.all(thresholds[present] == 0.5)
    # and so is the recording context that predict --context applies, with thresholds of its own
    from instrument_classifier.evaluation.tuning import tune_context

    positions = load_prepared(tiny_dataset)[0]["validation"].select_columns(["recording_id", "start_frame"])
    context = tune_context(labels.astype(int), probs, positions["recording_id"], positions["start_frame"],
                           model.config.window_frames)
    stored = model.config.context
    assert (stored["radius_windows"], stored["weight"]) == (context.radius_windows, context.weight)
    np.testing.assert_allclose(stored["thresholds"], context.thresholds, atol=1e-4)

    if model_type == "cnn":
        train_labels = np.asarray(load_prepared(tiny_dataset)[0]["train"].with_format("numpy")["labels"])
        assert model.config.pos_weight == pytest.approx(pos_weight_from_labels(train_labels))
        assert model.config.frame_loss_weight == 0.25
    else:
        assert (model.config.hidden_size, model.config.num_attention_heads,
                model.config.intermediate_size) == (32, 2, 64)

    results = json.loads((out / "all_results.json").read_text())
    for key in ("train_loss", "eval_roc_auc_macro", "eval_f1_macro", "test_roc_auc_macro", "test_hamming_loss",
                "test_frame_roc_auc_macro", "test_per_class"):
        assert key in results, key
    # the window-level test metrics of training equal those of `instrument-classifier evaluate`'s code path
    evaluated = json.loads((out / "test_results.json").read_text())
    assert evaluated["test_f1_micro"] == pytest.approx(results["test_f1_micro"])
    assert state_of(out)["best_model_checkpoint"] is not None

    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "audio-classification" and card.data.library_name == "transformers"
    assert "trust_remote_code=True" in card.text and "| Keyboard |" in card.text
    assert "from 13 MFCCs per frame" in card.text
    if model_type == "transformer":  # the augmentation as run is on record
        assert "gain ±6 dB, EQ ±6 dB over 4 cosines, frequency warp ±10%" in card.text


def test_fine_tune_keeps_weights_and_normalisation_and_swaps_the_head_for_a_new_taxonomy(tiny_dataset, rendered_corpus,
                                                                                       tmp_path):
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    base = tmp_path / "base"
    train_in_process(["--model_type", "cnn", "--dataset_path", tiny_dataset, "--output_dir", base,
                      "--config_overrides", "channels=[8,16]", "--num_train_epochs", "1", *COMMON])
    # give the pretrained normalisation recognisable values: fine-tuning must keep them, not refit
    config_path = base / "preprocessor_config.json"
    preprocessor = json.loads(config_path.read_text())
    preprocessor["mean"] = [m + 1.0 for m in preprocessor["mean"]]
    config_path.write_text(json.dumps(preprocessor))

    tuned = tmp_path / "musicnet11"
    train_in_process(["--model_name_or_path", base, "--data_dir", rendered_corpus, "--taxonomy", "musicnet11",
                      "--prepared_dir", tmp_path / "prepared11", "--output_dir", tuned, "--num_train_epochs", "1",
                      "--learning_rate", "1e-9", "--warmup_steps", "0", *COMMON])
    before = AutoModelForAudioClassification.from_pretrained(base, trust_remote_code=True)
    after = AutoModelForAudioClassification.from_pretrained(tuned, trust_remote_code=True)
    assert after.config.taxonomy == "musicnet11" and after.config.num_labels == 11
    assert after.config.id2label[0] == "Piano" and len(after.config.thresholds) == 11
    old_weights, new_weights = before.state_dict(), after.state_dict()
    convs = [k for k in old_weights if k.startswith("encoder.")]
    assert convs and all(torch.allclose(old_weights[k], new_weights[k], atol=1e-6) for k in convs)
    assert new_weights["classifier.weight"].shape[0] == 11 != old_weights["classifier.weight"].shape[0]
    assert AutoFeatureExtractor.from_pretrained(tuned, trust_remote_code=True).mean == \
        pytest.approx(preprocessor["mean"])
    card = (tuned / "README.md").read_text()  # pushed as it is: it names no folder of this machine
    assert str(tmp_path) not in card and f"| fine-tuned from | {tmp_path.name}/base |" in card


def test_fine_tune_that_changes_nothing_says_so_and_keeps_the_models_thresholds(tiny_dataset, tmp_path, caplog):
    """A fine-tuning whose best checkpoint holds the starting weights is reported, and the labels validation cannot
    tune keep the fine-tuned model's thresholds rather than 0.5."""
    base = tmp_path / "base"
    train_in_process(["--model_type", "cnn", "--dataset_path", tiny_dataset, "--output_dir", base,
                      "--config_overrides", "channels=[8,16]", "--num_train_epochs", "1", *COMMON])
    config = json.loads((base / "config.json").read_text())
    config["thresholds"] = [0.77] * len(config["thresholds"])  # recognisable: not what validation would choose
    (base / "config.json").write_text(json.dumps(config))

    tuned = tmp_path / "tuned"
    with caplog.at_level(logging.WARNING):
        train_in_process(["--model_name_or_path", base, "--dataset_path", tiny_dataset, "--output_dir", tuned,
                          "--num_train_epochs", "1", "--learning_rate", "0", *COMMON])
    assert "the kept weights are those the fine-tuning started from" in caplog.text
    _, labels = validation_windows(tiny_dataset)
    untunable = labels.min(axis=0) == labels.max(axis=0)
    assert untunable.any() and not untunable.all()
    thresholds = np.asarray(json.loads((tuned / "config.json").read_text())["thresholds"])
    assert np.all(thresholds[untunable] == 0.77) and np.all(thresholds[~untunable] != 0.77)
    assert f"{untunable.sum()} label(s) without both positive and negative validation windows keep the fine-tuned " \
           "model's thresholds" in caplog.text


def test_fine_tune_on_a_musicnet_folder_prepares_it_as_the_model_reads(rendered_corpus, tmp_path, caplog):
    """``--data_dir`` with ``--model_name_or_path cnn`` (the bundled CNN: MFCCs with deltas, musicnet11) needs no
    feature flags: the folder is prepared with the model's taxonomy, window and features."""
    prepared = tmp_path / "prepared"
    with caplog.at_level(logging.INFO):
        train_in_process(["--model_name_or_path", "cnn", "--data_dir", rendered_corpus, "--prepared_dir", prepared,
                          "--output_dir", tmp_path / "out", "--max_steps", "1", "--eval_strategy", "no",
                          "--save_strategy", "no", "--load_best_model_at_end", "false", *COMMON])
    info = json.loads((prepared / "prepare_info.json").read_text())
    assert info["taxonomy"] == "musicnet11" and info["window_frames"] == 256
    extractor = json.loads((prepared / "feature_extractor" / "preprocessor_config.json").read_text())
    assert (extractor["feature_type"], extractor["n_coefficients"], extractor["include_deltas"]) == ("mfcc", 13, True)
    assert "--data_dir prepared with the settings of" in caplog.text and "include_deltas True" in caplog.text


# -- two processes (gloo DDP) with bf16: same first-step loss as one process ----------------------------------

def test_two_process_bf16_ddp_matches_one_process_first_step_loss(tiny_dataset, tmp_path):
    """Global batch = the 8 first training windows in both runs (8 x 1 process, 4 x 2 processes), one step.

    The logged loss of a DDP step is the mean over processes of each process's batch-mean loss, which equals
    the 1-process batch mean over the same 8 windows; dropout is off so both runs compute the same function.
    A loss scaled by the number of processes (``accepts_loss_kwargs`` left on) would come out twice as large.
    """
    from transformers import AutoModelForAudioClassification

    common = ["--model_type", "cnn", "--dataset_path", tiny_dataset, "--max_train_samples", "8",
              "--num_train_epochs", "1", "--logging_steps", "1", "--dropout", "0", "--bf16", *COMMON]
    one = tmp_path / "one"
    two = tmp_path / "two"
    train_in_process([*common, "--use_cpu", "--output_dir", one, "--per_device_train_batch_size", "8"])
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "bf16", "--dynamo_backend", "no",
                "--main_process_port", str(free_port())]
    # no --use_cpu: a launch of 2 processes without a GPU trains one model on the CPU, not two unrelated ones
    proc = run_train([*common, "--output_dir", two, "--per_device_train_batch_size", "4"], launcher=launcher,
                     OMP_NUM_THREADS="1")
    assert "process 0 of 2" in proc.stdout and "mixed precision bf16" in proc.stdout
    assert proc.stderr.count("2 processes and no GPU: training on the CPU") == 1  # said once, by rank 0

    loss_one, loss_two = step_losses(one), step_losses(two)
    assert list(loss_one) == [1] and list(loss_two) == [1]  # one optimisation step each
    assert loss_two[1] == pytest.approx(loss_one[1], rel=1e-3), (loss_one, loss_two)  # seen: equal to 1e-7
    model = AutoModelForAudioClassification.from_pretrained(two, trust_remote_code=True)
    assert len(model.config.thresholds) == model.config.num_labels


# -- killed mid-training, resumed; same seed, same result -----------------------------------------------------

KILL_AFTER_SAVE = """
import os, sys
sys.path.insert(0, {repo!r})
from transformers import TrainerCallback
import train

class KillAfterCheckpoint(TrainerCallback):
    # os._exit: no cleanup, no final save -- as if the job were killed right after writing the checkpoint
    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= {step}:
            os._exit(3)

train.main({argv!r}, callbacks=[KillAfterCheckpoint()])
"""


def test_resume_after_kill_continues_from_checkpoint_and_runs_are_deterministic(tiny_dataset, tmp_path):
    # 18 windows / batch 4 = 5 steps per epoch; the kill at step 4 is mid-epoch
    args = ["--model_type", "cnn", "--dataset_path", tiny_dataset, "--config_overrides", "channels=[8,16]",
            "--per_device_train_batch_size", "4", "--max_steps", "6", "--eval_strategy", "steps", "--eval_steps", "2",
            "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1", "--time_masks", "1", *COMMON]
    full, again, killed = tmp_path / "full", tmp_path / "again", tmp_path / "killed"
    train_in_process([*args, "--output_dir", full])
    train_in_process([*args, "--output_dir", again])

    # determinism: same seed, same data -> same losses and metrics (CPU)
    assert step_losses(full) == step_losses(again)
    assert json.loads((full / "all_results.json").read_text())["eval_roc_auc_macro"] == \
        json.loads((again / "all_results.json").read_text())["eval_roc_auc_macro"]

    argv = [str(a) for a in [*args, "--output_dir", killed]]
    code = KILL_AFTER_SAVE.format(repo=str(REPO), step=4, argv=argv)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 3, proc.stderr[-4000:]
    assert (killed / "checkpoint-4" / "trainer_state.json").is_file()
    assert not (killed / "model.safetensors").exists() and not (killed / "all_results.json").exists()

    proc = run_train([*args, "--output_dir", killed, "--resume_from_checkpoint", "true"])
    assert "resuming from" in proc.stdout and "checkpoint-4" in proc.stdout
    assert state_of(killed)["global_step"] == state_of(full)["global_step"] == 6
    resumed_losses, full_losses = step_losses(killed), step_losses(full)
    assert sorted(resumed_losses) == list(range(1, 7))
    # the resumed run continues the same trajectory (data order and RNG state restored from the checkpoint)
    for step in (5, 6):
        assert resumed_losses[step] == pytest.approx(full_losses[step], rel=1e-4), (resumed_losses, full_losses)
    assert (killed / "model.safetensors").is_file() and (killed / "all_results.json").is_file()


# -- Hub push against a mocked HfApi ------------------------------------------------------------------------

def test_push_to_hub_uploads_model_folder_with_card(tiny_dataset, tmp_path, monkeypatch):
    from huggingface_hub import HfApi, ModelCard
    from huggingface_hub.hf_api import RepoUrl
    from huggingface_hub.utils import filter_repo_objects

    uploads = []

    def fake_create_repo(self, repo_id, **kwargs):
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def fake_upload_folder(self, *, repo_id, folder_path, path_in_repo=None, allow_patterns=None,
                           ignore_patterns=None, run_as_future=False, **kwargs):
        # snapshot what would be uploaded now, with huggingface_hub's own pattern filter
        root = Path(folder_path)
        files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        files = sorted(filter_repo_objects(files, allow_patterns=allow_patterns,
                                           ignore_patterns=list(ignore_patterns or []) + [".git/*", ".cache/*"]))
        readme = (root / "README.md").read_text() if (root / "README.md").is_file() else None
        uploads.append({"repo_id": repo_id, "folder": root, "path_in_repo": path_in_repo, "files": files,
                        "readme": readme})
        if run_as_future:
            done = Future()
            done.set_result(None)
            return done
        return f"https://huggingface.co/{repo_id}/commit/0"

    def no_network(self, *args, **kwargs):
        raise AssertionError("unexpected Hub call")

    monkeypatch.setenv("HF_TOKEN", "hf_offline_test_token")
    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    for name in ("create_commit", "upload_file", "whoami", "preupload_lfs_files"):
        monkeypatch.setattr(HfApi, name, no_network)

    out = tmp_path / "pushed"
    results = train_in_process(["--model_type", "cnn", "--dataset_path", tiny_dataset, "--output_dir", out,
                                "--config_overrides", "channels=[8,16]", "--num_train_epochs", "1",
                                "--per_device_train_batch_size", "8", "--push_to_hub", "--hub_model_id",
                                "user/instrument-cnn", *COMMON])
    final = [u for u in uploads if u["folder"] == out and u["path_in_repo"] is None][-1]
    assert final["repo_id"] == "user/instrument-cnn"
    for name in ("model.safetensors", "config.json", "configuration_instrument_cnn.py", "modeling_instrument_cnn.py",
                 "feature_extraction_instrument.py", "preprocessor_config.json", "README.md",
                 "figures/test_roc_curves.png", "figures/test_heatmap.png"):
        assert name in final["files"], (name, final["files"])
    assert not any(f.startswith("checkpoint-") for f in final["files"])

    card = ModelCard(final["readme"])
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "audio-classification" and data["library_name"] == "transformers"
    # rendered audio: no Hub dataset to name ("musicnet" would name the real recordings); the index says what it was
    assert data["license"] == "apache-2.0" and "datasets" not in data
    assert {"audio-classification", "instrument-recognition", "custom_code"} <= set(data["tags"])
    index = data["model-index"][0]
    assert index["name"] == "instrument-cnn"
    assert all(r["dataset"]["name"].startswith("MusicNet scores synthesized with ") for r in index["results"])
    reported = {(r["dataset"]["split"], m["name"]): m["value"] for r in index["results"] for m in r["metrics"]}
    assert reported[("test", "macro ROC-AUC (test, window level)")] == \
        pytest.approx(results["test"]["roc_auc_macro"], abs=1e-4)
    assert ("validation", "micro F1 (validation, window level)") in reported
    for section in ("## Labels", "## Training data and splits", "by recording and piece",
                    "tuned on the **validation**", "## Intended use and limitations", "synthesised",
                    'pipeline("audio-classification", model="user/instrument-cnn", trust_remote_code=True)',
                    'if r["detected"]]', "![test roc curves](figures/test_roc_curves.png)"):
        assert section in card.text, section
