"""`ProtectedImageFolder`: protected PNGs in, the exact originals out (workers, batches, errors)."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import invprotect.data
from invprotect.data import load_image_set, scan_image_folder
from invprotect.data.protected import (
    ProtectedFileError,
    ProtectedImageFolder,
    load_protected_set,
)
from invprotect.files.images import open_image, pixel_digest, read_rgb
from invprotect.files.png import encode_png, read_chunks
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.models import RAEG
from invprotect.record import RECORD_CHUNK
from tests.contracts import tiny_raeg


def _raeg(seed: int) -> RAEG:
    return tiny_raeg(seed)


@pytest.fixture(scope="module")
def raeg() -> RAEG:
    return _raeg(0)


@pytest.fixture
def protected_mixed(raeg: RAEG, mixed_tree: Path, tmp_path: Path) -> Path:
    report = protect_tree(mixed_tree, tmp_path / "protected", raeg, batch_size=4)
    assert report.ok and report.written == 8
    return tmp_path / "protected"


def _originals(src: Path) -> dict[str, Image.Image]:
    """The source images by the relative path of their protected PNG."""
    return {
        path.relative_to(src).with_suffix(".png").as_posix(): open_image(path)
        for path in sorted(src.rglob("*"))
        if path.is_file()
    }


def _items(dataset: ProtectedImageFolder, workers: int, batch_size: int) -> list:
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=lambda items: items
    )
    return [item for batch in loader for item in batch]


@pytest.mark.parametrize("workers", [0, 2])
def test_every_file_of_a_mixed_folder_comes_back_as_its_original(
    raeg: RAEG, mixed_tree: Path, protected_mixed: Path, tmp_path: Path, workers: int
) -> None:
    originals = _originals(mixed_tree)
    recover_tree(protected_mixed, tmp_path / "recovered", raeg)
    dataset = ProtectedImageFolder(protected_mixed, raeg, mode=None)
    assert dataset.classes == ["cat", "ship"] and len(dataset) == 8
    items = _items(dataset, workers, batch_size=3)
    assert [label for _, label in items] == dataset.targets
    modes = set()
    for (path, _), (image, label) in zip(dataset.samples, items, strict=True):
        relative = Path(path).relative_to(protected_mixed).as_posix()
        assert label == dataset.class_to_idx[relative.split("/")[0]]
        # Bit for bit the source file's image and what `invprotect recover` writes.
        assert pixel_digest(image) == pixel_digest(originals[relative]), relative
        recovered = open_image(tmp_path / "recovered" / relative)
        assert pixel_digest(image) == pixel_digest(recovered), relative
        modes.add(image.mode)
    assert modes == {"RGB", "L", "RGBA", "P"}


def test_default_mode_is_rgb_like_image_folder(
    raeg: RAEG, mixed_tree: Path, protected_mixed: Path
) -> None:
    originals = _originals(mixed_tree)
    dataset = ProtectedImageFolder(protected_mixed, raeg)
    for index, (path, _) in enumerate(dataset.samples):
        image, _ = dataset[index]
        expected = originals[Path(path).relative_to(protected_mixed).as_posix()].convert("RGB")
        assert image.mode == "RGB" and np.array_equal(np.asarray(image), np.asarray(expected))


class _CountingRAEG(RAEG):
    """A RAEG that counts its calls of `decode` and the images in each."""

    calls: list[int]

    def decode(self, protected: torch.Tensor, records: list[bytes]):
        self.calls.append(protected.shape[0])
        return super().decode(protected, records)


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_go_through_the_network_together_with_transforms(
    raeg: RAEG, small_image_folder: Path, tmp_path: Path, workers: int
) -> None:
    protect_tree(small_image_folder, tmp_path / "protected", raeg)
    counting = _CountingRAEG(raeg.config).eval()
    counting.load_state_dict(raeg.state_dict())
    counting.calls = []
    dataset = ProtectedImageFolder(
        tmp_path / "protected",
        counting,
        transform=lambda image: torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1),
        target_transform=lambda label: label * 10,
    )
    loader = DataLoader(dataset, batch_size=8, num_workers=workers)  # the default collate
    images, labels = zip(*loader, strict=True)
    expected = torch.stack(
        [read_rgb(p) for p in sorted(small_image_folder.rglob("*.jpg"))]  # same sorted order
    )
    assert torch.equal(torch.cat(images), expected)
    assert torch.cat(labels).tolist() == [10 * label for label in dataset.targets]
    if workers == 0:  # the workers' counters live in their processes
        assert counting.calls == [8, 8, 8, 8, 4]


def _alter(path: Path, change_pixels: bool, keep_record: bool) -> None:
    """Rewrite a protected PNG with one pixel changed and/or without its record."""
    chunks = read_chunks(path.read_bytes())
    pixels = np.asarray(Image.open(path)).copy()
    if change_pixels:
        pixels[0, 0, 0] ^= 1
    encode = {RECORD_CHUNK: chunks[RECORD_CHUNK]} if keep_record else {}
    path.write_bytes(encode_png(pixels, encode))


@pytest.mark.parametrize(
    ("change_pixels", "keep_record", "message"),
    [(True, True, "was changed after protection"), (False, False, "has no recovery record")],
)
@pytest.mark.parametrize("workers", [0, 2])
def test_an_altered_file_raises_an_error_naming_it(
    raeg: RAEG,
    protected_mixed: Path,
    workers: int,
    change_pixels: bool,
    keep_record: bool,
    message: str,
) -> None:
    victim = protected_mixed / "ship" / "odd.png"
    _alter(victim, change_pixels, keep_record)
    dataset = ProtectedImageFolder(protected_mixed, raeg)
    with pytest.raises(ProtectedFileError, match=message) as caught:
        _items(dataset, workers, batch_size=4)
    assert str(victim) in str(caught.value)


def test_approximate_policy_warns_and_keeps_the_others_exact(
    raeg: RAEG, mixed_tree: Path, protected_mixed: Path
) -> None:
    victim = protected_mixed / "ship" / "odd.png"
    _alter(victim, change_pixels=True, keep_record=True)
    dataset = ProtectedImageFolder(protected_mixed, raeg, mode=None, on_altered="approximate")
    with pytest.warns(UserWarning, match="odd.png: not the original"):
        images = dataset.recover_batch(range(len(dataset)))
    originals = _originals(mixed_tree)
    for (path, _), image in zip(dataset.samples, images, strict=True):
        relative = Path(path).relative_to(protected_mixed).as_posix()
        if relative == "ship/odd.png":
            assert image.size == originals[relative].size
            assert pixel_digest(image) != pixel_digest(originals[relative])
        else:
            assert pixel_digest(image) == pixel_digest(originals[relative]), relative


def test_another_key_and_a_corrupt_record_raise(raeg: RAEG, protected_mixed: Path) -> None:
    other = ProtectedImageFolder(protected_mixed, _raeg(1))
    with pytest.raises(ProtectedFileError, match="protected with another key"):
        other[0]
    victim = sorted((protected_mixed / "cat").iterdir())[0]
    pixels = np.asarray(Image.open(victim)).copy()
    record = bytearray(read_chunks(victim.read_bytes())[RECORD_CHUNK])
    record[60] ^= 0xFF  # the pixels are untouched, the sealed record is not
    victim.write_bytes(encode_png(pixels, {RECORD_CHUNK: bytes(record)}))
    dataset = ProtectedImageFolder(protected_mixed, raeg, on_altered="approximate")
    with pytest.raises(ProtectedFileError, match="record") as caught:
        dataset[0]
    assert str(victim) in str(caught.value)


def test_pickles_without_the_weights_when_given_a_path(
    raeg: RAEG, protected_mixed: Path, tmp_path: Path
) -> None:
    key = raeg.save(tmp_path / "key")
    dataset = ProtectedImageFolder(protected_mixed, str(key), mode=None)
    payload = pickle.dumps(dataset)
    assert len(payload) < 20_000  # the weights stay behind; a worker loads the key itself
    copy = pickle.loads(payload)
    assert pixel_digest(copy[3][0]) == pixel_digest(dataset[3][0])


def test_the_same_pixels_as_decoding_the_originals(
    raeg: RAEG, small_image_folder: Path, tmp_path: Path
) -> None:
    protect_tree(small_image_folder, tmp_path / "protected", raeg)
    recovered = load_protected_set(scan_image_folder(tmp_path / "protected"), raeg, batch_size=5)
    decoded = load_image_set(scan_image_folder(small_image_folder), workers=1)
    assert recovered.fingerprint() == decoded.fingerprint()
    assert recovered.paths == [p.replace(".jpg", ".png") for p in decoded.paths]
    resized = load_protected_set(scan_image_folder(tmp_path / "protected"), raeg, size=16)
    assert resized.images.shape == (36, 3, 16, 16)


def test_importing_invprotect_data_stays_on_its_floor() -> None:
    assert invprotect.data.ProtectedImageFolder is ProtectedImageFolder
    assert invprotect.data.load_protected_set is load_protected_set
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        invprotect.data.Nope  # noqa: B018
    # At import time the package reads only floor-0 modules; the data set comes on first use.
    tree = ast.parse(Path(invprotect.data.__file__).read_text())
    imported = {
        node.module
        for node in tree.body  # module level only: not under TYPE_CHECKING, not in functions
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert {name for name in imported if name.startswith("invprotect")} == {
        "invprotect.files.atomic",
        "invprotect.files.images",
    }


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_recovery_on_the_gpu_gives_the_bytes_of_the_cpu(
    raeg: RAEG, mixed_tree: Path, protected_mixed: Path, tmp_path: Path
) -> None:
    key = raeg.save(tmp_path / "key")
    on_cpu = ProtectedImageFolder(protected_mixed, key, mode=None)
    on_gpu = ProtectedImageFolder(protected_mixed, key, mode=None, device="cuda")
    assert on_gpu.protector.device.type == "cuda"
    everything = range(len(on_cpu))
    for cpu_image, gpu_image in zip(
        on_cpu.recover_batch(everything), on_gpu.recover_batch(everything), strict=True
    ):
        assert pixel_digest(cpu_image) == pixel_digest(gpu_image)
    set_on_gpu = load_protected_set(scan_image_folder(protected_mixed), on_gpu.protector, size=16)
    set_on_cpu = load_protected_set(scan_image_folder(protected_mixed), raeg, size=16)
    assert set_on_gpu.fingerprint() == set_on_cpu.fingerprint()
