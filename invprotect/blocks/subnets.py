"""Subnet constructors for coupling blocks, resolvable by name.

A subnet constructor is a callable ``(c_in, c_out) -> nn.Module`` mapping
``(B, c_in, H, W)`` to ``(B, c_out, H, W)``. Subnets need not be invertible. Every
subnet here zero-initialises its last layer, so a coupling block built from it
starts as the identity.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from invprotect._registry import Registry

SubnetConstructor = Callable[[int, int], nn.Module]
"""Type of a subnet constructor: ``(c_in, c_out) -> nn.Module``."""

_SUBNETS: Registry[Callable[..., nn.Module]] = Registry("subnet")


def _zero_conv(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


@_SUBNETS.register("resnet_sn")
class SpectralResidualSubnet(nn.Module):
    """Residual block with spectral normalisation, the paper's default subnet.

    ``conv3x3 -> LeakyReLU -> [conv3x3 -> LeakyReLU -> conv3x3] + skip -> LeakyReLU ->
    conv3x3``. The hidden convolutions are spectrally normalised (largest singular
    value about 1, which keeps the coupling's scale and shift smooth). The last
    convolution is plain and zero-initialised: spectral normalisation of an all-zero
    weight would divide by zero.

    Spectral normalisation runs one power iteration per call in ``train()`` mode,
    which changes the effective weights between calls; in ``eval()`` mode the
    weights are fixed, so exact inversion is only guaranteed in ``eval()``.

    Args:
        c_in: Input channels.
        c_out: Output channels.
        hidden_channels: Width of the hidden layers.
        negative_slope: Slope of the LeakyReLU for negative inputs.
    """

    def __init__(
        self, c_in: int, c_out: int, hidden_channels: int = 64, negative_slope: float = 0.2
    ) -> None:
        super().__init__()
        _check_channels(c_in, c_out, hidden_channels)
        self.conv_in = spectral_norm(nn.Conv2d(c_in, hidden_channels, 3, padding=1))
        self.res_a = spectral_norm(nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1))
        self.res_b = spectral_norm(nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1))
        self.conv_out = _zero_conv(hidden_channels, c_out)
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, c_in, H, W)`` to ``(B, c_out, H, W)``."""
        h = self.act(self.conv_in(x))
        h = self.act(h + self.res_b(self.act(self.res_a(h))))
        return self.conv_out(h)


@_SUBNETS.register("conv")
class ConvSubnet(nn.Module):
    """Plain three-layer convolutional subnet without normalisation.

    ``conv3x3 -> LeakyReLU -> conv3x3 -> LeakyReLU -> conv3x3``, the last layer
    zero-initialised. Cheaper than `SpectralResidualSubnet` and unaffected by
    ``train()``/``eval()``.

    Args:
        c_in: Input channels.
        c_out: Output channels.
        hidden_channels: Width of the hidden layers.
        negative_slope: Slope of the LeakyReLU for negative inputs.
    """

    def __init__(
        self, c_in: int, c_out: int, hidden_channels: int = 64, negative_slope: float = 0.2
    ) -> None:
        super().__init__()
        _check_channels(c_in, c_out, hidden_channels)
        self.layers = nn.Sequential(
            nn.Conv2d(c_in, hidden_channels, 3, padding=1),
            nn.LeakyReLU(negative_slope),
            nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1),
            nn.LeakyReLU(negative_slope),
            _zero_conv(hidden_channels, c_out),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, c_in, H, W)`` to ``(B, c_out, H, W)``."""
        return self.layers(x)


def _check_channels(c_in: int, c_out: int, hidden_channels: int) -> None:
    for name, value in (("c_in", c_in), ("c_out", c_out), ("hidden_channels", hidden_channels)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"subnet {name} must be a positive int, got {value!r}")


def list_subnets(pattern: str = "*") -> list[str]:
    """Names of the registered subnets matching the shell-style ``pattern``."""
    return _SUBNETS.names(pattern)


def is_subnet(name: str) -> bool:
    """Whether ``name`` is a registered subnet."""
    return _SUBNETS.is_registered(name)


def create_subnet(name: str, c_in: int, c_out: int, **kwargs: Any) -> nn.Module:
    """Build the subnet registered as ``name``; keyword arguments that are ``None`` are dropped.

    Example:
        >>> import torch
        >>> net = create_subnet("conv", 6, 12, hidden_channels=16)
        >>> net(torch.zeros(1, 6, 8, 8)).shape
        torch.Size([1, 12, 8, 8])
    """
    return _SUBNETS.create(name, c_in, c_out, **kwargs)


def register_subnet(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a subnet constructor ``(c_in, c_out, **kwargs) -> nn.Module``.

    Raises:
        ValueError: If the name is taken.
    """
    return _SUBNETS.register(name)


def subnet_constructor(subnet: str | SubnetConstructor, **kwargs: Any) -> SubnetConstructor:
    """Resolve a subnet name (or pass through a callable) to a ``(c_in, c_out)`` constructor.

    Args:
        subnet: A registered name or a constructor ``(c_in, c_out) -> nn.Module``.
        **kwargs: Bound to the registered constructor (``None`` values dropped); not
            allowed with a callable, which must already carry its settings.

    Raises:
        UnknownNameError: For an unregistered name (the message lists close matches).
        ValueError: If keyword arguments are given with a callable.
    """
    if isinstance(subnet, str):
        factory = _SUBNETS.get(subnet)
        bound = {key: value for key, value in kwargs.items() if value is not None}
        return functools.partial(factory, **bound)
    if not callable(subnet):
        raise ValueError(f"subnet must be a registered name or a callable, got {subnet!r}")
    if any(value is not None for value in kwargs.values()):
        raise ValueError(
            f"subnet options {sorted(kwargs)} apply only to a registered name; "
            "bind them into the callable instead"
        )
    return subnet
