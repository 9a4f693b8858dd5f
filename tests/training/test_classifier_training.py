"""Target training: learns, is seeded, and resumes exactly after an interruption."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from invprotect.checkpoint import load_checkpoint
from invprotect.data import load_image_set, train_test_split
from invprotect.targets import Classifier
from invprotect.targets.accuracy import accuracy
from invprotect.training import (
    ClassifierTrainingConfig,
    TrainingEvent,
    augment_batch,
    one_cycle_lr,
    train_classifier,
)


@pytest.fixture(scope="module")
def cifar_subsets(cifar10_root: Path):
    train_index, test_index = train_test_split(cifar10_root)
    train_index.samples = train_index.samples[::50]  # 1,000 images, 100 per class
    test_index.samples = test_index.samples[::20]  # 500 images
    return load_image_set(train_index), load_image_set(test_index)


def test_short_training_lifts_accuracy_clearly_above_chance(cifar_subsets) -> None:
    train, test = cifar_subsets
    torch.manual_seed(0)
    model = Classifier("convnet_small", train.classes)
    before = accuracy(model, test)
    # fp32 explicitly: "auto" picks bf16 on CPUs with AMX, where this is covered by the test below
    config = ClassifierTrainingConfig(epochs=3, batch_size=64, lr=0.05, precision="fp32")
    history = train_classifier(model, train, test, config)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["test_accuracy"] >= 0.25 > before + 0.1


def test_training_in_bf16_updates_float32_weights(cifar_subsets) -> None:
    # A few steps only: bf16 convolutions are about ten times slower on CPUs without native
    # bf16. The weights stay float32; only the passes run in bf16 autocast.
    train = cifar_subsets[0].subset(range(0, 1000, 25))
    torch.manual_seed(0)
    model = Classifier("mobilenet_small", train.classes)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = ClassifierTrainingConfig(epochs=1, batch_size=20, precision="bf16")
    history = train_classifier(model, train, None, config)
    assert [h["epoch"] for h in history] == [1]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    assert all(torch.isfinite(p).all() for p in model.parameters())


class _InterruptError(Exception):
    pass


def test_resume_after_interruption_matches_an_uninterrupted_run(cifar_subsets, tmp_path) -> None:
    train = cifar_subsets[0].subset(range(0, 1000, 4))
    config = ClassifierTrainingConfig(epochs=2, batch_size=50, precision="fp32")

    def fresh() -> Classifier:
        torch.manual_seed(1)
        return Classifier("resnet_small", train.classes)

    straight = fresh()
    train_classifier(straight, train, None, config)

    def crash_in_epoch_two(event: TrainingEvent) -> None:
        if event.epoch == 2 and event.step == 2:
            raise _InterruptError

    interrupted = fresh()
    with pytest.raises(_InterruptError):
        train_classifier(interrupted, train, None, config, tmp_path / "state", crash_in_epoch_two)
    resumed = fresh()
    history = train_classifier(resumed, train, None, config, tmp_path / "state")
    assert [h["epoch"] for h in history] == [2]
    _, state = load_checkpoint(tmp_path / "state")
    assert [h["epoch"] for h in state["history"]] == [1, 2]  # one record per epoch
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="different settings"):
        other = ClassifierTrainingConfig(epochs=3, batch_size=50, precision="fp32")
        train_classifier(fresh(), train, None, other, tmp_path / "state")


def test_augmentation_crops_and_flips_per_sample() -> None:
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).view(2, 3, 8, 8)
    out = augment_batch(images, torch.Generator().manual_seed(0), padding=2)
    assert out.shape == images.shape and out.dtype == torch.uint8
    again = augment_batch(images, torch.Generator().manual_seed(0), padding=2)
    assert torch.equal(out, again)
    assert not torch.equal(out, images)


def test_one_cycle_schedule_warms_up_then_decays_to_zero() -> None:
    rates = [one_cycle_lr(step, 100, 0.1) for step in range(100)]
    assert rates[0] < rates[19] == pytest.approx(0.1)
    assert rates[-1] < 0.001 and max(rates) == pytest.approx(0.1)
