"""Tolerances derived from the quantity compared, so that tests hold on any CPU's float paths.

Another CPU (AVX-512 instead of AVX2, another oneDNN kernel, another summation order) changes
float32 results by a few units in the last place (ulps) of the values involved. A fixed
absolute tolerance that is tight for values near 1 is then too tight for values in the
hundreds. These helpers scale the tolerance with the magnitude and the dtype's epsilon, and
leave a margin of an order of magnitude over what was measured, while staying orders of
magnitude below the errors a real bug gives (a wrong sign, a missing term: errors of the
size of the values themselves).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from invprotect.blocks import DSACBlock

ULPS_PER_COUPLING = 16
"""Round-off allowed per coupling of a round trip, in ulps of the largest value.

Measured here (AMD EPYC, AVX2 and ``ATEN_CPU_CAPABILITY=avx2``): 1-1.5 ulps for one
coupling block, 2 ulps for the 18 couplings of the ``cpu`` preset, 5-10 ulps for the 30 of
the ``paper`` preset; errors grow more slowly than the depth.
"""


def roundoff(reference: Tensor, ulps: float) -> float:
    """``ulps`` units of round-off at the largest magnitude of ``reference`` (at least 1).

    Args:
        reference: The values whose round-off is allowed (their dtype sets epsilon).
        ulps: How many units in the last place are allowed.

    Returns:
        An absolute tolerance.
    """
    largest = max(1.0, reference.detach().abs().max().item())
    return ulps * torch.finfo(reference.dtype).eps * largest


def summation_roundoff(total: Tensor, terms: int, ulps: float = 4.0) -> float:
    """Round-off of a sum of ``terms`` values of one sign that add up to about ``total``.

    PyTorch sums in a cascade (blocks of partial sums), so the error grows with
    ``log2(terms)`` ulps of the total, not with ``terms``; ``ulps`` more per level cover
    the recomputation of each term in a reverse pass.
    """
    return roundoff(total, ulps * max(1.0, math.log2(terms)))


def couplings(module: nn.Module) -> int:
    """The number of coupling blocks in ``module`` (at least 1)."""
    return max(1, sum(isinstance(m, DSACBlock) for m in module.modules()))


def round_trip_tolerance(module: nn.Module, reference: Tensor) -> float:
    """Round-off allowed for ``inverse(forward(x))`` through ``module``'s couplings.

    ``reference`` is the larger of input and output (the values the couplings carry).
    """
    return roundoff(reference, ULPS_PER_COUPLING * couplings(module))
