"""White-box adversarial examples for the baselines: IGSM and Carlini-Wagner L2.

Both attacks are untargeted: they push each image away from its ``labels`` entry (for a
protector, usually the model's own prediction on the clean image). They take float RGB
images ``(B, 3, H, W)`` in ``[0, 1]`` and return adversarial images of the same shape on
the 8-bit grid (values ``k / 255``), as they would be saved to an 8-bit file. They are
deterministic: no random start, and the model is run in ``eval()`` mode (its mode is
restored afterwards). Gradients are taken with respect to the images only; the model's
parameters are left untouched.

References:
    IGSM: A. Kurakin, I. Goodfellow and S. Bengio, "Adversarial examples in the physical
    world", ICLR workshop 2017 (arXiv 1607.02533).
    C&W: N. Carlini and D. Wagner, "Towards evaluating the robustness of neural
    networks", IEEE S&P 2017.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from invprotect import checks

__all__ = ["carlini_wagner_l2", "igsm"]

Model = Callable[[Tensor], Tensor]
"""A classifier or ensemble: ``[0, 1]`` images ``(B, 3, H, W)`` to logits ``(B, K)``."""


def check_images(images: Tensor, name: str = "images", on_grid: bool = False) -> None:
    """Check a float RGB batch ``(B, 3, H, W)`` in ``[0, 1]`` (and on the 8-bit grid if asked).

    Raises:
        ValueError: If ``images`` is not a floating-point tensor of that shape and range.
    """
    checks.check_images(name, images, channels=3, unit_range=True, non_empty=True)
    if on_grid:
        checks.check_8bit_grid(name, images, fix="images.mul(255).round().div(255)")


def _check_labels(labels: Tensor, images: Tensor) -> None:
    if (
        not isinstance(labels, Tensor)
        or labels.dtype != torch.long
        or labels.shape != images.shape[:1]
    ):
        got = (
            f"{labels.dtype} {tuple(labels.shape)}"
            if isinstance(labels, Tensor)
            else type(labels).__name__
        )
        raise ValueError(
            f"labels must be a torch.long tensor of shape ({images.shape[0]},), got {got}"
        )


@contextmanager
def _eval_mode(model: Model) -> Iterator[None]:
    """Run ``model`` in ``eval()`` mode if it is a module, then restore its previous mode."""
    if not isinstance(model, nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _logit_margin(logits: Tensor, labels: Tensor) -> Tensor:
    """``z_label - max_{j != label} z_j`` per image: negative once another class wins."""
    true = logits.gather(1, labels[:, None])[:, 0]
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    return true - others.max(1).values


def _to_grid(images: Tensor) -> Tensor:
    return images.clamp(0.0, 1.0).mul(255.0).round().div(255.0)


def igsm(
    model: Model,
    images: Tensor,
    labels: Tensor,
    epsilon: float = 8 / 255,
    step_size: float = 1 / 255,
    steps: int = 10,
) -> Tensor:
    """Iterative FGSM (basic iterative method): signed-gradient ascent on the cross-entropy.

    ``x_{n+1} = clip_{x, eps}(x_n + step_size * sign(grad CE(model(x_n), y)))``, clipped to
    ``[0, 1]`` after every step. The result is rounded to the 8-bit grid and kept in the
    ``epsilon`` ball around ``images`` (a value is rounded towards the original when the
    nearest level lies outside the ball).

    Args:
        model: Classifier (or ensemble) taking ``[0, 1]`` images, returning logits.
        images: ``(B, 3, H, W)`` float in ``[0, 1]``.
        labels: ``(B,)`` classes to move away from.
        epsilon: L-infinity radius, in ``[0, 1]`` units (``8 / 255``: eight 8-bit levels).
        step_size: Step per iteration, in ``[0, 1]`` units.
        steps: Iterations.

    Returns:
        Adversarial images, ``(B, 3, H, W)``, on the 8-bit grid, within ``epsilon`` of
        ``images`` (exactly, when ``images`` lie on the grid).

    Raises:
        ValueError: For images or labels of the wrong shape, dtype or range, or
            negative settings.
    """
    check_images(images)
    _check_labels(labels, images)
    if epsilon < 0 or step_size < 0 or steps < 0:
        raise ValueError(
            f"epsilon, step_size and steps must be >= 0, got {epsilon}, {step_size}, {steps}"
        )
    original = images.detach()
    adversarial = original.clone()
    with _eval_mode(model):
        for _ in range(steps):
            adversarial.requires_grad_(True)
            loss = F.cross_entropy(model(adversarial), labels, reduction="sum")
            (grad,) = torch.autograd.grad(loss, adversarial)
            with torch.no_grad():
                adversarial = adversarial + step_size * grad.sign()
                adversarial = torch.min(
                    torch.max(adversarial, original - epsilon), original + epsilon
                )
                adversarial = adversarial.clamp(0.0, 1.0)
    levels = (adversarial.detach() * 255.0).round()
    low = ((original - epsilon) * 255.0 - 1e-4).ceil().clamp(0.0, 255.0)
    high = ((original + epsilon) * 255.0 + 1e-4).floor().clamp(0.0, 255.0)
    return torch.min(torch.max(levels, low), high).div(255.0)


def carlini_wagner_l2(
    model: Model,
    images: Tensor,
    labels: Tensor,
    confidence: float = 0.0,
    c: float = 1.0,
    steps: int = 100,
    lr: float = 0.01,
    binary_search_steps: int = 1,
) -> Tensor:
    """Carlini-Wagner L2 attack (untargeted), kept on the 8-bit grid.

    The image is reparametrised as ``x' = (tanh(w) + 1) / 2`` and Adam minimises, per image,
    ``||x' - x||_2^2 + c * max(z_y - max_{j != y} z_j, -confidence)`` over ``w``. After every
    step the iterate is rounded to the 8-bit grid; the rounded image with the smallest L2
    distance among those on which another class beats ``y`` by more than ``confidence`` is
    kept (so rounding never undoes the returned attack). With ``binary_search_steps > 1``,
    ``c`` is searched per image as in the paper, each round restarting from the original
    image: after a round with a success, ``c`` moves halfway down to the largest failing
    value (``0`` at first); after a round without, it is multiplied by ten until a
    success has been seen, then moved halfway up to the smallest succeeding value.

    Args:
        model: Classifier (or ensemble) taking ``[0, 1]`` images, returning logits.
        images: ``(B, 3, H, W)`` float in ``[0, 1]``.
        labels: ``(B,)`` classes to move away from.
        confidence: Logit margin ``kappa`` by which another class must beat ``y``.
        c: Initial weight of the classification term.
        steps: Adam steps per search step.
        lr: Adam learning rate.
        binary_search_steps: Rounds of the search over ``c`` (``1``: no search).

    Returns:
        Adversarial images, ``(B, 3, H, W)``, on the 8-bit grid. An image for which no
        rounded adversarial was found is returned unchanged (rounded to the grid).

    Raises:
        ValueError: For images or labels of the wrong shape, dtype or range, or invalid
            settings.
    """
    check_images(images)
    _check_labels(labels, images)
    if c <= 0 or lr <= 0 or steps < 0 or binary_search_steps < 1 or confidence < 0:
        raise ValueError(
            "need c > 0, lr > 0, steps >= 0, binary_search_steps >= 1 and confidence >= 0, got "
            f"c={c}, lr={lr}, steps={steps}, binary_search_steps={binary_search_steps}, "
            f"confidence={confidence}"
        )
    original = images.detach()
    batch = original.shape[0]
    best = _to_grid(original)
    best_l2 = torch.full((batch,), math.inf, device=original.device)
    weight = torch.full((batch,), float(c), device=original.device)
    lower = torch.zeros(batch, device=original.device)
    upper = torch.full((batch,), math.inf, device=original.device)
    start = torch.atanh((original * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    with _eval_mode(model):
        for _ in range(binary_search_steps):
            w = start.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=lr)
            succeeded = torch.zeros(batch, dtype=torch.bool, device=original.device)
            for _ in range(steps):
                candidate = (torch.tanh(w) + 1) / 2
                distance = (candidate - original).square().flatten(1).sum(1)
                margin = _logit_margin(model(candidate), labels)
                loss = (distance + weight * margin.clamp(min=-confidence)).sum()
                (w.grad,) = torch.autograd.grad(loss, w)  # not into the model's parameters
                optimizer.step()
                with torch.no_grad():
                    rounded = _to_grid((torch.tanh(w) + 1) / 2)
                    success = _logit_margin(model(rounded), labels) < -confidence
                    l2 = (rounded - original).square().flatten(1).sum(1)
                    better = success & (l2 < best_l2)
                    best = torch.where(better[:, None, None, None], rounded, best)
                    best_l2 = torch.where(better, l2, best_l2)
                    succeeded |= success
            upper = torch.where(succeeded, torch.min(upper, weight), upper)
            lower = torch.where(succeeded, lower, torch.max(lower, weight))
            weight = torch.where(upper.isinf(), weight * 10, (lower + upper) / 2)
    return best
