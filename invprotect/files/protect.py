"""Protect a tree of images: PNG files with a sealed recovery record, and a manifest.

`protect_tree` walks SRC (`invprotect.files.tree`), reads each image
(`invprotect.files.images.read_source`), pads it to the protector's sides, protects
equal sizes in one call of `Protector.encode` (large images as independent tiles,
`invprotect.tiles`), writes each PNG atomically with its sealed record, and appends one
manifest line per file (keyed digests only, see `invprotect.record`). A run started
again skips a file only when its manifest entry, its output and its source still agree
(`invprotect.files.manifest.unfinished`); a destination protected under another key is
refused before anything is written. Sharded runs (see `invprotect.sharding`) append to
their own manifest part, folded into the manifest when they end.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from invprotect.files.images import (
    BadImageError,
    SourceImage,
    pad_to_multiple,
    read_source,
    rgb_digest,
)
from invprotect.files.locks import DestinationError
from invprotect.files.manifest import (
    append_entries,
    manifest_paths,
    merge_idle_parts,
    read_manifest,
    read_resume,
    unfinished,
    write_manifest,
)
from invprotect.files.png import encode_png
from invprotect.files.tree import (
    Job,
    TreeReport,
    batches,
    destination,
    start_run,
    unsafe_output,
    write_output,
)
from invprotect.metrics import psnr, ssim
from invprotect.models.protector import Protector
from invprotect.record import RECORD_CHUNK, RecordKeys, RecoveryRecord
from invprotect.sharding import Shard
from invprotect.tiles import encode_tiles, needs_tiles, tile_side, tiled_quality


def protect_tree(
    src: Path,
    dst: Path,
    protector: Protector,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    shard: Shard | None = None,
    started: Callable[[int], None] | None = None,
) -> TreeReport:
    """Protect every image under ``src`` into ``dst`` (PNG with a sealed recovery record).

    ``protector`` is any `Protector` (`RAEG`, or a baseline `RAE` or `RIT`); its
    `Protector.encode` makes the pixels and record bytes of each file (given its class
    folder as its label, `Job.label`, which a poison pushes from). With ``shard``
    (of more than one), only that shard's files, with the same bytes as an unsharded
    run, and their manifest entries go through the shard's part (see the module's notes).
    ``progress`` is called with the number of files of each batch done, ``started`` once
    with the number of files the run will look at (a progress bar's total).

    Raises:
        ValueError: If ``src`` does not exist or the manifest cannot be read.
        DestinationError: If ``dst`` overlaps ``src``, cannot be written, is locked by
            another run, or holds files protected under another key.
    """
    run = start_run(src, dst, shard, started)
    root, shard, scan, report = run.root, run.shard, run.scan, run.report
    keys = protector.keys
    manifest_paths(root, shard)  # refuse a linked manifest before anything is written
    with destination(root, report, shard, [job.output for job in scan.jobs]):
        resume = read_resume(root, shard, "key_id", report.warnings)
        others = resume.others(keys.key_id)
        if others:
            raise DestinationError(
                f"DST {root} holds files protected under another key ({others[0][:12]}...); "
                "protect into a new folder, or use the protector that protected them"
            )
        resume.tidy()
        redone = False
        for batch in batches(scan.jobs, batch_size):
            todo = []
            for job in batch:
                try:
                    source = read_source(job.source)
                except BadImageError as error:
                    report.failed.append((job.relative, str(error)))
                    continue
                mac = keys.original_mac(source.digest)
                entry = resume.done.get(job.relative)
                if entry is not None:
                    problem = _unfinished(entry, job, root, keys.key_id, mac)
                    if problem is None:
                        report.skipped += 1
                        continue
                    report.warnings.append(f"{job.relative}: {problem}; protected again")
                    redone = True
                unsafe = unsafe_output(root, job.output)
                if unsafe is not None:
                    report.failed.append((job.relative, unsafe))
                    continue
                todo.append((job, source, mac))
            _protect_batch(protector, keys, todo, root, resume.path, report)
            if progress is not None:
                progress(len(batch))
        if redone:
            write_manifest(resume.path, read_manifest(resume.path))
    if shard is not None:
        merge_idle_parts(root, report.warnings)
    return report


def _unfinished(entry: dict, job: Job, root: Path, key_id: str, mac: str) -> str | None:
    """Why a manifest entry does not prove its job done (``None`` when it does)."""
    expected = (
        ("key_id", key_id, "its manifest entry names another key"),
        (
            "output",
            job.output.relative_to(root).as_posix(),
            "its manifest entry names another output",
        ),
        ("original_mac", mac, "the source changed since it was protected"),
    )
    return unfinished(entry, expected, job.output, "protected_file_sha256")


def _protect_batch(
    protector: Protector,
    keys: RecordKeys,
    todo: list[tuple[Job, SourceImage, str]],
    root: Path,
    manifest_path: Path,
    report: TreeReport,
) -> None:
    """Protect one batch of prepared images, write their files and manifest entries."""
    groups: dict[tuple[int, int], list[tuple[Job, SourceImage, torch.Tensor]]] = {}
    macs = {job.relative: mac for job, _, mac in todo}
    side = tile_side(protector.side_multiple)
    finished: list[tuple[Job, SourceImage, torch.Tensor, bytes, dict]] = []
    for job, source, _ in todo:
        padded = pad_to_multiple(source.rgb, protector.side_multiple)
        if not needs_tiles(*padded.shape[-2:], side):
            groups.setdefault(tuple(padded.shape[-2:]), []).append((job, source, padded))
            continue
        try:
            image, layout, residual = encode_tiles(protector, padded, side)
        except ValueError as error:
            report.failed.append((job.relative, str(error)))
            continue
        finished.append((job, source, image, residual, {**source.extra, "tiles": layout.to_dict()}))
    for whole_group in groups.values():
        group, protected, residuals = _encode(protector, whole_group, report)
        finished += [
            (job, source, image, residual, source.extra)
            for (job, source, _), image, residual in zip(group, protected, residuals, strict=True)
        ]
    qualities = _quality(finished, side)
    entries = []
    try:
        for (job, source, image, residual, extra), quality in zip(finished, qualities, strict=True):
            height, width = source.rgb.shape[-2:]
            record = RecoveryRecord(
                source.mode,
                height,
                width,
                macs[job.relative],
                rgb_digest(image),
                keys.key_id,
                residual,
                extra,
            )
            pixels = image.permute(1, 2, 0).numpy()
            if source.alpha is not None:
                alpha = np.pad(
                    source.alpha,
                    ((0, image.shape[1] - height), (0, image.shape[2] - width)),
                    mode="edge",
                )
                pixels = np.dstack([pixels, alpha])
            data = encode_png(pixels, {RECORD_CHUNK: record.seal(keys)})
            if not write_output(job, data, report):
                continue
            entries.append(
                {
                    "path": job.relative,
                    "output": job.output.relative_to(root).as_posix(),
                    "original_mac": macs[job.relative],
                    "key_id": keys.key_id,
                    "protected_file_sha256": hashlib.sha256(data).hexdigest(),
                    "psnr": round(quality[0], 3),
                    "ssim": round(quality[1], 4),
                    "record_bytes": len(residual),
                }
            )
    finally:  # the files written so far are done, whatever stopped the batch
        append_entries(manifest_path, entries)
        report.written += len(entries)


def _quality(
    finished: list[tuple[Job, SourceImage, torch.Tensor, bytes, dict]], side: int
) -> list[tuple[float, float]]:
    """PSNR and SSIM of each protected image against its original (same sizes at once)."""
    qualities: list[tuple[float, float]] = [(0.0, 0.0)] * len(finished)
    same_size: dict[tuple[int, int], list[int]] = {}
    for index, (_, source, image, _, extra) in enumerate(finished):
        height, width = source.rgb.shape[-2:]
        if "tiles" in extra:
            qualities[index] = tiled_quality(image[:, :height, :width], source.rgb, side)
        else:
            same_size.setdefault((height, width), []).append(index)
    for (height, width), indices in same_size.items():
        crops = torch.stack([finished[i][2][:, :height, :width] for i in indices]).float() / 255
        originals = torch.stack([finished[i][1].rgb for i in indices]).float() / 255
        psnrs = psnr(crops, originals, max_db=100.0).tolist()
        ssims = ssim(crops, originals).tolist()
        for i, index in enumerate(indices):
            qualities[index] = psnrs[i], ssims[i]
    return qualities


def _encode(
    protector: Protector,
    group: list[tuple[Job, SourceImage, torch.Tensor]],
    report: TreeReport,
) -> tuple[list[tuple[Job, SourceImage, torch.Tensor]], list[torch.Tensor], list[bytes]]:
    """Protect one group of equal size; when that fails, one image at a time, to name it."""
    try:
        protected, residuals = protector.encode(
            torch.stack([padded for _, _, padded in group]), [job.label for job, _, _ in group]
        )
        return group, list(protected), residuals
    except ValueError as error:
        if len(group) == 1:
            report.failed.append((group[0][0].relative, str(error)))
            return [], [], []
    kept, images, records = [], [], []
    for item in group:
        try:
            protected, residuals = protector.encode(item[2][None], [item[0].label])
        except ValueError as error:  # e.g. an image too small to hold a baseline's data
            report.failed.append((item[0].relative, str(error)))
            continue
        kept.append(item)
        images.append(protected[0])
        records.append(residuals[0])
    return kept, images, records
