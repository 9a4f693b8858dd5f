"""Integer networks: protection in one pass, records that hold the overflow alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from invprotect.data import load_image_set, scan_image_folder
from invprotect.models import RAEG
from invprotect.models.exact import ExactCodec
from tests.contracts import train_away_from_identity


@pytest.fixture(scope="module")
def raeg() -> RAEG:
    """The ``cpu-32-integer`` preset trained towards ``1.2 x - 0.1``: it changes every
    image by several levels and pushes dark and bright pixels past 0 and 255."""
    torch.manual_seed(0)
    model = RAEG.from_preset("cpu-32-integer")
    train_away_from_identity(
        model.generator,
        lambda: torch.randint(0, 256, (4, 3, 32, 32)).float() / 255,
        forward=model.generate,
        target=lambda x: 1.2 * x - 0.1,
    )
    return model.eval()


@pytest.fixture(scope="module")
def originals(cifar10_root: Path) -> torch.Tensor:
    index = scan_image_folder(cifar10_root / "test")
    index.samples = index.samples[::500]  # 20 images, 2 per class
    return load_image_set(index).images


def test_protection_runs_the_network_once_and_recovers_bit_for_bit(
    raeg: RAEG, originals: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    codec = ExactCodec(raeg)
    assert codec.twin is not None and codec.twin.lossless

    def no_inverse(_: torch.Tensor) -> torch.Tensor:
        raise AssertionError("protection ran the inverse pass")

    with monkeypatch.context() as patch:
        patch.setattr(codec.twin, "inverse", no_inverse)
        protected, records = codec.encode(originals)
    changed = (protected.float() - originals.float()).abs()
    assert changed.mean() > 2.0  # several levels: a real protection, not the identity
    levels = codec.protected_levels(originals)
    assert ((levels < 0) | (levels > 255)).any()  # overflow is covered
    # the same bytes as the residual against the twin's inverse, which is the originals
    assert torch.equal(codec.prediction(levels), originals.float())
    assert codec.code(originals, protected, levels, codec.prediction(levels)) == records
    assert torch.equal(codec.restore(protected, records), originals)
    _, rests = codec.unpack(protected, records)
    assert all(not rest.any() for rest in rests)  # nothing but the overflow is stored
    bits_per_value = 8 * sum(map(len, records)) / originals.numel()
    assert bits_per_value < 0.5  # a DSAC network's residual: about 1 bit per value


def test_refined_levels_still_recover(raeg: RAEG, originals: torch.Tensor) -> None:
    """A refinement (a poison) moves the levels off the network's: the residual repairs it."""
    codec = ExactCodec(raeg)

    def nudge(images: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        return levels + (images.float() % 3 - 1)

    protected, records = codec.encode(originals, nudge)
    assert torch.equal(codec.restore(protected, records), originals)
    _, rests = codec.unpack(protected, records)
    assert any(rest.any() for rest in rests)


def test_the_float_network_is_the_twin_up_to_near_ties(
    raeg: RAEG, originals: torch.Tensor
) -> None:
    """The files (the twin's integer convolutions) are what training saw (float ones).

    The two differ where a shift lies near a rounding tie, and such a difference moves
    the later shifts a little: measured 1.0 level on average (max 7) against a change of
    6.7 levels, for this network far from any trained protector.
    """
    codec = ExactCodec(raeg)
    with torch.no_grad():
        float_levels = (raeg.generate(originals.float() / 255) * 255).round()
    twin_levels = codec.protected_levels(originals)
    change = (twin_levels - originals.float()).abs().mean()
    assert (float_levels - twin_levels).abs().mean() < 0.3 * change


def test_values_past_float32_integers_fall_back_to_the_residual(
    originals: torch.Tensor,
) -> None:
    """A pathological network whose shifts all sit at the limit leaves exact float32 integers:
    protection notices it and codes a residual against the inverse, still bit for bit."""
    generator = {"levels": 3, "blocks_per_level": 16, "hidden_channels": 4, "subnet": "conv"}
    model = RAEG.from_preset("cpu-32-integer", generator=generator | {"coupling": "integer"})
    with torch.no_grad():
        for name, weight in model.generator.named_parameters():
            if name.endswith("layers.4.bias"):  # every subnet's last bias: shifts at the limit
                weight.fill_(1e6)
    model.eval()
    codec = ExactCodec(model)
    assert codec.twin is not None
    _, exact = codec.twin.forward_checked(originals[:2].float() / 255)
    assert not exact
    _, lossless = codec.lossless_levels(originals[:2])
    assert not lossless
    protected, records = codec.encode(originals[:2])
    assert torch.equal(codec.restore(protected, records), originals[:2])
