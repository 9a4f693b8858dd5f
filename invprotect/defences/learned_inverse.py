"""A learned inverse: the thief who holds some (original, protected) pairs learns to undo the rest.

BridgePure-style cleaning (2025): a thief who obtained ``N`` originals of the protected
images (a few hundred leaked files, say) trains a small image-to-image network on the
pairs to map ``protected -> original``, then runs it over the whole protected set.

The network is a plain (not invertible) U-Net, `InverseUNet`: at each level two 3x3
convolutions with ReLU; 2x average pooling down, bilinear 2x upsampling up, the skip of
the same level concatenated; a 1x1 convolution to a residual added to the input::

    y = clamp(x + head(decoder(encoder(x))), 0, 1)

The head starts at zero, so an untrained network returns its input unchanged and every
improvement over "do nothing" comes from training. Training (`train_learned_inverse`)
minimises the mean squared error to the originals with Adam (cosine decay), with the
same random horizontal flip applied to both images of a pair; everything random comes
from ``seed``.

Checkpoints are directories written by `invprotect.checkpoint.save_checkpoint`:
``weights.safetensors`` and ``config.json`` (architecture and training facts).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from invprotect.checkpoint import (
    CheckpointError,
    checkpoint_format,
    load_checkpoint,
    load_module,
    save_checkpoint,
)
from invprotect.defences._base import Defence, GeneratorArg, to_8bit_grid
from invprotect.defences.comdefend import TrainingStep
from invprotect.metrics import psnr, psnr_from_mse

CHECKPOINT_KIND = "invprotect.defences.learned_inverse"
"""The name in a learned inverse's checkpoint format (the ``kind`` field of older ones)."""

CHECKPOINT_VERSION = 1

CHECKPOINT_FORMAT = f"{CHECKPOINT_KIND}/{CHECKPOINT_VERSION}"
"""The ``format`` field of its checkpoints (older ones wrote ``kind`` and ``version``)."""


@dataclass(frozen=True)
class LearnedInverseConfig:
    """Architecture of an `InverseUNet`.

    Attributes:
        channels: Width of each level, from full resolution down; each further level
            works at half the resolution of the one above (``(32, 64, 128)``: 32x32,
            16x16 and 8x8 for CIFAR-10: 0.47 M parameters, 114 MMAC per 32x32 image).
    """

    channels: tuple[int, ...] = (32, 64, 128)

    def __post_init__(self) -> None:
        widths = tuple(self.channels)
        if not widths or any(
            isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths
        ):
            raise ValueError(
                f"channels must be a non-empty sequence of positive ints, got {widths}"
            )
        object.__setattr__(self, "channels", widths)

    @property
    def side_multiple(self) -> int:
        """Image sides are padded to a multiple of this (one halving per level below the top)."""
        return 2 ** (len(self.channels) - 1)


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class InverseUNet(nn.Module):
    """A small U-Net predicting a residual: ``y = x + head(...)`` (not clamped, not rounded).

    Args:
        config: Widths of the levels; ``None`` takes `LearnedInverseConfig`'s default.

    Shape:
        - Input: ``(B, 3, H, W)``, float in ``[0, 1]``, any ``H, W`` (padded with
          replicated borders to a multiple of ``config.side_multiple`` and cropped back).
        - Output: ``(B, 3, H, W)``.
    """

    def __init__(self, config: LearnedInverseConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else LearnedInverseConfig()
        widths = self.config.channels
        self.down = nn.ModuleList(
            _double_conv(c_in, c_out) for c_in, c_out in zip((3, *widths[:-1]), widths, strict=True)
        )
        self.up = nn.ModuleList(
            _double_conv(widths[i] + widths[i + 1], widths[i]) for i in range(len(widths) - 1)
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # He init: features keep their scale with depth
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
        self.head = nn.Conv2d(widths[0], 3, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: Tensor) -> Tensor:
        """The predicted originals of ``images``."""
        height, width = images.shape[-2:]
        multiple = self.config.side_multiple
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        x = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else images
        skips = []
        h = x - 0.5
        for level, block in enumerate(self.down):
            if level:
                h = F.avg_pool2d(h, 2)
            h = block(h)
            skips.append(h)
        for level in reversed(range(len(self.up))):
            h = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
            h = self.up[level](torch.cat([skips[level], h], dim=1))
        return (x + self.head(h))[..., :height, :width]


class LearnedInverse(Defence):
    """The thief's learned inverse of a protection: an `InverseUNet` trained on leaked pairs.

    A fresh one returns its input (the residual head starts at zero); get a trained one
    with `train_learned_inverse` or `LearnedInverse.load`.

    Args:
        config: Architecture; ``None`` takes `LearnedInverseConfig`'s default.
        metrics: Facts to keep with the model (training pairs, PSNR before and after,
            time), saved in the checkpoint's ``config.json``.

    Shape:
        - Input: ``(B, 3, H, W)`` in ``[0, 1]`` on the 8-bit grid, any ``H, W``.
        - Output: the same, on the 8-bit grid.
    """

    def __init__(
        self, config: LearnedInverseConfig | None = None, metrics: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.net = InverseUNet(config)
        self.config = self.net.config
        self.metrics: dict[str, Any] = dict(metrics or {})

    def purify(self, images: Tensor, generator: GeneratorArg) -> Tensor:
        """Predict the originals of ``images`` (clamped to ``[0, 1]``; `forward` rounds)."""
        return self.net(images).clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"channels={self.config.channels}"

    def save(self, path: str | Path) -> Path:
        """Save weights and config (with `metrics`) to the checkpoint directory ``path``.

        Returns:
            The checkpoint directory.
        """
        config = {
            "format": CHECKPOINT_FORMAT,
            "architecture": {"channels": list(self.config.channels)},
            "metrics": self.metrics,
        }
        return save_checkpoint(path, self.state_dict(), config)

    @classmethod
    def load(cls, path: str | Path) -> LearnedInverse:
        """Load a checkpoint directory written by `save`, in ``eval()`` mode.

        Raises:
            CheckpointError: If ``path`` is missing, not a learned-inverse checkpoint, or
                its weights do not match its architecture.
        """
        tensors, config = load_checkpoint(path)
        if checkpoint_format(config) != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{path} is not a learned-inverse checkpoint "
                f"(format {checkpoint_format(config)!r}); "
                "train one with invprotect.defences.learned_inverse.train_learned_inverse"
            )
        try:
            architecture = LearnedInverseConfig(tuple(config["architecture"]["channels"]))
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{path}: bad learned-inverse architecture in config.json: {error}"
            ) from None
        model = cls(architecture, metrics=config.get("metrics", {}))
        load_module(model, tensors, path, "the architecture")
        return model.eval()


def _as_float(images: Tensor) -> Tensor:
    """``uint8`` images to float ``[0, 1]``; float images as they are."""
    return images.float().div(255.0) if images.dtype == torch.uint8 else images.float()


def _check_pairs(protected: Tensor, originals: Tensor) -> None:
    for name, images in (("protected", protected), ("originals", originals)):
        if not isinstance(images, Tensor) or not (
            images.dtype == torch.uint8 or images.is_floating_point()
        ):
            raise TypeError(f"{name} must be a uint8 or float tensor (B, 3, H, W)")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(images.shape)}")
    if protected.shape != originals.shape:
        raise ValueError(
            f"protected {tuple(protected.shape)} and originals {tuple(originals.shape)} must "
            "have the same shape: image i of each is one (protected, original) pair"
        )
    if protected.shape[0] == 0:
        raise ValueError("no (protected, original) pairs to learn from")


@torch.no_grad()
def pair_psnr(
    protected: Tensor, originals: Tensor, model: LearnedInverse | None = None, batch_size: int = 256
) -> float:
    """Mean PSNR (dB) against ``originals`` of the 8-bit ``model(protected)``, or of ``protected``.

    With ``model=None`` this is how far the protection moved the images; with a model,
    how close its cleaning brings them back. Float inputs are rounded to the 8-bit grid
    first (the model cleans 8-bit files). Identical pairs count as 100 dB.

    Args:
        protected: ``uint8`` or float ``(N, 3, H, W)`` images.
        originals: The originals, same shape.
        model: The learned inverse to apply first (run in ``eval()`` mode).
        batch_size: Images per forward pass.

    Raises:
        TypeError: If either tensor is neither ``uint8`` nor float.
        ValueError: If the shapes differ or there are no pairs.
    """
    _check_pairs(protected, originals)
    total = 0.0
    for start in range(0, protected.shape[0], batch_size):
        x = to_8bit_grid(_as_float(protected[start : start + batch_size]))
        if model is not None:
            was_training = model.training
            x = model.eval()(x)
            model.train(was_training)
        total += (
            psnr(x, _as_float(originals[start : start + batch_size]), max_db=100.0).sum().item()
        )
    return total / protected.shape[0]


def train_learned_inverse(
    protected: Tensor,
    originals: Tensor,
    epochs: int = 30,
    batch_size: int = 32,
    seed: int = 0,
    *,
    config: LearnedInverseConfig | None = None,
    lr: float = 1e-3,
    max_steps: int | None = None,
    progress: Callable[[TrainingStep], None] | None = None,
) -> LearnedInverse:
    """Train a `LearnedInverse` on ``(protected[i], originals[i])`` pairs.

    Adam (``lr``, cosine decay to zero over the run) on the mean squared error between
    ``net(protected)`` and ``originals``, with one random horizontal flip per pair
    (applied to both images). Initial weights, order and flips come from ``seed``; the
    global RNG is left as it was.

    Args:
        protected: ``uint8`` (``0..255``) or float (``[0, 1]``) images ``(N, 3, H, W)``.
        originals: Their originals, same shape and any of the two dtypes.
        epochs: Passes over the pairs.
        batch_size: Pairs per step.
        seed: Seed of everything random.
        config: Architecture; ``None`` takes `LearnedInverseConfig`'s default.
        lr: Initial learning rate.
        max_steps: Stop after this many steps (for quick runs); ``None`` runs all epochs.
        progress: Called after every step with a
            `invprotect.defences.comdefend.TrainingStep` (its ``psnr`` is that of the
            step's batch before rounding).

    Returns:
        The trained model in ``eval()`` mode; ``metrics`` holds ``pairs``, ``steps``,
        ``epochs``, ``seed``, ``final_loss``, ``seconds``, and ``psnr_before`` /
        ``psnr_after`` (mean PSNR to the originals of the training pairs as they were
        and after cleaning, 8-bit).

    Raises:
        TypeError: If an input is neither ``uint8`` nor float.
        ValueError: For mismatched or empty pairs, ``epochs < 1`` or ``batch_size < 1``.

    Example:
        >>> originals = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
        >>> model = train_learned_inverse(originals.flip(-1), originals, epochs=1)
        >>> model.metrics["pairs"], model.metrics["steps"]
        (8, 1)
    """
    _check_pairs(protected, originals)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LearnedInverse(config)
    count = protected.shape[0]
    total_steps = math.ceil(count / batch_size) * epochs
    if max_steps is not None:
        total_steps = min(total_steps, max(1, max_steps))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)),
    )
    started = time.perf_counter()
    model.train()
    step, epoch, loss_value = 0, 0, float("nan")
    while step < total_steps:
        order = torch.randperm(count, generator=generator)
        for start in range(0, count, batch_size):
            if step >= total_steps:
                break
            index = order[start : start + batch_size]
            x, target = _as_float(protected[index]), _as_float(originals[index])
            flip = (torch.rand(index.shape[0], generator=generator) < 0.5)[:, None, None, None]
            x, target = torch.where(flip, x.flip(-1), x), torch.where(flip, target.flip(-1), target)
            loss = F.mse_loss(model.net(x), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            loss_value = loss.item()
            if progress is not None:
                step_psnr = psnr_from_mse(max(loss_value, 1e-12)).item()
                progress(TrainingStep(step, total_steps, epoch, loss_value, step_psnr))
        epoch += 1
    model.eval()
    model.metrics = {
        "pairs": count,
        "steps": step,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "final_loss": loss_value,
        "seconds": round(time.perf_counter() - started, 1),
        "psnr_before": pair_psnr(protected, originals),
        "psnr_after": pair_psnr(protected, originals, model),
    }
    return model
