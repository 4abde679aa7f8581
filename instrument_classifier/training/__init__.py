"""Training: the entry point ``run_train`` (``instrument-classifier train``) and its pieces: arguments, data,
collator, augmentation, model set-up, metrics, model card.

Each module does one thing:

- ``run_train``: the entry point (``HfArgumentParser`` over the argument dataclasses, the 🤗 Trainer run).
- ``arguments``: ``ModelArguments``, ``DataArguments``, ``InstrumentTrainingArguments`` (HfArgumentParser).
- ``data_loading``: a prepared folder, a Hub dataset or MusicNet folders -> ``(DatasetDict, info, extractor)``.
- ``collator``: stacks windows, normalises RAW features with the train mean/std.
- ``feature_augmentation``: SpecAugment-style masks and gain on training batches.
- ``model_factory``: a new model of ``--model_type`` or a pretrained one, with config overrides.
- ``class_weights``: ``pos_weight`` from training label frequencies.
- ``compute_metrics``: validation metrics for the Trainer (window level).
- ``trainer``: ``InstrumentTrainer`` (augmentation + our model card).
- ``model_card``: the ``README.md`` of a trained model folder.
"""
