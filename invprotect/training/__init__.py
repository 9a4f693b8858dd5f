"""Training loops: target classifiers and protectors (seeded and resumable)."""

from invprotect.training.classifier import (
    ClassifierTrainingConfig,
    TrainingEvent,
    augment_batch,
    one_cycle_lr,
    train_classifier,
)

__all__ = [
    "ClassifierTrainingConfig",
    "TrainingEvent",
    "augment_batch",
    "one_cycle_lr",
    "train_classifier",
]
