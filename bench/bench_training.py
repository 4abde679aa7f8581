"""Training throughput: train.py's Trainer path vs a bare PyTorch loop over in-memory tensors.

Same model (default config of ``--model_type``), same batch size, same optimiser step (AdamW with the
Trainer's defaults from ``InstrumentTrainingArguments``, gradient clipping at 1.0, LR schedule), same windows.
The Trainer reads the windows from a memory-mapped Arrow dataset on disk and normalises them in
``InstrumentDataCollator``, as ``train.py`` does; the bare loop indexes pre-normalised tensors in memory.
Rounds alternate (Trainer, loop, Trainer, ...) so machine load hits both alike; each round times ``--steps``
optimisation steps after ``--warmup`` untimed ones. Prints one line: median windows/s of each and the ratio
(target >= 0.8).

    python bench/bench_training.py [--model_type cnn|transformer] [--batch_size 32] [--steps 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from datasets import Array2D, Dataset, Features, List, Value, load_from_disk
from transformers import PrinterCallback, TrainerCallback, get_scheduler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from instrument_classifier.modeling import MODEL_CLASSES  # noqa: E402
from instrument_classifier.modeling.feature_extraction_instrument import InstrumentFeatureExtractor  # noqa: E402
from instrument_classifier.training.arguments import InstrumentTrainingArguments  # noqa: E402
from instrument_classifier.training.collator import InstrumentDataCollator  # noqa: E402
from instrument_classifier.training.trainer import InstrumentTrainer  # noqa: E402


def make_dataset(folder: Path, windows: int, frames: int, features: int, labels: int, seed: int = 0):
    """Random RAW-feature windows with sparse multi-hot labels, saved to disk and memory-mapped back."""
    rng = np.random.default_rng(seed)
    frame_labels = (rng.random((windows, frames, labels)) < 0.15).astype(np.uint8)
    data = {
        "input_features": (rng.standard_normal((windows, frames, features)) * 20 - 5).astype(np.float32),
        "labels": frame_labels.max(axis=1).astype(np.float32),
        "frame_labels": frame_labels,
    }
    spec = Features({"input_features": Array2D((frames, features), "float32"),
                     "labels": List(Value("float32"), length=labels),
                     "frame_labels": Array2D((frames, labels), "uint8")})
    Dataset.from_dict(data, features=spec).save_to_disk(str(folder))
    return load_from_disk(str(folder)), data


def new_model(model_type: str, seed: int = 0):
    torch.manual_seed(seed)
    config_class, model_class = MODEL_CLASSES[model_type]
    return model_class(config_class())


class StepClock(TrainerCallback):
    """Records the wall time at the end of every optimisation step."""

    def __init__(self):
        self.times = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())


def trainer_round(model_type, dataset, extractor, batch_size, warmup, steps, workdir) -> float:
    args = InstrumentTrainingArguments(
        output_dir=str(workdir), per_device_train_batch_size=batch_size, max_steps=warmup + steps,
        eval_strategy="no", save_strategy="no", logging_strategy="no", load_best_model_at_end=False,
        disable_tqdm=True, report_to="none", seed=0,
    )
    clock = StepClock()
    trainer = InstrumentTrainer(model=new_model(model_type), args=args,
                                train_dataset=dataset.with_format("numpy"), processing_class=extractor,
                                data_collator=InstrumentDataCollator.from_feature_extractor(extractor),
                                callbacks=[clock])
    trainer.remove_callback(PrinterCallback)  # one printed line: no per-run log dicts
    trainer.train()
    return steps * batch_size / (clock.times[-1] - clock.times[warmup - 1])


def loop_round(model_type, tensors, batch_size, warmup, steps) -> float:
    defaults = InstrumentTrainingArguments(output_dir="unused", report_to="none")
    model = new_model(model_type).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=defaults.learning_rate, weight_decay=defaults.weight_decay,
                                  fused=True)
    total = warmup + steps
    scheduler = get_scheduler(defaults.lr_scheduler_type, optimizer, num_warmup_steps=int(0.05 * total),
                              num_training_steps=total)
    x, y, fy = tensors
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(x), generator=generator)
    start = None
    for step in range(total):
        if step == warmup:
            start = time.perf_counter()
        idx = order[(step * batch_size) % len(x):][:batch_size]
        if len(idx) < batch_size:
            order = torch.randperm(len(x), generator=generator)
            idx = order[:batch_size]
        loss = model(input_features=x[idx], labels=y[idx], frame_labels=fy[idx]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), defaults.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_type", choices=["cnn", "transformer"], default="transformer")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--windows", type=int, default=512)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()

    config = MODEL_CLASSES[args.model_type][0]()
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        dataset, raw = make_dataset(Path(tmp) / "data", args.windows, config.window_frames, config.feature_size,
                                    config.num_labels)
        extractor = InstrumentFeatureExtractor().fit_normalization([raw["input_features"]])
        normalised = torch.from_numpy(extractor.normalize(raw["input_features"]))
        tensors = (normalised, torch.from_numpy(raw["labels"]),
                   torch.from_numpy(raw["frame_labels"].astype(np.float32)))
        trainer_speeds, loop_speeds = [], []
        for r in range(args.rounds):
            trainer_speeds.append(trainer_round(args.model_type, dataset, extractor, args.batch_size, args.warmup,
                                                args.steps, Path(tmp) / f"run{r}"))
            loop_speeds.append(loop_round(args.model_type, tensors, args.batch_size, args.warmup, args.steps))
    trainer_ws, loop_ws = statistics.median(trainer_speeds), statistics.median(loop_speeds)
    print(f"training throughput ({args.model_type}, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} x {args.steps} steps): Trainer + Arrow + collator {trainer_ws:.1f} windows/s, "
          f"bare PyTorch loop on in-memory tensors {loop_ws:.1f} windows/s, ratio {trainer_ws / loop_ws:.2f} "
          f"(target >= 0.8)")


if __name__ == "__main__":
    main()
