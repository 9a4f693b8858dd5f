"""The ``Example:`` sections of the defence modules run as doctests."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

MODULES = [
    "invprotect.defences",
    "invprotect.defences._base",
    "invprotect.defences.classic",
    "invprotect.defences.registry",
]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, extraglobs={"torch": torch}, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0
