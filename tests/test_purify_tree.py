"""`purify_tree`: the shared manifest and resume rule, and destinations of the legacy format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invprotect.files.locks import DestinationError
from invprotect.files.manifest import MANIFEST, read_manifest
from invprotect.files.purify import LEGACY_SETTINGS_FILE, purify_tree


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Six small colour images in two class folders."""
    rng = np.random.default_rng(0)
    root = tmp_path / "src"
    for index in range(6):
        folder = root / ("a" if index < 3 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (12, 10 + index, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def _bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_a_changed_source_or_output_is_purified_again(tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    first = purify_tree(tree, dst, "grayscale", batch_size=4)
    assert first.written == 6 and first.ok
    entries = read_manifest(dst / MANIFEST)
    assert {entry["settings"] for entry in entries.values()} == {"grayscale"}
    assert {entry["output"] for entry in entries.values()} == set(_bytes(dst))

    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(tree / "a" / "0.png")
    (dst / "b" / "5.png").write_bytes(b"damaged")
    again = purify_tree(tree, dst, "grayscale")
    assert (again.written, again.skipped) == (2, 4)
    assert any("a/0.png: the source changed" in message for message in again.warnings)
    assert any("b/5.png: its output is missing or was changed" in m for m in again.warnings)
    assert np.asarray(Image.open(dst / "a" / "0.png")).max() == 0
    assert len(read_manifest(dst / MANIFEST)) == 6
    assert (dst / MANIFEST).read_bytes().count(b"\n") == 6  # rewritten: one line per file


def test_other_settings_are_refused_unless_overwrite(tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    purify_tree(tree, dst, "gaussian_noise", seed=1)
    before = _bytes(dst)
    with pytest.raises(DestinationError, match=r"different settings.*gaussian_noise seed=1"):
        purify_tree(tree, dst, "gaussian_noise", seed=2)
    assert _bytes(dst) == before
    forced = purify_tree(tree, dst, "gaussian_noise", seed=2, overwrite=True)
    assert forced.written == 6 and _bytes(dst) != before
    settings = {entry["settings"] for entry in read_manifest(dst / MANIFEST).values()}
    assert settings == {"gaussian_noise seed=2"}


def test_a_legacy_destination_resumes_with_its_settings(tree: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    purify_tree(tree, reference, "gaussian_noise", seed=3)
    legacy = tmp_path / "legacy"  # as the purify of before the shared manifest left it
    for relative, data in _bytes(reference).items():
        (legacy / relative).parent.mkdir(parents=True, exist_ok=True)
        (legacy / relative).write_bytes(data)
    (legacy / "a" / "1.png").unlink()  # interrupted before this one
    settings = {"defence": "gaussian_noise", "seed": 3}
    (legacy / LEGACY_SETTINGS_FILE).write_text(json.dumps(settings) + "\n")

    with pytest.raises(DestinationError, match="different settings"):
        purify_tree(tree, legacy, "gaussian_noise", seed=4)
    report = purify_tree(tree, legacy, "gaussian_noise", seed=3)
    assert (report.written, report.skipped) == (1, 5)
    assert _bytes(legacy) == _bytes(reference)
    assert not (legacy / LEGACY_SETTINGS_FILE).exists()
    assert read_manifest(legacy / MANIFEST) == read_manifest(reference / MANIFEST)


def test_one_file_keeps_no_manifest_and_an_existing_output(tree: Path, tmp_path: Path) -> None:
    source = tree / "a" / "0.png"
    out = tmp_path / "one.png"
    assert purify_tree(source, out, "grayscale").written == 1
    assert not (tmp_path / MANIFEST).exists()
    kept = purify_tree(source, out, "grayscale")
    assert (kept.written, kept.skipped) == (0, 1)
    with pytest.raises(ValueError, match="would replace SRC"):
        purify_tree(source, tree / "a", "grayscale")
