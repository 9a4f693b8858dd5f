"""Sealed recovery records: fields and key checked, nothing of the original in the clear."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from invprotect.baselines import RAE
from invprotect.files.images import pixel_digest
from invprotect.files.manifest import MANIFEST
from invprotect.files.png import chunk_bytes, iter_chunks, read_chunks
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.models import RAEG
from invprotect.models.exact import ExactCodec, inflate_exactly
from invprotect.record import (
    RECORD_CHUNK,
    BadRecordError,
    RecordKeys,
    RecoveryRecord,
    WrongKeyError,
    read_header,
)
from tests.contracts import train_away_from_identity

TINY = {"generator": {"levels": 2, "blocks_per_level": 1, "hidden_channels": 8, "subnet": "conv"}}
KEYS = RecordKeys.derive(b"material")


def make_raeg(seed: int) -> RAEG:
    """A small RAEG moved away from the identity (so protected pixels differ from the original)."""
    torch.manual_seed(seed)
    model = RAEG.from_preset("cpu-32", **TINY)
    train_away_from_identity(
        model.generator,
        lambda: torch.rand(4, 3, 32, 32),
        steps=10,
        forward=model.generate,
        target=lambda x: 0.8 * x + 0.1,
    )
    return model.eval()


@pytest.fixture(scope="module")
def raeg() -> RAEG:
    return make_raeg(0)


def _record(**changes: object) -> RecoveryRecord:
    fields: dict = {
        "mode": "P",
        "height": 2,
        "width": 3,
        "original_mac": KEYS.original_mac("ab" * 32),
        "protected_sha256": "cd" * 32,
        "key_id": KEYS.key_id,
        "residual": zlib.compress(b"\x00" * 36),
        "extra": {"palette": [0, 0, 0, 255, 255, 255], "indices": base64.b64encode(b"\x01" * 6)},
    }
    fields["extra"]["indices"] = fields["extra"]["indices"].decode()
    fields.update(changes)
    return RecoveryRecord(**fields)


def _with_header(data: bytes, change: dict) -> bytes:
    """The record with its public header edited (the tag is not updated)."""
    (length,) = struct.unpack(">I", data[4:8])
    header = json.loads(data[8 : 8 + length])
    for key, value in change.items():
        if value is None:
            del header[key]
        else:
            header[key] = value
    text = json.dumps(header).encode()
    return data[:4] + struct.pack(">I", len(text)) + text + data[8 + length :]


def test_a_sealed_record_opens_with_its_keys_only() -> None:
    record = _record()
    sealed = record.seal(KEYS)
    assert sealed == record.seal(KEYS)  # deterministic: reruns give identical files
    assert RecoveryRecord.open(sealed, KEYS) == record
    with pytest.raises(WrongKeyError, match="protected with another key"):
        RecoveryRecord.open(sealed, RecordKeys.derive(b"other material"), "x.png")
    assert KEYS.key_id != KEYS.secret.hex() and KEYS.key_id not in repr(KEYS.secret)
    assert "secret" not in repr(KEYS)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"surprise": 1}, "unknown \\['surprise'\\]"),
        ({"height": None}, "missing \\['height'\\]"),
        ({"height": "2"}, "'height' must be int"),
        ({"width": True}, "'width' must be int"),
        ({"height": 0}, "'height' is 0"),
        ({"width": -4}, "'width' is -4"),
        ({"mode": "CMYK"}, "'mode'"),
        ({"mode": ["RGB"]}, "'mode' must be str"),
        ({"key_id": "xyz"}, "'key_id'"),
        ({"nonce": "00"}, "'nonce'"),
        ({"version": 4}, "'version'"),
        ({"version": 1}, "'version'"),
        ({"private_bytes": 10**9}, "'private_bytes'"),
        ({"private_size": 10**12}, "'private_size'"),
    ],
)
def test_every_header_field_is_checked(change: dict, field: str) -> None:
    data = _with_header(_record().seal(KEYS), change)
    with pytest.raises(BadRecordError, match=f"x.png: .*{field}"):
        RecoveryRecord.open(data, KEYS, "x.png")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"IPR2",
        b"IPR2\xff\xff\xff\xff{}",
        b"IPR2\x00\x00\x00\x02[]",
        b"PNG!\x00\x00\x00\x00",
        b"IPR2\x00\x00\x0f\xa0" + b"[" * 4000,
        b"IPR2\x00\x00\x00\x02\xff\xfe",
    ],
)
def test_malformed_bodies_are_refused(data: bytes) -> None:
    with pytest.raises(BadRecordError, match=r"x\.png"):
        RecoveryRecord.open(data, KEYS, "x.png")


def test_a_flipped_byte_anywhere_is_detected() -> None:
    sealed = _record().seal(KEYS)
    for position in (len(sealed) - 1, len(sealed) - 20, 30):
        damaged = bytearray(sealed)
        damaged[position] ^= 0x10
        with pytest.raises(BadRecordError):
            RecoveryRecord.open(bytes(damaged), KEYS, "x.png")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"palette": [0, 0, 0, 255]}, "palette"),
        ({"palette": [0, 0, 300]}, "palette"),
        ({"palette": "red"}, "palette"),
        ({"palette": [0, 0, 0], "transparency": 999}, "transparency"),
        ({"palette": [0, 0, 0], "indices": "AAAA"}, "indices"),
        ({"palette": [0, 0, 0], "colour": 1}, "unknown fields"),
        ({"palette": [0, 0, 0], "metadata": [1]}, "metadata"),
    ],
)
def test_private_fields_are_checked_after_decryption(extra: dict, field: str) -> None:
    sealed = _record(extra=extra).seal(KEYS)  # a correct tag: only the content is wrong
    with pytest.raises(BadRecordError, match=field):
        RecoveryRecord.open(sealed, KEYS, "x.png")
    with pytest.raises(BadRecordError, match="palette fields"):
        RecoveryRecord.open(_record(mode="RGB", extra={"palette": [0] * 3}).seal(KEYS), KEYS)


def test_inflation_is_bounded_by_the_known_size(raeg: RAEG) -> None:
    bomb = zlib.compress(b"\x00" * 50_000_000, 9)  # 49 KB that would inflate to 50 MB
    with pytest.raises(ValueError, match="more than 100"):
        inflate_exactly(bomb, 100, "residual")
    with pytest.raises(ValueError, match="holds 3 bytes, expected 4"):
        inflate_exactly(zlib.compress(b"abc"), 4, "residual")
    with pytest.raises(ValueError, match="corrupt"):
        inflate_exactly(b"not zlib", 4, "residual")
    with pytest.raises(ValueError, match="expected 0"):
        inflate_exactly(zlib.compress(b"a"), 0, "residual")
    assert inflate_exactly(zlib.compress(b"abcd"), 4, "residual") == b"abcd"
    images = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="residual holds more than 384"):
        ExactCodec(raeg).restore(images, [bomb])


def test_keys_are_derived_and_the_baselines_from_their_settings(raeg: RAEG) -> None:
    material = raeg.key_material()
    assert raeg.key_id == raeg.keys.key_id == RecordKeys.derive(material).key_id
    assert raeg.key_id != material.hex() and raeg.keys.secret != material
    assert make_raeg(1).key_id != raeg.key_id
    assert RAE(None).keys == RAE(None).keys  # no secret, but stable


def _palette_with_duplicates() -> Image.Image:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 4, (20, 24), dtype=np.uint8), "P")
    image.putpalette([10, 20, 30, 10, 20, 30, 200, 100, 0, 200, 100, 0] + [0] * 756)
    return image


def test_nothing_in_the_files_reveals_the_original_without_the_key(
    raeg: RAEG, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    palette = _palette_with_duplicates()
    palette.save(src / "palette.png")
    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x010E] = "a secret caption"  # ImageDescription
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "a secret author")
    photo.save(src / "photo.png", exif=exif, pnginfo=info)
    report = protect_tree(src, tmp_path / "prt", raeg)
    assert report.ok and report.written == 2
    indices = np.asarray(palette).tobytes()
    secrets = [indices, base64.b64encode(indices), zlib.compress(indices, 9)]
    secrets += [b"a secret caption", b"a secret author", bytes(palette.getpalette()[:12])]
    digests = []
    for name in ("palette.png", "photo.png"):
        original = Image.open(src / name)
        digests += [
            pixel_digest(original),
            hashlib.sha256((src / name).read_bytes()).hexdigest(),
            hashlib.sha256(np.asarray(original.convert("RGB")).tobytes()).hexdigest(),
        ]
    manifest = (tmp_path / "prt" / MANIFEST).read_bytes()
    for name in ("palette.png", "photo.png"):
        data = (tmp_path / "prt" / name).read_bytes()
        for secret in secrets:
            assert secret not in data and secret not in manifest
        for digest in digests:
            for form in (digest.encode(), digest.upper().encode(), bytes.fromhex(digest)):
                assert form not in data and form not in manifest
        header, _ = read_header(read_chunks(data)[RECORD_CHUNK])
        assert not set(map(str, header.values())) & set(digests)
    back = recover_tree(tmp_path / "prt", tmp_path / "rec", raeg)
    assert back.ok and back.written == 2
    recovered = Image.open(tmp_path / "rec" / "palette.png")
    assert np.array_equal(np.asarray(recovered), np.frombuffer(indices, np.uint8).reshape(20, 24))
    assert pixel_digest(recovered) == pixel_digest(palette)
    photo_back = Image.open(tmp_path / "rec" / "photo.png")
    assert photo_back.text["Author"] == "a secret author"
    assert photo_back.getexif()[0x010E] == "a secret caption"
    without_key = recover_tree(tmp_path / "prt", tmp_path / "thief", make_raeg(1))
    assert without_key.written == 0 and not (tmp_path / "thief").exists()
    assert all("another key" in reason for _, reason in without_key.failed)


def test_records_of_version_1_are_still_recovered_with_their_key(
    raeg: RAEG, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _palette_with_duplicates().save(src / "palette.png")
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)).save(src / "photo.png")
    protect_tree(src, tmp_path / "prt", raeg)
    for name in ("palette.png", "photo.png"):  # rewrite as the previous release wrote them
        path = tmp_path / "prt" / name
        chunks = list(iter_chunks(path.read_bytes()))
        record = RecoveryRecord.open(dict(chunks)[RECORD_CHUNK], raeg.keys)
        extra = dict(record.extra)
        if "indices" in extra:
            extra["indices"] = base64.b64encode(
                zlib.compress(base64.b64decode(extra["indices"]), 9)
            ).decode()
        header = {
            "mode": record.mode,
            "height": record.height,
            "width": record.width,
            "original_sha256": pixel_digest(Image.open(src / name)),
            "protected_sha256": record.protected_sha256,
            "protector_sha256": raeg.key_material().hex(),
            "extra": extra,
        }
        text = json.dumps(header, sort_keys=True).encode()
        old = b"IPR1" + struct.pack(">I", len(text)) + text + record.residual
        chunks = [(kind, old if kind == RECORD_CHUNK else body) for kind, body in chunks]
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(chunk_bytes(*c) for c in chunks))
    assert "extra" in read_chunks(path.read_bytes())[RECORD_CHUNK].decode("latin-1")
    back = recover_tree(tmp_path / "prt", tmp_path / "rec", raeg)
    assert back.ok and back.written == 2 and not back.altered
    for name in ("palette.png", "photo.png"):
        recovered = Image.open(tmp_path / "rec" / name)
        assert pixel_digest(recovered) == pixel_digest(Image.open(src / name))
    wrong = recover_tree(tmp_path / "prt", tmp_path / "thief", make_raeg(1))
    assert wrong.written == 0 and all("another key" in r for _, r in wrong.failed)
    with pytest.raises(BadRecordError, match="version 1 has no public header"):
        read_header(b"IPR1\x00\x00\x00\x02{}", "old.png")
    for bad in (b"IPR1", b"IPR1\x00\x00\x00\x02{}", b"IPR1\x00\x00\x00\x02[]"):
        with pytest.raises(BadRecordError, match=r"old\.png"):
            RecoveryRecord.open(bad, raeg.keys, "old.png")


def test_recovered_metadata_matches_the_original_file(raeg: RAEG, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", struct.pack(">I", 45455))
    info.add_itxt("Title", "Überschrift", lang="de")
    info.add(b"tIME", bytes([7, 233, 1, 2, 3, 4, 5]))
    info.add(b"prVt", b"after the pixels", after_idat=True)
    Image.fromarray(pixels).save(src / "meta.png", pnginfo=info, dpi=(300, 300), icc_profile=b"x")
    jpeg = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0131] = "camera"
    jpeg.save(src / "photo.jpg", exif=exif, dpi=(72, 72), comment=b"hello")
    assert protect_tree(src, tmp_path / "prt", raeg).ok
    assert recover_tree(tmp_path / "prt", tmp_path / "rec", raeg).ok
    original = Image.open(src / "meta.png")
    back = Image.open(tmp_path / "rec" / "meta.png")
    assert back.info["gamma"] == original.info["gamma"]
    assert back.info["dpi"] == original.info["dpi"] and back.info["icc_profile"] == b"x"
    assert back.text == original.text
    recovered = _chunks(tmp_path / "rec" / "meta.png")
    assert [c for c in recovered if c[0] != b"IDAT"] == [  # every chunk, in its place
        c for c in _chunks(src / "meta.png") if c[0] != b"IDAT"
    ]
    kinds = [kind for kind, _ in recovered]
    assert kinds.index(b"prVt") > kinds.index(b"IDAT") > kinds.index(b"tIME")
    photo = Image.open(tmp_path / "rec" / "photo.png")
    assert photo.getexif()[0x0131] == "camera" and photo.text["Comment"] == "hello"
    assert [round(v) for v in photo.info["dpi"]] == [72, 72]


def _chunks(path: Path) -> list[tuple[bytes, bytes]]:
    return list(iter_chunks(path.read_bytes()))


def test_metadata_a_png_cannot_carry_is_refused(raeg: RAEG, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, "JPEG")
    data = buffer.getvalue()
    segment = b"Photoshop 3.0\x008BIM"
    app13 = b"\xff\xed" + struct.pack(">H", len(segment) + 2) + segment
    (src / "iptc.jpg").write_bytes(data[:2] + app13 + data[2:])
    report = protect_tree(src, tmp_path / "prt", raeg)
    assert report.written == 0
    assert "cannot be kept" in dict(report.failed)["iptc.jpg"]
