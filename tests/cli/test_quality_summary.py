"""``protect``'s quality line: means over the manifest entries written in this run only."""

from __future__ import annotations

import json
from pathlib import Path

from invprotect.cli.protector import _entries, _means


def _write(path: Path, entries: list[dict]) -> None:
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))


def test_means_count_only_the_entries_of_this_run(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.jsonl"
    old = [{"path": "a.png", "psnr": 10.0}, {"path": "b.png", "psnr": 20.0}]
    _write(manifest, old)
    before = _entries(manifest)
    redone = {"path": "b.png", "psnr": 31.0, "ssim": 0.9}
    new = {"path": "c.png", "psnr": 29.0, "ssim": 0.8}
    _write(manifest, [old[0], redone, new])
    means = _means(manifest, before)
    assert means["psnr"] == 30.0 and abs(means["ssim"] - 0.85) < 1e-12


def test_no_entries_and_no_ssim_give_none(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.jsonl"
    assert _means(manifest, {}) == {"psnr": None, "ssim": None}
    _write(manifest, [{"path": "a.png", "psnr": 30.0}])
    assert _means(manifest, {}) == {"psnr": 30.0, "ssim": None}
