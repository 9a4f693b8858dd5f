"""The JPEG simulations: building blocks, special cases, and how close they come to real JPEG."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from invprotect.attacks import (
    CHROMA_TABLE,
    LUMA_TABLE,
    PseudoJPEG,
    create_attack,
    dct_matrix,
    jpeg_kornia,
    jpeg_mask,
    jpeg_ss,
    jpeg_ste,
    pseudo_jpeg,
    quality_tables,
    real_jpeg,
)

SIMULATIONS = ("jpeg_ss", "jpeg_mask", "jpeg_kornia", "pseudo_jpeg")
BEST_SIMULATION_MIN_PSNR_QF90 = 28.0


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR in dB for images in [0, 1]."""
    mse = (a - b).square().flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(1 / mse)


def simulate(name: str, x: Tensor, quality: int) -> Tensor:
    attack = create_attack(name)
    params = {"quality": torch.full((x.shape[0],), quality)} if attack.param_names else {}
    with torch.no_grad():
        return attack(x, params)


# ----------------------------------------------------------------------------- building blocks


def test_dct_matrix_is_orthonormal_and_matches_the_jpeg_definition() -> None:
    d = dct_matrix(torch.float64)
    assert torch.allclose(d @ d.T, torch.eye(8, dtype=torch.float64), atol=1e-12)
    flat = torch.full((8, 8), 10.0, dtype=torch.float64)
    coefficients = d @ flat @ d.T
    # JPEG's DC coefficient of a flat block is 8 times its value.
    assert coefficients[0, 0].item() == pytest.approx(80.0)
    assert coefficients.flatten()[1:].abs().max() < 1e-12


def test_quality_tables_match_libjpeg() -> None:
    luma = torch.tensor(LUMA_TABLE, dtype=torch.float64)
    chroma = torch.tensor(CHROMA_TABLE, dtype=torch.float64)
    tables = quality_tables(torch.tensor([50.0, 100.0, 10.0, 90.0]), luma)
    assert torch.equal(tables[0], luma)
    assert torch.equal(tables[1], torch.ones(8, 8, dtype=torch.float64))
    # libjpeg: scale 500 at quality 10, 20 at quality 90; entry = (t * s + 50) // 100.
    assert torch.equal(tables[2], ((luma * 500 + 50) // 100).clamp(1, 255))
    assert torch.equal(tables[3], ((luma * 20 + 50) // 100).clamp(1, 255))
    assert quality_tables(torch.tensor([1.0]), chroma).max() == 255


def test_quality_tables_match_the_tables_stored_in_real_jpeg_files() -> None:
    """The tables libjpeg writes into a quality-q file are the ones jpeg_ss divides by."""
    pil_image = pytest.importorskip("PIL.Image")
    import io

    pixels = (torch.rand(16, 16, 3) * 255).to(torch.uint8).numpy()
    for quality in (10, 37, 50, 75, 90):
        buffer = io.BytesIO()
        pil_image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
        stored = pil_image.open(buffer).quantization
        expected_luma = quality_tables(torch.tensor([float(quality)]), torch.tensor(LUMA_TABLE))
        # Pillow reports the tables in natural (row-major) order.
        assert torch.tensor(stored[0]).view(8, 8).float().equal(expected_luma[0].float())
        expected_chroma = quality_tables(
            torch.tensor([float(quality)]), torch.tensor(CHROMA_TABLE, dtype=torch.float32)
        )
        assert torch.tensor(stored[1]).view(8, 8).float().equal(expected_chroma[0])


# ----------------------------------------------------------------------------- special cases


def test_jpeg_mask_keeping_every_coefficient_is_the_identity(images: Tensor) -> None:
    assert torch.allclose(jpeg_mask(images, keep_luma=8, keep_chroma=8), images, atol=1e-5)


def test_jpeg_mask_keeps_flat_blocks(images: Tensor) -> None:
    flat = images.mean((2, 3), keepdim=True).expand_as(images)
    assert torch.allclose(jpeg_mask(flat), flat, atol=1e-5)


def test_jpeg_mask_keeps_exactly_5x5_luma_and_3x3_chroma_coefficients() -> None:
    # One grey (luma-only) DCT basis image at (u, v) survives iff u, v < 5.
    d = dct_matrix(torch.float64)
    for u, v, kept in ((4, 4, True), (5, 0, False), (0, 7, False), (2, 3, True)):
        basis = torch.outer(d[u], d[v])
        x = (0.5 + 0.2 * basis / basis.abs().max()).expand(1, 3, 8, 8).clone()
        y = jpeg_mask(x)
        assert torch.allclose(y, x, atol=1e-6) == kept, (u, v)


def test_jpeg_mask_keeps_exactly_3x3_chroma_coefficients() -> None:
    # One Cb-only DCT basis image at (u, v) survives iff u, v < 3.
    import kornia

    d = dct_matrix(torch.float32)
    for u, v, kept in ((2, 2, True), (3, 0, False), (0, 2, True), (1, 4, False)):
        basis = torch.outer(d[u], d[v])
        ycbcr = torch.full((1, 3, 8, 8), 0.5)
        ycbcr[0, 1] += 0.2 * basis / basis.abs().max()
        x = kornia.color.ycbcr_to_rgb(ycbcr)
        assert torch.allclose(jpeg_mask(x), x, atol=1e-5) == kept, (u, v)


def test_jpeg_ss_at_quality_100_is_nearly_lossless(images: Tensor) -> None:
    # Quality 100: tables of ones, so only rounding of DCT coefficients and chroma
    # subsampling change the image.
    out = jpeg_ss(images, 100)
    assert psnr(out, real_jpeg(images, 100)).mean() > 40


def test_jpeg_ss_distortion_grows_as_quality_falls(cifar_images: Tensor) -> None:
    x = cifar_images[:16]
    quality = [psnr(jpeg_ss(x, q), x).mean().item() for q in (10, 30, 50, 90)]
    assert quality == sorted(quality)
    assert quality[0] < quality[-1] - 8


def test_jpeg_ss_rounding_variants_differ_and_near_zero_is_milder(cifar_images: Tensor) -> None:
    x = cifar_images[:16]
    cubic = jpeg_ss(x, 50)
    near_zero = jpeg_ss(x, 50, rounding="cubic-near-zero")
    assert psnr(near_zero, x).mean() > psnr(cubic, x).mean()


def test_jpeg_ste_forward_is_real_jpeg_and_backward_is_the_identity(images: Tensor) -> None:
    quality = torch.tensor([20, 50, 95])
    x = images.clone().requires_grad_(True)
    y = jpeg_ste(x, quality)
    assert torch.equal(y.detach(), real_jpeg(images, quality))
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    assert torch.equal(x.grad, weights)


def test_real_jpeg_uses_each_samples_own_quality(images: Tensor) -> None:
    mixed = real_jpeg(images, torch.tensor([10, 90, 10]))
    assert torch.equal(mixed[0], real_jpeg(images[:1], 10)[0])
    assert torch.equal(mixed[1], real_jpeg(images[1:2], 90)[0])


def test_per_sample_quality_matches_one_call_per_sample(images: Tensor) -> None:
    quality = torch.tensor([15, 60, 95])
    for function in (jpeg_ss, jpeg_kornia):
        batched = function(images, quality)
        for index, q in enumerate(quality.tolist()):
            single = function(images[index : index + 1], q)
            assert torch.allclose(batched[index], single[0], atol=1e-5), function.__name__


def test_pseudo_jpeg_is_the_weighted_mean_of_its_members(images: Tensor) -> None:
    quality = torch.tensor([10, 55, 100])
    weights = {"jpeg_ss": 2.0, "jpeg_mask": 1.0, "jpeg_ste": 1.0}
    expected = (
        0.5 * jpeg_ss(images, quality) + 0.25 * jpeg_mask(images) + 0.25 * jpeg_ste(images, quality)
    )
    assert torch.allclose(pseudo_jpeg(images, quality, weights), expected, atol=1e-6)
    module = PseudoJPEG(weights)
    assert torch.allclose(module(images, {"quality": quality}), expected, atol=1e-6)
    assert set(module.members) == set(weights)


def test_pseudo_jpeg_defaults_to_the_papers_three_methods_and_quality_range() -> None:
    module = PseudoJPEG()
    assert set(module.members) == {"jpeg_ss", "jpeg_mask", "jpeg_ste"}
    assert module.quality == (10, 100)
    quality = module.sample_params(2000, torch.Generator().manual_seed(0))["quality"]
    assert quality.min() == 10 and quality.max() == 100


def test_functional_ops_equal_the_modules(images: Tensor) -> None:
    quality = torch.tensor([20, 50, 90])
    assert torch.equal(
        create_attack("jpeg_ss")(images, {"quality": quality}), jpeg_ss(images, quality)
    )
    assert torch.equal(create_attack("jpeg_mask")(images, {}), jpeg_mask(images))
    assert torch.allclose(
        create_attack("jpeg_kornia")(images, {"quality": quality}),
        jpeg_kornia(images, quality),
        atol=1e-6,
    )
    assert torch.equal(
        create_attack("jpeg_ste")(images, {"quality": quality}), jpeg_ste(images, quality)
    )


@pytest.mark.parametrize("function", [jpeg_ss, jpeg_kornia, jpeg_ste, pseudo_jpeg])
def test_functional_quality_outside_1_100_is_refused(function, images: Tensor) -> None:
    with pytest.raises(ValueError, match=r"quality must be in \[1, 100\]"):
        function(images, torch.tensor([50, 0, 50]))


# ----------------------------------------------------------------------------- real JPEG


def test_simulations_against_real_jpeg_on_cifar10(cifar_images: Tensor) -> None:
    """Mean PSNR of each simulation against libjpeg at quality 50 and 90 (64 real images).

    The best simulation must be within 28 dB of real JPEG at quality 90. Every simulation
    must at least resemble real JPEG (20 dB), and the ones that model quantisation must
    track the quality factor: closer to real JPEG at 90 than JPEG-Mask, which has none.
    """
    table: dict[str, dict[int, float]] = {}
    for quality in (50, 90):
        real = real_jpeg(cifar_images, quality)
        for name in SIMULATIONS:
            simulated = simulate(name, cifar_images, quality)
            table.setdefault(name, {})[quality] = psnr(simulated, real).mean().item()
    report = ", ".join(f"{n}: {t[50]:.1f}/{t[90]:.1f} dB" for n, t in table.items())
    best = max(t[90] for t in table.values())
    assert best >= BEST_SIMULATION_MIN_PSNR_QF90, report
    assert all(t[q] > 20 for t in table.values() for q in (50, 90)), report
    for name in ("jpeg_ss", "jpeg_kornia"):
        assert table[name][90] > table["jpeg_mask"][90] + 5, report
        assert table[name][90] > table[name][50], report
