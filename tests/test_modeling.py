"""The CNN and Transformer classifiers: shapes, loss, gradients, configs, save/load."""

from __future__ import annotations

import json

import pytest
import torch

from instrument_classifier.data.taxonomy import TAXONOMIES
from instrument_classifier.modeling import (
    MODEL_CLASSES,
    InstrumentCNNConfig,
    InstrumentCNNForAudioClassification,
    InstrumentTransformerConfig,
    InstrumentTransformerForAudioClassification,
)
from instrument_classifier.modeling import configuration_instrument_cnn, configuration_instrument_transformer

# The MFCC / constant-Q models, which share pooling, padding and loss code; the musicnn classifier (a frozen
# pretrained backbone, window-level logits), the YAMNet one and the EfficientAT one have their own tests in
# test_musicnn_classifier.py, test_yamnet.py and test_efficientat.py.
MODEL_TYPES = sorted(t for t in MODEL_CLASSES if t not in ("musicnn", "yamnet", "efficientat"))


def make_model(model_type: str, **config_kwargs):
    config_class, model_class = MODEL_CLASSES[model_type]
    torch.manual_seed(0)
    return model_class(config_class(**config_kwargs)).eval()


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@pytest.mark.parametrize("num_frames", [1, 37, 256, 257, 700])
def test_output_shapes_at_several_lengths(model_type, num_frames):
    model = make_model(model_type, taxonomy="musicnet11")
    out = model(torch.randn(3, num_frames, 13))
    assert out.logits.shape == (3, 11)
    assert out.frame_logits.shape == (3, num_frames, 11)
    assert out.loss is None
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.frame_logits).all()


def test_cnn_feature_strides_shrink_wide_inputs_but_never_time():
    wide = make_model("cnn", taxonomy="musicnet11", feature_size=168, feature_strides=[3, 2])
    plain = make_model("cnn", taxonomy="musicnet11", feature_size=168)
    assert wide.encoder.output_features == 28  # 168 -> 56 -> 28
    assert wide.classifier.in_features == 64 * 28 and plain.classifier.in_features == 64 * 168
    x = torch.randn(2, 300, 168)
    out = wide(x)
    assert out.frame_logits.shape == (2, 300, 11) and out.logits.shape == (2, 11)
    assert make_model("cnn", feature_size=13, feature_strides=[2, 2]).encoder.output_features == 4  # 13 -> 7 -> 4
    # None (the default, and configs saved before the option): stride 1 after every convolution, however many
    deeper = make_model("cnn", feature_size=13, conv_channels=[8, 8, 8], kernel_sizes=[3] * 3, pool_sizes=[3] * 3)
    assert InstrumentCNNConfig().feature_strides is None and deeper.encoder.output_features == 13


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_long_input_is_windowed_and_clip_logits_are_the_mean_of_the_two_highest_windows(model_type):
    model = make_model(model_type, window_frames=64)
    x = torch.randn(2, 150, 13)  # windows at 0, 64 and 128, as inference cuts; the last has 22 frames

    def padded(part):  # a window the input does not fill: zero frames, masked
        mask = torch.zeros(2, 64, dtype=torch.long)
        mask[:, : part.shape[1]] = 1
        return model(torch.cat([part, torch.zeros(2, 64 - part.shape[1], 13)], dim=1), attention_mask=mask)

    with torch.no_grad():
        out = model(x)
        parts = [model(x[:, :64]), model(x[:, 64:128]), padded(x[:, 128:])]
        two = model(x[:, :100])  # two windows: the highest
        two_parts = [parts[0], padded(x[:, 64:100])]
    top2 = torch.stack([p.logits for p in parts]).sort(0, descending=True).values[:2]  # three windows
    expected = torch.logit(torch.sigmoid(top2).mean(0))
    torch.testing.assert_close(out.logits, expected)
    torch.testing.assert_close(two.logits, torch.maximum(two_parts[0].logits, two_parts[1].logits))
    assert out.frame_logits.shape == (2, 150, 12) and two.frame_logits.shape == (2, 100, 12)
    torch.testing.assert_close(out.frame_logits[:, :64], parts[0].frame_logits)
    torch.testing.assert_close(out.frame_logits[:, 64:128], parts[1].frame_logits)
    torch.testing.assert_close(out.frame_logits[:, 128:], parts[2].frame_logits[:, :22])
    torch.testing.assert_close(two.frame_logits[:, 64:], two_parts[1].frame_logits[:, :36])


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_padding_does_not_change_pooled_logits_of_the_transformer_or_any_pooling(model_type):
    model = make_model(model_type, pooling="max" if model_type == "cnn" else "attention")
    x = torch.randn(1, 100, 13)
    padded = torch.cat([x, torch.randn(1, 50, 13)], dim=1)
    mask = torch.zeros(1, 150, dtype=torch.long)
    mask[:, :100] = 1
    with torch.no_grad():
        plain, masked = model(x), model(padded, attention_mask=mask)
    if model_type == "transformer":  # attention never looks at padding: identical frames and window
        torch.testing.assert_close(masked.frame_logits[:, :100], plain.frame_logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(masked.logits, plain.logits, atol=1e-5, rtol=1e-5)
    else:  # convolutions see the padding next to the edge, but pooling ignores padded frames
        inner = masked.frame_logits[:, :97].amax(1)
        assert torch.all(masked.logits >= inner - 1e-6)
        assert torch.all(masked.logits <= masked.frame_logits[:, :100].amax(1) + 1e-6)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_loss_window_and_frame_terms(model_type):
    model = make_model(model_type, frame_loss_weight=0.0)
    x = torch.randn(2, 64, 13)
    labels = torch.tensor([[1.0] + [0.0] * 11, [0.0] * 11 + [1.0]])
    frame_labels = labels[:, None, :].expand(2, 64, 12).contiguous()
    out = model(x, labels=labels, frame_labels=frame_labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, labels)
    torch.testing.assert_close(out.loss, expected)

    model.config.frame_loss_weight = 0.5
    out = model(x, labels=labels, frame_labels=frame_labels)
    frame = torch.nn.functional.binary_cross_entropy_with_logits(out.frame_logits, frame_labels)
    torch.testing.assert_close(out.loss, expected + 0.5 * frame)
    only_frames = model(x, frame_labels=frame_labels).loss
    torch.testing.assert_close(only_frames, 0.5 * frame)

    model.config.pos_weight = [3.0] * 12
    weighted = model(x, labels=labels).loss
    torch.testing.assert_close(
        weighted,
        torch.nn.functional.binary_cross_entropy_with_logits(out.logits, labels, pos_weight=torch.full((12,), 3.0)),
    )
    with pytest.raises(ValueError, match="labels must have shape"):
        model(x, labels=labels[:, :5])
    with pytest.raises(ValueError, match=r"input_features must have shape \(batch, time, 13\)"):
        model(torch.randn(2, 64, 20))


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@pytest.mark.parametrize("pooling", ["attention", "meanmax"])
def test_gradients_reach_every_parameter(model_type, pooling):
    model = make_model(model_type, pooling=pooling, position_embedding_type="learned") if model_type == "transformer" \
        else make_model(model_type, pooling=pooling)
    model.train()
    x = torch.randn(4, 300, 13)  # longer than a window: gradients flow through the windowing too
    labels = (torch.rand(4, 12) > 0.5).float()
    frame_labels = (torch.rand(4, 300, 12) > 0.5).float()
    model(x, labels=labels, frame_labels=frame_labels).loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert param.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_save_load_round_trip_is_bit_identical(tmp_path, model_type):
    from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

    model = make_model(model_type, taxonomy="musicnet11", thresholds=[0.3] * 11)
    model.save_pretrained(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pth", ".pt")) for f in files)
    assert f"modeling_instrument_{model_type}.py" in files and "pipeline_instrument.py" in files
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"]["AutoModelForAudioClassification"].endswith("ForAudioClassification")
    assert saved["problem_type"] == "multi_label_classification" and saved["thresholds"] == [0.3] * 11

    assert type(AutoConfig.from_pretrained(tmp_path)) is type(model.config)
    loaded = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model) and type(AutoModel.from_pretrained(tmp_path)) is type(model)
    assert loaded.config.id2label == model.config.id2label and loaded.config.thresholds == [0.3] * 11
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    x = torch.randn(2, 256, 13)
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)
        assert torch.equal(model(x).frame_logits, loaded(x).frame_logits)


def test_configs_fill_labels_from_the_taxonomy():
    for config_class in (InstrumentCNNConfig, InstrumentTransformerConfig):
        for name, taxonomy in TAXONOMIES.items():
            config = config_class(taxonomy=name)
            assert config.num_labels == taxonomy.num_labels
            assert config.id2label == taxonomy.id2label and config.label2id == taxonomy.label2id
            assert config.thresholds == [0.5] * taxonomy.num_labels
        assert config_class().taxonomy == "seed12" and config_class().num_labels == 12
        custom = config_class(taxonomy="strings3", id2label={0: "Violin", 1: "Viola", 2: "Cello"})
        assert custom.num_labels == 3 and custom.label2id == {"Violin": 0, "Viola": 1, "Cello": 2}
    # the label tables repeated in the self-contained configuration files match the package's taxonomies
    for module in (configuration_instrument_cnn, configuration_instrument_transformer):
        assert module.TAXONOMY_LABELS == {name: t.labels for name, t in TAXONOMIES.items()}


@pytest.mark.parametrize(
    "config_class, kwargs, message",
    [
        (InstrumentTransformerConfig, {"hidden_size": 128, "num_attention_heads": 5}, "does not divide hidden_size"),
        (InstrumentTransformerConfig, {"num_hidden_layers": 0}, "num_hidden_layers must be a positive"),
        (InstrumentTransformerConfig, {"position_embedding_type": "rotary"}, "position_embedding_type"),
        (InstrumentTransformerConfig, {"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        (InstrumentCNNConfig, {"kernel_sizes": [[3, 3], [4, 3]]}, "odd and positive"),
        (InstrumentCNNConfig, {"conv_channels": [32, 64, 128]}, "kernel_sizes has 2 entries"),
        (InstrumentCNNConfig, {"conv_channels": []}, "at least one convolution"),
        (InstrumentCNNConfig, {"pooling": "median"}, "pooling must be one of"),
        (InstrumentCNNConfig, {"taxonomy": "gm128"}, "unknown taxonomy 'gm128'"),
        (InstrumentCNNConfig, {"taxonomy": "musicnet11", "num_labels": 12}, "num_labels=12 disagrees"),
        (InstrumentCNNConfig, {"thresholds": [0.5] * 3}, "thresholds must be 12 probabilities"),
        (InstrumentCNNConfig, {"pos_weight": [1.0] * 12 + [2.0]}, "pos_weight must be 12 positive"),
        (InstrumentCNNConfig, {"problem_type": "single_label_classification"}, "multi_label_classification"),
        (InstrumentCNNConfig, {"id2label": {0: "Violin"}}, "is not taxonomy 'seed12'"),
        (InstrumentCNNConfig, {"window_frames": 0}, "window_frames must be a positive"),
        (InstrumentCNNConfig, {"feature_type": "chroma"}, "feature_type must be one of"),
        (InstrumentCNNConfig, {"feature_strides": [3]}, "a positive stride for each of the 2 convolutions"),
        (InstrumentCNNConfig, {"feature_strides": [1, 0]}, "feature_strides must give a positive stride"),
    ],
)
def test_invalid_configs_raise_at_config_time(config_class, kwargs, message):
    with pytest.raises(ValueError, match=message):
        config_class(**kwargs)


def test_invalid_config_edited_after_construction_is_refused_at_save(tmp_path):
    config = InstrumentTransformerConfig()
    config.num_attention_heads = 3
    with pytest.raises(ValueError, match="does not divide"):
        config.save_pretrained(tmp_path)


def test_default_models_are_small():
    sizes = {t: sum(p.numel() for p in make_model(t).parameters()) * 4 for t in MODEL_TYPES}
    assert all(size < 1_000_000 for size in sizes.values()), sizes  # bytes of float32 weights
    assert isinstance(make_model("cnn"), InstrumentCNNForAudioClassification)
    assert isinstance(make_model("transformer"), InstrumentTransformerForAudioClassification)


