"""The attack contract shared by every entry of the attack registry."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from invprotect._registry import Registry
from invprotect.attacks._checks import check_images, check_params

AttackParams = dict[str, Tensor]
"""Per-sample parameters of one attack call: each value has one row per sample."""

GradientKind = Literal["exact", "surrogate", "straight-through", "mixed"]
"""How an attack's backward pass relates to its forward pass.

* ``"exact"``: the true derivative of the forward function (almost everywhere).
* ``"surrogate"``: the derivative of a smooth stand-in used in the forward pass too (for
  example a cubic approximation of rounding), so forward and backward agree with each
  other but only approximate the real operation.
* ``"straight-through"``: the forward pass is the real, non-differentiable operation and
  the backward pass treats it as the identity.
* ``"mixed"``: a weighted sum of attacks whose gradients are of different kinds.
"""


class Attack(nn.Module, abc.ABC):
    """Base class of a differentiable attack with replayable random parameters.

    An attack maps a batch of images ``(B, C, H, W)``, float in ``[0, 1]``, to a batch of
    the same shape and dtype, clamped to ``[0, 1]``. Its randomness lives entirely in
    per-sample parameters: `sample_params` draws them from the ranges given at
    construction with a `torch.Generator`, and `forward` with the same
    parameters gives the same output (replay). Subclasses set `param_names` and
    `gradient` and implement `_sample` and `apply_params`; fixed
    tensors (tables, masks) are registered as non-persistent buffers, so they follow
    ``.to(device)`` without entering checkpoints.

    The final clamp to ``[0, 1]`` passes the gradient inside the range, boundaries
    included, and blocks it strictly outside. Inputs in ``float16``/``bfloat16`` are
    computed in ``float32`` and cast back at the end.

    Shape:
        - Input: ``(B, C, H, W)``.
        - Output: ``(B, C, H, W)``, same dtype and device.
    """

    param_names: ClassVar[tuple[str, ...]] = ()
    """Keys of the dict returned by `sample_params`."""

    gradient: ClassVar[GradientKind] = "exact"
    """What the backward pass computes; see `GradientKind`."""

    rgb_only: ClassVar[bool] = False
    """Whether the attack needs three-channel RGB input (the JPEG attacks)."""

    def sample_params(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> AttackParams:
        """Draw one set of parameters per sample.

        The values are drawn on the generator's device (the CPU when ``generator`` is
        ``None``, which uses torch's global generator) and then moved to ``device``, so a
        CPU generator with a given seed gives the same parameters whatever the device of
        the images.

        Args:
            batch_size: Number of samples.
            generator: Source of randomness; ``None`` uses torch's global generator.
            device: Where the returned tensors live (default: the CPU).

        Returns:
            A dict with the keys `param_names`, each a tensor with ``batch_size`` rows.

        Raises:
            ValueError: If ``batch_size`` is negative.
        """
        if not isinstance(batch_size, int) or batch_size < 0:
            raise ValueError(
                f"{type(self).__name__}: batch_size must be an int >= 0; received {batch_size!r}"
            )
        source = generator.device if generator is not None else torch.device("cpu")
        params = self._sample(batch_size, generator, source)
        target = torch.device("cpu") if device is None else torch.device(device)
        return {key: value.to(target) for key, value in params.items()}

    def forward(
        self,
        x: Tensor,
        params: AttackParams | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Attack ``x``, with ``params`` if given, else with freshly sampled parameters.

        Args:
            x: Images ``(B, C, H, W)``, float in ``[0, 1]``.
            params: Per-sample parameters from `sample_params`; ``None`` samples them.
            generator: Used only when ``params`` is ``None``.

        Returns:
            The attacked images, same shape and dtype as ``x``, in ``[0, 1]``.

        Raises:
            TypeError: If ``x`` is not a tensor.
            ValueError: If ``x`` is not a floating ``(B, C, H, W)`` batch (RGB where
                required) or ``params`` does not match `param_names` and the batch.
        """
        owner = type(self).__name__
        check_images(owner, x, rgb=self.rgb_only)
        if params is None:
            params = self.sample_params(x.shape[0], generator, x.device)
        else:
            check_params(owner, params, self.param_names, x.shape[0])
            params = {key: value.to(x.device) for key, value in params.items()}
        return self.apply_params(x, params)

    @abc.abstractmethod
    def apply_params(self, x: Tensor, params: AttackParams) -> Tensor:
        """Apply the attack with validated parameters (called by `forward`).

        Implementations call the attack's functional op, which computes low-precision
        inputs in ``float32``, clamps to ``[0, 1]`` and casts back to the input dtype.

        Args:
            x: Images ``(B, C, H, W)``, already checked.
            params: Parameters on ``x``'s device, already checked.

        Returns:
            The attacked images, same shape and dtype as ``x``, in ``[0, 1]``.
        """

    def _sample(
        self, batch_size: int, generator: torch.Generator | None, device: torch.device
    ) -> AttackParams:
        """Draw the parameters on ``device`` (the generator's); default: no parameters."""
        return {}


AttackFactory = Callable[..., Attack]
"""An attack class or factory: ``(**hparams) -> Attack``."""

ATTACKS: Registry[AttackFactory] = Registry("attack")
"""Every attack, registered where it is defined (with `register_attack`)."""


def register_attack(
    name: str, *, tags: Iterable[str] = ()
) -> Callable[[AttackFactory], AttackFactory]:
    """Decorator registering an `invprotect.attacks.Attack` subclass under ``name``.

    Args:
        name: The attack's name.
        tags: Labels; ``"jpeg_method"`` marks the JPEG simulations `pseudo_jpeg` can mix.

    Raises:
        ValueError: If the name is taken or invalid.
    """
    return ATTACKS.register(name, tags=tags)
