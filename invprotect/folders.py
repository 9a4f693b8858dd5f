"""Protect and recover whole trees of image files: batches, manifest, resume, bad files.

Outputs keep the relative paths of the source tree (as PNG), are written atomically,
and are never written inside the source tree, so originals are never touched. A run
appends one JSON line per finished image to ``DST/manifest.jsonl``; an interrupted run
started again skips the images already listed there (recovery, which writes no manifest,
skips the outputs that exist: they were written atomically, so they are complete). Files
that cannot be used are reported and skipped. Work goes in batches of a fixed size, so
memory does not grow with the number of files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from invprotect.checkpoint import atomic_write_bytes
from invprotect.filecodec import FileCodec, file_codec
from invprotect.imageio import (
    IMAGE_SUFFIXES,
    BadImageError,
    SourceImage,
    open_image,
    pixel_digest,
    prepare_image,
    rebuild_image,
)
from invprotect.models.protector import Protector
from invprotect.pngio import encode_png, read_chunks
from invprotect.record import RECORD_CHUNK, RecoveryRecord

MANIFEST = "manifest.jsonl"
"""Name of the manifest written into the destination folder."""


@dataclass(frozen=True)
class Job:
    """One input file, its path relative to the source root, and its output file."""

    source: Path
    relative: str
    output: Path


def paths_overlap(a: Path, b: Path) -> bool:
    """Whether one of two (absolute) paths is, or lies inside, the other."""
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def collect_jobs(src: Path, dst: Path) -> tuple[list[Job], list[tuple[str, str]]]:
    """The image files under ``src`` (or ``src`` itself) with their PNG outputs under ``dst``.

    Hidden files and folders are skipped. Returns the jobs and the files refused
    (relative path, reason), for example two inputs that would share one output.
    """
    if src.is_file():
        output = dst if dst.suffix.lower() == ".png" else dst / f"{src.stem}.png"
        return [Job(src, src.name, output)], []
    files = sorted(
        path
        for path in src.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(src).parts)
    )
    jobs: list[Job] = []
    refused: list[tuple[str, str]] = []
    claimed: dict[Path, str] = {}
    for path in files:
        relative = path.relative_to(src).as_posix()
        output = dst / Path(relative).with_suffix(".png")
        if output in claimed:
            refused.append(
                (relative, f"its output {output} is already the output of {claimed[output]}")
            )
            continue
        claimed[output] = relative
        jobs.append(Job(path, relative, output))
    return jobs, refused


@dataclass
class TreeReport:
    """The outcome of `protect_tree` or `recover_tree`.

    Attributes:
        written: Images processed in this run.
        skipped: Images already finished by an earlier run.
        failed: ``(relative path, reason)`` of files that could not be processed.
        altered: Relative paths of protected files that were changed after protection
            (recovered approximately).
        mismatched: Relative paths whose recovery does not match the recorded original.
        approximate: Relative paths of untouched files that the protector recovers only
            approximately by design (RAE when its perturbation did not fit).
    """

    written: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    approximate: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed and no recovery mismatched."""
        return not self.failed and not self.mismatched


def read_manifest(path: Path) -> dict[str, dict]:
    """Entries of a manifest by relative source path (a torn last line is ignored)."""
    entries: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            entries[entry["path"]] = entry
    return entries


def _append(path: Path, entry: dict) -> None:
    with path.open("a") as file:
        file.write(json.dumps(entry, sort_keys=True) + "\n")
        file.flush()
        os.fsync(file.fileno())


def _batches(jobs: list[Job], size: int) -> Iterator[list[Job]]:
    for start in range(0, len(jobs), size):
        yield jobs[start : start + size]


def _pad(rgb: torch.Tensor, multiple: int) -> torch.Tensor:
    """Edge-replicate ``(3, H, W)`` up to sides divisible by ``multiple``."""
    height, width = rgb.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not pad_h and not pad_w:
        return rgb
    padded = np.pad(rgb.numpy(), ((0, 0), (0, pad_h), (0, pad_w)), mode="edge")
    return torch.from_numpy(padded)


def _checked_paths(src: Path, dst: Path) -> tuple[Path, Path]:
    """Absolute SRC and DST, refusing a missing SRC and a DST that could touch SRC."""
    src, dst = src.resolve(), dst.resolve()
    if not src.exists():
        raise ValueError(f"{src} does not exist")
    if src.is_dir() and paths_overlap(src, dst):
        raise ValueError(f"DST {dst} must not be SRC or lie inside it (or contain it)")
    if src.is_file() and dst == src:
        raise ValueError("the output would replace the original")
    return src, dst


def _rgb_digest(rgb: torch.Tensor) -> str:
    return hashlib.sha256(rgb.contiguous().numpy().tobytes()).hexdigest()


def protect_tree(
    src: Path,
    dst: Path,
    protector: Protector,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> TreeReport:
    """Protect every image under ``src`` into ``dst`` (PNG with a recovery record).

    ``protector`` is a `RAEG` or a baseline (`RAE`, `RIT`; see `invprotect.filecodec`).

    Raises:
        ValueError: If ``src`` does not exist or ``dst`` overlaps it.
    """
    src, dst = _checked_paths(src, dst)
    jobs, refused = collect_jobs(src, dst)
    report = TreeReport(failed=list(refused))
    manifest_path = (dst.parent if dst.suffix.lower() == ".png" else dst) / MANIFEST
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    done = read_manifest(manifest_path)
    codec = file_codec(protector)
    key = codec.key
    for batch in _batches(jobs, batch_size):
        todo = []
        for job in batch:
            if job.relative in done and job.output.is_file():
                report.skipped += 1
                continue
            try:
                todo.append((job, prepare_image(open_image(job.source))))
            except BadImageError as error:
                report.failed.append((job.relative, str(error)))
        groups: dict[tuple[int, int], list[tuple[Job, SourceImage, torch.Tensor]]] = {}
        for job, source in todo:
            padded = _pad(source.rgb, codec.side_multiple)
            groups.setdefault(tuple(padded.shape[-2:]), []).append((job, source, padded))
        for whole_group in groups.values():
            group, protected, residuals = _encode(codec, whole_group, report)
            for (job, source, _), image, residual in zip(group, protected, residuals, strict=True):
                height, width = source.rgb.shape[-2:]
                record = RecoveryRecord(
                    source.mode,
                    height,
                    width,
                    source.digest,
                    _rgb_digest(image),
                    key,
                    residual,
                    source.extra,
                )
                pixels = image.permute(1, 2, 0).numpy()
                if source.alpha is not None:
                    alpha = np.pad(
                        source.alpha,
                        ((0, image.shape[1] - height), (0, image.shape[2] - width)),
                        mode="edge",
                    )
                    pixels = np.dstack([pixels, alpha])
                data = encode_png(pixels, {RECORD_CHUNK: record.to_bytes()})
                atomic_write_bytes(job.output, data)
                crop = image[:, :height, :width].float()
                mse = (crop - source.rgb.float()).square().mean().item()
                _append(
                    manifest_path,
                    {
                        "path": job.relative,
                        "output": job.output.relative_to(manifest_path.parent).as_posix(),
                        "original_sha256": source.digest,
                        "protected_file_sha256": hashlib.sha256(data).hexdigest(),
                        "psnr": round(10 * np.log10(255**2 / max(mse, 1e-10)), 3),
                        "record_bytes": len(residual),
                    },
                )
                report.written += 1
        if progress is not None:
            progress(len(batch))
    return report


def _encode(
    codec: FileCodec, group: list[tuple[Job, SourceImage, torch.Tensor]], report: TreeReport
) -> tuple[list[tuple[Job, SourceImage, torch.Tensor]], list[torch.Tensor], list[bytes]]:
    """Protect one group of equal size; when that fails, one image at a time, to name it."""
    try:
        protected, residuals = codec.encode(torch.stack([padded for _, _, padded in group]))
        return group, list(protected), residuals
    except ValueError as error:
        if len(group) == 1:
            report.failed.append((group[0][0].relative, str(error)))
            return [], [], []
    kept, images, records = [], [], []
    for item in group:
        try:
            protected, residuals = codec.encode(item[2][None])
        except ValueError as error:  # e.g. an image too small to hold a baseline's data
            report.failed.append((item[0].relative, str(error)))
            continue
        kept.append(item)
        images.append(protected[0])
        records.append(residuals[0])
    return kept, images, records


def recover_tree(
    src: Path,
    dst: Path,
    protector: Protector,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> TreeReport:
    """Recover every protected PNG under ``src`` into ``dst``, in each original's mode.

    Unaltered files come back bit for bit (checked against the digest in their record
    and, when ``src`` holds a ``manifest.jsonl``, against the manifest). Altered files
    (or files without a record) are recovered approximately and listed in
    ``TreeReport.altered``. Untouched files that the protector recovers approximately by
    design (RAE whose perturbation did not fit) are listed in ``TreeReport.approximate``.
    Files are restored in batches of one size; outputs that exist already (from an
    interrupted run) are skipped.

    Raises:
        ValueError: If ``src`` does not exist or ``dst`` overlaps it.
    """
    src, dst = _checked_paths(src, dst)
    jobs, refused = collect_jobs(src, dst)
    report = TreeReport(failed=list(refused))
    expected = read_manifest(src / MANIFEST) if src.is_dir() else {}
    expected_by_output = {entry["output"]: entry for entry in expected.values()}
    codec = file_codec(protector)
    for batch in _batches(jobs, batch_size):
        opened = []
        for job in batch:
            if job.output.is_file():  # written atomically by an earlier run: complete
                report.skipped += 1
                continue
            try:
                opened.append(_open_protected(job))
            except (BadImageError, ValueError) as error:
                report.failed.append((job.relative, str(error)))
        exact = [item for item in opened if item.exact]
        altered = [item for item in opened if not item.exact]
        for group in _same_shape(exact):
            try:
                restored, promised = codec.decode(
                    torch.stack([item.rgb for item in group]),
                    [item.record.residual for item in group],
                )
            except ValueError as error:  # a corrupt residual
                for item in group:
                    report.failed.append((item.job.relative, str(error)))
                continue
            for item, pixels, exact in zip(group, restored, promised, strict=True):
                image = _rebuild_exact(item, pixels)
                if not exact:
                    report.approximate.append(item.job.relative)
                elif pixel_digest(image) != item.record.original_sha256:
                    report.mismatched.append(item.job.relative)
                _write_recovered(item.job, image, expected_by_output, report, check=exact)
        for item in altered:
            report.altered.append(item.job.relative)
        for group in _same_shape(altered, pad_to=codec.side_multiple):
            padded = torch.stack([_pad(item.rgb, codec.side_multiple) for item in group])
            for item, image in zip(group, codec.approximate(padded), strict=True):
                image = _rebuild_altered(item, image)
                _write_recovered(item.job, image, expected_by_output, report, check=True)
        if progress is not None:
            progress(len(batch))
    return report


@dataclass
class _Protected:
    """A protected file read for recovery."""

    job: Job
    rgb: torch.Tensor  # (3, H, W) uint8
    alpha: np.ndarray | None
    record: RecoveryRecord | None

    @property
    def exact(self) -> bool:
        """True when the file is as protected (its record matches its pixels)."""
        return self.record is not None and _rgb_digest(self.rgb) == self.record.protected_sha256


def _open_protected(job: Job) -> _Protected:
    data = job.source.read_bytes()
    image = open_image(job.source)
    try:
        record = RecoveryRecord.from_bytes(read_chunks(data)[RECORD_CHUNK])
    except (KeyError, ValueError):
        record = None
    alpha = np.asarray(image.getchannel("A")).copy() if image.mode in ("RGBA", "LA") else None
    rgb = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
    return _Protected(job, rgb, alpha, record)


def _same_shape(items: list[_Protected], pad_to: int = 1) -> Iterator[list[_Protected]]:
    groups: dict[tuple[int, int], list[_Protected]] = {}
    for item in items:
        height, width = item.rgb.shape[-2:]
        groups.setdefault((-(-height // pad_to), -(-width // pad_to)), []).append(item)
    yield from groups.values()


def _rebuild_exact(item: _Protected, restored: torch.Tensor) -> Image.Image:
    record = item.record
    assert record is not None
    alpha = item.alpha
    if alpha is not None:
        alpha = alpha[: record.height, : record.width]
    restored = restored[:, : record.height, : record.width]
    return rebuild_image(restored, alpha, record.mode, record.extra)


def _rebuild_altered(item: _Protected, pixels: torch.Tensor) -> Image.Image:
    height, width = item.rgb.shape[-2:]
    if item.record is not None:
        height, width = min(height, item.record.height), min(width, item.record.width)
    out = pixels[:, :height, :width].permute(1, 2, 0).contiguous().numpy()
    if item.alpha is not None:
        return Image.fromarray(np.dstack([out, item.alpha[:height, :width]]), "RGBA")
    return Image.fromarray(out, "RGB")


def _write_recovered(
    job: Job,
    image: Image.Image,
    expected_by_output: dict[str, dict],
    report: TreeReport,
    check: bool,
) -> None:
    """Write one recovery; with ``check``, compare it with the manifest when there is one."""
    entry = expected_by_output.get(job.relative)
    if check and entry is not None and pixel_digest(image) != entry["original_sha256"]:
        report.mismatched.append(job.relative)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(job.output, buffer.getvalue())
    report.written += 1
