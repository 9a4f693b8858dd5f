"""The command line stays thin: short functions, and command modules that share only helpers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import invprotect.cli

CLI = Path(invprotect.cli.__file__).parent
MODULES = sorted(CLI.glob("*.py"))
SHARED = {"app", "options", "paths", "progress", "shards"}
"""The modules every command may import: the app, shared options, checks and progress."""

LONGEST = 60
"""Lines a function of the command line may have (signature and docstring included)."""


def test_no_function_of_the_command_line_is_longer_than_the_limit() -> None:
    lengths = {
        f"{path.name}:{node.name}": node.end_lineno - node.lineno + 1
        for path in MODULES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assert "protector.py:train" in lengths and len(lengths) > 30  # the check reads them all
    assert {name: n for name, n in lengths.items() if n > LONGEST} == {}


@pytest.mark.parametrize(
    "path", [p for p in MODULES if p.stem != "__init__"], ids=lambda path: path.name
)
def test_command_modules_import_only_the_shared_ones(path: Path) -> None:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("invprotect.cli."):
                imported.add(node.module.removeprefix("invprotect.cli."))
            elif node.module == "invprotect.cli":
                imported |= {alias.name for alias in node.names}
    assert imported <= SHARED, f"{path.name} imports {sorted(imported - SHARED)}"
