"""The key holder's data set: a folder of protected PNGs in, the exact originals out.

`ProtectedImageFolder` reads what ``invprotect protect`` wrote (``root/<class>/<image>.png``
with its sealed recovery record) and recovers each original in memory when it is asked
for it, the same pixels ``invprotect recover`` would write, so the key holder trains on
their own data without a second copy of the originals on disk. It is a map-style torch
`torch.utils.data.Dataset` with torchvision's ``transform``/``target_transform`` and
ImageFolder's ``classes``, ``class_to_idx``, ``samples`` and ``targets``.

Batch recovery: the network is the cost, so the data set also has ``__getitems__``, which a
`torch.utils.data.DataLoader` with a ``batch_size`` calls with the indices of a whole batch;
files of equal size then go through the protector in one call. A plain
``DataLoader(dataset, batch_size=64, num_workers=2)`` recovers batch by batch in its workers.

Nothing is returned that is not the original, unless asked for: every recovery is checked
against the keyed digest of the original in the file's record, and a file changed after
protection (or without a record, or sealed under another key, or with a corrupt record)
raises `ProtectedFileError` naming the file. With ``on_altered="approximate"`` a changed
file gives the protector's approximate recovery instead, with a warning naming it.

Each file goes through the same per-file steps as ``invprotect recover``
(`invprotect.files.protected`: open and check the record, rebuild the original, check its
digest). This module sits on the floor of the tree runs (it needs the protectors and the
records); the package `invprotect.data` below it re-exports its names lazily, so importing
`invprotect.data` does not import anything above it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from invprotect.data import ImageFolderIndex, ImageSet, fit_to_size, scan_image_folder
from invprotect.files.images import BadImageError, pad_to_multiple
from invprotect.files.protected import (
    ProtectedFile,
    approximate_original,
    matches_record,
    open_protected,
    rebuild_original,
)
from invprotect.models.protector import Protector
from invprotect.protectors import load_protector
from invprotect.record import BadRecordError, RecordKeys

__all__ = ["OnAltered", "ProtectedFileError", "ProtectedImageFolder", "load_protected_set"]

OnAltered = Literal["raise", "approximate"]
"""What `ProtectedImageFolder` does with a file that cannot give its original exactly."""


class ProtectedFileError(ValueError):
    """A protected file cannot give its original; the message names the file and why."""


class ProtectedImageFolder(Dataset[tuple[Any, Any]]):
    """Protected PNGs of ``root/<class>/<image>.png`` that yield the exact originals.

    Each item is ``(image, label)`` as torchvision's ImageFolder gives it: the recovered
    original as a PIL image (converted to ``mode``; by default RGB, like ImageFolder's
    loader), then ``transform``; the class index, then ``target_transform``. The original
    is checked against the keyed digest in its record before it is returned.

    Workers: the data set pickles without the protector when ``protector`` is a path (each
    worker process loads its own copy on first use) and with it when it is an object.
    Recovery runs where the protector is; with ``num_workers > 0`` keep it on the CPU
    (CUDA cannot be used in forked workers) or pass
    ``multiprocessing_context="spawn"`` to the DataLoader. The bytes do not depend on the
    device: `RAEG`'s exact recovery is made so (see `invprotect.models.exact`), and every
    image is checked against its record anyway.

    Args:
        root: A protected folder (class sub-folders as `invprotect.data.scan_image_folder`
            reads them), or a list of its files already made (such as a split from
            `invprotect.data.train_test_split`).
        protector: The key: a `Protector`, or what ``--protector`` takes (a checkpoint
            directory, a baseline's name).
        transform: Applied to each recovered PIL image.
        target_transform: Applied to each label.
        mode: PIL mode the originals are converted to (``"RGB"`` by default); ``None``
            keeps each original's own mode (gray, palette, RGBA, ...), the image that
            ``invprotect recover`` writes.
        on_altered: ``"raise"`` (default): a file changed since protection, or one the
            protector recovers only approximately by design, raises `ProtectedFileError`.
            ``"approximate"``: it gives the protector's best estimate instead, with a
            `UserWarning` naming the file. Files sealed under another key, or with a
            corrupt record, always raise.
        device: Where a protector given by path computes (default: the CPU).

    Raises:
        ValueError: For a bad folder layout (see `invprotect.data.scan_image_folder`).
        CheckpointError: If ``protector`` names no protector.

    Example:
        ```python
        dataset = ProtectedImageFolder("protected/train", "runs/protector", transform=to_tensor)
        loader = DataLoader(dataset, batch_size=64, shuffle=True, num_workers=2)
        for images, labels in loader:  # each batch recovered in one call of the network
            ...
        ```
    """

    def __init__(
        self,
        root: str | Path | ImageFolderIndex,
        protector: Protector | str | Path,
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        *,
        mode: str | None = "RGB",
        on_altered: OnAltered = "raise",
        device: torch.device | str | None = None,
    ) -> None:
        if on_altered not in ("raise", "approximate"):
            raise ValueError(f"on_altered must be 'raise' or 'approximate', got {on_altered!r}")
        index = root if isinstance(root, ImageFolderIndex) else scan_image_folder(root)
        self.root = index.root
        self.classes = list(index.classes)
        self.class_to_idx = {name: label for label, name in enumerate(self.classes)}
        self.samples = [(str(path), label) for path, label in index.samples]
        self.targets = [label for _, label in index.samples]
        self.transform = transform
        self.target_transform = target_transform
        self.mode = mode
        self.on_altered = on_altered
        self._spec = None if isinstance(protector, Protector) else protector
        self._device = device
        self._protector = (
            protector if isinstance(protector, Protector) else load_protector(protector, device)
        )
        self._keys: RecordKeys | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_keys"] = None
        if self._spec is not None:
            state["_protector"] = None  # each process loads the key from its path
        return state

    @property
    def protector(self) -> Protector:
        """The protector that recovers the files (loaded in this process on first use)."""
        if self._protector is None:
            assert self._spec is not None
            self._protector = load_protector(self._spec, self._device)
        return self._protector

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, Any]]:
        """The items at ``indices``, recovered together (called by a batching DataLoader)."""
        images = self.recover_batch(indices)
        items = []
        for index, image in zip(indices, images, strict=True):
            target = self.samples[index][1]
            if self.transform is not None:
                image = self.transform(image)
            if self.target_transform is not None:
                target = self.target_transform(target)
            items.append((image, target))
        return items

    def recover_batch(self, indices: Sequence[int]) -> list[Image.Image]:
        """The originals of the files at ``indices`` (in ``mode``), before any transform.

        Files of equal size go through the protector in one call.

        Raises:
            ProtectedFileError: For the first file that cannot give its original (see
                ``on_altered``).
        """
        opened = [self._open(Path(self.samples[index][0])) for index in indices]
        protector = self.protector
        side = protector.side_multiple
        images: dict[int, Image.Image] = {}
        groups: dict[tuple[bool, int, int], list[int]] = {}
        for position, item in enumerate(opened):
            height, width = item.rgb.shape[-2:]
            key = (item.untouched, -(-height // side) * side, -(-width // side) * side)
            groups.setdefault(key, []).append(position)
        for (untouched, _, _), positions in groups.items():
            if untouched:
                batch = torch.stack([opened[p].rgb for p in positions])
                records = [opened[p].record.residual for p in positions]  # type: ignore[union-attr]
                try:
                    restored, promised = protector.decode(batch, records)
                except ValueError:  # a corrupt residual: find the file, one at a time
                    restored, promised = self._decode_one_by_one([opened[p] for p in positions])
                for p, pixels, exact in zip(positions, restored, promised, strict=True):
                    images[p] = self._finish(opened[p], pixels, exact)
            else:
                batch = torch.stack([pad_to_multiple(opened[p].rgb, side) for p in positions])
                for p, pixels in zip(positions, protector.approximate(batch), strict=True):
                    _warn(opened[p].path, "it was changed after protection (or has no record)")
                    images[p] = approximate_original(opened[p], pixels)
        if self.mode is None:
            return [images[p] for p in range(len(opened))]
        return [_convert(images[p], self.mode) for p in range(len(opened))]

    def _keys_of(self) -> RecordKeys:
        if self._keys is None:
            self._keys = self.protector.keys
        return self._keys

    def _open(self, path: Path) -> ProtectedFile:
        """Read a protected file and open its record; refuse a changed one unless asked."""
        try:
            item = open_protected(path, self._keys_of(), self.protector.side_multiple)
        except (BadImageError, BadRecordError) as error:
            raise ProtectedFileError(f"{error}; its original cannot be recovered") from None
        if not item.untouched and self.on_altered == "raise":
            what = (
                "has no recovery record" if item.record is None else "was changed after protection"
            )
            raise ProtectedFileError(
                f"{path}: {what}, so its original cannot be recovered exactly; remove it (or "
                "replace it with the file as protected), or pass on_altered='approximate' to "
                "use the protector's approximate recovery"
            )
        return item

    def _decode_one_by_one(self, items: list[ProtectedFile]) -> tuple[list[Tensor], list[bool]]:
        restored, promised = [], []
        for item in items:
            assert item.record is not None
            try:
                pixels, exact = self.protector.decode(item.rgb[None], [item.record.residual])
            except ValueError as error:
                raise ProtectedFileError(
                    f"{item.path}: {error}; its original cannot be recovered"
                ) from None
            restored.append(pixels[0])
            promised.append(exact[0])
        return restored, promised

    def _finish(self, item: ProtectedFile, restored: Tensor, promised: bool) -> Image.Image:
        """The original's image from its restored pixels, checked against its record."""
        assert item.record is not None
        if not promised and self.on_altered == "raise":
            raise ProtectedFileError(
                f"{item.path}: {type(self.protector).__name__} recovers this file only "
                "approximately; pass on_altered='approximate' to use that recovery"
            )
        try:
            image = rebuild_original(item, restored, promised)
        except ValueError as error:
            raise ProtectedFileError(f"{item.path}: {error}") from None
        if not promised:
            _warn(item.path, "the protector recovers it only approximately")
        elif not matches_record(image, item.record, self._keys_of()):
            raise ProtectedFileError(
                f"{item.path}: the recovered pixels do not match the digest of the original "
                "in its record; nothing is returned for it (recover it with `invprotect "
                "recover` for a report)"
            )
        return image


def _convert(image: Image.Image, mode: str) -> Image.Image:
    return image if image.mode == mode else image.convert(mode)


def _warn(path: Path, why: str) -> None:
    warnings.warn(
        f"{path}: not the original: {why}; using the protector's approximate recovery",
        UserWarning,
        stacklevel=2,
    )


def _rgb_tensor(image: Image.Image, size: int | None) -> Tensor:
    """An RGB PIL image as ``uint8`` ``(3, H, W)``, fitted to ``size`` when given."""
    rgb = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
    return rgb if size is None else fit_to_size(rgb, size)


def _as_list(items: list[tuple[Tensor, int]]) -> list[tuple[Tensor, int]]:
    return items


def load_protected_set(
    index: ImageFolderIndex,
    protector: Protector | str | Path,
    size: int | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 64,
    workers: int = 0,
) -> ImageSet:
    """Recover every file of a protected folder into an `invprotect.data.ImageSet`, in memory.

    The counterpart of `invprotect.data.load_image_set` for the key holder: the same
    pixels as decoding the originals (so the same `ImageSet.fingerprint`), and nothing is
    written to disk (no decoding cache either: it would hold the originals).

    Args:
        index: The protected files (from `invprotect.data.scan_image_folder` or
            `invprotect.data.train_test_split` on the protected folder).
        protector: The key (see `ProtectedImageFolder`).
        size: Working size (see `invprotect.data.fit_to_size`); ``None`` keeps the
            stored size, which must then be the same for every image.
        progress: Called with the number of files just recovered.
        batch_size: Files recovered per call of the protector.
        workers: DataLoader worker processes (``0``: this process).

    Raises:
        ProtectedFileError: If a file cannot give its original (named in the message).
        ValueError: If the folder is empty or sizes differ and ``size`` is ``None``.
    """
    if not index.samples:
        raise ValueError(f"{index.root} holds no protected images")
    dataset = ProtectedImageFolder(index, protector, partial(_rgb_tensor, size=size))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_as_list)
    images: list[Tensor] = []
    for batch in loader:
        images.extend(image for image, _ in batch)
        if progress is not None:
            progress(len(batch))
    shapes = {tuple(t.shape) for t in images}
    if len(shapes) > 1:
        raise ValueError(
            f"images under {index.root} have different sizes ({len(shapes)} shapes, e.g. "
            f"{sorted(shapes)[:3]}); pass a working size to resize them"
        )
    return ImageSet(
        torch.stack(images),
        torch.tensor(dataset.targets, dtype=torch.long),
        list(index.classes),
        [path.relative_to(index.root).as_posix() for path, _ in index.samples],
    )
