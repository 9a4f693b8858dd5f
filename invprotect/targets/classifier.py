"""A classifier that takes ``[0, 1]`` images: normalisation inside, saved as safetensors + JSON."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from invprotect.checkpoint import CheckpointError, load_checkpoint, load_module, save_checkpoint
from invprotect.targets.zoo import create_arch

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
"""Per-channel mean of the CIFAR-10 training images (the default normalisation)."""
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
"""Per-channel standard deviation of the CIFAR-10 training images."""
_FORMAT = "invprotect.target/1"


class Classifier(nn.Module):
    """A registered architecture behind a normalisation layer, so it takes ``[0, 1]`` RGB input.

    Args:
        arch: Registered architecture name (see `invprotect.targets.list_archs`).
        classes: Class names, in label order.
        input_size: Side of the square images the classifier was built for.
        mean: Per-channel mean subtracted inside the model.
        std: Per-channel standard deviation divided out inside the model.
        metadata: Free-form JSON-serialisable facts stored with the weights (data
            fingerprint, test accuracy, epochs, ...).

    Shape:
        - Input: ``(B, 3, H, W)`` float in ``[0, 1]``
        - Output: ``(B, len(classes))`` logits
    """

    def __init__(
        self,
        arch: str,
        classes: Sequence[str],
        input_size: int = 32,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values with std > 0, got {mean} and {std}")
        self.arch = arch
        self.classes = list(classes)
        self.input_size = int(input_size)
        self.net = create_arch(arch, len(self.classes), self.input_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.metadata: dict[str, Any] = dict(metadata or {})

    def forward(self, x: Tensor) -> Tensor:
        """Logits for ``[0, 1]`` images."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W), got shape {tuple(x.shape)}")
        return self.net((x - self.mean) / self.std)

    def config(self) -> dict[str, Any]:
        """The JSON sidecar: architecture, classes, input size, normalisation, metadata."""
        return {
            "format": _FORMAT,
            "arch": self.arch,
            "classes": self.classes,
            "input_size": self.input_size,
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
            "metadata": self.metadata,
        }

    def save(self, path: str | Path) -> Path:
        """Write ``weights.safetensors`` and ``config.json`` into the directory ``path``."""
        return save_checkpoint(path, self.state_dict(), self.config())

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str | None = None) -> Classifier:
        """Load a classifier saved by `save`, in ``eval()`` mode.

        Raises:
            CheckpointError: If ``path`` is not a target checkpoint (or is a pickle).
        """
        tensors, config = load_checkpoint(path)
        if config.get("format") != _FORMAT:
            raise CheckpointError(
                f"{path} is not a target classifier checkpoint (format {config.get('format')!r})"
            )
        model = cls(
            config["arch"],
            config["classes"],
            config["input_size"],
            config["mean"],
            config["std"],
            config.get("metadata"),
        )
        load_module(model, tensors, path, config["arch"])
        return model.to(device).eval()
