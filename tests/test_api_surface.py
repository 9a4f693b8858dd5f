"""Snapshot of the public API: removing or renaming a public name must be a deliberate change."""

from __future__ import annotations

import importlib

import pytest

PUBLIC_API = {
    "invprotect": [
        "AttackLayer",
        "DSACBlock",
        "HaarDownsampling",
        "HaarUpsampling",
        "InvertibleUNet",
        "RAEG",
        "Registry",
        "UnknownNameError",
        "__version__",
    ],
    "invprotect.blocks": [
        "UNET_PRESETS",
        "ConvSubnet",
        "DSACBlock",
        "HaarDownsampling",
        "HaarUpsampling",
        "InvertibleUNet",
        "SpectralResidualSubnet",
        "SubnetConstructor",
        "UNetConfig",
        "create_block",
        "create_subnet",
        "get_block",
        "haar_analysis",
        "haar_synthesis",
        "is_block",
        "is_subnet",
        "list_blocks",
        "list_subnets",
        "register_block",
        "register_subnet",
        "subnet_constructor",
    ],
    "invprotect.models": ["RAEG", "RAEG_PRESETS", "Discriminator", "Protector", "RAEGConfig"],
    "invprotect.targets": [
        "CIFAR10_MEAN",
        "CIFAR10_STD",
        "ArchFactory",
        "Classifier",
        "Ensemble",
        "accuracy",
        "create_arch",
        "is_arch",
        "list_archs",
        "predict",
        "register_arch",
    ],
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC_API))
def test_public_names_are_exactly_the_snapshot(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(PUBLIC_API[module_name])
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.{name} is in __all__ but missing"


def test_version_comes_from_the_installed_metadata() -> None:
    import invprotect

    assert invprotect.__version__.count(".") >= 2
