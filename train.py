#!/usr/bin/env python
"""``instrument-classifier train`` as a script, for ``accelerate launch`` (which starts a file) in a checkout.

    python train.py --model_type cnn --dataset_path outputs/default/dataset --output_dir runs/cnn
    accelerate launch --config_file accelerate_configs/multi_gpu_bf16.yaml train.py --model_type cnn ...
    accelerate launch --multi_gpu --num_processes 2 train.py --model_type cnn ... --use_cpu

The code lives in :mod:`instrument_classifier.training.run_train` (the same flags; ``--help`` lists them).
Without a checkout: ``instrument-classifier train ...`` or
``accelerate launch -m instrument_classifier.training.run_train ...``.
"""

import sys

from instrument_classifier.training.run_train import cli, main, parse_arguments  # noqa: F401  (train.main(...))

if __name__ == "__main__":
    sys.exit(cli(prog="train.py"))
