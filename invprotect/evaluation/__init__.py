"""Verification of a protector: `verify` measures (a `VerifyReport`), `write_report` writes it."""

from invprotect.evaluation.report import image_grid, write_report
from invprotect.evaluation.verify import (
    DEFAULT_DEFENCE_SPECS,
    SLOW_DEFENCES,
    VerifyConfig,
    choose_files,
    default_defences,
    remove_earlier_files,
    sample_images,
    split_defence_specs,
    verify,
)
from invprotect.evaluation.verify_report import DefenceResult, VerifyReport

__all__ = [
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
]
