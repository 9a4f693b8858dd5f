"""Labelled image folders (``root/<class>/<image>``) decoded once into ``uint8`` tensors.

Images leave this module as ``uint8`` tensors ``(N, 3, H, W)``; `ImageSet.batch`
turns a selection into float RGB in ``[0, 1]``. Normalisation is never applied
here: it lives inside the classifier wrappers. A decoded set takes
``N * 3 * H * W`` bytes (CIFAR-10's 50,000 training images: 147 MiB), so sets of that
order are held in memory and, with ``cache_dir``, kept on disk as safetensors for the
next run.

The key holder's data set, `invprotect.data.protected.ProtectedImageFolder` (protected PNGs
in, the exact originals out), is importable from here too. It needs the protectors, which
sit above this module, so it is imported on first use: ``import invprotect.data`` stays on
the lowest floor.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F  # noqa: N812
from safetensors.torch import load_file, save_file
from torch import Tensor

from invprotect.files.atomic import atomic_write_bytes
from invprotect.files.images import IMAGE_SUFFIXES, BadImageError, read_rgb

if TYPE_CHECKING:
    from invprotect.data.protected import ProtectedFileError as ProtectedFileError
    from invprotect.data.protected import ProtectedImageFolder as ProtectedImageFolder
    from invprotect.data.protected import load_protected_set as load_protected_set

_PROTECTED_NAMES = frozenset({"ProtectedFileError", "ProtectedImageFolder", "load_protected_set"})
"""Names of `invprotect.data.protected` that this package hands out on first use."""

CIFAR10_ENV = "INVPROTECT_CIFAR10"
"""Environment variable naming a CIFAR-10 ImageFolder (with ``train/`` and ``test/``)."""


@dataclass(frozen=True)
class BadFile:
    """A file that was skipped, and why."""

    path: Path
    reason: str


@dataclass
class ImageFolderIndex:
    """The files of an ImageFolder: class names (sorted) and ``(path, label)`` pairs."""

    root: Path
    classes: list[str]
    samples: list[tuple[Path, int]]

    def __len__(self) -> int:
        return len(self.samples)


def scan_image_folder(root: str | Path, classes: Sequence[str] | None = None) -> ImageFolderIndex:
    """List the images of ``root/<class>/<image>`` (files with an `IMAGE_SUFFIXES` suffix).

    Args:
        root: The folder holding one sub-folder per class.
        classes: Expected class names (for a test split that must match the training
            split); ``None`` takes the sub-folders found.

    Raises:
        ValueError: If ``root`` is missing, has no class folders, a class folder has
            no image files, or the classes differ from ``classes``.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist or is not a directory")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise ValueError(f"{root} has no class sub-folders; expected root/<class>/<image> layout")
    if classes is not None and list(classes) != found:
        raise ValueError(f"{root} has classes {found}, expected {list(classes)}")
    samples: list[tuple[Path, int]] = []
    for label, name in enumerate(found):
        files = sorted(
            p
            for p in (root / name).rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
        )
        if not files:
            raise ValueError(
                f"class folder {root / name} holds no image files "
                f"({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        samples.extend((path, label) for path in files)
    return ImageFolderIndex(root, found, samples)


def train_test_split(
    root: str | Path, test_fraction: float = 0.1, seed: int = 0
) -> tuple[ImageFolderIndex, ImageFolderIndex]:
    """The training and test files of an image folder.

    A ``root/train`` + ``root/test`` layout is used as it is. Otherwise each class is
    split deterministically: its files are shuffled with ``seed`` and the first
    ``round(test_fraction * n)`` (at least one) go to the test split (the paper's 9:1
    split for the default ``0.1``).

    Raises:
        ValueError: For a bad layout (see `scan_image_folder`), a
            ``test_fraction`` outside ``(0, 1)``, or a class too small to split.
    """
    root = Path(root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        train = scan_image_folder(root / "train")
        return train, scan_image_folder(root / "test", classes=train.classes)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    everything = scan_image_folder(root)
    train_samples: list[tuple[Path, int]] = []
    test_samples: list[tuple[Path, int]] = []
    generator = torch.Generator().manual_seed(seed)
    for label, name in enumerate(everything.classes):
        files = [s for s in everything.samples if s[1] == label]
        if len(files) < 2:
            raise ValueError(f"class {name!r} has {len(files)} image; need 2 or more to split")
        order = torch.randperm(len(files), generator=generator).tolist()
        n_test = min(max(1, round(test_fraction * len(files))), len(files) - 1)
        test_samples.extend(files[i] for i in sorted(order[:n_test]))
        train_samples.extend(files[i] for i in sorted(order[n_test:]))
    return (
        ImageFolderIndex(root, everything.classes, train_samples),
        ImageFolderIndex(root, everything.classes, test_samples),
    )


@dataclass
class ImageSet:
    """Decoded images with labels.

    Attributes:
        images: ``uint8`` tensor ``(N, 3, H, W)``, RGB.
        labels: ``int64`` tensor ``(N,)``.
        classes: Class names; ``labels`` index into it.
        paths: Source path of each image, relative to the folder root.
        bad_files: Files that were skipped, with the reason.
    """

    images: Tensor
    labels: Tensor
    classes: list[str]
    paths: list[str]
    bad_files: list[BadFile] = field(default_factory=list)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def nbytes(self) -> int:
        """Memory held by the decoded images, in bytes."""
        return self.images.numel() * self.images.element_size()

    def batch(self, indices: Tensor | Sequence[int], device: torch.device | None = None) -> Tensor:
        """Float RGB images in ``[0, 1]`` of shape ``(len(indices), 3, H, W)``.

        The ``uint8`` pixels travel to ``device`` and become float there (a quarter of the
        bytes of float32 over the bus to a GPU).
        """
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.images[index].to(device).float().div_(255.0)

    def subset(self, indices: Tensor | Sequence[int]) -> ImageSet:
        """A new set holding the selected images (bad files are kept for reporting)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return ImageSet(
            self.images[index].clone(),
            self.labels[index].clone(),
            list(self.classes),
            [self.paths[i] for i in index.tolist()],
            list(self.bad_files),
        )

    def fingerprint(self) -> str:
        """SHA-256 over classes, labels and pixels: identifies the data a model saw."""
        digest = hashlib.sha256(json.dumps(self.classes).encode())
        digest.update(self.labels.numpy().tobytes())
        digest.update(self.images.contiguous().numpy().tobytes())
        return digest.hexdigest()


def fit_to_size(image: Tensor, size: int) -> Tensor:
    """Resize the shorter side of a ``uint8`` ``(3, H, W)`` image to ``size`` and centre-crop.

    Bilinear with antialiasing, rounded back to ``uint8``. An image already
    ``size x size`` is returned unchanged.
    """
    height, width = image.shape[-2:]
    if (height, width) == (size, size):
        return image
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    resized = F.interpolate(
        image[None].float(), size=(new_h, new_w), mode="bilinear", antialias=True
    )[0]
    top, left = (new_h - size) // 2, (new_w - size) // 2
    cropped = resized[:, top : top + size, left : left + size]
    return cropped.round().clamp(0, 255).to(torch.uint8)


def load_image_set(
    index: ImageFolderIndex,
    size: int | None = None,
    cache_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int = 2,
) -> ImageSet:
    """Decode every file of ``index`` into an `ImageSet`, skipping bad files.

    Args:
        index: Files to decode (from `scan_image_folder` or `train_test_split`).
        size: Working size: each image is fitted to ``size x size`` with
            `fit_to_size`. ``None`` keeps the stored size, which must then be the
            same for every image.
        cache_dir: Folder for a decoded copy (safetensors), reused while the files'
            names, sizes and modification times are unchanged. ``None`` disables it.
        progress: Called with the number of files just processed.
        workers: Decoding threads.

    Raises:
        ValueError: If no file could be decoded, or sizes differ and ``size`` is ``None``.
    """
    cache_path = _cache_path(index, size, cache_dir) if cache_dir is not None else None
    if cache_path is not None and cache_path.with_suffix(".json").is_file():
        cached = _read_cache(cache_path, index)
        if progress is not None:
            progress(len(index))
        return cached

    def decode(sample: tuple[Path, int]) -> Tensor | BadFile:
        try:
            image = read_rgb(sample[0])
        except BadImageError as error:
            return BadFile(sample[0], str(error))
        return image if size is None else fit_to_size(image, size)

    images: list[Tensor] = []
    labels: list[int] = []
    paths: list[str] = []
    bad: list[BadFile] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for sample, result in zip(
            index.samples, pool.map(decode, index.samples, chunksize=64), strict=True
        ):
            if isinstance(result, BadFile):
                bad.append(result)
            else:
                images.append(result)
                labels.append(sample[1])
                paths.append(sample[0].relative_to(index.root).as_posix())
            if progress is not None:
                progress(1)
    if not images:
        raise ValueError(f"none of the {len(index)} files under {index.root} could be decoded")
    shapes = {tuple(t.shape) for t in images}
    if len(shapes) > 1:
        raise ValueError(
            f"images under {index.root} have different sizes ({len(shapes)} shapes, e.g. "
            f"{sorted(shapes)[:3]}); pass a working size to resize them"
        )
    image_set = ImageSet(
        torch.stack(images), torch.tensor(labels, dtype=torch.long), index.classes, paths, bad
    )
    if cache_path is not None:
        _write_cache(cache_path, image_set)
    return image_set


def _cache_path(index: ImageFolderIndex, size: int | None, cache_dir: str | Path) -> Path:
    digest = hashlib.sha256(f"{index.root.resolve()}|{size}".encode())
    for path, label in index.samples:
        stat = path.stat()
        digest.update(
            f"{path.relative_to(index.root)}|{label}|{stat.st_size}|{stat.st_mtime_ns}".encode()
        )
    return Path(cache_dir) / f"images-{digest.hexdigest()[:24]}"


def _write_cache(path: Path, image_set: ImageSet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"images": image_set.images, "labels": image_set.labels}, str(tmp))
    os.replace(tmp, path.with_suffix(".safetensors"))
    meta = {
        "classes": image_set.classes,
        "paths": image_set.paths,
        "bad_files": [[str(b.path), b.reason] for b in image_set.bad_files],
    }
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(meta).encode())


def _read_cache(path: Path, index: ImageFolderIndex) -> ImageSet:
    tensors = load_file(str(path.with_suffix(".safetensors")))
    meta = json.loads(path.with_suffix(".json").read_text())
    return ImageSet(
        tensors["images"],
        tensors["labels"],
        meta["classes"],
        meta["paths"],
        [BadFile(Path(p), reason) for p, reason in meta["bad_files"]],
    )


def default_cache_dir() -> Path:
    """Decoded-image cache: ``$XDG_CACHE_HOME/invprotect`` or ``~/.cache/invprotect``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "invprotect"


def default_cifar10_root() -> Path | None:
    """The local CIFAR-10 ImageFolder, if there is one.

    Looks at ``$INVPROTECT_CIFAR10``, then ``../shared/datasets/cifar10`` relative to the
    working directory and to this source tree.
    """
    candidates = []
    if os.environ.get(CIFAR10_ENV):
        candidates.append(Path(os.environ[CIFAR10_ENV]))
    candidates.append(Path.cwd().parent / "shared" / "datasets" / "cifar10")
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "datasets" / "cifar10")
    for candidate in candidates:
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    return None


def download_cifar10(root: str | Path, train: bool = True) -> ImageSet:
    """CIFAR-10 through torchvision's downloader (needs internet) as an `ImageSet`."""
    from torchvision.datasets import CIFAR10

    dataset = CIFAR10(str(root), train=train, download=True)
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    split = "train" if train else "test"
    return ImageSet(
        images,
        torch.tensor(dataset.targets, dtype=torch.long),
        list(dataset.classes),
        [f"{split}/{i:05d}" for i in range(images.shape[0])],
    )


def __getattr__(name: str) -> Any:
    """`invprotect.data.protected`'s public names, imported on first use (see the module doc)."""
    if name in _PROTECTED_NAMES:
        from invprotect.data import protected

        return getattr(protected, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
