"""Which musical instruments play, and when: frame-level instrument recognition as Hugging Face models.

The public API, importable from the package itself::

    from instrument_classifier import load_model, predict_timeline

    model, feature_extractor = load_model()            # the bundled default; a folder or Hub id; device="auto"
    timeline = predict_timeline(model, feature_extractor, "quartet.flac")
    timeline.detected, timeline.clip, timeline.segments

Names are imported on first use (PEP 562 ``__getattr__``): ``import instrument_classifier`` itself loads
neither torch nor transformers, so the command line's ``--help`` and ``--version`` stay instant.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (3-4 ms of the package's ~6 ms)

__version__ = "0.1.0"

#: public name -> the module that defines it (relative to this package)
_EXPORTS = {
    # inference: models and timelines
    "load_model": "inference",
    "predict_timeline": "inference",
    "Timeline": "inference",
    "Segment": "inference",
    "clip_scores": "inference",
    "detected_segments": "inference",
    "segments_from_probs": "inference",
    "stream_features": "inference",
    "resolve_device": "inference",
    "DeviceError": "inference",
    "DEFAULT_MODEL_DIR": "inference",
    "AudioError": "audio",
    # the Hugging Face classes (importing them registers them with the Auto classes)
    "InstrumentFeatureExtractor": "modeling",
    "InstrumentCNNConfig": "modeling",
    "InstrumentCNNForAudioClassification": "modeling",
    "InstrumentTransformerConfig": "modeling",
    "InstrumentTransformerForAudioClassification": "modeling",
    "InstrumentMusicnnConfig": "modeling",
    "InstrumentMusicnnForAudioClassification": "modeling",
    "InstrumentYamnetConfig": "modeling",
    "InstrumentYamnetForAudioClassification": "modeling",
    "InstrumentEfficientAtConfig": "modeling",
    "InstrumentEfficientAtForAudioClassification": "modeling",
    "InstrumentAudioClassificationPipeline": "modeling",
    "InstrumentEnsemble": "ensemble",
    # data and evaluation
    "build_dataset": "data.prepare",
    "load_prepared": "data.prepare",
    "evaluate_models": "evaluation.evaluate_models",
    "evaluate_clips": "evaluation.clips",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next access skips __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names above are imported lazily
    from .audio import AudioError
    from .data.prepare import build_dataset, load_prepared
    from .ensemble import InstrumentEnsemble
    from .evaluation.clips import evaluate_clips
    from .evaluation.evaluate_models import evaluate_models
    from .inference import (
        DEFAULT_MODEL_DIR,
        DeviceError,
        Segment,
        Timeline,
        clip_scores,
        detected_segments,
        load_model,
        predict_timeline,
        resolve_device,
        segments_from_probs,
        stream_features,
    )
    from .modeling import (
        InstrumentAudioClassificationPipeline,
        InstrumentCNNConfig,
        InstrumentCNNForAudioClassification,
        InstrumentEfficientAtConfig,
        InstrumentEfficientAtForAudioClassification,
        InstrumentFeatureExtractor,
        InstrumentMusicnnConfig,
        InstrumentMusicnnForAudioClassification,
        InstrumentTransformerConfig,
        InstrumentTransformerForAudioClassification,
        InstrumentYamnetConfig,
        InstrumentYamnetForAudioClassification,
    )
