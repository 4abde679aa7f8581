"""Train the head of a classifier on a frozen front end (musicnn, YAMNet or EfficientAT) as a linear probe: one
logistic regression per label.

With the backbone frozen, a training window's representation (musicnn's penultimate embedding, pooled frame
features and tag logits; YAMNet's embedding and AudioSet logits pooled over the window's patches; EfficientAT's
embedding and AudioSet logits of the window) never changes.
So it is computed once, and each label's head is the solution of one convex problem (L2-regularised logistic
regression, balanced class weights) instead of epochs of gradient steps that run the backbone again every time.
``train.py --model_name_or_path <a musicnn model folder>`` still fine-tunes such a model by gradient (the head, or
everything with ``freeze_backbone`` off).

Command line::

    python -m instrument_classifier.training.linear_probe --backbone musicnn_mtt.safetensors \\
        --dataset DATASET [--dataset ...] --output_dir runs/musicnn [--C 0.001]
    python -m instrument_classifier.training.linear_probe --backbone-type yamnet \\
        --backbone-weights yamnet_audioset.safetensors --dataset DATASET --output_dir runs/yamnet
    python -m instrument_classifier.training.linear_probe --backbone-type efficientat \\
        --backbone-weights efficientat_mn04.safetensors --dataset DATASET --output_dir runs/efficientat \\
        [--audioset-prior-weight 0.3 [--audioset-prior-labels Piano Violin Clarinet Flute]]

``DATASET`` is ``instrument-classifier prepare --feature-type musicnn --window-frames 187 --hop-frames 187``'s
output (``--feature-type yamnet --window-frames 374 --hop-frames 374`` for YAMNet, ``--feature-type efficientat
--window-frames 1496 --hop-frames 1496``, the same windows, for EfficientAT); ``musicnn_mtt.safetensors`` is
``scripts/convert_musicnn.py``'s, ``yamnet_audioset.safetensors`` ``scripts/convert_yamnet.py``'s,
``efficientat_mn04.safetensors`` ``scripts/convert_efficientat.py``'s (or pass
``--backbone`` a model folder of that family, whose backbone is reused). Without ``--backbone-type`` the family is
the one the first dataset's features are made for (musicnn when neither).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from safetensors.torch import load_file
from sklearn.linear_model import LogisticRegression
from tqdm.auto import tqdm

from ..atomic_write import write_dir
from ..data.prepare import load_prepared
from ..evaluation.metrics import compute_instrument_metrics, near_zero_thresholds, tune_thresholds
from ..modeling import (
    InstrumentEfficientAtConfig,
    InstrumentEfficientAtForAudioClassification,
    InstrumentMusicnnConfig,
    InstrumentMusicnnForAudioClassification,
    InstrumentYamnetConfig,
    InstrumentYamnetForAudioClassification,
)
from ..modeling.efficientat_frontend import AUDIOSET_CLASSES
from ..modeling.feature_extraction_instrument import (
    InstrumentFeatureExtractor,
    default_feature_settings,
    feature_settings,
)

__all__ = ["BACKBONES", "AUDIOSET_CLASS_OF_LABEL", "audioset_prior", "set_audioset_prior", "new_classifier",
           "new_musicnn_classifier", "window_representations", "fit_linear_head", "head_probabilities", "main"]

#: Front-end family -> (config class, model class, the model's attribute holding the backbone, prepare flags).
BACKBONES = {
    "musicnn": (InstrumentMusicnnConfig, InstrumentMusicnnForAudioClassification, "musicnn",
                "--feature-type musicnn --window-frames 187"),
    "yamnet": (InstrumentYamnetConfig, InstrumentYamnetForAudioClassification, "yamnet",
               "--feature-type yamnet --window-frames 374"),
    "efficientat": (InstrumentEfficientAtConfig, InstrumentEfficientAtForAudioClassification, "efficientat",
                    "--feature-type efficientat --window-frames 1496"),
}

#: The AudioSet class (``efficientat_frontend.AUDIOSET_CLASSES``) of each MusicNet instrument that has one: what an
#: EfficientAT head's AudioSet prior mixes in (its config's ``audioset_prior``).
AUDIOSET_CLASS_OF_LABEL = {
    "Piano": "Piano", "Harpsichord": "Harpsichord", "Violin": "Violin, fiddle", "Cello": "Cello",
    "Contrabass": "Double bass", "French Horn": "French horn", "Clarinet": "Clarinet", "Flute": "Flute",
}

#: Labels with fewer positive training windows than this get no head (their probability stays ~0).
MIN_POSITIVES = 5
#: Bias of a label without a head: probability 4.5e-5, never detected.
ABSENT_BIAS = -10.0


def new_classifier(backbone: str, taxonomy: str = "musicnet11", feature_extractor=None,
                   backbone_type: str = "musicnn"):
    """A classifier on a frozen front end with the backbone's weights and an untrained head, and its feature
    extractor.

    Parameters
    ----------
    backbone : str
        A ``.safetensors`` file of ``scripts/convert_musicnn.py`` (a ``MusicnnFrontend`` state dict),
        ``scripts/convert_yamnet.py`` (a ``YamnetFrontend`` one) or ``scripts/convert_efficientat.py`` (an
        ``EfficientAtFrontend`` one), or a classifier folder of that family whose backbone is reused.
    taxonomy : str
        Label taxonomy of the new head.
    feature_extractor : InstrumentFeatureExtractor, optional
        Default: ``feature_type=backbone_type`` with its default settings.
    backbone_type : {"musicnn", "yamnet", "efficientat"}
        The front-end family.
    """
    if backbone_type not in BACKBONES:
        raise ValueError(f"backbone_type must be one of {sorted(BACKBONES)}, got {backbone_type!r}")
    config_class, model_class, attribute, _ = BACKBONES[backbone_type]
    fe = feature_extractor or InstrumentFeatureExtractor(**default_feature_settings(backbone_type))
    if fe.feature_type != backbone_type:
        raise ValueError(f"the {backbone_type} classifier reads feature_type {backbone_type!r}, "
                         f"got {fe.feature_type!r}")
    path = Path(backbone)
    if path.is_dir():
        source = model_class.from_pretrained(str(path), use_safetensors=True)
        state, architecture = getattr(source, attribute).state_dict(), source.config.backbone
    elif path.suffix == ".safetensors" and path.is_file():
        state, architecture = load_file(str(path)), None
    else:
        raise FileNotFoundError(f"{backbone}: not a {backbone_type} .safetensors file or {backbone_type} model folder")
    config = config_class(taxonomy=taxonomy, backbone=architecture, feature_size=fe.feature_size,
                          sampling_rate=fe.sampling_rate, hop_length=fe.hop_length)
    model = model_class(config)
    try:
        getattr(model, attribute).load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{backbone}: not {backbone_type} weights of this architecture ({exc})") from None
    if hasattr(model, "round_backbone_to_storage"):  # train and measure the weights the folder will hold
        model.round_backbone_to_storage()
    return model.eval(), fe


def audioset_prior(labels: Sequence[str]) -> Dict[str, int]:
    """``{label: AudioSet class index}`` for those of ``labels`` with an AudioSet class: an EfficientAT config's
    ``audioset_prior``."""
    return {label: AUDIOSET_CLASSES[AUDIOSET_CLASS_OF_LABEL[label]][0] for label in labels
            if label in AUDIOSET_CLASS_OF_LABEL}


def set_audioset_prior(model, weight: float, labels: Optional[Sequence[str]] = None) -> None:
    """Give an EfficientAT classifier the AudioSet prior: its labels with an AudioSet class (:func:`audioset_prior`;
    only those of ``labels`` when given) get ``(1 - weight) * head + weight * AudioSet logit``."""
    config = model.config
    prior = audioset_prior([config.id2label[i] for i in range(config.num_labels)])
    unknown = sorted(set(labels or ()) - set(prior))
    if unknown:
        raise ValueError(f"no AudioSet class for {unknown}; these labels have one: {sorted(prior)}")
    config.audioset_prior = {k: v for k, v in prior.items() if labels is None or k in labels}
    config.audioset_prior_weight = float(weight)
    config.validate()


def new_musicnn_classifier(backbone: str, taxonomy: str = "musicnet11", feature_extractor=None):
    """A musicnn classifier with the backbone's weights and an untrained head (:func:`new_classifier`)."""
    return new_classifier(backbone, taxonomy, feature_extractor, "musicnn")


@torch.inference_mode()
def window_representations(model, dataset, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """The head's input (before standardisation) for every window of a prepared split: ``(N, size)`` float32."""

    model.eval()
    rows = dataset.with_format("numpy", columns=["input_features"])
    out = np.empty((len(rows), model.config.representation_size), dtype=np.float32)
    device = next(model.parameters()).device
    family = model.config.model_type.removeprefix("instrument_")
    for first in tqdm(range(0, len(rows), batch_size), desc=f"{family} representations", unit="batch",
                      disable=not progress, leave=False):
        x = torch.from_numpy(np.asarray(rows[first : first + batch_size]["input_features"], dtype=np.float32))
        out[first : first + len(x)] = model.representation(x.to(device)).float().cpu().numpy()
    return out


def fit_linear_head(model, representations: np.ndarray, labels: np.ndarray, C: float = 1e-3,
                    min_positives: int = MIN_POSITIVES, seed: int = 0) -> List[str]:
    """Set the standardisation and the linear head of ``model`` from training windows; returns the labels left
    without a head (fewer than ``min_positives`` positive windows: bias ``ABSENT_BIAS``, never detected).

    Parameters
    ----------
    representations : np.ndarray, shape (N, representation_size)
        :func:`window_representations` of the training windows.
    labels : np.ndarray, shape (N, num_labels)
        Multi-hot window labels.
    C : float
        Inverse L2 strength of each logistic regression on the standardised representation; small values keep
        the head close to the front end's broad directions, which carry over from rendered to real audio.
    """

    x = np.asarray(representations, dtype=np.float64)
    y = (np.asarray(labels) > 0.5).astype(np.int64)
    if x.ndim != 2 or x.shape[1] != model.config.representation_size or len(x) != len(y):
        raise ValueError(f"representations {x.shape} and labels {y.shape} do not match the model")
    mean = x.mean(axis=0)
    scale = np.maximum(x.std(axis=0), 1e-6)
    standardized = (x - mean) / scale
    weight = np.zeros((y.shape[1], x.shape[1]))
    bias = np.full(y.shape[1], ABSENT_BIAS)
    absent = []
    for c in range(y.shape[1]):
        positives = int(y[:, c].sum())
        if positives < min_positives or positives == len(y):
            absent.append(model.config.id2label[c])
            continue
        fit = LogisticRegression(C=C, class_weight="balanced", max_iter=2000, random_state=seed)
        fit.fit(standardized, y[:, c])
        weight[c], bias[c] = fit.coef_[0], fit.intercept_[0]
    with torch.no_grad():
        model.representation_mean.copy_(torch.from_numpy(mean))
        model.representation_scale.copy_(torch.from_numpy(scale))
        model.classifier.weight.copy_(torch.from_numpy(weight))
        model.classifier.bias.copy_(torch.from_numpy(bias))
    return absent


def head_probabilities(model, representations: np.ndarray) -> np.ndarray:
    """The head's label probabilities for :func:`window_representations` rows, as the model's forward pass gives
    them (the model's ``head_logits``, then the sigmoid) without running the backbone again: ``(N, num_labels)``
    float32."""
    x = torch.from_numpy(np.asarray(representations, dtype=np.float32))
    with torch.inference_mode():
        return torch.sigmoid(model.head_logits(x.to(model.classifier.weight.dtype))).float().numpy()


def _split_arrays(model, datasets: Sequence[str], split: str, batch_size: int, progress: bool):
    reps, labels = [], []
    for path in datasets:
        data, info, _ = load_prepared(path)
        if split not in data or len(data[split]) == 0:
            continue
        if list(info["labels"]) != [model.config.id2label[i] for i in range(model.config.num_labels)]:
            raise ValueError(f"{path}: labels {info['labels']} differ from the model's")
        reps.append(window_representations(model, data[split], batch_size, progress))
        labels.append(np.asarray(data[split].with_format("numpy", columns=["labels"])["labels"]))
    if not reps:
        return None, None
    return np.concatenate(reps), np.concatenate(labels)


def _check_datasets(datasets: Sequence[str], feature_extractor) -> Dict[str, object]:
    family = feature_extractor.feature_type
    infos = []
    for path in datasets:
        _, info, extractor = load_prepared(path)
        if feature_settings(extractor) != feature_settings(feature_extractor):
            raise ValueError(f"{path}: prepared with other features than {family}'s "
                             f"(prepare {BACKBONES[family][3]})")
        infos.append(info)
    taxonomies = {info["taxonomy"] for info in infos}
    if len(taxonomies) != 1:
        raise ValueError(f"the datasets have different taxonomies: {sorted(taxonomies)}")
    return infos[0]


def with_level(fe, level_dbfs: Optional[float], max_gain_db: float = 20.0):
    """``fe`` (an ``InstrumentFeatureExtractor``) bringing every recording it reads to ``level_dbfs`` (at most
    ``max_gain_db`` of amplification; ``None``: as recorded), validated: the model's inputs from then on. The
    prepared training windows keep the levels they were prepared at (drawn ones, for the recipe's renders), around
    which the level lies."""
    return type(fe).from_dict({**fe.to_dict(), "level_dbfs": level_dbfs, "level_max_gain_db": max_gain_db})


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m instrument_classifier.training.linear_probe",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", "--backbone-weights", dest="backbone", required=True,
                        help="front-end weights (.safetensors) or a model folder of the family")
    parser.add_argument("--backbone-type", choices=sorted(BACKBONES), default=None,
                        help="front-end family (default: the one the first dataset's features are for, else musicnn)")
    parser.add_argument("--dataset", required=True, action="append",
                        help="prepared dataset of the family's features (repeatable)")
    parser.add_argument("--output_dir", required=True, help="where the model folder is written")
    parser.add_argument("--C", type=float, default=1e-3,
                        help="inverse L2 strength of the logistic regressions (default 0.001; the recipe uses 0.003 "
                             "for EfficientAT)")
    parser.add_argument("--batch_size", type=int, default=64, help="windows per backbone pass (default 64)")
    parser.add_argument("--audioset-prior-weight", type=float, default=0.0,
                        help="EfficientAT only: mix this share, in [0, 1), of AudioSet's own logit into the logits "
                             "of the instruments AudioSet names (default 0: no prior; the recipe uses 0.3)")
    parser.add_argument("--audioset-prior-labels", nargs="+", default=None, metavar="LABEL",
                        help="only these instruments get the prior (quote names with spaces; default: every one "
                             f"with an AudioSet class: {', '.join(AUDIOSET_CLASS_OF_LABEL)}; the recipe: Piano "
                             "Violin Clarinet Flute, those its real clips can confirm it on)")
    parser.add_argument("--level-dbfs", type=float, default=None,
                        help="the saved model brings every recording to this level first (dBFS of the 95th "
                             "percentile of its 100-ms RMS; default: none, as recorded; the recipe uses -12)")
    parser.add_argument("--level-max-gain-db", type=float, default=20.0,
                        help="with --level-dbfs: the largest amplification in dB (default 20)")
    args = parser.parse_args(argv)
    if args.audioset_prior_labels and not args.audioset_prior_weight:
        parser.error("--audioset-prior-labels needs --audioset-prior-weight")

    backbone_type = args.backbone_type
    if backbone_type is None:
        _, _, first = load_prepared(args.dataset[0])
        backbone_type = first.feature_type if first.feature_type in BACKBONES else "musicnn"
    model, fe = new_classifier(args.backbone, backbone_type=backbone_type)
    info = _check_datasets(args.dataset, fe)
    if info["window_frames"] != model.config.window_frames:
        print(f"warning: windows of {info['window_frames']} frames; the {backbone_type} classifier reads "
              f"{model.config.window_frames}", file=sys.stderr)
    if info["taxonomy"] != model.config.taxonomy:
        model, fe = new_classifier(args.backbone, info["taxonomy"], fe, backbone_type)
    try:  # checked before the long part: reading every window through the backbone
        fe = with_level(fe, args.level_dbfs, args.level_max_gain_db)
    except ValueError as exc:
        parser.error(str(exc))
    if args.audioset_prior_weight:
        if backbone_type != "efficientat":
            parser.error(f"--audioset-prior-weight needs --backbone-type efficientat, not {backbone_type}")
        try:
            set_audioset_prior(model, args.audioset_prior_weight, args.audioset_prior_labels)
        except ValueError as exc:
            parser.error(str(exc))
    x, y = _split_arrays(model, args.dataset, "train", args.batch_size, progress=True)
    if x is None:
        print("linear_probe: error: no training windows", file=sys.stderr)
        return 2
    absent = fit_linear_head(model, x, y, C=args.C)
    if absent:
        print(f"no head for {', '.join(absent)} (fewer than {MIN_POSITIVES} positive windows)")
    x_val, y_val = _split_arrays(model, args.dataset, "validation", args.batch_size, progress=True)
    if args.audioset_prior_weight:
        print(f"AudioSet prior {args.audioset_prior_weight:g} on {', '.join(model.config.audioset_prior)}")
    if x_val is not None:
        scores = head_probabilities(model, x_val)
        model.config.thresholds = [float(t) for t in tune_thresholds(y_val, scores)]
        metrics = compute_instrument_metrics(y_val, scores, model.config.thresholds)
        print(f"validation windows ({len(y_val)}): macro AUC {metrics['roc_auc_macro']:.3f}, "
              f"micro F1 {metrics['f1_micro']:.3f}")
        threshold_warning = near_zero_thresholds(model.config.thresholds, y_val,
                                                 [model.config.id2label[i] for i in range(model.config.num_labels)])
        if threshold_warning:
            print(f"warning: {threshold_warning}")
    write_dir(args.output_dir, lambda folder: (model.save_pretrained(folder), fe.save_pretrained(folder)))
    print(f"saved {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
