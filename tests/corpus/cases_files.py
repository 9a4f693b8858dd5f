"""Corpus cases for ``protect``: files that are no (usable) image, images that must come back
exactly, and metadata."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.corpus import files as f
from tests.corpus.corpus import (
    FAILED,
    OK,
    Ctx,
    Scenario,
    case,
    truncated,
)
from tests.corpus.kit import Outcome

# --- protect: files that are not (usable) images --------------------------------------------


def _protect_file(
    filename: str, make: Callable[[], bytes], named: bool
) -> Callable[[Ctx], Scenario]:
    """Build ``src/good.png`` and ``src/FILENAME``; the run protects the folder.

    With ``named``, the output must name FILENAME (it cannot be protected).
    """

    def build(ctx: Ctx) -> Scenario:
        ctx.good()
        f.write(ctx.src / filename, make())
        return Scenario(
            ctx.protect(),
            ctx.dst,
            sources=ctx.src,
            roundtrip=None if named else ctx.kit.protector,
            must_name=(filename,) if named else (),
        )

    return build


def _refused(name: str, filename: str, make: Callable[[], bytes], outcome: str) -> None:
    case(name, FAILED, f"{outcome}: reported as failed by name; good.png protected")(
        _protect_file(filename, make, named=True)
    )


def _jpeg() -> bytes:
    return f.rgb(16, 16, 3, "JPEG")


def _png_16(color_type: int, channels: int) -> Callable[[], bytes]:
    def make() -> bytes:
        rng = np.random.default_rng(7)
        shape = (8, 8) if channels == 1 else (8, 8, channels)
        return f.raw_png(rng.integers(0, 65536, shape), color_type, 16)

    return make


def _tiff(array: np.ndarray, mode: str | None = None) -> Callable[[], bytes]:
    return lambda: f.save(Image.fromarray(array, mode), "TIFF")


_refused("empty_png", "empty.png", lambda: b"", "an empty .png")
_refused("empty_jpg", "empty.jpg", lambda: b"", "an empty .jpg")
_refused("truncated_png", "cut.png", lambda: truncated(f.rgb(16, 16)), "a PNG cut in half")
_refused("truncated_jpeg", "cut.jpg", lambda: truncated(_jpeg()), "a JPEG cut in half")
_refused("png_signature_only", "sig.png", lambda: f.PNG_SIGNATURE, "a PNG signature alone")
_refused("text_as_png", "notes.png", lambda: b"hello, not an image\n", "text named .png")
_refused("html_as_jpg", "page.jpg", lambda: b"<html><body>x</body></html>", "HTML named .jpg")
_refused(
    "random_bytes_as_tif",
    "noise.tif",
    lambda: np.random.default_rng(3).integers(0, 256, 500, dtype=np.uint8).tobytes(),
    "random bytes named .tif",
)
_refused(
    "flipped_idat", "flip.png", lambda: f.flip_idat_byte(f.rgb(16, 16)), "a byte flipped in IDAT"
)
_refused(
    "zero_width_png",
    "zero.png",
    lambda: f.png_assemble(
        [(b"IHDR", bytes.fromhex("00000000000000080802000000")), (b"IEND", b"")]
    ),
    "a PNG header with width 0",
)
_refused(
    "png_16bit_rgb", "deep_rgb.png", _png_16(2, 3), "a 16-bit RGB PNG (would be cut to 8 bits)"
)
_refused("png_16bit_rgba", "deep_rgba.png", _png_16(6, 4), "a 16-bit RGBA PNG")
_refused("png_16bit_gray", "deep_gray.png", _png_16(0, 1), "a 16-bit gray PNG")
_refused("png_16bit_gray_alpha", "deep_la.png", _png_16(4, 2), "a 16-bit gray+alpha PNG")
_refused(
    "tiff_float",
    "float.tif",
    _tiff(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), "F"),
    "a 32-bit float TIFF",
)
_refused(
    "tiff_int32",
    "int32.tif",
    _tiff(np.arange(64, dtype=np.int32).reshape(8, 8) * 1000, "I"),
    "a 32-bit integer TIFF",
)
_refused(
    "tiff_16bit_gray",
    "deep.tif",
    _tiff(np.arange(64, dtype=np.uint16).reshape(8, 8) * 900),
    "a 16-bit gray TIFF",
)
_refused(
    "jpeg_cmyk",
    "print.jpg",
    lambda: f.save(Image.new("CMYK", (8, 8), (1, 2, 3, 4)), "JPEG"),
    "a CMYK JPEG",
)
_refused(
    "tiff_cmyk",
    "print.tif",
    lambda: f.save(Image.new("CMYK", (8, 8), (9, 8, 7, 6)), "TIFF"),
    "a CMYK TIFF",
)
_refused(
    "gif_animated", "anim.gif", lambda: f.animated("GIF"), "an animated GIF (first frame only)"
)
_refused("apng", "anim.png", lambda: f.animated("PNG"), "an animated PNG")
_refused("tiff_multiframe", "pages.tif", lambda: f.animated("TIFF"), "a 3-page TIFF")
_refused("webp_animated", "anim.webp", lambda: f.animated("WEBP"), "an animated WebP")
_refused(
    "bomb_100000",
    "bomb.png",
    lambda: f.png_header_only(100000, 100000),
    "a 100000x100000 PNG header",
)
_refused(
    "bomb_20000", "bomb2.png", lambda: f.png_header_only(20000, 20000), "a 20000x20000 PNG header"
)
_refused(
    "bomb_10000", "bomb3.png", lambda: f.png_header_only(10000, 10000), "a 10000x10000 PNG header"
)
_refused("png_16bit_named_jpg", "deep.jpg", _png_16(2, 3), "a 16-bit PNG behind a .jpg suffix")


# --- protect: images that must come back exactly ---------------------------------------------


def _kept(name: str, filename: str, make: Callable[[], bytes], outcome: str) -> None:
    case(name, OK, f"{outcome}: protected, recovered bit for bit")(
        _protect_file(filename, make, named=False)
    )


def _either(name: str, filename: str, make: Callable[[], bytes], outcome: str) -> None:
    case(name, (OK, FAILED), f"{outcome}: protected exactly, or refused by name")(
        _protect_file(filename, make, named=False)
    )


def _image(array: np.ndarray, mode: str, format: str = "PNG", **params: Any) -> Callable[[], bytes]:
    return lambda: f.save(Image.fromarray(array, mode), format, **params)


_kept(
    "palette_duplicate_colours",
    "dup.png",
    f.palette_with_duplicates,
    "palette listing a colour twice",
)
_kept(
    "palette_transparency_list",
    "ptrns.png",
    lambda: f.palette_with_transparency(False),
    "palette + tRNS per entry",
)
_kept(
    "palette_transparency_index",
    "ptrns1.png",
    lambda: f.palette_with_transparency(True),
    "palette + one transparent index",
)
_kept("palette_4bit", "p4.png", f.converted("P", bits=4), "a 4-bit palette PNG")
_kept("mode_la", "la.png", _image(f.pixels(8, 8, 2, 12), "LA"), "gray + alpha")
_kept("mode_1", "bw.png", f.converted("1"), "1-bit black and white")
_kept("mode_l", "gray.png", f.converted("L"), "8-bit gray")
_kept("mode_rgba", "rgba.png", _image(f.pixels(8, 8, 4, 13), "RGBA"), "RGBA")
_kept(
    "rgba_fully_transparent",
    "clear.png",
    _image(np.zeros((8, 8, 4), np.uint8), "RGBA"),
    "RGBA all transparent",
)
_kept("size_1x1", "one.png", lambda: f.rgb(1, 1), "a 1x1 image")
_kept("size_1x1000", "tall.png", lambda: f.rgb(1000, 1), "a 1x1000 image")
_kept("size_1000x1", "wide.png", lambda: f.rgb(1, 1000), "a 1000x1 image")
_kept("size_3x5", "odd.png", lambda: f.rgb(5, 3), "a 3x5 image")
_kept("size_4097x2", "long.png", lambda: f.rgb(2, 4097), "a 4097x2 image")
_kept("interlaced_png", "adam7.png", lambda: _interlaced(), "an interlaced (Adam7) PNG")
_kept("bmp", "pic.bmp", lambda: f.rgb(8, 8, 14, "BMP"), "a BMP")
_kept(
    "webp_lossless",
    "pic.webp",
    _image(f.pixels(8, 8, 3, 15), "RGB", "WEBP", lossless=True),
    "a lossless WebP",
)
_kept(
    "tiff_rgb_lzw",
    "pic.tif",
    _image(f.pixels(8, 8, 3, 16), "RGB", "TIFF", compression="tiff_lzw"),
    "an LZW TIFF",
)
_kept("jpeg_gray", "gray.jpg", f.converted("L", "JPEG"), "a gray JPEG")
_kept(
    "jpeg_progressive",
    "prog.jpg",
    f.converted("RGB", "JPEG", (16, 16), progressive=True),
    "a progressive JPEG",
)
_kept("png_named_jpg", "actually_png.jpg", lambda: f.rgb(8, 8, 17), "a PNG behind a .jpg suffix")
_kept("upper_case_suffix", "LOUD.PNG", lambda: f.rgb(8, 8, 18), "a .PNG suffix")
_kept("jpeg_suffix", "long.jpeg", lambda: f.rgb(8, 8, 19, "JPEG"), "a .jpeg suffix")
_kept("spaces_in_name", "my holiday photo.png", lambda: f.rgb(8, 8, 20), "spaces in the name")
_kept(
    "unicode_name",
    "caf\u00e9 \u65e5\u672c \U0001f600.png",
    lambda: f.rgb(8, 8, 21),
    "a Unicode name",
)
_kept("leading_dash_name", "-rf.png", lambda: f.rgb(8, 8, 22), "a name starting with a dash")
_either("gif_still", "still.gif", f.converted("P", "GIF"), "a single-frame GIF")
_either(
    "gray_with_trns", "graykey.png", f.converted("L", transparency=7), "gray with a tRNS colour key"
)
_either(
    "rgb_with_trns",
    "rgbkey.png",
    f.converted("RGB", transparency=(1, 2, 3)),
    "RGB with a tRNS colour key",
)
_either(
    "png_trailing_garbage",
    "tail.png",
    lambda: f.rgb(8, 8, 23) + b"garbage after IEND",
    "bytes after IEND",
)
_either("long_name", "n" * 240 + ".png", lambda: f.rgb(8, 8, 24), "a 244-character name")
_either(
    "not_an_image_txt", "notes.txt", lambda: b"a text file\n", "a .txt file among images (reported)"
)
_either("no_suffix", "README", lambda: b"read me\n", "a file without a suffix (reported)")
_either("ico", "favicon.ico", f.converted("RGB", "ICO"), "an .ico file (reported or protected)")
_either(
    "hidden_file", ".hidden.png", lambda: f.rgb(8, 8, 25), "a hidden file (protected or reported)"
)
_either("newline_in_name", "line\nbreak.png", lambda: f.rgb(8, 8, 26), "a newline in the name")


def _interlaced() -> bytes:
    return f.save(Image.fromarray(f.pixels(16, 16, 3, 27), "RGB"), "PNG", interlace=1)


def _rich_markup_name(ctx: Ctx) -> Scenario:
    """A failing file whose name is console markup: it must be printed, not interpreted."""
    ctx.good()
    f.write(ctx.src / "[/]broken.png", b"")
    f.write(ctx.src / "[bold]x[/bold].png", b"")
    return Scenario(
        ctx.protect(), ctx.dst, sources=ctx.src, must_name=("[/]broken.png", "[bold]x[/bold].png")
    )


case("markup_in_names", FAILED, "empty files named like console markup, named verbatim")(
    _rich_markup_name
)


# --- protect: metadata -----------------------------------------------------------------------


def _metadata_case(name: str, filename: str, make: Callable[[], bytes], outcome: str) -> None:
    def build(ctx: Ctx) -> Scenario:
        path = f.write(ctx.src / filename, make())
        wanted = f.metadata_of(Image.open(path))
        assert wanted, f"{filename} was made without metadata"

        def restored(outcome_: Outcome) -> list[str]:
            if filename in outcome_.output:
                return []  # refused by name: allowed
            back = ctx.root / "roundtrip" / (Path(filename).stem + ".png")
            if not back.is_file():
                return [f"{filename}: neither named nor recovered"]
            got = f.metadata_of(Image.open(back))
            return (
                []
                if got == wanted
                else [f"metadata dropped: had {sorted(wanted)}, got {sorted(got)}"]
            )

        return Scenario(
            ctx.protect(), ctx.dst, sources=ctx.src, roundtrip=ctx.kit.protector, check=restored
        )

    case(name, (OK, FAILED), f"{outcome}: kept through recovery, or refused by name")(build)


_metadata_case(
    "exif_jpeg",
    "camera.jpg",
    lambda: f.save(Image.fromarray(f.pixels(8, 8, 3, 30), "RGB"), "JPEG", exif=f.exif_bytes()),
    "a JPEG with EXIF",
)
_metadata_case(
    "exif_png",
    "exif.png",
    lambda: f.save(Image.fromarray(f.pixels(8, 8, 3, 31), "RGB"), "PNG", exif=f.exif_bytes()),
    "a PNG with an eXIf chunk",
)
_metadata_case(
    "icc_png",
    "icc.png",
    lambda: f.save(
        Image.fromarray(f.pixels(8, 8, 3, 32), "RGB"), "PNG", icc_profile=f.icc_profile()
    ),
    "a PNG with an ICC profile",
)
_metadata_case(
    "icc_jpeg",
    "icc.jpg",
    lambda: f.save(
        Image.fromarray(f.pixels(8, 8, 3, 33), "RGB"), "JPEG", icc_profile=f.icc_profile()
    ),
    "a JPEG with an ICC profile",
)
_metadata_case("text_chunks_png", "text.png", f.png_with_text, "a PNG with tEXt, zTXt, iTXt")
