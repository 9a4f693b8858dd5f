"""A short real training run: protected images fool a trained target at the wanted PSNR."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from invprotect.attacks import quantize_ste
from invprotect.data import ImageSet, load_image_set, scan_image_folder
from invprotect.metrics import psnr
from invprotect.models import RAEG
from invprotect.models.exact import ExactCodec
from invprotect.targets import Classifier, Ensemble
from invprotect.training import ClassifierTrainingConfig, train_classifier
from invprotect.training.protector import ProtectorTrainingConfig, train_protector

SMALL = {"generator": {"levels": 2, "blocks_per_level": 1, "hidden_channels": 16}}
TARGET_PSNR = 27.0


def _subset(root: Path, step: int) -> ImageSet:
    index = scan_image_folder(root)
    index.samples = index.samples[::step]
    return load_image_set(index)


@pytest.fixture(scope="module")
def trained(cifar10_root: Path) -> tuple[RAEG, Classifier, ImageSet, list]:
    train = _subset(cifar10_root / "train", 20)  # 2,500 images
    torch.manual_seed(0)
    target = Classifier("resnet_small", train.classes)
    train_classifier(target, train, None, ClassifierTrainingConfig(epochs=3, batch_size=128))
    target.eval()
    torch.manual_seed(0)
    raeg = RAEG.from_preset("cpu-32", **SMALL)
    config = ProtectorTrainingConfig(
        steps=200, batch_size=16, lr=1e-3, target_psnr=TARGET_PSNR, attacks={"identity": 1.0}
    )
    events = train_protector(raeg, Ensemble([target]), train, config)
    return raeg, target, _subset(cifar10_root / "test", 50), events


def test_protected_images_fool_the_target_near_the_wanted_psnr(trained) -> None:
    raeg, target, test, events = trained
    x = test.batch(range(len(test)))
    with torch.no_grad():
        protected = quantize_ste(raeg.protect(x))
        right_before = target(x).argmax(1) == test.labels
        right_after = target(protected).argmax(1) == test.labels
    assert right_before.float().mean() > 0.35  # the target learnt something (3 short epochs)
    # protection takes away about half of what it knew (200 steps of a small generator)
    assert (right_after & right_before).sum() < 0.65 * right_before.sum()
    held = psnr(protected, x).mean().item()
    assert abs(held - TARGET_PSNR) < 0.5, held  # on held-out images
    assert abs(events[-1].smoothed_psnr - TARGET_PSNR) < 0.5


def test_exactness_costs_less_than_the_original_file(trained) -> None:
    raeg, _, test, _ = trained
    originals = test.images[:40]
    with torch.no_grad():
        protected = (raeg.protect(originals.float() / 255) * 255).round().to(torch.uint8)
    blobs = ExactCodec(raeg).residuals(originals, protected)
    assert sum(map(len, blobs)) / len(blobs) < originals[0].numel() / 2  # < 4 bits per value
