"""Protectors: the shared contract, and RAEG built from the block library."""

from invprotect.models.discriminator import Discriminator
from invprotect.models.protector import Protector
from invprotect.models.raeg import RAEG, RAEG_PRESETS, RAEGConfig

__all__ = ["RAEG", "RAEG_PRESETS", "Discriminator", "Protector", "RAEGConfig"]
