"""``--device`` of predict, demo and evaluate, and the GPU choice of ``load_model``.

This machine has no GPU, so the CUDA and MPS paths are tested by their selection logic: ``torch.cuda.is_available``
and ``torch.backends.mps.is_available`` are patched to say what a GPU machine says, and ``Module.to`` records where
the models would go. What does run for real: the bundled models on the CPU through the CLI, and the clean refusal
of a device that is not there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from instrument_classifier import cli, inference
from instrument_classifier.inference import DeviceError, load_model, resolve_device

EXAMPLE = Path(__file__).resolve().parents[1] / "space" / "examples" / "beethoven_piano_sonata_30.ogg"


def _machine(monkeypatch, cuda: bool, mps: bool, gpus: int = 1) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus if cuda else 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("cuda,mps,expected", [(True, False, "cuda"), (True, True, "cuda"), (False, True, "mps"),
                                               (False, False, "cpu")])
def test_auto_picks_a_cuda_gpu_then_mps_then_the_cpu(monkeypatch, cuda, mps, expected):
    _machine(monkeypatch, cuda, mps)
    assert resolve_device("auto") == resolve_device(None) == torch.device(expected)
    assert resolve_device("cpu") == torch.device("cpu")


def test_a_device_that_is_not_there_is_refused_with_the_reason(monkeypatch):
    _machine(monkeypatch, cuda=False, mps=False)
    with pytest.raises(DeviceError, match=r"device 'cuda': CUDA is not available .* use --device cpu"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="MPS"):
        resolve_device("mps")
    with pytest.raises(DeviceError, match="choose one of auto, cuda, mps, cpu"):
        resolve_device("tpu")
    _machine(monkeypatch, cuda=True, mps=False, gpus=2)
    assert resolve_device("cuda:1") == torch.device("cuda:1") and resolve_device("CUDA") == torch.device("cuda")
    with pytest.raises(DeviceError, match=r"device 'cuda:2': no such GPU \(torch sees 2\)"):
        resolve_device("cuda:2")


def test_load_model_puts_the_models_on_the_gpu_when_there_is_one(monkeypatch):
    moved = []
    real_to = torch.nn.Module.to

    def record(module, *args, **kwargs):
        moved.append(args[0] if args else kwargs.get("device"))
        return module  # this machine has no GPU: stay where it is

    _machine(monkeypatch, cuda=True, mps=False)
    monkeypatch.setattr(torch.nn.Module, "to", record)
    load_model(inference.DEFAULT_MODEL_DIR.parent / "musicnn")  # one model
    assert moved == [torch.device("cuda")]
    moved.clear()
    load_model(None)  # the bundled default, the blend of three: every member moves
    assert moved == [torch.device("cuda")] * 3
    moved.clear()
    ensemble = inference.DEFAULT_MODEL_DIR.parent / "ensemble"  # the bundled CNN + Transformer: both members move
    load_model(ensemble)
    assert moved == [torch.device("cuda")] * 2
    moved.clear()
    load_model(ensemble, device="cpu")
    assert moved == [torch.device("cpu")] * 2
    monkeypatch.setattr(torch.nn.Module, "to", real_to)
    _machine(monkeypatch, cuda=False, mps=False)
    model, _ = load_model(inference.DEFAULT_MODEL_DIR.parent / "cnn")
    assert next(model.parameters()).device == torch.device("cpu")  # auto without a GPU


@pytest.mark.parametrize("command", [
    ["predict", str(EXAMPLE)],
    ["evaluate", "--model", "instrument_classifier/pretrained/cnn", "--clips", "manifest.csv", "--output", "{out}"],
    ["demo", "--port", "0"],
])
def test_cli_refuses_cuda_where_there_is_none_without_a_traceback(monkeypatch, capsys, tmp_path, command):
    _machine(monkeypatch, cuda=False, mps=False)
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert cli.main([arg.format(out=tmp_path / "out") for arg in command] + ["--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "--device: device 'cuda': CUDA is not available" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_predict_on_the_cpu_when_asked(capsys):
    assert cli.main(["predict", str(EXAMPLE), "--device", "cpu", "--format", "json"]) == 0
    assert "Piano" in capsys.readouterr().out
