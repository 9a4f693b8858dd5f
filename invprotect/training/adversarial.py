"""Adversarial training's inner step: PGD under an L-infinity bound (Madry et al., 2018).

A pirate who suspects his training images carry adversarial perturbations can train on
worst-case versions of them: every batch is replaced by ``x + delta``, ``|delta| <=
epsilon`` per pixel, where ``delta`` climbs the classifier's loss in ``steps`` signed
gradient steps from a random start. `invprotect.training.ClassifierTrainingConfig`
takes a `PGDConfig` as its ``adversarial`` setting.

Each PGD step costs about one forward and one backward pass of the model, so a run with
``steps`` steps takes roughly ``steps + 1`` times as long as plain training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn


@dataclass(frozen=True)
class PGDConfig:
    """Settings of `pgd_linf`.

    Attributes:
        epsilon: Largest change of a pixel, in ``[0, 1]`` units (``8 / 255``).
        step_size: Size of each signed gradient step (``2 / 255``).
        steps: Gradient steps per batch.
        random_start: Start from a uniform random point of the ``epsilon`` ball (else
            from the image itself).
    """

    epsilon: float = 8.0 / 255.0
    step_size: float = 2.0 / 255.0
    steps: int = 4
    random_start: bool = True

    def __post_init__(self) -> None:
        for name in ("epsilon", "step_size"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"PGD {name} must be a positive number, got {value}")
        if self.steps < 1:
            raise ValueError(f"PGD steps must be >= 1, got {self.steps}")


def pgd_linf(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    config: PGDConfig | None = None,
    generator: torch.Generator | None = None,
    cast: torch.dtype | None = None,
) -> Tensor:
    """Images moved within ``epsilon`` (L-infinity) to raise the cross-entropy of ``model``.

    The model is used in whatever mode it is in (training mode during adversarial
    training, as in Madry et al.; batch-norm statistics then also see the attack's
    batches). Only the input receives gradients: the parameters' ``.grad`` are left
    alone.

    Args:
        model: Classifier taking ``[0, 1]`` images.
        images: Float ``(B, 3, H, W)`` in ``[0, 1]``.
        labels: True labels ``(B,)``.
        config: PGD settings; ``None`` takes `PGDConfig`'s defaults (8/255, 2/255, 4 steps).
        generator: CPU generator of the random start (``None``: the global RNG).
        cast: Autocast dtype of the forward passes (``None``: full precision).

    Returns:
        The perturbed images, detached, in ``[0, 1]``, ``|result - images| <= epsilon``.
    """
    config = config or PGDConfig()
    images = images.detach()
    if config.random_start:
        noise = torch.rand(images.shape, generator=generator).to(images)
        delta = (noise * 2.0 - 1.0) * config.epsilon
    else:
        delta = torch.zeros_like(images)
    delta = ((images + delta).clamp(0.0, 1.0) - images).requires_grad_(True)
    for _ in range(config.steps):
        with torch.autocast(
            images.device.type, dtype=cast or torch.float32, enabled=cast is not None
        ):
            loss = F.cross_entropy(model(images + delta), labels)
        (gradient,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta += config.step_size * gradient.sign()
            delta.clamp_(-config.epsilon, config.epsilon)
            delta.copy_((images + delta).clamp(0.0, 1.0) - images)
    return (images + delta).detach()
