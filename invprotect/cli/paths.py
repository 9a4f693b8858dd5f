"""Checks of the folders a command will write, made before any work starts."""

from __future__ import annotations

import os
from pathlib import Path

from invprotect.cli.progress import fail


def check_output_folder(folder: Path, option: str) -> None:
    """Refuse (exit code 2) a ``folder`` that cannot be created or written.

    Args:
        folder: Where the command will write (created when missing).
        option: How the user named it (``"DST"``, ``"--out"``), for the message.

    Raises:
        typer.Exit: With code 2 if ``folder`` is a file, lies below a file, or is not
            writable (permissions, a read-only file system).
    """
    if folder.exists() and not folder.is_dir():
        raise fail(
            f"{option} {folder} exists and is a file; give a folder (it is created when missing)"
        )
    existing = folder.resolve()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise fail(f"{option} {folder} cannot be created: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise fail(
            f"{option} {folder} is not writable ({existing}: permission denied or read-only)"
        )
