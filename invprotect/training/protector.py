"""Training loop of the RAEG protector against a frozen target ensemble (seeded, resumable)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from invprotect.attacks import AttackLayer, quantize_ste
from invprotect.checkpoint import (
    load_checkpoint,
    load_optimizer_tensors,
    optimizer_tensors,
    save_checkpoint,
)
from invprotect.data import ImageSet
from invprotect.metrics import psnr
from invprotect.models import RAEG
from invprotect.models.losses import (
    discriminator_loss,
    fooling_margin_loss,
    generator_gan_loss,
    structural_loss,
)


@dataclass(frozen=True)
class ProtectorTrainingConfig:
    """Settings of `train_protector`.

    The total generator loss is Eq. (9) of the paper with a steered classification
    weight: ``MSE(I_prt, I) + alpha (1 - SSIM(I_prt, I)) + beta L1(I_rec, I)
    + gamma L_cls + delta L_GAN``. ``gamma`` is not a fixed number: after every step it
    is multiplied by ``exp(psnr_gain * (PSNR - target_psnr))``, so it grows while the
    protected images are cleaner than the target and shrinks when they are worse,
    holding the mean PSNR at ``target_psnr``.

    Attributes:
        steps: Generator updates.
        batch_size: Images per step.
        lr: Adam learning rate of generator and discriminator.
        target_psnr: Wanted PSNR (dB) of the 8-bit protected images.
        alpha: Weight of the structural (1 - SSIM) term, the perceptual loss here.
        beta: Weight of the recovery L1 term.
        delta: Weight of the generator's GAN loss.
        margin: Logit margin of `fooling_margin_loss`.
        gamma_init: Starting classification weight.
        psnr_gain: Speed of the PSNR controller (per dB per step, in log space).
        attacks: Attack mix of the `AttackLayer` (``None``: its default).
        seed: Seeds batch sampling and attacks.
        save_every: Steps between saves of the training state (with ``state_dir``).
    """

    steps: int = 2000
    batch_size: int = 32
    lr: float = 5e-4
    target_psnr: float = 30.0
    alpha: float = 0.01
    beta: float = 1.0
    delta: float = 0.01
    margin: float = 5.0
    gamma_init: float = 1e-3
    psnr_gain: float = 0.02
    attacks: Mapping[str, float] | None = None
    seed: int = 0
    save_every: int = 200

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(
                f"steps and batch_size must be positive, got {self.steps}, {self.batch_size}"
            )
        if not 10.0 <= self.target_psnr <= 60.0:
            raise ValueError(f"target_psnr must be in [10, 60] dB, got {self.target_psnr}")


@dataclass(frozen=True)
class ProtectorEvent:
    """Progress after one generator step.

    Attributes:
        step: Steps done (starting at 1).
        steps: Total steps.
        loss: Total generator loss.
        psnr: Mean PSNR (dB) of the batch's 8-bit protected images.
        fooling_rate: Fraction of protected images the ensemble misclassifies.
        attacked_fooling_rate: The same after the attack layer.
        recovered_accuracy: Fraction of recovered images classified right.
        gamma: Current classification weight.
    """

    step: int
    steps: int
    loss: float
    psnr: float
    fooling_rate: float
    attacked_fooling_rate: float
    recovered_accuracy: float
    gamma: float


def train_protector(
    raeg: RAEG,
    ensemble: nn.Module,
    images: ImageSet,
    config: ProtectorTrainingConfig | None = None,
    state_dir: str | Path | None = None,
    on_event: Callable[[ProtectorEvent], None] | None = None,
) -> list[ProtectorEvent]:
    """Train ``raeg`` in place so its protected images fool ``ensemble``.

    Each step protects a batch, rounds it to 8 bits (straight-through), attacks it
    with the attack layer, and recovers the original from the rounded image. Both the
    protected and the attacked images must be misclassified (margin loss); the
    recovered image must be classified right (cross-entropy) and close to the
    original (L1). The discriminator is updated once per step.

    Args:
        raeg: The protector; trained on its parameters' device.
        ensemble: Frozen target classifiers taking ``[0, 1]`` images.
        images: Training images with labels (the owner's data).
        config: Settings (defaults: `ProtectorTrainingConfig`).
        state_dir: Checkpoint directory of the training state; a later call resumes.
        on_event: Called after every step.

    Returns:
        The events of the steps run in this call.
    """
    config = config or ProtectorTrainingConfig()
    device = next(raeg.parameters()).device
    attack_layer = AttackLayer(config.attacks)
    g_opt = torch.optim.Adam(raeg.generator.parameters(), lr=config.lr)
    d_opt = torch.optim.Adam(raeg.discriminator.parameters(), lr=config.lr, betas=(0.5, 0.999))
    start, gamma = 0, config.gamma_init
    if state_dir and (Path(state_dir) / "config.json").is_file():
        start, gamma = _resume(raeg, g_opt, d_opt, state_dir, config)
    ensemble.eval()
    events: list[ProtectorEvent] = []
    for step in range(start, config.steps):
        raeg.train()
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        index = torch.randint(0, len(images), (config.batch_size,), generator=generator)
        x = images.batch(index, device=device)
        labels = images.labels[index].to(device)

        protected = quantize_ste(raeg.generate(x).clamp(0.0, 1.0))
        attacked = attack_layer(protected, generator=generator).images
        recovered = raeg.generator.inverse(protected)
        logits_prt, logits_atk = ensemble(protected), ensemble(attacked)
        logits_rec = ensemble(recovered.clamp(0.0, 1.0))
        classification = (
            fooling_margin_loss(logits_prt, labels, config.margin)
            + fooling_margin_loss(logits_atk, labels, config.margin)
            + F.cross_entropy(logits_rec, labels)
        )
        loss = (
            F.mse_loss(protected, x)
            + config.alpha * structural_loss(protected, x)
            + config.beta * F.l1_loss(recovered, x)
            + gamma * classification
            + config.delta * generator_gan_loss(raeg.discriminator(protected))
        )
        g_opt.zero_grad(set_to_none=True)
        loss.backward()
        g_opt.step()

        d_loss = discriminator_loss(raeg.discriminator(x), raeg.discriminator(protected.detach()))
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()

        batch_psnr = psnr(protected.detach(), x).clamp(max=100.0).mean().item()
        gamma = min(
            10.0, max(1e-6, gamma * math.exp(config.psnr_gain * (batch_psnr - config.target_psnr)))
        )
        event = ProtectorEvent(
            step + 1,
            config.steps,
            loss.item(),
            batch_psnr,
            (logits_prt.argmax(1) != labels).float().mean().item(),
            (logits_atk.argmax(1) != labels).float().mean().item(),
            (logits_rec.argmax(1) == labels).float().mean().item(),
            gamma,
        )
        events.append(event)
        if on_event is not None:
            on_event(event)
        if state_dir and ((step + 1) % config.save_every == 0 or step + 1 == config.steps):
            _save(raeg, g_opt, d_opt, state_dir, config, step + 1, gamma)
    raeg.eval()
    return events


def _settings(config: ProtectorTrainingConfig) -> dict:
    settings = asdict(config)
    settings["attacks"] = dict(config.attacks) if config.attacks else None
    return settings


def _save(
    raeg: RAEG,
    g_opt: torch.optim.Optimizer,
    d_opt: torch.optim.Optimizer,
    state_dir: str | Path,
    config: ProtectorTrainingConfig,
    steps_done: int,
    gamma: float,
) -> None:
    tensors = {f"model.{k}": v for k, v in raeg.state_dict().items()}
    tensors |= optimizer_tensors(g_opt, "g_opt") | optimizer_tensors(d_opt, "d_opt")
    meta = {"steps_done": steps_done, "gamma": gamma, "config": _settings(config)}
    save_checkpoint(state_dir, tensors, meta)


def _resume(
    raeg: RAEG,
    g_opt: torch.optim.Optimizer,
    d_opt: torch.optim.Optimizer,
    state_dir: str | Path,
    config: ProtectorTrainingConfig,
) -> tuple[int, float]:
    tensors, meta = load_checkpoint(state_dir)
    if meta["config"] != _settings(config):
        raise ValueError(
            f"{state_dir} holds a run with different settings; use the same settings to resume"
        )
    raeg.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    load_optimizer_tensors(g_opt, tensors, "g_opt")
    load_optimizer_tensors(d_opt, tensors, "d_opt")
    return int(meta["steps_done"]), float(meta["gamma"])
