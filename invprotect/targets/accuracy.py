"""Top-1 accuracy of a classifier on an image set."""

from __future__ import annotations

import torch
from torch import nn

from invprotect.data import ImageSet


@torch.no_grad()
def predict(
    model: nn.Module, images: ImageSet, batch_size: int = 500, device: torch.device | None = None
) -> torch.Tensor:
    """Predicted labels (``int64``, on the CPU) of ``model`` for every image of ``images``."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    predictions = []
    for start in range(0, len(images), batch_size):
        index = torch.arange(start, min(start + batch_size, len(images)))
        predictions.append(model(images.batch(index, device=device)).argmax(1).cpu())
    model.train(was_training)
    return torch.cat(predictions)


def accuracy(
    model: nn.Module, images: ImageSet, batch_size: int = 500, device: torch.device | None = None
) -> float:
    """Fraction of ``images`` whose predicted label equals the true label."""
    return (predict(model, images, batch_size, device) == images.labels).float().mean().item()
