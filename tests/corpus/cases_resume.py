"""Corpus cases for resuming ``protect``: stale files, hand-edited manifests, a kill, two runs
at once."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.corpus import files as f
from tests.corpus.corpus import (
    FAILED,
    FATAL,
    MANIFEST,
    OK,
    Ctx,
    Scenario,
    case,
    no_tmp,
    unique_manifest,
)
from tests.corpus.kit import TRACEBACK, Outcome, run_cli, start_subprocess

# --- protect: resuming -----------------------------------------------------------------------


def _resume(
    name: str,
    prepare: Callable[[Ctx], None],
    outcome: str,
    codes: tuple[int, ...] = (OK,),
    extra_check: Callable[[Ctx], Callable[[Outcome], list[str]]] | None = None,
) -> None:
    """A first complete protect run of 3 files, ``prepare`` damages its result, then a rerun."""

    def build(ctx: Ctx) -> Scenario:
        for index in range(3):
            ctx.good(name=f"p{index}.png", seed=120 + index)
        first = run_cli(ctx.protect())
        assert first.code == OK, f"the first run failed: {first.output}"
        prepare(ctx)
        return Scenario(
            ctx.protect(),
            ctx.dst,
            sources=ctx.src,
            roundtrip=ctx.kit.protector,
            check=extra_check(ctx) if extra_check else no_tmp(ctx.dst),
        )

    case(name, codes, outcome)(build)


def _manifest_edit(edit: Callable[[list[str]], list[str] | bytes]) -> Callable[[Ctx], None]:
    def prepare(ctx: Ctx) -> None:
        path = ctx.dst / MANIFEST
        lines = path.read_text().splitlines()
        changed = edit(lines)
        path.write_bytes(
            changed if isinstance(changed, bytes) else "".join(x + "\n" for x in changed).encode()
        )

    return prepare


def _says_manifest(_: Ctx) -> Callable[[Outcome], list[str]]:
    def check(outcome: Outcome) -> list[str]:
        return (
            []
            if "manifest" in outcome.output.lower()
            else ["the damaged manifest is not mentioned"]
        )

    return check


def _stale_tmp(ctx: Ctx) -> None:
    f.write(ctx.dst / ".p1.png.x8Gq2z.tmp", b"\x89PNG torn")


def _torn_manifest(ctx: Ctx) -> None:
    path = ctx.dst / MANIFEST
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    (ctx.dst / "p2.png").unlink()


def _empty_output(ctx: Ctx) -> None:
    (ctx.dst / "p1.png").write_bytes(b"")


def _missing_output(ctx: Ctx) -> None:
    (ctx.dst / "p0.png").unlink()


def _changed_source(ctx: Ctx) -> None:
    time.sleep(0.01)
    f.write(ctx.src / "p1.png", f.rgb(8, 8, 150))


def _bad_line(line: str) -> Callable[[Ctx], None]:
    return _manifest_edit(lambda lines: [line, *lines[1:]])


_resume("resume_stale_tmp", _stale_tmp, "a stale .tmp in DST after a kill: removed, all protected")
_resume(
    "resume_torn_manifest_line",
    _torn_manifest,
    "a torn last manifest line (killed mid-write): redone",
)
_resume("resume_empty_output", _empty_output, "an empty output file listed in the manifest: redone")
_resume(
    "resume_missing_output", _missing_output, "an output listed in the manifest but missing: redone"
)
_resume(
    "resume_changed_source",
    _changed_source,
    "a source changed since the first run: protected again",
)
_resume(
    "resume_duplicated_lines",
    _manifest_edit(lambda lines: lines + lines),
    "every manifest line twice",
)
_resume(
    "manifest_non_object_line",
    _bad_line("[1, 2]"),
    "a manifest line [1, 2]",
    (OK, FATAL),
    _says_manifest,
)
_resume("manifest_number_line", _bad_line("42"), "a manifest line 42", (OK, FATAL), _says_manifest)
_resume(
    "manifest_string_line",
    _bad_line('"p0.png"'),
    "a manifest line that is a string",
    (OK, FATAL),
    _says_manifest,
)
_resume(
    "manifest_null_line", _bad_line("null"), "a manifest line null", (OK, FATAL), _says_manifest
)
_resume(
    "manifest_no_path",
    _bad_line('{"output": "p0.png"}'),
    "a manifest line without path",
    (OK, FATAL),
    _says_manifest,
)
_resume(
    "manifest_path_not_string",
    _bad_line('{"path": 7, "output": 7}'),
    "a manifest line whose path is a number",
    (OK, FATAL),
    _says_manifest,
)
_resume(
    "manifest_not_utf8",
    _manifest_edit(lambda lines: b"\xff\xfe\x00garbage\n" + "\n".join(lines[1:]).encode() + b"\n"),
    "non-UTF-8 bytes in the manifest",
    (OK, FATAL),
    _says_manifest,
)
_resume(
    "manifest_path_traversal",
    _bad_line('{"path": "../../../etc/passwd", "output": "../../../tmp/x.png"}'),
    "a manifest line pointing outside",
    (OK, FATAL),
)
_resume(
    "manifest_empty",
    _manifest_edit(lambda lines: []),
    "an empty manifest (outputs present): redone or verified",
)


@case("manifest_is_a_folder", FATAL, "DST/manifest.jsonl is a folder: a message")
def _manifest_folder(ctx: Ctx) -> Scenario:
    ctx.good()
    (ctx.dst / MANIFEST).mkdir(parents=True)
    return Scenario(ctx.protect(), ctx.dst)


@case(
    "manifest_symlink_outside",
    (OK, FATAL),
    "DST/manifest.jsonl a symlink outside: never appended to",
)
def _manifest_link(ctx: Ctx) -> Scenario:
    ctx.good()
    victim = f.write(ctx.root / "victim.log", b"keep\n")
    ctx.dst.mkdir()
    (ctx.dst / MANIFEST).symlink_to(victim)
    return Scenario(ctx.protect(), ctx.dst)


@case(
    "resume_with_another_key",
    (OK, FATAL),
    "a resume with another protector: refused, or redone with it",
)
def _resume_other_key(ctx: Ctx) -> Scenario:
    for index in range(2):
        ctx.good(name=f"k{index}.png", seed=130 + index)
    first = run_cli(ctx.protect("--protector", str(ctx.kit.other_protector)))
    assert first.code == OK, first.output
    ctx.good(name="k2.png", seed=132)
    return Scenario(ctx.protect(), ctx.dst, sources=ctx.src, roundtrip=ctx.kit.protector)


def _recover_manifest(
    name: str, edit: Callable[[list[str]], list[str] | bytes], outcome: str
) -> None:
    def build(ctx: Ctx) -> Scenario:
        originals = ctx.pool()
        path = ctx.root / "prt" / MANIFEST
        changed = edit(path.read_text().splitlines())
        path.write_bytes(
            changed if isinstance(changed, bytes) else "".join(x + "\n" for x in changed).encode()
        )
        return Scenario(ctx.recover(), ctx.root / "rec", originals=originals)

    case(name, (OK, FAILED, FATAL), f"{outcome}: a message; if it goes on, every file bit for bit")(
        build
    )


_recover_manifest(
    "recover_manifest_list_line",
    lambda lines: ["[1, 2]", *lines],
    "recover with a manifest line [1, 2]",
)
_recover_manifest(
    "recover_manifest_number_line", lambda lines: ["42", *lines], "recover with a manifest line 42"
)
_recover_manifest(
    "recover_manifest_no_path",
    lambda lines: ['{"output": "img00.png"}', *lines],
    "recover with a manifest line without path",
)
_recover_manifest(
    "recover_manifest_not_utf8",
    lambda lines: b"\xff\xfe\n" + "\n".join(lines).encode(),
    "recover with non-UTF-8 bytes in the manifest",
)
_recover_manifest(
    "recover_manifest_duplicated",
    lambda lines: lines + lines,
    "recover with every manifest line twice",
)
_recover_manifest(
    "recover_manifest_torn",
    lambda lines: [*lines[:-1], lines[-1][:20]],
    "recover with a torn last manifest line",
)


# --- two runs at once, and a real kill ---------------------------------------------------------


@case(
    "concurrent_run_then_kill",
    OK,
    "a second protect while one works on the same DST refuses naming the lock (or waits); "
    "the first killed with SIGKILL; the rerun completes: no .tmp left, no file listed twice",
)
def _concurrent_then_killed(ctx: Ctx) -> Scenario:
    for index in range(60):
        ctx.good(name=f"k{index:03d}.png", seed=200 + index)
    first = start_subprocess(ctx.protect("--batch-size", "1"))
    manifest = ctx.dst / MANIFEST
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and first.poll() is None:
        if manifest.is_file() and manifest.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.02)
    second = run_cli(ctx.protect("--batch-size", "1"))  # while the first one works
    first.kill()
    first.communicate()
    f.write(ctx.dst / ".k059.png.Zq9x1a.tmp", b"\x89PNG torn")  # as a kill during a write leaves

    def check(outcome: Outcome) -> list[str]:
        problems = no_tmp(ctx.dst)(outcome) + unique_manifest(ctx.dst)(outcome)
        tail = second.output.strip().splitlines()[-1:] or [""]
        if second.error or TRACEBACK in second.output or second.code not in (OK, FATAL):
            problems.append(f"the second run at once ended with {second.code}: {tail[0]}")
        elif second.code == FATAL and "lock" not in second.output.lower():
            problems.append(f"the second run at once does not name the lock: {tail[0]}")
        return problems

    return Scenario(
        ctx.protect(), ctx.dst, sources=ctx.src, roundtrip=ctx.kit.protector, check=check
    )
