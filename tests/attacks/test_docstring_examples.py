"""The ``Example:`` sections of the attack modules run as doctests."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

MODULES = [
    "invprotect.attacks.pixel",
    "invprotect.attacks.filters",
    "invprotect.attacks.geometry",
    "invprotect.attacks.jpeg",
    "invprotect.attacks.registry",
    "invprotect.attacks.layer",
]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, extraglobs={"torch": torch}, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0
