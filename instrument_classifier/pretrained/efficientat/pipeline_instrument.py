"""``pipeline("audio-classification")`` for the multi-label instrument classifiers.

Shipped next to the weights (the modeling files import it, so ``save_pretrained`` copies it) and
named in ``config.custom_pipelines``, so

    pipeline("audio-classification", model=folder_or_repo, trust_remote_code=True)

returns this pipeline (with ``instrument_classifier`` installed, ``trust_remote_code`` can be avoided:
``pipeline("audio-classification", model=folder, pipeline_class=InstrumentAudioClassificationPipeline)``).
Differences from transformers' stock ``AudioClassificationPipeline``:

* every label is scored (``top_k=None``), with sigmoid probabilities: several instruments can play at once;
* each result also says whether the instrument is detected: ``{"label", "score", "threshold", "detected"}``,
  with ``detected = score >= threshold`` and the label's threshold from ``config.thresholds`` (tuned with the
  model, 0.5 where a config has none). This is the rule of ``instrument-classifier predict`` and
  ``inference.predict_timeline`` (``Timeline.detected``) on the same clip score, so the pipeline and the
  command line detect the same instruments. ``[r["label"] for r in result if r["detected"]]`` lists them;
* audio at any rate is resampled by the feature extractor (soxr, as ``predict`` does), not torchaudio;
  pass ``{"raw": array, "sampling_rate": sr}``, or ``sampling_rate=sr`` to the call;
  a bare array is taken to be at the model's rate, as in the stock pipeline;
* stereo arrays are downmixed; file paths and bytes are decoded with soundfile (no ffmpeg);
* the clip is cut into non-overlapping windows of ``config.window_frames`` frames (2.97 s by default),
  the last one filled up with digital silence, as the dataset builder pads a recording's last window
  (a clip shorter than one window is one such window); a label's clip score is its highest window
  probability, from three windows on the mean of the two highest (one stray window weighs half). For
  when it plays, and
  for recordings longer than a few minutes (streamed, memory-bounded), use
  ``instrument_classifier.inference.predict_timeline``.
"""

from __future__ import annotations

import io
import re

import numpy as np
import torch
from transformers.pipelines.audio_classification import AudioClassificationPipeline

__all__ = ["InstrumentAudioClassificationPipeline"]


class InstrumentAudioClassificationPipeline(AudioClassificationPipeline):
    """Sigmoid score of every instrument label for one clip (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("top_k", None)  # multi-label: every score matters, not the 5 best
        super().__init__(*args, **kwargs)

    def check_model_type(self, supported_models):
        # Remote-code models are not in transformers' audio-classification mapping; ours are multi-label heads.
        if getattr(self.model.config, "problem_type", None) != "multi_label_classification":
            super().check_model_type(supported_models)

    def _sanitize_parameters(self, top_k=None, function_to_apply=None, sampling_rate=None, **kwargs):
        _, _, postprocess_params = super()._sanitize_parameters(top_k=top_k, function_to_apply=function_to_apply)
        preprocess_params = {} if sampling_rate is None else {"sampling_rate": int(sampling_rate)}
        return preprocess_params, {}, postprocess_params

    def preprocess(self, inputs, sampling_rate=None):
        try:
            return self._preprocess(inputs, sampling_rate)
        except ValueError as exc:
            if isinstance(inputs, str) and inputs not in str(exc):  # name the file, as every other entry point does
                raise ValueError(f"{inputs}: {exc}") from None
            raise

    def _preprocess(self, inputs, sampling_rate=None):
        model_rate = self.feature_extractor.sampling_rate
        if isinstance(inputs, str):
            with open(inputs, "rb") as f:
                inputs = f.read()
        if isinstance(inputs, bytes):
            inputs = _decode(inputs)
        if isinstance(inputs, dict):
            if "sampling_rate" not in inputs or not ("raw" in inputs or "array" in inputs):
                raise ValueError(
                    'a dict input needs the waveform under "raw" (or "array") and its "sampling_rate"'
                )
            sampling_rate = inputs["sampling_rate"]
            inputs = inputs["raw"] if "raw" in inputs else inputs["array"]
        if isinstance(inputs, torch.Tensor):
            inputs = inputs.detach().cpu().numpy()
        if not isinstance(inputs, np.ndarray):
            raise TypeError(f"expected a numpy array, a dict, a file path or bytes, got {type(inputs).__name__}")
        if inputs.ndim == 2:  # (samples, channels) or (channels, samples): average the shorter axis
            inputs = inputs.mean(axis=int(np.argmin(inputs.shape)))
        if inputs.ndim != 1:
            raise ValueError(f"expected mono (samples,) or stereo (samples, channels) audio, got shape {inputs.shape}")
        rate = model_rate if sampling_rate is None else int(sampling_rate)
        if rate <= 0:
            raise ValueError(f"sampling_rate must be positive, got {sampling_rate}")
        inputs = self.feature_extractor.resample(inputs.astype(np.float32, copy=False), rate)
        # digital silence up to the end of the last window, as the training windows were padded
        silence = self.feature_extractor.silence_to_window_end(len(inputs), int(self.model.config.window_frames))
        inputs = np.pad(inputs, (0, silence))
        processed = self.feature_extractor(
            inputs, sampling_rate=model_rate, return_tensors="pt", return_attention_mask=True
        )
        if self.dtype is not None:
            processed["input_features"] = processed["input_features"].to(self.dtype)
        return processed

    def postprocess(self, model_outputs, top_k=None, function_to_apply=None):
        config = self.model.config
        logits = model_outputs.logits[0].float()
        probabilities = logits.sigmoid().tolist()
        scores = logits if function_to_apply == "none" else logits.sigmoid()
        thresholds = list(getattr(config, "thresholds", None) or [0.5] * config.num_labels)
        top_k = config.num_labels if top_k is None else min(top_k, config.num_labels)
        values, ids = scores.topk(top_k)
        # detected on the probability whatever function_to_apply shows: the thresholds were tuned on probabilities
        return [{"label": config.id2label[i], "score": s, "threshold": float(thresholds[i]),
                 "detected": probabilities[i] >= float(thresholds[i])}
                for s, i in zip(values.tolist(), ids.tolist())]


def _decode(data: bytes) -> dict:
    try:
        import soundfile
    except ImportError:  # optional: only file inputs need it
        raise ImportError("reading audio files needs soundfile: pip install soundfile") from None
    if not data:
        raise ValueError("empty file (0 bytes)")
    try:
        info = soundfile.info(io.BytesIO(data))
        audio, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile's message names an anonymous BytesIO, not the file
        detail = re.sub(r"Error opening <_io\.BytesIO object at \w+>: ", "", str(exc)).strip()[:200]
        raise ValueError(f"not a readable audio file ({detail})") from None
    # libsndfile reads a WAV/AIFF cut short as a shorter recording: refuse it (its log says "should be")
    short = re.search(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", info.extra_info or "", re.MULTILINE)
    if (short and int(short.group(1)) > int(short.group(2))
            and int(short.group(1)) not in (0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000)):
        raise ValueError(f"truncated file: the header announces {short.group(1)} bytes of audio data, "
                         f"{short.group(2)} are present")
    return {"raw": audio.mean(axis=1), "sampling_rate": rate}
