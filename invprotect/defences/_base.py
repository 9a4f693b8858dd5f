"""The contract every defence follows, and the helpers they share.

A defence is what a thief does to protected images before using them: it takes
float RGB images ``(B, 3, H, W)`` in ``[0, 1]`` whose values lie on the 8-bit grid
(``k / 255``), and returns images of the same shape, again on the 8-bit grid (the
result is rounded at the end, as if saved to an 8-bit file).

Randomness is explicit. A defence that draws random numbers (``stochastic = True``)
takes a ``generator`` argument: ``None`` (a fresh generator seeded with the defence's
own ``seed``, so that every call gives the same result), one ``torch.Generator`` for
the whole batch, or one generator per image. With one generator per image, an image's
result depends only on the image and its generator, never on the other images of the
batch: that is how the command line keeps results identical whatever the batching and
across resumed runs (see `sample_generators`).
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar, TypeAlias

import torch
from torch import Tensor, nn

from invprotect import checks
from invprotect._registry import Registry
from invprotect.checks import GRID_TOLERANCE as GRID_TOLERANCE  # re-exported (moved)

GeneratorArg: TypeAlias = torch.Generator | Sequence[torch.Generator] | None
"""``None``, one generator for the whole batch, or one generator per image."""


def to_8bit_grid(images: Tensor) -> Tensor:
    """Clamp to ``[0, 1]`` and round to the nearest ``k / 255`` (what saving an 8-bit file does).

    Example:
        >>> to_8bit_grid(torch.tensor([-0.1, 0.5, 1.2]))
        tensor([0.0000, 0.5020, 1.0000])
    """
    return images.clamp(0.0, 1.0).mul(255.0).round().div(255.0)


def check_images(images: Tensor, name: str = "images") -> None:
    """Check that ``images`` is a float RGB batch ``(B, 3, H, W)`` in ``[0, 1]`` on the 8-bit grid.

    Raises:
        TypeError: If ``images`` is not a floating-point tensor (an
            `invprotect.checks.ImageTypeError`, also a ``ValueError``).
        ValueError: If the shape, the range or the grid is wrong; the message says what
            was received and how to fix it.
    """
    checks.check_images(name, images, channels=3, unit_range=True)
    checks.check_8bit_grid(name, images, fix="invprotect.defences.to_8bit_grid(images)")


def sample_generators(seed: int, keys: Sequence[str]) -> list[torch.Generator]:
    """One CPU generator per key, seeded from ``seed`` and the key (a file's relative path, say).

    The seed of each generator is taken from SHA-256 of ``"{seed}:{key}"``, so an image
    gets the same random numbers whatever else is in its batch and whichever run
    processes it.

    Example:
        >>> a, b = sample_generators(0, ["cat/1.png", "cat/1.png"])
        >>> torch.equal(torch.rand(2, generator=a), torch.rand(2, generator=b))
        True
    """
    generators = []
    for key in keys:
        digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
        generators.append(torch.Generator().manual_seed(int.from_bytes(digest[:8], "little")))
    return generators


def resolve_generator(generator: GeneratorArg, batch: int, seed: int) -> torch.Generator | list:
    """The generator(s) a stochastic defence draws from.

    Args:
        generator: ``None`` (a fresh CPU generator seeded with ``seed``), one generator,
            or one generator per image.
        batch: Number of images.
        seed: Seed used when ``generator`` is ``None``.

    Returns:
        One generator, or a list of ``batch`` generators.

    Raises:
        ValueError: If a sequence of generators does not hold exactly one per image.
    """
    if generator is None:
        return torch.Generator().manual_seed(seed)
    if isinstance(generator, torch.Generator):
        return generator
    generators = list(generator)
    if len(generators) != batch:
        raise ValueError(f"got {len(generators)} generators for a batch of {batch} images")
    return generators


def draw(
    kind: str,
    generator: torch.Generator | list,
    batch: int,
    shape: Sequence[int],
    device: torch.device | None = None,
) -> Tensor:
    """Random numbers ``(batch, *shape)``; each image's share from its own generator if given.

    Numbers are drawn on the generator's device (the CPU for generators made here) and
    then moved to ``device``, so results do not depend on where the defence runs.

    Args:
        kind: ``"normal"`` (standard normal) or ``"uniform"`` (on ``[0, 1)``).
        generator: One generator, or one per image (from `resolve_generator`).
        batch: Number of images.
        shape: Shape of one image's share.
        device: Where the result goes.
    """
    sampler = torch.randn if kind == "normal" else torch.rand
    if isinstance(generator, torch.Generator):
        values = sampler((batch, *shape), generator=generator, device=generator.device)
    else:
        values = torch.stack(
            [sampler(tuple(shape), generator=g, device=g.device) for g in generator]
        )
    return values.to(device) if device is not None else values


class Defence(nn.Module, abc.ABC):
    """A purification of 8-bit images: the base class of every registered defence.

    Subclasses implement `purify`; `forward` checks the input, calls it and
    rounds the result onto the 8-bit grid.

    Attributes:
        stochastic: Whether the defence draws random numbers (and so uses ``generator``).

    Shape:
        - Input: ``(B, 3, H, W)``, float in ``[0, 1]``, values ``k / 255``.
        - Output: the same shape and dtype, values ``k / 255``.
    """

    stochastic: ClassVar[bool] = False

    def forward(self, images: Tensor, generator: GeneratorArg = None) -> Tensor:
        """Purify ``images``.

        Args:
            images: Float RGB ``(B, 3, H, W)`` in ``[0, 1]`` on the 8-bit grid.
            generator: For stochastic defences: ``None`` (the defence's own seed), one
                generator, or one per image. Ignored by deterministic defences.

        Returns:
            The purified images, same shape and dtype, on the 8-bit grid.

        Raises:
            TypeError: If ``images`` is not a floating-point tensor.
            ValueError: If ``images`` is not ``(B, 3, H, W)`` in ``[0, 1]`` on the 8-bit grid.
        """
        check_images(images)
        if images.shape[0] == 0:
            return images.clone()
        with torch.no_grad():
            purified = self.purify(images, generator)
        return to_8bit_grid(purified).to(images.dtype)

    @abc.abstractmethod
    def purify(self, images: Tensor, generator: GeneratorArg) -> Tensor:
        """The defence itself, on checked input; the result is rounded by `forward`."""


DefenceFactory = Callable[..., Defence]
"""A callable building a defence from keyword arguments."""

DEFENCES: Registry[DefenceFactory] = Registry("defence")
"""Every defence, registered where it is defined (with `register_defence`)."""


def register_defence(
    name: str, *, tags: Iterable[str] = ()
) -> Callable[[DefenceFactory], DefenceFactory]:
    """Decorator registering a defence class (or factory) under ``name``.

    Args:
        name: The defence's name on the command line.
        tags: Labels: ``"slow"`` (an optimisation per image: `invprotect.evaluation.verify`
            runs it on a few images only), ``"trainable"`` (``invprotect train-defence``
            trains it).

    Raises:
        ValueError: If the name is taken or invalid.
    """
    return DEFENCES.register(name, tags=tags)
