"""push-model / push-space: the Hub is mocked at ``huggingface_hub.HfApi`` only; everything else is real.

The mocks record what would have been sent: the repo type, the Space SDK and the exact file list of
the folder handed to ``upload_folder`` (read while the staging folder still exists).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest

from instrument_classifier import cli, hub

REPO_ROOT = Path(__file__).resolve().parents[1]


class HubRecorder:
    """Stands in for the network half of ``HfApi``: records calls, uploads nothing."""

    def __init__(self, monkeypatch):
        self.calls = []
        recorder = self

        def create_repo(self, repo_id, **kwargs):
            recorder.calls.append(("create_repo", repo_id, kwargs))
            return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

        def upload_folder(self, *, repo_id, folder_path, **kwargs):
            root = Path(folder_path)
            files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
            recorder.calls.append(("upload_folder", repo_id, {**kwargs, "files": files}))
            return "mock-commit"

        def add_space_variable(self, repo_id, key, value, **kwargs):
            recorder.calls.append(("add_space_variable", repo_id, {"key": key, "value": value}))
            return {}

        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
        monkeypatch.setattr(huggingface_hub.HfApi, "add_space_variable", add_space_variable)

    def named(self, name):
        return [c for c in self.calls if c[0] == name]


@pytest.fixture
def recorder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # any call that escaped the mock would fail, not reach out
    return HubRecorder(monkeypatch)


@pytest.fixture
def trained_like_folder(tmp_path):
    """A real saved model folder (random weights) plus the clutter a Trainer output dir has."""
    from instrument_classifier.modeling import InstrumentFeatureExtractor, InstrumentTransformerConfig
    from instrument_classifier.modeling import InstrumentTransformerForAudioClassification

    folder = tmp_path / "run"
    model = InstrumentTransformerForAudioClassification(InstrumentTransformerConfig(taxonomy="seed12"))
    model.save_pretrained(folder)
    InstrumentFeatureExtractor(mean=[0.0] * 13, std=[1.0] * 13).save_pretrained(folder)
    (folder / "README.md").write_text("# model card\n")
    (folder / "all_results.json").write_text("{}\n")
    (folder / "training_args.bin").write_bytes(b"pickle")
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "model.safetensors").write_bytes(b"x")
    (folder / "runs" / "tb").mkdir(parents=True)
    (folder / "runs" / "tb" / "events.out").write_bytes(b"x")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"x")
    return folder


def test_push_model_uploads_the_model_files_only(recorder, trained_like_folder, capsys):
    code = cli.main(["push-model", "--repo-id", "someone/instrument-transformer", "--model", str(trained_like_folder)])
    assert code == 0
    (create,) = recorder.named("create_repo")
    assert create[1] == "someone/instrument-transformer"
    assert create[2]["repo_type"] == "model" and create[2]["exist_ok"] is True
    (upload,) = recorder.named("upload_folder")
    assert upload[2]["repo_type"] == "model"
    files = upload[2]["files"]
    expected = {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "all_results.json",
                "configuration_instrument_transformer.py", "modeling_instrument_transformer.py",
                "feature_extraction_instrument.py"}
    assert expected <= set(files), files
    for bad in ("training_args.bin", "checkpoint-10/model.safetensors", "runs/tb/events.out"):
        assert bad not in files
    assert not any("__pycache__" in f for f in files)
    out = capsys.readouterr().out
    assert "someone/instrument-transformer" in out and "mock-commit" in out


def test_push_model_refuses_folder_without_safetensors(recorder, tmp_path, capsys):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    assert cli.main(["push-model", "--repo-id", "a/b", "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "safetensors" in err and "pytorch_model.bin" in err
    assert recorder.calls == []  # nothing created on the Hub


def test_push_model_missing_folder_names_it(recorder, tmp_path, capsys):
    assert cli.main(["push-model", "--repo-id", "a/b", "--model", str(tmp_path / "nope")]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err
    assert recorder.calls == []


def test_push_model_of_an_ensemble_says_why_not_and_what_to_push(recorder, capsys):
    pretrained = REPO_ROOT / "instrument_classifier" / "pretrained"
    ensemble = pretrained / "ensemble"
    assert cli.main(["push-model", "--repo-id", "a/b", "--model", str(ensemble)]) == 2
    err = capsys.readouterr().err
    assert str(ensemble) in err and "local-only" in err and "holds no weights" in err
    assert "from_pretrained" in err and "push each member" in err
    assert "--model cnn, --model transformer)" in err  # its own members, by the names push-model takes
    assert recorder.calls == []
    default = pretrained / "musicnn-yamnet-efficientat"
    assert cli.main(["push-model", "--repo-id", "a/b", "--model", "musicnn-yamnet-efficientat"]) == 2
    err = capsys.readouterr().err
    assert str(default) in err and "(--model musicnn, --model yamnet, --model efficientat)" in err


def test_push_model_of_an_ensemble_of_own_folders_names_them_by_path(recorder, tmp_path, capsys):
    ensemble = tmp_path / "mine"
    ensemble.mkdir()
    (ensemble / "ensemble_config.json").write_text('{"members": ["../a", "../b"], "weights": [0.5, 0.5]}')
    assert cli.main(["push-model", "--repo-id", "a/b", "--model", str(ensemble)]) == 2
    assert f"(--model {tmp_path / 'a'}, --model {tmp_path / 'b'})" in capsys.readouterr().err
    assert recorder.calls == []


def test_push_without_a_network_says_the_hub_could_not_be_reached(recorder, monkeypatch, capsys):
    """The resolver's own words ("Name or service not known") come after what they mean; no upload is attempted
    once the repository cannot be created."""
    import socket

    def create_repo(self, repo_id, **kwargs):  # offline: a client error over the resolver's
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except socket.gaierror as exc:
            raise RuntimeError("[Errno -2] Name or service not known") from exc

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    assert cli.main(["push-model", "--repo-id", "a/b", "--model", "cnn"]) == 1
    err = capsys.readouterr().err
    assert "failed: the Hub could not be reached (no network, or a proxy or HF_ENDPOINT problem): [Errno -2]" in err
    assert cli.main(["push-space", "--repo-id", "a/b"]) == 1
    assert "to Space a/b failed: the Hub could not be reached" in capsys.readouterr().err
    assert recorder.named("upload_folder") == []


def test_push_model_by_default_pushes_the_musicnn_member_of_the_default(recorder, capsys):
    """Without --model, the default's musicnn member (the blend is local only): weights, code, its licence notice
    and card, nothing else."""
    assert cli.main(["push-model", "--repo-id", "someone/instrument-musicnn"]) == 0
    (upload,) = recorder.named("upload_folder")
    files = set(upload[2]["files"])
    folder = REPO_ROOT / "instrument_classifier" / "pretrained" / "musicnn"
    assert files == {p.name for p in folder.iterdir() if p.is_file()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "MUSICNN_LICENSE.md",
            "modeling_instrument_musicnn.py", "musicnn_frontend.py", "pipeline_instrument.py"} <= files
    assert "someone/instrument-musicnn" in capsys.readouterr().out


def test_push_model_takes_a_bundled_models_name_from_any_directory(recorder, tmp_path, monkeypatch, capsys):
    """`--model yamnet` (or `pretrained/yamnet`) is the bundled folder wherever the command runs, as for predict."""
    monkeypatch.chdir(tmp_path)
    folder = REPO_ROOT / "instrument_classifier" / "pretrained" / "yamnet"
    for name in ("yamnet", "pretrained/yamnet"):
        assert cli.main(["push-model", "--repo-id", "someone/instrument-yamnet", "--model", name]) == 0
    uploads = recorder.named("upload_folder")
    assert len(uploads) == 2
    assert all(set(u[2]["files"]) == {p.name for p in folder.iterdir() if p.is_file()} for u in uploads)
    assert cli.main(["push-model", "--repo-id", "a/b", "--model", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_push_space_uploads_app_package_and_models(recorder, capsys):
    code = cli.main(["push-space", "--repo-id", "someone/instruments", "--private", "--model-id", "someone/m"])
    assert code == 0
    (create,) = recorder.named("create_repo")
    assert create[2]["repo_type"] == "space" and create[2]["space_sdk"] == "gradio" and create[2]["private"] is True
    (upload,) = recorder.named("upload_folder")
    assert upload[2]["repo_type"] == "space"
    files = set(upload[2]["files"])
    for f in ("app.py", "README.md", "requirements.txt", "examples/examples.csv", "examples/README.md",
              "instrument_classifier/__init__.py", "instrument_classifier/space_app.py",
              "instrument_classifier/audio.py", "instrument_classifier/modeling/__init__.py",
              "instrument_classifier/modeling/feature_extraction_instrument.py"):
        assert f in files, f
    assert len([f for f in files if f.startswith("examples/") and f.endswith(".ogg")]) >= 3
    pretrained = REPO_ROOT / "instrument_classifier" / "pretrained"
    for p in (pretrained.rglob("*") if pretrained.is_dir() else []):
        if p.is_file() and "__pycache__" not in p.parts:
            assert p.relative_to(REPO_ROOT).as_posix() in files  # the bundled models travel with the app
    assert not any("__pycache__" in f or f.endswith(".pyc") or "/excerpts/" in f for f in files)
    assert not any(f.startswith(("tests/", "bench/", "corpora/", "outputs/")) for f in files)
    (variable,) = recorder.named("add_space_variable")
    assert variable[2] == {"key": "MODEL_ID", "value": "someone/m"}
    assert "someone/instruments" in capsys.readouterr().out


def test_push_space_rejects_folder_that_is_not_a_space(recorder, tmp_path, capsys):
    (tmp_path / "app.py").write_text("")
    assert cli.main(["push-space", "--repo-id", "a/b", "--space-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "README.md" in err
    assert recorder.calls == []


def test_staged_space_imports_its_own_copy_of_the_package(tmp_path):
    """The staged Space folder is self-sufficient: ``app.py``'s folder wins over the installed package."""
    hub.stage_files(hub.space_files(), tmp_path)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import instrument_classifier.space_app as m, "
            "instrument_classifier.audio as a; print(m.__file__); print(a.__file__)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert out.returncode == 0, out.stderr
    for line in out.stdout.split():
        assert Path(line).resolve().is_relative_to(tmp_path.resolve()), line
