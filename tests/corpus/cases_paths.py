"""Corpus cases for the file system: permissions, symlinks, odd names, sources and
destinations that overlap or are not folders."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tests.corpus import files as f
from tests.corpus.corpus import (
    FAILED,
    FATAL,
    OK,
    Ctx,
    Scenario,
    case,
    protected_count,
)

# --- protect: the file system ----------------------------------------------------------------


@case("unreadable_file", FAILED, "a chmod 000 file: reported by name", needs_non_root=True)
def _unreadable_file(ctx: Ctx) -> Scenario:
    ctx.good()
    locked = f.write(ctx.src / "locked.png", f.rgb(8, 8, 40))
    locked.chmod(0)
    return Scenario(
        ctx.protect(),
        ctx.dst,
        sources=ctx.src,
        roundtrip=ctx.kit.protector,
        must_name=("locked.png",),
    )


@case("unreadable_folder", FAILED, "a chmod 000 sub-folder: reported by name", needs_non_root=True)
def _unreadable_folder(ctx: Ctx) -> Scenario:
    ctx.good()
    f.write(ctx.src / "closed" / "inside.png", f.rgb(8, 8, 41))
    (ctx.src / "closed").chmod(0)
    return Scenario(ctx.protect(), ctx.dst, sources=ctx.src, must_name=("closed",))


@case(
    "destination_read_only",
    FATAL,
    "a read-only destination: a message, no traceback",
    needs_non_root=True,
)
def _read_only_destination(ctx: Ctx) -> Scenario:
    ctx.good()
    ctx.dst.mkdir()
    ctx.dst.chmod(0o555)
    return Scenario(ctx.protect(), ctx.dst)


def _linked(
    name: str,
    target: str | Callable[[Ctx], Path],
    outcome: str,
    named: bool,
) -> None:
    """A symlink in the source; ``named``: it cannot be followed, so it must be reported."""

    def build(ctx: Ctx) -> Scenario:
        ctx.good()
        link = ctx.src / name
        link.symlink_to(target(ctx) if callable(target) else target)
        return Scenario(
            ctx.protect(),
            ctx.dst,
            sources=ctx.src,
            roundtrip=ctx.kit.protector,
            must_name=(name,) if named else (),
        )

    how = "reported by name" if named else "protected, or reported by name"
    case(f"symlink_{name.split('.')[0]}", (OK, FAILED), f"{outcome}: {how}")(build)


def _outside_file(ctx: Ctx) -> Path:
    return f.write(ctx.root / "outside" / "secret.png", f.rgb(8, 8, 42))


def _outside_folder(ctx: Ctx) -> Path:
    f.write(ctx.root / "elsewhere" / "far.png", f.rgb(8, 8, 43))
    return ctx.root / "elsewhere"


_linked("dangling.png", "does-not-exist.png", "a broken symlink", named=True)
_linked("loop.png", "loop.png", "a symlink to itself", named=True)
_linked("ping.png", "pong.png", "two symlinks pointing at each other", named=True)
_linked("outside.png", _outside_file, "a symlink to a file outside the source", named=False)
_linked("external", _outside_folder, "a symlink to a folder outside the source", named=False)


@case("symlink_folder_loop", (OK, FAILED), "a folder symlink to its parent: no endless walk")
def _folder_loop(ctx: Ctx) -> Scenario:
    ctx.good()
    (ctx.src / "sub").mkdir()
    ctx.good(ctx.src / "sub", "inner.png", seed=44)
    (ctx.src / "sub" / "up").symlink_to("..")
    return Scenario(
        ctx.protect(), ctx.dst, sources=ctx.src, roundtrip=ctx.kit.protector, time_limit=60
    )


@case(
    "symlink_in_destination",
    (OK, FAILED, FATAL),
    "a folder symlink inside DST pointing outside: never written through",
)
def _destination_link(ctx: Ctx) -> Scenario:
    ctx.good(ctx.src / "sub", "a.png")
    (ctx.root / "victim").mkdir()
    ctx.dst.mkdir()
    (ctx.dst / "sub").symlink_to(ctx.root / "victim")
    return Scenario(ctx.protect(), ctx.dst)


@case(
    "file_symlink_in_destination",
    (OK, FAILED, FATAL),
    "DST/good.png a symlink to a file outside: not overwritten",
)
def _destination_file_link(ctx: Ctx) -> Scenario:
    ctx.good()
    victim = f.write(ctx.root / "victim.png", f.rgb(8, 8, 45))
    ctx.dst.mkdir()
    (ctx.dst / "good.png").symlink_to(victim)
    return Scenario(ctx.protect(), ctx.dst)


@case("hidden_folder", (OK, FAILED), "an image in a hidden folder: protected or reported")
def _hidden_folder(ctx: Ctx) -> Scenario:
    ctx.good()
    ctx.good(ctx.src / ".cache", "thumb.png", seed=46)
    return Scenario(
        ctx.protect(),
        ctx.dst,
        sources=ctx.src,
        roundtrip=ctx.kit.protector,
    )


@case("non_utf8_file_name", (OK, FAILED), "a file name that is not UTF-8: protected or named")
def _non_utf8_name(ctx: Ctx) -> Scenario:
    ctx.good()
    ctx.src.mkdir(exist_ok=True)
    f.write(os.fsencode(ctx.src) + b"/latin1_caf\xe9.png", f.rgb(8, 8, 47))
    return Scenario(ctx.protect(), ctx.dst, sources=ctx.src, roundtrip=ctx.kit.protector)


@case(
    "non_utf8_failing_name",
    FAILED,
    "an empty file whose name is not UTF-8: named, no crash printing it",
)
def _non_utf8_failing(ctx: Ctx) -> Scenario:
    ctx.good()
    f.write(os.fsencode(ctx.src) + b"/broken_\xff\xfe.png", b"")
    return Scenario(ctx.protect(), ctx.dst, sources=ctx.src, must_name=("broken_",))


@case("non_utf8_folder_name", (OK, FAILED), "a folder name that is not UTF-8: protected or named")
def _non_utf8_folder(ctx: Ctx) -> Scenario:
    ctx.good()
    folder = os.fsencode(ctx.src) + b"/dir_\xff"
    os.mkdir(folder)
    f.write(folder + b"/inner.png", f.rgb(8, 8, 48))
    return Scenario(ctx.protect(), ctx.dst, sources=ctx.src, roundtrip=ctx.kit.protector)


@case("empty_source_folder", (OK, FATAL), "an empty source folder: nothing to do, said so")
def _empty_source(ctx: Ctx) -> Scenario:
    ctx.src.mkdir()
    return Scenario(ctx.protect(), ctx.dst)


@case("only_non_images", (OK, FAILED), "a folder of non-images: each reported")
def _only_non_images(ctx: Ctx) -> Scenario:
    f.write(ctx.src / "a.txt", b"x")
    f.write(ctx.src / "b.csv", b"1,2\n")
    return Scenario(ctx.protect(), ctx.dst, sources=ctx.src, must_name=("a.txt", "b.csv"))


@case("missing_source", FATAL, "a source that does not exist")
def _missing_source(ctx: Ctx) -> Scenario:
    return Scenario(ctx.protect(src=ctx.root / "nope"), ctx.dst, must_name=("nope",))


@case("missing_source_with_markup", FATAL, "a missing source named like console markup")
def _missing_markup_source(ctx: Ctx) -> Scenario:
    return Scenario(ctx.protect(src=ctx.root / "[/]nope"), ctx.dst, must_name=("[/]nope",))


@case("two_inputs_one_output", FAILED, "a.jpg and a.png both map to a.png: one refused by name")
def _collision(ctx: Ctx) -> Scenario:
    f.write(ctx.src / "a.jpg", f.rgb(8, 8, 50, "JPEG"))
    f.write(ctx.src / "a.png", f.rgb(8, 8, 51))
    return Scenario(ctx.protect(), ctx.dst, sources=ctx.src, roundtrip=ctx.kit.protector)


@case("case_collision", FAILED, "a.PNG and a.png both map to a.png: one refused by name")
def _case_collision(ctx: Ctx) -> Scenario:
    f.write(ctx.src / "a.PNG", f.rgb(8, 8, 52))
    f.write(ctx.src / "a.png", f.rgb(8, 8, 53))
    return Scenario(ctx.protect(), ctx.dst, sources=ctx.src, roundtrip=ctx.kit.protector)


@case("one_bomb_in_a_batch", FAILED, "a bomb between good files of one batch: only it fails")
def _bomb_in_batch(ctx: Ctx) -> Scenario:
    for index in range(4):
        ctx.good(name=f"g{index}.png", seed=60 + index)
    f.write(ctx.src / "g1b.png", f.png_header_only(100000, 100000))
    return Scenario(
        ctx.protect("--batch-size", "3"),
        ctx.dst,
        sources=ctx.src,
        roundtrip=ctx.kit.protector,
        must_name=("g1b.png",),
    )


@case("mixed_sizes_batch_one", OK, "mixed sizes and modes with --batch-size 1")
def _mixed(ctx: Ctx) -> Scenario:
    f.write(ctx.src / "a.png", f.rgb(5, 7, 70))
    f.write(ctx.src / "nested" / "c.png", f.converted("L")())
    f.write(ctx.src / "nested" / "d.png", f.rgb(12, 4, 71))
    return Scenario(
        ctx.protect("--batch-size", "1"), ctx.dst, sources=ctx.src, roundtrip=ctx.kit.protector
    )


@case("single_file_to_folder", OK, "one file to a folder outside")
def _single_file(ctx: Ctx) -> Scenario:
    path = ctx.good()
    return Scenario(
        ctx.protect(src=path),
        ctx.dst,
        sources=ctx.src,
        roundtrip=ctx.kit.protector,
        check=protected_count(ctx, 1),
    )


@case("single_file_to_sub_folder", OK, "protect dir/a.png dir/sub: beside, not over, the source")
def _single_to_sub(ctx: Ctx) -> Scenario:
    path = ctx.good()
    sub = ctx.src / "sub"
    return Scenario(ctx.protect(src=path, dst=sub), sub, check=protected_count(ctx, 1, sub))


# --- protect and recover: destination and source overlapping ---------------------------------


def _overlap(
    name: str, command: str, make: Callable[[Ctx], tuple[Path, Path]], outcome: str
) -> None:
    def build(ctx: Ctx) -> Scenario:
        ctx.good()
        ctx.good(name="b.jpg", seed=80)
        if command == "recover":
            ctx.pool()
        src, dst = make(ctx)
        args = (ctx.protect if command == "protect" else ctx.recover)(src=src, dst=dst)
        return Scenario(args, None)

    case(name, FATAL, f"{outcome}: refused before anything is written")(build)


_overlap(
    "protect_file_into_its_folder",
    "protect",
    lambda c: (c.src / "good.png", c.src),
    "protect dir/a.png dir",
)
_overlap(
    "protect_file_onto_itself",
    "protect",
    lambda c: (c.src / "good.png", c.src / "good.png"),
    "protect a.png a.png",
)
_overlap(
    "protect_jpg_into_its_folder",
    "protect",
    lambda c: (c.src / "b.jpg", c.src),
    "protect dir/b.jpg dir (writes dir/b.png)",
)
_overlap("protect_dst_is_src", "protect", lambda c: (c.src, c.src), "protect dir dir")
_overlap(
    "protect_dst_inside_src",
    "protect",
    lambda c: (c.src, c.src / "out"),
    "destination inside the source",
)
_overlap(
    "protect_src_inside_dst", "protect", lambda c: (c.src, c.root), "source inside the destination"
)
_overlap(
    "protect_dst_via_symlink",
    "protect",
    lambda c: (c.src, _link(c, c.src) / "out"),
    "destination inside the source through a symlink",
)
_overlap(
    "recover_dst_is_src", "recover", lambda c: (c.root / "prt", c.root / "prt"), "recover dir dir"
)
_overlap(
    "recover_dst_inside_src",
    "recover",
    lambda c: (c.root / "prt", c.root / "prt" / "rec"),
    "recover into a folder of the source",
)
_overlap(
    "recover_src_inside_dst",
    "recover",
    lambda c: (c.root / "prt", c.root),
    "recover a folder into its parent",
)
_overlap(
    "recover_file_onto_itself",
    "recover",
    lambda c: (c.root / "prt" / "img00.png", c.root / "prt" / "img00.png"),
    "recover a.png a.png",
)
_overlap(
    "recover_file_into_its_folder",
    "recover",
    lambda c: (c.root / "prt" / "img00.png", c.root / "prt"),
    "recover dir/a.png dir",
)


def _link(ctx: Ctx, target: Path) -> Path:
    link = ctx.root / "alias"
    link.symlink_to(target)
    return link


@case("destination_is_a_file", FATAL, "DST is an existing file: a message, the file untouched")
def _dst_file(ctx: Ctx) -> Scenario:
    ctx.good()
    f.write(ctx.root / "dst.txt", b"keep me")
    return Scenario(ctx.protect(dst=ctx.root / "dst.txt"), None)


@case("destination_under_a_file", FATAL, "DST below an existing file: a message")
def _dst_under_file(ctx: Ctx) -> Scenario:
    ctx.good()
    f.write(ctx.root / "dst.txt", b"keep me")
    return Scenario(ctx.protect(dst=ctx.root / "dst.txt" / "out"), None)


@case("recover_destination_is_a_file", FATAL, "recover into an existing file: a message")
def _recover_dst_file(ctx: Ctx) -> Scenario:
    ctx.pool()
    f.write(ctx.root / "rec", b"keep me")
    return Scenario(ctx.recover(), None)
