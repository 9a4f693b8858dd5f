"""Target classifiers: registered architectures, the ``[0, 1]``-input wrapper, ensembles."""

from invprotect.targets.accuracy import accuracy, predict
from invprotect.targets.classifier import CIFAR10_MEAN, CIFAR10_STD, Classifier
from invprotect.targets.ensemble import Ensemble
from invprotect.targets.zoo import (
    ArchFactory,
    create_arch,
    is_arch,
    list_archs,
    register_arch,
)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "ArchFactory",
    "Classifier",
    "Ensemble",
    "accuracy",
    "create_arch",
    "is_arch",
    "list_archs",
    "predict",
    "register_arch",
]
