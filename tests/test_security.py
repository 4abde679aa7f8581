"""Security (issue 6, item 5): loading never unpickles nor runs code from a model folder; uploads cannot
choose where they land.

* Model folders are loaded from safetensors only. A ``pytorch_model.bin`` whose unpickling would create a
  marker file (as a malicious checkpoint would run any code) is refused, or ignored next to safetensors;
  the marker never appears.
* Our loaders (``inference.load_model``, ``evaluate``, ``train.py --model_name_or_path``) use the package's
  own registered classes: a tampered ``modeling_*.py`` inside a model folder is never imported. (Plain
  ``transformers`` users need ``trust_remote_code=True``, which runs those files: see the README.)
* An upload named ``../../x.wav`` or ``/tmp/x.wav`` is stored inside Gradio's upload cache, and the
  handler's outputs go to fixed names in a private folder. The upload size limit is enforced by the
  server (``test_space_app.py::test_oversized_upload_is_refused_by_the_server``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from badfiles import reference_audio, small_corpus, write_audio_case  # noqa: E402
from local_server import serve_app  # noqa: E402
from instrument_classifier.modeling import MODEL_CLASSES  # noqa: E402
from instrument_classifier.modeling.feature_extraction_instrument import InstrumentFeatureExtractor  # noqa: E402

SR = 44100


class _CreatesFile:
    """Pickle payload: unpickling calls ``open(path, "w")``, i.e. runs code chosen by the file's author."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "model"
    torch.manual_seed(0)
    config_class, model_class = MODEL_CLASSES["cnn"]
    model_class(config_class(taxonomy="seed12", conv_channels=[8, 16])).save_pretrained(folder)
    extractor = InstrumentFeatureExtractor()
    extractor.fit_normalization([extractor.extract(reference_audio())])
    extractor.save_pretrained(folder)
    return folder


def _with_pickle(model_dir: Path, dest: Path, keep_safetensors: bool) -> Path:
    """A copy of the model folder with a booby-trapped ``pytorch_model.bin``; returns the marker path."""
    shutil.copytree(model_dir, dest)
    marker = dest.parent / f"{dest.name}-unpickled"
    from safetensors.torch import load_file

    state = load_file(dest / "model.safetensors")
    state["trap"] = _CreatesFile(marker)
    torch.save(state, dest / "pytorch_model.bin")
    if not keep_safetensors:
        (dest / "model.safetensors").unlink()
    return marker


def _with_tampered_code(model_dir: Path, dest: Path) -> Path:
    """A copy whose shipped modeling/configuration files create a marker when imported."""
    shutil.copytree(model_dir, dest)
    marker = dest.parent / f"{dest.name}-code-ran"
    for name in ("modeling_instrument_cnn.py", "configuration_instrument_cnn.py", "feature_extraction_instrument.py"):
        path = dest / name
        path.write_text(path.read_text() + f"\nopen({str(marker)!r}, 'w').close()\n")  # runs on import
    return marker


# -- inference.load_model ------------------------------------------------------------------------------

def test_load_model_refuses_pickled_weights(model_dir, tmp_path):
    from instrument_classifier import inference
    marker = _with_pickle(model_dir, tmp_path / "bin_only", keep_safetensors=False)
    with pytest.raises(ValueError, match="safetensors") as err:
        inference.load_model(str(tmp_path / "bin_only"))
    assert "bin_only" in str(err.value)
    with pytest.raises(ValueError, match="pickled weights are refused|not a file|model folder"):
        inference.load_model(str(tmp_path / "bin_only" / "pytorch_model.bin"))
    assert not marker.exists()


def test_load_model_ignores_a_pickle_next_to_safetensors(model_dir, tmp_path):
    from instrument_classifier import inference
    marker = _with_pickle(model_dir, tmp_path / "both", keep_safetensors=True)
    model, _ = inference.load_model(str(tmp_path / "both"))
    assert not marker.exists()
    reference, _ = inference.load_model(str(model_dir))
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


def test_load_model_never_runs_code_shipped_in_the_folder(model_dir, tmp_path):
    from instrument_classifier import inference
    marker = _with_tampered_code(model_dir, tmp_path / "tampered")
    model, extractor = inference.load_model(str(tmp_path / "tampered"))
    assert not marker.exists()
    assert type(model).__module__.startswith("instrument_classifier.modeling")
    assert type(extractor).__module__.startswith("instrument_classifier.modeling")


def test_trust_remote_code_would_run_the_folders_code(model_dir, tmp_path):
    """Why the README asks to review (and pin) a model repo before ``trust_remote_code=True``: it runs its files."""
    import os
    import subprocess
    import sys

    marker = _with_tampered_code(model_dir, tmp_path / "tampered")
    code = ("from transformers import AutoModelForAudioClassification\n"
            f"AutoModelForAudioClassification.from_pretrained({str(tmp_path / 'tampered')!r}, trust_remote_code=True)\n")
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"))  # not the user's module cache
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert marker.exists()


# -- evaluate --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from instrument_classifier.data.prepare import build_dataset

    root = tmp_path_factory.mktemp("prepared")
    build_dataset(small_corpus(root / "corpus"), root / "dataset", cache_dir=root / "cache", progress=False)
    return root / "dataset"


def test_evaluate_refuses_pickled_weights_and_never_runs_shipped_code(model_dir, prepared, tmp_path, capsys):
    from instrument_classifier import cli

    pickled = _with_pickle(model_dir, tmp_path / "bin_only", keep_safetensors=False)
    code = cli.main(["evaluate", "--model", str(tmp_path / "bin_only"), "--dataset", str(prepared),
                     "--output", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert code != 0 and "safetensors" in err and "bin_only" in err and "Traceback" not in err
    assert not pickled.exists() and not (tmp_path / "report").exists()

    ran = _with_tampered_code(model_dir, tmp_path / "tampered")
    assert cli.main(["evaluate", "--model", str(tmp_path / "tampered"), "--dataset", str(prepared),
                     "--output", str(tmp_path / "report2")]) == 0
    assert not ran.exists()


# -- train.py --model_name_or_path -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def train_cli():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_script", Path(__file__).resolve().parents[1] / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cli


def _fine_tune_args(model: Path, dataset: Path, out: Path) -> list:
    return ["--model_name_or_path", str(model), "--dataset_path", str(dataset), "--output_dir", str(out),
            "--max_steps", "1", "--per_device_train_batch_size", "4", "--eval_strategy", "no",
            "--save_strategy", "no", "--load_best_model_at_end", "false", "--report_to", "none",
            "--disable_tqdm", "true"]


def test_train_refuses_pickled_weights_to_fine_tune(model_dir, prepared, train_cli, tmp_path, capsys):
    marker = _with_pickle(model_dir, tmp_path / "bin_only", keep_safetensors=False)
    try:
        code = train_cli(_fine_tune_args(tmp_path / "bin_only", prepared, tmp_path / "run"))
    except Exception as exc:  # a deep unpickling error is not a clear refusal either
        pytest.fail(f"{type(exc).__name__}: {exc}")
    err = capsys.readouterr().err
    assert not marker.exists()
    assert code == 2 and "safetensors" in err and "bin_only" in err


def test_train_fine_tuning_never_runs_code_shipped_in_the_folder(model_dir, prepared, train_cli, tmp_path, capsys):
    marker = _with_tampered_code(model_dir, tmp_path / "tampered")
    code = train_cli(_fine_tune_args(tmp_path / "tampered", prepared, tmp_path / "run"))
    assert code == 0, capsys.readouterr().err
    assert not marker.exists()


# -- Space uploads ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(model_dir):
    from instrument_classifier import space_app
    limits = space_app.AppLimits(max_upload_mb=1.0, max_duration_s=30.0)
    demo = space_app.build_demo(models=[str(model_dir)], limits=limits, examples_dir=None)
    with serve_app(demo, limits) as served:
        yield served


@pytest.mark.parametrize("name", ["../../../../x-traversal.wav", "/tmp/x-absolute.wav",
                                  "..\\..\\x-backslash.wav", "sub/../../x-nested.wav"])
def test_upload_names_cannot_choose_where_the_file_lands(server, tmp_path, name):
    import httpx
    from gradio_client import Client, handle_file

    url, _ = server
    wav = write_audio_case(tmp_path / "clip.wav", "reference")
    stem = Path(name.replace("\\", "/")).name
    before = set(Path("/").glob(stem)) | set(Path("/tmp").glob(stem))
    with open(wav, "rb") as f:
        response = httpx.post(url + "gradio_api/upload", files={"files": (name, f, "audio/wav")}, timeout=30)
    assert response.status_code == 200, response.text
    stored = Path(response.json()[0])
    cache = Path(_gradio_cache_dir())
    assert stored.resolve().is_relative_to(cache.resolve()), f"{name} stored at {stored}, outside {cache}"
    assert (set(Path("/").glob(stem)) | set(Path("/tmp").glob(stem))) == before  # nothing written outside
    # the handler uses the stored file; the name it shows is the sanitised base name
    client = Client(url, verbose=False, analytics_enabled=False)
    *_, csv_path, timeline, summary = client.predict(handle_file(str(stored)), api_name="/classify")
    assert "/" not in summary.split("·")[0].strip("* ")
    assert timeline["duration_s"] == pytest.approx(3.0, abs=0.01)


def _gradio_cache_dir() -> str:
    import os
    import tempfile

    return os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio")


def test_handler_outputs_go_to_fixed_names_in_a_private_folder(server, tmp_path):
    from gradio_client import Client, handle_file

    url, _ = server
    weird = tmp_path / "..;$(touch pwned) `id` & name.wav"
    write_audio_case(weird, "reference")
    client = Client(url, verbose=False, analytics_enabled=False)
    clip, image, table, csv_path, timeline, summary = client.predict(handle_file(str(weird)), api_name="/classify")
    assert Path(csv_path).name == "instrument_segments.csv"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    assert "name.wav" in summary


def test_the_app_checks_the_size_itself_too(tmp_path):
    """Files that reach the handler without the upload route (e.g. a URL Gradio fetched) are size-checked again."""
    from instrument_classifier import space_app
    path = tmp_path / "big.wav"
    sf.write(path, np.zeros(SR * 6, dtype=np.float32), SR, subtype="PCM_16")  # 0.5 MB
    with pytest.raises(space_app.UploadRejected, match=r"big.wav: 0.5 MB is over this demo's 0.1 MB limit"):
        space_app.check_upload(path, space_app.AppLimits(max_upload_mb=0.1))
    assert space_app.check_upload(path, space_app.AppLimits(max_upload_mb=1.0)) == pytest.approx(6.0)
