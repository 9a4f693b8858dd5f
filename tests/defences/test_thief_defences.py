"""The thief's defences of issue 14: JPEG 10, grayscale, 2-bit depth, and the learned inverse."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import decode_jpeg, encode_jpeg

from invprotect.checkpoint import CheckpointError
from invprotect.defences import ComDefend, ComDefendConfig, create_defence_from_spec, to_8bit_grid
from invprotect.defences.learned_inverse import (
    InverseUNet,
    LearnedInverse,
    LearnedInverseConfig,
    pair_psnr,
    train_learned_inverse,
)
from invprotect.metrics import psnr

TINY = LearnedInverseConfig(channels=(8, 16))


def stripes(images: torch.Tensor, levels: float = 6.0) -> torch.Tensor:
    """A stand-in protection: a period-2 vertical stripe pattern of +-``levels`` 8-bit levels."""
    sign = torch.ones(images.shape[-1])
    sign[1::2] = -1.0
    return to_8bit_grid(images + levels / 255.0 * sign)


@pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")
def test_jpeg_quality_10_is_real_libjpeg_and_much_coarser_than_50(images: torch.Tensor) -> None:
    out = create_defence_from_spec("jpeg:quality=10")(images)
    as_bytes = list((images * 255).round().to(torch.uint8))
    reference = torch.stack(decode_jpeg(encode_jpeg(as_bytes, quality=10))).float() / 255
    assert torch.equal(out, reference)
    at_50 = create_defence_from_spec("jpeg:quality=50")(images)
    assert psnr(out, images).mean() < psnr(at_50, images).mean() - 2.0


def test_grayscale_keeps_three_equal_channels_with_pil_luma(images: torch.Tensor) -> None:
    out = create_defence_from_spec("grayscale")(images)
    assert out.shape == images.shape
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    pixels = (images[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    pil = np.asarray(Image.fromarray(pixels).convert("L"), dtype=np.int16)
    ours = (out[0, 0] * 255).round().to(torch.int16).numpy()
    assert np.abs(ours - pil).max() <= 1


def test_bit_depth_2_keeps_four_levels_and_rounds_to_the_nearest(images: torch.Tensor) -> None:
    out = create_defence_from_spec("bit_depth:bits=2")(images)
    levels = (out * 255).round().unique().tolist()
    assert levels == [0.0, 85.0, 170.0, 255.0]
    assert (out - images).abs().max() <= 42.5 / 255 + 1e-6
    assert torch.equal(create_defence_from_spec("bit_depth:bits=2")(out), out)


def test_an_untrained_inverse_returns_its_input(images: torch.Tensor) -> None:
    # What training achieves on held-out pairs is tested in tests/training/test_pirate.py.
    assert torch.equal(LearnedInverse(TINY)(images), images)


def test_pair_psnr_measures_the_protection_and_the_cleaning(images: torch.Tensor) -> None:
    assert pair_psnr(images, images) == 100.0
    gap = pair_psnr(stripes(images), images)  # +-6 levels everywhere but where clipped
    assert 20 * np.log10(255 / 6) <= gap < 20 * np.log10(255 / 6) + 0.5
    assert pair_psnr(stripes(images), images, LearnedInverse(TINY)) == gap


def test_training_is_seeded_and_takes_uint8_or_float(images: torch.Tensor) -> None:
    protected = stripes(images)
    as_uint8 = (protected * 255).round().to(torch.uint8), (images * 255).round().to(torch.uint8)
    runs = [
        train_learned_inverse(protected, images, epochs=3, batch_size=2, config=TINY, seed=1),
        train_learned_inverse(*as_uint8, epochs=3, batch_size=2, config=TINY, seed=1),
        train_learned_inverse(protected, images, epochs=3, batch_size=2, config=TINY, seed=2),
    ]
    weights = [model.net.head.weight for model in runs]
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])
    assert not torch.equal(weights[0], torch.zeros_like(weights[0]))  # it did train


def test_save_and_load_give_the_same_cleaning(images: torch.Tensor, tmp_path: Path) -> None:
    model = train_learned_inverse(stripes(images), images, epochs=2, batch_size=3, config=TINY)
    path = model.save(tmp_path / "inverse")
    loaded = LearnedInverse.load(path)
    assert loaded.config == TINY and loaded.metrics == model.metrics
    assert torch.equal(loaded(stripes(images)), model(stripes(images)))


def test_loading_another_checkpoint_kind_is_refused(tmp_path: Path) -> None:
    other = ComDefend(ComDefendConfig(com_channels=(4,), rec_channels=(4,))).save(tmp_path / "c")
    with pytest.raises(CheckpointError, match="not a learned-inverse checkpoint"):
        LearnedInverse.load(other)


def test_output_contract_odd_sizes_and_empty_batches(images: torch.Tensor) -> None:
    model = train_learned_inverse(stripes(images), images, epochs=2, batch_size=3, config=TINY)
    odd = images[:2, :, 3:28, 1:30]
    out = model(odd)
    assert out.shape == odd.shape and torch.equal(out * 255, (out * 255).round())
    assert model(images[:0]).shape == (0, 3, 32, 32)
    assert InverseUNet(LearnedInverseConfig((4, 4, 4)))(odd).shape == odd.shape


def test_bad_pairs_and_settings_are_refused(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="same shape"):
        train_learned_inverse(images[:3], images[:2])
    with pytest.raises(ValueError, match="no \\(protected, original\\) pairs"):
        train_learned_inverse(images[:0], images[:0])
    with pytest.raises(TypeError, match="uint8 or float"):
        train_learned_inverse(images.to(torch.int32), images)
    with pytest.raises(ValueError, match="positive ints"):
        LearnedInverseConfig(channels=())


def test_docstring_examples_run() -> None:
    from invprotect.defences import learned_inverse

    result = doctest.testmod(learned_inverse, extraglobs={"torch": torch}, verbose=False)
    assert result.attempted > 0 and result.failed == 0
