"""Training: the loops (classifiers, protectors) and the runs the commands call.

A loop (`train_classifier`, `invprotect.training.protector.train_protector`, and
`invprotect.defences.train_comdefend` beside the model it trains) trains a model in
memory; a run (`run_target_training`, `run_protector_training`,
`run_comdefend_training`) decodes the data (`load_training_data`), calls its loop with
a resumable state, and writes the checkpoint with the metadata of the run.
"""

from invprotect.training.classifier import (
    ClassifierTrainingConfig,
    TrainingEvent,
    augment_batch,
    one_cycle_lr,
    train_classifier,
)
from invprotect.training.comdefend_run import ComDefendRunConfig, run_comdefend_training
from invprotect.training.data import Listener, RunResult, TrainingData, load_training_data
from invprotect.training.protector_run import ProtectorRunConfig, run_protector_training
from invprotect.training.target_run import TargetRunConfig, run_target_training

__all__ = [
    "ClassifierTrainingConfig",
    "ComDefendRunConfig",
    "Listener",
    "ProtectorRunConfig",
    "RunResult",
    "TargetRunConfig",
    "TrainingData",
    "TrainingEvent",
    "augment_batch",
    "load_training_data",
    "one_cycle_lr",
    "run_comdefend_training",
    "run_protector_training",
    "run_target_training",
    "train_classifier",
]
