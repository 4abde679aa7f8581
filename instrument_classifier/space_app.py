"""The Gradio app of the Space, also run locally by ``instrument-classifier demo``.

``space/app.py`` is a thin wrapper around :func:`build_demo` and :func:`launch_kwargs`: the app lives in
the package so that the ``demo`` command (installed package) and the Space (which receives this
package's runtime files next to ``app.py``, see :mod:`instrument_classifier.hub`) run the same code.

Models: the environment variable ``MODEL_ID`` (a Hub id or a local folder) if set, otherwise the
bundled models in ``instrument_classifier/pretrained`` (:data:`BUNDLED_NAMES`, the default first: the musicnn +
YAMNet + EfficientAT blend); with more than one model the page shows a selector. All models are loaded at start-up
so a bad model fails loudly there.

Limits (environment variables, defaults in brackets): ``MAX_UPLOAD_MB`` [100] is enforced by
Gradio's server (``max_file_size``) before a file reaches the app; ``MAX_DURATION_S`` [600] is
checked from the file header before any decoding. Unreadable, empty, zero-length or over-long
audio raises :class:`gradio.Error` with a readable message; the app keeps serving.

Upload file names are only ever *displayed* (sanitised); outputs are written under a private
temporary folder with fixed names, never under a path derived from an upload.
"""

from __future__ import annotations

import atexit
import csv
import io
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MultipleLocator

from .atomic_write import write_text
from .audio import AudioError, audio_info, decoded_samples
from .ensemble import CONFIG_NAME
from .hub import DEFAULT_SPACE_DIR
from .inference import load_model, predict_timeline

__all__ = [
    "AppLimits",
    "ModelRegistry",
    "UploadRejected",
    "bundled_models",
    "resolve_models",
    "default_examples_dir",
    "check_upload",
    "render_timeline",
    "build_demo",
    "launch_kwargs",
]

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_DIR = PACKAGE_DIR / "pretrained"
#: bundled folder name -> name shown in the selector (first = default)
BUNDLED_NAMES = {"musicnn-yamnet-efficientat": "musicnn + YAMNet + EfficientAT (most accurate on real recordings)",
                 "musicnn": "musicnn", "yamnet": "YAMNet", "efficientat": "EfficientAT",
                 "ensemble": "CNN + Transformer (fast)", "cnn": "CNN (fastest)", "transformer": "Transformer"}
ENV_MODEL_ID = "MODEL_ID"
OUTPUT_MAX_AGE_S = 3600  # per-request CSV folders older than this are deleted
CSV_NAME = "instrument_segments.csv"
ERROR_SECONDS = 30  # how long an error message stays on the page (it can be closed earlier)
SEGMENT_COLUMNS = ["start_s", "end_s", "instrument", "score"]
#: decoding allowed per second of the duration limit: stereo at 192 kHz (see AppLimits.max_decoded_samples)
MAX_SAMPLES_PER_SECOND = 2 * 192000


@dataclass(frozen=True)
class AppLimits:
    """Upload limits. ``max_upload_mb`` is enforced by Gradio's server, ``max_duration_s`` by the app."""

    max_upload_mb: float = 100.0
    max_duration_s: float = 600.0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)  # Gradio counts MB as MiB

    @property
    def max_decoded_samples(self) -> int:
        """Samples (frames x channels) an upload may decode to: ``max_duration_s`` of stereo at 192 kHz.

        A few KB of FLAC or Ogg can declare 8 channels at 655 kHz or 255 at 192 kHz within the duration limit;
        the decoding work (CPU time) follows the samples, not the seconds.
        """
        return int(self.max_duration_s * MAX_SAMPLES_PER_SECOND)

    def __post_init__(self):
        for name in ("max_upload_mb", "max_duration_s"):
            parse_limit(name, getattr(self, name))

    @classmethod
    def from_env(cls) -> "AppLimits":
        return cls(max_upload_mb=parse_limit("MAX_UPLOAD_MB", os.environ.get("MAX_UPLOAD_MB", cls.max_upload_mb)),
                   max_duration_s=parse_limit("MAX_DURATION_S", os.environ.get("MAX_DURATION_S", cls.max_duration_s)))


def parse_limit(name: str, value) -> float:
    """``value`` (a number or its text) as a limit: positive and finite, else ``ValueError`` naming ``name``.

    ``nan`` compares false with everything, so ``duration > nan`` would let every file through: no limit.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a positive, finite number, got {value!r}")
    return number


class UploadRejected(ValueError):
    """An upload the app will not analyse; the message is meant for the user."""


# --------------------------------------------------------------------------- models


def bundled_models() -> Dict[str, str]:
    """``{display name: folder}`` of the bundled models that exist (the default, the blend of the three front ends
    pretrained on real recordings, first)."""
    return {name: str(BUNDLED_DIR / key) for key, name in BUNDLED_NAMES.items()
            if (BUNDLED_DIR / key / "config.json").is_file() or (BUNDLED_DIR / key / CONFIG_NAME).is_file()}


def _model_name(name_or_path: str) -> str:
    path = Path(name_or_path)
    for key, name in BUNDLED_NAMES.items():
        if path.exists() and path.resolve() == (BUNDLED_DIR / key).resolve():
            return name
    return path.name if path.exists() else name_or_path


def resolve_models(models: Optional[Sequence[str] | Mapping[str, str]] = None) -> Dict[str, str]:
    """Models the app offers, ``{display name: Hub id or folder}``.

    ``models`` given: those (a mapping keeps its names; folders are named after themselves, the
    bundled ones "CNN"/"Transformer"). Otherwise ``$MODEL_ID`` if set, else the bundled models.
    """
    if models is None:
        env = os.environ.get(ENV_MODEL_ID, "").strip()
        models = [env] if env else bundled_models()
    if isinstance(models, Mapping):
        resolved = {str(k): str(v) for k, v in models.items()}
    else:
        resolved = {}
        for m in models:
            resolved.setdefault(_model_name(str(m)), str(m))
    if not resolved:
        raise RuntimeError(
            f"no model to serve: set {ENV_MODEL_ID} to a Hub id or a model folder, pass --model, "
            f"or create the bundled models in {BUNDLED_DIR} (`make models`)"
        )
    return resolved


class ModelRegistry:
    """Loads each offered model once (at start-up) through :func:`instrument_classifier.inference.load_model`."""

    def __init__(self, choices: Mapping[str, str], device="auto"):
        self.choices = dict(choices)
        self._models = {}
        for name, where in self.choices.items():
            try:
                self._models[name] = load_model(where, device=device)
            except Exception as exc:
                raise RuntimeError(f"could not load model {name!r} from {where}: {exc}") from exc
            logger.info("loaded model %s from %s", name, where)
        self._lock = threading.Lock()

    @property
    def names(self) -> List[str]:
        return list(self.choices)

    def get(self, name: Optional[str]):
        """``(model, feature_extractor)``; unknown or empty names fall back to the first model."""
        return self._models.get(name or "", self._models[self.names[0]])

    def describe(self) -> str:
        """Markdown: each model's type, and the label set of each taxonomy used."""
        parts, taxonomies = [], {}
        for name in self.names:
            config = self.get(name)[0].config
            taxonomy = getattr(config, "taxonomy", "?")
            parts.append(f"**{name}** (`{config.model_type}`, taxonomy `{taxonomy}`)")
            taxonomies[taxonomy] = ", ".join(config.id2label[i] for i in sorted(config.id2label))
        labels = " ".join(f"`{t}` labels: {v}." for t, v in taxonomies.items())
        return "**Models.** " + ", ".join(parts) + ". " + labels


# --------------------------------------------------------------------------- input checks


_SAFE_NAME = re.compile(r"[^A-Za-z0-9 ._()+-]+")


def display_name(path: str | os.PathLike) -> str:
    """The upload's base name, reduced to harmless characters, for messages only (never for paths)."""
    name = _SAFE_NAME.sub("_", Path(str(path)).name).strip() or "upload"
    return name if len(name) <= 80 else name[:60] + "..." + name[-17:]


def check_upload(path: str | os.PathLike, limits: AppLimits, name: Optional[str] = None) -> float:
    """Check an uploaded file from its header only; returns its duration in seconds.

    Raises
    ------
    UploadRejected
        Too large, empty, not a readable audio file, zero-length, longer than ``limits.max_duration_s``, or more
        samples to decode than ``limits.max_decoded_samples``.
    """
    path = os.fspath(path)
    name = name or display_name(path)
    try:
        size = os.path.getsize(path)
    except OSError:
        raise UploadRejected(f"{name}: the upload was not received; please try again") from None
    if size > limits.max_upload_bytes:
        raise UploadRejected(f"{name}: {size / 2**20:.1f} MB is over this demo's {limits.max_upload_mb:g} MB limit")
    try:
        info = audio_info(path, max_samples=limits.max_decoded_samples)  # a header without a length is counted
    except AudioError as exc:
        raise UploadRejected(_public(str(exc), path, name)) from None
    duration = info.frames / float(info.samplerate)
    if duration > limits.max_duration_s:
        raise UploadRejected(
            f"{name}: {_clock(duration)} long; this demo analyses at most {_clock(limits.max_duration_s)}. "
            f"Trim the file, or run `instrument-classifier predict` locally (no limit)."
        )
    samples = decoded_samples(info)
    if samples > limits.max_decoded_samples:  # from the header: nothing is decoded
        raise UploadRejected(
            f"{name}: {info.channels} channels at {info.samplerate} Hz for {_clock(duration)} are "
            f"{samples / 1e6:.0f} million samples to decode; this demo decodes at most "
            f"{limits.max_decoded_samples / 1e6:.0f} million ({_clock(limits.max_duration_s)} of stereo at 192 kHz). "
            "Downmix or resample the file, or run `instrument-classifier predict` locally (no limit)."
        )
    return duration


def _public(message: str, path: str, name: str) -> str:
    """An error message with the server-side upload path replaced by the displayed name."""
    message = message.replace(path, name)
    return message.replace(os.path.dirname(path), "")


def _clock(seconds: float) -> str:
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec:02d} s" if minutes else f"{seconds:.1f} s"


# --------------------------------------------------------------------------- timeline figure


def _pool_max(x: np.ndarray, max_points: int) -> tuple[np.ndarray, int]:
    """Max-pool the time axis of ``x`` (T, L) down to at most ``max_points`` rows."""
    step = max(1, int(np.ceil(len(x) / max_points)))
    if step == 1:
        return x, 1
    pad = (-len(x)) % step
    padded = np.pad(x, ((0, pad), (0, 0)), constant_values=0.0)
    return padded.reshape(-1, step, x.shape[1]).max(axis=1), step


def render_timeline(timeline, thresholds: Optional[Sequence[float]] = None, min_score: float = 0.1,
                    width_px: int = 1200) -> np.ndarray:
    """Piano-roll of instrument activity as an RGB image ``(H, W, 3)`` uint8.

    One row per instrument whose clip score reaches ``min_score`` or that is detected (at least three rows;
    detected ones in bold): coloured bars are the detected segments, the dark line is the frame probability
    (row bottom = 0, row top = 1) and the dotted line the label's threshold. Rows of the other
    instruments are left out and counted.
    """
    labels = list(timeline.labels)
    probs = np.asarray(timeline.frame_probs, dtype=np.float32).reshape(-1, len(labels))
    duration = float(timeline.duration_s)
    detected = set(timeline.detected)  # the labels with segments too (inference's decision rule)
    scores = np.array([float(timeline.clip.get(label, 0.0)) for label in labels])
    shown = [i for i, label in enumerate(labels) if scores[i] >= min_score or label in detected]
    for i in np.argsort(-scores):
        if len(shown) >= min(3, len(labels)):
            break
        if i not in shown:
            shown.append(int(i))
    shown = sorted(shown)
    hidden = len(labels) - len(shown)

    dpi = 100
    height_in = 0.55 * len(shown) + 1.25
    fig = Figure(figsize=(width_px / dpi, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps["tab10"]
    colors = {i: cmap(i % 10) for i in range(len(labels))}

    pooled, step = _pool_max(probs, max_points=1500)
    frame_rate = float(timeline.frame_rate)
    times = (np.arange(len(pooled)) * step + step / 2) / frame_rate
    by_label = {}
    for s in timeline.segments:
        by_label.setdefault(s.label, []).append(s)
    for row, i in enumerate(reversed(shown)):  # first label on top
        label = labels[i]
        base = row - 0.42
        for s in by_label.get(label, []):
            ax.broken_barh([(s.start_s, max(s.end_s - s.start_s, 1e-3))], (row - 0.3, 0.6),
                           facecolors=colors[i], edgecolors="none", alpha=0.75)
        # probability drawn over the bars so both stay visible: row bottom = 0, row top = 1
        ax.fill_between(times, base, base + 0.84 * pooled[:, i], color=colors[i], alpha=0.18, linewidth=0,
                        step="mid")
        ax.step(times, base + 0.84 * pooled[:, i], where="mid", color="#222222", linewidth=0.7, alpha=0.7)
        if thresholds is not None:
            ax.hlines(base + 0.84 * float(thresholds[i]), 0, duration, colors=colors[i], linestyles=":",
                      linewidth=0.8, alpha=0.6)
    ax.set_yticks(range(len(shown)))
    tick_labels = [f"{labels[i]}  {scores[i]:.0%}" for i in reversed(shown)]
    ax.set_yticklabels(tick_labels, fontsize=11)
    for tick, i in zip(ax.get_yticklabels(), reversed(shown)):
        tick.set_fontweight("bold" if labels[i] in detected else "normal")
        tick.set_color("#111111" if labels[i] in detected else "#888888")
    ax.set_ylim(-0.6, len(shown) - 0.4)
    ax.set_xlim(0, max(duration, 1e-3))
    note = "bars: detected segments · line: frame probability (dotted: threshold) · %: clip score"
    if hidden:
        note += f" · {hidden} instrument{'s' if hidden > 1 else ''} below {min_score:.0%} not shown"
    step_s = next((c for c in (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 1800) if duration / c <= 12), 3600)
    ax.xaxis.set_major_locator(MultipleLocator(step_s))
    if duration >= 60:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{int(x // 60)}:{int(x % 60):02d}"))
        ax.set_xlabel(f"time (min:s)    —    {note}", fontsize=9, color="#555555")
    else:
        ax.set_xlabel(f"time (s)    —    {note}", fontsize=9, color="#555555")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    return image


# --------------------------------------------------------------------------- outputs


def _segments_rows(timeline) -> List[List]:
    return [[round(float(s.start_s), 3), round(float(s.end_s), 3), s.label, round(float(s.score), 4)]
            for s in timeline.segments]


class _OutputDir:
    """Private temporary folder for per-request files; old request folders are pruned."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="instrument-classifier-space-"))
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)

    def new(self) -> Path:
        now = time.time()
        for child in self.root.iterdir():
            try:
                if now - child.stat().st_mtime > OUTPUT_MAX_AGE_S:
                    shutil.rmtree(child, ignore_errors=True)
            except OSError:
                pass
        folder = self.root / uuid.uuid4().hex
        folder.mkdir()
        return folder


def _write_csv(path: Path, rows: List[List]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SEGMENT_COLUMNS)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def _summary(timeline, model_name: str, name: str) -> str:
    detected = sorted(((label, timeline.clip[label]) for label in timeline.detected), key=lambda kv: -kv[1])
    what = ", ".join(f"**{label}** ({score:.0%})" for label, score in detected) or "no instrument above its threshold"
    context = f" · recording context: {timeline.context}" if timeline.context else ""
    return f"**{name}** · {_clock(timeline.duration_s)} · model {model_name}{context}\n\nDetected: {what}"


# --------------------------------------------------------------------------- the app


INTRO = """\
# Which instruments play, and when?

Upload a recording (or record with the microphone) and the model marks, over time, which instruments
play; the results appear as soon as the recording is there. Any format libsndfile reads (wav, flac, ogg, mp3,
aiff, ...), any sample rate, mono or stereo; up to {max_mb:g} MB and {max_dur}. {about_models}
"""

BUNDLED_NOTE = (
    "The default model puts heads trained on renditions of MusicNet scores (recorded orchestral samples and "
    "General MIDI libraries) on three networks pretrained on real recordings, musicnn, YAMNet and EfficientAT. On "
    "recordings of "
    "real musicians it finds piano, violin, clarinet and flute well and seldom reports viola, cello, double "
    "bass, horn, oboe, bassoon or harpsichord. The faster CNN and Transformer hear real playing much worse. "
    "Each model card gives its figures."
)


CSS = """
#timeline img { object-fit: contain; }
.gradio-container { max-width: 1280px !important; }
"""


def default_examples_dir() -> Optional[Path]:
    """The Space's example clips: ``space/examples`` of the Space's folder (in an installed wheel, or the checkout's),
    if present."""
    folder = DEFAULT_SPACE_DIR / "examples"
    return folder if folder.is_dir() else None


def _examples(examples_dir: Optional[Path]) -> tuple[List[List[str]], List[str]]:
    if examples_dir is None or not Path(examples_dir).is_dir():
        return [], []
    examples_dir = Path(examples_dir)
    table = examples_dir / "examples.csv"
    files, captions = [], []
    if table.is_file():
        with open(table, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if (examples_dir / row["file"]).is_file():
                    files.append([str(examples_dir / row["file"])])
                    captions.append(row.get("caption") or row["file"])
    return files, captions


def build_demo(models: Optional[Sequence[str] | Mapping[str, str]] = None, limits: Optional[AppLimits] = None,
               examples_dir: Optional[str | os.PathLike] = None, device="auto"):
    """Build the Gradio Blocks app.

    Parameters
    ----------
    models : sequence of str, mapping, or None
        Models to offer (see :func:`resolve_models`); ``None``: ``$MODEL_ID`` or the bundled models.
    limits : AppLimits or None
        Upload limits; ``None``: :meth:`AppLimits.from_env`. Pass the same to :func:`launch_kwargs`.
    examples_dir : path or None
        Folder with ``examples.csv`` and the clips it lists; ``None``: :func:`default_examples_dir`.
    device : str or torch.device
        Where the models run (:func:`~instrument_classifier.inference.resolve_device`; ``"auto"``: a GPU if there
        is one).

    Returns
    -------
    gradio.Blocks
        Its ``classify`` endpoint takes ``(audio file, model name, recording context on/off)`` and returns
        ``(clip confidences, timeline image, segments table, segments CSV, timeline JSON, summary)``.
    """
    import gradio as gr  # optional (the [space] extra): needed to build the app, not to import this module

    limits = limits or AppLimits.from_env()
    registry = ModelRegistry(resolve_models(models), device=device)
    outputs_dir = _OutputDir()
    example_files, example_captions = _examples(Path(examples_dir) if examples_dir else default_examples_dir())

    errors = _LastErrors()

    def fail(request, message: str, title: str, print_exception: bool = False):
        """Raise the error the API returns and the page shows as a toast; keep it for :func:`show_error`."""
        errors.put(request, f"**{title}.** {message}")
        return gr.Error(message, title=title, duration=ERROR_SECONDS, print_exception=print_exception)

    def classify(audio_path: Optional[str], model_name: Optional[str] = None, context: bool = False,
                 request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
        if not audio_path:
            return None, None, None, None, None, ""
        name = display_name(audio_path)
        try:
            check_upload(audio_path, limits, name)
        except UploadRejected as exc:
            raise fail(request, str(exc), "Cannot analyse this file") from None
        model_name = model_name if model_name in registry.choices else registry.names[0]
        model, feature_extractor = registry.get(model_name)
        requested, context = bool(context), bool(context) and bool(getattr(model.config, "context", None))
        try:
            timeline = predict_timeline(model, feature_extractor, audio_path, progress=True, context=context)
        except AudioError as exc:
            raise fail(request, _public(str(exc), audio_path, name), "Cannot analyse this file") from None
        except Exception:
            logger.exception("analysis of an upload failed")
            raise fail(request, f"{name}: the analysis failed unexpectedly; the file may be damaged.",
                       "Analysis failed", print_exception=True) from None
        thresholds = list(timeline.thresholds)  # the model's, or its recording context's
        rows = _segments_rows(timeline)
        csv_path = outputs_dir.new() / CSV_NAME
        _write_csv(csv_path, rows)
        image = render_timeline(timeline, thresholds)
        data = timeline.to_dict()
        data.update({
            "model": model_name,
            "labels": list(timeline.labels),
            "thresholds": [float(t) for t in thresholds],
            "frame_rate": float(timeline.frame_rate),
            "window_times_s": np.asarray(timeline.window_times_s).round(3).tolist(),
            "window_probs": np.asarray(timeline.window_probs).round(4).tolist(),
        })
        data = _plain(data)
        clip = {label: float(score) for label, score in timeline.clip.items()}
        table = {"headers": SEGMENT_COLUMNS, "data": rows}
        note = " · this model has no recording context" if requested and not context else ""
        return clip, image, table, str(csv_path), data, _summary(timeline, model_name, name) + note

    def show_error(request: gr.Request = None):
        """After a failed analysis: the outputs emptied and the reason in the summary. Without this, once the toast
        fades only Gradio's bare red "Error" badges are left on the outputs."""
        message = errors.pop(request) or "**The analysis failed.**"
        return None, None, None, None, None, f"{message}\n\nUpload another recording, or try again."

    # Gradio passes the request to a parameter annotated gr.Request; this module's annotations are strings (from
    # __future__ import annotations) that name gr, imported in this function only, so they would not resolve
    classify.__annotations__["request"] = show_error.__annotations__["request"] = gr.Request

    with gr.Blocks(title="Instrument activity", delete_cache=(1800, 3600)) as demo:
        bundled = set(bundled_models().values())
        about = BUNDLED_NOTE if set(registry.choices.values()) <= bundled else (
            "Model: " + ", ".join(f"`{where}`" for where in registry.choices.values()) + ".")
        gr.Markdown(INTRO.format(max_mb=limits.max_upload_mb, max_dur=_clock(limits.max_duration_s),
                                 about_models=about))
        with gr.Row():
            with gr.Column(scale=2):
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Recording",
                                 elem_id="audio-input")
                model_choice = gr.Radio(registry.names, value=registry.names[0], label="Model",
                                        visible=len(registry.names) > 1, elem_id="model-choice")
                context_box = gr.Checkbox(False, label="Recording context: weigh each moment by its neighbours "
                                          "(surer on unfamiliar recordings, vaguer about when)",
                                          elem_id="context-box")
                if example_files:
                    gr.Examples(example_files, inputs=[audio], example_labels=example_captions,
                                label="Examples (10 s, rendered from MusicNet test scores)", cache_examples=False)
            with gr.Column(scale=3):
                # labelled, so that the API names this output "Summary" rather than "value_11"
                summary = gr.Markdown(label="Summary", elem_id="summary")
                # every instrument, not the top few: a detected instrument with a low threshold can score below
                # undetected ones (the Transformer on the wind sextet example detects Violin, 7th of 11)
                clip = gr.Label(label="Clip confidence of every instrument",
                                num_top_classes=None, show_heading=False, elem_id="clip-label")
        timeline_image = gr.Image(label="Instrument activity over time", type="numpy", format="png",
                                  interactive=False, elem_id="timeline", buttons=["download", "fullscreen"])
        with gr.Row():
            segments = gr.Dataframe(headers=SEGMENT_COLUMNS, label="Segments", interactive=False,
                                    elem_id="segments", max_height=320, scale=3)
            csv_file = gr.File(label="Segments CSV", elem_id="segments-csv", scale=1)
        with gr.Accordion("Timeline data (JSON, as returned by the API)", open=False):
            timeline_json = gr.JSON(label="timeline")
        gr.Markdown(registry.describe() + "\n\n" + _api_markdown(), elem_id="about")

        outputs = [clip, timeline_image, segments, csv_file, timeline_json, summary]
        # a recording is classified as soon as it is there, and again when the model or the context changes; a
        # Classify button beside that ran everything twice on the usual upload-then-click
        analysis = gr.on(triggers=[audio.change, model_choice.change, context_box.change], fn=classify,
                         inputs=[audio, model_choice, context_box], outputs=outputs, api_name="classify",
                         concurrency_limit=1)
        # the page's follow-up (API clients get the error itself): a readable message that stays
        analysis.failure(show_error, inputs=None, outputs=outputs, api_visibility="private", queue=False)
    demo.queue(max_size=32)
    return demo


class _LastErrors:
    """The last error message of each browser session (``gr.Request.session_hash``), for the page's failure
    handler; bounded, since API clients fail without ever asking for theirs."""

    def __init__(self, size: int = 256):
        self._messages: "OrderedDict[str, str]" = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def put(self, request, message: str) -> None:
        key = getattr(request, "session_hash", None)
        if key is None:
            return
        with self._lock:
            self._messages[key] = message
            self._messages.move_to_end(key)
            while len(self._messages) > self._size:
                self._messages.popitem(last=False)

    def pop(self, request) -> Optional[str]:
        with self._lock:
            return self._messages.pop(getattr(request, "session_hash", None), None)


def _api_markdown() -> str:
    return (
        "**API.** `from gradio_client import Client, handle_file; "
        "Client(URL).predict(handle_file('song.wav'), api_name='/classify')` returns the clip confidences, "
        "the timeline image, the segments, the CSV, the timeline JSON and this summary."
    )


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def launch_kwargs(limits: Optional[AppLimits] = None) -> dict:
    """Keyword arguments for ``Blocks.launch``: the server-side upload limit, theme and CSS (Gradio 6)."""
    import gradio as gr  # optional, as in build_demo

    limits = limits or AppLimits.from_env()
    return {
        "max_file_size": limits.max_upload_bytes,
        "theme": gr.themes.Soft(),
        "css": CSS,
    }
