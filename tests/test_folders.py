"""Protect and recover whole folders: bit-exact through PNG files, modes, resume, bad files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invprotect.files.images import pixel_digest
from invprotect.files.manifest import MANIFEST, read_manifest
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.models import RAEG
from tests.contracts import tiny_raeg


@pytest.fixture(scope="module")
def raeg() -> RAEG:
    return tiny_raeg(0)


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_round_trip_through_png_files_is_bit_exact(
    raeg: RAEG, mixed_tree: Path, tmp_path: Path
) -> None:
    before = _digests(mixed_tree)
    report = protect_tree(mixed_tree, tmp_path / "prt", raeg, batch_size=4)
    assert report.ok and report.written == 8
    assert _digests(mixed_tree) == before  # originals untouched
    protected = Image.open(tmp_path / "prt" / "ship" / "odd.png")
    assert protected.size == (48, 36)  # padded to a multiple of 4, cropped back on recovery
    assert Image.open(tmp_path / "prt" / "ship" / "alpha.png").mode == "RGBA"
    entries = read_manifest(tmp_path / "prt" / MANIFEST)
    assert len(entries) == 8 and all(e["psnr"] > 5 for e in entries.values())
    back = recover_tree(tmp_path / "prt", tmp_path / "rec", raeg)
    assert back.ok and not back.altered and back.written == 8
    keys = raeg.keys
    for relative, entry in entries.items():
        original = Image.open(mixed_tree / relative)
        recovered = Image.open(tmp_path / "rec" / entry["output"])
        assert recovered.mode == original.mode, relative
        assert pixel_digest(recovered) == pixel_digest(original)
        assert keys.original_mac(pixel_digest(original)) == entry["original_mac"]


def test_resume_after_a_killed_run_gives_the_same_outputs(
    raeg: RAEG, mixed_tree: Path, tmp_path: Path
) -> None:
    protect_tree(mixed_tree, tmp_path / "full", raeg, batch_size=3)
    calls = []

    def kill_after_first_batch(count: int) -> None:
        calls.append(count)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        protect_tree(
            mixed_tree, tmp_path / "part", raeg, batch_size=3, progress=kill_after_first_batch
        )
    assert len(read_manifest(tmp_path / "part" / MANIFEST)) == 3
    report = protect_tree(mixed_tree, tmp_path / "part", raeg, batch_size=3)
    assert (report.skipped, report.written) == (3, 5)
    full, part = _digests(tmp_path / "full"), _digests(tmp_path / "part")
    assert {k: v for k, v in full.items() if k != MANIFEST} == {
        k: v for k, v in part.items() if k != MANIFEST
    }


def test_interrupted_recovery_resumes(raeg: RAEG, mixed_tree: Path, tmp_path: Path) -> None:
    protect_tree(mixed_tree, tmp_path / "prt", raeg)

    def kill_after_first_batch(count: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        recover_tree(tmp_path / "prt", tmp_path / "rec", raeg, 3, kill_after_first_batch)
    report = recover_tree(tmp_path / "prt", tmp_path / "rec", raeg, batch_size=3)
    assert (report.skipped, report.written) == (3, 5) and report.ok
    for relative, entry in read_manifest(tmp_path / "prt" / MANIFEST).items():
        recovered = Image.open(tmp_path / "rec" / entry["output"])
        assert pixel_digest(recovered) == pixel_digest(Image.open(mixed_tree / relative))


def test_bad_files_are_reported_and_the_run_goes_on(
    raeg: RAEG, mixed_tree: Path, tmp_path: Path
) -> None:
    (mixed_tree / "cat" / "empty.png").write_bytes(b"")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint16)).save(mixed_tree / "cat" / "deep.png")
    Image.new("CMYK", (8, 8)).save(mixed_tree / "cat" / "print.jpg")
    report = protect_tree(mixed_tree, tmp_path / "prt", raeg)
    assert report.written == 8 and not report.ok
    reasons = dict(report.failed)
    assert "empty file" in reasons["cat/empty.png"]
    assert "unsupported mode" in reasons["cat/deep.png"]
    assert "CMYK" in reasons["cat/print.jpg"]


def test_altered_files_are_detected_and_recovered_approximately(
    raeg: RAEG, mixed_tree: Path, tmp_path: Path
) -> None:
    protect_tree(mixed_tree, tmp_path / "prt", raeg)
    target = tmp_path / "prt" / "ship" / "big.png"
    pixels = np.asarray(Image.open(target)).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(target)  # re-encoded: the record chunk is dropped
    report = recover_tree(tmp_path / "prt", tmp_path / "rec", raeg)
    assert report.altered == ["ship/big.png"]
    assert report.mismatched == ["ship/big.png"]  # the manifest says it is not the original
    original = np.asarray(Image.open(mixed_tree / "ship" / "big.png")).astype(float)
    approx = np.asarray(Image.open(tmp_path / "rec" / "ship" / "big.png")).astype(float)
    assert 10 * np.log10(255**2 / np.mean((original - approx) ** 2)) > 30


def test_output_inside_the_source_is_refused(raeg: RAEG, mixed_tree: Path) -> None:
    with pytest.raises(ValueError, match="must not be SRC"):
        protect_tree(mixed_tree, mixed_tree / "out", raeg)
    with pytest.raises(ValueError, match="does not exist"):
        protect_tree(mixed_tree / "missing", mixed_tree.parent / "out", raeg)
