"""Corpus cases for ``recover``: damaged recovery records and files, keys, resuming, privacy."""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from invprotect.files.images import pixel_digest
from tests.corpus import files as f
from tests.corpus import records as r
from tests.corpus.corpus import (
    FAILED,
    FATAL,
    OK,
    Ctx,
    Scenario,
    case,
    no_tmp,
    recovered_count,
    truncated,
)
from tests.corpus.kit import POOL_SIZE, Outcome, run_cli

# --- recover: damaged records ----------------------------------------------------------------


def _record(
    name: str,
    edit: Callable[[Path], None],
    outcome: str,
    target: str = "img01.png",
    codes: tuple[int, ...] = (FAILED,),
    also: tuple[str, ...] = (),
    **limits: Any,
) -> None:
    """Damage the record of ``target`` among 5 RGB files and 3 of other modes (one batch).

    ``also``: other files the edit damages.
    """

    def build(ctx: Ctx) -> Scenario:
        originals = ctx.pool()
        edit(ctx.root / "prt" / target)
        return Scenario(
            ctx.recover(),
            ctx.root / "rec",
            originals=originals,
            damaged=(target, *also),
            must_name=(target, *also),
            **limits,
        )

    case(name, codes, f"{outcome}: that file fails by name, the others come back bit for bit")(
        build
    )


def _edit(edit: Callable[[r.Record], bytes]) -> Callable[[Path], None]:
    return lambda path: r.edit_record(path, edit)


def _zlib_bomb(_: bytes) -> bytes:
    compressor = zlib.compressobj(9)
    chunk = bytes(2**20)
    return b"".join(compressor.compress(chunk) for _ in range(64)) + compressor.flush()


def _swap_records(path: Path) -> None:
    other = path.with_name("img02.png")
    mine, theirs = r.record_bytes(path), r.record_bytes(other)
    r.set_record(path, theirs)
    r.set_record(other, mine)


def _alter_pixel(path: Path) -> None:
    record = r.record_bytes(path)
    image = np.asarray(Image.open(path)).copy()
    image[0, 0, 0] ^= 1
    f.write(path, f.save(Image.fromarray(image), "PNG"))
    r.set_record(path, None)
    chunks = f.png_chunks(path.read_bytes())
    path.write_bytes(f.png_assemble([*chunks[:-1], (r.RECORD_CHUNK, record), chunks[-1]]))


def _crop(path: Path) -> None:
    record = r.record_bytes(path)
    image = Image.open(path).crop((0, 0, 4, 4))
    chunks = f.png_chunks(f.save(image, "PNG"))
    path.write_bytes(f.png_assemble([*chunks[:-1], (r.RECORD_CHUNK, record), chunks[-1]]))


def _bad_crc(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = data.index(r.RECORD_CHUNK)
    (length,) = np.frombuffer(bytes(data[start - 4 : start]), ">u4")
    data[start + 4 + int(length)] ^= 0xFF
    path.write_bytes(bytes(data))


_record(
    "record_removed", lambda p: r.set_record(p, None), "the ipRS chunk removed", codes=(OK, FAILED)
)
_record("record_bad_crc", _bad_crc, "the ipRS chunk's CRC wrong", codes=(OK, FAILED))
_record(
    "record_duplicated",
    lambda p: r.set_record(p, r.record_bytes(p), r.record_bytes(p.with_name("img03.png"))),
    "two ipRS chunks, the second another file's",
    codes=(OK, FAILED),
)
_record(
    "record_swapped",
    _swap_records,
    "records of two same-size files swapped",
    codes=(OK, FAILED),
    also=("img02.png",),
)
_record(
    "pixel_altered_record_kept",
    _alter_pixel,
    "one protected pixel changed, record kept",
    codes=(OK, FAILED),
)
_record(
    "cropped_record_kept", _crop, "the protected image cropped, record kept", codes=(OK, FAILED)
)
_record(
    "record_bad_magic",
    _edit(lambda rec: b"XXXX" + rec.to_bytes()[4:]),
    "a record with a wrong magic",
    codes=(OK, FAILED),
)
_record("record_empty", lambda p: r.set_record(p, b""), "an empty record chunk", codes=(OK, FAILED))
_record(
    "record_extra_key",
    _edit(r.edit_header(lambda h: h.update(surprise=1))),
    "a record header with an extra key",
)
for _index in range(6):
    _record(
        f"record_missing_key_{_index}",
        _edit(r.drop_field(_index)),
        f"the record header's field #{_index} (sorted) removed",
    )
_record("record_height_string", _edit(r.set_field("height", "8")), "height given as a string")
_record("record_width_float", _edit(r.set_field("width", 8.5)), "width given as a float")
_record("record_height_null", _edit(r.set_field("height", None)), "height null")
_record("record_width_bool", _edit(r.set_field("width", True)), "width true")
_record("record_mode_number", _edit(r.set_field("mode", 5)), "mode given as a number")
_record("record_mode_cmyk", _edit(r.set_field("mode", "CMYK")), "mode CMYK")
_record(
    "record_mode_gray_on_rgb", _edit(r.set_field("mode", "L")), "an RGB image's record saying gray"
)
_record(
    "record_mode_palette_on_rgb",
    _edit(r.set_field("mode", "P")),
    "an RGB image's record saying palette",
)
_record("record_negative_size", _edit(r.set_field("height", -8)), "height -8")
_record("record_zero_size", _edit(r.set_field("width", 0)), "width 0")
_record(
    "record_huge_size",
    _edit(r.edit_header(lambda h: h.update(height=10**9, width=10**9))),
    "height and width 10**9",
    time_limit=30,
    memory_cap_mb=3000,
)
_record(
    "record_larger_than_image",
    _edit(r.edit_header(lambda h: h.update(height=12, width=12))),
    "a size larger than the protected image",
)
_record(
    "record_key_digest_changed",
    _edit(r.set_field_like("key", "0" * 64)),
    "the record's protector key field changed",
)
_record(
    "record_original_digest_changed",
    _edit(r.set_field_like("original", "f" * 64)),
    "the record's digest of the original changed",
)
_record(
    "record_header_list",
    _edit(r.edit_header(lambda h: [1, 2])),
    "a record header that is a JSON list",
)
_record(
    "record_header_not_json",
    _edit(lambda rec: r.Record(rec.magic, b"{oops", rec.body).to_bytes()),
    "a record header that is not JSON",
)
_record(
    "record_header_not_utf8",
    _edit(lambda rec: r.Record(rec.magic, b'{"mode": "\xff"}', rec.body).to_bytes()),
    "a record header with non-UTF-8 bytes",
)
_record(
    "record_length_too_long",
    _edit(lambda rec: rec.to_bytes(length=2**31)),
    "a header length far beyond the chunk",
)
_record("record_length_zero", _edit(lambda rec: rec.to_bytes(length=0)), "a header length of 0")
_record(
    "bogus_palette",
    _edit(r.edit_header(lambda h: h.update(extra={"palette": [300, -1, "x"]}))),
    "a bogus palette on the palette image",
    target="palette.png",
)
_record(
    "bogus_palette_short",
    _edit(r.edit_header(lambda h: h.update(extra={"palette": [1, 2]}))),
    "a 2-value palette on the palette image",
    target="palette.png",
)
_record(
    "bogus_indices",
    _edit(r.edit_header(lambda h: h.update(extra={"indices": "!!not base64"}))),
    "garbage palette indices on the palette image",
    target="palette.png",
)
_record(
    "palette_record_flipped",
    _edit(r.flip_body_byte(3)),
    "a flipped byte in the palette image's record",
    target="palette.png",
)
_record(
    "alpha_record_flipped",
    _edit(r.flip_body_byte(3)),
    "a flipped byte in the RGBA image's record",
    target="alpha.png",
)
_record(
    "gray_record_mode_rgb",
    _edit(r.set_field("mode", "RGB")),
    "the gray image's record saying RGB",
    target="gray.png",
)
_record(
    "residual_flipped_byte_first",
    _edit(r.flip_body_byte(1)),
    "the last byte of the binary part flipped",
)
_record(
    "residual_wrong_length",
    _edit(r.replace_body(lambda _: zlib.compress(bytes(10)))),
    "a residual of the wrong length",
)
_record(
    "residual_truncated",
    _edit(r.replace_body(lambda body: body[: len(body) // 2])),
    "the binary part cut in half",
)
_record("residual_empty", _edit(r.replace_body(lambda _: b"")), "no binary part")
_record(
    "residual_not_zlib",
    _edit(r.replace_body(lambda body: bytes(len(body)))),
    "zeros instead of the binary part",
)
_record(
    "residual_zlib_bomb",
    _edit(r.replace_body(_zlib_bomb)),
    "64 MB of zeros zlib-compressed as the residual",
    time_limit=30,
    heap_limit_mb=32,
)
_record("protected_file_empty", lambda p: p.write_bytes(b""), "the protected file emptied")
_record(
    "protected_file_truncated",
    lambda p: p.write_bytes(truncated(p.read_bytes())),
    "the protected file cut in half",
)
_record(
    "protected_file_bomb",
    lambda p: p.write_bytes(f.png_header_only(100000, 100000)),
    "a 100000x100000 header instead of the protected file",
)
_record(
    "protected_file_jpeg",
    lambda p: p.write_bytes(f.save(Image.open(p).convert("RGB"), "JPEG")),
    "the protected file re-encoded as JPEG (named .png)",
    codes=(OK, FAILED),
)


@case(
    "flipped_residual_1_of_50",
    FAILED,
    "one flipped residual byte in 50 files: 49 recovered bit for bit",
)
def _one_in_fifty(ctx: Ctx) -> Scenario:
    originals = ctx.pool(POOL_SIZE, modes=False)
    r.edit_record(ctx.root / "prt" / "img17.png", r.flip_body_byte(40))
    return Scenario(
        ctx.recover(),
        ctx.root / "rec",
        originals=originals,
        damaged=("img17.png",),
        must_name=("img17.png",),
    )


@case(
    "wrong_length_residual_in_batch",
    FAILED,
    "a wrong-length residual: only that file of its batch fails",
)
def _wrong_length_batch(ctx: Ctx) -> Scenario:
    originals = ctx.pool(20, modes=False)
    r.edit_record(ctx.root / "prt" / "img07.png", r.replace_body(lambda _: zlib.compress(bytes(7))))
    return Scenario(
        ctx.recover(),
        ctx.root / "rec",
        originals=originals,
        damaged=("img07.png",),
        must_name=("img07.png",),
    )


@case(
    "recover_plain_png", (OK, FAILED), "a PNG that was never protected among protected ones: named"
)
def _plain_png(ctx: Ctx) -> Scenario:
    originals = ctx.pool()
    f.write(ctx.root / "prt" / "plain.png", f.rgb(8, 8, 90))
    return Scenario(ctx.recover(), ctx.root / "rec", originals=originals, must_name=("plain.png",))


@case("recover_not_an_image", (OK, FAILED), "a text file among protected files: reported")
def _recover_text(ctx: Ctx) -> Scenario:
    originals = ctx.pool()
    f.write(ctx.root / "prt" / "notes.png", b"not an image")
    return Scenario(ctx.recover(), ctx.root / "rec", originals=originals, must_name=("notes.png",))


@case("recover_ok", OK, "an untouched protected folder: every file bit for bit")
def _recover_ok(ctx: Ctx) -> Scenario:
    return Scenario(ctx.recover(), ctx.root / "rec", originals=ctx.pool())


@case("recover_single_file", OK, "one protected file to a folder")
def _recover_single(ctx: Ctx) -> Scenario:
    ctx.pool()
    rec = ctx.root / "rec"
    return Scenario(
        ctx.recover(src=ctx.root / "prt" / "palette.png"),
        rec,
        originals={"palette.png": ctx.kit.originals / "palette.png"},
    )


# --- recover: keys and resuming --------------------------------------------------------------


def _no_output(ctx: Ctx) -> Callable[[Outcome], list[str]]:
    def check(outcome: Outcome) -> list[str]:
        problems = recovered_count(ctx, 0)(outcome)
        if "key" not in outcome.output.lower():
            problems.append("the output does not say the key is wrong")
        return problems

    return check


@case("wrong_key", (FAILED, FATAL), "another protector: 0 files written, the wrong key named")
def _wrong_key(ctx: Ctx) -> Scenario:
    ctx.pool(10)
    args = ctx.recover("--protector", str(ctx.kit.other_protector))
    return Scenario(args, ctx.root / "rec", check=_no_output(ctx))


@case(
    "wrong_key_baseline",
    (FAILED, FATAL),
    "a baseline's name as the key of RAEG files: 0 files written",
)
def _wrong_key_baseline(ctx: Ctx) -> Scenario:
    ctx.pool(3)
    return Scenario(ctx.recover("--protector", "rit-igsm"), ctx.root / "rec", check=_no_output(ctx))


@case("right_key_after_wrong_key", OK, "the right key after a wrong-key run: all bit for bit")
def _right_after_wrong(ctx: Ctx) -> Scenario:
    originals = ctx.pool(10)
    run_cli(ctx.recover("--protector", str(ctx.kit.other_protector)))
    return Scenario(ctx.recover(), ctx.root / "rec", originals=originals)


@case("recover_stale_tmp", OK, "a stale .tmp from a killed recovery: removed, all bit for bit")
def _recover_stale_tmp(ctx: Ctx) -> Scenario:
    originals = ctx.pool()
    f.write(ctx.root / "rec" / ".img00.png.k1ll3d.tmp", b"\x89PNG half")
    return Scenario(
        ctx.recover(), ctx.root / "rec", originals=originals, check=no_tmp(ctx.root / "rec")
    )


@case("recover_empty_existing_output", OK, "an empty file at an output path: not trusted, replaced")
def _recover_empty_output(ctx: Ctx) -> Scenario:
    originals = ctx.pool()
    f.write(ctx.root / "rec" / "img02.png", b"")
    return Scenario(ctx.recover(), ctx.root / "rec", originals=originals)


@case("recover_wrong_existing_output", OK, "another image at an output path: verified, replaced")
def _recover_wrong_output(ctx: Ctx) -> Scenario:
    originals = ctx.pool()
    f.write(ctx.root / "rec" / "img03.png", f.rgb(8, 8, 91))
    return Scenario(ctx.recover(), ctx.root / "rec", originals=originals)


@case("recover_missing_source", FATAL, "recover from a folder that does not exist")
def _recover_missing(ctx: Ctx) -> Scenario:
    return Scenario(ctx.recover(src=ctx.root / "nope"), None, must_name=("nope",))


# --- privacy of records ----------------------------------------------------------------------


@case(
    "record_privacy",
    OK,
    "records hold no plain digest of the original and no plain palette index map",
)
def _privacy(ctx: Ctx) -> Scenario:
    f.write(ctx.src / "dup.png", f.palette_with_duplicates())
    ctx.good(name="rgb.png", seed=140)

    def leaks(_: Outcome) -> list[str]:
        problems = []
        for name in ("dup.png", "rgb.png"):
            original = Image.open(ctx.src / name)
            record = r.record_bytes(ctx.dst / name)
            digests = {
                "pixel_digest": pixel_digest(original),
                "sha256(pixels)": hashlib.sha256(original.tobytes()).hexdigest(),
                "sha256(file)": hashlib.sha256((ctx.src / name).read_bytes()).hexdigest(),
            }
            for what, digest in digests.items():
                if digest.encode() in record or bytes.fromhex(digest) in record:
                    problems.append(f"{name}: the record holds {what} of the original in plain")
            if name == "dup.png":
                indices = np.asarray(original).tobytes()
                packed = zlib.compress(indices, 9)
                if indices in record or packed in record or base64.b64encode(packed) in record:
                    problems.append("dup.png: the record holds the palette index map in plain")
        return problems

    return Scenario(
        ctx.protect(), ctx.dst, sources=ctx.src, roundtrip=ctx.kit.protector, check=leaks
    )
