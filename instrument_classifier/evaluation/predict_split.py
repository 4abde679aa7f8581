"""The one loop that scores a prepared dataset split with a saved model."""

from __future__ import annotations

from pathlib import Path


def predict_split(model_dir: Path, dataset_path: Path, split: str, batch_size: int = 64):
    """``(y_true, probabilities)`` of a saved model on a prepared split, window level."""
    import numpy as np
    import torch
    from transformers import AutoModelForAudioClassification

    from .. import modeling  # noqa: F401  (registers the model classes with the Auto* factories)
    from ..data.prepare import load_prepared
    from ..modeling.feature_extraction_instrument import InstrumentFeatureExtractor

    model = AutoModelForAudioClassification.from_pretrained(str(model_dir), trust_remote_code=False).eval()
    extractor = InstrumentFeatureExtractor.from_pretrained(str(model_dir))
    dataset, _, _ = load_prepared(dataset_path)
    rows = dataset[split].with_format("numpy", columns=["input_features", "labels"])
    ys, ps = [], []
    with torch.no_grad():
        for batch in rows.iter(batch_size=batch_size):
            x = torch.from_numpy(extractor.normalize(np.asarray(batch["input_features"], dtype=np.float32)))
            ps.append(torch.sigmoid(model(input_features=x).logits).numpy())
            ys.append(np.asarray(batch["labels"]))
    return np.concatenate(ys), np.concatenate(ps)
