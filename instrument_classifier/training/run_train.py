"""Train an instrument classifier (CNN or Transformer) with the 🤗 Trainer: ``instrument-classifier train``.

In the style of transformers' ``examples/pytorch/audio-classification/run_audio_classification.py``: three
argument dataclasses read by ``HfArgumentParser``. The same flags work in every way of starting it::

    instrument-classifier train --model_type transformer --dataset_path outputs/default/dataset --output_dir runs/t
    instrument-classifier train --model_type cnn --data_dir /data/musicnet --taxonomy musicnet11 --output_dir runs/cnn
    instrument-classifier train --model_name_or_path runs/cnn --dataset_path other/dataset --output_dir runs/cnn-ft
    instrument-classifier train args.json            # the same arguments as one JSON object
    python -m instrument_classifier.training.run_train --model_type cnn ...
    accelerate launch --config_file accelerate_configs/multi_gpu_bf16.yaml train.py --model_type cnn ...

(``train.py`` at the top of a checkout is a thin wrapper around :func:`cli`, for ``accelerate launch``, which
starts a script; ``accelerate launch -m instrument_classifier.training.run_train`` works without a checkout.)

Arguments: ``ModelArguments``, ``DataArguments`` and ``InstrumentTrainingArguments`` (the Trainer's, with
defaults that work here) in ``instrument_classifier/training/arguments.py``; ``instrument-classifier train
--help`` lists them all.

What happens: the windows are loaded (or prepared from MusicNet folders), normalised per batch with the train
mean/std, the model trains with AdamW, warmup and cosine decay, is evaluated every epoch on validation and
the best checkpoint by validation macro ROC-AUC is restored (early stopping). Then per-class thresholds are
tuned on validation (maximum F1) and written into the config, with the recording context that
``predict --context`` applies (``instrument_classifier/context.py``, also chosen on validation), and
``output_dir`` becomes a loadable model folder: ``model.safetensors``, ``config.json`` with the thresholds, the
model and feature-extractor code (``trust_remote_code``), ``preprocessor_config.json`` with the normalisation,
and a model card ``README.md``; plus ``train_results.json``, ``eval_results.json`` (validation),
``test_results.json`` and ``all_results.json`` at window level.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
import transformers
from transformers import EarlyStoppingCallback, HfArgumentParser, set_seed
from transformers.trainer_utils import SchedulerType

from instrument_classifier.audio import AudioError
from instrument_classifier.data.musicnet import MusicNetError
from instrument_classifier.data.taxonomy import UnknownInstrumentError
from instrument_classifier.evaluation.evaluate_models import evaluate_models
from instrument_classifier.evaluation.metrics import (
    compute_instrument_metrics,
    near_zero_thresholds,
    tunable_classes,
    tune_thresholds,
)
from instrument_classifier.evaluation.report import model_names
from instrument_classifier.evaluation.tuning import tune_context
from instrument_classifier.local_paths import strip_local_paths
from instrument_classifier.training.arguments import (
    STUDY_SETTINGS,
    DataArguments,
    InstrumentTrainingArguments,
    ModelArguments,
)
from instrument_classifier.training.class_weights import pos_weight_from_labels
from instrument_classifier.training.collator import InstrumentDataCollator
from instrument_classifier.training.compute_metrics import (
    keep_window_logits,
    make_compute_metrics,
    scalar_metrics,
    sigmoid,
)
from instrument_classifier.training.errors import TrainingSetupError
from instrument_classifier.training.data_loading import load_training_data, select_samples
from instrument_classifier.training.feature_augmentation import FeatureAugmentation
from instrument_classifier.training.model_card import build_model_card, write_model_card
from instrument_classifier.training.model_factory import (
    build_model,
    parse_config_overrides,
    pretrained_data_settings,
    resolve_model_source,
)
from instrument_classifier.training.trainer import InstrumentTrainer

logger = logging.getLogger(__name__)

__all__ = ["main", "cli", "parse_arguments", "add_train_arguments", "run_train"]

FEATURE_COLUMNS = ["input_features", "labels", "frame_labels"]


def parse_arguments(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None):
    """``(model_args, data_args, training_args, explicit)``; ``explicit`` names the arguments given by the user.

    ``prog`` is the command name ``--help`` and argument errors show (default: the script's name).
    """
    parser = HfArgumentParser((ModelArguments, DataArguments, InstrumentTrainingArguments), prog=prog)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not (len(argv) == 1 and argv[0].endswith(".json")) and _launched_without_gpu(argv):
        # Without --use_cpu, transformers gives each launched process a run of its own on the CPU: N unrelated
        # trainings writing one output folder. What the launch asks for is N processes training one model.
        argv.append("--use_cpu")
        if os.environ.get("RANK", "0") == "0":
            print(f"train: {os.environ['WORLD_SIZE']} processes and no GPU: training on the CPU, the processes "
                  "synchronised through gloo (as --use_cpu)", file=sys.stderr)
    if len(argv) == 1 and argv[0].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(json_file=os.path.abspath(argv[0]))
        explicit = set(json.loads(Path(argv[0]).read_text()))
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
        explicit = {a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")}
        explicit |= {name[3:] for name in explicit if name.startswith("no_")}
    return model_args, data_args, training_args, explicit


def _launched_without_gpu(argv: Sequence[str]) -> bool:
    """``True`` when a launcher (``accelerate launch``, ``torchrun``) started several processes on a machine without
    a CUDA GPU and the arguments do not say ``--use_cpu`` already."""
    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or torch.cuda.is_available():
        return False
    return not any(a == "--use_cpu" or a.startswith("--use_cpu=") for a in argv)


def apply_study_settings(model_args, training_args, explicit: set) -> dict:
    """The original study's hyperparameters where the user did not say otherwise; returns config overrides."""
    if model_args.model_type not in STUDY_SETTINGS:
        raise TrainingSetupError("--study_settings needs --model_type cnn|transformer")
    settings = STUDY_SETTINGS[model_args.model_type]
    for key, value in settings["training"].items():
        if key not in explicit:
            setattr(training_args, key, SchedulerType(value) if key == "lr_scheduler_type" else value)
    return {k: v for k, v in settings["config"].items() if k not in explicit}


def find_checkpoint(training_args, data_args) -> Optional[str | bool]:
    """The checkpoint to resume from: ``--resume_from_checkpoint PATH|true``, else the last one in output_dir.

    Only complete checkpoints count: a run killed while writing ``checkpoint-N`` leaves it without
    ``trainer_state.json`` (the Trainer writes it last), and resuming from it fails. Such folders are skipped,
    with a warning, for the last complete one.
    """
    output_dir = training_args.output_dir
    requested = training_args.resume_from_checkpoint
    if requested is not None:
        if str(requested).lower() in ("true", "last"):
            last = last_complete_checkpoint(output_dir) if os.path.isdir(output_dir) else None
            if last is None:
                raise TrainingSetupError(f"--resume_from_checkpoint {requested}: no complete checkpoint-* folder in "
                                         f"{output_dir}")
            return last
        if not os.path.isdir(requested):
            raise TrainingSetupError(f"--resume_from_checkpoint {requested}: no such checkpoint folder")
        if not _complete_checkpoint(Path(requested)):
            raise TrainingSetupError(f"--resume_from_checkpoint {requested}: incomplete checkpoint (no readable "
                                     "trainer_state.json; the run was stopped while writing it)")
        return requested
    if not os.path.isdir(output_dir) or not os.listdir(output_dir):
        return None
    if data_args.overwrite_output_dir:
        if training_args.process_index == 0:  # stale checkpoints would be resumed or rotated into this run
            for old in Path(output_dir).glob("checkpoint-*"):
                shutil.rmtree(old, ignore_errors=True)
        return None
    last = last_complete_checkpoint(output_dir)
    if last is None:
        raise TrainingSetupError(
            f"output directory {output_dir} exists and is not empty but has no complete checkpoint to resume; use "
            "--overwrite_output_dir to train there from scratch, or another --output_dir"
        )
    logger.info("found %s in the output directory (use --overwrite_output_dir to start from scratch)", last)
    return last


def last_complete_checkpoint(output_dir: str) -> Optional[str]:
    """The ``checkpoint-N`` folder of ``output_dir`` with the highest N that is complete; warns about newer,
    incomplete ones (skipped)."""
    found = [(int(m.group(1)), path) for path in Path(output_dir).iterdir()
             if path.is_dir() and (m := _CHECKPOINT.fullmatch(path.name))]
    for _, path in sorted(found, reverse=True):
        if _complete_checkpoint(path):
            return str(path)
        logger.warning("skipping %s: incomplete checkpoint (no readable trainer_state.json: the run was stopped "
                       "while writing it); an earlier one is used", path)
    return None


_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def _complete_checkpoint(folder: Path) -> bool:
    # trainer_state.json is what the Trainer writes last into a checkpoint; a kill can also cut it short
    try:
        state = json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "global_step" in state


def fall_back_to_loss_if_unscorable(training_args, val_labels: np.ndarray, source: str) -> None:
    """Pick the best checkpoint (and stop early) by validation loss when the chosen metric cannot score validation.

    ROC-AUC (and every macro average) needs a class with positive and negative windows; without one it is NaN
    every epoch, NaN never counts as an improvement, so early stopping ended the run after its patience and no
    best checkpoint was recorded.
    """
    metric = (training_args.metric_for_best_model or "").removeprefix("eval_")
    if not (metric.startswith("roc_auc") or metric.endswith("_macro")):
        return
    if tunable_classes(val_labels).any():
        return
    logger.warning("%s: no class has both positive and negative validation windows, so validation %s (ROC-AUC) "
                   "is NaN every epoch; the best checkpoint and early stopping follow the validation loss instead. "
                   "Prepare with more validation pieces (--validation_fraction) to use %s.",
                   source, metric, metric)
    training_args.metric_for_best_model = "loss"
    training_args.greater_is_better = False


def predict_probabilities(trainer, dataset):
    """``(y_true int (N, L), probabilities (N, L))`` on ``dataset`` (gathered over all processes)."""
    output = trainer.predict(dataset, metric_key_prefix="predict")
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    labels = output.label_ids[0] if isinstance(output.label_ids, tuple) else output.label_ids
    return (np.asarray(labels) > 0.5).astype(np.int64), sigmoid(logits)


def prefixed(prefix: str, metrics: dict) -> dict:
    return {f"{prefix}_{k}": v for k, v in metrics.items()}


def format_results_table(results: dict, labels: List[str]) -> str:
    """Window-level validation/test metrics as a small plain-text table."""
    keys = ("roc_auc_macro", "roc_auc_micro", "hamming_loss", "precision_macro", "recall_macro", "f1_macro",
            "f1_micro")
    splits = [s for s in ("validation", "test") if results.get(s)]
    lines = [f"{'window level':18}" + "".join(f"{s:>12}" for s in splits)]
    for key in keys:
        cells = []
        for s in splits:
            value = results[s].get(key)
            cells.append(f"{'–' if value is None else format(value, '.3f'):>12}")
        lines.append(f"{key:18}" + "".join(cells))
    for s in splits:
        if results[s]["skipped_classes"]:
            lines.append(f"{s}: classes skipped in macro averages: {', '.join(results[s]['skipped_classes'])}")
    return "\n".join(lines)


def evaluate_saved_model(output_dir: str, dataset_path: str, split: str = "test"):
    """Window- and frame-level metrics and figures of the saved folder, computed by ``instrument-classifier
    evaluate``'s code on the full split; figures are copied to ``output_dir/figures/``.

    Returns ``(metrics entry {"window", "frame", ...}, [figure paths relative to output_dir])``.
    """
    figures_dir = Path(output_dir) / "figures"
    with tempfile.TemporaryDirectory(prefix="train-evaluate-") as scratch:
        report = Path(scratch) / "report"
        results = evaluate_models([output_dir], dataset=dataset_path, split=split, output_dir=report, progress=False)
        shutil.rmtree(figures_dir, ignore_errors=True)
        figures_dir.mkdir()
        figures = []
        for png in sorted(report.glob("*.png")):
            name = f"{split}_heatmap.png" if png.name == "heatmap.png" else f"{split}_roc_curves.png"
            shutil.copyfile(png, figures_dir / name)
            figures.append(f"figures/{name}")
    return results[model_names(results)[0]], figures


def describe_hyperparameters(model, model_args, data_args, training_args, trainer, augmentation) -> dict:
    config = model.config
    architecture = {
        "instrument_cnn": lambda c: f"conv {c.conv_channels}, kernels {c.kernel_sizes}, pools {c.pool_sizes}",
        "instrument_transformer": lambda c: (f"d_model {c.hidden_size}, {c.num_hidden_layers} layer(s), "
                                             f"{c.num_attention_heads} heads, ffn {c.intermediate_size}"),
    }.get(config.model_type, lambda c: config.model_type)(config)
    state = trainer.state
    total_batch = (training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
                   * training_args.world_size)
    optim = getattr(training_args.optim, "value", training_args.optim)
    scheduler = getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)
    return {
        "architecture": f"{architecture}, dropout {config.dropout}, pooling {config.pooling}",
        "parameters": f"{model.num_parameters():,}",
        "fine-tuned from": strip_local_paths(model_args.model_name_or_path) or "– (new model)",
        "optimizer": f"{optim}, lr {training_args.learning_rate:g}, weight decay {training_args.weight_decay:g}",
        "schedule": f"{scheduler}, warmup {training_args.warmup_steps:g}",
        "batch size": (f"{total_batch} ({training_args.per_device_train_batch_size} x {training_args.world_size} "
                       f"process(es) x {training_args.gradient_accumulation_steps} accumulation)"),
        "epochs": (f"{state.epoch:g} of at most {training_args.num_train_epochs:g} (early stopping patience "
                   f"{training_args.early_stopping_patience})"),
        "checkpoint kept": (f"best: {Path(state.best_model_checkpoint).name}, validation "
                            f"{training_args.metric_for_best_model} {round(state.best_metric, 4)}"
                            if training_args.load_best_model_at_end and state.best_model_checkpoint
                            else "the last step"),
        "loss": (f"window BCE + {config.frame_loss_weight:g} x frame BCE, pos_weight "
                 f"{'on' if config.pos_weight else 'off'}"),
        "augmentation": (f"time masks {data_args.time_masks}x{data_args.time_mask_frames}, feature masks "
                         f"{data_args.feature_masks}x{data_args.feature_mask_width}, gain ±{data_args.gain_db:g} dB"
                         + (f", EQ ±{data_args.eq_db:g} dB over {data_args.eq_bands} cosines"
                            if data_args.eq_db > 0 else "")
                         + (f", frequency warp ±{data_args.warp:.0%}" if data_args.warp > 0 else "")
                         if augmentation.enabled else "none"),
        "mixed precision": trainer.accelerator.mixed_precision,
        "seed": training_args.seed,
    }


def main(argv: Optional[Sequence[str]] = None, callbacks: Optional[list] = None, prog: Optional[str] = None) -> dict:
    """Run training; returns the results dict also written to ``all_results.json``.

    ``callbacks`` are extra ``TrainerCallback`` objects (used by tests to interrupt a run); ``prog`` names the
    command in ``--help``.
    """
    model_args, data_args, training_args, explicit = parse_arguments(argv, prog=prog)
    if model_args.model_name_or_path:
        model_args.model_name_or_path = resolve_model_source(model_args.model_name_or_path)

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)])
    # our own progress lines on the main process; transformers' verbosity as --log_level says (default warning)
    logger.setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    if training_args.output_dir is None:
        raise TrainingSetupError("--output_dir is required")
    overrides = apply_study_settings(model_args, training_args, explicit) if model_args.study_settings else {}
    checkpoint = find_checkpoint(training_args, data_args)
    if checkpoint:
        logger.info("resuming from %s", checkpoint)
    set_seed(training_args.seed)

    if model_args.model_name_or_path and data_args.data_dir:  # prepared as the model reads, unless told otherwise
        settings = pretrained_data_settings(model_args)
        taken = {key: value for key, value in settings.items() if key not in explicit}
        for key, value in taken.items():
            setattr(data_args, key, value)
        logger.info("--data_dir prepared with the settings of %s: %s", model_args.model_name_or_path,
                    ", ".join(f"{key} {value}" for key, value in taken.items()))

    # -- data (prepared once, by the main process first: the others then reuse it) ------------------
    with training_args.main_process_first(desc="load or prepare the dataset"):
        dataset, info, data_extractor = load_training_data(data_args, cache_dir=model_args.cache_dir)
    if "validation" not in dataset or dataset["validation"].num_rows == 0:
        raise TrainingSetupError(f"{info['source']}: the validation split is empty; the best checkpoint and the "
                                 "thresholds are chosen on it (prepare with a larger --validation-fraction or more "
                                 "train pieces)")
    train_set = select_samples(dataset["train"], data_args.max_train_samples).with_format(
        "numpy", columns=FEATURE_COLUMNS)
    eval_set = select_samples(dataset["validation"], data_args.max_eval_samples).with_format(
        "numpy", columns=FEATURE_COLUMNS)
    test_set = None
    if "test" in dataset and dataset["test"].num_rows:
        test_set = select_samples(dataset["test"], data_args.max_test_samples).with_format(
            "numpy", columns=FEATURE_COLUMNS)
    labels = list(info["labels"])
    fall_back_to_loss_if_unscorable(training_args, np.asarray(eval_set["labels"]), info["source"])

    # -- model --------------------------------------------------------------------------------
    overrides.update(parse_config_overrides(model_args.config_overrides))
    if model_args.dropout is not None:
        overrides["dropout"] = model_args.dropout
    if model_args.frame_loss_weight is not None:
        overrides["frame_loss_weight"] = model_args.frame_loss_weight
    if model_args.use_pos_weight:
        overrides["pos_weight"] = pos_weight_from_labels(np.asarray(train_set["labels"]), model_args.max_pos_weight)
    model, extractor = build_model(model_args, info, data_extractor, overrides)
    logger.info("%s: %s parameters, labels %s", type(model).__name__, f"{model.num_parameters():,}", labels)

    try:
        eq_basis = FeatureAugmentation.eq_basis_for(extractor, data_args.eq_bands) if data_args.eq_db > 0 else None
    except ValueError as exc:
        raise TrainingSetupError(f"--eq_bands: {exc}") from None
    try:
        warp_maps = FeatureAugmentation.warp_maps_for(extractor, data_args.warp) if data_args.warp > 0 else None
    except ValueError as exc:
        raise TrainingSetupError(f"--warp: {exc}") from None
    augmentation = FeatureAugmentation(
        time_masks=data_args.time_masks, time_mask_frames=data_args.time_mask_frames,
        feature_masks=data_args.feature_masks, feature_mask_width=data_args.feature_mask_width,
        gain_db=data_args.gain_db, gain_scale=FeatureAugmentation.gain_scale_for(extractor),
        eq_db=data_args.eq_db, eq_basis=eq_basis, warp=data_args.warp, warp_maps=warp_maps,
        prob=data_args.augment_prob,
    )
    trainer_callbacks = list(callbacks or [])
    if (training_args.early_stopping_patience and training_args.load_best_model_at_end
            and training_args.eval_strategy != "no"):
        trainer_callbacks.append(EarlyStoppingCallback(training_args.early_stopping_patience,
                                                       training_args.early_stopping_threshold))
    results: dict = {}
    frame_results: dict = {}
    figures: List[str] = []
    base_model = (model_args.model_name_or_path
                  if model_args.model_name_or_path and not os.path.isdir(model_args.model_name_or_path) else None)
    given = list(sys.argv[1:] if argv is None else argv)

    def model_card():
        return build_model_card(
            trainer.model.config, info, {"validation": results.get("validation"), "test": results.get("test")},
            describe_hyperparameters(trainer.model, model_args, data_args, training_args, trainer, augmentation),
            frame_metrics=frame_results, figures=figures,
            model_name=(training_args.hub_model_id.split("/")[-1] if training_args.hub_model_id else
                        f"{Path(training_args.output_dir).resolve().name} (instrument-classifier "
                        f"{trainer.model.config.model_type.removeprefix('instrument_')}, {info['taxonomy']})"),
            repo_id=training_args.hub_model_id, base_model=base_model,
            command=" ".join(["instrument-classifier train"]
                             + [shlex.quote(str(strip_local_paths(str(a)))) for a in given]),
        )

    trainer = InstrumentTrainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=extractor,
        data_collator=InstrumentDataCollator.from_feature_extractor(extractor),
        compute_metrics=make_compute_metrics(labels),
        preprocess_logits_for_metrics=keep_window_logits,
        callbacks=trainer_callbacks,
        augmentation=augmentation,
        model_card=model_card,
    )

    # -- train --------------------------------------------------------------------------------
    logger.info("process %d of %d, device %s, mixed precision %s", training_args.process_index,
                training_args.world_size, training_args.device, trainer.accelerator.mixed_precision)
    start_weights = ({k: v.detach().clone() for k, v in model.state_dict().items()}
                     if model_args.model_name_or_path else None)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    if start_weights is not None and all(torch.equal(v, start_weights[k])
                                         for k, v in trainer.model.state_dict().items()):
        logger.warning("the kept weights are those the fine-tuning started from: the best validation checkpoint "
                       "(%s, by %s) came before any update changed them (a learning rate of 0 in the first warm-up "
                       "step, or a validation score that never improved on it). Train longer, validate on more "
                       "data, or choose the checkpoint by --metric_for_best_model loss.",
                       trainer.state.best_model_checkpoint, training_args.metric_for_best_model)
    train_metrics = {**train_result.metrics, "train_samples": len(train_set)}
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    trainer.save_state()

    # -- thresholds on validation, then save the model folder ------------------------------------
    y_val, p_val = predict_probabilities(trainer, eval_set)
    # the labels validation cannot tune keep the thresholds of the model being fine-tuned (a new model, or new
    # labels, has none: 0.5)
    start = trainer.model.config.thresholds
    trainer.model.config.thresholds = [float(t) for t in tune_thresholds(
        y_val, p_val, default=0.5 if start is None else start)]
    untuned = [label for label, tunable in zip(labels, tunable_classes(y_val)) if not tunable]
    if untuned:
        logger.warning("%d label(s) without both positive and negative validation windows keep %s: %s",
                       len(untuned), "0.5" if start is None else "the fine-tuned model's thresholds",
                       ", ".join(untuned))
    threshold_warning = near_zero_thresholds(trainer.model.config.thresholds, y_val, labels)
    if threshold_warning:
        logger.warning(threshold_warning)
    # recording context (``predict --context``): radius, weight and thresholds, also chosen on validation
    positions = select_samples(dataset["validation"], data_args.max_eval_samples).select_columns(
        ["recording_id", "start_frame"])
    context = tune_context(y_val, p_val, positions["recording_id"], positions["start_frame"],
                           int(trainer.model.config.window_frames))
    trainer.model.config.context = context.to_dict()
    logger.info("recording context: %s (validation micro F1 %.3f, without %.3f)", context.describe(),
                context.validation_f1_micro, context.validation_f1_micro_without)
    trainer.save_model()  # model + config (thresholds) + code + feature extractor, on the main process

    # -- evaluate (window level, tuned thresholds) --------------------------------------------------
    thresholds = trainer.model.config.thresholds
    results["validation"] = compute_instrument_metrics(y_val, p_val, thresholds=thresholds, labels=labels)
    eval_metrics = {**prefixed("eval", results["validation"]), "eval_samples": len(eval_set)}
    trainer.log_metrics("eval", {**prefixed("eval", scalar_metrics(results["validation"])),
                                 "eval_samples": len(eval_set)})
    trainer.save_metrics("eval", eval_metrics)
    if test_set is not None:
        y_test, p_test = predict_probabilities(trainer, test_set)
        results["test"] = compute_instrument_metrics(y_test, p_test, thresholds=thresholds, labels=labels)
        test_metrics = {**prefixed("test", results["test"]), "test_samples": len(test_set)}
        trainer.log_metrics("test", {**prefixed("test", scalar_metrics(results["test"])),
                                     "test_samples": len(test_set)})
        if trainer.is_world_process_zero() and info.get("local_path") and data_args.max_test_samples is None:
            # frame level and figures, by the evaluate command's code (the numbers `instrument-classifier evaluate`
            # gives)
            evaluated, figures[:] = evaluate_saved_model(training_args.output_dir, info["local_path"], "test")
            frame_results["test"] = evaluated["frame"]
            test_metrics.update(prefixed("test_frame", evaluated["frame"]))
        trainer.save_metrics("test", test_metrics)

    if trainer.is_world_process_zero():
        write_model_card(model_card(), training_args.output_dir)
        print(f"\n{Path(training_args.output_dir).name}: thresholds tuned on validation; "
              f"model saved to {training_args.output_dir}\n{format_results_table(results, labels)}")
        if threshold_warning:
            print(f"warning: {threshold_warning}")
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="instrument-classifier train")  # writes the same card, uploads the folder
    return results


def add_train_arguments(parser) -> None:
    """The ``train`` entry of ``instrument-classifier --help``.

    ``instrument-classifier train ...`` hands its arguments to :func:`cli` before argparse sees them: they are
    the three argument dataclasses' flags, read by ``HfArgumentParser``.
    """
    parser.add_argument("arguments", nargs=argparse.REMAINDER,
                        help="the training flags (--model_type, --dataset_path, --output_dir, the Trainer's ...) "
                             "or one JSON file of them; `instrument-classifier train --help` lists them")


def run_train(args) -> int:
    """Run :func:`cli` on the arguments :func:`add_train_arguments` collected."""
    return cli(args.arguments)


#: how the command is named in its error messages (``train.py`` when started through the checkout's wrapper)
PROG = "instrument-classifier train"


def cli(argv: Optional[Sequence[str]] = None, prog: str = PROG) -> int:
    """``instrument-classifier train ...``: bad arguments or data end with one clear line and exit code 2.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the command name (default: ``sys.argv[1:]``).
    prog : str
        The name error messages start with.

    Returns
    -------
    int
        The exit code: 0, or 2 for a setup error (the message names the file or argument).
    """
    try:
        main(argv, prog=prog)
    except (TrainingSetupError, MusicNetError, AudioError, UnknownInstrumentError, FileNotFoundError,
            FileExistsError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
