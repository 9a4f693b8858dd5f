"""The losses of RAEG (Eq. 4-9 of the paper), in the bounded forms used here."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from pytorch_msssim import ssim
from torch import Tensor, nn


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


def targeted_margin_loss(logits: Tensor, targets: Tensor, margin: float = 5.0) -> Tensor:
    """Push each image towards a chosen class: ``relu(max_{j != t} z_j - z_t + margin)``.

    The targeted counterpart of `fooling_margin_loss`, zero once the target class ``t``
    wins by ``margin``. With a fixed class map (every image of class ``y`` pushed to the
    same class ``t(y)``) the perturbations are class-consistent, which makes them strong
    training poisons (Fowl et al., NeurIPS 2021), not only test-time adversarial examples.

    Args:
        logits: ``(B, K)`` classifier outputs.
        targets: ``(B,)`` wanted classes.
        margin: Logit gap wanted between the target class and the best other class.
    """
    target = logits.gather(1, targets[:, None])[:, 0]
    others = logits.masked_fill(F.one_hot(targets, logits.shape[1]).bool(), float("-inf"))
    return F.relu(others.max(1).values - target + margin).mean()


def high_frequency_share(perturbation: Tensor) -> Tensor:
    """Share of a perturbation's energy above the pass band of a 3x3 box blur, in ``[0, 1]``.

    ``|d - blur(d)|^2 / |d|^2`` per image, averaged: 0 for a perturbation that blurring
    leaves unchanged, near 1 for pixel-level (e.g. period-2 stripe) patterns, which
    blurring and denoising purifiers remove. Scale-free, so its weight does not fight
    the PSNR budget.

    Args:
        perturbation: ``(B, C, H, W)`` difference between protected and original images.
    """
    blurred = F.avg_pool2d(F.pad(perturbation, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    high = (perturbation - blurred).square().flatten(1).sum(1)
    return (high / perturbation.square().flatten(1).sum(1).clamp_min(1e-12)).mean()


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


class FeatureLoss(nn.Module):
    """Perceptual loss on the activations of a frozen network's first convolutions.

    The paper's perceptual loss compares VGG16 features of ImageNet weights, which
    cannot be downloaded everywhere. This loss takes any network instead: the outputs
    of its first ``layers`` `torch.nn.Conv2d` modules (in module order) are recorded with
    forward hooks, and the loss is the mean over those layers of the mean squared
    difference between the two images' activations. A `invprotect.targets.Classifier`
    trained on the owner's data works (its normalisation is inside it), and so does a
    torchvision VGG16 where its weights are at hand.

    Args:
        network: Any module taking ``[0, 1]`` images; frozen and put in ``eval()`` mode.
        layers: How many of its first convolutions to compare.

    Raises:
        ValueError: If ``network`` has fewer than ``layers`` convolutions.
    """

    def __init__(self, network: nn.Module, layers: int = 4) -> None:
        super().__init__()
        convolutions = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
        if layers < 1 or len(convolutions) < layers:
            raise ValueError(
                f"the network has {len(convolutions)} convolutions; cannot compare {layers}"
            )
        self.network = network.eval().requires_grad_(False)
        self.layers = layers
        self._outputs: list[Tensor] = []
        for conv in convolutions[:layers]:
            conv.register_forward_hook(lambda _m, _i, output: self._outputs.append(output))

    def train(self, mode: bool = True) -> FeatureLoss:
        """Keep the network in ``eval()`` mode (batch-norm statistics stay fixed)."""
        super().train(mode)
        self.network.eval()
        return self

    def features(self, images: Tensor) -> list[Tensor]:
        """The recorded activations of ``images``, first convolution first."""
        self._outputs = []
        self.network(images)
        features, self._outputs = self._outputs[: self.layers], []
        return features

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Mean over the layers of the mean squared activation difference of ``a`` and ``b``."""
        pairs = zip(self.features(a), self.features(b), strict=True)
        return torch.stack([F.mse_loss(x.float(), y.float()) for x, y in pairs]).mean()
