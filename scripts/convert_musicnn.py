"""Convert musicnn's ``MTT_musicnn`` TensorFlow checkpoint into safetensors for ``MusicnnFrontend``.

Reads the checkpoint shipped inside the ``musicnn==0.1.0`` wheel (ISC licence), either straight from
the wheel file or from an installed ``musicnn`` package, maps every model variable to the PyTorch state
dict of :class:`instrument_classifier.modeling.musicnn_frontend.MusicnnFrontend`, and writes

* ``OUTPUT.safetensors``: the state dict (float32, about 3 MB), with the model config in its metadata;
* ``OUTPUT.json``: where it came from (package, version, wheel sha256, checkpoint file hashes, licence
  and its text, which the ISC licence asks to keep with copies) and the variable mapping.

The mapping is checked both ways: every checkpoint variable of the model is used exactly once (Adam
moments and ``beta*_power`` are training state and are skipped, each Adam slot only if its variable is
mapped), and every torch parameter and buffer is filled exactly once with the right shape.

TensorFlow is imported only to read the checkpoint (``tf.compat.v1.train.NewCheckpointReader``), so
run this with a Python that has ``tensorflow`` (2.15 reads it), ``torch``, ``numpy`` and ``safetensors``;
``transformers`` is not needed (the model file is loaded by path)::

    python scripts/convert_musicnn.py --wheel musicnn-0.1.0-py3-none-any.whl \\
        --output musicnn_mtt.safetensors
    python scripts/convert_musicnn.py --output ...   # from the installed musicnn package
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.util
import io
import json
import os
import re
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from safetensors.torch import save_file

REPO_ROOT = Path(__file__).resolve().parents[1]
FRONTEND_FILE = REPO_ROOT / "instrument_classifier" / "modeling" / "musicnn_frontend.py"

MODEL_NAME = "MTT_musicnn"
PACKAGE = "musicnn"
#: sha256 of ``musicnn-0.1.0-py3-none-any.whl`` as published on PyPI (pip checks downloads against it).
KNOWN_WHEEL_SHA256 = {"0.1.0": "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"}
#: Checkpoint variables that are optimizer state, not model weights.
OPTIMIZER_VARIABLE = re.compile(r"(^beta[12]_power$)|(/Adam(_1)?$)")


def load_frontend_module():
    """Import ``musicnn_frontend.py`` by path: it needs only numpy, torch and safetensors, not the package's
    transformers."""
    spec = importlib.util.spec_from_file_location("musicnn_frontend", FRONTEND_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------------
# Source: the wheel or an installed package
# ---------------------------------------------------------------------------------------------------

@dataclass
class CheckpointSource:
    """The checkpoint files on disk and what is known of the package they came from."""

    checkpoint_prefix: str
    package_version: str
    wheel_sha256: Optional[str]
    wheel_sha256_from: str
    licence: str
    licence_classifiers: List[str]
    licence_text: str
    homepage: str
    author: str
    checkpoint_files: Dict[str, str]  # name -> sha256 (hex)


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record_hashes(record_text: str) -> Dict[str, str]:
    """RECORD rows -> {path: sha256 hex} (RECORD stores urlsafe base64 without padding)."""
    hashes = {}
    for row in csv.reader(io.StringIO(record_text)):
        if len(row) >= 2 and row[1].startswith("sha256="):
            digest = row[1][len("sha256="):]
            hashes[row[0]] = base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()
    return hashes


def _check_against_record(files: Dict[str, bytes], record: Dict[str, str]) -> Dict[str, str]:
    """Hash the checkpoint files and insist that they are the ones the package's RECORD lists."""
    hashes = {}
    for path, data in files.items():
        digest = _sha256_hex(data)
        if record.get(path) != digest:
            raise SystemExit(f"{path}: sha256 {digest} does not match the package RECORD ({record.get(path)})")
        hashes[path] = digest
    return hashes


def _metadata_fields(metadata_text: str) -> Tuple[str, str, List[str], str, str]:
    message = HeaderParser().parsestr(metadata_text)
    classifiers = [c for c in message.get_all("Classifier", []) if c.startswith("License")]
    return (message["Version"], message.get("License", ""), classifiers,
            message.get("Home-page", ""), message.get("Author", ""))


def source_from_wheel(wheel: Path, workdir: Path) -> CheckpointSource:
    """Extract ``musicnn/MTT_musicnn/*`` from the wheel into ``workdir`` after checking RECORD hashes."""
    wheel_bytes = wheel.read_bytes()
    with zipfile.ZipFile(io.BytesIO(wheel_bytes)) as archive:
        names = archive.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata_text = archive.read(f"{dist_info}/METADATA").decode()
        version, licence, classifiers, homepage, author = _metadata_fields(metadata_text)
        licence_text = archive.read(f"{dist_info}/LICENSE.md").decode() if f"{dist_info}/LICENSE.md" in names else ""
        record = _record_hashes(archive.read(f"{dist_info}/RECORD").decode())
        prefix = f"{PACKAGE}/{MODEL_NAME}/"
        files = {n: archive.read(n) for n in names if n.startswith(prefix) and not n.endswith("/")}
    if not files:
        raise SystemExit(f"{wheel}: no {prefix} in this wheel")
    hashes = _check_against_record(files, record)
    for name, data in files.items():
        (workdir / Path(name).name).write_bytes(data)
    return CheckpointSource(
        checkpoint_prefix=str(workdir) + os.sep,  # the files are '.index', '.data-...': an empty basename
        package_version=version, wheel_sha256=_sha256_hex(wheel_bytes),
        wheel_sha256_from=f"computed from {wheel.name}",
        licence=licence, licence_classifiers=classifiers, licence_text=licence_text, homepage=homepage, author=author,
        checkpoint_files=hashes,
    )


def source_from_installed_package() -> CheckpointSource:
    """Find the installed ``musicnn`` with importlib (without importing it: that would import TensorFlow)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("musicnn is not installed in this Python: pip install --no-deps musicnn==0.1.0, "
                         "or pass --wheel")
    package_dir = Path(list(spec.submodule_search_locations)[0])
    dist = metadata.distribution(PACKAGE)
    version, licence, classifiers, homepage, author = _metadata_fields(dist.read_text("METADATA"))
    record = _record_hashes(dist.read_text("RECORD") or "")
    model_dir = package_dir / MODEL_NAME
    files = {f"{PACKAGE}/{MODEL_NAME}/{p.name}": p.read_bytes() for p in sorted(model_dir.iterdir()) if p.is_file()}
    hashes = _check_against_record(files, record)
    # pip records the archive's hash in direct_url.json when it installed from a file or URL; from an index
    # it does not, and then the known PyPI hash stands in, the RECORD check above tying the files to it.
    direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    wheel_hash = direct_url.get("archive_info", {}).get("hashes", {}).get("sha256")
    wheel_from = "direct_url.json of the installed package"
    if wheel_hash is None:
        wheel_hash = KNOWN_WHEEL_SHA256.get(version)
        wheel_from = "published PyPI hash (installed from an index: pip verified it, direct_url.json absent)"
    return CheckpointSource(
        checkpoint_prefix=str(model_dir) + os.sep, package_version=version, wheel_sha256=wheel_hash,
        wheel_sha256_from=wheel_from, licence=licence, licence_classifiers=classifiers,
        licence_text=dist.read_text("LICENSE.md") or "", homepage=homepage, author=author, checkpoint_files=hashes,
    )


def read_checkpoint(prefix: str) -> Tuple[Dict[str, np.ndarray], str]:
    """All checkpoint variables as numpy arrays, and the TensorFlow version that read them."""
    try:
        import tensorflow as tf  # only here: nothing else in the conversion needs TensorFlow
    except ImportError:
        raise SystemExit("reading the TF checkpoint needs TensorFlow: run this with a Python that has "
                         "tensorflow-cpu==2.15.1 (and numpy<2), e.g. a separate venv") from None

    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    names = sorted(reader.get_variable_to_shape_map())
    return {name: np.asarray(reader.get_tensor(name)) for name in names}, tf.__version__


# ---------------------------------------------------------------------------------------------------
# Mapping
# ---------------------------------------------------------------------------------------------------

def _conv2d_kernel(kernel: np.ndarray) -> np.ndarray:
    # TF (time, freq, in, out) on NHWC -> torch Conv2d (out, in, time, freq) on NCHW.
    return kernel.transpose(3, 2, 0, 1)


def _conv_full_width_kernel(kernel: np.ndarray) -> np.ndarray:
    # TF conv2d (time, features, 1, out) spanning the whole feature axis of a 1-channel image
    # == torch Conv1d (out, features, time) with the features as channels.
    return kernel[:, :, 0, :].transpose(2, 1, 0)


def _dense_kernel(kernel: np.ndarray) -> np.ndarray:
    # TF (in, out), y = x @ W -> torch Linear (out, in), y = x @ W.T.
    return kernel.T


def _identity(array: np.ndarray) -> np.ndarray:
    return array


TRANSFORMS: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "conv2d_kernel (3,2,0,1)": _conv2d_kernel,
    "conv_full_width_kernel [:,:,0,:].T(2,1,0)": _conv_full_width_kernel,
    "dense_kernel .T": _dense_kernel,
    "identity": _identity,
}

BATCH_NORM_VARIABLES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                        "moving_variance": "running_var"}


def build_mapping(config) -> List[Tuple[str, str, str]]:
    """(TF variable, torch state-dict key, transform name) for every model variable.

    ``tf.compat.v1.layers`` names its variables by creation order (``conv2d``, ``conv2d_1``, ...,
    ``batch_normalization``, ``batch_normalization_1``, ...), so the order in which
    ``musicnn.models.build_musicnn`` creates the layers is replayed here: input batch norm; per
    timbral, then temporal block, conv then batch norm; per mid-end layer, conv then batch norm;
    back-end batch norm, dense, batch norm, output dense.
    """
    counters = {"conv2d": 0, "batch_normalization": 0, "dense": 0}
    mapping: List[Tuple[str, str, str]] = []

    def next_name(kind: str) -> str:
        index = counters[kind]
        counters[kind] += 1
        return kind if index == 0 else f"{kind}_{index}"

    def conv(torch_prefix: str, transform: str) -> None:
        tf_name = next_name("conv2d")
        mapping.append((f"{tf_name}/kernel", f"{torch_prefix}.weight", transform))
        mapping.append((f"{tf_name}/bias", f"{torch_prefix}.bias", "identity"))

    def dense(torch_prefix: str) -> None:
        tf_name = next_name("dense")
        mapping.append((f"{tf_name}/kernel", f"{torch_prefix}.weight", "dense_kernel .T"))
        mapping.append((f"{tf_name}/bias", f"{torch_prefix}.bias", "identity"))

    def batch_norm(torch_prefix: str) -> None:
        tf_name = next_name("batch_normalization")
        for tf_variable, torch_variable in BATCH_NORM_VARIABLES.items():
            mapping.append((f"{tf_name}/{tf_variable}", f"{torch_prefix}.{torch_variable}", "identity"))

    batch_norm("front_end.input_norm")
    for i in range(len(config.timbral_kernel_mels)):
        conv(f"front_end.timbral.{i}.conv", "conv2d_kernel (3,2,0,1)")
        batch_norm(f"front_end.timbral.{i}.norm")
    for i in range(len(config.temporal_kernel_frames)):
        conv(f"front_end.temporal.{i}.conv", "conv2d_kernel (3,2,0,1)")
        batch_norm(f"front_end.temporal.{i}.norm")
    for i in range(config.midend_layers):
        conv(f"mid_end.layers.{i}.conv", "conv_full_width_kernel [:,:,0,:].T(2,1,0)")
        batch_norm(f"mid_end.layers.{i}.norm")
    batch_norm("back_end.pool_norm")
    dense("back_end.dense")
    batch_norm("back_end.dense_norm")
    dense("back_end.classifier")
    return mapping


def convert(variables: Dict[str, np.ndarray], model) -> Tuple[Dict[str, torch.Tensor], List[dict], List[str]]:
    """Fill ``model``'s state dict from the checkpoint; returns the state dict, the mapping record and the
    skipped optimizer variables. Raises ``SystemExit`` on any unused, reused, missing or misshapen entry."""
    target = model.state_dict()
    mapping = build_mapping(model.config)
    state: Dict[str, torch.Tensor] = {}
    used: Dict[str, str] = {}
    record = []
    for tf_name, torch_name, transform in mapping:
        if tf_name not in variables:
            raise SystemExit(f"checkpoint has no variable {tf_name} (for {torch_name})")
        if tf_name in used:
            raise SystemExit(f"{tf_name} mapped twice ({used[tf_name]} and {torch_name})")
        if torch_name not in target:
            raise SystemExit(f"model has no {torch_name} (for {tf_name})")
        if torch_name in state:
            raise SystemExit(f"{torch_name} filled twice")
        value = np.ascontiguousarray(TRANSFORMS[transform](variables[tf_name]), dtype=np.float32)
        if tuple(value.shape) != tuple(target[torch_name].shape):
            raise SystemExit(f"{tf_name} {variables[tf_name].shape} -> {torch_name}: got {value.shape}, "
                             f"model expects {tuple(target[torch_name].shape)}")
        used[tf_name] = torch_name
        state[torch_name] = torch.from_numpy(value)
        record.append({"tf": tf_name, "tf_shape": list(variables[tf_name].shape), "torch": torch_name,
                       "torch_shape": list(value.shape), "transform": transform})

    # torch-only buffers: BatchNorm's step counter (only read when momentum=None, which is not the case here).
    for torch_name, tensor in target.items():
        if torch_name.endswith("num_batches_tracked") and torch_name not in state:
            state[torch_name] = torch.zeros_like(tensor)
            record.append({"tf": None, "tf_shape": None, "torch": torch_name, "torch_shape": list(tensor.shape),
                           "transform": "constant 0 (torch-only BatchNorm counter, not in the checkpoint)"})

    unused = sorted(set(variables) - set(used))
    optimizer = [name for name in unused if OPTIMIZER_VARIABLE.search(name)]
    not_optimizer = sorted(set(unused) - set(optimizer))
    if not_optimizer:
        raise SystemExit(f"checkpoint variables not mapped: {not_optimizer}")
    orphan_slots = [n for n in optimizer if "/Adam" in n and n.rsplit("/Adam", 1)[0] not in used]
    if orphan_slots:
        raise SystemExit(f"Adam slots of variables that were not mapped: {orphan_slots}")
    missing = sorted(set(target) - set(state))
    if missing:
        raise SystemExit(f"torch parameters/buffers not filled: {missing}")
    extra = sorted(set(state) - set(target))
    if extra:
        raise SystemExit(f"filled keys the model does not have: {extra}")
    return state, record, optimizer


def state_dict_sha256(state: Dict[str, torch.Tensor]) -> str:
    """Hash of the tensors (names, dtypes, shapes, bytes in name order), stable across rewrites of the file."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path,
                        help="musicnn wheel to read the checkpoint from (default: the installed musicnn)")
    parser.add_argument("--output", type=Path, required=True,
                        help="the .safetensors file to write; the .json goes beside it")
    args = parser.parse_args(argv)

    frontend = load_frontend_module()
    with tempfile.TemporaryDirectory() as workdir:
        source = source_from_wheel(args.wheel, Path(workdir)) if args.wheel else source_from_installed_package()
        variables, tf_version = read_checkpoint(source.checkpoint_prefix)
    known = KNOWN_WHEEL_SHA256.get(source.package_version)
    if known and source.wheel_sha256 and source.wheel_sha256 != known:
        raise SystemExit(f"wheel sha256 {source.wheel_sha256} is not the published {known} of musicnn "
                         f"{source.package_version}")

    model = frontend.MusicnnFrontend(frontend.MusicnnConfig())
    state, record, optimizer = convert(variables, model)
    model.load_state_dict(state, strict=True)
    n_weights = sum(int(np.prod(variables[r["tf"]].shape)) for r in record if r["tf"])

    # Smoke check of the converted model: finite tags for silence and for noise.
    with torch.no_grad():
        patches = torch.stack([torch.zeros(frontend.PATCH_FRAMES, frontend.N_MELS),
                               torch.rand(frontend.PATCH_FRAMES, frontend.N_MELS,
                                          generator=torch.Generator().manual_seed(0))])
        probabilities = model.eval()(patches, output_frame_features=False).probabilities
    if not torch.isfinite(probabilities).all():
        raise SystemExit("converted model gives non-finite outputs")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    provenance = (f"{PACKAGE}=={source.package_version} {MODEL_NAME} (wheel sha256 {source.wheel_sha256}); "
                  f"licence {source.licence}")
    save_file({k: v.contiguous() for k, v in state.items()}, str(args.output),
              metadata={"format": "pt", "config": json.dumps(config), "source": provenance})
    info = {
        "model": MODEL_NAME,
        "source": {
            "package": PACKAGE,
            "version": source.package_version,
            "wheel": f"{PACKAGE}-{source.package_version}-py3-none-any.whl",
            "wheel_sha256": source.wheel_sha256,
            "wheel_sha256_from": source.wheel_sha256_from,
            "checkpoint_files_sha256": source.checkpoint_files,
            "homepage": source.homepage,
            "author": source.author,
            "paper": "Pons & Serra, musicnn: pre-trained convolutional neural networks for music audio tagging, "
                     "ISMIR 2019 LBD",
            "training_data": "MagnaTagATune (reported test ROC-AUC 0.9067, PR-AUC 0.3831 in the wheel's "
                             "experiment.result)",
        },
        "licence": {"name": source.licence, "classifiers": source.licence_classifiers, "text": source.licence_text},
        "read_with": f"tensorflow {tf_version} tf.compat.v1.train.NewCheckpointReader",
        # Not the file's hash: safetensors writes the metadata keys in no fixed order.
        "state_dict_sha256": state_dict_sha256(state),
        "n_weights": n_weights,
        "config": config,
        "tags": list(frontend.MTT_TAGS),
        "mapping": record,
        "skipped_optimizer_variables": optimizer,
    }
    args.output.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"wrote {args.output} ({len(record)} tensors, {n_weights:,} weights from "
          f"{sum(1 for r in record if r['tf'])} checkpoint variables; skipped {len(optimizer)} optimizer variables) "
          f"and {args.output.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
