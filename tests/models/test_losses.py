"""The RAEG losses: bounded fooling loss, structural and feature perceptual losses, GAN terms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from invprotect.models.losses import (
    FeatureLoss,
    discriminator_loss,
    fooling_margin_loss,
    generator_gan_loss,
    structural_loss,
)
from invprotect.targets import Classifier


def test_fooling_margin_loss_is_zero_once_another_class_wins_by_the_margin() -> None:
    labels = torch.tensor([0, 0])
    logits = torch.tensor([[1.0, 7.0, 0.0], [3.0, 2.0, 0.0]])
    loss = fooling_margin_loss(logits, labels, margin=5.0)
    # first image: 1 - 7 + 5 < 0 -> 0; second: 3 - 2 + 5 = 6; mean 3
    assert loss.item() == pytest.approx(3.0)


def test_structural_loss_is_zero_for_equal_images_and_grows_with_noise() -> None:
    x = torch.rand(2, 3, 32, 32)
    assert structural_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    small = structural_loss((x + 0.02 * torch.randn_like(x)).clamp(0, 1), x)
    large = structural_loss((x + 0.2 * torch.randn_like(x)).clamp(0, 1), x)
    assert 0 < small < large


def test_gan_losses_reward_the_right_side() -> None:
    confident = torch.full((4, 1), 5.0)
    assert generator_gan_loss(confident) < generator_gan_loss(-confident)
    assert discriminator_loss(confident, -confident) < discriminator_loss(-confident, confident)


def test_feature_loss_compares_the_first_convolutions_and_passes_gradients() -> None:
    classifier = Classifier("vgg_small", [str(i) for i in range(10)])
    loss = FeatureLoss(classifier, layers=3)
    x = torch.rand(2, 3, 32, 32)
    assert [f.shape[1] for f in loss.features(x)] == [
        m.out_channels for m in classifier.modules() if isinstance(m, nn.Conv2d)
    ][:3]
    assert loss(x, x).item() == 0.0
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1).requires_grad_()
    value = loss(y, x)
    value.backward()
    assert value > 0 and y.grad is not None and y.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in classifier.parameters())  # frozen
    loss.train()
    assert not classifier.training  # batch-norm statistics never move


def test_feature_loss_refuses_too_few_convolutions() -> None:
    with pytest.raises(ValueError, match="convolutions"):
        FeatureLoss(nn.Sequential(nn.Conv2d(3, 4, 3)), layers=2)
