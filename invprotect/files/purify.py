"""Purify a tree of images with a defence, as a thief would before training on them.

`purify_tree` walks SRC with the tree walker of protect and recover
(`invprotect.files.tree`), applies the defence to images of equal size in one call, and
writes each result as a lossless PNG (relative paths kept). A folder run holds DST's
lock and keeps the shared manifest (`invprotect.files.manifest`): one line per image
with the defence's settings and the digests of its source and output, so a run started
again skips an image only when its entry, its output and its source still agree. A
destination purified with other settings is refused unless ``overwrite``.

A destination written before this manifest (it holds `LEGACY_SETTINGS_FILE`, the
settings of the whole folder) resumes too: with the same settings its existing outputs
are kept as finished and entered into the manifest; with other settings it is refused.
One file (SRC a file) keeps no manifest: its output is kept when present, unless
``overwrite``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from invprotect.defences import Defence, create_defence, parse_defence_spec, sample_generators
from invprotect.files.images import IMAGE_SUFFIXES, BadImageError, read_rgb
from invprotect.files.locks import DestinationError
from invprotect.files.manifest import (
    append_entry,
    file_sha256,
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
    TreeScan,
    batches,
    destination,
    paths_overlap,
    scan_tree,
    unsafe_output,
    write_output,
)
from invprotect.sharding import Shard

LEGACY_SETTINGS_FILE = ".invprotect-purify.json"
"""Where purify kept a folder's settings before the shared manifest (still read)."""


def purify_settings(name: str, kwargs: dict[str, Any], seed: int | None) -> str:
    """The settings text of a purify run: canonical spec, and the seed of a random defence.

    Example:
        >>> purify_settings("jpeg", {"quality": 50}, None)
        'jpeg:quality=50'
        >>> purify_settings("gaussian_noise", {}, 3)
        'gaussian_noise seed=3'
    """
    items = ",".join(f"{key}={kwargs[key]!r}" for key in sorted(kwargs))
    spec = f"{name}:{items}" if items else name
    return spec if seed is None else f"{spec} seed={seed}"


def purify_tree(
    src: Path,
    dst: Path,
    defence: str,
    batch_size: int = 64,
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    started: Callable[[int], None] | None = None,
    shard: Shard | None = None,
) -> TreeReport:
    """Apply ``defence`` to every image under ``src`` (or to ``src``) into ``dst`` as PNG.

    Args:
        src: An image file, or a folder of images (searched recursively; never modified).
        dst: The output folder, or a ``.png`` path for one file.
        defence: ``NAME[:key=value,...]`` (see `invprotect.defences.parse_defence_spec`).
        batch_size: Images per defence call.
        seed: Seed of random defences, mixed with each file's relative path (the bytes do
            not depend on batching or sharding).
        overwrite: Recompute every output, whatever the manifest says.
        progress: Called with the number of files of each batch done (or skipped).
        started: Called once with the number of files this run will look at.
        shard: Only this shard's files (see `invprotect.sharding`).

    Raises:
        UnknownNameError: If the defence's name is unknown.
        ValueError: For a bad spec, a missing SRC, no image files under it, or an output
            that would replace SRC.
        DestinationError: If DST overlaps SRC, cannot be written, is locked, or holds
            images purified with other settings (without ``overwrite``).
    """
    name, kwargs = parse_defence_spec(defence)
    model = create_defence(name, **kwargs)
    settings = purify_settings(name, kwargs, seed if model.stochastic else None)
    shard = None if shard is None or shard.count == 1 else shard
    scan = _scan(src, dst)
    if shard is not None:
        scan = scan.of_shard(shard)
    report = TreeReport(failed=list(scan.failed), skipped_files=list(scan.skipped))
    if started is not None:
        started(len(scan.jobs))
    run = _Run(model, seed, settings, report)
    if src.is_file():
        job = scan.jobs[0]
        if job.output.exists() and not overwrite:
            report.skipped += 1
        else:
            run.purify([job])
        if progress is not None:
            progress(1)
        return report
    root = dst.resolve()
    manifest_paths(root, shard)  # refuse a linked manifest before anything is written
    with destination(root, report, shard, [job.output for job in scan.jobs]):
        run.manifest = _open_manifest(root, shard, settings, overwrite, report)
        for batch in batches(scan.jobs, batch_size):
            run.purify(run.todo(batch, root, overwrite))
            if progress is not None:
                progress(len(batch))
        if run.redone:
            write_manifest(run.manifest.path, read_manifest(run.manifest.path))
        if shard is None:
            (root / LEGACY_SETTINGS_FILE).unlink(missing_ok=True)
    if shard is not None:
        merge_idle_parts(root, report.warnings)
    return report


def _scan(src: Path, dst: Path) -> TreeScan:
    """The jobs of a purify run, refusing a missing SRC and outputs among the originals.

    Raises:
        ValueError: If SRC does not exist, holds no image file, or is one file whose
            output would replace it.
        DestinationError: If SRC is a folder that DST overlaps.
    """
    if not src.exists():
        raise ValueError(f"SRC {src} does not exist")
    src_abs, dst_abs = src.resolve(), dst.resolve()
    if src.is_dir() and paths_overlap(src_abs, dst_abs):
        raise DestinationError(
            f"DST {dst} and SRC {src} overlap (equal, or one inside the other); "
            "choose a DST outside SRC so that SRC is never modified"
        )
    scan = scan_tree(src_abs, dst_abs)
    if src.is_file() and scan.jobs and scan.jobs[0].output == src_abs:
        raise ValueError(f"the output {scan.jobs[0].output} would replace SRC; choose another DST")
    if not scan.jobs and not scan.failed:
        raise ValueError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {src}")
    return scan


def _open_manifest(
    root: Path, shard: Shard | None, settings: str, overwrite: bool, report: TreeReport
) -> _Manifest:
    """Read what is done in ``root``, refusing other settings unless ``overwrite``.

    Raises:
        DestinationError: If entries (or a legacy settings file) name other settings.
    """
    resume = read_resume(root, shard, "settings", report.warnings)
    legacy = _legacy_settings(root / LEGACY_SETTINGS_FILE)
    others = resume.others(settings) + ([legacy] if legacy not in (None, settings) else [])
    if others and not overwrite:
        raise DestinationError(
            f"{root} holds images purified with different settings ({others[0]}); choose "
            "another DST, or pass --overwrite to recompute every image"
        )
    if overwrite:
        write_manifest(resume.path, {})
    else:
        resume.tidy()
    done = {} if overwrite else resume.done
    return _Manifest(resume.path, done, adopt=legacy == settings and not overwrite)


def _legacy_settings(path: Path) -> str | None:
    """The settings in a folder's legacy settings file (``None`` without one)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (ValueError, OSError):
        return f"an unreadable {path.name}"
    if not isinstance(record, dict) or not isinstance(record.get("defence"), str):
        return f"{path.name}: {record}"
    seed = record.get("seed")
    return record["defence"] if seed is None else f"{record['defence']} seed={seed}"


@dataclass
class _Manifest:
    """Where a folder run appends its entries, and the entries of its files done before.

    ``adopt``: outputs without an entry count as finished (a legacy run with these
    settings wrote them); they are entered into the manifest.
    """

    path: Path
    done: dict[str, dict]
    adopt: bool


class _Run:
    """One purify run: the defence, its settings, the report and (for a folder) its manifest."""

    def __init__(self, model: Defence, seed: int, settings: str, report: TreeReport) -> None:
        self.model = model
        self.seed = seed
        self.settings = settings
        self.report = report
        self.manifest: _Manifest | None = None
        self.redone = False

    def todo(self, batch: list[Job], root: Path, overwrite: bool) -> list[Job]:
        """The jobs of ``batch`` that are not finished (the shared resume rule)."""
        assert self.manifest is not None
        todo = []
        for job in batch:
            entry = self.manifest.done.get(job.relative)
            if entry is None and self.manifest.adopt and job.output.is_file():
                self._enter(job, root, file_sha256(job.output))  # a legacy run's output
                self.report.skipped += 1
                continue
            if entry is not None:
                expected = (
                    ("settings", self.settings, "its manifest entry names other settings"),
                    ("output", _relative(job, root), "its manifest entry names another output"),
                    ("source_sha256", file_sha256(job.source), "the source changed"),
                )
                problem = unfinished(entry, expected, job.output, "purified_file_sha256")
                if problem is None:
                    self.report.skipped += 1
                    continue
                self.report.warnings.append(f"{job.relative}: {problem}; purified again")
                self.redone = True
            unsafe = unsafe_output(root, job.output)
            if unsafe is not None:
                self.report.failed.append((job.relative, unsafe))
                continue
            todo.append(job)
        return todo

    def purify(self, jobs: list[Job]) -> None:
        """Read, purify and write ``jobs`` (equal sizes in one call of the defence)."""
        loaded: dict[tuple[int, int], list[tuple[Job, torch.Tensor]]] = {}
        for job in jobs:
            try:
                image = read_rgb(job.source)
            except BadImageError as error:
                self.report.failed.append((job.relative, str(error)))
                continue
            loaded.setdefault(tuple(image.shape[-2:]), []).append((job, image))
        for group in loaded.values():
            group_jobs = [job for job, _ in group]
            images = torch.stack([image for _, image in group]).float().div(255.0)
            generator = sample_generators(self.seed, [job.relative for job in group_jobs])
            try:
                purified = self.model(images, generator if self.model.stochastic else None)
            except (RuntimeError, ValueError) as error:
                self.report.failed.extend(
                    (job.relative, f"defence failed: {error}") for job in group_jobs
                )
                continue
            as_bytes = purified.mul(255.0).round().clamp(0, 255).to(torch.uint8).cpu()
            for job, image in zip(group_jobs, as_bytes, strict=True):
                data = encode_png(image.permute(1, 2, 0).contiguous().numpy())
                if not write_output(job, data, self.report):
                    continue
                self.report.written += 1
                if self.manifest is not None:
                    root = self.manifest.path.parent
                    self._enter(job, root, hashlib.sha256(data).hexdigest())

    def _enter(self, job: Job, root: Path, output_sha256: str | None) -> None:
        assert self.manifest is not None
        entry = {
            "path": job.relative,
            "output": _relative(job, root),
            "settings": self.settings,
            "source_sha256": file_sha256(job.source),
            "purified_file_sha256": output_sha256,
        }
        append_entry(self.manifest.path, entry)


def _relative(job: Job, root: Path) -> str:
    return job.output.relative_to(root).as_posix()
