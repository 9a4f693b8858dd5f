"""Composable invertible blocks (FrEIA ``InvertibleModule``s) and the U-shaped network."""

from invprotect.blocks.coupling import DSACBlock
from invprotect.blocks.haar import HaarDownsampling, HaarUpsampling, haar_analysis, haar_synthesis
from invprotect.blocks.integer import (
    AdditiveCouplingBlock,
    LiftingDownsampling,
    LiftingUpsampling,
    lifting_analysis,
    lifting_synthesis,
)
from invprotect.blocks.registry import (
    create_block,
    get_block,
    is_block,
    list_blocks,
    register_block,
)
from invprotect.blocks.subnets import (
    ConvSubnet,
    SpectralResidualSubnet,
    SubnetConstructor,
    create_subnet,
    is_subnet,
    list_subnets,
    register_subnet,
    subnet_constructor,
)
from invprotect.blocks.unet import COUPLINGS, UNET_PRESETS, InvertibleUNet, UNetConfig

__all__ = [
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
]
