"""The musicnn stage's YAMNet front end: its sources check (the converted weights) and its windows, those of the
same samples as musicnn's. The YAMNet model is the same linear probe as musicnn's, from the same corpora, tuned and
evaluated as musicnn's: :func:`~.musicnn.run_front_end` runs its steps (``yamnet-prepare`` to ``yamnet-evaluate`` in
:mod:`~.musicnn`'s step list)."""

from __future__ import annotations

from pathlib import Path

from ..modeling.feature_extraction_instrument import default_feature_settings
from ..modeling.yamnet_frontend import YamnetFrontend
from .common import REPO_ROOT, MusicnnSettings, RecipeError, sha256, write_json
from .musicnn_sources import read_provenance

__all__ = ["DEFAULT_YAMNET_WEIGHTS", "check_yamnet_weights", "yamnet_window_frames"]

DEFAULT_YAMNET_WEIGHTS = REPO_ROOT / "yamnet_audioset.safetensors"
#: scripts/convert_yamnet.py's docstring: how the weights are made (a test keeps the two equal).
YAMNET_CONVERSION_COMMAND = (
    "python scripts/convert_yamnet.py --tflite yamnet.tflite --output yamnet_audioset.safetensors"
)


def missing_yamnet_message(weights: Path) -> str:
    return (f"{weights}: YAMNet weights not found. scripts/convert_yamnet.py converts them from the TF-Hub YAMNet "
            "TFLite model (Apache-2.0; yamnet.tflite of github.com/Jaskaran197/Speaker-Detector at "
            "4ec29b6938f1051fe36b46786f8d486d8b74a38e, sha1 7f54d20da3b32164849274af1ab0651c75cac681), in a Python "
            "with tensorflow 2.15, torch, numpy and safetensors, run from the repository:\n\n"
            f"    {YAMNET_CONVERSION_COMMAND}\n\n"
            f"then pass the file with --yamnet-weights (default {DEFAULT_YAMNET_WEIGHTS}).")


def check_yamnet_weights(weights: Path, out: Path) -> dict:
    """Load ``weights`` into :class:`YamnetFrontend` (strictly) and record its sha256 and provenance in ``out``.

    Raises
    ------
    RecipeError
        The file is missing (the message says how to convert it) or is not a YamnetFrontend state dict.
    """
    weights = Path(weights).expanduser()
    if not weights.is_file():
        raise RecipeError(missing_yamnet_message(weights))
    try:
        YamnetFrontend.from_safetensors(str(weights))
    except Exception as exc:  # safetensors' and torch's own error types: not a file of convert_yamnet.py
        raise RecipeError(f"{weights}: not YAMNet weights of yamnet_frontend.YamnetFrontend ({str(exc)[:200]}); "
                          "make them with scripts/convert_yamnet.py") from None
    provenance_file, provenance = read_provenance(weights, "convert_yamnet.py")
    record = {"yamnet_weights": {"path": str(weights.resolve()), "sha256": sha256(weights),
                                 "source": provenance.get("source", {}), "licence": provenance.get("licence"),
                                 "provenance_file": str(provenance_file) if provenance else None}}
    write_json(out, record)
    return record


def yamnet_window_frames(mset: MusicnnSettings) -> int:
    """YAMNet frames of a musicnn window (374 for 187): windows of the same samples, so the two coincide."""
    musicnn_hop = default_feature_settings("musicnn")["hop_length"]
    yamnet_hop = default_feature_settings("yamnet")["hop_length"]
    if (mset.window_frames * musicnn_hop) % yamnet_hop or (mset.hop_frames * musicnn_hop) % yamnet_hop:
        raise RecipeError(f"musicnn windows of {mset.window_frames} frames (hop {mset.hop_frames}) are no whole "
                          "number of YAMNet frames")
    return mset.window_frames * musicnn_hop // yamnet_hop
