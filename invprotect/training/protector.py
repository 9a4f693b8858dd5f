"""Training loop of the RAEG protector against a frozen target ensemble (seeded, resumable)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from invprotect import distributed
from invprotect.attacks import DEFAULT_ATTACKS, AttackLayer, quantize_ste
from invprotect.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_optimizer_tensors,
    optimizer_tensors,
    save_checkpoint,
)
from invprotect.data import ImageSet
from invprotect.defences.comdefend import ComDefend
from invprotect.device import Precision, autocast_dtype
from invprotect.metrics import psnr
from invprotect.models import RAEG
from invprotect.models.losses import (
    FeatureLoss,
    discriminator_loss,
    fooling_margin_loss,
    generator_gan_loss,
    high_frequency_share,
    structural_loss,
    targeted_margin_loss,
)
from invprotect.targets import Classifier

THRESHOLD_RANGE = 5.0
"""The per-image PSNR floor stays within this many dB of the target PSNR."""


TRAINING_ATTACKS: dict[str, float] = DEFAULT_ATTACKS | {"median_blur": 1.0}
"""Default attack mix of protector training: `DEFAULT_ATTACKS` (no attack and the paper's five
attack types) plus a median filter (3x3 or 5x5), all equally likely. The median filter is not
in the paper's mix; with it, protected images came out smoother (higher SSIM at the same PSNR)
in a scan of the recipe (``docs/results.md``)."""


FOOLING_MODES = ("margin", "class-consistent")
"""The ways the classification terms of `ProtectorTrainingConfig` can push images."""


@dataclass(frozen=True)
class ProtectorTrainingConfig:
    """Settings of `train_protector`.

    The generator loss is Eq. (9) of the paper with the image-quality term turned into
    a constraint a user can state, a target PSNR::

        MSE(I_prt, I) + alpha L_perceptual(I_prt, I) + beta L1(I_rec, I)
        + fooling_weight L_cls + delta L_GAN
        + floor_weight * mean_i relu(floor - PSNR_i(I_prt, I))

    ``L_cls`` pushes every image towards misclassification; the last term is a floor
    on each image's PSNR (dB) that stops it, so every image spends about the same
    distortion budget. The floor is steered, not fixed: after every step it moves by
    ``floor_gain * (target_psnr - smoothed PSNR)``, where the smoothed PSNR is an
    exponential moving average of the batches' mean PSNR, and stays within
    `THRESHOLD_RANGE` dB of the target. Because the floor acts on the images at once
    (no weight has to build up first), this holds the mean PSNR at ``target_psnr``
    without the overshoot of a steered loss weight. The learning rate follows a cosine
    from ``lr`` down to ``lr * final_lr_fraction``.

    Attributes:
        steps: Generator updates.
        batch_size: Images per step.
        lr: Starting Adam learning rate of generator and discriminator.
        final_lr_fraction: Learning rate at the last step, as a fraction of ``lr``.
        target_psnr: Wanted mean PSNR (dB) of the 8-bit protected images.
        alpha: Weight of the perceptual term (0.5 with ``"ssim"``: a scan showed that a
            large SSIM weight buys SSIM at a given PSNR without costing protection; the
            paper's 0.01 goes with its VGG16 feature loss).
        perceptual: The perceptual term: ``"ssim"`` (default: ``1 - SSIM``, which needs no
            weights), or the path of a `invprotect.targets.Classifier` checkpoint whose
            first four convolutions' activations are compared (`FeatureLoss`; the
            paper's ImageNet VGG16 cannot be downloaded everywhere, and a network
            trained on the owner's data is at hand). Scale ``alpha`` to the loss chosen.
        beta: Weight of the recovery L1 term.
        delta: Weight of the generator's GAN loss.
        margin: Logit margin of `fooling_margin_loss`.
        fooling_weight: Weight of the classification terms.
        floor_weight: Weight of the PSNR floor (per dB below it).
        floor_gain: Speed (dB per dB of error per step) at which the floor follows the
            error of the mean PSNR.
        psnr_smoothing: Weight of the old value in the moving average of the PSNR.
        fooling: How the classification terms push: ``"margin"`` (untargeted margin
            loss, each image just past the decision boundary) or ``"class-consistent"``
            (every image of class ``y`` towards class ``(y + class_shift) mod K``, with
            `targeted_margin_loss`: perturbations that also poison training).
        class_shift: The class map of ``"class-consistent"`` fooling (1 to K - 1).
        purifier: A ComDefend checkpoint (``invprotect train-defence comdefend``): each
            step, its reconstruction of the protected images (binarisation passed
            straight through) must be misclassified too. Evaluate against another
            ComDefend instance than this one.
        smoothness: Weight of `high_frequency_share` of the perturbation (0: off), which
            pushes the perturbation to frequencies that blurring does not remove.
        attacks: Attack mix of the `AttackLayer` (``None``: `TRAINING_ATTACKS`).
        precision: Precision of the target classifiers' passes: ``"auto"`` (bfloat16
            autocast where the hardware has it), ``"bf16"`` or ``"fp32"``. The
            invertible generator always runs in float32.
        seed: Seeds batch sampling and attacks (the same seed gives the same model for
            the same number of processes; see `train_protector`).
        save_every: Steps between saves of the training state (with ``state_dir``).
    """

    steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-4
    final_lr_fraction: float = 0.1
    target_psnr: float = 30.0
    alpha: float = 0.5
    perceptual: str = "ssim"
    beta: float = 1.0
    delta: float = 0.01
    margin: float = 5.0
    fooling_weight: float = 0.03
    floor_weight: float = 0.05
    floor_gain: float = 0.05
    psnr_smoothing: float = 0.9
    fooling: str = "margin"
    class_shift: int = 1
    purifier: str | None = None
    smoothness: float = 0.0
    attacks: Mapping[str, float] | None = None
    precision: Precision = "auto"
    seed: int = 0
    save_every: int = 200

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(
                f"steps and batch_size must be positive, got {self.steps}, {self.batch_size}"
            )
        if not 10.0 <= self.target_psnr <= 60.0:
            raise ValueError(f"target_psnr must be in [10, 60] dB, got {self.target_psnr}")
        if not 0.0 <= self.psnr_smoothing < 1.0:
            raise ValueError(f"psnr_smoothing must be in [0, 1), got {self.psnr_smoothing}")
        if self.fooling not in FOOLING_MODES:
            raise ValueError(f"fooling must be one of {FOOLING_MODES}, got {self.fooling!r}")
        if self.class_shift < 1 or self.smoothness < 0:
            raise ValueError(
                f"class_shift must be >= 1 and smoothness >= 0, got {self.class_shift}, "
                f"{self.smoothness}"
            )
        if not 0.0 < self.final_lr_fraction <= 1.0:
            raise ValueError(f"final_lr_fraction must be in (0, 1], got {self.final_lr_fraction}")


@dataclass(frozen=True)
class ProtectorEvent:
    """Progress after one generator step.

    Attributes:
        step: Steps done (starting at 1).
        steps: Total steps.
        loss: Total generator loss.
        psnr: Mean PSNR (dB) of the batch's 8-bit protected images.
        smoothed_psnr: Moving average of ``psnr`` that steers ``floor``.
        fooling_rate: Fraction of protected images the ensemble misclassifies.
        attacked_fooling_rate: The same after the attack layer.
        recovered_accuracy: Fraction of recovered images classified right.
        floor: Current per-image PSNR floor (dB).
    """

    step: int
    steps: int
    loss: float
    psnr: float
    smoothed_psnr: float
    fooling_rate: float
    attacked_fooling_rate: float
    recovered_accuracy: float
    floor: float


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

    Under ``torchrun`` (a process group of several ranks, `invprotect.distributed`),
    every rank draws the step's global batch indices and attacks from the seed and
    works on its contiguous share of them; DistributedDataParallel averages the
    gradients of generator and discriminator, and the batch PSNR that steers the floor
    and the reported figures are summed over the ranks, so every rank takes the same
    step as one process with the whole batch would (to float round-off). Only rank 0
    writes the training state; every rank resumes from it.

    Args:
        raeg: The protector; trained on its parameters' device.
        ensemble: Frozen target classifiers taking ``[0, 1]`` images.
        images: Training images with labels (the owner's data).
        config: Settings (defaults: `ProtectorTrainingConfig`).
        state_dir: Checkpoint directory of the training state; a later call resumes.
        on_event: Called after every step.

    Returns:
        The events of the steps run in this call (figures of the whole global batch).
    """
    config = config or ProtectorTrainingConfig()
    device = next(raeg.parameters()).device
    mine, weight = distributed.share(config.batch_size), distributed.share_weight(config.batch_size)
    attack_layer = AttackLayer(config.attacks or TRAINING_ATTACKS).to(device)
    g_opt = torch.optim.Adam(raeg.generator.parameters(), lr=config.lr)
    d_opt = torch.optim.Adam(raeg.discriminator.parameters(), lr=config.lr, betas=(0.5, 0.999))
    cast = autocast_dtype(device, config.precision)
    perceptual = perceptual_loss(config.perceptual, device)
    purifier = ComDefend.load(config.purifier).to(device) if config.purifier else None
    if purifier is not None:
        purifier.eval().requires_grad_(False)
    fool = _fooling_loss(config)

    def classify(batch: Tensor) -> Tensor:
        batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=cast or torch.float32, enabled=cast is not None):
            return ensemble(batch).float()

    start, floor, smoothed = 0, config.target_psnr, None
    if state_dir and (Path(state_dir) / "config.json").is_file():
        start, floor, smoothed = _resume(raeg, g_opt, d_opt, state_dir, config)
    generator_pass = distributed.wrap(_GeneratorPass(raeg), device)
    discriminator = distributed.wrap(raeg.discriminator, device)
    ensemble.eval()
    events: list[ProtectorEvent] = []
    for step in range(start, config.steps):
        raeg.train()
        for optimizer in (g_opt, d_opt):
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(config, step)
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        index = torch.randint(0, len(images), (config.batch_size,), generator=generator)[mine]
        x = images.batch(index, device=device)
        labels = images.labels[index].to(device)

        attack = partial(
            _attack, attack_layer, batch_size=config.batch_size, mine=mine, generator=generator
        )
        protected, attacked, recovered = generator_pass(x, attack)
        # One pass of the targets over all three (eval-mode batch norm: per-image results).
        logits_prt, logits_atk, logits_rec = classify(
            torch.cat([protected, attacked, recovered.clamp(0.0, 1.0)])
        ).split(len(x))
        classification = (
            fool(logits_prt, labels)
            + fool(logits_atk, labels)
            + F.cross_entropy(logits_rec, labels)
        )
        if purifier is not None:
            classification = classification + fool(
                classify(purifier.reconstruct_straight_through(protected)), labels
            )
        image_psnr = psnr(protected, x, max_db=100.0)
        loss = (
            F.mse_loss(protected, x)
            + config.alpha * perceptual(protected, x)
            + config.beta * F.l1_loss(recovered, x)
            + config.fooling_weight * classification
            + config.delta * generator_gan_loss(raeg.discriminator(protected))
            + config.floor_weight * F.relu(floor - image_psnr).mean()
        )
        if config.smoothness:
            loss = loss + config.smoothness * high_frequency_share(protected - x)
        g_opt.zero_grad(set_to_none=True)
        (loss * weight).backward()
        g_opt.step()

        d_loss = discriminator_loss(discriminator(x), discriminator(protected.detach()))
        d_opt.zero_grad(set_to_none=True)
        (d_loss * weight).backward()
        d_opt.step()

        # Means over this rank's share, weighted by its part of the batch (1.0 in one
        # process) and summed over the ranks: the means over the global batch.
        part = len(x) / config.batch_size
        mean_loss, batch_psnr, fooled, fooled_attacked, recovered_right = (
            distributed.sum_over_ranks(
                [
                    loss.item() * part,
                    image_psnr.detach().mean().item() * part,
                    (logits_prt.argmax(1) != labels).float().mean().item() * part,
                    (logits_atk.argmax(1) != labels).float().mean().item() * part,
                    (logits_rec.argmax(1) == labels).float().mean().item() * part,
                ],
                device,
            )
        )
        smoothed = (
            batch_psnr
            if smoothed is None
            else config.psnr_smoothing * smoothed + (1 - config.psnr_smoothing) * batch_psnr
        )
        error = max(-THRESHOLD_RANGE, min(THRESHOLD_RANGE, config.target_psnr - smoothed))
        floor += config.floor_gain * error
        floor = min(config.target_psnr + THRESHOLD_RANGE, floor)
        floor = max(config.target_psnr - THRESHOLD_RANGE, floor)
        event = ProtectorEvent(
            step + 1,
            config.steps,
            mean_loss,
            batch_psnr,
            smoothed,
            fooled,
            fooled_attacked,
            recovered_right,
            floor,
        )
        events.append(event)
        if on_event is not None:
            on_event(event)
        due = (step + 1) % config.save_every == 0 or step + 1 == config.steps
        if state_dir and due and distributed.is_main():
            _save(raeg, g_opt, d_opt, state_dir, config, step + 1, floor, smoothed)
    raeg.eval()
    return events


class _GeneratorPass(nn.Module):
    """Protect (rounded to 8 bits, straight-through), attack and recover in one ``forward``.

    One module around the generator, so that DistributedDataParallel sees both passes
    of a step in its forward. ``generate`` is held as a bound method, not as a
    sub-module: the discriminator's parameters stay outside. The order of the three
    results is that of the loop before this module existed (it sets the order in which
    autograd sums their gradients, so one process computes bit for bit as before).
    """

    def __init__(self, raeg: RAEG) -> None:
        super().__init__()
        self.generator = raeg.generator
        self.generate = raeg.generate

    def forward(
        self, x: Tensor, attack: Callable[[Tensor], Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The protected images (8-bit, clipped), ``attack`` of them, and the recovered."""
        protected = quantize_ste(self.generate(x).clamp(0.0, 1.0))
        attacked = attack(protected)
        return protected, attacked, self.generator.inverse(protected)


def _attack(
    layer: AttackLayer, protected: Tensor, batch_size: int, mine: slice, generator: torch.Generator
) -> Tensor:
    """``protected`` through ``layer``, with this rank's share of the global batch's draws.

    One process attacks the whole batch directly. A rank of a distributed run draws the
    attacks of the whole global batch (on blank images, without gradients), so that the
    generator's random stream stays that of one process, and replays its share of them.
    """
    if len(protected) == batch_size:
        return layer(protected, generator=generator).images
    with torch.no_grad():
        blank = protected.new_zeros((batch_size, *protected.shape[1:]))
        drawn = layer(blank, generator=generator)
    return layer.replay(
        protected, drawn._replace(names=drawn.names[mine], params=drawn.params[mine])
    )


def _fooling_loss(config: ProtectorTrainingConfig) -> Callable[[Tensor, Tensor], Tensor]:
    """``(logits, labels) -> loss`` of the configured fooling mode."""
    if config.fooling == "margin":
        return lambda logits, labels: fooling_margin_loss(logits, labels, config.margin)

    def class_consistent(logits: Tensor, labels: Tensor) -> Tensor:
        targets = (labels + config.class_shift) % logits.shape[1]
        return targeted_margin_loss(logits, targets, config.margin)

    return class_consistent


def perceptual_loss(spec: str, device: torch.device) -> Callable[[Tensor, Tensor], Tensor]:
    """The perceptual loss named by ``spec``: ``"ssim"`` or a classifier checkpoint path.

    Raises:
        ValueError: If ``spec`` is neither ``"ssim"`` nor a loadable classifier.
    """
    if spec == "ssim":
        return structural_loss
    try:
        classifier = Classifier.load(spec, device)
    except (CheckpointError, OSError) as error:
        raise ValueError(
            f"perceptual must be 'ssim' or a classifier checkpoint; {spec!r}: {error}"
        ) from None
    return FeatureLoss(classifier)


@torch.no_grad()
def held_psnr(raeg: RAEG, images: ImageSet, count: int = 1000, seed: int = 0) -> float:
    """Mean PSNR (dB) of 8-bit protected images of ``count`` seeded random ``images``.

    This is the figure the target-PSNR knob holds: measured in ``eval()`` mode, after
    rounding to 8 bits, as the protected files will be.
    """
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(images), generator=generator)[:count]
    device = next(raeg.parameters()).device
    values = []
    for chunk in index.split(250):
        x = images.batch(chunk, device=device)
        protected = (raeg.eval().protect(x) * 255).round() / 255
        values.append(psnr(protected, x).clamp(max=100.0))
    return torch.cat(values).mean().item()


def _learning_rate(config: ProtectorTrainingConfig, step: int) -> float:
    progress = step / max(1, config.steps - 1)
    lowest = config.lr * config.final_lr_fraction
    return lowest + (config.lr - lowest) * 0.5 * (1 + math.cos(math.pi * progress))


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
    floor: float,
    smoothed_psnr: float,
) -> None:
    tensors = {f"model.{k}": v for k, v in raeg.state_dict().items()}
    tensors |= optimizer_tensors(g_opt, "g_opt") | optimizer_tensors(d_opt, "d_opt")
    counters = {"steps_done": steps_done, "floor": floor, "smoothed_psnr": smoothed_psnr}
    # The counters go into the weights file too: a process killed between the renames of
    # the weights and of config.json (as torchrun kills the other ranks when one dies)
    # leaves new weights beside an old config, and the weights then still say which step
    # they hold.
    tensors |= {f"state.{k}": torch.tensor(v, dtype=torch.float64) for k, v in counters.items()}
    save_checkpoint(state_dir, tensors, counters | {"config": _settings(config)})


def _resume(
    raeg: RAEG,
    g_opt: torch.optim.Optimizer,
    d_opt: torch.optim.Optimizer,
    state_dir: str | Path,
    config: ProtectorTrainingConfig,
) -> tuple[int, float, float]:
    tensors, meta = load_checkpoint(state_dir)
    if meta["config"] != _settings(config):
        raise ValueError(
            f"{state_dir} holds a run with different settings; use the same settings to resume"
        )
    raeg.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    load_optimizer_tensors(g_opt, tensors, "g_opt")
    load_optimizer_tensors(d_opt, tensors, "d_opt")
    # States written before the counters were in the weights file have them in config.json.
    counters = {
        name: tensors[f"state.{name}"].item() if f"state.{name}" in tensors else meta[name]
        for name in ("steps_done", "floor", "smoothed_psnr")
    }
    return int(counters["steps_done"]), float(counters["floor"]), float(counters["smoothed_psnr"])
