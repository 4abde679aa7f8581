"""The instrument classifiers as Hugging Face models, registered with the Auto classes.

Importing this package registers ``instrument_cnn``, ``instrument_transformer``, ``instrument_musicnn``,
``instrument_yamnet`` and ``instrument_efficientat`` with ``AutoConfig``, ``AutoModel`` and
``AutoModelForAudioClassification``, and the feature extractor with ``AutoFeatureExtractor``, so saved folders load
with the Auto classes in this environment. ``register_for_auto_class`` makes ``save_pretrained`` copy the
(self-contained) configuration, modeling, pipeline and feature-extraction files next to the weights and write an
``auto_map``: elsewhere the folder loads with ``trust_remote_code=True`` and no package installed.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
)

from .configuration_instrument_cnn import InstrumentCNNConfig
from .configuration_instrument_efficientat import InstrumentEfficientAtConfig
from .configuration_instrument_musicnn import InstrumentMusicnnConfig
from .configuration_instrument_transformer import InstrumentTransformerConfig
from .configuration_instrument_yamnet import InstrumentYamnetConfig
from .feature_extraction_instrument import InstrumentFeatureExtractor
from .modeling_instrument_cnn import InstrumentCNNForAudioClassification
from .modeling_instrument_efficientat import InstrumentEfficientAtForAudioClassification
from .modeling_instrument_musicnn import InstrumentMusicnnForAudioClassification
from .modeling_instrument_transformer import InstrumentTransformerForAudioClassification
from .modeling_instrument_yamnet import InstrumentYamnetForAudioClassification
from .pipeline_instrument import InstrumentAudioClassificationPipeline

__all__ = [
    "InstrumentCNNConfig",
    "InstrumentCNNForAudioClassification",
    "InstrumentTransformerConfig",
    "InstrumentTransformerForAudioClassification",
    "InstrumentMusicnnConfig",
    "InstrumentMusicnnForAudioClassification",
    "InstrumentYamnetConfig",
    "InstrumentYamnetForAudioClassification",
    "InstrumentEfficientAtConfig",
    "InstrumentEfficientAtForAudioClassification",
    "InstrumentFeatureExtractor",
    "InstrumentAudioClassificationPipeline",
    "MODEL_CLASSES",
]

#: ``--model_type`` name -> (config class, model class)
MODEL_CLASSES = {
    "cnn": (InstrumentCNNConfig, InstrumentCNNForAudioClassification),
    "transformer": (InstrumentTransformerConfig, InstrumentTransformerForAudioClassification),
    "musicnn": (InstrumentMusicnnConfig, InstrumentMusicnnForAudioClassification),
    "yamnet": (InstrumentYamnetConfig, InstrumentYamnetForAudioClassification),
    "efficientat": (InstrumentEfficientAtConfig, InstrumentEfficientAtForAudioClassification),
}

for _config_class, _model_class in MODEL_CLASSES.values():
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    # The models are tiny: the base-model Auto class returns the classifier itself (frame and window logits).
    AutoModel.register(_config_class, _model_class, exist_ok=True)
    AutoModelForAudioClassification.register(_config_class, _model_class, exist_ok=True)
    _config_class.register_for_auto_class()
    _model_class.register_for_auto_class("AutoModelForAudioClassification")

AutoFeatureExtractor.register(InstrumentCNNConfig, InstrumentFeatureExtractor, exist_ok=True)
AutoFeatureExtractor.register(InstrumentTransformerConfig, InstrumentFeatureExtractor, exist_ok=True)
AutoFeatureExtractor.register(InstrumentMusicnnConfig, InstrumentFeatureExtractor, exist_ok=True)
AutoFeatureExtractor.register(InstrumentYamnetConfig, InstrumentFeatureExtractor, exist_ok=True)
AutoFeatureExtractor.register(InstrumentEfficientAtConfig, InstrumentFeatureExtractor, exist_ok=True)
InstrumentFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
