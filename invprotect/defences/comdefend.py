"""ComDefend (Jia et al., CVPR 2019): purify by compressing to a binary code and reconstructing.

Two networks, trained together on clean images:

* **ComCNN** maps an image ``(3, H, W)`` to a real-valued code ``(12, H, W)``: 12 bits per
  pixel once binarised, against 24 in the image.
* **RecCNN** maps the binary code back to an image.

Training adds Gaussian noise to the code before a sigmoid,
``b = sigmoid(Com(x) + n)`` with ``n ~ N(0, noise_std^2)`` (``noise_std = 20`` as in
the authors' code), so that only codes far from zero survive: ComCNN learns codes
that lose nothing when they are binarised. The loss is

```
L = mean (Rec(b) - x)^2  +  code_weight * mean b^2        (code_weight = 1e-4)
```

(the regulariser on the noisy binary code, as in the authors' released PyTorch
training script). At inference there is no noise: the code is binarised with
``Com(x) > 0`` and RecCNN reconstructs from the bits; the result is rounded to 8 bits.

Sizes. The paper's networks (preset ``"paper"``) work at full resolution with 8 hidden
3x3 convolutions each (16 to 256 channels, ELU): about 0.8 GMAC per 32x32 image and
network, too slow to train on two CPU cores. The ``"cpu"`` preset keeps the code
(12 channels at full resolution, binarised the same way) but runs both networks on a
2x space-to-depth rearrangement (``pixel_unshuffle``), with two hidden layers of 64
channels at half resolution (about 18 MMAC per network and 32x32 image); the code
channels it produces are rearranged back (``pixel_shuffle``) to ``(12, H, W)``. Images
whose sides are not multiples of the rearrangement factor are padded (replicated
borders) and cropped back.

Checkpoints are directories written by `invprotect.checkpoint.save_checkpoint`:
``weights.safetensors`` and ``config.json`` (the architecture, the training settings
and the measured test PSNR).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from invprotect._registry import Presets
from invprotect.checkpoint import (
    CheckpointError,
    checkpoint_format,
    load_checkpoint,
    load_module,
    save_checkpoint,
)
from invprotect.data import ImageSet
from invprotect.defences._base import Defence, GeneratorArg, register_defence
from invprotect.metrics import psnr, psnr_from_mse

CHECKPOINT_KIND = "invprotect.defences.comdefend"
"""The name in a ComDefend checkpoint's format (the ``kind`` field of older ones)."""

CHECKPOINT_VERSION = 1

CHECKPOINT_FORMAT = f"{CHECKPOINT_KIND}/{CHECKPOINT_VERSION}"
"""The ``format`` field of its checkpoints (older ones wrote ``kind`` and ``version``)."""


@dataclass(frozen=True)
class ComDefendConfig:
    """Architecture and training objective of a `ComDefend`.

    Attributes:
        com_channels: Hidden widths of ComCNN (one 3x3 convolution + ELU each).
        rec_channels: Hidden widths of RecCNN.
        code_channels: Channels of the code at full resolution (bits per pixel).
        space_to_depth: Rearrangement factor: both networks run at ``H / f x W / f``
            on ``f * f`` times the channels (1 runs them at full resolution, as the paper).
        noise_std: Standard deviation of the Gaussian noise added to the code in training.
        code_weight: Weight of the regulariser ``mean b^2`` on the noisy binary code.
    """

    com_channels: tuple[int, ...] = (64, 64)
    rec_channels: tuple[int, ...] = (64, 64)
    code_channels: int = 12
    space_to_depth: int = 2
    noise_std: float = 20.0
    code_weight: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("com_channels", "rec_channels"):
            widths = tuple(getattr(self, name))
            if not widths or any(not isinstance(w, int) or w < 1 for w in widths):
                raise ValueError(
                    f"{name} must be a non-empty sequence of positive ints, got {widths}"
                )
            object.__setattr__(self, name, widths)
        if self.code_channels < 1:
            raise ValueError(f"code_channels must be >= 1, got {self.code_channels}")
        if self.space_to_depth < 1:
            raise ValueError(f"space_to_depth must be >= 1, got {self.space_to_depth}")
        if self.noise_std < 0 or self.code_weight < 0:
            raise ValueError("noise_std and code_weight must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        data = asdict(self)
        data["com_channels"] = list(self.com_channels)
        data["rec_channels"] = list(self.rec_channels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComDefendConfig:
        """Inverse of `to_dict`.

        Raises:
            ValueError: For unknown keys or bad values.
        """
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown ComDefend config keys: {sorted(unknown)}")
        values = dict(data)
        for name in ("com_channels", "rec_channels"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


COMDEFEND_PRESETS: Presets[ComDefendConfig] = Presets(
    "ComDefend",
    ComDefendConfig,
    {
        "cpu": ComDefendConfig(),
        "paper": ComDefendConfig(
            com_channels=(16, 32, 64, 128, 256, 128, 64, 32),
            rec_channels=(32, 64, 128, 256, 128, 64, 32, 16),
            space_to_depth=1,
        ),
    },
)
"""Named configurations: ``"cpu"`` (default, trains on two CPU cores) and ``"paper"``."""


def _conv_stack(in_channels: int, widths: tuple[int, ...], out_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.ELU()]
        in_channels = width
    layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=1))
    return nn.Sequential(*layers)


class ComCNN(nn.Module):
    """The compression network: image ``(B, 3, H, W)`` in ``[0, 1]`` to a code ``(B, C, H, W)``.

    ``H`` and ``W`` must be multiples of ``config.space_to_depth``.
    """

    def __init__(self, config: ComDefendConfig) -> None:
        super().__init__()
        self.factor = config.space_to_depth
        self.body = _conv_stack(
            3 * self.factor**2, config.com_channels, config.code_channels * self.factor**2
        )

    def forward(self, images: Tensor) -> Tensor:
        """The real-valued code (binarise it with ``code > 0``)."""
        x = images - 0.5
        if self.factor > 1:
            x = F.pixel_unshuffle(x, self.factor)
        code = self.body(x)
        return F.pixel_shuffle(code, self.factor) if self.factor > 1 else code


class RecCNN(nn.Module):
    """The reconstruction network: binary code ``(B, C, H, W)`` to an image in ``(0, 1)``."""

    def __init__(self, config: ComDefendConfig) -> None:
        super().__init__()
        self.factor = config.space_to_depth
        self.body = _conv_stack(
            config.code_channels * self.factor**2, config.rec_channels, 3 * self.factor**2
        )

    def forward(self, bits: Tensor) -> Tensor:
        """The reconstructed image (not rounded)."""
        x = F.pixel_unshuffle(bits, self.factor) if self.factor > 1 else bits
        out = self.body(x)
        if self.factor > 1:
            out = F.pixel_shuffle(out, self.factor)
        return torch.sigmoid(out)


class ComDefend(Defence):
    """ComDefend: binary-code compression (ComCNN) then reconstruction (RecCNN).

    A freshly built ComDefend is untrained; get a trained one with
    `train_comdefend` or `ComDefend.load` (the registry entry
    ``comdefend`` requires ``weights``).

    Args:
        config: Architecture; ``None`` takes the ``"cpu"`` preset.
        metrics: Measurements to keep with the model (test PSNR, training time, ...),
            saved in the checkpoint's ``config.json``.

    Shape:
        - Input: ``(B, 3, H, W)`` in ``[0, 1]`` on the 8-bit grid, any ``H, W``.
        - Output: the same, on the 8-bit grid.
    """

    def __init__(
        self, config: ComDefendConfig | None = None, metrics: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.config = config if config is not None else COMDEFEND_PRESETS["cpu"]
        self.com = ComCNN(self.config)
        self.rec = RecCNN(self.config)
        self.metrics: dict[str, Any] = dict(metrics or {})

    def encode(self, images: Tensor) -> Tensor:
        """The real-valued code of ``images`` (sides multiples of ``space_to_depth``)."""
        return self.com(images)

    @staticmethod
    def binarize(code: Tensor) -> Tensor:
        """Bits ``1.0`` where ``code > 0`` (``sigmoid(code) > 0.5``), else ``0.0``."""
        return (code > 0).to(code.dtype)

    def decode(self, bits: Tensor) -> Tensor:
        """Images reconstructed from a binary code (not rounded)."""
        return self.rec(bits)

    def reconstruct(self, images: Tensor) -> Tensor:
        """Encode, binarise and decode ``images`` of any size; not rounded.

        Sides that are not multiples of ``space_to_depth`` are padded (replicated
        borders) and cropped back.
        """
        height, width = images.shape[-2:]
        f = self.config.space_to_depth
        pad_h, pad_w = (-height) % f, (-width) % f
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
        out = self.decode(self.binarize(self.encode(images)))
        return out[..., :height, :width]

    def reconstruct_straight_through(self, images: Tensor) -> Tensor:
        """`reconstruct` in ``[0, 1]`` with the binarisation's gradient passed straight through.

        The forward pass gives the hard bits' reconstruction; the backward pass takes the
        gradient of ``sigmoid(code)`` in their place, so that a loss can be pushed through
        the purifier (sides multiples of ``space_to_depth``).
        """
        code = self.encode(images)
        soft = torch.sigmoid(code)
        bits = self.binarize(code) + soft - soft.detach()
        return self.decode(bits).clamp(0.0, 1.0)

    def training_loss(
        self, images: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """The training objective on a batch: ``(loss, reconstruction MSE)``.

        Args:
            images: Float RGB batch in ``[0, 1]``, sides multiples of ``space_to_depth``.
            generator: Source of the code noise (CPU); ``None`` uses the global RNG.
        """
        code = self.encode(images)
        noise = torch.randn(code.shape, generator=generator, device="cpu").to(code)
        bits = torch.sigmoid(code + noise * self.config.noise_std)
        mse = F.mse_loss(self.decode(bits), images)
        return mse + self.config.code_weight * bits.pow(2).mean(), mse

    def purify(self, images: Tensor, generator: GeneratorArg) -> Tensor:
        """Reconstruct from the binary code (see `reconstruct`)."""
        return self.reconstruct(images)

    def save(self, path: str | Path) -> Path:
        """Save weights and config (with `metrics`) to the checkpoint directory ``path``.

        Returns:
            The checkpoint directory.
        """
        config = {
            "format": CHECKPOINT_FORMAT,
            "architecture": self.config.to_dict(),
            "metrics": self.metrics,
        }
        return save_checkpoint(path, self.state_dict(), config)

    @classmethod
    def load(cls, path: str | Path) -> ComDefend:
        """Load a checkpoint directory written by `save`, in ``eval()`` mode.

        Raises:
            CheckpointError: If ``path`` is missing, not a ComDefend checkpoint, or its
                weights do not match its architecture.
        """
        tensors, config = load_checkpoint(path)
        if checkpoint_format(config) != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{path} is not a ComDefend checkpoint (format {checkpoint_format(config)!r}); "
                "train one with `invprotect train-defence comdefend`"
            )
        try:
            architecture = ComDefendConfig.from_dict(config["architecture"])
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{path}: bad ComDefend architecture in config.json: {error}"
            ) from None
        model = cls(architecture, metrics=config.get("metrics", {}))
        load_module(model, tensors, path, "the architecture")
        return model.eval()


@register_defence("comdefend", tags=("trainable",))
def comdefend_from_weights(weights: str | Path | None = None) -> ComDefend:
    """The registry's ``comdefend`` entry: a trained ComDefend loaded from ``weights``.

    Args:
        weights: A checkpoint directory written by `ComDefend.save` (for example by
            ``invprotect train-defence comdefend --out DIR``).

    Raises:
        ValueError: If ``weights`` is not given (an untrained ComDefend purifies nothing).
        CheckpointError: If the checkpoint is missing or invalid.
    """
    if weights is None:
        raise ValueError(
            "the comdefend defence needs trained weights: pass weights=DIR, a checkpoint "
            "made by `invprotect train-defence comdefend --data DIR --out DIR` "
            "(for example --defence comdefend:weights=runs/comdefend)"
        )
    return ComDefend.load(Path(str(weights)))


@dataclass
class TrainingStep:
    """What `train_comdefend` reports after each optimisation step.

    Attributes:
        step: Steps done so far (1-based).
        total_steps: Steps the run will do.
        epoch: Current epoch (0-based).
        loss: Training loss of this step.
        psnr: PSNR (dB) of this step's noisy-code reconstruction of its batch.
    """

    step: int
    total_steps: int
    epoch: int
    loss: float
    psnr: float


def evaluate_comdefend(model: ComDefend, images: ImageSet | Tensor, batch_size: int = 256) -> float:
    """Mean PSNR (dB) of the 8-bit ComDefend output against its input.

    This is the reconstruction quality of the defence as it is used: no noise, binary
    code, output rounded to 8 bits. Images identical to their reconstruction count as
    100 dB.

    Args:
        model: The ComDefend to measure (switched to ``eval()`` for the measurement).
        images: An `invprotect.data.ImageSet` or a float batch on the 8-bit grid.
        batch_size: Images per forward pass.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    n = len(images) if isinstance(images, ImageSet) else images.shape[0]
    with torch.no_grad():
        for start in range(0, n, batch_size):
            index = range(start, min(n, start + batch_size))
            batch = (
                images.batch(index) if isinstance(images, ImageSet) else images[start : index.stop]
            )
            scores = psnr(model(batch), batch).clamp(max=100.0)
            total += scores.sum().item()
            count += scores.numel()
    model.train(was_training)
    return total / max(count, 1)


def train_comdefend(
    train: ImageSet,
    test: ImageSet | None = None,
    epochs: int = 10,
    batch_size: int = 32,
    seed: int = 0,
    *,
    config: ComDefendConfig | None = None,
    lr: float = 1e-3,
    max_steps: int | None = None,
    progress: Callable[[TrainingStep], None] | None = None,
) -> ComDefend:
    """Train a ComDefend on clean images.

    Adam (``lr``, cosine decay to zero over the run) on the loss of
    `ComDefend.training_loss`, with random horizontal flips. Everything random
    (initial weights, shuffling, flips, code noise) comes from ``seed``; the global RNG
    is left as it was.

    Args:
        train: Training images (all of one size; sides multiples of ``space_to_depth``).
        test: Held-out images; when given, their ComDefend PSNR is measured at the end
            and stored in ``model.metrics["test_psnr"]``.
        epochs: Passes over ``train``.
        batch_size: Images per step.
        seed: Seed of everything random.
        config: Architecture; ``None`` takes the ``"cpu"`` preset.
        lr: Initial learning rate.
        max_steps: Stop after this many steps (for quick runs); ``None`` runs all epochs.
        progress: Called after every step with a `TrainingStep`.

    Returns:
        The trained model in ``eval()`` mode, with ``metrics`` holding ``test_psnr`` (if
        ``test`` was given), ``final_loss``, ``steps``, ``epochs``, ``seconds`` (wall
        time), ``cpu_seconds`` (CPU time of the process, all threads), ``train_images``
        and ``train_fingerprint``.

    Raises:
        ValueError: For an empty training set, ``epochs < 1`` or ``batch_size < 1``.
    """
    if len(train) == 0:
        raise ValueError("the training set is empty")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    config = config if config is not None else COMDEFEND_PRESETS["cpu"]
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ComDefend(config)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total_steps = steps_per_epoch * epochs
    if max_steps is not None:
        total_steps = min(total_steps, max(1, max_steps))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)),
    )
    model.train()
    started, cpu_started = time.perf_counter(), time.process_time()
    step, loss_value = 0, float("nan")
    for epoch in range(epochs):
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), batch_size):
            if step >= total_steps:
                break
            batch = train.batch(order[start : start + batch_size])
            flip = torch.rand(batch.shape[0], generator=generator) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
            loss, mse = model.training_loss(batch, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            loss_value = loss.item()
            if progress is not None:
                step_psnr = psnr_from_mse(max(mse.item(), 1e-12)).item()
                progress(TrainingStep(step, total_steps, epoch, loss_value, step_psnr))
        if step >= total_steps:
            break
    model.eval()
    model.metrics = {
        "final_loss": loss_value,
        "steps": step,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),
        "train_images": len(train),
        "train_fingerprint": train.fingerprint(),
    }
    if test is not None and len(test) > 0:
        model.metrics["test_psnr"] = evaluate_comdefend(model, test)
        model.metrics["test_images"] = len(test)
    return model
