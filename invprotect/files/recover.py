"""Recover a tree of protected PNGs: each original in its own mode, checked, written.

`recover_tree` walks SRC (`invprotect.files.tree`), opens each file and its sealed
record (`invprotect.files.protected`), restores untouched files of equal size in one
call of `Protector.decode` (files protected as tiles tile by tile, `invprotect.tiles`),
rebuilds each original with its metadata and checks it against the keyed digest in its
record (and in SRC's manifest, when there is one) before writing it atomically.
Altered files are recovered approximately and reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from invprotect.files.images import (
    BadImageError,
    encode_recovered,
    open_image,
    pad_to_multiple,
    pixel_digest,
)
from invprotect.files.manifest import MANIFEST, read_manifest
from invprotect.files.protected import (
    ProtectedFile,
    approximate_original,
    matches_record,
    open_protected,
    rebuild_original,
)
from invprotect.files.tree import (
    Job,
    TreeReport,
    batches,
    destination,
    start_run,
    unsafe_output,
    write_output,
)
from invprotect.models.protector import Protector
from invprotect.record import BadRecordError, RecordKeys
from invprotect.sharding import Shard
from invprotect.tiles import (
    TileLayout,
    approximate_tiles,
    decode_tiles,
    needs_tiles,
    tile_count,
    tile_side,
)


def recover_tree(
    src: Path,
    dst: Path,
    protector: Protector,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    shard: Shard | None = None,
    started: Callable[[int], None] | None = None,
) -> TreeReport:
    """Recover every protected PNG under ``src`` into ``dst``, in each original's mode.

    Unaltered files come back bit for bit with their metadata (checked against the keyed
    digest in their record and, when ``src`` holds a ``manifest.jsonl``, against the
    manifest). Files sealed under another key, or with a corrupt record, fail and nothing
    is written for them. Altered files (or files without a record) are recovered
    approximately and listed in ``TreeReport.altered``. Untouched files that the protector
    recovers approximately by design (RAE whose perturbation did not fit) are listed in
    ``TreeReport.approximate``. Outputs that exist already are skipped only when they
    decode to the recorded original; others are recovered again. With ``shard`` (of
    more than one), only that shard's files. ``progress`` and ``started`` as for
    `invprotect.files.protect.protect_tree`.

    Raises:
        ValueError: If ``src`` does not exist.
        DestinationError: If ``dst`` overlaps ``src``, cannot be written or is locked.
    """
    run = start_run(src, dst, shard, started, protected_src=True)
    src, root, shard, scan, report = run.src, run.root, run.shard, run.scan, run.report
    expected = read_manifest(src / MANIFEST, report.warnings) if src.is_dir() else {}
    expected_by_output = {
        entry["output"]: entry
        for entry in expected.values()
        if isinstance(entry.get("output"), str)
    }
    context = _Context(protector, protector.keys, expected_by_output, report)
    with destination(root, report, shard, [job.output for job in scan.jobs]):
        for batch in batches(scan.jobs, batch_size):
            _recover_batch(batch, root, context)
            if progress is not None:
                progress(len(batch))
    return report


@dataclass
class _Context:
    """What recovering and finishing one file needs."""

    protector: Protector
    keys: RecordKeys
    expected_by_output: dict[str, dict]
    report: TreeReport


_Item = tuple[Job, ProtectedFile]


def _recover_batch(batch: list[Job], root: Path, context: _Context) -> None:
    """Open, recover and write one batch of jobs."""
    protector, report = context.protector, context.report
    opened: list[_Item] = []
    for job in batch:
        try:
            item = open_protected(job.source, context.keys, protector.side_multiple)
        except (BadImageError, BadRecordError) as error:
            report.failed.append((job.relative, str(error)))
            continue
        unsafe = unsafe_output(root, job.output)
        if unsafe is not None:
            report.failed.append((job.relative, unsafe))
            continue
        if job.output.exists():
            if item.untouched and _already_recovered(job.output, item, context.keys):
                report.skipped += 1
                continue
            report.warnings.append(
                f"{job.relative}: the existing output is not the recorded original; recovered again"
            )
        opened.append((job, item))
    for job, item in opened:
        if _tiles(item) is not None:
            _recover_tiled(job, item, context)
    opened = [(job, item) for job, item in opened if _tiles(item) is None]
    for group in _same_shape([pair for pair in opened if pair[1].untouched]):
        for (job, item), pixels, promised in _decode(protector, group, report):
            _finish_exact(job, item, pixels, promised, context)
    altered = [pair for pair in opened if not pair[1].untouched]
    report.altered.extend(job.relative for job, _ in altered)
    for group in _same_shape(altered, pad_to=protector.side_multiple):
        padded = torch.stack(
            [pad_to_multiple(item.rgb, protector.side_multiple) for _, item in group]
        )
        for (job, item), image in zip(group, _approximate(protector, padded), strict=True):
            _finish_altered(job, item, image, context)


def _tiles(item: ProtectedFile) -> TileLayout | None:
    """The tile layout of a file protected as tiles (``None`` for one untiled image)."""
    if item.record is None or "tiles" not in item.record.extra:
        return None
    return TileLayout.from_dict(item.record.extra["tiles"])


def _already_recovered(path: Path, item: ProtectedFile, keys: RecordKeys) -> bool:
    """Whether the file at ``path`` decodes to the original recorded in ``item``."""
    assert item.record is not None
    try:
        image = open_image(path)
    except BadImageError:
        return False
    return matches_record(image, item.record, keys)


def _decode(
    protector: Protector, group: list[_Item], report: TreeReport
) -> list[tuple[_Item, torch.Tensor, bool]]:
    """Restore one group of equal size; when that fails, one image at a time, to name it."""
    try:
        restored, promised = protector.decode(
            torch.stack([item.rgb for _, item in group]),
            [item.record.residual for _, item in group if item.record is not None],
        )
        return list(zip(group, restored, promised, strict=True))
    except ValueError as error:
        if len(group) == 1:
            job = group[0][0]
            report.failed.append((job.relative, f"{job.source}: {error}"))
            return []
    results = []
    for pair in group:
        results.extend(_decode(protector, [pair], report))
    return results


def _recover_tiled(job: Job, item: ProtectedFile, context: _Context) -> None:
    """Recover a file protected as tiles: untouched tiles exactly, altered ones approximately."""
    layout = _tiles(item)
    assert item.record is not None and layout is not None
    try:
        restored, promised, altered = decode_tiles(
            context.protector, item.rgb, item.record.residual, layout
        )
    except ValueError as error:
        context.report.failed.append((job.relative, f"{job.source}: {error}"))
        return
    if item.untouched:
        _finish_exact(job, item, restored, promised, context)
        return
    total = tile_count(*item.rgb.shape[-2:], layout.side)
    where = ", ".join(f"({tile.top}, {tile.left})" for tile in altered[:8])
    context.report.altered.append(job.relative)
    context.report.warnings.append(
        f"{job.relative}: {len(altered)} of {total} tiles of {layout.side} px altered "
        f"(top-left corners {where}{', ...' if len(altered) > 8 else ''}); those are "
        "recovered approximately, the others bit for bit"
    )
    _finish_altered(job, item, restored, context)


def _approximate(protector: Protector, padded: torch.Tensor) -> torch.Tensor:
    """`Protector.approximate` of padded images, tile by tile when they are large."""
    side = tile_side(protector.side_multiple)
    if not needs_tiles(*padded.shape[-2:], side):
        return protector.approximate(padded)
    return torch.stack([approximate_tiles(protector, image, side) for image in padded])


def _same_shape(items: list[_Item], pad_to: int = 1) -> Iterator[list[_Item]]:
    """Groups of files whose pixels have one size (once padded to ``pad_to``)."""
    groups: dict[tuple[int, int], list[_Item]] = {}
    for pair in items:
        height, width = pair[1].rgb.shape[-2:]
        groups.setdefault((-(-height // pad_to), -(-width // pad_to)), []).append(pair)
    yield from groups.values()


def _finish_exact(
    job: Job, item: ProtectedFile, restored: torch.Tensor, promised: bool, context: _Context
) -> None:
    """Rebuild the original's mode and metadata, check it and write it."""
    record = item.record
    assert record is not None
    try:
        image = rebuild_original(item, restored, promised)
        data = encode_recovered(image, record.extra.get("metadata", {}))
    except ValueError as error:
        context.report.failed.append((job.relative, f"{job.source}: {error}"))
        return
    if not promised:
        context.report.approximate.append(job.relative)
    elif not matches_record(image, record, context.keys):
        context.report.mismatched.append(job.relative)
    _write_recovered(job, image, data, context, check=promised)


def _finish_altered(job: Job, item: ProtectedFile, pixels: torch.Tensor, context: _Context) -> None:
    """Write the approximate recovery of an altered file (with its metadata when known)."""
    image = approximate_original(item, pixels)
    metadata = {} if item.record is None else item.record.extra.get("metadata", {})
    try:
        data = encode_recovered(image, metadata)
    except ValueError:
        data = encode_recovered(image, {})
        context.report.warnings.append(f"{job.relative}: its metadata could not be restored")
    _write_recovered(job, image, data, context, check=True)


def _write_recovered(
    job: Job, image: Image.Image, data: bytes, context: _Context, check: bool
) -> None:
    """Write one recovery; with ``check``, compare it with the manifest when there is one."""
    entry = context.expected_by_output.get(job.relative)
    if check and entry is not None and isinstance(entry.get("original_mac"), str):
        if context.keys.original_mac(pixel_digest(image)) != entry["original_mac"]:
            if job.relative not in context.report.mismatched:
                context.report.mismatched.append(job.relative)
    if write_output(job, data, context.report):
        context.report.written += 1
