"""Snapshot of ``invprotect.defences``'s public names, each documented on the API page."""

from __future__ import annotations

import inspect
from pathlib import Path

import invprotect.defences

PUBLIC = [
    "COMDEFEND_PRESETS",
    "JPEG",
    "BitDepth",
    "ComCNN",
    "ComDefend",
    "ComDefendConfig",
    "DIPDefend",
    "DIPResult",
    "Defence",
    "GaussianBlur",
    "GaussianNoise",
    "GeneratorArg",
    "Grayscale",
    "MedianFilter",
    "RecCNN",
    "Resize",
    "TrainingStep",
    "add_gaussian_noise",
    "check_images",
    "comdefend_from_weights",
    "create_defence",
    "create_defence_from_spec",
    "defence_parameters",
    "evaluate_comdefend",
    "gaussian_blur",
    "is_defence",
    "jpeg_compress",
    "list_defences",
    "median_filter",
    "parse_defence_spec",
    "patch_psnr",
    "psnr_per_image",
    "reduce_bit_depth",
    "register_defence",
    "resize_down_up",
    "sample_generators",
    "to_8bit_grid",
    "to_grayscale",
    "train_comdefend",
]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "api" / "defences.md"


def test_public_names_are_exactly_the_snapshot() -> None:
    assert sorted(invprotect.defences.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert hasattr(invprotect.defences, name), name


def test_every_public_name_is_documented_with_a_docstring() -> None:
    page = DOCS.read_text()
    for name in PUBLIC:
        obj = getattr(invprotect.defences, name)
        module = getattr(obj, "__module__", None)
        if not inspect.isclass(obj) and not inspect.isfunction(obj):
            module = None  # constants and type aliases: found by name
        target = f"{module}.{name}" if module else f".{name}"
        assert target in page, f"{name} is missing from {DOCS.name}"
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"
