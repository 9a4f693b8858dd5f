"""Atomic file writes: a temporary file in the same folder, then a rename.

A reader sees the old file or the new one, never half of one; an interrupted write leaves
only a temporary file named like `TEMPORARY_NAME`, which `remove_stale_temporaries`
deletes when the next run starts.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

TEMPORARY_NAME = re.compile(r"\..+\.[A-Za-z0-9_]+\.tmp")
"""Names of temporary files like those `atomic_write_bytes` writes (``.NAME.RANDOM.tmp``)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A symbolic link at ``path`` is replaced by the file, never written through.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(root: Path, targets: set[Path] | None = None) -> list[Path]:
    """Delete the temporary files of `atomic_write_bytes` under ``root`` (links not followed).

    Only call this while no other process writes those files.

    Args:
        root: The folder searched, with its sub-folders.
        targets: Remove only the temporaries of these files (all of them when ``None``).

    Returns:
        The files removed.
    """
    removed = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if not TEMPORARY_NAME.fullmatch(name) or path.is_symlink() or not path.is_file():
                continue
            if targets is None or Path(folder) / name[1:].rsplit(".", 2)[0] in targets:
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
