"""A new model of ``--model_type``, or an existing one to fine-tune, configured for the dataset at hand."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification

from ..inference import bundled_folder, require_hub_id
from ..modeling import MODEL_CLASSES  # importing registers our model types with the Auto classes
from ..modeling.feature_extraction_instrument import feature_settings
from ..remote_code import RemoteCodeError, check_no_remote_code

from .errors import TrainingSetupError

__all__ = ["parse_config_overrides", "apply_config_overrides", "build_model", "resolve_model_source",
           "pretrained_data_settings", "CONFIG_ALIASES"]

#: Short names accepted in ``--config_overrides`` (common names from other code bases -> our config fields).
CONFIG_ALIASES = {
    "d_model": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "dim_feedforward": "intermediate_size",
    "channels": "conv_channels",
}


def _split_top_level(text: str):
    """Split on commas that are not inside brackets: ``"a=1,b=[2,3]"`` -> ``["a=1", "b=[2,3]"]``."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[{("
        depth -= ch in "]})"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_config_overrides(text: Optional[str]) -> Dict[str, object]:
    """``"d_model=64,num_layers=2,channels=[16,32],pooling=max"`` -> a dict with JSON-decoded values.

    Values that are not JSON (``max``) stay strings; ``true``/``false`` are booleans. Aliases in
    :data:`CONFIG_ALIASES` are mapped to the config's field names.
    """
    if not text:
        return {}
    overrides = {}
    for item in _split_top_level(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TrainingSetupError(f"--config_overrides: expected key=value, got {item!r} (in {text!r})")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value.strip()
        key = CONFIG_ALIASES.get(key.strip(), key.strip())
        overrides[key] = parsed
    return overrides


def apply_config_overrides(config, overrides: Dict[str, object]):
    """Set fields of ``config`` and re-validate it; unknown fields or invalid values raise ``TrainingSetupError``."""
    known = set(config.to_dict())
    unknown = sorted(k for k in overrides if k not in known)
    if unknown:
        fields = sorted(k for k in known if not k.startswith("_") and k not in ("transformers_version", "model_type"))
        raise TrainingSetupError(f"unknown config field(s) {unknown} for {type(config).__name__}; "
                                 f"fields: {', '.join(fields)}")
    for key, value in overrides.items():
        setattr(config, key, value)
    # the configs normalise and check their fields in __post_init__: rebuild to get the same checks
    try:
        return type(config).from_dict(config.to_dict())
    except (ValueError, TypeError) as exc:
        raise TrainingSetupError(f"invalid model configuration {overrides}: {exc}") from exc


def _model_classes():
    return MODEL_CLASSES


def _check_feature_settings(model_extractor, data_extractor, source: str) -> None:
    model_cfg, data_cfg = feature_settings(model_extractor), feature_settings(data_extractor)
    differ = [k for k in model_cfg if model_cfg[k] != data_cfg[k]]
    if differ:
        detail = ", ".join(f"{k}: model {model_cfg[k]!r} vs dataset {data_cfg[k]!r}" for k in differ)
        raise TrainingSetupError(f"{source} was trained on other features than this dataset ({detail}); prepare the "
                         "dataset with the model's feature settings")


def resolve_model_source(name_or_path: str) -> str:
    """The folder or Hub id ``--model_name_or_path`` names: a bundled model's name (``cnn``) gives its folder, as
    ``predict`` and ``evaluate`` take it. A path that is not here fails now, before any data is prepared."""
    source = bundled_folder(name_or_path)
    if not os.path.isdir(source):
        try:
            require_hub_id(source)
        except FileNotFoundError as exc:
            raise TrainingSetupError(f"--model_name_or_path {exc}") from None
    return source


def pretrained_data_settings(model_args) -> Dict[str, object]:
    """How ``--data_dir`` is prepared for the model being fine-tuned (``DataArguments`` fields: taxonomy, window
    length and features), so that fine-tuning on a MusicNet folder needs no feature flags."""
    hub = {"trust_remote_code": bool(model_args.trust_remote_code), "revision": model_args.model_revision,
           "cache_dir": model_args.cache_dir}
    source = model_args.model_name_or_path
    try:  # configuration files only: no weights load
        config = AutoConfig.from_pretrained(source, **hub)
        extractor = feature_settings(AutoFeatureExtractor.from_pretrained(source, **hub))
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingSetupError(f"--model_name_or_path {source}: cannot load the model: {exc}") from None
    return {"taxonomy": config.taxonomy, "window_frames": int(config.window_frames),
            **{key: extractor[key] for key in ("feature_type", "n_coefficients", "include_deltas", "delta_order")}}


def build_model(model_args, info: dict, data_extractor,
                overrides: Optional[Dict[str, object]] = None) -> Tuple[object, object]:
    """The model to train and the feature extractor whose normalisation it uses (saved with it).

    A new model (``model_args.model_type``) is configured for the dataset: its taxonomy, window length and
    feature settings, then ``overrides``. A pretrained model (``model_args.model_name_or_path``) keeps its
    feature extractor (its weights were trained on that normalisation); if the dataset has another taxonomy,
    the classification heads are re-initialised for the dataset's labels.
    """
    overrides = dict(overrides or {})
    if model_args.model_name_or_path:

        # False unless the user said --trust_remote_code true: never transformers' "run the code? [y/N]" prompt
        hub = {"trust_remote_code": bool(model_args.trust_remote_code), "revision": model_args.model_revision,
               "cache_dir": model_args.cache_dir}
        source = model_args.model_name_or_path
        _check_safetensors(source)
        if not model_args.trust_remote_code:
            try:
                check_no_remote_code(source)
            except RemoteCodeError as exc:
                raise TrainingSetupError(f"--model_name_or_path {exc}") from None
        try:
            config = AutoConfig.from_pretrained(source, **hub)
            extractor = AutoFeatureExtractor.from_pretrained(source, **hub)
        except (OSError, ValueError, KeyError) as exc:  # not a model, unknown type, a Hub repo that needs its code
            raise TrainingSetupError(f"--model_name_or_path {source}: cannot load the model: {exc}") from None
        _check_feature_settings(extractor, data_extractor, source)
        if extractor.mean is None:
            extractor = data_extractor
        if int(config.window_frames) != int(info["window_frames"]):
            overrides.setdefault("window_frames", int(info["window_frames"]))
        new_labels = [config.id2label[i] for i in range(config.num_labels)] != list(info["labels"])
        if new_labels:
            overrides.update(taxonomy=info["taxonomy"], id2label=dict(enumerate(info["labels"])),
                             label2id={label: i for i, label in enumerate(info["labels"])},
                             thresholds=None, context=None, pos_weight=None)
        config = apply_config_overrides(config, overrides)
        model = AutoModelForAudioClassification.from_pretrained(source, config=config,
                                                                ignore_mismatched_sizes=new_labels,
                                                                use_safetensors=True, **hub)  # never unpickle
        return model, extractor

    if model_args.model_type not in ("cnn", "transformer"):
        raise TrainingSetupError("give --model_type cnn|transformer for a new model, "
                                 "or --model_name_or_path to fine-tune one")
    config_class, model_class = _model_classes()[model_args.model_type]
    config = config_class(
        taxonomy=info["taxonomy"],
        feature_size=data_extractor.feature_size,
        window_frames=int(info["window_frames"]),
        sampling_rate=data_extractor.sampling_rate,
        hop_length=data_extractor.hop_length,
        feature_type=data_extractor.feature_type,
    )
    if [config.id2label[i] for i in range(config.num_labels)] != list(info["labels"]):
        raise TrainingSetupError(f"dataset labels {info['labels']} differ from taxonomy {info['taxonomy']!r}'s")
    config = apply_config_overrides(config, overrides)
    return model_class(config), data_extractor


def _check_safetensors(source: str) -> None:
    """Refuse a local model folder without safetensors weights (a pickle can run code when loaded)."""

    folder = Path(source)
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        found = f" (found {', '.join(pickled)}: pickle-based weights are not loaded)" if pickled else ""
        raise TrainingSetupError(f"{folder}: no model.safetensors{found}; re-save it with save_pretrained")
