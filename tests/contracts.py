"""Contract helpers shared by the tests: block contracts, and a small non-identity protector."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from FrEIA.modules import InvertibleModule
from torch import Tensor

from invprotect.models import RAEG


@dataclass(frozen=True)
class BlockCase:
    """A registry entry plus the small hyper-parameters the tests build it with."""

    name: str
    channels: int
    hparams: dict[str, Any] = field(default_factory=dict)
    side_multiple: int = 1
    grid: float | None = None
    """Spacing of the integer grid an integer block maps to itself (``None``: a float block)."""

    @property
    def id(self) -> str:
        extra = "-".join(
            f"{k}={v}" for k, v in self.hparams.items() if k in ("subnet", "coupling")
        )
        return f"{self.name}-{extra}" if extra else self.name


def run(module: InvertibleModule, x: Tensor, rev: bool = False) -> tuple[Tensor, Tensor]:
    (y,), log_det = module([x], rev=rev, jac=True)
    return y, log_det


def train_away_from_identity(
    module: InvertibleModule,
    make_input: Callable[[], Tensor],
    steps: int = 20,
    lr: float = 1e-3,
    forward: Callable[[Tensor], Tensor] | None = None,
    target: Callable[[Tensor], Tensor] = lambda x: 2.0 * x + 0.1,
) -> None:
    """Take ``steps`` Adam steps that push a shape-preserving module towards ``target(x)``.

    The default ``2x + 0.1`` needs log-scales of about log(2) in the couplings, so
    afterwards the weights (and the log-det) are far from the identity initialisation.
    Modules without parameters are left as they are. ``forward`` maps a batch to the
    output (default: the FrEIA call convention).
    """
    forward = forward or (lambda x: run(module, x)[0])
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        return
    optimiser = torch.optim.Adam(params, lr=lr)
    module.train()
    for _ in range(steps):
        x = make_input()
        y = forward(x)
        loss = (y - target(x)).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    module.eval()


def all_parameters_have_gradients(module: torch.nn.Module) -> list[str]:
    """Names of the parameters whose gradient is missing or identically zero."""
    return [
        name
        for name, p in module.named_parameters()
        if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))
    ]


def flat_log_abs_det(function: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """log|det| of the Jacobian of ``function`` at a single-sample ``x`` (autograd, exact)."""
    jacobian = torch.autograd.functional.jacobian(lambda t: function(t).flatten(), x)
    return torch.linalg.slogdet(jacobian.reshape(x.numel(), x.numel()))[1]


def as_list(shape: Sequence[int]) -> list[tuple[int, ...]]:
    return [tuple(shape)]


TINY_RAEG = {
    "generator": {"levels": 2, "blocks_per_level": 1, "hidden_channels": 8, "subnet": "conv"}
}
"""`RAEG.from_preset` overrides of a small, fast protector for file tests."""


def tiny_raeg(seed: int = 0, coupling: str = "affine") -> RAEG:
    """A small `RAEG` (``TINY_RAEG``) trained 20 steps towards ``y = 0.8x + 0.1``, in ``eval()``.

    Far from the identity (files really change), yet inside ``[0, 1]`` (no clipping).
    ``coupling="integer"`` builds it from integer blocks (`invprotect.blocks.integer`),
    trained at a 10 times larger rate (its shifts start at whole levels): it changes
    images by about 5 levels and clips a few pixels.
    """
    torch.manual_seed(seed)
    generator = TINY_RAEG["generator"] | {"coupling": coupling}
    model = RAEG.from_preset("cpu-32", generator=generator)
    train_away_from_identity(
        model.generator,
        lambda: torch.rand(4, 3, 32, 32),
        forward=model.generate,
        target=lambda x: 0.8 * x + 0.1,
        lr=1e-2 if coupling == "integer" else 1e-3,
    )
    return model.eval()
