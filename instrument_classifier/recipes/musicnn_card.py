"""The musicnn folder's export: its model card (training data, real-recording numbers first, licences) and the
folder written in one rename."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .. import modeling
from ..atomic_write import write_dir
from ..evaluation.report import fmt, markdown_table
from ..local_paths import strip_local_paths
from ..inference import load_model
from ..training.model_card import usage_lines
from .cards import library_title
from .common import MusicnnSettings, RecipeError, RecipeSettings, as_json, write_json
from .musicnn_sources import MUSICNN_LICENCE, VPO_URL
from .real_clips import cross_validated_long_row

RESULTS_FILE = "recipe_musicnn_results.json"
#: The front ends' window: 187 musicnn frames of 256 samples at 16 kHz (YAMNet's and EfficientAT's last as long).
MUSICNN_WINDOW_SECONDS = 187 * 256 / 16000
#: scripts/convert_yamnet.py's source of the YAMNet weights (its docstring and SOURCE say the same).
YAMNET_SOURCE = ("the TF-Hub YAMNet TFLite model (`lite-model/yamnet/classification/tflite/1`) committed as "
                 "`yamnet.tflite` at github.com/Jaskaran197/Speaker-Detector @ "
                 "4ec29b6938f1051fe36b46786f8d486d8b74a38e (sha1 7f54d20da3b32164849274af1ab0651c75cac681)")
#: The notice that goes with every copy of the YAMNet weights (Apache-2.0, section 4: the header of its sources).
YAMNET_NOTICE = f"""# YAMNet weights: licence

The YAMNet weights inside `model.safetensors` were converted by `scripts/convert_yamnet.py` (instrument-classifier)
from {YAMNET_SOURCE}.

YAMNet: Copyright 2019 The TensorFlow Authors. All Rights Reserved.

Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in compliance with
the License. You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software distributed under the License is distributed on
an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the License for the
specific language governing permissions and limitations under the License.

Changes: the int8 TFLite weights were dequantized, transposed to PyTorch's layout and stored in float16.
YAMNet was trained on AudioSet, whose labels and ontology are CC BY 4.0.
"""
#: scripts/convert_efficientat.py's source of the EfficientAT weights (its docstring and SOURCE say the same).
EFFICIENTAT_SOURCE = ("EfficientAT's `mn04_as_mAP_432.pt` (github.com/fschmid56/EfficientAT, release v0.0.1), "
                      "committed as `resources/mn04_as_mAP_432.pt` at github.com/nikih94/swch-audio-classification @ "
                      "2b362d97544673ef1da403b44ecbe1174d8619ec (sha256 899a8c6217063f6941793102a2780b3dd788ab11fce468"
                      "d9cf5f0577c453321c)")
#: The notice that goes with every copy of the EfficientAT weights (the MIT licence asks for it).
EFFICIENTAT_NOTICE = f"""# EfficientAT weights: licence

The EfficientAT `mn04` weights inside `model.safetensors` were converted by `scripts/convert_efficientat.py`
(instrument-classifier) from {EFFICIENTAT_SOURCE}: batch norms folded into the convolutions, stored in float16.

MIT License

Copyright (c) 2022 Florian Schmid

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated
documentation files (the "Software"), to deal in the Software without restriction, including without limitation the
rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and to
permit persons to whom the Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or substantial portions of the
Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE
WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR
COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.

EfficientAT's models were trained on AudioSet, whose labels and ontology are CC BY 4.0.
"""
#: What the card says of each front-end family: its front matter, front end, representation and licences.
FAMILIES = {
    "musicnn": {
        "front_matter": ["license: other", "license_name: musicnn-isc-and-training-data"],
        "front_end": "The front end is musicnn's `MTT_musicnn` (Pons & Serra 2019), a music tagger trained on real "
                     "recordings, kept frozen.",
        "representation": "(penultimate embedding, pooled frame features, tag logits)",
        "licences": [
            "- The musicnn weights inside `model.safetensors`: ISC licence (musicnn 0.1.0, (c) Music Technology "
            "Group, Universitat Pompeu Fabra 2019, code by Jordi Pons); its notice, which goes with every copy, is "
            "in `MUSICNN_LICENSE.md`.",
            "- musicnn was trained on MagnaTagATune, licensed CC BY-NC-SA 3.0. Whether that licence reaches weights "
            "trained on it is unsettled; commercial users should check before relying on this model.",
        ],
    },
    "yamnet": {
        "front_matter": ["license: apache-2.0"],
        "front_end": "The front end is Google's YAMNet (MobileNet v1 on log-mel patches, trained on AudioSet), "
                     f"kept frozen; its weights were converted by `scripts/convert_yamnet.py` from {YAMNET_SOURCE}.",
        "representation": "(the mean and maximum over five 0.96-s patches of its 1024-d embedding and its 521 "
                          "AudioSet logits)",
        "licences": [
            "- The YAMNet weights inside `model.safetensors`: Apache-2.0 (YAMNet, Google, tensorflow/models), "
            f"converted from {YAMNET_SOURCE}; the notice is in `YAMNET_LICENSE.md`. YAMNet was trained on "
            "AudioSet, whose labels and ontology are CC BY 4.0.",
        ],
    },
    "efficientat": {
        "front_matter": ["license: mit"],
        "front_end": "The front end is EfficientAT's `mn04` (Schmid, Koutini & Widmer 2023: a MobileNetV3 of width "
                     "0.4 trained on AudioSet by distillation from transformers), kept frozen; its weights were "
                     f"converted by `scripts/convert_efficientat.py` from {EFFICIENTAT_SOURCE}.",
        "representation": "(its 384-d embedding and its 527 AudioSet logits of the whole window, on its own 10-ms "
                          "frames)",
        "licences": [
            "- The EfficientAT weights inside `model.safetensors`: MIT (Copyright (c) 2022 Florian Schmid); the "
            "notice is in `EFFICIENTAT_LICENSE.md`. EfficientAT was trained on AudioSet, whose labels and ontology "
            "are CC BY 4.0.",
        ],
    },
}
#: The export's weights budget, as the MFCC recipe's (musicnn's weights are 3.2 MB).
MAX_WEIGHTS_BYTES = 5 * 1024 * 1024
#: Per family: YAMNet's frozen weights are stored in float16, about 7.5 MB; EfficientAT's, about 2 MB.
WEIGHTS_BUDGETS = {"musicnn": MAX_WEIGHTS_BYTES, "yamnet": 8 * 1024 * 1024, "efficientat": 3 * 1024 * 1024}


def _conditions(mset: MusicnnSettings) -> str:
    """The recording conditions of the stage's training corpora, in words."""
    if mset.perturbation != "room":
        return "in drawn rooms with microphone EQ, noise and levels"
    balance = (f"; the Virtual Playing Orchestra's renders with each instrument's level drawn within "
               f"+-{mset.instrument_balance_db:g} dB (ensemble balance)" if mset.instrument_balance_db > 0 else "")
    return ("in drawn conditions: most of them in a simulated room (4-30 m long, reverberation time 0.2-2.2 s) with "
            "the microphone 0.5-12 m from the players, microphone EQ, noise and levels, and half of them MP3-encoded"
            + balance)


def _prior_sentence(results: dict) -> str:
    """The EfficientAT head's AudioSet prior, in words (empty without one)."""
    prior = results["training"].get("audioset_prior")
    if not prior:
        return ""
    weight = prior["weight"]
    return (f" The logits of {', '.join(prior['labels'])} are then mixed {1 - weight:g} / {weight:g} with the logit "
            "of AudioSet's class for that instrument (`audioset_prior` in `config.json`): a head fitted on rendered "
            "audio would otherwise override what the network learned from real recordings. The prior is given to "
            "the instruments with an AudioSet class that enough real clips hold to confirm it "
            "(docs/experiments.md measures it).")


def level_sentence(level: dict) -> str:
    """The feature extractor's level normalisation (the results' ``training["level"]``), in words (empty without)."""
    if not level:
        return ""
    return (" Every recording is first brought to one level (`level_dbfs` in `preprocessor_config.json`: the 95th "
            f"percentile of its 100-ms RMS at {level['dbfs']:g} dBFS, amplified by at most {level['max_gain_db']:g} "
            "dB), so that the answer does not depend on how loud it was recorded.")


def model_card(results: dict, settings: RecipeSettings, mset: MusicnnSettings, name: str = "musicnn") -> str:
    """The exported folder's README.md: training data, real-recording numbers first, licences.

    ``name`` is the front end's family (a key of :data:`FAMILIES`); ``results`` that model's results (for YAMNet,
    the recipe results' ``"yamnet"`` entry, which holds its own ``sources`` and the shared ``labels``).
    """
    family = FAMILIES[name]
    sources, real_dev, merlin = results["sources"], results.get("real_dev"), results["merlin_test"]
    heldout = library_title(settings.heldout_library)
    train_libraries = " and ".join(library_title(name) for name in settings.train_libraries)
    vpo_commit = sources["sampler_library"]["commit"]
    lines = [
        "---",
        "library_name: transformers",
        *family["front_matter"],
        "pipeline_tag: audio-classification",
        f"tags: [audio, audio-classification, music, instrument-recognition, multi-label, musicnet, {name}, "
        f"instrument_{name}]",
        "---",
        "",
        f"# instrument-classifier {name}",
        "",
        f"Which of the {len(results['labels'])} MusicNet instruments play ({', '.join(results['labels'])}), window by "
        f"window (3 s) and per clip. {family['front_end']} On its representation of each window "
        f"{family['representation']} a linear head was fitted, one logistic regression per instrument "
        f"(C {mset.C:g}).{_prior_sentence(results)}{level_sentence(results['training'].get('level'))} Built by "
        "`make models` "
        "(`python -m instrument_classifier.recipe_musicnn`).",
        "",
        "## How to use",
        "",
        *usage_lines("path/to/this/folder", MUSICNN_WINDOW_SECONDS),
        "",
        "## Training data",
        "",
        "No recording of musicians: MusicNet's train scores (labels CC BY 4.0), rendered to audio four ways, each "
        f"then \"recorded\" {_conditions(mset)}:",
        "",
        f"- with the General MIDI sample libraries {train_libraries} (recipe.py's training renders, "
        f"{settings.excerpt_seconds:g}-s excerpts);",
        f"- with the recorded multi-samples of the Virtual Playing Orchestra ({VPO_URL}, commit {vpo_commit}; "
        f"samples of real players, with articulations and dynamics), [{mset.vpo_start_seconds:g}, "
        f"{mset.vpo_start_seconds + mset.vpo_seconds:g}) s of the pieces with an instrument it has (no piano or "
        "harpsichord);",
        f"- with {library_title(mset.distractor_library)} and distractors: each instrument track played, with "
        f"probability {mset.distractor_probability:g}, by another instrument (brass, saxophones, guitars, voices, "
        f"organs, ...) whose notes are left out of the labels, [{mset.distractor_start_seconds:g}, "
        f"{mset.distractor_start_seconds + mset.distractor_seconds:g}) s.",
        "",
        f"Held out: the sample library {heldout}, which shares no recording with the training libraries (checked "
        "sample by sample), plays the validation pieces (window thresholds before the real-clip tuning) and "
        "MusicNet's test pieces (the synthetic test below).",
        "",
    ]
    if real_dev is None:
        lines += [
            "Decision thresholds: tuned per instrument on the held-out validation windows (no labelled real "
            "recordings were given to tune them on).",
            "",
        ]
    else:
        cv = real_dev["cross_validated"]
        lines += [
            f"Decision thresholds: tuned on the {real_dev['num_clips']} labelled real clips of the development set "
            f"(`{Path(real_dev['manifest']).parent.name}`, `evaluate --clips --tune-thresholds`): micro-F1 cuts for "
            "the instruments with at least 5 clips, 0.8 for the others.",
            "",
            "## Results on real recordings (the development set)",
            "",
            "Clip level: a clip's score per instrument is its highest window's (from three windows on, the mean of "
            "the two highest); an instrument is detected where its score reaches its threshold. These are the clips "
            "the thresholds were tuned on, so the tuned row is optimistic; the cross-validated row is what the same "
            "tuning reaches on clips it did not see (2-fold over the clips, "
            f"{cv['repeats']} repeats). Real recordings kept unseen judge the model; they are not reported here.",
            "",
        ]
        everything, long, before = real_dev["tuned"], real_dev.get("long_clips"), real_dev["validation_thresholds"]
        clip_rows = [
            [f"all {everything['num_clips']}", "tuned on them", fmt(everything["roc_auc_macro"]),
             fmt(everything["f1_micro"]), fmt(everything["false_alarms_per_clip"], 2),
             fmt(everything["exact_set_accuracy"])],
            [f"all {everything['num_clips']}", "tuned on other clips (cross-validated)",
             fmt(everything["roc_auc_macro"]), fmt(cv["f1_micro"]), fmt(cv["false_alarms_per_clip"], 2), "–"],
        ]
        if long is not None:
            clip_rows.append([f"the {long['num_clips']} of {long['min_seconds']:g} s or more", "tuned on all",
                              fmt(long["roc_auc_macro"]), fmt(long["f1_micro"]),
                              fmt(long["false_alarms_per_clip"], 2), fmt(long["exact_set_accuracy"])])
            cv_row = cross_validated_long_row(long)
            if cv_row:
                clip_rows.append(cv_row + ["–"])  # no exact set under cross-validation
        clip_rows.append([f"all {before['num_clips']}", f"{heldout} validation windows (before tuning)",
                          fmt(before["roc_auc_macro"]), fmt(before["f1_micro"]),
                          fmt(before["false_alarms_per_clip"], 2), fmt(before["exact_set_accuracy"])])
        lines += markdown_table(["clips", "thresholds", "macro ROC-AUC", "micro F1", "false instruments per clip",
                                 "exact set"], clip_rows)
        per_class = everything["per_class"]
        lines += [
            "",
            "Per instrument (all clips, tuned thresholds): "
            + ", ".join(f"{label} AUC {fmt(m['roc_auc'], 2)} / F1 {fmt(m['f1'], 2)} ({m['support']} clips)"
                        for label, m in per_class.items() if m["support"]) + ".",
            "",
        ]
    rows = [("window thresholds tuned on the held-out validation windows", merlin["validation_thresholds"])]
    if real_dev is not None:
        rows.append(("the clip thresholds tuned on real clips (this folder's)", merlin["tuned_thresholds"]))
    lines += [
        f"## Results on the synthetic held-out test ({heldout})",
        "",
        f"MusicNet's test pieces rendered in full with {heldout} + rooms and noise, window level (3-s windows). "
        "Renderings, not musicians: this protocol checks that nothing was lost on the synthetic benchmark."
        + (" The windows are read as `prepare` cut them, at the levels the renders were made at, without the level "
           "normalisation `predict` applies first (docs/experiments.md, \"Recording level\")."
           if results["training"].get("level") else ""),
        "",
        *markdown_table(["thresholds", "macro ROC-AUC", "micro F1", "macro F1",
                         "mean F1 (piano, violin, viola, cello, clarinet, bassoon, horn)"],
                        ([name, fmt(m["roc_auc_macro"]), fmt(m["f1_micro"]), fmt(m["f1_macro"]), fmt(m["mean_f1_7"])]
                         for name, m in rows)),
        "",
        "## Licences",
        "",
        *family["licences"],
        "- The labels the head was trained on: MusicNet (Thickstun, Harchaoui & Kakade), CC BY 4.0.",
        "- The training audio was rendered from sample libraries and is not shipped: FluidR3 GM, MuseScore General, "
        "and the Virtual Playing Orchestra, whose samples come from Sonatina Symphonic Orchestra (CC Sampling Plus "
        "1.0), Mattias Westlund (CC BY-SA 3.0), No Budget Orchestra (CC BY-SA 4.0), VSCO 2 CE (CC0), the University "
        "of Iowa MIS (free for any use), freesound user stamperadam (CC0) and the Philharmonia Orchestra (free to "
        "use, not to be redistributed as samples).",
        "- The head, the thresholds and the code: this package's licence.",
        "",
    ]
    return "\n".join(lines)


def export_model(src: Path, folder: Path, results: dict, settings: RecipeSettings, mset: MusicnnSettings,
                 name: str = "musicnn", shipped: Optional[dict] = None) -> None:
    """``folder`` (replaced atomically): the model and feature extractor saved again from ``src``, README.md,
    recipe_musicnn_results.json (``shipped``, default ``results``) and the front end's licence (musicnn's ISC text,
    YAMNet's Apache-2.0 notice);
    ``name`` and ``results`` as in :func:`model_card`."""
    model, extractor = load_model(src, device="cpu")  # the family's class, as its config names it

    def write(tmp: Path) -> None:
        # save_pretrained copies the package's current model code beside the weights (what trust_remote_code runs)
        model.save_pretrained(tmp)
        extractor.save_pretrained(tmp)
        size = (tmp / "model.safetensors").stat().st_size
        if size > WEIGHTS_BUDGETS[name]:
            raise RecipeError(f"{src}: model.safetensors is {size / 2**20:.1f} MB, above the "
                              f"{WEIGHTS_BUDGETS[name] / 2**20:.0f} MB budget")
        if name == "musicnn":  # the ISC licence asks that its notice go with every copy of the weights
            licence = results["sources"]["musicnn_weights"].get("licence_text") or MUSICNN_LICENCE
            (tmp / "MUSICNN_LICENSE.md").write_text(licence.rstrip() + "\n")
        elif name == "yamnet":  # Apache-2.0 asks that the licence go with the weights
            (tmp / "YAMNET_LICENSE.md").write_text(YAMNET_NOTICE)
        elif name == "efficientat":  # the MIT licence asks that its notice go with every copy
            (tmp / "EFFICIENTAT_LICENSE.md").write_text(EFFICIENTAT_NOTICE)
        (tmp / "README.md").write_text(model_card(results, settings, mset, name))
        # shipped and pushed: no folder of this machine
        write_json(tmp / RESULTS_FILE, strip_local_paths(results if shipped is None else shipped))

    write_dir(folder, write)


def is_exported(folder: Path, results: dict) -> bool:
    """``folder`` holds these results and today's model code (else the export is made again)."""
    try:
        if json.loads((folder / RESULTS_FILE).read_text()) != as_json(strip_local_paths(results)):
            return False
    except (OSError, ValueError):
        return False
    package = Path(modeling.__file__).parent
    code = sorted(folder.glob("*.py"))
    return bool(code) and (folder / "README.md").is_file() and all(
        (package / c.name).is_file() and c.read_bytes() == (package / c.name).read_bytes() for c in code)
