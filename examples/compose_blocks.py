"""Compose invertible protectors from the block library and check that they invert.

The same blocks are put together in two ways:

- ``InvertibleUNet.from_preset("cpu", ...)``: the U-shaped builder of RAEG (three Haar levels,
  DSAC blocks on the way down and on the way up).
- FrEIA's ``SequenceINN``: Haar downsampling, four DSAC blocks (with the registered ``conv`` and
  ``resnet_sn`` subnets and with a custom subnet constructor; one block class is fetched from the
  block registry by name), Haar upsampling.

Freshly built networks are the identity (every subnet zero-initialises its last layer), so a
round trip through them proves nothing. Each network is therefore first trained for a few Adam
steps to brighten the images by half (target ``1.5 * x``), which moves every coupling away from
the identity. In ``eval()`` mode (spectral normalisation fixed) the script then prints, per
network: the parameter count, the PSNR of the output against the input (finite: the network is
no longer the identity), the largest round-trip error ``|x - f^-1(f(x))|``, the mean forward
log-determinant, and the largest ``|log_det_fwd + log_det_rev|`` (zero up to rounding).

It exits non-zero if a round-trip error exceeds ``1e-4`` or if the forward and reverse
log-determinants of a sample do not cancel (to ``1e-4`` relative).

Images: one per class from ``../shared/datasets/cifar10/test/<class>/*.jpg`` (relative to the
repository root) when that folder exists, resized to ``--size``; otherwise seeded random images.

Usage::

    python examples/compose_blocks.py --size 32 --seed 0
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from FrEIA.framework import SequenceINN
from PIL import Image
from torch import Tensor, nn
from torch.nn.functional import interpolate, mse_loss

from invprotect import DSACBlock, HaarDownsampling, HaarUpsampling, InvertibleUNet
from invprotect.blocks import get_block

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/datasets/cifar10/test"
TARGET_GAIN = 1.5  # training target: the images brightened by half
ROUND_TRIP_TOLERANCE = 1e-4
LOG_DET_TOLERANCE = 1e-4  # relative to each sample's |forward log-determinant| (at least 1)

# A network maps an image batch to (output batch, per-sample log-det); ``rev`` inverts it.
Network = Callable[..., tuple[Tensor, Tensor]]


@dataclass
class Row:
    """One line of the result table."""

    name: str
    parameters: int
    psnr_db: float
    round_trip_error: float
    log_det_forward: float
    log_det_sum: float
    log_det_balanced: bool


def load_images(
    data: Path, count: int, size: int, generator: torch.Generator
) -> tuple[Tensor, str]:
    """Load ``count`` RGB images as a float batch in ``[0, 1]`` of shape ``(count, 3, size, size)``.

    Args:
        data: Folder of ``<class>/*.jpg``; if missing, seeded random images are returned.
        count: Number of images (one per class, classes in sorted order, cycling if needed).
        size: Side of the returned images (bilinear resize when the files differ).
        generator: Random generator for the fallback images.

    Returns:
        The batch and a short description of where it came from.
    """
    classes = sorted(p for p in data.iterdir() if p.is_dir()) if data.is_dir() else []
    files = [sorted(folder.glob("*.jpg")) for folder in classes]
    files = [names for names in files if names]
    if not files:
        images = torch.rand(count, 3, size, size, generator=generator)
        return images, f"{count} seeded random images (no {data})"
    picked = []
    for i in range(count):  # one image per class in turn
        names = files[i % len(files)]
        picked.append(names[(i // len(files)) % len(names)])
    arrays = [np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8) for path in picked]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
    if images.shape[-2:] != (size, size):
        images = interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        images = images.clamp(0.0, 1.0)
    return images, f"{count} CIFAR-10 test images from {data}"


def build_unet(size: int) -> tuple[nn.Module, Network]:
    """The U-shaped builder with the ``cpu`` preset (3 levels, 2 DSAC blocks per module)."""
    net = InvertibleUNet.from_preset("cpu", dims_in=[(3, size, size)])

    def run(x: Tensor, rev: bool = False) -> tuple[Tensor, Tensor]:
        (y,), log_det = net([x], rev=rev)
        return y, log_det

    return net, run


class GatedSubnet(nn.Module):
    """A custom subnet: 1x1 conv, GELU, 3x3 conv, last layer zero-initialised."""

    def __init__(self, c_in: int, c_out: int, hidden_channels: int = 24) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(c_in, hidden_channels, 1),
            nn.GELU(),
            nn.Conv2d(hidden_channels, c_out, 3, padding=1),
        )
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, c_in, H, W)`` to ``(B, c_out, H, W)``."""
        return self.layers(x)


def build_sequence(size: int) -> tuple[nn.Module, Network]:
    """Haar down, four DSAC blocks with different subnets, Haar up, inside ``SequenceINN``."""
    inn = SequenceINN(3, size, size)
    inn.append(HaarDownsampling)  # (3, S, S) -> (12, S/2, S/2)
    inn.append(DSACBlock, subnet="conv", hidden_channels=32)
    inn.append(DSACBlock, subnet="resnet_sn", hidden_channels=32, split_len=3)
    inn.append(get_block("dsac"), subnet="conv", hidden_channels=16, clamp=1.0)
    inn.append(DSACBlock, subnet=GatedSubnet, split_len=9)  # a custom constructor
    inn.append(HaarUpsampling)  # (12, S/2, S/2) -> (3, S, S)

    def run(x: Tensor, rev: bool = False) -> tuple[Tensor, Tensor]:
        return inn(x, rev=rev)

    return inn, run


def train(module: nn.Module, run: Network, images: Tensor, steps: int, lr: float) -> None:
    """Move the weights away from the identity: fit the output to ``TARGET_GAIN * images``."""
    module.train()
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    target = TARGET_GAIN * images
    for _ in range(steps):
        optimizer.zero_grad()
        output, _ = run(images)
        loss = mse_loss(output, target)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def evaluate(name: str, module: nn.Module, run: Network, images: Tensor) -> Row:
    """Round trip in ``eval()`` mode; measure how far the output is from the input."""
    module.eval()
    output, log_det_fwd = run(images)
    restored, log_det_rev = run(output, rev=True)
    mse = mse_loss(output, images).item()
    log_det_sum = (log_det_fwd + log_det_rev).abs()
    log_det_scale = log_det_fwd.abs().clamp(min=1.0)
    return Row(
        name=name,
        parameters=sum(p.numel() for p in module.parameters()),
        psnr_db=10 * math.log10(1.0 / mse) if mse > 0 else math.inf,
        round_trip_error=(restored - images).abs().max().item(),
        log_det_forward=log_det_fwd.mean().item(),
        log_det_sum=log_det_sum.max().item(),
        log_det_balanced=bool((log_det_sum <= LOG_DET_TOLERANCE * log_det_scale).all()),
    )


def print_table(rows: list[Row]) -> None:
    """Print the result rows as a fixed-width table."""
    header = (
        f"{'network':<26} {'params':>9} {'PSNR out/in':>12} {'max |x - x_rec|':>16} "
        f"{'mean log-det':>13} {'max |ld_f + ld_r|':>18}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.name:<26} {row.parameters:>9,d} {row.psnr_db:>9.2f} dB "
            f"{row.round_trip_error:>16.2e} {row.log_det_forward:>13.2f} {row.log_det_sum:>18.2e}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="image side, a multiple of 8")
    parser.add_argument("--seed", type=int, default=0, help="seed for torch and NumPy")
    parser.add_argument("--images", type=int, default=8, help="number of images")
    parser.add_argument("--steps", type=int, default=20, help="Adam steps before the check")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="<class>/*.jpg folder")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch; tensors this small gain little from more, and extra "
        "threads slow down badly when other processes share the cores (0: torch's default)",
    )
    args = parser.parse_args(argv)
    if args.size < 8 or args.size % 8:
        parser.error(f"--size must be a positive multiple of 8 (2**levels), got {args.size}")
    if args.images < 1 or args.steps < 0 or args.threads < 0:
        parser.error("--images must be positive, --steps and --threads non-negative")
    return args


def main(argv: list[str] | None = None) -> None:
    """Build, train briefly and round-trip both networks; exit non-zero on a failed check."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # FrEIA draws its permutations with NumPy
    generator = torch.Generator().manual_seed(args.seed)
    images, source = load_images(args.data, args.images, args.size, generator)
    print(f"{source}, {args.size}x{args.size}, seed {args.seed}, {args.steps} Adam steps\n")

    rows = []
    start = time.perf_counter()
    for name, build in (
        ("InvertibleUNet 'cpu'", build_unet),
        ("SequenceINN (Haar+4 DSAC)", build_sequence),
    ):
        module, run = build(args.size)
        train(module, run, images, args.steps, args.lr)
        rows.append(evaluate(name, module, run, images))
    print_table(rows)
    print(f"\n{time.perf_counter() - start:.1f} s")

    failed = [
        row.name
        for row in rows
        if not row.round_trip_error <= ROUND_TRIP_TOLERANCE or not row.log_det_balanced
    ]
    if failed:
        raise SystemExit(
            f"round trip failed for {', '.join(failed)}: error above {ROUND_TRIP_TOLERANCE:g} "
            "or forward and reverse log-determinants that do not cancel"
        )
    print(f"all round trips within {ROUND_TRIP_TOLERANCE:g}")


if __name__ == "__main__":
    main()
