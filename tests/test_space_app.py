"""The Space app, served for real on 127.0.0.1: gradio_client API calls and a headless Chromium session.

One server (module-scoped) with the bundled models serves every test here; rendered MusicNet test
excerpts (``rendered_corpus``) are the audio. The browser is Debian's Chromium driven by Playwright
(never a downloaded browser); the screenshot lands in ``tests/artifacts/`` (gitignored).
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from instrument_classifier.data.render import read_label_rows  # noqa: E402
from instrument_classifier.data.taxonomy import get_taxonomy  # noqa: E402
from instrument_classifier import space_app  # noqa: E402
from local_server import free_port, serve_app  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic",
                 # a synthetic microphone (Chromium's test tone), granted without a permission prompt
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
LIMITS = space_app.AppLimits(max_upload_mb=2.0, max_duration_s=30.0)


def _models() -> dict:
    override = os.environ.get("SPACE_TEST_MODEL")  # development only: a train.py output folder
    if override:
        return {"Transformer": override}
    models = space_app.bundled_models()
    if not models:
        pytest.fail(f"no bundled models in {space_app.BUNDLED_DIR}; run `make models`")
    return models


@pytest.fixture(scope="module")
def server():
    """``(url, demo)``: the app launched in this process on a free local port; closed after the module."""
    demo = space_app.build_demo(models=_models(), limits=LIMITS, examples_dir=REPO_ROOT / "space" / "examples")
    with serve_app(demo, LIMITS) as served:
        yield served


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[0], verbose=False, analytics_enabled=False)


def _true_labels(corpus: Path, split: str, rid: str, taxonomy: str) -> set:
    tax = get_taxonomy(taxonomy)
    return {tax.label_of(r.instrument) for r in read_label_rows(corpus / f"{split}_labels" / f"{rid}.csv")}


def _first_config(demo_models: dict):
    """The config of the model the app offers first (a model's, or the bundled ensemble's)."""
    from instrument_classifier.inference import load_model

    return load_model(next(iter(demo_models.values())))[0].config


def _model_taxonomy(demo_models: dict) -> str:
    return _first_config(demo_models).taxonomy


# --------------------------------------------------------------------------- API (gradio_client)


@pytest.mark.parametrize("rid", ["2628", "2106"])
def test_classify_endpoint_finds_the_true_instruments(client, rendered_corpus, rid, tmp_path):
    from gradio_client import handle_file

    wav = rendered_corpus / "test_data" / f"{rid}.wav"
    truth = _true_labels(rendered_corpus, "test", rid, _model_taxonomy(_models()))
    clip, image, table, csv_path, timeline, summary = client.predict(handle_file(str(wav)), api_name="/classify")

    thresholds = dict(zip(timeline["labels"], timeline["thresholds"]))
    detected = {label for label, score in timeline["clip"].items() if score >= thresholds[label]}
    assert truth <= detected, f"{rid}: true {sorted(truth)}, detected {sorted(detected)}, clip {timeline['clip']}"
    # and not by saying yes to everything: the most confident label is a true one, some labels are rejected
    assert max(timeline["clip"], key=timeline["clip"].get) in truth
    assert detected != set(timeline["labels"])
    assert truth <= {s["label"] for s in timeline["segments"]}
    # the Label output carries the same clip scores
    confidences = {c["label"]: c["confidence"] for c in clip["confidences"]}
    for label in truth:
        assert confidences[label] == pytest.approx(timeline["clip"][label], abs=1e-3)
    assert timeline["duration_s"] == pytest.approx(sf.info(wav).duration, abs=0.01)
    # the segments table and the CSV agree; the CSV has a fixed name, never the upload's
    assert table["headers"] == ["start_s", "end_s", "instrument", "score"]
    assert Path(csv_path).name == space_app.CSV_NAME
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["start_s", "end_s", "instrument", "score"]
    assert len(rows) - 1 == len(table["data"]) == len(timeline["segments"]) > 0
    assert {r[2] for r in rows[1:]} >= truth
    assert Path(image).is_file() and Path(image).stat().st_size > 10_000
    assert f"{rid}.wav" in summary and "Detected" in summary


def test_clip_panel_shows_every_detected_instrument(client):
    """The Transformer detects Violin, Contrabass and Cello in the wind sextet example though they rank 7th to 9th of
    the 11 clip scores (low thresholds): the panel showed the top 6 and hid them."""
    from gradio_client import handle_file

    if "Transformer" not in space_app.bundled_models():
        pytest.skip("SPACE_TEST_MODEL serves one model")
    wav = handle_file(str(REPO_ROOT / "space" / "examples" / "beethoven_wind_sextet.ogg"))
    clip, _, table, _, timeline, summary = client.predict(wav, model_name="Transformer", api_name="/classify")
    ranked = sorted(timeline["clip"], key=timeline["clip"].get, reverse=True)
    assert any(ranked.index(label) >= 6 for label in timeline["detected"]), "the case this test is about"
    shown = {c["label"]: c["confidence"] for c in clip["confidences"]}
    assert set(shown) == set(timeline["labels"])
    for label in timeline["detected"]:
        assert shown[label] == pytest.approx(timeline["clip"][label], abs=1e-3) and f"**{label}**" in summary
    # the decision rule: the segments table has exactly the detected instruments
    assert {row[2] for row in table["data"]} == set(timeline["detected"])


def test_every_output_of_the_api_has_a_name(client):
    returns = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/classify"]["returns"]
    names = [r["label"] for r in returns]
    assert names[-1] == "Summary" and not any(name.startswith("value_") for name in names), names


def test_recording_context_is_applied_when_asked_for(client, rendered_corpus):
    """The context checkbox: window scores blended with their neighbours, at the context's thresholds."""
    from gradio_client import handle_file

    from instrument_classifier.context import RecordingContext

    from instrument_classifier.inference import load_model

    # the first offered model that has a tuned context (the default, the musicnn + YAMNet + EfficientAT blend, has
    # none)
    name, config = next((name, config) for name, config in
                        ((name, load_model(folder)[0].config) for name, folder in _models().items())
                        if getattr(config, "context", None))
    wav = handle_file(str(rendered_corpus / "test_data" / "2106.wav"))
    *_, plain, plain_summary = client.predict(wav, name, api_name="/classify")
    *_, blended, summary = client.predict(wav, name, True, api_name="/classify")
    context = RecordingContext.from_config(config)
    assert "context" not in plain and "recording context" not in plain_summary
    assert blended["context"] == context.describe() and f"recording context: {context.describe()}" in summary
    assert blended["thresholds"] == pytest.approx(context.thresholds)
    starts = np.round(np.asarray(plain["window_times_s"]) * plain["frame_rate"])
    expected = context.apply(np.asarray(plain["window_probs"]), None, starts, 256)
    np.testing.assert_allclose(blended["window_probs"], expected, atol=2e-4)
    # a model without a context (the default) says so and classifies without one
    first = next(iter(_models()))
    if not getattr(_first_config(_models()), "context", None):
        *_, timeline, note = client.predict(wav, first, True, api_name="/classify")
        assert "this model has no recording context" in note and "context" not in timeline


def test_classify_endpoint_accepts_stereo_other_rates_and_formats(client, rendered_corpus, tmp_path):
    from gradio_client import handle_file

    audio, sr = sf.read(rendered_corpus / "test_data" / "2628.wav", dtype="float32")
    import soxr

    stereo = np.stack([audio, 0.5 * audio], axis=1)
    path = tmp_path / "stereo 22k.flac"
    sf.write(path, soxr.resample(stereo, sr, 22050), 22050)
    *_, timeline, _ = client.predict(handle_file(str(path)), api_name="/classify")
    assert timeline["duration_s"] == pytest.approx(len(audio) / sr, abs=0.01)
    assert timeline["segments"]


@pytest.mark.parametrize("content,expected", [
    (b"this is a text file, not audio\n", "not a readable audio file"),
    (b"", "empty file"),
    ("zero", "zero-length audio"),
    ("long", "at most 30.0 s"),
])
def test_bad_uploads_get_a_readable_error_and_the_server_keeps_serving(client, tmp_path, rendered_corpus,
                                                                      content, expected):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    path = tmp_path / "my upload.wav"
    if content == "zero":
        sf.write(path, np.zeros(0, dtype=np.float32), 44100)
    elif content == "long":  # 40 s at 8 kHz, 8 bit: small file, over the 30 s limit
        sf.write(path, np.zeros(40 * 8000, dtype=np.float32), 8000, subtype="PCM_U8")
    else:
        path.write_bytes(content)
    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(path)), api_name="/classify")
    message = str(info.value)
    assert expected in message and "my upload.wav" in message
    assert str(tmp_path) not in message and "/gradio/" not in message  # no server-side paths leak
    *_, timeline, _ = client.predict(handle_file(str(rendered_corpus / "test_data" / "2106.wav")),
                                     api_name="/classify")
    assert timeline["segments"]


def test_oversized_upload_is_refused_by_the_server(server, client, tmp_path):
    import httpx
    from gradio_client import handle_file

    path = tmp_path / "big.wav"
    sf.write(path, np.zeros(int(LIMITS.max_upload_bytes / 2) + 44100, dtype=np.float32), 44100, subtype="PCM_16")
    assert path.stat().st_size > LIMITS.max_upload_bytes
    # the server refuses it while streaming the upload (a browser or any HTTP client) ...
    with open(path, "rb") as f:
        response = httpx.post(server[0] + "gradio_api/upload", files={"files": ("big.wav", f, "audio/wav")},
                              timeout=30)
    assert response.status_code == 413 and "maximum allowed size" in response.text
    # ... and gradio_client reads the limit from the app's config and refuses before sending
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        client.predict(handle_file(str(path)), api_name="/classify")


def test_display_names_are_sanitised_and_duration_is_checked_from_the_header(tmp_path, monkeypatch):
    assert space_app.display_name("/tmp/gradio/abc/../../etc/pass<script>wd.wav") == "pass_script_wd.wav"
    assert "/" not in space_app.display_name("a/b/" + "x" * 200 + ".wav")
    path = tmp_path / "forty seconds.wav"
    sf.write(path, np.zeros(40 * 8000, dtype=np.float32), 8000, subtype="PCM_U8")

    def no_decoding(*args, **kwargs):
        raise AssertionError("audio data was decoded")

    monkeypatch.setattr(sf, "read", no_decoding)
    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    with pytest.raises(space_app.UploadRejected, match=r"forty seconds.wav: 40.0 s long; .* at most 30.0 s"):
        space_app.check_upload(path, LIMITS)
    assert space_app.check_upload(path, space_app.AppLimits(max_duration_s=60)) == pytest.approx(40.0)


def test_space_pins_are_the_tested_versions():
    """space/requirements.txt says its pins are the versions the app is tested with: they must be this
    environment's (transformers was pinned at 5.23 while the tests ran 5.25), and so must the Space's Gradio
    (README's sdk_version) and Python."""
    import re
    import sys
    from importlib.metadata import version

    pins = {}
    for line in (REPO_ROOT / "space" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", line)
            assert match, f"space/requirements.txt: {line!r} is not pinned with =="
            pins[match.group(1)] = match.group(2)
    assert {"torch", "transformers", "huggingface_hub", "numpy", "soundfile", "matplotlib"} <= set(pins)
    tested = {name: version(name).split("+")[0] for name in pins}  # torch's local tag: +cpu here, +cuXXX on the Hub
    assert pins == tested
    header = (REPO_ROOT / "space" / "README.md").read_text().split("---")[1]
    assert f"sdk_version: {version('gradio')}" in header
    assert f'python_version: "{sys.version_info.major}.{sys.version_info.minor}"' in header


# --------------------------------------------------------------------------- real browser


@pytest.fixture(scope="module")
def browser():
    import playwright.sync_api as playwright

    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not installed (apt chromium; `make test` installs it)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _upload(page, path: Path) -> None:
    """Upload like a user: into the empty drop zone, after clearing the previous recording if one is shown."""
    field = page.locator("#audio-input input[type=file]")
    if field.count() == 0:
        page.locator("#audio-input button[aria-label='Clear']").first.click()
    field.wait_for(state="attached", timeout=30_000)
    field.set_input_files(str(path))


def test_browser_upload_shows_labels_timeline_then_errors_and_recovers(server, browser, rendered_corpus, tmp_path):
    url, _ = server
    truth = _true_labels(rendered_corpus, "test", "2628", _model_taxonomy(_models()))
    page = browser.new_page(viewport={"width": 1280, "height": 1300})
    try:
        page.goto(url, timeout=30_000)
        page.locator("#audio-input").wait_for(timeout=30_000)
        # the upload itself starts the analysis: a Classify button beside it ran everything a second time
        assert page.get_by_role("button", name="Classify").count() == 0
        t0 = time.perf_counter()
        _upload(page, rendered_corpus / "test_data" / "2628.wav")
        page.locator("#timeline img").wait_for(state="visible", timeout=60_000)
        page.locator("#summary", has_text="2628.wav").wait_for(timeout=30_000)
        elapsed = time.perf_counter() - t0
        summary = page.locator("#summary").inner_text()
        assert "Detected" in summary
        for label in truth:
            assert label in summary
            assert page.locator("#clip-label", has_text=label).count() == 1
        assert page.locator("#segments tbody tr").count() > 0
        box = page.locator("#timeline img").bounding_box()
        assert box and box["width"] > 600 and box["height"] > 150  # a readable figure, not a thumbnail
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "space_result.png"), full_page=True)
        assert elapsed < 60

        bad = tmp_path / "notes.wav"
        bad.write_text("definitely not audio\n")
        _upload(page, bad)
        toast = page.locator(".toast-body", has_text="notes.wav")
        toast.wait_for(timeout=60_000)  # as long as a result may take: a CI run sharing two cores missed 30 s once
        assert "not a readable audio file" in toast.inner_text() and toast.count() == 1
        page.screenshot(path=str(ARTIFACTS / "space_error.png"))
        page.locator(".toast-close").first.click()
        # once the toast is gone (closed, or faded after space_app.ERROR_SECONDS) the reason stays on the page,
        # not bare red "Error" badges on every output
        page.locator("#summary", has_text="Cannot analyse this file").wait_for(timeout=10_000)
        assert "notes.wav: not a readable audio file" in page.locator("#summary").inner_text()
        page.locator(".toast-body").wait_for(state="detached", timeout=10_000)
        assert page.get_by_text("Error", exact=True).count() == 0  # there were 5, one per output

        _upload(page, rendered_corpus / "test_data" / "2106.wav")  # the page still works
        page.locator("#summary", has_text="2106.wav").wait_for(timeout=60_000)
        page.locator("#timeline img").wait_for(state="visible", timeout=30_000)
        second_truth = _true_labels(rendered_corpus, "test", "2106", _model_taxonomy(_models()))
        assert all(label in page.locator("#summary").inner_text() for label in second_truth)

        page.get_by_text("Haydn: String Quartet No 53").click()  # an example clip, one click away
        page.locator("#summary", has_text="haydn_string_quartet_53.ogg").wait_for(timeout=60_000)
    finally:
        page.close()


def test_browser_microphone_recording_is_classified(server, browser):
    url, _ = server
    context = browser.new_context(permissions=["microphone"])
    page = context.new_page()
    try:
        page.goto(url, timeout=30_000)
        page.locator("#audio-input button[aria-label='Record audio']").click()
        page.locator("#audio-input button.record-button").click()
        page.wait_for_timeout(2000)
        page.locator("#audio-input button.stop-button").first.click()
        summary = page.locator("#summary", has_text="Detected")
        summary.wait_for(timeout=60_000)
        assert page.locator(".toast-body").count() == 0, page.locator(".toast-body").all_inner_texts()
        page.locator("#timeline img").wait_for(state="visible", timeout=30_000)
    finally:
        context.close()


# --------------------------------------------------------------------------- the two ways the app is started


def _wait_for_classify(url: str, proc, deadline: float) -> dict:
    from gradio_client import Client

    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.stdout.read()[-2000:]}")
        try:
            return Client(url, verbose=False, analytics_enabled=False).view_api(print_info=False, return_format="dict")
        except Exception:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not come up in time")


def test_demo_command_and_the_staged_space_both_serve_classify(tmp_path):
    """``instrument-classifier demo`` and ``python app.py`` in a folder staged by push-space, as on the Hub."""
    import subprocess
    import sys

    from instrument_classifier import hub

    staged = tmp_path / "space"
    hub.stage_files(hub.space_files(), staged)
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("MODEL_ID", None)
    if os.environ.get("SPACE_TEST_MODEL"):  # development only
        env["MODEL_ID"] = str(Path(os.environ["SPACE_TEST_MODEL"]).resolve())
    demo_port, space_port = free_port(), free_port()
    cli = str(Path(sys.executable).with_name("instrument-classifier"))
    demo_tmp = tmp_path / "demo-tmp"  # where the demo's per-request folder goes: removed when it is killed
    demo_tmp.mkdir()
    procs = [
        subprocess.Popen([cli, "demo", "--port", str(demo_port), "--max-duration", "20"],
                         env={**env, "TMPDIR": str(demo_tmp)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        subprocess.Popen([sys.executable, "app.py"], cwd=staged, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env={**env, "GRADIO_SERVER_NAME": "127.0.0.1",
                                         "GRADIO_SERVER_PORT": str(space_port)}),
    ]
    try:
        deadline = time.time() + 90
        for port, proc in zip((demo_port, space_port), procs):
            api = _wait_for_classify(f"http://127.0.0.1:{port}/", proc, deadline)
            assert "/classify" in api["named_endpoints"]
            params = api["named_endpoints"]["/classify"]["parameters"]
            assert params[0]["component"] == "Audio"
        assert list(demo_tmp.glob("instrument-classifier-space-*"))  # made at start-up
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert procs[0].returncode == 143 and not list(demo_tmp.glob("instrument-classifier-space-*"))
