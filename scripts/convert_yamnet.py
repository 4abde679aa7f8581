"""Convert Google's YAMNet TFLite model (AudioSet tagger, Apache-2.0) into safetensors for ``YamnetFrontend``.

Reads the TF-Hub YAMNet TFLite classification model (dynamic-range int8 weights, batch norm folded into the
convolution biases), walks its operators in order (the first 3x3 convolution, 13 depthwise + pointwise pairs, the
final dense layer), dequantizes every int8 weight (per-channel scales and zero points along the tensor's
``quantized_dimension``), transposes it to PyTorch's layout and writes

* ``OUTPUT.safetensors``: the state dict of
  :class:`instrument_classifier.modeling.yamnet_frontend.YamnetFrontend` (float32, about 15 MB), with the source
  (repository, commit, path, sha1 of the tflite), the licence and the 521 AudioSet class names (from
  ``yamnet_class_map.csv`` beside the tflite, if there) in its metadata;
* ``OUTPUT.json``: the same provenance and the verification below.

It then verifies the port in the same run, on white noise, a 440-Hz sine and (``--clip``) a recording of your
choice, each 0.975 s at 16 kHz (one patch), feeding the torch model the tflite's own log-mel patch:

* layer by layer, every convolution fed the tflite's input tensor gives its output tensor to ~1e-6 where the
  tflite computes in float (the first convolution and the depthwise ones), and to about 1 % (up to ~10 % in the
  last, sparse layers) where it rounds its activations to int8 on the fly (the pointwise convolutions and the
  dense layer are hybrid int8 kernels);
* with that rounding simulated (symmetric, one scale per tensor, before each hybrid layer), the hybrid layers match
  too (~1e-6 relative) and the whole network gives the tflite's embedding and logits to ~1e-5 and its top-5
  AudioSet classes in the same order: the weights are exact, and the float port (what the package runs, the
  faithful float YAMNet) differs from the tflite by the tflite's activation rounding only;
* the float port's top-1 class must be the tflite's; its embedding difference and top-5 are reported.

Also reported: our float log-mel (:func:`yamnet_log_mel`) against the tflite's, which uses int8 DFT matrices (the
large differences sit in near-silent bands, where ``log(mel + 0.001)`` is steep). The exit status is 1 when a check
fails.

The source used for the package's weights: ``yamnet.tflite`` committed at github.com/Jaskaran197/Speaker-Detector
@ 4ec29b6938f1051fe36b46786f8d486d8b74a38e (4,078,224 bytes, sha1 7f54d20da3b32164849274af1ab0651c75cac681): the
TF-Hub ``lite-model/yamnet/classification/tflite/1`` file; YAMNet is released by Google under Apache-2.0
(tensorflow/models), trained on AudioSet (labels CC BY 4.0).

TensorFlow is imported only to read the tflite (``tf.lite.Interpreter``), so run this with a Python that has
``tensorflow`` (2.15), ``torch``, ``numpy`` and ``safetensors``; ``transformers`` is not needed (the model file is
loaded by path)::

    python scripts/convert_yamnet.py --tflite yamnet.tflite --output yamnet_audioset.safetensors \\
        [--clip some_recording.wav]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
FRONTEND_FILE = REPO_ROOT / "instrument_classifier" / "modeling" / "yamnet_frontend.py"

SOURCE = {
    "repository": "https://github.com/Jaskaran197/Speaker-Detector",
    "commit": "4ec29b6938f1051fe36b46786f8d486d8b74a38e",
    "path": "yamnet.tflite",
    "origin": "TF-Hub lite-model/yamnet/classification/tflite/1 (Google YAMNet, tensorflow/models research/audioset)",
}
KNOWN_SHA1 = "7f54d20da3b32164849274af1ab0651c75cac681"
LICENCE = ("Apache-2.0 (YAMNet model and weights, Google, tensorflow/models); trained on AudioSet, whose class "
           "labels and ontology are CC BY 4.0")
#: Samples the TFLite model takes: 0.975 s, one 96-frame patch.
INPUT_SAMPLES = 15600


def load_frontend_module():
    """Import ``yamnet_frontend.py`` by path: it needs only numpy and torch, not the package's transformers."""
    spec = importlib.util.spec_from_file_location("yamnet_frontend", FRONTEND_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class TfliteModel:
    """The interpreter with every intermediate tensor kept, and its convolution / dense operators in order."""

    def __init__(self, path: Path):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf

        self.interpreter = tf.lite.Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
        self.interpreter.allocate_tensors()
        self.details = {d["index"]: d for d in self.interpreter.get_tensor_details()}
        ops = self.interpreter._get_ops_details()
        # DEQUANTIZE ops turn some int8 depthwise weights into float tensors: follow them back to the int8 source.
        self.dequantized_from = {op["outputs"][0]: op["inputs"][0] for op in ops if op["op_name"] == "DEQUANTIZE"}
        self.convs = [op for op in ops if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
        self.dense = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"][-1]  # the first three are the DFT/mel
        self.log_mel_index = next(op["outputs"][0] for op in ops if op["op_name"] == "LOG")
        self.patch_index = self.convs[0]["inputs"][0]
        self.embedding_index = next(op["outputs"][0] for op in ops if op["op_name"] == "MEAN")
        self.logits_index = self.dense["outputs"][0]

    def weight(self, index: int) -> np.ndarray:
        """A constant tensor as float32, dequantized per channel if it is int8."""
        index = self.dequantized_from.get(index, index)
        detail = self.details[index]
        array = self.interpreter.get_tensor(index)
        if detail["dtype"] == np.int8:
            quant = detail["quantization_parameters"]
            shape = [1] * array.ndim
            shape[quant["quantized_dimension"]] = -1
            scales = np.asarray(quant["scales"], dtype=np.float32).reshape(shape)
            zeros = np.asarray(quant["zero_points"], dtype=np.float32).reshape(shape)
            array = (array.astype(np.float32) - zeros) * scales
        return np.ascontiguousarray(array, dtype=np.float32)

    def run(self, waveform: np.ndarray) -> None:
        index = self.interpreter.get_input_details()[0]["index"]
        self.interpreter.set_tensor(index, waveform[None].astype(np.float32))
        self.interpreter.invoke()

    def tensor(self, index: int) -> np.ndarray:
        return self.interpreter.get_tensor(index).copy()


def convert(tflite: TfliteModel, model) -> Tuple[Dict[str, np.ndarray], List[Tuple[str, dict]]]:
    """The torch state dict (numpy arrays) and, per torch convolution, its tflite operator."""
    torch_convs = [("stem.conv", model.stem.conv)]
    for i, block in enumerate(model.blocks):
        torch_convs += [(f"blocks.{i}.depthwise.conv", block.depthwise.conv),
                        (f"blocks.{i}.pointwise", block.pointwise)]
    if len(torch_convs) != len(tflite.convs):
        raise ValueError(f"the tflite has {len(tflite.convs)} convolutions, YamnetFrontend {len(torch_convs)}")
    state, pairs = {}, []
    for (name, module), op in zip(torch_convs, tflite.convs):
        kernel, bias = tflite.weight(op["inputs"][1]), tflite.weight(op["inputs"][2])
        if op["op_name"] == "DEPTHWISE_CONV_2D":  # (1, kh, kw, channels) -> (channels, 1, kh, kw)
            if module.groups != module.in_channels:
                raise ValueError(f"{name}: the tflite has a depthwise convolution here, torch has not")
            kernel = kernel.transpose(3, 0, 1, 2)
        else:  # (out, kh, kw, in) -> (out, in, kh, kw)
            kernel = kernel.transpose(0, 3, 1, 2)
        for key, array in ((f"{name}.weight", kernel), (f"{name}.bias", bias)):
            expected = tuple(dict(model.named_parameters())[key].shape)
            if array.shape != expected:
                raise ValueError(f"{key}: tflite gives {array.shape}, torch expects {expected}")
            state[key] = np.ascontiguousarray(array)
        pairs.append((name, op))
    state["classifier.weight"] = tflite.weight(tflite.dense["inputs"][1])  # (521, 1024): already (out, in)
    state["classifier.bias"] = tflite.weight(tflite.dense["inputs"][2])
    missing = sorted(set(model.state_dict()) - set(state))
    if missing:
        raise ValueError(f"torch tensors not filled: {missing}")
    return state, pairs


def test_signals(clip: Optional[Path]) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(INPUT_SAMPLES) / 16000.0
    signals = {"white noise": (0.1 * rng.standard_normal(INPUT_SAMPLES)).astype(np.float32),
               "sine 440 Hz": (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)}
    if clip is not None:
        import soundfile as sf
        from scipy.signal import resample_poly

        audio, rate = sf.read(str(clip), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if rate != 16000:
            g = np.gcd(16000, rate)
            audio = resample_poly(audio, 16000 // g, rate // g).astype(np.float32)
        start = max(0, len(audio) // 2 - INPUT_SAMPLES // 2)
        audio = audio[start : start + INPUT_SAMPLES]
        signals[f"clip {clip.name}"] = np.pad(audio, (0, INPUT_SAMPLES - len(audio))).astype(np.float32)
    return signals


def _quantize_like_tflite(module, inputs):
    """Forward pre-hook: the input rounded as TFLite's hybrid int8 kernels round their activations on the fly
    (symmetric, one scale per tensor: ``max |x| / 127``)."""
    import torch

    (x,) = inputs
    scale = x.abs().amax().clamp(min=1e-30) / 127.0
    return (torch.round(x / scale) * scale,)


def _layer_diffs(tflite: TfliteModel, model, pairs, simulate: bool) -> List[dict]:
    """Each convolution fed the tflite's own input tensor, against the tflite's output tensor."""
    import torch

    modules, out = dict(model.named_modules()), []
    for name, op in pairs:
        x = torch.from_numpy(tflite.tensor(op["inputs"][0])).permute(0, 3, 1, 2)
        reference = tflite.tensor(op["outputs"][0]).transpose(0, 3, 1, 2)
        hybrid = op["op_name"] == "CONV_2D" and name != "stem.conv"
        if simulate and hybrid:
            (x,) = _quantize_like_tflite(None, (x,))
        with torch.no_grad():
            y = modules[name[: -len(".conv")]](x) if name.endswith(".conv") else torch.relu(modules[name](x))
        diff = float(np.abs(y.numpy() - reference).max())
        out.append({"layer": name, "tflite": "hybrid int8" if hybrid else "float", "max_abs_diff": diff,
                    "relative": diff / max(float(np.abs(reference).max()), 1e-12)})
    return out


def verify(tflite: TfliteModel, model, frontend, pairs, names: List[str], signals) -> dict:
    """Per signal: the float port and the port with the tflite's activation rounding simulated, against the tflite."""
    import torch

    hybrid = [m for n, m in model.named_modules() if n.endswith("pointwise")] + [model.classifier]
    label_of = (lambda i: names[i]) if names else int
    report = {}
    for label, waveform in signals.items():
        tflite.run(waveform)
        patch = torch.from_numpy(tflite.tensor(tflite.patch_index)).reshape(1, 96, 64)
        emb_ref, logits_ref = tflite.tensor(tflite.embedding_index)[0], tflite.tensor(tflite.logits_index)[0]
        top_ref = [int(i) for i in np.argsort(-logits_ref)[:5]]
        entry = {"top5_tflite": [label_of(i) for i in top_ref], "embedding_max_abs": float(np.abs(emb_ref).max())}
        for mode in ("float", "simulated_int8_activations"):
            handles = [m.register_forward_pre_hook(_quantize_like_tflite) for m in hybrid] if mode != "float" else []
            try:
                with torch.no_grad():
                    out = model(patch)
                layers = _layer_diffs(tflite, model, pairs, simulate=mode != "float")
            finally:
                for handle in handles:
                    handle.remove()
            top = [int(i) for i in np.argsort(-out.logits[0].numpy())[:5]]
            entry[mode] = {
                "embedding_max_abs_diff": float(np.abs(out.embedding[0].numpy() - emb_ref).max()),
                "logits_max_abs_diff": float(np.abs(out.logits[0].numpy() - logits_ref).max()),
                "top5": [label_of(i) for i in top], "top5_same_order": top == top_ref,
                "top5_same_set": set(top) == set(top_ref), "top1_same": top[0] == top_ref[0],
                "float_layers_max_abs_diff": max(x["max_abs_diff"] for x in layers if x["tflite"] == "float"),
                "hybrid_layers_max_relative_diff": max(x["relative"] for x in layers if x["tflite"] != "float"),
                "layers": layers,
            }
        with torch.no_grad():
            ours_mel = frontend.yamnet_log_mel(waveform).numpy()[:96]
        entry["log_mel_vs_tflite_max_abs_diff"] = float(np.abs(ours_mel - tflite.tensor(tflite.log_mel_index)).max())
        report[label] = entry
    return report


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tflite", type=Path, required=True, help="YAMNet TFLite classification model")
    parser.add_argument("--output", type=Path, required=True, help="safetensors file to write")
    parser.add_argument("--class-map", type=Path, default=None,
                        help="yamnet_class_map.csv (default: beside the tflite, if there)")
    parser.add_argument("--clip", type=Path, default=None, help="a recording to verify on too (any rate, mono-mixed)")
    args = parser.parse_args(argv)

    import torch
    from safetensors.torch import save_file

    data = args.tflite.read_bytes()
    sha1 = hashlib.sha1(data).hexdigest()
    if sha1 != KNOWN_SHA1:
        print(f"warning: {args.tflite} has sha1 {sha1}, not the verified file's {KNOWN_SHA1}", file=sys.stderr)
    class_map = args.class_map or args.tflite.with_name("yamnet_class_map.csv")
    frontend = load_frontend_module()
    names = list(frontend.class_names(class_map.read_text())) if class_map.exists() else []
    if names and len(names) != frontend.NUM_CLASSES:
        raise ValueError(f"{class_map}: {len(names)} classes, expected {frontend.NUM_CLASSES}")

    tflite = TfliteModel(args.tflite)
    model = frontend.YamnetFrontend().eval()
    arrays, pairs = convert(tflite, model)
    state = {k: torch.from_numpy(v) for k, v in arrays.items()}
    model.load_state_dict(state, strict=True)
    report = verify(tflite, model, frontend, pairs, names, test_signals(args.clip))

    provenance = {**SOURCE, "sha1": sha1, "bytes": len(data), "licence": LICENCE}
    metadata = {"format": "pt", "source": json.dumps(provenance), "licence": LICENCE}
    if names:
        metadata["class_names"] = json.dumps(names)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(args.output), metadata=metadata)
    args.output.with_suffix(".json").write_text(json.dumps({"source": provenance, "verification": report}, indent=2))

    ok = True
    for label, r in report.items():
        f, q = r["float"], r["simulated_int8_activations"]
        print(f"{label}: tflite top-5 {r['top5_tflite']}")
        print(f"  float port:  embedding max |diff| {f['embedding_max_abs_diff']:.3g} (max |emb| "
              f"{r['embedding_max_abs']:.3g}), logits max |diff| {f['logits_max_abs_diff']:.3g}, top-1 "
              f"{'same' if f['top1_same'] else 'DIFFERENT'}, top-5 {'same set' if f['top5_same_set'] else 'differ'} "
              f"{f['top5']}; per layer: float convs max |diff| {f['float_layers_max_abs_diff']:.2g}, hybrid "
              f"convs max relative diff {f['hybrid_layers_max_relative_diff']:.2g}")
        print(f"  int8 activations simulated: embedding max |diff| {q['embedding_max_abs_diff']:.3g}, logits max "
              f"|diff| {q['logits_max_abs_diff']:.3g}, top-5 {'same order' if q['top5_same_order'] else 'DIFFER'}; "
              f"per layer: float convs {q['float_layers_max_abs_diff']:.2g}, hybrid convs max relative diff "
              f"{q['hybrid_layers_max_relative_diff']:.2g}")
        print(f"  log-mel (float DFT) vs tflite's (int8 DFT): max |diff| {r['log_mel_vs_tflite_max_abs_diff']:.3g}")
        ok &= (f["top1_same"] and f["float_layers_max_abs_diff"] < 1e-4 and q["top5_same_order"]
               and q["embedding_max_abs_diff"] < 0.05 * r["embedding_max_abs"])
    print(f"wrote {args.output} ({len(state)} tensors, {sum(v.numel() for v in state.values()):,} weights)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
