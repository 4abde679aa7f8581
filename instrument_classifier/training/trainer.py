"""``InstrumentTrainer``: the 🤗 Trainer plus train-time feature augmentation and our model card."""

from __future__ import annotations

from typing import Callable, Optional

from transformers import Trainer

from .feature_augmentation import FeatureAugmentation
from .model_card import write_model_card

__all__ = ["InstrumentTrainer"]


class InstrumentTrainer(Trainer):
    """A :class:`transformers.Trainer` that augments training batches and writes our model card.

    Parameters
    ----------
    augmentation : FeatureAugmentation, optional
        Applied to ``input_features`` of training batches only (the model is in train mode), on the device
        the batch is on, after the collator normalised it.
    model_card : callable, optional
        Returns the :class:`huggingface_hub.ModelCard` to write as ``README.md`` when the Trainer writes a
        card (``push_to_hub``); without it the Trainer's generic card is written.
    """

    def __init__(self, *args, augmentation: Optional[FeatureAugmentation] = None,
                 model_card: Optional[Callable[[], object]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.augmentation = augmentation if augmentation is not None and augmentation.enabled else None
        self.model_card = model_card

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.augmentation is not None and model.training:
            inputs = {**inputs, "input_features": self.augmentation(inputs["input_features"])}
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def create_model_card(self, **kwargs) -> None:
        if self.model_card is None:
            return super().create_model_card(**kwargs)
        if self.is_world_process_zero():
            write_model_card(self.model_card(), self.args.output_dir)
