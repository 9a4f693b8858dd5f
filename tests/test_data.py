"""Image folders: layouts, splits, decoding, caching, bad files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from invprotect.data import (
    fit_to_size,
    load_image_set,
    scan_image_folder,
    train_test_split,
)
from invprotect.files.images import BadImageError, read_rgb


def _add_broken_files(root: Path) -> dict[str, str]:
    """Broken and odd files in the 'cat' class; returns file name -> expected reason."""
    cat = root / "cat"
    (cat / "empty.png").write_bytes(b"")
    (cat / "notes.png").write_text("not an image at all")
    good = next(iter(sorted(cat.glob("*.jpg")))).read_bytes()
    (cat / "truncated.jpg").write_bytes(good[: len(good) // 2])
    Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)).save(cat / "deep.png")
    return {
        "empty.png": "empty file",
        "notes.png": "not an image",
        "truncated.jpg": "cannot decode",
        "deep.png": "unsupported mode",
    }


def test_scan_lists_classes_and_images(small_image_folder: Path) -> None:
    index = scan_image_folder(small_image_folder)
    assert index.classes == ["airplane", "cat", "ship"]
    assert len(index) == 36
    assert {label for _, label in index.samples} == {0, 1, 2}


def test_bad_files_are_reported_by_path_and_skipped(small_image_folder: Path) -> None:
    expected = _add_broken_files(small_image_folder)
    image_set = load_image_set(scan_image_folder(small_image_folder))
    assert len(image_set) == 36
    reasons = {bad.path.name: bad.reason for bad in image_set.bad_files}
    assert set(reasons) == set(expected)
    for name, reason in expected.items():
        assert reason in reasons[name] and name in reasons[name]


def test_every_supported_format_decodes_to_the_same_rgb(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    for suffix in ("png", "bmp", "tiff", "webp"):
        Image.fromarray(pixels).save(
            tmp_path / f"x.{suffix}", **({"lossless": True} if suffix == "webp" else {})
        )
        assert torch.equal(
            read_rgb(tmp_path / f"x.{suffix}"), torch.from_numpy(pixels).permute(2, 0, 1)
        )
    Image.fromarray(pixels[..., 0]).save(tmp_path / "gray.png")
    assert torch.equal(read_rgb(tmp_path / "gray.png")[1], torch.from_numpy(pixels[..., 0]))


def test_empty_folder_and_empty_class_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        scan_image_folder(tmp_path / "missing")
    (tmp_path / "root").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        scan_image_folder(tmp_path / "root")
    (tmp_path / "root" / "cat").mkdir()
    (tmp_path / "root" / "cat" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"class folder .*cat holds no image files"):
        scan_image_folder(tmp_path / "root")


def test_folder_of_only_bad_files_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match="none of the 1 files"):
        load_image_set(scan_image_folder(tmp_path))


def test_split_is_per_class_deterministic_and_disjoint(small_image_folder: Path) -> None:
    train, test = train_test_split(small_image_folder, test_fraction=0.25, seed=3)
    again_train, again_test = train_test_split(small_image_folder, test_fraction=0.25, seed=3)
    assert train.samples == again_train.samples and test.samples == again_test.samples
    assert len(test) == 9 and len(train) == 27  # 3 of 12 per class
    assert not {p for p, _ in train.samples} & {p for p, _ in test.samples}
    assert sorted(label for _, label in test.samples) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_train_test_layout_is_used_as_is(cifar10_root: Path) -> None:
    train, test = train_test_split(cifar10_root)
    assert (len(train), len(test)) == (50_000, 10_000)
    assert train.classes == test.classes and len(train.classes) == 10


def test_images_come_out_as_float_in_unit_range_and_the_cache_is_exact(
    small_image_folder: Path, tmp_path: Path
) -> None:
    index = scan_image_folder(small_image_folder)
    first = load_image_set(index, cache_dir=tmp_path / "cache")
    second = load_image_set(index, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").glob("*.safetensors"))
    assert torch.equal(first.images, second.images) and first.paths == second.paths
    assert first.fingerprint() == second.fingerprint()
    batch = first.batch([0, 5])
    assert batch.dtype == torch.float32 and batch.shape == (2, 3, 32, 32)
    assert 0.0 <= batch.min() and batch.max() <= 1.0
    assert torch.equal(batch[1] * 255, first.images[5].float())
    assert first.nbytes == 36 * 3 * 32 * 32


def test_fit_to_size_resizes_shorter_side_and_centre_crops() -> None:
    image = torch.zeros(3, 40, 80, dtype=torch.uint8)
    image[:, :, 20:60] = 255
    fitted = fit_to_size(image, 20)
    assert fitted.shape == (3, 20, 20) and fitted.dtype == torch.uint8
    assert fitted.float().mean() > 200  # the centre (white) is kept
    assert fit_to_size(fitted, 20) is fitted


def test_mixed_sizes_need_a_working_size(small_image_folder: Path) -> None:
    Image.new("RGB", (48, 40)).save(small_image_folder / "cat" / "big.png")
    with pytest.raises(ValueError, match="different sizes"):
        load_image_set(scan_image_folder(small_image_folder))
    assert load_image_set(scan_image_folder(small_image_folder), size=32).images.shape[-1] == 32


def test_read_rgb_names_the_file_in_its_error(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    path.write_bytes(io.BytesIO(b"\xff\xd8\xff").getvalue())
    with pytest.raises(BadImageError, match=r"x\.jpg"):
        read_rgb(path)


def test_download_cifar10_converts_torchvision_arrays(monkeypatch, tmp_path: Path) -> None:
    import torchvision.datasets

    from invprotect.data import download_cifar10

    calls = []

    class FakeCIFAR10:  # stands in for the network download; same attributes as torchvision's
        classes = ("airplane", "automobile")

        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            self.data = np.arange(2 * 32 * 32 * 3, dtype=np.uint8).reshape(2, 32, 32, 3)
            self.targets = [1, 0]

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    image_set = download_cifar10(tmp_path, train=False)
    assert calls == [(str(tmp_path), False, True)]
    calls.clear()
    assert image_set.images.shape == (2, 3, 32, 32)
    data = FakeCIFAR10(str(tmp_path), False, True).data
    assert torch.equal(image_set.images, torch.from_numpy(data).permute(0, 3, 1, 2))
    assert image_set.labels.tolist() == [1, 0] and image_set.classes == list(FakeCIFAR10.classes)
