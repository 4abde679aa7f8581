"""Which instruments play, and when: windowed inference on recordings of any length.

``predict_timeline`` turns an audio file (streamed) or array into per-frame and per-window
probabilities, a clip-level summary and merged segments ``(start_s, end_s, label, score)``.

How a recording is processed
----------------------------
1. Audio is decoded in blocks (:func:`instrument_classifier.audio.stream_audio`), downmixed and
   resampled to the model rate; arrays are processed in the same blocks. An ensemble's members at one sampling
   rate share one decode (EfficientAT's 32 kHz is decoded apart from musicnn's and YAMNet's 16 kHz): its blocks
   are kept for the other members up to ``DECODED_CACHE_MB`` (~12.7 min at 44.1 kHz), longer recordings are
   decoded again for each member instead.
2. The features are the feature extractor's, streamed: :meth:`InstrumentFeatureExtractor.extract_stream
   <instrument_classifier.modeling.InstrumentFeatureExtractor.extract_stream>` gives exactly the frames of
   ``extract(whole_file)`` block by block, in bounded memory.
3. The ``top_db`` floor is relative to the loudest band of the whole recording, as in training (whose windows
   were cut from whole recordings' features); a floor relative to each block would give a quiet passage of a
   long file different features. So the extractor finds it in a first pass (STFT and bands only, no model) and
   keeps that pass's band power for the second up to its ``FIRST_PASS_CACHE_MB`` (~49 min of audio); longer
   recordings are decoded and transformed again instead.
4. Frames are cut into non-overlapping windows of ``config.window_frames`` frames. The audio is followed by
   digital silence up to the end of the last window, exactly as the dataset builder pads a recording's
   last window: the model only ever saw a recording's end followed by silence. (Aligning the last window
   to the end instead put the cut at the window's very edge, a frame pattern no training window has; some
   models read it as a piano's decay; docs/experiments.md, "A recording's last window".) The padding's frames
   are classified but not returned. Windows are classified ``batch_size`` at a time; each frame takes its
   window's probabilities.
5. With ``context=True`` each window's probabilities are blended with the mean of its neighbours' in the
   recording, as ``config.context`` says (radius, weight, thresholds; tuned on validation by training, see
   :mod:`instrument_classifier.context`); every frame is blended with the mean of the window it came from.
   This trades time resolution for accuracy on unfamiliar recordings.
6. ``clip`` scores (:func:`clip_scores`) are the highest window probability of each label, the mean of the two
   highest from three windows on (one stray window weighs half).
7. The decision rule, one for every output. An instrument is **detected** when its clip score reaches its
   threshold (``config.thresholds``, the context's with ``context=True``, or the caller's):
   :attr:`Timeline.detected`. The thresholds were tuned on window probabilities, so the clip decides
   *whether* an instrument plays and the frames only say *when*: ``segments`` (:func:`detected_segments`)
   belong to detected instruments only. A detected instrument's segments are the runs of frames whose
   probability reaches its threshold, gaps up to ``merge_gap_s`` bridged, runs shorter than
   ``min_duration_s`` dropped; if none is left (its frames reach the threshold only for a moment or, blended
   across an ensemble's members, not at all), its segments are the windows whose probability reaches the
   threshold, which at least one does (a clip score is at most the highest window probability). So a segment
   exists only for a detected instrument, and every detected instrument has at least one segment.
   ``predict`` (table, JSON, CSV), the Space and ``evaluate --clips`` all report ``detected`` and these
   segments; the pipeline's score of a label is its clip score. (Thresholding every frame on its own, as
   before, gave segments of undetected instruments in most clips tested and left detected instruments without
   a segment.)

Memory is one decoded block (for an ensemble: at most ``DECODED_CACHE_MB`` of them), its spectrogram, at most
``FIRST_PASS_CACHE_MB`` of band power, a batch of windows and the outputs (``frame_probs`` is 4 bytes x labels per
frame, ~15 MB per hour); never the whole audio.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
from transformers.utils import logging as hf_logging

from . import modeling  # noqa: F401  (registers our classes: the package's code is used, never remote code)
from .audio import AudioError, audio_info, check_waveform, stream_audio
from .config_checks import check_model_settings
from .context import RecordingContext, blend, neighbour_means
from .ensemble import CONFIG_NAME as ENSEMBLE_CONFIG_NAME
from .ensemble import EnsembleConfig, InstrumentEnsemble, blend_probabilities, frames_on_grid, is_ensemble_folder
from .remote_code import NO_REMOTE_CODE, check_no_remote_code

__all__ = [
    "Segment",
    "Timeline",
    "DEFAULT_MODEL_DIR",
    "load_model",
    "resolve_device",
    "DeviceError",
    "predict_timeline",
    "segments_from_probs",
    "detected_segments",
    "clip_scores",
    "stream_features",
]

#: Where ``load_model(None)`` looks for the bundled default model: the blend of the classifiers on the musicnn,
#: YAMNet and EfficientAT front ends (``pretrained/musicnn``, ``pretrained/yamnet``, ``pretrained/efficientat``), the
#: bundled model that is right most often on recordings of real musicians (its model card; docs/experiments.md). The
#: MFCC CNN (``pretrained/cnn``) and the CNN + Transformer blend (``pretrained/ensemble``) are the fast choices.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "pretrained" / "musicnn-yamnet-efficientat"
#: Seconds of audio decoded and featurised at a time.
BLOCK_SECONDS = 30.0
#: An ensemble's decoded (resampled, mono) audio is kept for its other members up to this size: recordings up to
#: ~12.7 min at 44.1 kHz are decoded once for all members; longer ones once per member, in bounded memory.
DECODED_CACHE_MB = 128
_UNSAFE_WEIGHTS = ("pytorch_model.bin", ".bin", ".pth", ".pt", ".ckpt", ".pkl")

AudioInput = Union[str, os.PathLike, np.ndarray]


# -- results -------------------------------------------------------------------------------------------

@dataclass
class Segment:
    """An instrument sounding from ``start_s`` to ``end_s`` (seconds); ``score`` is its mean probability."""

    start_s: float
    end_s: float
    label: str
    score: float


@dataclass
class Timeline:
    """Probabilities over time for one recording (see the module docstring for how they are made)."""

    labels: List[str]
    duration_s: float
    frame_rate: float
    frame_probs: np.ndarray  # (n_frames, L)
    window_times_s: np.ndarray  # (n_windows,) start time of each window
    window_probs: np.ndarray  # (n_windows, L)
    clip: dict  # label -> clip score (see clip_scores)
    segments: List[Segment] = field(default_factory=list)
    context: Optional[str] = None  # the recording context applied, described ("the whole recording, weight 1")
    thresholds: List[float] = field(default_factory=list)  # per label: the decision thresholds applied

    @property
    def detected(self) -> List[str]:
        """The instruments detected in the clip: those whose clip score reaches their threshold."""
        return [label for label, t in zip(self.labels, self.thresholds) if self.clip[label] >= t]

    def to_dict(self) -> dict:
        """JSON-ready summary: clip scores, the detected instruments and the thresholds that decided them, segments,
        duration (and the recording context, if applied)."""
        summary = {
            "clip": {label: round(float(score), 4) for label, score in self.clip.items()},
            "detected": self.detected,
            "thresholds": {label: round(float(t), 4) for label, t in zip(self.labels, self.thresholds)},
            "segments": [
                {"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3), "label": s.label,
                 "score": round(s.score, 4)}
                for s in self.segments
            ],
            "duration_s": round(float(self.duration_s), 3),
        }
        if self.context is not None:
            summary["context"] = self.context
        return summary


# -- loading -------------------------------------------------------------------------------------------

def load_model(name_or_path: Optional[Union[str, os.PathLike]] = None, device: Union[str, torch.device] = "auto",
               verbose: Optional[bool] = None):
    """Load a classifier and its feature extractor (safetensors weights only; nothing is unpickled).

    Parameters
    ----------
    name_or_path : str or path-like, optional
        A model folder (``config.json``, ``model.safetensors``, ``preprocessor_config.json``) or a Hub
        repo id. ``None`` loads the bundled default, ``instrument_classifier/pretrained/musicnn-yamnet-efficientat``
        (an ensemble of linear heads on the musicnn, YAMNet and EfficientAT front ends).
    device : str or torch.device
        Where to run the model: ``"auto"`` (default: a CUDA GPU if there is one, else Apple's MPS, else the CPU),
        ``"cuda"`` (or ``"cuda:N"``), ``"mps"`` or ``"cpu"``; see :func:`resolve_device`. A device that is not
        there raises :class:`DeviceError`.
    verbose : bool, optional
        Show transformers' "Loading weights" progress bars (Hub download bars are shown either way). Default:
        as the enclosing ``load_model`` call (an ensemble's members), else ``False``.

    Returns
    -------
    model : InstrumentMusicnnForAudioClassification, InstrumentCNNForAudioClassification, ... or InstrumentEnsemble
        In eval mode. A folder with ``ensemble_config.json`` loads as an
        :class:`~instrument_classifier.ensemble.InstrumentEnsemble` of the models it lists.
    feature_extractor : InstrumentFeatureExtractor or None
        ``None`` for an ensemble: each member brings its own.
    """

    if name_or_path is None:
        if not is_ensemble_folder(DEFAULT_MODEL_DIR) and not (DEFAULT_MODEL_DIR / "config.json").is_file():
            raise FileNotFoundError(
                f"no bundled model at {DEFAULT_MODEL_DIR}. Build the default models with `make models` "
                "(renders the corpus, trains and copies them there), or pass a trained model folder "
                "(train.py --output_dir) or a Hub repo id."
            )
        name_or_path = DEFAULT_MODEL_DIR
    source = bundled_folder(str(name_or_path))
    device = resolve_device(device)
    verbose = _VERBOSE_LOADING.get() if verbose is None else bool(verbose)
    if os.path.isdir(source) and is_ensemble_folder(source):  # members with their own feature extractors
        token = _VERBOSE_LOADING.set(verbose)  # the members' load_model calls inherit it
        try:
            return _load_ensemble(Path(source), device).eval(), None
        finally:
            _VERBOSE_LOADING.reset(token)
    if os.path.isfile(source):
        raise ValueError(f"{source}: pass the model folder, not a file (it holds config.json and model.safetensors)")
    if os.path.isdir(source):
        _check_local_folder(Path(source))
        check_no_remote_code(source)  # before transformers could ask "run the folder's code? [y/N]"
    elif source.lower().endswith(_UNSAFE_WEIGHTS):
        raise ValueError(f"{source}: pickled weights are refused; load a folder with model.safetensors")
    else:
        require_hub_id(source)
    try:
        with quiet_weight_loading(not verbose):
            model = AutoModelForAudioClassification.from_pretrained(source, use_safetensors=True, **NO_REMOTE_CODE)
    except OSError as exc:  # the Hub's words ("couldn't connect", "not a valid model identifier") come after ours
        raise OSError(f"{source}: no such model folder here, and it could not be loaded as a Hub repo id "
                      f"({str(exc).splitlines()[0][:300]})") from None
    try:
        feature_extractor = AutoFeatureExtractor.from_pretrained(source, **NO_REMOTE_CODE)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{source}: no usable preprocessor_config.json next to the model ({exc})") from None
    if getattr(model.config, "taxonomy", None) is None or not hasattr(model.config, "window_frames"):
        raise ValueError(f"{source}: not an instrument-classifier model (its config has no taxonomy/window_frames)")
    _check_compatible(model.config, feature_extractor, source)
    check_model_settings(model.config, feature_extractor, source)  # a broken field named, not a MemoryError later
    return model.to(device).eval(), feature_extractor


def bundled_model_names() -> List[str]:
    """The model folders bundled with the package (``instrument_classifier/pretrained/<name>``)."""
    return sorted(p.name for p in DEFAULT_MODEL_DIR.parent.iterdir()
                  if (p / "config.json").is_file() or is_ensemble_folder(p))


def bundled_folder(source: str) -> str:
    """``source``, or the bundled folder it names when it is no path here: ``cnn``, ``pretrained/cnn`` or
    ``instrument_classifier/pretrained/cnn`` (as the README calls them) for the installed package's
    ``pretrained/cnn``, from any working directory."""
    if os.path.exists(source):
        return source
    name = source
    for prefix in ("instrument_classifier/pretrained/", "pretrained/"):
        name = name.removeprefix(prefix)
    if "/" not in name and name in bundled_model_names():
        return str(DEFAULT_MODEL_DIR.parent / name)
    return source


def require_hub_id(source: str) -> None:
    """Raise ``FileNotFoundError`` for a ``source`` that is no folder here and cannot be a Hub repo id
    (``owner/name``): a local path that does not exist is reported as such, not as a failed download."""
    if source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise FileNotFoundError(f"{source}: no such model folder (not found here, and not a Hub repo id "
                                f"owner/name); the bundled models: {', '.join(bundled_model_names())}")


def _load_ensemble(folder: Path, device: torch.device) -> InstrumentEnsemble:
    """The ensemble of ``folder``: each member (a path relative to the folder, or a Hub id) loaded by
    :func:`load_model`, with the same checks as any model."""
    config = EnsembleConfig.load(folder)
    members = []
    for member in config.members:
        local = (folder / member).resolve()
        where = str(local) if local.exists() or member.startswith((".", "/")) else member  # else a Hub id
        where_listed = folder / ENSEMBLE_CONFIG_NAME
        if is_ensemble_folder(where):
            raise ValueError(f"{where_listed}: member {member} is an ensemble itself; list its models")
        try:
            members.append(load_model(where, device=device))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{where_listed}: member {member!r} could not be loaded: {exc}") from None
    return InstrumentEnsemble(config, members, source=str(folder))


#: what ``--device`` accepts (``cuda:N`` too)
DEVICES = ("auto", "cuda", "mps", "cpu")


class DeviceError(ValueError):
    """A device that is not available here; the message says why and what to do."""


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """The torch device for ``device``: ``"auto"`` (or ``None``) picks a CUDA GPU if torch sees one, else Apple's
    MPS, else the CPU; ``"cuda"``, ``"cuda:N"``, ``"mps"`` and ``"cpu"`` are checked to be there.

    Raises
    ------
    DeviceError
        CUDA or MPS asked for and not available (a CPU-only torch build, no driver, no such GPU), or an unknown name.
    """
    if isinstance(device, torch.device):
        device = str(device)
    name = "auto" if device is None else str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise DeviceError(f"device {name!r}: CUDA is not available (torch {torch.__version__} is {build}, or no "
                              "GPU/driver is visible); install the CUDA build of torch "
                              "(https://pytorch.org/get-started/locally/), or use --device cpu / auto")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise DeviceError(f"device {name!r}: no such GPU (torch sees {torch.cuda.device_count()})")
        return torch.device(name)
    if name == "mps":
        if not _mps_available():
            raise DeviceError("device 'mps': Apple's Metal (MPS) backend is not available on this machine; "
                              "use --device cpu / auto")
        return torch.device("mps")
    raise DeviceError(f"device {device!r}: choose one of {', '.join(DEVICES)} (or cuda:N)")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


_VERBOSE_LOADING: ContextVar[bool] = ContextVar("instrument_classifier_verbose_loading", default=False)


@contextmanager
def quiet_weight_loading(quiet: bool = True) -> Iterator[None]:
    """Within the block, transformers' "Loading weights" bars are not shown (transformers 5 prints one per
    ``from_pretrained``: two per ``predict`` of the ensemble, on every run); its other bars, such as Hub downloads,
    are. ``quiet=False`` changes nothing."""

    set_hook = getattr(hf_logging, "set_tqdm_hook", None)
    if not quiet or set_hook is None:  # (a transformers without the hook prints them)
        yield
        return
    previous = None

    def hook(factory, args, kwargs):
        if kwargs.get("desc") == "Loading weights":
            return hf_logging.EmptyTqdm(*args, **kwargs)
        return factory(*args, **kwargs) if previous is None else previous(factory, args, kwargs)

    previous = set_hook(hook)
    try:
        yield
    finally:
        set_hook(previous)


def _check_local_folder(folder: Path) -> None:
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: not a model folder (no config.json)")
    if not any(folder.glob("*.safetensors")):
        unsafe = sorted(p.name for p in folder.iterdir() if p.name.lower().endswith(_UNSAFE_WEIGHTS))
        detail = f"found only {', '.join(unsafe)}, which" if unsafe else "no weights found; pickled weights"
        raise ValueError(
            f"{folder}: no model.safetensors ({detail} would need unpickling, refused for safety). "
            "Re-save the model with model.save_pretrained(folder) (safetensors by default)."
        )


def _check_compatible(config, feature_extractor, source: str) -> None:
    pairs = [
        ("sampling_rate", config.sampling_rate, feature_extractor.sampling_rate),
        ("hop_length", config.hop_length, feature_extractor.hop_length),
        ("feature_size", config.feature_size, feature_extractor.feature_size),
    ]
    bad = [f"{name}: model {a} vs feature extractor {b}" for name, a, b in pairs if a != b]
    if bad:
        raise ValueError(f"{source}: model and feature extractor disagree ({'; '.join(bad)})")


# -- streamed features ---------------------------------------------------------------------------------

BlockSource = Callable[[], Iterator[np.ndarray]]


def _audio_blocks(
    audio: AudioInput, sampling_rate: Optional[int], feature_extractor
) -> Tuple[BlockSource, float, str]:
    """(a function returning a fresh iterator of mono float32 blocks at the feature extractor's rate, duration,
    name); an array at another rate is resampled by the feature extractor (soxr, as files are)."""
    target_sr = feature_extractor.sampling_rate
    if isinstance(audio, (str, os.PathLike)):
        path = os.fspath(audio)
        info = audio_info(path)
        return (lambda: stream_audio(path, BLOCK_SECONDS, target_sr)), info.frames / info.samplerate, path
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    if not isinstance(audio, np.ndarray):
        raise TypeError(f"audio must be a file path or a numpy array, got {type(audio).__name__}")
    name = "audio array"
    if audio.ndim == 2:  # (samples, channels) or (channels, samples): average the shorter axis
        audio = audio.mean(axis=int(np.argmin(audio.shape)))
    elif audio.ndim != 1:
        raise AudioError(f"{name}: expected mono (samples,) or stereo (samples, channels), got shape {audio.shape}")
    audio = check_waveform(audio, name)
    if sampling_rate is None:  # as transformers' feature extractors say: a wrong rate gives wrong answers silently
        warnings.warn(f"{name} given without sampling_rate: read as {target_sr} Hz, the rate of the model's "
                      "features; pass sampling_rate= if it is at another rate", UserWarning, stacklevel=3)
    rate = target_sr if sampling_rate is None else int(sampling_rate)
    if rate <= 0:
        raise ValueError(f"sampling_rate must be positive, got {sampling_rate}")
    audio = feature_extractor.resample(audio, rate)
    step = int(BLOCK_SECONDS * target_sr)
    return (lambda: (audio[i : i + step] for i in range(0, len(audio), step))), len(audio) / target_sr, name


def stream_features(
    audio: AudioInput,
    feature_extractor,
    sampling_rate: Optional[int] = None,
    normalize: Optional[bool] = None,
) -> Iterator[np.ndarray]:
    """Yield consecutive ``(frames, feature_size)`` blocks of features of a file or array.

    Their concatenation equals ``feature_extractor.extract(whole_audio, normalize)`` (same frames, same
    whole-file ``top_db`` reference; see the module docstring) while memory stays bounded by a block.

    Parameters
    ----------
    audio : path or np.ndarray
        A file (streamed) or a mono/stereo array at ``sampling_rate``.
    feature_extractor : InstrumentFeatureExtractor
    sampling_rate : int, optional
        Rate of an array input (default: the feature extractor's); ignored for files.
    normalize : bool, optional
        Standardise with the extractor's mean/std (default: ``feature_extractor.do_normalize``).
    """
    blocks, _, _ = _audio_blocks(audio, sampling_rate, feature_extractor)
    yield from feature_extractor.extract_stream(blocks, normalize=normalize)


# -- timeline ------------------------------------------------------------------------------------------

def predict_timeline(
    model,
    feature_extractor,
    audio: AudioInput,
    sampling_rate: Optional[int] = None,
    batch_size: int = 32,
    thresholds: Optional[Sequence[float]] = None,
    progress: bool = False,
    min_duration_s: float = 0.2,
    merge_gap_s: float = 0.3,
    context: bool = False,
) -> Timeline:
    """Instrument probabilities over time, clip scores and segments for one recording.

    Parameters
    ----------
    model : InstrumentMusicnnForAudioClassification, InstrumentCNNForAudioClassification, ... or InstrumentEnsemble
    feature_extractor : InstrumentFeatureExtractor or None
        The model's (its normalisation statistics matter); ``None`` for an ensemble, whose members are each run
        with their own and whose window and frame probabilities are blended with its weights.
    audio : path or np.ndarray
        An audio file (streamed in blocks, memory-bounded) or a mono ``(samples,)`` / stereo
        ``(samples, channels)`` float array.
    sampling_rate : int, optional
        Rate of an array input (it is resampled to the model's). Without it an array is read at the rate of the
        model's features (44.1 kHz for the MFCC models, 16 kHz for musicnn and YAMNet, 32 kHz for EfficientAT),
        with a warning; an ensemble whose members read different rates (the default) raises ``ValueError``.
        Ignored for files.
    batch_size : int
        Windows classified at once.
    thresholds : sequence of float, optional
        Per-label decision thresholds for the segments; default ``model.config.thresholds`` (with
        ``context``: the context's thresholds).
    progress : bool
        Show a progress bar: one for the recording (an ensemble's members share it), named after the file,
        in whole seconds of audio.
    min_duration_s, merge_gap_s : float
        Segment post-processing, see :func:`segments_from_probs`.
    context : bool
        Blend each window with its neighbours as ``model.config.context`` says (step 5 above). A model
        without a tuned context raises ``ValueError``.

    Returns
    -------
    Timeline

    Raises
    ------
    AudioError
        Missing, empty, unreadable or NaN-containing audio (the message names the file).
    """
    config = model.config
    labels = [config.id2label[i] for i in range(config.num_labels)]
    recording_context, thresholds = _decision_settings(model, thresholds, context)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    members = model.members if isinstance(model, InstrumentEnsemble) else [(model, feature_extractor)]
    for member, extractor in members:
        _check_compatible(member.config, extractor, type(member).__name__)
    rates = sorted({extractor.sampling_rate for _, extractor in members})
    if sampling_rate is None and len(rates) > 1 and not isinstance(audio, (str, os.PathLike)):
        raise ValueError(f"an audio array needs sampling_rate: this ensemble's members read "
                         f"{' and '.join(f'{r} Hz' for r in rates)}, so no one rate can be assumed")
    decoded = {}  # sampling rate -> blocks: the members at one rate share one decode
    for _, extractor in members:
        if extractor.sampling_rate not in decoded:
            decoded[extractor.sampling_rate] = _audio_blocks(audio, sampling_rate, extractor)
    _, duration, name = decoded[members[0][1].sampling_rate]
    if len(members) > 1:
        decoded = {rate: (_decoded_once(blocks), *rest) for rate, (blocks, *rest) in decoded.items()}
    bar = _ProgressBar(name, duration, len(members), enabled=progress)
    try:
        runs = [_classify_recording(member, extractor, decoded[extractor.sampling_rate][0], name, batch_size,
                                    bar.member(i))
                for i, (member, extractor) in enumerate(members)]
    finally:
        bar.close()
    frame_probs, window_probs, window_starts, frame_owners = runs[0]
    if len(runs) > 1:  # the members' windows coincide (same times): blended with the ensemble's weights
        if len({len(r[1]) for r in runs}) != 1:
            raise RuntimeError(f"{name}: the ensemble's members cut {[len(r[1]) for r in runs]} windows")
        grid = members[0][1]
        frame_probs = blend_probabilities(
            [frames_on_grid(r[0], extractor.hop_length, grid.hop_length, len(frame_probs), extractor.sampling_rate,
                            grid.sampling_rate)
             for r, (_, extractor) in zip(runs, members)], config.weights)
        window_probs = blend_probabilities([r[1] for r in runs], config.weights)
    return _finish_timeline(labels, duration, members[0][1].frame_rate, frame_probs, window_probs, window_starts,
                            frame_owners, int(config.window_frames), thresholds, recording_context, min_duration_s,
                            merge_gap_s)


def _classify_recording(model, feature_extractor, blocks: BlockSource, name: str, batch_size: int,
                        advance: Callable[[float], None]):
    """One model on a recording's blocks: ``(frame_probs, window_probs, window_starts, frame_owners)`` of the real
    audio's frames (steps 2-4 of the module docstring); ``advance(seconds)`` reports the audio done."""
    config = model.config
    window = int(config.window_frames)
    device = next(model.parameters()).device
    frame_chunks, window_probs, window_starts, frame_owners = [], [], [], []
    batch, batch_info = [], []  # windows and (start frame, first new frame within the window)

    def flush():
        x = torch.from_numpy(np.stack(batch)).to(device)
        with torch.inference_mode():
            out = model(input_features=x)
        frame_p = torch.sigmoid(out.frame_logits.float()).cpu().numpy()
        window_p = torch.sigmoid(out.logits.float()).cpu().numpy()
        for (start, new_from), fp, wp in zip(batch_info, frame_p, window_p):
            frame_chunks.append(fp[new_from:])
            frame_owners.append(np.full(len(fp) - new_from, len(window_probs), dtype=np.int32))
            window_probs.append(wp)
            window_starts.append(start)
        batch.clear()
        batch_info.clear()

    blocks, real_samples = _silence_to_window_end(blocks, feature_extractor, window)
    pending = np.zeros((0, config.feature_size), dtype=np.float32)  # frames not yet in a window
    done = 0  # frames placed in windows
    for feats in feature_extractor.extract_stream(blocks):
        advance(len(feats) / feature_extractor.frame_rate)
        pending = np.concatenate([pending, feats]) if len(pending) else feats
        while len(pending) >= window:
            batch.append(pending[:window])
            batch_info.append((done, 0))
            pending, done = pending[window:], done + window
            if len(batch) == batch_size:
                flush()
    if batch:
        flush()
    if not real_samples or not real_samples[0]:
        raise AudioError(f"{name}: no audio frames")
    total = feature_extractor.num_frames(real_samples[0])  # frames of the real audio
    return np.concatenate(frame_chunks)[:total], np.stack(window_probs), window_starts, \
        np.concatenate(frame_owners)[:total]


class _ProgressBar:
    """One progress bar per recording, named after it, in whole seconds of its audio; an ensemble's members each
    advance it by their share. Whole seconds so that the count reads "96/96 s", never "98.20000000000002 s", and
    never passes the total (the silence padding the last window is not counted)."""

    def __init__(self, name: str, duration: float, members: int, enabled: bool):
        self.duration, self.members = float(duration), members
        self.total = max(1, int(round(duration)))
        self.done = [0.0] * members  # seconds of audio each member has classified
        self.bar = tqdm(total=self.total, unit="s", desc=os.path.basename(name), disable=not enabled, leave=False)

    def member(self, index: int) -> Callable[[float], None]:
        def advance(seconds: float) -> None:
            self.done[index] = min(self.duration, self.done[index] + seconds)
            shown = min(self.total, int(sum(self.done) / self.members * self.total / max(self.duration, 1e-9)))
            if shown > self.bar.n:  # integer steps: Gradio's track_tqdm follows update(), not n
                self.bar.update(shown - self.bar.n)

        return advance

    def close(self) -> None:
        self.bar.close()


def _decoded_once(blocks: BlockSource, limit_mb: Optional[float] = None) -> BlockSource:
    """``blocks`` whose first complete pass is kept (up to ``DECODED_CACHE_MB``) and replayed to later passes, so an
    ensemble's members share one decode. A longer recording is decoded again by each pass, in bounded memory."""
    limit = (DECODED_CACHE_MB if limit_mb is None else limit_mb) * 2**20
    kept: List[np.ndarray] = []
    state = {"complete": False, "too_long": False}

    def recording() -> Iterator[np.ndarray]:
        kept.clear()
        size = 0
        for block in blocks():
            if not state["too_long"]:
                size += block.nbytes
                if size <= limit:
                    kept.append(block)
                else:
                    state["too_long"] = True
                    kept.clear()
            yield block
        state["complete"] = not state["too_long"]  # an abandoned pass never gets here: the next one records

    def source() -> Iterator[np.ndarray]:
        if state["complete"]:
            return iter(kept)
        return blocks() if state["too_long"] else recording()

    return source


def _decision_settings(model, thresholds: Optional[Sequence[float]], context: bool):
    """``(recording context or None, thresholds)`` of a prediction: the caller's thresholds, else the model's
    (the context's with ``context``)."""
    config = model.config
    recording_context = None
    if context:
        recording_context = RecordingContext.from_config(config)
        if recording_context is None:
            raise ValueError(f"{type(model).__name__} has no recording context in its config (`instrument-classifier "
                             "train` tunes one on validation; the bundled MFCC models have one); predict without "
                             "context")
    default = config.thresholds if recording_context is None else recording_context.thresholds
    thresholds = list(default if thresholds is None else thresholds)
    if len(thresholds) != config.num_labels:
        raise ValueError(f"thresholds must have {config.num_labels} entries (one per label), got {len(thresholds)}")
    return recording_context, thresholds


def _finish_timeline(labels, duration, frame_rate, frame_probs, window_probs, window_starts, frame_owners, window,
                     thresholds, recording_context, min_duration_s, merge_gap_s) -> Timeline:
    """The recording context (if any), clip scores and segments from a recording's frame and window
    probabilities; ``frame_owners``: each frame's window."""
    if recording_context is not None:
        means = neighbour_means(window_probs, None, window_starts, recording_context.radius_windows, window)
        window_probs = blend(window_probs, means, recording_context.weight)
        frame_probs = blend(frame_probs, means[frame_owners], recording_context.weight)
    scores = clip_scores(window_probs)
    clip = dict(zip(labels, scores.tolist()))
    segments = detected_segments(
        frame_probs, frame_rate, labels, thresholds, scores, window_probs, window_starts, window,
        min_duration_s=min_duration_s, merge_gap_s=merge_gap_s, duration_s=duration,
    )
    return Timeline(
        labels=labels,
        duration_s=duration,
        frame_rate=frame_rate,
        frame_probs=frame_probs,
        window_times_s=np.asarray(window_starts, dtype=np.float64) / frame_rate,
        window_probs=window_probs,
        clip=clip,
        segments=segments,
        context=None if recording_context is None else recording_context.describe(),
        thresholds=[float(t) for t in thresholds],
    )


def clip_scores(window_probs: np.ndarray) -> np.ndarray:
    """Each label's score for a whole recording from its window probabilities ``(n_windows, L)``.

    The highest window probability, and from three windows on the mean of the two highest: a single stray window
    weighs half, so it decides a recording only with a second window's support (on real duo recordings it removes
    about a quarter of the false instruments for few true ones; the second highest alone loses more, see
    docs/experiments.md, "Decisions"). A clip of up to two windows keeps its highest: its second window is mostly
    the padding silence. The models' own long-input forward (and so the pipeline) aggregates the same way, on
    logits.
    """
    ranked = np.sort(np.asarray(window_probs), axis=0)
    return (ranked[-1] + ranked[-2]) / 2 if len(ranked) >= 3 else ranked[-1]


def _silence_to_window_end(blocks: BlockSource, fe, window: int) -> Tuple[BlockSource, List[int]]:
    """``blocks`` followed by zeros up to the end of the last ``window``-frame window, as ``prepare`` pads a
    recording (:meth:`InstrumentFeatureExtractor.silence_to_window_end`). The padding is added before feature
    extraction, so the silence frames get the recording's floor and the frames at the boundary see real audio
    then zeros. The returned list receives the number of real samples once a pass is complete."""
    counted: List[int] = []

    def padded() -> Iterator[np.ndarray]:
        n = 0
        for block in blocks():
            n += len(block)
            yield block
        counted[:] = [n]
        yield np.zeros(fe.silence_to_window_end(n, window), dtype=np.float32)

    return padded, counted


# -- segments ------------------------------------------------------------------------------------------

def segments_from_probs(
    frame_probs: np.ndarray,
    frame_rate: float,
    labels: Sequence[str],
    thresholds: Union[float, Sequence[float]],
    min_duration_s: float = 0.2,
    merge_gap_s: float = 0.3,
    duration_s: Optional[float] = None,
) -> List[Segment]:
    """Merge frames whose probability reaches the threshold into segments.

    Frame ``t`` stands for ``[(t - 0.5) / frame_rate, (t + 0.5) / frame_rate)`` (it is centred on
    sample ``t * hop``, as the labels are), clipped to ``[0, duration_s]``; the last frame lasts to ``duration_s``.

    Parameters
    ----------
    frame_probs : np.ndarray, shape (n_frames, n_labels)
    frame_rate : float
        Frames per second.
    labels : sequence of str
    thresholds : float or sequence of float
        A frame is active when its probability is ``>=`` the label's threshold.
    min_duration_s : float
        Active runs shorter than this (after merging) are dropped.
    merge_gap_s : float
        Inactive gaps up to this long between two active runs are bridged first.
    duration_s : float, optional
        Recording length, to clip the last segment (default ``n_frames / frame_rate``).

    Returns
    -------
    list of Segment
        Sorted by start time, then label; ``score`` is the mean probability over the segment's frames.
    """
    probs = np.asarray(frame_probs, dtype=np.float32)
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise ValueError(f"frame_probs must have shape (n_frames, {len(labels)}), got {probs.shape}")
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float32), (len(labels),))
    n_frames = len(probs)
    duration_s = n_frames / frame_rate if duration_s is None else float(duration_s)
    max_gap = int(round(merge_gap_s * frame_rate))
    segments = []
    for j, label in enumerate(labels):
        runs = _runs(probs[:, j] >= thresholds[j])
        merged: List[List[int]] = []
        for start, end in runs:  # end exclusive
            if merged and start - merged[-1][1] <= max_gap:
                merged[-1][1] = end
            else:
                merged.append([start, end])
        for start, end in merged:
            start_s = max(0.0, (start - 0.5) / frame_rate)
            end_s = _segment_end_s(end, n_frames, frame_rate, duration_s)
            if end_s - start_s + 1e-9 < min_duration_s:
                continue
            segments.append(Segment(float(start_s), float(end_s), label, float(probs[start:end, j].mean())))
    segments.sort(key=lambda s: (s.start_s, labels.index(s.label)))
    return segments


def detected_segments(
    frame_probs: np.ndarray,
    frame_rate: float,
    labels: Sequence[str],
    thresholds: Union[float, Sequence[float]],
    clip: Sequence[float],
    window_probs: np.ndarray,
    window_starts: Sequence[int],
    window_frames: int,
    min_duration_s: float = 0.2,
    merge_gap_s: float = 0.3,
    duration_s: Optional[float] = None,
) -> List[Segment]:
    """The segments of the decision rule (module docstring, step 7): detected instruments only, each at least one.

    Parameters
    ----------
    frame_probs : np.ndarray, shape (n_frames, n_labels)
    frame_rate : float
    labels : sequence of str
    thresholds : float or sequence of float
        A label is detected when its clip score is ``>=`` its threshold; its frames are active from there on.
    clip : sequence of float
        Clip scores (:func:`clip_scores` of ``window_probs``), in label order.
    window_probs : np.ndarray, shape (n_windows, n_labels)
    window_starts : sequence of int
        First frame of each window (consecutive windows, ``window_frames`` apart).
    window_frames : int
    min_duration_s, merge_gap_s, duration_s :
        As for :func:`segments_from_probs`.

    Returns
    -------
    list of Segment
        Sorted by start time, then label. A detected label's segments are its frame runs
        (:func:`segments_from_probs`); one without any gets the runs of windows at or above its threshold
        (clipped to ``duration_s``, whatever their length), its score the mean frame probability there.
    """
    probs = np.asarray(frame_probs, dtype=np.float32)
    # in float64, as Timeline.detected compares (Python floats): the same decision where a score equals a threshold
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(labels),))
    detected = np.asarray(clip, dtype=np.float64) >= thresholds
    window_probs = np.asarray(window_probs, dtype=np.float64)
    n_frames = len(probs)
    duration_s = n_frames / frame_rate if duration_s is None else float(duration_s)
    segments = [s for s in segments_from_probs(probs, frame_rate, labels, thresholds, min_duration_s, merge_gap_s,
                                               duration_s)
                if detected[labels.index(s.label)]]
    found = {s.label for s in segments}
    for j in np.flatnonzero(detected):
        if labels[j] in found:
            continue
        # the clip score is at most the highest window probability, so at least one window reaches the threshold
        for first, last in _runs(window_probs[:, j] >= thresholds[j]):
            start, end = int(window_starts[first]), min(n_frames, int(window_starts[last - 1]) + int(window_frames))
            start_s = max(0.0, (start - 0.5) / frame_rate)
            end_s = _segment_end_s(end, n_frames, frame_rate, duration_s)
            score = float(probs[start:end, j].mean()) if end > start else float(window_probs[first:last, j].max())
            segments.append(Segment(float(start_s), float(end_s), labels[j], score))
    segments.sort(key=lambda s: (s.start_s, labels.index(s.label)))
    return segments


def _segment_end_s(end: int, n_frames: int, frame_rate: float, duration_s: float) -> float:
    """Where a run of frames ending before frame ``end`` stops: the last frame's edge, or the recording's end.

    A run that reaches the last frame lasts to ``duration_s``: the audio after the last frame's edge (less than a
    frame) has no frame of its own.
    """
    if end >= n_frames:
        return duration_s
    return min(duration_s, (end - 0.5) / frame_rate)


def _runs(active: np.ndarray) -> List[Tuple[int, int]]:
    """``[start, end)`` index pairs of the runs of True."""
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))
