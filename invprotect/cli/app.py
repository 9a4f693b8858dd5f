"""The Typer application every ``invprotect`` sub-command registers on."""

from __future__ import annotations

from typing import Annotated

import typer

from invprotect import __version__

app = typer.Typer(
    name="invprotect",
    help=(
        "Protect image data sets reversibly: protected copies fool classifiers, "
        "and the protector (the key) restores the originals."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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
