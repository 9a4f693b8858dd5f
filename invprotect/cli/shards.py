"""``--shard K/N`` of the folder commands, and the shard torchrun gives a worker."""

from __future__ import annotations

from typing import Annotated

import typer

from invprotect.cli.progress import fail
from invprotect.sharding import Shard, parse_shard, shard_from_environment


def _parse(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


ShardOption = Annotated[
    Shard | None,
    typer.Option(
        "--shard",
        metavar="K/N",
        parser=_parse,
        show_default=False,
        help=(
            "Do only shard K of N: the files whose relative path hashes to K (K from 0 to "
            "N-1, like torchrun's RANK). Run every shard, at once or one after the other, "
            "for the whole set. Under torchrun each process does shard RANK/WORLD_SIZE."
        ),
    ),
]
"""``--shard K/N`` of ``protect``, ``recover`` and ``purify``."""


def resolve_shard(option: Shard | None) -> Shard | None:
    """The shard of this run: ``--shard``, else torchrun's ``RANK/WORLD_SIZE``, else none.

    Raises:
        typer.Exit: With code 2 if both are given (with more than one torchrun process),
            or torchrun's variables are not numbers.
    """
    try:
        launched = shard_from_environment()
    except ValueError as error:
        raise fail(str(error)) from None
    if option is not None and launched is not None and launched.count > 1:
        raise fail(
            f"expected --shard or torchrun, received both: --shard {option} in torchrun's "
            f"process {launched.index} of {launched.count}; drop --shard (torchrun gives each "
            "process its shard), or run without torchrun"
        )
    return option if option is not None else launched
