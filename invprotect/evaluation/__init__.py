"""Verification of a protector: `verify` measures, `write_report` writes the report files."""

from invprotect.evaluation.report import image_grid, write_report
from invprotect.evaluation.verify import (
    DEFAULT_DEFENCE_SPECS,
    SLOW_DEFENCES,
    VerifyConfig,
    choose_files,
    default_defences,
    sample_images,
    split_defence_specs,
    verify,
)

__all__ = [
    "DEFAULT_DEFENCE_SPECS",
    "SLOW_DEFENCES",
    "VerifyConfig",
    "choose_files",
    "default_defences",
    "image_grid",
    "sample_images",
    "split_defence_specs",
    "verify",
    "write_report",
]
