"""The ``invprotect`` application: where commands register, and their exit codes.

`run` is the console script's entry point. It gives every command the same exit codes:

- ``0`` (`EXIT_OK`): everything done;
- ``1`` (`EXIT_FAILED`): the command ran, but some files failed (each one reported);
- ``2`` (`EXIT_USAGE`): bad arguments or a fatal problem found before or while working
  (a missing path, an unloadable protector, an unwritable destination);
- ``3`` (`EXIT_CRASH`): an unexpected exception, a bug: one line names it and the file the
  full traceback was written to (no traceback on the terminal);
- ``130``: interrupted with Ctrl-C (Typer's code).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import traceback
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from invprotect import __version__
from invprotect.cli.progress import console

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CRASH = 3

_TYPE_WORDS = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT", "Path": "PATH"}


class _Argument(TyperArgument):
    """An argument shown as click shows one: ``SRC`` (``[SRC]`` if optional), no type."""

    def display_type_rich(self, ctx: typer.Context) -> str | None:
        return None

    def get_usage_pieces(self, ctx: typer.Context) -> list[str]:
        name = self.metavar or self.name.upper()
        name = name if self.required else f"[{name}]"
        return [name if self.nargs == 1 else f"{name}..."]


class _Option(TyperOption):
    """An option whose value is shown by its metavar, or click's type word (``INTEGER``)."""

    def display_type_rich(self, ctx: typer.Context) -> str | None:
        if self.metavar is not None:
            return self.metavar
        bare = self.bare_type().removeprefix("list[").removesuffix("]")
        return _TYPE_WORDS.get(bare, "VALUE")


class _Group(TyperGroup):
    """The command group; its commands' help shows ``SRC`` and ``N``, not ``{src} <int>``."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for command in self.commands.values():
            for param in command.params:
                if type(param) is TyperArgument:
                    param.__class__ = _Argument
                    param.metavar = param.metavar or param.name.upper()
                elif type(param) is TyperOption:
                    param.__class__ = _Option


app = typer.Typer(
    cls=_Group,
    name="invprotect",
    help=(
        "Protect image data sets reversibly: protected copies fool classifiers, "
        "and the protector (the key) restores the originals. Exit codes: 0 done, "
        "1 some files failed, 2 bad arguments or a fatal error, 3 internal error."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"invprotect {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Protect and recover image data sets."""


def invoke(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``) and return its exit code.

    Typer prints usage errors (code 2); a fatal `OSError` (an unwritable or full disk, a
    path that is not what it should be) prints one line (code 2); any other exception
    prints one line and writes its traceback to a temporary file (code 3).
    """
    command = typer.main.get_command(app)
    try:
        command.main(args=None if argv is None else list(argv), prog_name="invprotect")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else EXIT_OK if done.code is None else 1
    except OSError as error:
        console.print(f"error: {_one_line(error)}", markup=False, highlight=False)
        return EXIT_USAGE
    except Exception as error:
        return _report_crash(error, argv)
    return EXIT_OK


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``invprotect`` console script: `invoke`, then exit with its code."""
    sys.exit(invoke(argv))


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename is not None else ""
        text = f"{error.strerror}{where}"
    return text


def _report_crash(error: Exception, argv: Sequence[str] | None) -> int:
    """Write the traceback to a temporary file and print one line naming it."""
    details = traceback.format_exc()
    try:
        with tempfile.NamedTemporaryFile(
            "w", prefix="invprotect-crash-", suffix=".txt", delete=False, encoding="utf-8"
        ) as file:
            file.write(f"invprotect {__version__}, Python {platform.python_version()}, ")
            file.write(f"{platform.platform()}\nargv: {list(sys.argv if argv is None else argv)}\n")
            file.write(f"cwd: {os.getcwd()}\n\n{details}")
        where = f"traceback in {file.name}"
    except OSError as write_error:
        where = f"the traceback could not be written: {_one_line(write_error)}"
    console.print(
        f"internal error: {type(error).__name__}: {_one_line(error)}; please report it ({where})",
        markup=False,
        highlight=False,
    )
    return EXIT_CRASH
