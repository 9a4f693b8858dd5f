"""A targeted poison on top of the network: protected pixels that also poison a pirate's training.

A network gives every image the perturbation it learnt; a pirate who trains on the protected
set learns the objects through it (docs/results.md, the thief's test). Perturbations
optimised for each image against classifiers do poison training: targeted adversarial
examples with a fixed class permutation ("Adversarial examples make strong poisons", Fowl et
al., NeurIPS 2021) held a pirate at 0.12-0.17 clean-test accuracy where the network's
perturbation left 0.83 (try 8 of docs/results.md).

`TargetedPoison` refines the protected levels of the network: starting from them, gradient
steps push each image toward the class after its own (``(c + 1) mod K``, so every image of a
class goes the same way), through random flips and shifts (a pirate's augmentation), while
every value stays within ``epsilon`` levels of the original (so PSNR >= 20 log10(255 /
epsilon) dB). With a ``psnr`` budget the change of each image is also bounded in L2, so that
its PSNR stays at least ``psnr`` dB, and the steps follow the normalised gradient: the change
goes to the values where it pays instead of every value moving by ``epsilon``, which at the
same PSNR gives a stronger poison, with a higher SSIM, that survives JPEG 10 and ComDefend
better (`benchmarks/poison_robust.py`).

Recovery is untouched: the record's residual codes the original against whatever
the protected pixels are (`invprotect.models.exact.ExactCodec`), so it stays bit for bit, and
the refinement is as secret as the residual. It costs ``steps`` forward and backward passes of
the classifiers per image, and a larger residual.

An image's own class is its label where one is given (the class folder of an ImageFolder,
as `invprotect protect` passes it) and the classifiers know it by name; otherwise the class
the classifiers see in the original. Labels matter: the classifiers miss the class of about
one training image in five, and a push from the wrong class is a push the pirate cannot
learn as a shortcut (`benchmarks/poison_hits.py`).

Example:
    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> classifier = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    >>> poison = TargetedPoison(classifier, input_size=8, config=PoisonConfig(steps=5))
    >>> originals = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    >>> levels = poison.refine(originals, originals.float())
    >>> int((levels - originals.float()).abs().max()) <= 8
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional

__all__ = ["PoisonConfig", "TargetedPoison", "flip_and_shift", "targeted_steps"]


@dataclass(frozen=True)
class PoisonConfig:
    """Settings of `TargetedPoison`.

    Attributes:
        steps: Signed gradient steps per image (0 turns the poison off).
        epsilon: Largest change of a value from the original, in 8-bit levels; ``None``:
            8, or 24 with a ``psnr`` budget (where the L2 ball bounds the change).
        shift: Largest random shift (pixels, reflect padding) of the augmentation.
        seed: Seed of the augmentation's draws (the same for every batch).
        psnr: ``None``: signed steps in the L-inf ball of ``epsilon`` levels. A number of
            dB: normalised-gradient steps in the L2 ball in which each image's PSNR is at
            least this (before the rounding to levels), values still within ``epsilon``.
        through: The thief's defences each step also sees the images through (defence
            specs, built by `invprotect.protectors.load_protector`): ``jpeg:quality=Q``
            (Kornia's differentiable JPEG), ``grayscale`` and ``comdefend:weights=PATH``
            (its binarisation's gradient passed straight through).
    """

    steps: int = 20
    epsilon: int | None = None
    shift: int = 4
    seed: int = 0
    psnr: float | None = None
    through: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.epsilon is None:
            object.__setattr__(self, "epsilon", 8 if self.psnr is None else 24)
        for name in ("steps", "epsilon", "shift", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"poison {name} must be an int >= 0, got {value!r}")
        if not 1 <= self.epsilon <= 255:
            raise ValueError(f"poison epsilon must be 1..255 levels, got {self.epsilon}")
        if self.psnr is not None and (
            isinstance(self.psnr, bool)
            or not isinstance(self.psnr, int | float)
            or not 10 <= self.psnr <= 60
        ):
            raise ValueError(f"poison psnr must be a number of dB in 10..60, got {self.psnr!r}")
        if not isinstance(self.through, tuple) or not all(
            isinstance(spec, str) and spec for spec in self.through
        ):
            raise ValueError(f"poison through must be a tuple of defence specs: {self.through!r}")


class TargetedPoison:
    """Refine protected levels into a class-consistent targeted poison against classifiers.

    Args:
        model: Classifiers (an `invprotect.targets.Ensemble`, say): ``[0, 1]`` images to logits.
        input_size: The side of the images the classifiers take; other sizes are refused.
        config: The settings.
        classes: The classifiers' class names, in the order of their logits (labels that
            are not among them count as unknown); ``None``: the model's ``classes``
            (a `invprotect.targets.Classifier`'s or an `invprotect.targets.Ensemble`'s).
        views: Differentiable ways to see the images (the thief's purifiers, built from
            ``config.through``), each also pushed toward the next class.
    """

    def __init__(
        self,
        model: nn.Module,
        input_size: int,
        config: PoisonConfig | None = None,
        classes: Sequence[str] | None = None,
        views: Sequence[Callable[[Tensor], Tensor]] = (),
    ) -> None:
        self.model = model
        self.input_size = input_size
        self.config = config or PoisonConfig()
        self.classes = list(getattr(model, "classes", ()) if classes is None else classes)
        self.views = list(views)

    def refine(
        self, originals: Tensor, levels: Tensor, labels: Sequence[str | None] | None = None
    ) -> Tensor:
        """Poisoned levels (floats holding integers in ``0..255``) from the network's levels.

        Args:
            originals: ``uint8`` originals ``(B, 3, H, W)``.
            levels: The network's protected levels ``round(255 y)``, same shape (unclipped).
            labels: Each image's class name, or ``None`` where unknown (then, and for
                names not in `classes`, the class the classifiers see is pushed from).

        Raises:
            ValueError: If the images are not of the classifiers' input size, or the
                labels are not one per image.
        """
        if tuple(originals.shape[-2:]) != (self.input_size,) * 2:
            raise ValueError(
                f"the poison attacks classifiers of {self.input_size}x{self.input_size} images; "
                f"this image is {originals.shape[-1]}x{originals.shape[-2]} (after padding): "
                "protect it without --poison-steps, or train targets at its size"
            )
        if labels is not None and len(labels) != originals.shape[0]:
            raise ValueError(f"{len(labels)} labels for {originals.shape[0]} images")
        config = self.config
        device = next(self.model.parameters()).device
        x = originals.to(device).float() / 255
        with torch.no_grad():
            logits = self.model(x)
        own = logits.argmax(1)
        index = {name: i for i, name in enumerate(self.classes)}
        for i, label in enumerate(labels or ()):
            if label in index:
                own[i] = index[label]
        targets = (own + 1) % logits.shape[1]
        generator = torch.Generator().manual_seed(config.seed)
        start = levels.to(device).float() / 255
        poisoned = targeted_steps(self.model, x, start, targets, config, generator, self.views)
        out = poisoned.mul(255).round()
        low = (originals.float() - config.epsilon).clamp(min=0)
        high = (originals.float() + config.epsilon).clamp(max=255)
        return torch.minimum(torch.maximum(out.cpu(), low), high)


def targeted_steps(
    model: nn.Module,
    originals: Tensor,
    start: Tensor,
    targets: Tensor,
    config: PoisonConfig,
    generator: torch.Generator,
    views: Sequence[Callable[[Tensor], Tensor]] = (),
) -> Tensor:
    """Targeted PGD: ``config.steps`` steps from ``start`` toward ``targets``.

    Each step sees the batch through one random flip and shift drawn from ``generator``
    (alike for every image), and also through each of ``views`` (a differentiable
    defence, say); the cross-entropy toward ``targets`` is summed over them. The steps
    are signed in the L-inf ball (``config.psnr`` is ``None``), or along the gradient
    normalised per image in the L2 ball of ``config.psnr`` dB, both within
    ``config.epsilon`` levels of ``originals`` per value.

    Args:
        model: Classifiers: ``[0, 1]`` images to logits.
        originals: Float ``[0, 1]`` originals ``(B, 3, H, W)``.
        start: Float ``[0, 1]`` images to start from, projected into the ball first.
        targets: The class each image is pushed toward ``(B,)``.
        config: Steps, ``epsilon`` (levels) and ``shift``.
        generator: CPU generator of the augmentation's draws.
        views: More ways to see each augmented batch.

    Returns:
        Float ``[0, 1]`` images within ``epsilon / 255`` of ``originals`` (and within the
        L2 budget), not rounded.
    """
    eps = config.epsilon / 255
    radius = None
    if config.psnr is not None:
        radius = originals[0].numel() ** 0.5 * 10 ** (-config.psnr / 20)

    def project(images: Tensor) -> Tensor:
        if radius is not None:
            change = images - originals
            images = originals + change * (radius / _norms(change).clamp_min(1e-12)).clamp(max=1)
        return torch.minimum(torch.maximum(images, originals - eps), originals + eps).clamp(0, 1)

    def direction(gradient: Tensor) -> Tensor:
        if radius is None:
            return gradient.sign()
        return gradient / _norms(gradient).clamp_min(1e-12)

    poisoned = project(start)
    step = 2.5 * (eps if radius is None else radius) / max(config.steps, 1)
    with torch.enable_grad():
        for _ in range(config.steps):
            poisoned.requires_grad_(True)
            seen = flip_and_shift(poisoned, config.shift, generator)
            outputs = [model(seen)] + [model(view(seen)) for view in views]
            loss = sum(functional.cross_entropy(out, targets, reduction="sum") for out in outputs)
            (gradient,) = torch.autograd.grad(loss, poisoned)
            with torch.no_grad():
                poisoned = project(poisoned - step * direction(gradient))
    return poisoned.detach()


def _norms(images: Tensor) -> Tensor:
    """Each image's L2 norm, shaped to broadcast over ``(B, C, H, W)``."""
    return images.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def flip_and_shift(images: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """A pirate's augmentation: one random flip and shift for the whole batch, differentiably.

    The shift, up to ``shift`` pixels each way, pads by reflection; both draws come from
    ``generator``.

    Example:
        >>> images = torch.rand(2, 3, 8, 8)
        >>> flip_and_shift(images, 2, torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 8, 8])
    """
    if torch.rand((), generator=generator) < 0.5:
        images = images.flip(-1)
    if shift == 0:
        return images
    dy, dx = torch.randint(0, 2 * shift + 1, (2,), generator=generator).tolist()
    padded = functional.pad(images, (shift,) * 4, mode="reflect")
    return padded[..., dy : dy + images.shape[-2], dx : dx + images.shape[-1]]
