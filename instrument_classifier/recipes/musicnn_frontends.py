"""The musicnn stage's AudioSet front ends, YAMNet and EfficientAT: their sources check (the converted weights) and
their windows, those of the same seconds as musicnn's. Each model is the same linear probe as musicnn's, from the
same corpora, tuned and evaluated as musicnn's: :func:`~.musicnn.run_front_end` runs its steps (``yamnet-prepare``
to ``yamnet-evaluate`` and ``efficientat-prepare`` to ``efficientat-evaluate`` in :mod:`~.musicnn`'s step list)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional

from ..modeling.efficientat_frontend import EfficientAtFrontend
from ..modeling.feature_extraction_instrument import default_feature_settings
from ..modeling.yamnet_frontend import YamnetFrontend
from .common import REPO_ROOT, MusicnnSettings, RecipeError, sha256, write_json
from .musicnn_sources import read_provenance

__all__ = ["FRONT_ENDS", "AudioSetFrontEnd", "check_front_end_weights", "front_end_window_frames"]


@dataclass(frozen=True)
class AudioSetFrontEnd:
    """What the stage needs to know of a converted AudioSet front end.

    Attributes
    ----------
    title : str
        Its name in messages.
    module : Callable
        The class whose ``from_safetensors`` loads the weights strictly.
    script : str
        The conversion script (``scripts/<script>``), which also writes the provenance file.
    default_weights : Path
        Where the stage looks for the converted weights when not told.
    conversion_command : str
        How to make them (the script's docstring says the same; a test keeps the two equal).
    source : str
        Where the original weights come from, in words.
    option : str
        The recipe's command-line option that takes the file.
    """

    title: str
    module: Callable
    script: str
    default_weights: Path
    conversion_command: str
    source: str
    option: str

    def missing_message(self, weights: Path) -> str:
        return (f"{weights}: {self.title} weights not found. scripts/{self.script} converts them from "
                f"{self.source}, run from the repository:\n\n    {self.conversion_command}\n\n"
                f"then pass the file with {self.option} (default {self.default_weights}).")


FRONT_ENDS = {
    "yamnet": AudioSetFrontEnd(
        "YAMNet", YamnetFrontend, "convert_yamnet.py", REPO_ROOT / "yamnet_audioset.safetensors",
        "python scripts/convert_yamnet.py --tflite yamnet.tflite --output yamnet_audioset.safetensors",
        "the TF-Hub YAMNet TFLite model (Apache-2.0; yamnet.tflite of github.com/Jaskaran197/Speaker-Detector at "
        "4ec29b6938f1051fe36b46786f8d486d8b74a38e, sha1 7f54d20da3b32164849274af1ab0651c75cac681), in a Python "
        "with tensorflow 2.15, torch, numpy and safetensors", "--yamnet-weights"),
    "efficientat": AudioSetFrontEnd(
        "EfficientAT mn04", EfficientAtFrontend, "convert_efficientat.py",
        REPO_ROOT / "efficientat_mn04.safetensors",
        "python scripts/convert_efficientat.py --checkpoint mn04_as_mAP_432.pt --output efficientat_mn04.safetensors "
        "--class-map class_labels_indices.csv",
        "EfficientAT's mn04 AudioSet checkpoint (MIT; resources/mn04_as_mAP_432.pt and "
        "metadata/class_labels_indices.csv of github.com/nikih94/swch-audio-classification at "
        "2b362d97544673ef1da403b44ecbe1174d8619ec, sha256 "
        "899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c), in a Python with torch, numpy and "
        "safetensors", "--efficientat-weights"),
}


def check_front_end_weights(name: str, weights: Path, out: Path) -> dict:
    """Load ``weights`` into the front end ``name``'s module (strictly) and record its sha256 and provenance in
    ``out`` as ``{"<name>_weights": ...}``.

    Raises
    ------
    RecipeError
        The file is missing (the message says how to convert it) or is not a state dict of that front end.
    """
    front = FRONT_ENDS[name]
    weights = Path(weights).expanduser()
    if not weights.is_file():
        raise RecipeError(front.missing_message(weights))
    try:
        front.module.from_safetensors(str(weights))
    except Exception as exc:  # safetensors' and torch's own error types: not a file of the conversion script
        raise RecipeError(f"{weights}: not {front.title} weights of {front.module.__name__} ({str(exc)[:200]}); "
                          f"make them with scripts/{front.script}") from None
    provenance_file, provenance = read_provenance(weights, front.script)
    record = {f"{name}_weights": {"path": str(weights.resolve()), "sha256": sha256(weights),
                                  "source": provenance.get("source", {}), "licence": provenance.get("licence"),
                                  "provenance_file": str(provenance_file) if provenance else None}}
    write_json(out, record)
    return record


def front_end_window_frames(mset: MusicnnSettings, name: str, frames: Optional[int] = None) -> int:
    """The front end ``name``'s frames in ``frames`` musicnn frames (default a musicnn window: 374 YAMNet frames,
    1496 EfficientAT ones for 187), so that the windows coincide in time."""
    musicnn, theirs = default_feature_settings("musicnn"), default_feature_settings(name)
    frames = mset.window_frames if frames is None else frames
    count = Fraction(frames * musicnn["hop_length"] * theirs["sampling_rate"],
                     musicnn["sampling_rate"] * theirs["hop_length"])
    if count.denominator != 1:
        raise RecipeError(f"{frames} musicnn frames are no whole number of {FRONT_ENDS[name].title} frames")
    return int(count)
