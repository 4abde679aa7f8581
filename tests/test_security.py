"""Security: loading never unpickles nor runs code from a model folder; uploads cannot
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
import sys
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
            f"AutoModelForAudioClassification.from_pretrained({str(tmp_path / 'tampered')!r}, "
            "trust_remote_code=True)\n")
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


# -- untrusted model folders -----------------------------------------------------------------------------
#
# transformers runs code shipped in a model folder when its config.json names a model type it does not know
# and maps it to the folder's own files (``auto_map``), or when preprocessor_config.json maps the feature
# extractor to the folder's files. Unless ``trust_remote_code`` is given, it *asks* on the terminal ("run the
# custom code? [y/N]", waiting 15 s), so ``echo y | instrument-classifier predict --model EVIL`` used to run it.

BUNDLED_CNN = Path(__file__).resolve().parents[1] / "instrument_classifier" / "pretrained" / "cnn"


def _evil_folder(dest: Path, kind: str) -> Path:
    """A copy of the bundled CNN whose loading would import a file of the folder; returns the marker path.

    ``kind`` "config": config.json gets an unknown model_type and an auto_map to the folder's own modules.
    ``kind`` "preprocessor": preprocessor_config.json maps the feature extractor to the folder's module.
    """
    import json

    shutil.copytree(BUNDLED_CNN, dest, ignore=shutil.ignore_patterns("figures"))
    marker = dest.parent / f"{dest.name}-code-ran"
    payload = f"open({str(marker)!r}, 'w').close()\n"
    if kind == "config":
        config = json.loads((dest / "config.json").read_text())
        config["model_type"] = "evil_net"
        config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig",
                              "AutoModelForAudioClassification": "modeling_evil.EvilModel"}
        (dest / "config.json").write_text(json.dumps(config))
        (dest / "configuration_evil.py").write_text(
            payload + "from transformers import PretrainedConfig\n\n\nclass EvilConfig(PretrainedConfig):\n"
            "    model_type = 'evil_net'\n")
        (dest / "modeling_evil.py").write_text(payload)
    elif kind == "preprocessor":
        config = json.loads((dest / "preprocessor_config.json").read_text())
        config.pop("feature_extractor_type")
        config["auto_map"] = {"AutoFeatureExtractor": "feature_extraction_evil.EvilExtractor"}
        (dest / "preprocessor_config.json").write_text(json.dumps(config))
        (dest / "feature_extraction_evil.py").write_text(payload)
    else:
        raise ValueError(kind)
    return marker


@pytest.mark.parametrize("kind", ["config", "preprocessor"])
def test_load_model_refuses_a_folder_that_needs_its_own_code_without_asking(kind, tmp_path, monkeypatch):
    from instrument_classifier import inference

    marker = _evil_folder(tmp_path / "evil", kind)
    asked = []
    monkeypatch.setattr("builtins.input", lambda *a: asked.append(a) or "y")  # a user who answers yes
    with pytest.raises(ValueError) as err:
        inference.load_model(str(tmp_path / "evil"))
    assert str(tmp_path / "evil") in str(err.value) and "code" in str(err.value)
    assert not asked and not marker.exists()


def _entry_point_argv(entry: str, evil: Path, tmp_path: Path, prepared: Path) -> tuple:
    """``(argv, extra environment)`` of one entry point loading the model folder ``evil``."""
    cli = str(Path(sys.executable).parent / "instrument-classifier")
    clip = write_audio_case(tmp_path / "clip.wav", "reference")
    if entry == "predict":
        return [cli, "predict", "--model", str(evil), str(clip), "--no-progress"], {}
    if entry == "evaluate":
        return [cli, "evaluate", "--model", str(evil), "--dataset", str(prepared), "--output",
                str(tmp_path / "report")], {}
    if entry == "demo":  # the Space's loader, as on the Space: the model comes from MODEL_ID
        return [cli, "demo", "--port", "7999"], {"MODEL_ID": str(evil)}
    if entry == "train.py":
        return [sys.executable, str(Path(__file__).resolve().parents[1] / "train.py"),
                *_fine_tune_args(evil, prepared, tmp_path / "run")], {}
    raise ValueError(entry)


@pytest.mark.parametrize("stdin", ["echo y", "closed"])
@pytest.mark.parametrize("kind", ["config", "preprocessor"])
@pytest.mark.parametrize("entry", ["predict", "evaluate", "demo", "train.py"])
def test_entry_points_refuse_a_folder_that_needs_its_own_code(entry, kind, stdin, prepared, tmp_path):
    """As users run them, from a shell, answering "y" to any question, or with no terminal at all."""
    import os
    import subprocess

    evil = tmp_path / "EVIL"
    marker = _evil_folder(evil, kind)
    argv, env = _entry_point_argv(entry, evil, tmp_path, prepared)
    script = 'echo y | "$@"' if stdin == "echo y" else '"$@" <&-'
    proc = subprocess.run(["bash", "-c", script, "_", *argv], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1",
                                                     HF_MODULES_CACHE=str(tmp_path / "modules"), **env))
    output = proc.stdout + proc.stderr
    assert not marker.exists(), f"the folder's code ran:\n{output[-3000:]}"
    assert proc.returncode != 0
    assert "[y/N]" not in output and "Traceback" not in output, output[-3000:]
    assert str(evil) in proc.stderr and "code" in proc.stderr, proc.stderr[-3000:]


# -- push-model: nothing outside the model folder ----------------------------------------------------------

def test_push_model_never_uploads_what_a_link_points_to_outside_the_folder(model_dir, tmp_path, monkeypatch, capsys):
    """A link ``notes.txt -> /some/secret`` in the model folder: refused, nothing staged or sent.

    The Hub is mocked at ``HfApi`` (``test_hub.HubRecorder``: records the staged files, sends nothing).
    """
    from test_hub import HubRecorder

    from instrument_classifier import cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recorder = HubRecorder(monkeypatch)
    secret = tmp_path / "secret" / "credentials"
    secret.parent.mkdir()
    secret.write_text("token=do-not-upload\n")
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    (folder / "card-copy.md").symlink_to(folder / "config.json")  # inside the folder: harmless
    (folder / "notes.txt").symlink_to(secret)

    code = cli.main(["push-model", "--repo-id", "someone/model", "--model", str(folder)])
    err = capsys.readouterr().err
    assert code != 0 and "notes.txt" in err and "outside" in err, err
    assert recorder.named("upload_folder") == [] and recorder.named("create_repo") == []

    (folder / "notes.txt").unlink()  # without the outside link the folder uploads, the inside link as a copy
    assert cli.main(["push-model", "--repo-id", "someone/model", "--model", str(folder)]) == 0
    (upload,) = recorder.named("upload_folder")
    assert "card-copy.md" in upload[2]["files"] and "notes.txt" not in upload[2]["files"]


# -- the Space's limits are numbers --------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["--max-duration nan", "MAX_DURATION_S=nan", "--max-upload-mb inf",
                                 "MAX_UPLOAD_MB=-inf"])
def test_demo_refuses_a_limit_that_is_not_a_finite_number(how, tmp_path):
    """``nan`` compares false with everything, so ``duration > nan`` never refused anything: no limit at all.

    Before, the demo started serving without a limit (here: until the timeout); now it stops at once.
    """
    import os
    import subprocess

    from local_server import free_port

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    args = []
    if how.startswith("--"):
        args = how.split()
    else:
        key, value = how.split("=")
        env[key] = value
    cli = str(Path(sys.executable).parent / "instrument-classifier")
    try:
        proc = subprocess.run([cli, "demo", "--port", str(free_port()), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{how}: the demo started serving with a limit that limits nothing")
    name = how.split()[0] if how.startswith("--") else how.split("=")[0]
    assert proc.returncode == 2 and name in proc.stderr and "finite" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("field", ["max_duration_s", "max_upload_mb"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -1.0])
def test_app_limits_must_be_positive_finite_numbers(field, value, monkeypatch):
    from instrument_classifier import space_app

    with pytest.raises(ValueError, match=field):
        space_app.AppLimits(**{field: value})
    env = {"max_duration_s": "MAX_DURATION_S", "max_upload_mb": "MAX_UPLOAD_MB"}[field]
    monkeypatch.setenv(env, str(value))
    with pytest.raises(ValueError, match=env):
        space_app.AppLimits.from_env()


# -- decompression bombs -------------------------------------------------------------------------------------
#
# A few KB of FLAC or Ogg Vorbis can declare 8 channels at 655 kHz, or 255 channels at 192 kHz: blocks sized in
# seconds then hold gigabytes of decoded samples, and the Space spent minutes of CPU on a "10-minute" file.

def _bomb(path: Path, channels: int, rate: int, seconds: float) -> Path:
    """A compressed file of silence with a 440-Hz tone at 0.5 in channel 0 (downmixed: 0.5 / channels)."""
    fmt, subtype = ("OGG", "VORBIS") if path.suffix == ".ogg" else ("FLAC", "PCM_16")
    n = rate // 10  # 0.1 s: 44 whole periods of 440 Hz
    block = np.zeros((n, channels), dtype=np.float32)
    block[:, 0] = 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(n) / rate)
    with sf.SoundFile(path, "w", samplerate=rate, channels=channels, format=fmt, subtype=subtype) as f:
        for _ in range(int(round(seconds * 10))):
            f.write(block)
    return path


# VmHWM: this process's own peak resident memory (ru_maxrss would include pytest's, inherited at fork)
BOMB_PROBE = """
import re, sys
import numpy as np
from instrument_classifier.audio import load_audio, stream_audio
if sys.argv[2] == "stream_audio":
    count, power = 0, 0.0
    for block in stream_audio(sys.argv[1], block_seconds=60.0):  # predict and the Space read 30-s blocks
        count += len(block)
        power += float(np.square(block, dtype=np.float64).sum())
else:
    audio, _ = load_audio(sys.argv[1])  # as prepare reads recordings
    count, power = len(audio), float(np.square(audio, dtype=np.float64).sum())
hwm_kib = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(count, power / count, hwm_kib / 1024)
"""


@pytest.fixture(scope="module")
def flac_bomb(tmp_path_factory) -> Path:
    """2.9 MB of FLAC: 20 s of 8 channels at 655.35 kHz, 105 M samples (419 MB as float32)."""
    return _bomb(tmp_path_factory.mktemp("bomb") / "bomb.flac", channels=8, rate=655350, seconds=20.0)


@pytest.mark.parametrize("reader", ["stream_audio", "load_audio"])
def test_many_channels_at_a_high_rate_are_read_in_bounded_memory(reader, flac_bomb):
    """Blocks are sized in samples (frames x channels), not seconds: memory does not follow the header.

    Before, one block of this file held its 105 M samples at once (peak RSS about 500 MB; a 12-s Ogg of 255
    channels at 192 kHz: 2.3 GB); now a block holds a few million samples whatever the channel count and rate.
    """
    import subprocess

    proc = subprocess.run([sys.executable, "-c", BOMB_PROBE, str(flac_bomb), reader], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    count, power, peak_mib = proc.stdout.split()
    assert int(count) == 20 * SR  # every frame, downmixed and resampled to 44.1 kHz
    assert float(power) == pytest.approx((0.5 / 8) ** 2 / 2, rel=0.01)  # the tone of channel 0, downmixed
    assert float(peak_mib) < 250, f"peak RSS {float(peak_mib):.0f} MiB: blocks follow the header"


@pytest.mark.parametrize("shape", ["flac_8ch_655khz", "ogg_255ch_192khz"])
def test_space_refuses_too_much_decoding_from_the_header(shape, model_dir, tmp_path):
    """Within the duration and size limits, but more samples to decode than the limit allows: refused at once.

    The limit is ``max_duration_s`` of stereo at 192 kHz (384 000 samples per second: 230 M for the default
    10 minutes); with ``max_duration_s=60``, 23 M. Before, the Space decoded whatever the header announced.
    """
    import time

    import gradio as gr

    from instrument_classifier import space_app

    if shape == "flac_8ch_655khz":  # 6 s (under the 60-s limit): 31 M samples
        path = _bomb(tmp_path / "bomb.flac", channels=8, rate=655350, seconds=6.0)
    else:  # 0.5 s: 24.5 M samples from 10 KB
        path = _bomb(tmp_path / "bomb.ogg", channels=255, rate=192000, seconds=0.5)
    limits = space_app.AppLimits(max_upload_mb=1.0, max_duration_s=60.0)
    demo = space_app.build_demo(models=[str(model_dir)], limits=limits, examples_dir=None)
    classify = next(f.fn for f in demo.fns.values() if f.api_name == "classify")
    started = time.perf_counter()
    with pytest.raises(gr.Error) as err:
        classify(str(path), None)
    message = err.value.message
    assert path.name in message and "channels" in message and "Hz" in message, message
    assert str(tmp_path) not in message  # no server path
    assert time.perf_counter() - started < 2  # from the header, nothing decoded
