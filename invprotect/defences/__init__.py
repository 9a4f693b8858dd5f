"""Purifications a thief applies to 8-bit protected images, and their registry.

Every defence is a `Defence` (an ``nn.Module``): float RGB ``(B, 3, H, W)`` in
``[0, 1]`` on the 8-bit grid in, the same shape on the 8-bit grid out. Build them by
name with `create_defence` or from a command-line spec with
`create_defence_from_spec`::

    >>> from invprotect.defences import create_defence_from_spec
    >>> create_defence_from_spec("jpeg:quality=90")
    JPEG(quality=90)
"""

from invprotect.defences._base import (
    Defence,
    GeneratorArg,
    check_images,
    sample_generators,
    to_8bit_grid,
)
from invprotect.defences.classic import (
    JPEG,
    BitDepth,
    GaussianBlur,
    GaussianNoise,
    Grayscale,
    MedianFilter,
    Resize,
    add_gaussian_noise,
    gaussian_blur,
    jpeg_compress,
    median_filter,
    reduce_bit_depth,
    resize_down_up,
    to_grayscale,
)
from invprotect.defences.comdefend import (
    COMDEFEND_PRESETS,
    ComCNN,
    ComDefend,
    ComDefendConfig,
    RecCNN,
    TrainingStep,
    comdefend_from_weights,
    evaluate_comdefend,
    train_comdefend,
)
from invprotect.defences.dipdefend import DIPDefend, DIPResult, patch_psnr
from invprotect.defences.registry import (
    create_defence,
    create_defence_from_spec,
    defence_parameters,
    is_defence,
    list_defences,
    parse_defence_spec,
    register_defence,
)

__all__ = [
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
]
