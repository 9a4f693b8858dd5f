"""The losses of RAEG (Eq. 4-9 of the paper), in the bounded forms used here."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from pytorch_msssim import ssim
from torch import Tensor


def fooling_margin_loss(logits: Tensor, labels: Tensor, margin: float = 5.0) -> Tensor:
    """Bounded replacement of the paper's ``-eps * CE(f(I_prt), l)`` term (Eq. 8).

    ``-CE`` is unbounded below, so the paper's loss can be driven to minus infinity by
    ever larger logits. This is the Carlini-Wagner margin instead:
    ``relu(z_true - max_{j != true} z_j + margin)``, zero once another class wins by
    ``margin``. It pushes each image just far enough to be misclassified confidently
    and then stops spending image quality on it.

    Args:
        logits: ``(B, K)`` classifier outputs.
        labels: ``(B,)`` true classes.
        margin: Logit gap wanted between the best wrong class and the true class.
    """
    true = logits.gather(1, labels[:, None])[:, 0]
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    return F.relu(true - others.max(1).values + margin).mean()


def structural_loss(a: Tensor, b: Tensor) -> Tensor:
    """``1 - SSIM`` (pytorch-msssim, 11x11 Gaussian window, or smaller for small images)."""
    window = min(11, a.shape[-1], a.shape[-2])
    window -= 1 - window % 2  # odd
    return 1 - ssim(a, b, data_range=1.0, size_average=True, win_size=window)


def generator_gan_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating GAN loss of the generator: make protected images look original (Eq. 7)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Binary cross-entropy of the discriminator: originals 1, protected images 0 (Eq. 6)."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake
