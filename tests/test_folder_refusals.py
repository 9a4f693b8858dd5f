"""The folder pipeline refuses what it cannot keep, and says so: keys, overlap, links, locks."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invprotect.files.images import pixel_digest
from invprotect.files.locks import LOCK_FILE, DestinationError, DestinationLockedError
from invprotect.files.manifest import MANIFEST, read_manifest
from invprotect.files.png import chunk_bytes, iter_chunks
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.models import RAEG
from invprotect.record import RECORD_CHUNK, RecoveryRecord
from tests.test_records import make_raeg


@pytest.fixture(scope="module")
def raeg() -> RAEG:
    return make_raeg(0)


@pytest.fixture(scope="module")
def other() -> RAEG:
    return make_raeg(1)


def _tree(root: Path, count: int, side: int = 16) -> Path:
    rng = np.random.default_rng(count)
    (root / "a").mkdir(parents=True)
    for index in range(count):
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "a" / f"{index:02d}.png")
    return root


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _exact(src: Path, rec: Path) -> list[str]:
    """Relative paths (as PNG) of the sources that ``rec`` holds bit for bit."""
    return [
        path.relative_to(src).with_suffix(".png").as_posix()
        for path in sorted(src.rglob("*.png"))
        if (rec / path.relative_to(src)).is_file()
        and pixel_digest(Image.open(rec / path.relative_to(src))) == pixel_digest(Image.open(path))
    ]


def _edit_record(path: Path, edit: Callable[[bytes], bytes]) -> None:
    """Rewrite the record chunk of a protected PNG (with a valid CRC)."""
    parts = [b"\x89PNG\r\n\x1a\n"]
    for kind, body in iter_chunks(path.read_bytes()):
        parts.append(chunk_bytes(kind, edit(body) if kind == RECORD_CHUNK else body))
    path.write_bytes(b"".join(parts))


def test_a_wrong_key_writes_nothing(raeg: RAEG, other: RAEG, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", 3)
    protect_tree(src, tmp_path / "prt", raeg)
    wrong = recover_tree(tmp_path / "prt", tmp_path / "rec", other)
    assert wrong.written == 0 and len(wrong.failed) == 3 and not wrong.ok
    assert all("protected with another key" in reason for _, reason in wrong.failed)
    assert not (tmp_path / "rec").exists()
    right = recover_tree(tmp_path / "prt", tmp_path / "rec", raeg)
    assert right.ok and right.written == 3 and right.skipped == 0
    assert len(_exact(src, tmp_path / "rec")) == 3


def test_a_corrupt_file_fails_alone(raeg: RAEG, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", 50)
    protect_tree(src, tmp_path / "prt", raeg, batch_size=64)

    def flip(body: bytes) -> bytes:
        return body[:-5] + bytes([body[-5] ^ 1]) + body[-4:]

    keys = raeg.keys

    def wrong_length(body: bytes) -> bytes:  # sealed correctly: only decoding can tell
        record = RecoveryRecord.open(body, keys)
        record.residual = zlib.compress(b"\x00" * 10)
        return record.seal(keys)

    _edit_record(tmp_path / "prt" / "a" / "07.png", flip)
    _edit_record(tmp_path / "prt" / "a" / "31.png", wrong_length)
    report = recover_tree(tmp_path / "prt", tmp_path / "rec", raeg, batch_size=64)
    assert sorted(dict(report.failed)) == ["a/07.png", "a/31.png"]
    assert "corrupt or forged" in dict(report.failed)["a/07.png"]
    assert "residual holds" in dict(report.failed)["a/31.png"]
    assert report.written == 48 and len(_exact(src, tmp_path / "rec")) == 48


def test_recovery_resume_checks_what_is_there(raeg: RAEG, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", 4)
    protect_tree(src, tmp_path / "prt", raeg)
    recover_tree(tmp_path / "prt", tmp_path / "rec", raeg)
    (tmp_path / "rec" / "a" / "00.png").write_bytes(b"")
    Image.new("RGB", (16, 16)).save(tmp_path / "rec" / "a" / "01.png")
    report = recover_tree(tmp_path / "prt", tmp_path / "rec", raeg)
    assert (report.skipped, report.written) == (2, 2) and report.ok
    assert len(report.warnings) == 2 and len(_exact(src, tmp_path / "rec")) == 4


def test_protect_resume_rechecks_sources_outputs_and_key(
    raeg: RAEG, other: RAEG, tmp_path: Path
) -> None:
    src = _tree(tmp_path / "src", 4)
    protect_tree(src, tmp_path / "prt", raeg)
    Image.new("RGB", (16, 16), (9, 9, 9)).save(src / "a" / "02.png")
    (tmp_path / "prt" / "a" / "03.png").write_bytes(b"")
    report = protect_tree(src, tmp_path / "prt", raeg)
    assert (report.skipped, report.written) == (2, 2) and report.ok
    assert any("source changed" in warning for warning in report.warnings)
    lines = (tmp_path / "prt" / MANIFEST).read_text().splitlines()
    assert len(lines) == 4 and len({json.loads(line)["path"] for line in lines}) == 4
    before = _digests(tmp_path / "prt")
    with pytest.raises(DestinationError, match="another key"):
        protect_tree(src, tmp_path / "prt", other)
    assert _digests(tmp_path / "prt") == before
    assert recover_tree(tmp_path / "prt", tmp_path / "rec", raeg).ok
    assert len(_exact(src, tmp_path / "rec")) == 4


def test_an_output_overlapping_the_source_is_refused_before_writing(
    raeg: RAEG, tmp_path: Path
) -> None:
    src = _tree(tmp_path / "src", 2)
    before = _digests(src)
    one = src / "a" / "00.png"
    for dst in (src / "a", src, one, src / "a" / "other.png", src / "a" / "sub"):
        with pytest.raises(DestinationError, match="must not be SRC"):
            protect_tree(one if dst != src / "a" / "sub" else src, dst, raeg)
    assert _digests(src) == before and not list(src.rglob(MANIFEST))
    report = protect_tree(one, tmp_path / "out", raeg)
    assert report.ok and (tmp_path / "out" / "00.png").is_file()


def _png16(path: Path, color_type: int, channels: int) -> None:
    rows = b"".join(b"\x00" + bytes(range(4 * 2 * channels)) for _ in range(4))
    header = struct.pack(">IIBBBBB", 4, 4, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk_bytes(b"IHDR", header)
        + chunk_bytes(b"IDAT", zlib.compress(rows))
        + chunk_bytes(b"IEND", b"")
    )


def test_files_that_cannot_be_kept_whole_fail_and_skips_are_listed(
    raeg: RAEG, tmp_path: Path
) -> None:
    src = _tree(tmp_path / "src", 1)
    _png16(src / "rgb16.png", 2, 3)
    _png16(src / "rgba16.png", 6, 4)
    rgb = [Image.new("RGB", (8, 8), (i, 0, 0)) for i in (0, 90)]
    rgb[0].save(src / "anim.gif", save_all=True, append_images=rgb[1:])
    rgb[0].save(src / "moving.png", save_all=True, append_images=rgb[1:])
    rgb[0].save(src / "pages.tif", save_all=True, append_images=rgb[1:])
    Image.new("P", (8, 8), 3).save(src / "still.gif")
    bomb = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    (src / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk_bytes(b"IHDR", bomb) + chunk_bytes(b"IEND", b"")
    )
    (src / "notes.txt").write_text("hello")
    (src / ".hidden.png").write_bytes(b"")
    (src / "gone.png").symlink_to(tmp_path / "missing.png")
    (src / "linked").symlink_to(src / "a")
    (src / ".cache").mkdir()
    Image.new("RGB", (8, 8)).save(src / ".cache" / "thumb.png")
    Image.new("RGB", (8, 8), (5, 6, 7)).save(tmp_path / "elsewhere.png")
    (src / "outside.png").symlink_to(tmp_path / "elsewhere.png")
    os.mkfifo(src / "pipe.png")
    report = protect_tree(src, tmp_path / "prt", raeg)
    assert report.written == 3 and not report.ok  # a/00.png, still.gif, outside.png
    failed = dict(report.failed)
    assert "16 bits" in failed["rgb16.png"] and "16 bits" in failed["rgba16.png"]
    for name in ("anim.gif", "moving.png", "pages.tif"):
        assert "2 frames" in failed[name]
    assert "too many pixels" in failed["bomb.png"]
    assert "broken symbolic link" in failed["gone.png"]
    assert "not a regular file" in failed["pipe.png"]
    skipped = dict(report.skipped_files)
    assert "not an image" in skipped["notes.txt"] and "hidden" in skipped[".hidden.png"]
    assert "not followed" in skipped["linked"]
    assert "hidden folder" in skipped[".cache/thumb.png"]
    assert report.warnings == [f"outside.png: a link to {tmp_path / 'elsewhere.png'}, outside SRC"]
    assert not (tmp_path / "prt" / "linked").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes everything")
def test_unreadable_folders_and_read_only_destinations(raeg: RAEG, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", 1)
    (src / "locked").mkdir()
    (src / "locked").chmod(0)
    try:
        report = protect_tree(src, tmp_path / "prt", raeg)
    finally:
        (src / "locked").chmod(0o755)
    assert "cannot read this folder" in dict(report.failed)["locked"]
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        with pytest.raises(DestinationError, match="cannot write"):
            protect_tree(src, tmp_path / "ro", raeg)
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_links_inside_the_destination_are_not_written_through(raeg: RAEG, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", 2)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "prt").mkdir()
    (tmp_path / "prt" / "a").symlink_to(outside)
    report = protect_tree(src, tmp_path / "prt", raeg)
    assert report.written == 0 and len(report.failed) == 2
    assert all("symbolic link" in reason for _, reason in report.failed)
    assert not list(outside.iterdir())
    (tmp_path / "prt" / "a").unlink()
    (tmp_path / "prt" / "a").mkdir()
    (tmp_path / "prt" / "a" / "00.png").symlink_to(outside / "target.png")
    report = protect_tree(src, tmp_path / "prt", raeg)
    assert [relative for relative, _ in report.failed] == ["a/00.png"]
    assert not list(outside.iterdir())


def test_a_lock_keeps_a_second_run_out_and_a_dead_ones_is_taken_over(
    raeg: RAEG, tmp_path: Path
) -> None:
    src = _tree(tmp_path / "src", 2)
    (tmp_path / "prt").mkdir()
    lock = tmp_path / "prt" / LOCK_FILE
    host = socket.gethostname()
    lock.write_text(json.dumps({"pid": os.getppid(), "host": host, "since": "now"}))
    with pytest.raises(DestinationLockedError, match=f"process {os.getppid()} on {host}"):
        protect_tree(src, tmp_path / "prt", raeg)
    with pytest.raises(DestinationLockedError, match="in use"):
        recover_tree(src, tmp_path / "prt", raeg)
    assert [p.name for p in (tmp_path / "prt").iterdir()] == [LOCK_FILE]
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    lock.write_text(json.dumps({"pid": int(finished.stdout), "host": host, "since": "then"}))
    report = protect_tree(src, tmp_path / "prt", raeg)
    assert report.ok and report.written == 2 and not lock.exists()


def test_stale_temporaries_go_and_hand_edited_manifests_are_survived(
    raeg: RAEG, tmp_path: Path
) -> None:
    src = _tree(tmp_path / "src", 3)
    protect_tree(src, tmp_path / "prt", raeg)
    stale = [
        tmp_path / "prt" / ".x.png.abcd1234.tmp",
        tmp_path / "prt" / "a" / ".0.png.zz_9qqqq.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half")
    manifest = tmp_path / "prt" / MANIFEST
    with manifest.open("ab") as file:
        file.write(b'[1, 2]\n42\n{"no": "path"}\n\xff\xfe\n{"path": 5}\n' + b"[" * 10**5)
        file.write(b'\n{"path": "../../etc/passwd", "output": "/tmp/x.png"}')
        file.write(b'\n{"path": "a/00.p')
    report = protect_tree(src, tmp_path / "prt", raeg)
    assert report.ok and report.skipped == 3 and report.written == 0
    assert not any(path.exists() for path in stale)
    assert len([w for w in report.warnings if "ignored" in w]) == 8
    assert any("temporary files" in w for w in report.warnings)
    lines = manifest.read_bytes().splitlines()
    assert len(lines) == 3 and all(isinstance(json.loads(line), dict) for line in lines)
    manifest.write_bytes(manifest.read_bytes() + b"42\n\x80\n")
    back = recover_tree(tmp_path / "prt", tmp_path / "rec", raeg)
    assert back.ok and back.written == 3 and len(back.warnings) == 2
    assert read_manifest(manifest) and len(_exact(src, tmp_path / "rec")) == 3


def test_a_destination_that_is_a_file_is_refused(raeg: RAEG, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", 1)
    (tmp_path / "taken").write_bytes(b"x")
    with pytest.raises(DestinationError, match="is not a folder"):
        protect_tree(src, tmp_path / "taken", raeg)
    assert (tmp_path / "taken").read_bytes() == b"x"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(DestinationError, match="broken symbolic link"):
        protect_tree(src, tmp_path / "dangling", raeg)
    assert not (tmp_path / "nowhere").exists()


def test_a_bad_record_header_fails_its_file_only(raeg: RAEG, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", 3)
    protect_tree(src, tmp_path / "prt", raeg)

    def bogus(body: bytes) -> bytes:
        return b"IPR2" + struct.pack(">I", 2) + b"[]" + body[8:]

    _edit_record(tmp_path / "prt" / "a" / "01.png", bogus)
    twice = tmp_path / "prt" / "a" / "00.png"
    chunks = list(iter_chunks(twice.read_bytes()))
    chunks.insert(-1, next(c for c in chunks if c[0] == RECORD_CHUNK))
    twice.write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(chunk_bytes(*c) for c in chunks))
    Image.open(tmp_path / "prt" / "a" / "02.png").save(tmp_path / "prt" / "a" / "02b.jpg")
    report = recover_tree(tmp_path / "prt", tmp_path / "rec", raeg)
    failed = dict(report.failed)
    assert sorted(failed) == ["a/00.png", "a/01.png"] and report.written == 2
    assert "not a JSON object" in failed["a/01.png"] and "2 recovery records" in failed["a/00.png"]
    assert report.altered == ["a/02b.jpg"]  # re-encoded as JPEG: no record, recovered roughly
    buffer = io.BytesIO()
    Image.open(tmp_path / "prt" / "a" / "02.png").save(buffer, "PNG")  # re-encoded: no record
    (tmp_path / "prt" / "a" / "02.png").write_bytes(buffer.getvalue())
    again = recover_tree(tmp_path / "prt", tmp_path / "rec2", raeg)
    assert again.altered == ["a/02.png", "a/02b.jpg"] and again.mismatched == ["a/02.png"]
