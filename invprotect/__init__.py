"""invprotect: reversible protection of image data sets with invertible neural networks."""

from importlib.metadata import PackageNotFoundError, version

from invprotect._registry import Presets, Registry, UnknownNameError, UnknownPresetError
from invprotect.attacks import AttackLayer
from invprotect.blocks import DSACBlock, HaarDownsampling, HaarUpsampling, InvertibleUNet
from invprotect.models import RAEG

try:
    __version__ = version("invprotect")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "RAEG",
    "AttackLayer",
    "DSACBlock",
    "HaarDownsampling",
    "HaarUpsampling",
    "InvertibleUNet",
    "Presets",
    "Registry",
    "UnknownNameError",
    "UnknownPresetError",
    "__version__",
]
