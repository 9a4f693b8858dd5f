"""Contract tests run on every registered block (and on every subnet inside the couplings)."""

from __future__ import annotations

import functools

import pytest
import torch
from FrEIA.modules import InvertibleModule

from invprotect.blocks import create_block, list_blocks, list_subnets
from tests.contracts import (
    BlockCase,
    all_parameters_have_gradients,
    flat_log_abs_det,
    run,
    train_away_from_identity,
)
from tests.tolerances import round_trip_tolerance, summation_roundoff

_TINY = {"hidden_channels": 8}
CASES = [
    BlockCase("haar_downsampling", channels=3, side_multiple=2),
    BlockCase("haar_upsampling", channels=12),
    *(BlockCase("dsac", channels=6, hparams={"subnet": s, **_TINY}) for s in list_subnets()),
    *(
        BlockCase(
            "invertible_unet",
            channels=3,
            hparams={"subnet": s, "levels": 2, "blocks_per_level": 1, **_TINY},
            side_multiple=4,
        )
        for s in list_subnets()
    ),
]
INTEGER_CASES = [
    BlockCase("lifting_downsampling", channels=3, side_multiple=2, grid=1.0),
    BlockCase("lifting_upsampling", channels=12, grid=1.0),
    *(
        BlockCase("additive_coupling", channels=6, hparams={"subnet": s, **_TINY}, grid=1.0)
        for s in list_subnets()
    ),
    *(
        BlockCase(
            "invertible_unet",
            channels=3,
            hparams={"subnet": s, "levels": 2, "blocks_per_level": 1, "coupling": "integer"}
            | _TINY,
            side_multiple=4,
            grid=1 / 255,
        )
        for s in list_subnets()
    ),
]
CASES += INTEGER_CASES
IDS = [case.id for case in CASES]


def test_every_registered_block_and_subnet_is_covered() -> None:
    assert {case.name for case in CASES} == set(list_blocks())
    dsac_subnets = {case.hparams["subnet"] for case in CASES if case.name == "dsac"}
    assert dsac_subnets == set(list_subnets())
    additive = {case.hparams["subnet"] for case in CASES if case.name == "additive_coupling"}
    assert additive == set(list_subnets())


@functools.cache
def _trained_by_id(case_id: str) -> InvertibleModule:
    case = CASES[IDS.index(case_id)]
    torch.manual_seed(1)
    block = create_block(case.name, [(case.channels, 32, 32)], **case.hparams)
    if case.grid is None:
        train_away_from_identity(block, lambda: torch.rand(4, case.channels, 32, 32))
    else:  # integer blocks only shift: towards 8 levels up, on integer inputs
        train_away_from_identity(
            block,
            lambda: _on_grid(torch.rand(4, case.channels, 32, 32), case.grid),
            target=lambda x: x + 8 * case.grid,
        )
    return block


def _on_grid(values: torch.Tensor, grid: float | None) -> torch.Tensor:
    """``values`` in ``[0, 1]`` as 8-bit levels on ``grid`` (``k / 255`` for the U-Net)."""
    if grid is None:
        return values
    return (values * 255).round() / round(1 / grid) if grid < 1 else (values * 255).round()


def _trained(case: BlockCase) -> InvertibleModule:
    """The case's block after 20 optimiser steps away from the identity, in eval mode."""
    return _trained_by_id(case.id)


def _input(case: BlockCase, side: int, batch: int = 2, dtype=torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(side)
    values = torch.rand(batch, case.channels, side, side, generator=generator, dtype=dtype)
    return _on_grid(values, case.grid)


def _clone_in_float64(block: InvertibleModule, case: BlockCase) -> InvertibleModule:
    """A float64 copy; an integer block's is its continuous relaxation (what its gradients are)."""
    twin = create_block(case.name, [(case.channels, 32, 32)], **case.hparams)
    twin.load_state_dict(block.state_dict())
    if case.grid is not None:
        twin.rounding = False
    return twin.double().eval()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_trained_block_is_not_the_identity(case: BlockCase) -> None:
    block = _trained(case)
    x = _input(case, 32)
    with torch.no_grad():
        y, log_det = run(block, x)
    if case.grid is not None:  # volume-preserving, integers to integers
        levels = y / case.grid
        assert (levels - levels.round()).abs().max() < 1e-3
        assert torch.equal(log_det, torch.zeros(2))
        if list(block.parameters()):  # shifted by whole levels, not nothing
            assert (y - x).abs().mean() > 0.5 * case.grid
    elif list(block.parameters()):
        assert (y - x).abs().mean() > 0.05
        assert y.abs().max() < 10.0  # trained towards 2x + 0.1, not diverged
        assert log_det.abs().min() > 1.0
    else:  # Haar: fixed orthonormal transform, exact zero log-det
        assert torch.equal(log_det, torch.zeros(2))


@pytest.mark.parametrize("side", [32, 256])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_round_trip_in_eval(case: BlockCase, side: int) -> None:
    block = _trained(case)
    x = _input(case, side, batch=2 if side == 32 else 1)
    with torch.no_grad():
        y, _ = run(block, x)
        x_back, _ = run(block, y, rev=True)
    assert x_back.shape == x.shape
    if case.grid is not None:  # integers come back exactly, whatever the machine
        assert torch.equal(x_back, x)
        return
    # float32 round-off, a few ulps per coupling (measured 1-1.5 per block); a wrong inverse
    # is off by the size of the change the trained block makes (> 0.05 on average)
    tolerance = round_trip_tolerance(block, torch.cat([x.flatten(), y.flatten()]))
    assert (x_back - x).abs().max().item() <= tolerance


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_and_reverse_log_dets_cancel(case: BlockCase) -> None:
    block = _trained(case)
    x = _input(case, 32)
    with torch.no_grad():
        y, log_det_fwd = run(block, x)
        _, log_det_rev = run(block, y, rev=True)
    assert log_det_fwd.shape == (2,)
    # Each log-det sums one log-scale per element (hundreds to thousands in all): float32
    # leaves a few ulps of that total (measured 1 ulp, 2.4e-4 at 2000), so the tolerance
    # scales with it; a wrong sign or a missing term is off by the total itself.
    tolerance = summation_roundoff(log_det_fwd, x[0].numel())
    torch.testing.assert_close(log_det_fwd + log_det_rev, torch.zeros(2), atol=tolerance, rtol=0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_and_reverse_log_dets_cancel_in_float64(case: BlockCase) -> None:
    block = _clone_in_float64(_trained(case), case)
    x = _input(case, 32, dtype=torch.float64)
    with torch.no_grad():
        y, log_det_fwd = run(block, x)
        _, log_det_rev = run(block, y, rev=True)
    if list(block.parameters()) and case.grid is None:
        assert log_det_fwd.abs().min() > 1.0  # a real log-det, not a trivial zero
    tolerance = summation_roundoff(log_det_fwd, x[0].numel())  # about 1e-10 here
    torch.testing.assert_close(
        log_det_fwd + log_det_rev, torch.zeros_like(log_det_fwd), atol=tolerance, rtol=0
    )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_log_det_matches_autograd_jacobian(case: BlockCase) -> None:
    block = _clone_in_float64(_trained(case), case)
    side = max(case.side_multiple, 2)
    x = _input(case, side, batch=1, dtype=torch.float64)
    _, log_det = run(block, x)
    expected = flat_log_abs_det(lambda t: run(block, t)[0], x)
    torch.testing.assert_close(log_det[0], expected, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradcheck_in_float64(case: BlockCase) -> None:
    block = _clone_in_float64(_trained(case), case)
    side = max(case.side_multiple, 2)
    x = _input(case, side, batch=1, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: run(block, t), (x,), eps=1e-6, atol=1e-5, fast_mode=True
    )
    y = run(block, x)[0].detach().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: run(block, t, rev=True), (y,), eps=1e-6, atol=1e-5, fast_mode=True
    )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_parameter_and_the_input_receive_gradients(case: BlockCase) -> None:
    block = _trained(case)
    for rev in (False, True):
        block.zero_grad()
        x = _input(case, 32)
        if rev:  # the reverse pass takes an output-shaped tensor
            with torch.no_grad():
                x = run(block, x)[0]
        x.requires_grad_()
        y, log_det = run(block, x, rev=rev)
        (y.square().mean() + log_det.mean()).backward()
        assert all_parameters_have_gradients(block) == []
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_inputs_are_not_modified(case: BlockCase) -> None:
    block = _trained(case)
    x = _input(case, 32)
    x_copy = x.clone()
    with torch.no_grad():
        y, _ = run(block, x)
        y_copy = y.clone()
        run(block, y, rev=True)
    assert torch.equal(x, x_copy)
    assert torch.equal(y, y_copy)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_output_dims_match_the_real_output(case: BlockCase) -> None:
    block = _trained(case)
    x = _input(case, 32)
    with torch.no_grad():
        y, _ = run(block, x)
    assert [tuple(y.shape[1:])] == block.output_dims([tuple(x.shape[1:])])
