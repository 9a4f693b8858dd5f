"""Training loop of target classifiers (resumable, seeded, one-cycle SGD)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from invprotect import distributed
from invprotect.checkpoint import load_checkpoint, save_checkpoint
from invprotect.data import ImageSet
from invprotect.device import Precision, autocast_dtype
from invprotect.targets.accuracy import accuracy
from invprotect.targets.classifier import Classifier
from invprotect.training.adversarial import PGDConfig, pgd_linf


@dataclass(frozen=True)
class ClassifierTrainingConfig:
    """Settings of `train_classifier`.

    Attributes:
        epochs: Passes over the training set.
        batch_size: Images per step.
        lr: Peak learning rate of the one-cycle schedule (linear warm-up over the
            first 20% of steps, cosine decay to zero).
        momentum: SGD Nesterov momentum.
        weight_decay: L2 penalty on the weights.
        label_smoothing: Cross-entropy label smoothing.
        augment: Random crops (4-pixel reflect padding) and horizontal flips.
        precision: ``"auto"`` (bfloat16 autocast where the hardware has it), ``"bf16"``
            or ``"fp32"``.
        seed: Seeds the data order and the augmentation (seed the model's
            initialisation with ``torch.manual_seed`` before building it).
        adversarial: Adversarial training: every batch is replaced by its PGD version
            (`invprotect.training.adversarial.pgd_linf`, random start drawn from the
            seeded generator); ``None`` trains on the batches as they are.
    """

    epochs: int = 15
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    augment: bool = True
    precision: Precision = "auto"
    seed: int = 0
    adversarial: PGDConfig | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be positive, got {self.epochs}, {self.batch_size}"
            )
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


@dataclass(frozen=True)
class TrainingEvent:
    """Progress of a training run, passed to the ``on_event`` callback after each step.

    Attributes:
        epoch: Current epoch, starting at 1.
        step: Steps done in this epoch.
        steps_per_epoch: Steps in one epoch.
        loss: Training loss of the last step.
        test_accuracy: Set on the last step of an epoch when a test set is given.
        epoch_seconds: Wall time of the epoch, set on its last step.
    """

    epoch: int
    step: int
    steps_per_epoch: int
    loss: float
    test_accuracy: float | None = None
    epoch_seconds: float | None = None


def augment_batch(images: Tensor, generator: torch.Generator, padding: int = 4) -> Tensor:
    """Random crops with reflect padding and random horizontal flips, per sample.

    Works on any dtype; ``images`` is ``(B, C, H, W)`` and the output has the same shape.
    """
    batch, channels, height, width = images.shape
    padded = F.pad(images.float(), (padding,) * 4, mode="reflect").to(images.dtype)
    top = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)
    rows = (top[:, None] + torch.arange(height)).to(images.device)
    cols = (left[:, None] + torch.arange(width)).to(images.device)
    out = padded.gather(
        2, rows[:, None, :, None].expand(batch, channels, height, width + 2 * padding)
    )
    out = out.gather(3, cols[:, None, None, :].expand(batch, channels, height, width))
    flip = (torch.rand(batch, generator=generator) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def one_cycle_lr(step: int, total_steps: int, peak: float, warmup_fraction: float = 0.2) -> float:
    """Learning rate at ``step``: linear warm-up to ``peak``, then cosine decay to zero."""
    warmup = max(1, round(warmup_fraction * total_steps))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_classifier(
    model: Classifier,
    train: ImageSet,
    test: ImageSet | None = None,
    config: ClassifierTrainingConfig | None = None,
    state_dir: str | Path | None = None,
    on_event: Callable[[TrainingEvent], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place on ``train``; evaluate on ``test`` after every epoch.

    With ``state_dir`` the model and optimiser are saved after every epoch, and a
    later call with the same ``state_dir`` resumes after the last finished epoch
    (data order and augmentation are seeded per epoch, so a resumed run continues
    exactly as an uninterrupted one would).

    Under ``torchrun`` (a process group of several ranks, `invprotect.distributed`),
    every rank draws the epoch's order and each step's augmentation of the whole global
    batch from the seed and trains on its contiguous share of the batch;
    DistributedDataParallel averages the gradients (each rank's loss weighted by its
    share), so the weights follow one process with the whole batch to float round-off.
    Batch norm is the exception on the CPU: each rank normalises with its own share's
    statistics (PyTorch's `torch.nn.SyncBatchNorm`, used on CUDA, has no CPU version),
    so a model with batch norm then follows the world size, and the saved running
    statistics are rank 0's. Only rank 0 evaluates ``test`` and writes the state.

    Args:
        model: The classifier; trained on the device of its parameters.
        train: Training images.
        test: Optional held-out images for the per-epoch accuracy.
        config: Training settings (defaults: `ClassifierTrainingConfig`).
        state_dir: Checkpoint directory of the training state, for resuming.
        on_event: Called after every step with a `TrainingEvent`.

    Returns:
        One record per epoch trained in this call: epoch, loss, seconds, test accuracy.

    Raises:
        ValueError: For adversarial training in a distributed run (its random starts
            are drawn per batch, which a share cannot reproduce), or for a batch smaller
            than the number of processes.
    """
    config = config or ClassifierTrainingConfig()
    if config.adversarial is not None and distributed.is_distributed():
        raise ValueError("adversarial training runs in one process only; start it without torchrun")
    device = next(model.parameters()).device
    cast = autocast_dtype(device, config.precision)
    model.to(memory_format=torch.channels_last)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    last_batch = len(train) - (steps_per_epoch - 1) * config.batch_size
    processes = distributed.world_size()
    if last_batch < processes:
        raise ValueError(
            f"the last batch of each epoch holds {last_batch} of the {len(train)} training "
            f"images, fewer than the {processes} processes; choose a batch size that leaves "
            f"at least {processes} (or that divides {len(train)})"
        )
    total_steps = steps_per_epoch * config.epochs
    optimiser = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=True,
        weight_decay=config.weight_decay,
    )
    start_epoch = _resume(model, optimiser, state_dir, config) if state_dir else 0
    trained = distributed.wrap(model, device)
    earlier = _previous_history(state_dir, start_epoch) if state_dir else []
    history: list[dict[str, float]] = []
    for epoch in range(start_epoch, config.epochs):
        model.train()
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        order = torch.randperm(len(train), generator=generator)
        started, total_loss = time.perf_counter(), 0.0
        for step in range(steps_per_epoch):
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            images = train.images[index]
            if config.augment:
                images = augment_batch(images, generator)
            batch = len(index)
            mine, weight = distributed.share(batch), distributed.share_weight(batch)
            images, index = images[mine], index[mine]
            x = images.to(device).float().div_(255.0)  # uint8 over the bus, float on the device
            x = x.contiguous(memory_format=torch.channels_last)
            y = train.labels[index].to(device)
            if config.adversarial is not None:
                x = pgd_linf(model, x, y, config.adversarial, generator, cast)
            for group in optimiser.param_groups:
                group["lr"] = one_cycle_lr(epoch * steps_per_epoch + step, total_steps, config.lr)
            with torch.autocast(device.type, dtype=cast or torch.float32, enabled=cast is not None):
                loss = F.cross_entropy(trained(x), y, label_smoothing=config.label_smoothing)
            optimiser.zero_grad(set_to_none=True)
            (loss * weight).backward()
            optimiser.step()
            # This rank's mean weighted by its part of the batch (1.0 in one process),
            # summed over the ranks: the mean over the global batch.
            (batch_loss,) = distributed.sum_over_ranks([loss.item() * len(x) / batch], device)
            total_loss += batch_loss
            last = step == steps_per_epoch - 1
            seconds = time.perf_counter() - started if last else None
            test_accuracy = None
            if last and test:
                if distributed.is_main():
                    test_accuracy = accuracy(model, test, device=device)
                test_accuracy = distributed.from_main(test_accuracy)
            if on_event is not None:
                on_event(
                    TrainingEvent(
                        epoch + 1, step + 1, steps_per_epoch, batch_loss, test_accuracy, seconds
                    )
                )
        record = {
            "epoch": epoch + 1,
            "loss": total_loss / steps_per_epoch,
            "seconds": time.perf_counter() - started,
        }
        if test is not None:
            record["test_accuracy"] = test_accuracy if test_accuracy is not None else math.nan
        history.append(record)
        if state_dir and distributed.is_main():
            _save_state(model, optimiser, state_dir, config, epoch + 1, earlier + history)
    model.eval()
    return history


def _save_state(
    model: Classifier,
    optimiser: torch.optim.Optimizer,
    state_dir: str | Path,
    config: ClassifierTrainingConfig,
    epochs_done: int,
    history: list[dict[str, float]],
) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, param in enumerate(p for group in optimiser.param_groups for p in group["params"]):
        buffer = optimiser.state.get(param, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[f"momentum.{i}"] = buffer
    # Progress goes into the weights file too: a process killed between the renames of
    # the weights and of config.json (as torchrun kills the other ranks when one dies)
    # leaves new weights beside an old config, and the weights then still say which
    # epoch they hold (the history as UTF-8 JSON bytes).
    tensors["state.epochs_done"] = torch.tensor(epochs_done, dtype=torch.float64)
    tensors["state.history"] = torch.tensor(list(json.dumps(history).encode()), dtype=torch.uint8)
    meta = {"epochs_done": epochs_done, "config": asdict(config), "history": history}
    save_checkpoint(state_dir, tensors, meta)


def _progress(tensors: dict[str, Tensor], meta: dict) -> tuple[int, list[dict[str, float]]]:
    """Epochs done and their records, from the weights file where it holds them.

    States written before the weights file held them have them in config.json only.
    """
    if "state.epochs_done" not in tensors:
        return int(meta["epochs_done"]), meta.get("history", [])
    history = json.loads(bytes(tensors["state.history"].tolist()).decode())
    return int(tensors["state.epochs_done"].item()), history


def saved_history(state_dir: str | Path) -> list[dict[str, float]]:
    """The per-epoch records of every epoch a training state holds (``[]`` if none).

    After `train_classifier` returns, these are the records of the whole run, the epochs
    of earlier, interrupted calls included (the call returns only its own).
    """
    if not (Path(state_dir) / "config.json").is_file():
        return []
    return _progress(*load_checkpoint(state_dir))[1]


def _previous_history(state_dir: str | Path, epochs_done: int) -> list[dict[str, float]]:
    """The per-epoch records of the epochs an earlier, interrupted call finished."""
    if not epochs_done or not (Path(state_dir) / "config.json").is_file():
        return []
    _, history = _progress(*load_checkpoint(state_dir))
    return [h for h in history if h["epoch"] <= epochs_done]


def _resume(
    model: Classifier,
    optimiser: torch.optim.Optimizer,
    state_dir: str | Path,
    config: ClassifierTrainingConfig,
) -> int:
    if not (Path(state_dir) / "config.json").is_file():
        return 0
    tensors, meta = load_checkpoint(state_dir)
    # States saved before the ``adversarial`` setting existed trained without it.
    if {"adversarial": None, **meta["config"]} != asdict(config):
        raise ValueError(
            f"{state_dir} holds a run with different settings ({meta['config']}); "
            "use the same settings to resume, or another output path"
        )
    device = next(model.parameters()).device
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for i, param in enumerate(p for group in optimiser.param_groups for p in group["params"]):
        if f"momentum.{i}" in tensors:
            optimiser.state[param]["momentum_buffer"] = tensors[f"momentum.{i}"].to(device)
    return _progress(tensors, meta)[0]
