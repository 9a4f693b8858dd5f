"""Snapshot of the public API: removing or renaming a public name must be a deliberate change."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

PUBLIC_API = {
    "invprotect": [
        "AttackLayer",
        "DSACBlock",
        "HaarDownsampling",
        "HaarUpsampling",
        "InvertibleUNet",
        "RAEG",
        "Presets",
        "Registry",
        "UnknownNameError",
        "UnknownPresetError",
        "__version__",
    ],
    "invprotect.blocks": [
        "COUPLINGS",
        "UNET_PRESETS",
        "AdditiveCouplingBlock",
        "ConvSubnet",
        "DSACBlock",
        "HaarDownsampling",
        "HaarUpsampling",
        "InvertibleUNet",
        "LiftingDownsampling",
        "LiftingUpsampling",
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
        "lifting_analysis",
        "lifting_synthesis",
        "list_blocks",
        "list_subnets",
        "register_block",
        "register_subnet",
        "subnet_constructor",
    ],
    "invprotect.attacks": [
        "Attack",
        "AttackFactory",
        "AttackLayer",
        "AttackParams",
        "AttackResult",
        "CHROMA_TABLE",
        "DEFAULT_ATTACKS",
        "GaussianBlur",
        "GaussianNoise",
        "GradientKind",
        "Grayscale",
        "IdentityAttack",
        "JPEGMask",
        "JPEGSS",
        "JPEGSTE",
        "JPEG_METHODS",
        "KorniaJPEG",
        "LUMA_TABLE",
        "MedianBlur",
        "PSEUDO_JPEG_WEIGHTS",
        "PseudoJPEG",
        "QuantizeSTE",
        "RandomCrop",
        "Resize",
        "Rounding",
        "create_attack",
        "dct_matrix",
        "gaussian_blur",
        "gaussian_noise",
        "grayscale",
        "identity",
        "is_attack",
        "jpeg_kornia",
        "jpeg_mask",
        "jpeg_ss",
        "jpeg_ste",
        "list_attacks",
        "median_blur",
        "pseudo_jpeg",
        "quality_tables",
        "quantize_ste",
        "random_crop",
        "real_jpeg",
        "register_attack",
        "resize",
    ],
    "invprotect.baselines": [
        "EmbeddingProtector",
        "RAE",
        "RAE_ATTACKS",
        "RIT",
        "RecoveryStatus",
        "carlini_wagner_l2",
        "create_baseline",
        "igsm",
        "is_baseline",
        "list_baselines",
        "rit_restore",
        "rit_transform",
    ],
    "invprotect.defences": [
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
        "reduce_bit_depth",
        "register_defence",
        "resize_down_up",
        "sample_generators",
        "to_8bit_grid",
        "to_grayscale",
        "train_comdefend",
    ],
    "invprotect.evaluation": [
        "DEFAULT_DEFENCE_SPECS",
        "SLOW_DEFENCES",
        "DefenceResult",
        "VerifyConfig",
        "VerifyReport",
        "choose_files",
        "default_defences",
        "image_grid",
        "remove_earlier_files",
        "sample_images",
        "split_defence_specs",
        "verify",
        "write_report",
    ],
    "invprotect.metrics": ["psnr", "psnr_from_mse", "ssim"],
    "invprotect.checks": [
        "GRID_TOLERANCE",
        "ImageTypeError",
        "check_8bit_grid",
        "check_images",
        "check_side_multiple",
        "check_uint8_images",
        "check_unit_range",
    ],
    "invprotect.sharding": [
        "SHARD_FORMAT",
        "Shard",
        "parse_shard",
        "shard_from_environment",
        "shard_of",
        "worker_device",
    ],
    "invprotect.distributed": [
        "TORCHRUN_VARIABLES",
        "barrier",
        "from_main",
        "is_distributed",
        "is_main",
        "launched_by_torchrun",
        "main_first",
        "process_group",
        "rank",
        "share",
        "share_weight",
        "sum_over_ranks",
        "world_size",
        "wrap",
    ],
    "invprotect.protectors": ["load_protector"],
    "invprotect.data.protected": [
        "OnAltered",
        "ProtectedFileError",
        "ProtectedImageFolder",
        "load_protected_set",
    ],
    "invprotect.models.protector": [
        "PROTECTORS",
        "Checkpoint",
        "Protector",
        "list_protector_formats",
        "register_protector",
    ],
    "invprotect.rdh": ["CapacityError", "MAGIC", "capacity", "capacity_bpp", "embed", "extract"],
    "invprotect.models.poison": [
        "PoisonConfig",
        "TargetedPoison",
        "flip_and_shift",
        "targeted_steps",
    ],
    "invprotect.models": ["RAEG", "RAEG_PRESETS", "Discriminator", "Protector", "RAEGConfig"],
    "invprotect.training": [
        "ClassifierTrainingConfig",
        "ComDefendRunConfig",
        "Listener",
        "ProtectorRunConfig",
        "RunResult",
        "TargetRunConfig",
        "TrainingData",
        "TrainingEvent",
        "augment_batch",
        "load_training_data",
        "one_cycle_lr",
        "run_comdefend_training",
        "run_protector_training",
        "run_target_training",
        "train_classifier",
    ],
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


def _documented_identifiers() -> set[str]:
    docs = Path(__file__).resolve().parents[1] / "docs" / "api"
    found: set[str] = set()
    for page in docs.rglob("*.md"):
        found |= set(re.findall(r"^::: ([\w.]+)", page.read_text(), flags=re.MULTILINE))
    return found


@pytest.mark.parametrize("module_name", sorted(PUBLIC_API))
def test_every_public_class_and_function_has_a_docstring_and_an_api_page(module_name: str) -> None:
    module = importlib.import_module(module_name)
    documented = _documented_identifiers()
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # constants and aliases are documented on their module's page
        assert inspect.getdoc(obj), f"{module_name}.{name} has no docstring"
        candidates = {obj.__module__, f"{obj.__module__}.{name}", f"{module_name}.{name}"}
        assert candidates & documented, f"{module_name}.{name} is on no page of docs/api"
