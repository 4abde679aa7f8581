"""Convert EfficientAT's ``mn04`` AudioSet checkpoint (MIT) into safetensors for ``EfficientAtFrontend``.

Reads the PyTorch checkpoint ``mn04_as_mAP_432.pt`` (a plain state dict) with ``torch.load(weights_only=True)``,
which unpickles tensors only and runs no code from the file, folds every batch norm (running statistics, eps
0.001) into the convolution before it, renames the tensors to
:class:`instrument_classifier.modeling.efficientat_frontend.EfficientAtFrontend`'s modules and writes

* ``OUTPUT.safetensors``: that state dict (float32, about 4 MB), with the source (repository, commit, path, sha256
  of the checkpoint), the licence and the 527 AudioSet class names (``--class-map``, EfficientAT's
  ``class_labels_indices.csv``) in its metadata;
* ``OUTPUT.json``: the same provenance and the verification below.

It verifies the conversion in the same run: a reference forward pass written here on the checkpoint's own tensors
(every convolution followed by its batch norm, as EfficientAT's network runs in eval mode) against the converted
module, on white noise, a 440-Hz sine and (``--clip``) a recording of your choice, each 3 s at 32 kHz through
:func:`efficientat_log_mel`: the embedding and the logits must agree to 1e-4 relative to their size, and the top-5
AudioSet classes must come in the same order. The exit status is 1 when a check fails.

The source used for the package's weights: the copy of EfficientAT's release file committed at
github.com/nikih94/swch-audio-classification @ 2b362d97544673ef1da403b44ecbe1174d8619ec,
``resources/mn04_as_mAP_432.pt`` (sha256 below); the class names from ``metadata/class_labels_indices.csv`` of the
same commit. EfficientAT (Florian Schmid, 2022) is released under the MIT licence; AudioSet's labels are CC BY 4.0.

Run with a Python that has ``torch``, ``numpy`` and ``safetensors`` (``transformers`` is not needed: the model
file is loaded by path)::

    python scripts/convert_efficientat.py --checkpoint mn04_as_mAP_432.pt --output efficientat_mn04.safetensors \\
        --class-map class_labels_indices.csv [--clip some_recording.wav]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
FRONTEND_FILE = REPO_ROOT / "instrument_classifier" / "modeling" / "efficientat_frontend.py"

SOURCE = {
    "repository": "https://github.com/nikih94/swch-audio-classification",
    "commit": "2b362d97544673ef1da403b44ecbe1174d8619ec",
    "path": "resources/mn04_as_mAP_432.pt",
    "origin": "EfficientAT release v0.0.1, mn04_as_mAP_432.pt (github.com/fschmid56/EfficientAT)",
}
KNOWN_SHA256 = "899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c"
LICENCE = ("MIT (EfficientAT code and pre-trained models, Copyright (c) 2022 Florian Schmid); trained on AudioSet, "
           "whose class labels and ontology are CC BY 4.0")
BATCH_NORM_EPS = 1e-3
VERIFY_SECONDS = 3.0


def load_frontend_module():
    """Import ``efficientat_frontend.py`` by path: it needs only numpy, torch and safetensors."""
    spec = importlib.util.spec_from_file_location("efficientat_frontend", FRONTEND_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def class_names(path: Path) -> List[str]:
    """Display names of ``class_labels_indices.csv`` (``index,mid,display_name``), in output order."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [row["display_name"] for row in sorted(rows, key=lambda r: int(r["index"]))]


def _source_layers(model) -> List[tuple]:
    """``(our module name, checkpoint prefix of its convolution and batch norm, or of a linear layer)`` in order."""
    layers = [("stem", "features.0.")]
    for i, block in enumerate(model.blocks):
        prefix, j = f"features.{i + 1}.block.", 0
        if block.expand is not None:
            layers.append((f"blocks.{i}.expand", f"{prefix}{j}."))
            j += 1
        layers.append((f"blocks.{i}.depthwise", f"{prefix}{j}."))
        j += 1
        if block.squeeze_excite is not None:
            se = f"{prefix}{j}.conc_se_layers.0."
            layers += [(f"blocks.{i}.squeeze_excite.reduce", se + "fc1."),
                       (f"blocks.{i}.squeeze_excite.expand", se + "fc2.")]
            j += 1
        layers.append((f"blocks.{i}.project", f"{prefix}{j}."))
    layers += [("last_conv", f"features.{len(model.blocks) + 1}."), ("hidden", "classifier.2."),
               ("classifier", "classifier.5.")]
    return layers


def convert(checkpoint: Dict[str, Any], model) -> Dict[str, Any]:
    """The converted state dict: each convolution's batch norm folded into its weight and a new bias."""
    import torch

    state, used = {}, set()
    for name, prefix in _source_layers(model):
        if prefix + "weight" in checkpoint:  # a linear layer
            state[name + ".weight"], state[name + ".bias"] = checkpoint[prefix + "weight"], checkpoint[prefix + "bias"]
            used |= {prefix + "weight", prefix + "bias"}
            continue
        conv, norm = prefix + "0.", prefix + "1."
        scale = checkpoint[norm + "weight"] / torch.sqrt(checkpoint[norm + "running_var"] + BATCH_NORM_EPS)
        state[name + ".weight"] = checkpoint[conv + "weight"] * scale[:, None, None, None]
        state[name + ".bias"] = checkpoint[norm + "bias"] - checkpoint[norm + "running_mean"] * scale
        used |= {conv + "weight"} | {norm + k for k in ("weight", "bias", "running_mean", "running_var",
                                                          "num_batches_tracked")}
    unused = sorted(set(checkpoint) - used)
    if unused:
        raise ValueError(f"checkpoint tensors not converted (another architecture?): {unused[:5]}")
    return {k: v.float().contiguous() for k, v in state.items()}


def reference_forward(checkpoint, model, log_mel):
    """EfficientAT's network in eval mode, written on the checkpoint's own tensors (unfolded batch norms), with
    the converted module's block structure: ``(embedding, logits)``."""
    import torch.nn.functional as F

    def conv_bn(x, prefix, module):
        x = F.conv2d(x, checkpoint[prefix + "0.weight"], None, module.stride, module.padding, 1, module.groups)
        return F.batch_norm(x, checkpoint[prefix + "1.running_mean"], checkpoint[prefix + "1.running_var"],
                            checkpoint[prefix + "1.weight"], checkpoint[prefix + "1.bias"], False, 0.0,
                            BATCH_NORM_EPS)

    prefixes = dict(_source_layers(model))
    x = F.hardswish(conv_bn(log_mel.unsqueeze(1), prefixes["stem"], model.stem))
    for i, block in enumerate(model.blocks):
        out = x
        if block.expand is not None:
            out = block.activation(conv_bn(out, prefixes[f"blocks.{i}.expand"], block.expand))
        out = block.activation(conv_bn(out, prefixes[f"blocks.{i}.depthwise"], block.depthwise))
        if block.squeeze_excite is not None:
            fc1, fc2 = prefixes[f"blocks.{i}.squeeze_excite.reduce"], prefixes[f"blocks.{i}.squeeze_excite.expand"]
            gates = F.linear(F.relu(F.linear(out.mean((2, 3)), checkpoint[fc1 + "weight"], checkpoint[fc1 + "bias"])),
                             checkpoint[fc2 + "weight"], checkpoint[fc2 + "bias"])
            out = out * gates.sigmoid()[:, :, None, None]
        out = conv_bn(out, prefixes[f"blocks.{i}.project"], block.project)
        x = out + x if block.residual else out
    embedding = F.hardswish(conv_bn(x, prefixes["last_conv"], model.last_conv)).mean((2, 3))
    hidden = F.hardswish(F.linear(embedding, checkpoint["classifier.2.weight"], checkpoint["classifier.2.bias"]))
    return embedding, F.linear(hidden, checkpoint["classifier.5.weight"], checkpoint["classifier.5.bias"])


def test_signals(clip: Optional[Path], sampling_rate: int) -> Dict[str, np.ndarray]:
    n = int(VERIFY_SECONDS * sampling_rate)
    signals = {"white noise": np.random.default_rng(0).normal(0, 0.1, n).astype(np.float32),
               "440-Hz sine": (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / sampling_rate)).astype(np.float32)}
    if clip is not None:
        import soundfile as sf
        import soxr

        audio, rate = sf.read(str(clip), dtype="float32", always_2d=True)
        audio = soxr.resample(audio.mean(axis=1), rate, sampling_rate, quality="HQ")[:n]
        signals[clip.name] = np.pad(audio, (0, n - len(audio))).astype(np.float32)
    return signals


def verify(checkpoint, model, frontend, names: List[str], signals: Dict[str, np.ndarray]) -> dict:
    import torch

    report = {}
    with torch.no_grad():
        for label, wave in signals.items():
            log_mel = frontend.efficientat_log_mel(wave).unsqueeze(0)
            ref_embedding, ref_logits = reference_forward(checkpoint, model, log_mel)
            out = model(log_mel)
            top = lambda logits: [names[k] if names else int(k) for k in logits[0].topk(5).indices]  # noqa: E731
            report[label] = {
                "embedding_max_abs_diff": float((out.embedding - ref_embedding).abs().max()),
                "embedding_max_abs": float(ref_embedding.abs().max()),
                "logits_max_abs_diff": float((out.logits - ref_logits).abs().max()),
                "logits_max_abs": float(ref_logits.abs().max()),
                "top5_reference": top(ref_logits), "top5_converted": top(out.logits),
            }
    return report


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="EfficientAT's mn04_as_mAP_432.pt")
    parser.add_argument("--output", type=Path, required=True, help="safetensors file to write")
    parser.add_argument("--class-map", type=Path, default=None, help="EfficientAT's class_labels_indices.csv")
    parser.add_argument("--clip", type=Path, default=None, help="a recording to verify on too (any rate, mono-mixed)")
    args = parser.parse_args(argv)

    import torch
    from safetensors.torch import save_file

    data = args.checkpoint.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    if sha256 != KNOWN_SHA256:
        print(f"warning: {args.checkpoint} has sha256 {sha256}, not the verified file's {KNOWN_SHA256}",
              file=sys.stderr)
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{args.checkpoint}: expected a state dict, got {type(checkpoint).__name__}")
    frontend = load_frontend_module()
    names = class_names(args.class_map) if args.class_map else []
    if names and len(names) != frontend.NUM_CLASSES:
        raise ValueError(f"{args.class_map}: {len(names)} classes, expected {frontend.NUM_CLASSES}")
    misplaced = {name: names[index] for name, (index, _) in frontend.AUDIOSET_CLASSES.items()
                 if names and names[index] != name}
    if misplaced:  # the instrument classes the heads read by index (AUDIOSET_CLASSES) must be where it says
        raise ValueError(f"{args.class_map}: AUDIOSET_CLASSES' indices name other classes there: {misplaced}")

    model = frontend.EfficientAtFrontend().eval()
    state = convert(checkpoint, model)
    model.load_state_dict(state, strict=True)
    report = verify(checkpoint, model, frontend, names, test_signals(args.clip, frontend.SAMPLING_RATE))

    provenance = {**SOURCE, "sha256": sha256, "bytes": len(data), "licence": LICENCE}
    metadata = {"format": "pt", "source": json.dumps(provenance), "licence": LICENCE}
    if names:
        metadata["class_names"] = json.dumps(names)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.output), metadata=metadata)
    args.output.with_suffix(".json").write_text(json.dumps({"source": provenance, "verification": report}, indent=2))

    ok = True
    for label, r in report.items():
        same = r["top5_reference"] == r["top5_converted"]
        print(f"{label}: top-5 {r['top5_reference']}; converted: embedding max |diff| "
              f"{r['embedding_max_abs_diff']:.2g} (max |emb| {r['embedding_max_abs']:.3g}), logits max |diff| "
              f"{r['logits_max_abs_diff']:.2g}, top-5 {'same order' if same else 'DIFFERENT'}")
        ok &= (same and r["embedding_max_abs_diff"] <= 1e-4 * max(1.0, r["embedding_max_abs"])
               and r["logits_max_abs_diff"] <= 1e-4 * max(1.0, r["logits_max_abs"]))
    print(f"wrote {args.output} ({len(state)} tensors, {sum(v.numel() for v in state.values()):,} weights)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
