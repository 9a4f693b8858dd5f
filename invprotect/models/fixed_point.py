"""A fixed-point twin of the invertible U-Net that gives the same bits on every machine.

Exact recovery needs the protecting and the recovering machine to compute the same
prediction, down to the last bit that decides a rounding. A float network does not: a
convolution's sum runs in another order on another CPU (AVX-512, AVX2 or scalar
kernels, other blockings, other thread counts) or on a GPU, and its last bits differ.
`FixedPointUNet` computes the network's forward and inverse passes so that they do not:

- Every convolution runs on integers. Its input is scaled per image by a power of two
  and rounded to integers of at most `ACTIVATION_BITS` bits; its weights are rounded
  per output channel to integers whose absolute values add up to at most
  ``2 ** (24 - ACTIVATION_BITS)``. A float32 convolution of such integers is exact.
- Everything else is a single IEEE-754 operation per element, in a fixed order (adds,
  subtractions, products, the Haar transform written as sums of pairs, leaky ReLU),
  or an exact one (the per-image maximum, ``frexp``, products by powers of two,
  rounding), or a look-up in a table of ``exp(clamp * tanh(raw / clamp))`` built
  from IEEE operations on float64 (`scale_table`).

Proof that two machines give the same bits. Assume IEEE-754 binary32 tensors whose
elementwise operations round each result once to nearest-even (true of PyTorch's CPU
kernels, vectorised or scalar, and of its CUDA kernels), and a convolution backend that
computes each output as a sum of the products of its inputs, in any order and
grouping, with or without fused multiply-adds (`exact_backends` selects such backends:
oneDNN's direct convolution, never NNPACK's Winograd or FFT, never TF32 or bfloat16).

1. *Convolutions are exact.* Let ``|X| <= 2 ** b`` be the integer inputs and ``W`` the
   integer weights of one output channel with ``sum |W| <= 2 ** (24 - b)``. Every
   product ``W_k X_k`` and every partial sum of any subset of them is an integer of
   magnitude at most ``sum |W_k| |X_k| <= 2 ** 24``. Every integer of that magnitude is
   a float32, so no addition or product (fused or not) rounds, and the result is the
   exact integer sum, whatever the order, blocking, vector width or thread count.
2. *Scaling is exact.* The exponent ``e`` of the per-image maximum ``m = max |x|``
   (``frexp``: ``m < 2 ** e``) is exact, so ``|x * 2 ** (b - e)| < 2 ** b``; the
   product by a power of two is exact (or, for values far below the rounding step,
   underflows to a number that rounds to 0 either way), and rounding to an integer is
   exact. The clamp to ``[-2 ** b, 2 ** b]`` keeps step 1's bound even for infinite
   inputs (weights and inputs are assumed finite, as any trained network's are).
3. *Everything else rounds once, identically.* Each remaining operation is one
   correctly rounded IEEE operation of inputs that are, by induction, the same bits on
   both machines, or a table look-up at an index computed exactly from them. The table
   itself comes from float64 additions, products, quotients, ``rint`` and ``ldexp`` in
   a fixed order, then one rounding to float32: the same bits everywhere.

By induction over the layers every tensor, hence the output, is bit for bit the same
on every machine, for any batch size and thread count: the prediction that recovery
rounds needs no margin and no stored tie-breaks. The price is that the twin is a
slightly different function from the float network (each convolution's relative
error is about ``1e-3``); the protected file is what the twin's forward pass gives, so
recovery inverts exactly the function that protected.

The twin's arithmetic (the bit widths, how weights and scales are rounded, the order of
every operation) is part of the record format (`invprotect.models.exact`, coding 1):
files protected by one twin recover only with the same twin, so a change to any of it
needs a new coding number, with the old twin kept for the old files.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from invprotect.blocks.coupling import DSACBlock
from invprotect.blocks.haar import HaarDownsampling, HaarUpsampling
from invprotect.blocks.integer import (
    SHIFT_LIMIT,
    AdditiveCouplingBlock,
    LiftingDownsampling,
    LiftingUpsampling,
    lifting_analysis,
    lifting_synthesis,
)
from invprotect.blocks.subnets import ConvSubnet, SpectralResidualSubnet
from invprotect.blocks.unet import InvertibleUNet

ACTIVATION_BITS = 12
"""Integer bits of a convolution's input (the weights get ``24 -`` this, minus their fan-in)."""
SCALE_STEP_BITS = 12
"""The raw log-scale is rounded to multiples of ``2 ** -SCALE_STEP_BITS`` before the table."""
_MAX_TABLE = 2**21
_EXPONENT_LIMIT = 40


class UnsupportedNetworkError(ValueError):
    """The network holds a block or subnet the fixed-point twin does not implement."""


def supports(network: nn.Module) -> bool:
    """Whether `FixedPointUNet` can mirror ``network`` (an `InvertibleUNet` of known parts)."""
    try:
        FixedPointUNet.check(network)
    except UnsupportedNetworkError:
        return False
    return True


@contextlib.contextmanager
def exact_backends(device: torch.device) -> Iterator[None]:
    """Select convolution backends that sum products of their inputs, full float32.

    On the CPU: oneDNN's direct convolution in IEEE float32 (not bfloat16 or TF32),
    NNPACK (Winograd and FFT convolutions) off. On CUDA: cuDNN off (its Winograd and
    FFT algorithms and TF32), so PyTorch's own im2col and cuBLAS matrix products run,
    with TF32 off. The previous settings come back on exit.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.backends.nnpack.flags(enabled=False))
        stack.enter_context(torch.backends.mkldnn.flags(True, None, None, fp32_precision="ieee"))
        settings = [(torch.backends.mkldnn.conv, "fp32_precision", "ieee")]
        if device.type == "cuda":
            stack.enter_context(torch.backends.cudnn.flags(enabled=False))
            settings.append((torch.backends.cuda.matmul, "allow_tf32", False))
        for owner, name, value in settings:
            stack.callback(setattr, owner, name, getattr(owner, name))
            setattr(owner, name, value)
        yield


def _exp(x: np.ndarray) -> np.ndarray:
    """``exp`` of float64 values in ``[-700, 700]`` from IEEE operations in a fixed order."""
    k = np.rint(x * 1.4426950408889634)
    r = (x - k * 0.6931471803691238) - k * 1.9082149292705877e-10  # ln 2 in two parts
    p = np.ones_like(r)
    for n in range(17, 0, -1):  # Taylor series, |r| <= 0.35: error below 1e-17
        p = p * r / n + 1.0
    return np.ldexp(p, k.astype(np.int64))


def scale_table(clamp: float) -> tuple[int, Tensor, Tensor]:
    """The coupling scales ``exp(s)``, ``s = clamp * tanh(raw / clamp)``, and their inverses.

    Entry ``i`` (for ``i`` in ``[-n, n]``, negative ``i`` at the end, as Python indexes)
    is the scale at ``raw = i * 2 ** -step``. Past ``|raw| = 8 * clamp`` the scale is
    within ``1e-6`` of its limit, so larger values use the last entry.

    Returns:
        ``(step, scales, inverse_scales)``: ``step`` bits, float32 tables of ``2n + 1``.
    """
    reach = 8.0 * clamp
    step = SCALE_STEP_BITS
    while step > 0 and 2 * reach * 2**step > _MAX_TABLE:
        step -= 1
    n = math.ceil(reach * 2**step)
    index = np.concatenate([np.arange(0, n + 1), np.arange(-n, 0)]).astype(np.float64)
    raw = index / 2**step
    twice = _exp(np.clip(2.0 * (raw / clamp), -700.0, 700.0))
    log_scale = clamp * (1.0 - 2.0 / (twice + 1.0))
    scales = _exp(log_scale)
    return (
        step,
        torch.from_numpy(scales.astype(np.float32)),
        torch.from_numpy((1.0 / scales).astype(np.float32)),
    )


def _powers_of_two(exponents: Tensor) -> Tensor:
    """``2.0 ** exponents`` as float32, exactly, for integer exponents in ``[-126, 127]``."""
    return ((exponents.to(torch.int32) + 127) << 23).view(torch.float32)


def _effective_weight(conv: nn.Conv2d) -> tuple[np.ndarray, np.ndarray]:
    """The weight and bias a convolution applies in ``eval()``, float64, the same everywhere.

    For a spectrally normalised weight, ``sigma = sum u_i W_ij v_j`` is summed with
    ``math.fsum`` (correctly rounded), so no BLAS order enters.
    """
    bias = np.zeros(conv.out_channels) if conv.bias is None else conv.bias.detach().cpu().double()
    if not hasattr(conv, "parametrizations"):
        return conv.weight.detach().cpu().double().numpy(), np.asarray(bias, np.float64)
    norm = conv.parametrizations.weight[0]
    weight = conv.parametrizations.weight.original.detach().cpu().double().numpy()
    matrix = weight.reshape(weight.shape[0], -1)
    v = norm._v.detach().cpu().double().numpy()
    u = norm._u.detach().cpu().double().numpy()
    sigma = math.fsum((u[:, None] * matrix * v[None, :]).ravel())  # u_i W_ij v_j, one sum
    return weight / sigma, np.asarray(bias, np.float64)


class _IntegerConv:
    """A 3x3 convolution on integers (see the module docstring, steps 1 and 2)."""

    def __init__(self, conv: nn.Conv2d, device: torch.device) -> None:
        weight, bias = _effective_weight(conv)
        budget = 2 ** (24 - ACTIVATION_BITS)
        rows = weight.reshape(weight.shape[0], -1)
        # sum |w| per row, to choose each row's exponent: in integers, exact in any order
        scaled = np.rint(np.ldexp(np.minimum(np.abs(rows), 2.0**16), 30)).astype(np.int64)
        total = scaled.sum(axis=1) * 2.0**-30
        ratio = budget / np.where(total > 0, total, 1.0)
        exponents = np.where(total > 0, np.frexp(ratio)[1], _EXPONENT_LIMIT)
        exponents = np.minimum(exponents, _EXPONENT_LIMIT)
        while True:
            quantised = np.rint(np.ldexp(rows, exponents[:, None]))
            over = np.abs(quantised).sum(axis=1) > budget  # integers: exact in any order
            if not over.any():
                break
            exponents = exponents - over
            if exponents.min() < -_EXPONENT_LIMIT:
                raise UnsupportedNetworkError(f"convolution weights too large ({total.max():.3g})")
        self.weight = (
            torch.from_numpy(quantised.reshape(weight.shape).astype(np.float32))
            .to(device)
            .contiguous(memory_format=torch.channels_last)
        )
        self.exponents = torch.from_numpy(exponents.astype(np.int32)).to(device)
        self.bias = torch.from_numpy(bias.astype(np.float32)).to(device)[None, :, None, None]

    def __call__(self, x: Tensor) -> Tensor:
        # max |x| without an |x| tensor: the same value, in two reads instead of a write and a read
        peak = torch.maximum(x.amax(dim=(1, 2, 3)), x.amin(dim=(1, 2, 3)).neg())
        exponent = torch.frexp(peak).exponent.clamp(-_EXPONENT_LIMIT, _EXPONENT_LIMIT)
        shift = ACTIVATION_BITS - exponent
        limit = float(2**ACTIVATION_BITS)
        integers = (x * _powers_of_two(shift)[:, None, None, None]).round_().clamp_(-limit, limit)
        out = F.conv2d(integers, self.weight, padding=1)
        scale = _powers_of_two(-(shift[:, None] + self.exponents[None, :]))
        return out.mul_(scale[:, :, None, None]).add_(self.bias)


class _Subnet:
    """`SpectralResidualSubnet` or `ConvSubnet` on integer convolutions."""

    def __init__(self, subnet: nn.Module, device: torch.device) -> None:
        if isinstance(subnet, SpectralResidualSubnet):
            layers = [subnet.conv_in, subnet.res_a, subnet.res_b, subnet.conv_out]
            self.slope = float(subnet.act.negative_slope)
        else:
            layers = [subnet.layers[0], subnet.layers[2], subnet.layers[4]]
            self.slope = float(subnet.layers[1].negative_slope)
        self.residual = isinstance(subnet, SpectralResidualSubnet)
        self.convs = [_IntegerConv(layer, device) for layer in layers]

    def __call__(self, x: Tensor) -> Tensor:
        if self.residual:
            conv_in, res_a, res_b, conv_out = self.convs
            h = F.leaky_relu(conv_in(x), self.slope, inplace=True)
            inner = F.leaky_relu(res_a(h), self.slope, inplace=True)
            h = F.leaky_relu(h + res_b(inner), self.slope, inplace=True)
            return conv_out(h)
        first, second, third = self.convs
        h = F.leaky_relu(first(x), self.slope, inplace=True)
        return third(F.leaky_relu(second(h), self.slope, inplace=True))


def haar_analysis(x: Tensor) -> Tensor:
    """`invprotect.blocks.haar.haar_analysis` as sums of pairs in a fixed order."""
    a, b = x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]
    c, d = x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]
    top_sum, bottom_sum, top_diff, bottom_diff = a + b, c + d, a - b, c - d
    bands = [
        top_sum + bottom_sum,
        top_sum - bottom_sum,
        top_diff + bottom_diff,
        top_diff - bottom_diff,
    ]
    return torch.cat(bands, dim=1).mul_(0.5)


def haar_synthesis(y: Tensor) -> Tensor:
    """`invprotect.blocks.haar.haar_synthesis` as sums of pairs in a fixed order."""
    low, horizontal, vertical, diagonal = y.chunk(4, dim=1)
    upper, lower = low + horizontal, low - horizontal
    left, right = vertical + diagonal, vertical - diagonal
    batch, channels, height, width = low.shape
    out = torch.empty(
        batch, channels, 2 * height, 2 * width, dtype=y.dtype, device=y.device
    ).contiguous(memory_format=torch.channels_last)
    out[:, :, 0::2, 0::2] = upper + left
    out[:, :, 0::2, 1::2] = upper - left
    out[:, :, 1::2, 0::2] = lower + right
    out[:, :, 1::2, 1::2] = lower - right
    return out.mul_(0.5)


class FixedPointUNet:
    """The forward and inverse passes of an `InvertibleUNet`, the same bits on every machine.

    Built once from a network in ``eval()`` mode (its weights are rounded then); see the
    module docstring for how and why. For an integer network (``coupling="integer"``)
    every tensor between the roundings holds integers, each step adds or subtracts
    integers (exact in float32 below ``2 ** 24``, which `SHIFT_LIMIT` keeps), and the
    shifts are the subnets' outputs on integer convolutions, rounded: so the inverse
    of the forward pass of an 8-bit image is that image exactly (`lossless`).

    Args:
        network: The invertible U-Net (DSAC blocks with ``resnet_sn`` or ``conv`` subnets).
        device: Where to compute (default: the network's).

    Raises:
        UnsupportedNetworkError: For another network or subnet (`supports` tells first).
    """

    def __init__(self, network: nn.Module, device: torch.device | None = None) -> None:
        self.check(network)
        assert isinstance(network, InvertibleUNet)
        self.device = device or next(network.parameters()).device
        self.lossless = network.integer
        self.steps: list[tuple[int, _Subnet, _Subnet] | tuple[int, float, _Subnet, _Subnet] | str]
        self.steps = []
        clamps = set()
        for block in network.blocks:
            if isinstance(block, HaarDownsampling):
                self.steps.append("down")
            elif isinstance(block, HaarUpsampling):
                self.steps.append("up")
            elif isinstance(block, LiftingDownsampling):
                self.steps.append("lift down")
            elif isinstance(block, LiftingUpsampling):
                self.steps.append("lift up")
            elif isinstance(block, AdditiveCouplingBlock):
                subnets = (_Subnet(block.subnet1, self.device), _Subnet(block.subnet2, self.device))
                self.steps.append((block.split_len, block.unit, *subnets))
            else:
                subnets = (_Subnet(block.subnet1, self.device), _Subnet(block.subnet2, self.device))
                self.steps.append((block.split_len, *subnets))
                clamps.add(block.clamp)
        (clamp,) = clamps or {2.0}
        self.step, scales, inverse = scale_table(clamp)
        self.scales, self.inverse_scales = scales.to(self.device), inverse.to(self.device)

    @staticmethod
    def check(network: nn.Module) -> None:
        """Raise `UnsupportedNetworkError` unless the twin implements every part of ``network``."""
        if not isinstance(network, InvertibleUNet):
            raise UnsupportedNetworkError(f"not an InvertibleUNet: {type(network).__name__}")
        clamps = {block.clamp for block in network.blocks if isinstance(block, DSACBlock)}
        if len(clamps) > 1:
            raise UnsupportedNetworkError(f"DSAC blocks with different clamps {sorted(clamps)}")
        for block in network.blocks:
            if isinstance(
                block, HaarDownsampling | HaarUpsampling | LiftingDownsampling | LiftingUpsampling
            ):
                continue
            if not isinstance(block, DSACBlock | AdditiveCouplingBlock):
                raise UnsupportedNetworkError(f"unknown block {type(block).__name__}")
            for subnet in (block.subnet1, block.subnet2):
                if not isinstance(subnet, SpectralResidualSubnet | ConvSubnet):
                    raise UnsupportedNetworkError(f"unknown subnet {type(subnet).__name__}")
                for conv in subnet.modules():
                    if isinstance(conv, nn.Conv2d) and not _plain_3x3(conv):
                        raise UnsupportedNetworkError(f"unsupported convolution {conv}")

    def _scale(self, raw: Tensor, table: Tensor) -> Tensor:
        n = (table.numel() - 1) // 2
        index = raw.mul(2.0**self.step).round_().clamp_(-n, n).to(torch.int64)
        return table[index]

    def _shift(self, subnet: _Subnet, x: Tensor, unit: float) -> Tensor:
        """An additive coupling's rounded shift (`AdditiveCouplingBlock`)."""
        return (subnet(x * unit) / unit).clamp_(-SHIFT_LIMIT, SHIFT_LIMIT).round_()

    def _enter(self, x: Tensor) -> Tensor:
        x = x.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)
        return x.mul(255.0).round_() if self.lossless else x

    def _leave(self, x: Tensor) -> Tensor:
        return x / 255.0 if self.lossless else x

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """The protected images (unclipped) of float32 images ``(B, C, H, W)``."""
        return self.forward_checked(x)[0]

    @torch.no_grad()
    def forward_checked(self, x: Tensor) -> tuple[Tensor, bool]:
        """`forward`, and whether every value stayed an exact float32 integer.

        For an integer network (`lossless`) the second value is whether every tensor
        between the steps stayed below ``2 ** 24`` in magnitude, where float32 holds every
        integer: then the inverse of the output is the input exactly. (A trained network
        stays far below; a pathological one may not.) Always ``True`` for a DSAC network.
        """
        x = self._enter(x)
        exact = True
        with exact_backends(self.device):
            for step in self.steps:
                if self.lossless:
                    exact = exact and bool(torch.maximum(x.amax(), x.amin().neg()) < 2.0**24)
                if step == "down":
                    x = haar_analysis(x)
                elif step == "up":
                    x = haar_synthesis(x)
                elif step == "lift down":
                    x = lifting_analysis(x)
                elif step == "lift up":
                    x = lifting_synthesis(x)
                elif len(step) == 4:
                    split, unit, first, second = step
                    a, b = x[:, :split], x[:, split:]
                    a = a + self._shift(first, b, unit)
                    b = b + self._shift(second, a, unit)
                    x = torch.cat([a, b], dim=1)
                else:
                    split, first, second = step
                    a, b = x[:, :split], x[:, split:]
                    raw, shift = first(b).chunk(2, dim=1)
                    a = a * self._scale(raw, self.scales) + shift
                    raw, shift = second(a).chunk(2, dim=1)
                    b = b * self._scale(raw, self.scales) + shift
                    x = torch.cat([a, b], dim=1)
        if self.lossless:
            exact = exact and bool(torch.maximum(x.amax(), x.amin().neg()) < 2.0**24)
        return self._leave(x), exact

    @torch.no_grad()
    def inverse(self, y: Tensor) -> Tensor:
        """The recovered images (unclipped) of float32 protected images ``(B, C, H, W)``."""
        y = self._enter(y)
        with exact_backends(self.device):
            for step in reversed(self.steps):
                if step == "down":
                    y = haar_synthesis(y)
                elif step == "up":
                    y = haar_analysis(y)
                elif step == "lift down":
                    y = lifting_synthesis(y)
                elif step == "lift up":
                    y = lifting_analysis(y)
                elif len(step) == 4:
                    split, unit, first, second = step
                    a, b = y[:, :split], y[:, split:]
                    b = b - self._shift(second, a, unit)
                    a = a - self._shift(first, b, unit)
                    y = torch.cat([a, b], dim=1)
                else:
                    split, first, second = step
                    a, b = y[:, :split], y[:, split:]
                    raw, shift = second(a).chunk(2, dim=1)
                    b = (b - shift) * self._scale(raw, self.inverse_scales)
                    raw, shift = first(b).chunk(2, dim=1)
                    a = (a - shift) * self._scale(raw, self.inverse_scales)
                    y = torch.cat([a, b], dim=1)
        return self._leave(y)


def _plain_3x3(conv: nn.Conv2d) -> bool:
    return (
        conv.kernel_size == (3, 3)
        and conv.padding == (1, 1)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )
