"""Registered classifier architectures: the paper's four (torchvision) and small CPU-sized nets.

Every entry is a factory ``(num_classes, input_size) -> nn.Module`` returning logits
for normalised input; `invprotect.targets.classifier.Classifier` adds the
normalisation so callers pass ``[0, 1]`` images. The torchvision models are built
without pretrained weights (none can be downloaded here) and adapted to small
inputs: below 64 pixels their strided stems are replaced by a stride-1 3x3
convolution and the stem max-pool is dropped.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from types import ModuleType

import torch
from torch import Tensor, nn

from invprotect._registry import Registry

ArchFactory = Callable[[int, int], nn.Module]
"""Type of an architecture factory: ``(num_classes, input_size) -> nn.Module``."""

_ARCHS: Registry[ArchFactory] = Registry("target architecture")
_SMALL_INPUT = 64


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _Head(nn.Sequential):
    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


@_ARCHS.register("vgg_small")
def vgg_small(num_classes: int, input_size: int) -> nn.Module:
    """A VGG-style plain network with batch norm: three stages of two 3x3 convolutions.

    Widths 64-128-256 with max-pooling between stages, global average pooling and a
    linear classifier (about 1.1 M parameters, 150 M MACs at 32x32).
    """
    del input_size  # fully convolutional
    return nn.Sequential(
        _conv_bn(3, 64),
        _conv_bn(64, 64),
        nn.MaxPool2d(2),
        _conv_bn(64, 128),
        _conv_bn(128, 128),
        nn.MaxPool2d(2),
        _conv_bn(128, 256),
        _conv_bn(256, 256),
        nn.MaxPool2d(2),
        _Head(256, num_classes),
    )


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(c_in, c_out, stride),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.skip(x))


@_ARCHS.register("resnet_small")
def resnet_small(num_classes: int, input_size: int) -> nn.Module:
    """A wide ResNet-10: a 3x3 stem and four stages of one basic block (widths 32-256).

    About 1.2 M parameters and 64 M MACs at 32x32.
    """
    del input_size
    return nn.Sequential(
        _conv_bn(3, 32),
        _BasicBlock(32, 32, 1),
        _BasicBlock(32, 64, 2),
        _BasicBlock(64, 128, 2),
        _BasicBlock(128, 256, 2),
        _Head(256, num_classes),
    )


@_ARCHS.register("convnet_small")
def convnet_small(num_classes: int, input_size: int) -> nn.Module:
    """A plain four-layer CNN: a 3x3 stem, then three stride-2 3x3 convolutions (32-256).

    About 0.39 M parameters and 15 M MACs at 32x32: the cheapest family here, which
    trains about 3.5 times faster than `resnet_small` on a CPU.
    """
    del input_size
    widths = (32, 64, 128, 256)
    strided = (_conv_bn(c_in, c_out, 2) for c_in, c_out in itertools.pairwise(widths))
    return nn.Sequential(_conv_bn(3, widths[0]), *strided, _Head(widths[-1], num_classes))


class _DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_in, 2 * growth, 1, bias=False),
            nn.BatchNorm2d(2 * growth),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.body(x)], dim=1)


def _dense_stage(c_in: int, growth: int, layers: int) -> tuple[nn.Sequential, int]:
    stage = nn.Sequential(*(_DenseLayer(c_in + i * growth, growth) for i in range(layers)))
    return stage, c_in + layers * growth


def _transition(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(c_in),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.AvgPool2d(2),
    )


@_ARCHS.register("densenet_small")
def densenet_small(num_classes: int, input_size: int) -> nn.Module:
    """A small DenseNet-BC: a strided stem, then three dense stages of 4 bottleneck layers.

    Growth rate 32; transitions halve the channels and the resolution; the stem
    (3x3 convolution, then a stride-2 3x3 convolution) lets the dense stages run at
    1/2, 1/4 and 1/8 of the input size (about 0.4 M parameters, 47 M MACs at 32x32).
    """
    del input_size
    growth, layers = 32, 4
    channels = 2 * growth
    modules: list[nn.Module] = [
        _conv_bn(3, 32),
        nn.Conv2d(32, channels, 3, stride=2, padding=1, bias=False),
    ]
    for stage in range(3):
        block, channels = _dense_stage(channels, growth, layers)
        modules.append(block)
        if stage < 2:
            modules.append(_transition(channels, channels // 2))
            channels //= 2
    modules += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True), _Head(channels, num_classes)]
    return nn.Sequential(*modules)


@_ARCHS.register("mobilenet_small")
def mobilenet_small(num_classes: int, input_size: int) -> nn.Module:
    """A MobileNet-style net of depthwise-separable convolutions (widths 32-256)."""
    del input_size

    def separable(c_in: int, c_out: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False),
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )

    return nn.Sequential(
        _conv_bn(3, 32),
        separable(32, 64, 1),
        separable(64, 128, 2),
        separable(128, 128, 1),
        separable(128, 256, 2),
        separable(256, 256, 1),
        separable(256, 256, 2),
        _Head(256, num_classes),
    )


def _torchvision_models() -> ModuleType:
    """``torchvision.models``, imported on first use (importing torchvision takes seconds)."""
    from torchvision import models

    return models


def _small_stem(stem_out: int) -> nn.Conv2d:
    return nn.Conv2d(3, stem_out, 3, stride=1, padding=1, bias=False)


@_ARCHS.register("vgg16")
def vgg16(num_classes: int, input_size: int) -> nn.Module:
    """VGG16 with batch norm from torchvision; below 64 pixels the classifier takes the 1x1 map."""
    net = _torchvision_models().vgg16_bn(weights=None, num_classes=num_classes)
    if input_size < _SMALL_INPUT:
        net.avgpool = nn.AdaptiveAvgPool2d(1)
        net.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(512, num_classes))
    return net


def _adapt_resnet(net: nn.Module, input_size: int) -> nn.Module:
    if input_size < _SMALL_INPUT:
        net.conv1 = _small_stem(net.conv1.out_channels)
        net.maxpool = nn.Identity()
    return net


@_ARCHS.register("resnet50")
def resnet50(num_classes: int, input_size: int) -> nn.Module:
    """ResNet-50 from torchvision (3x3 stride-1 stem without max-pool below 64 pixels)."""
    return _adapt_resnet(
        _torchvision_models().resnet50(weights=None, num_classes=num_classes), input_size
    )


@_ARCHS.register("resnet101")
def resnet101(num_classes: int, input_size: int) -> nn.Module:
    """ResNet-101 from torchvision (3x3 stride-1 stem without max-pool below 64 pixels)."""
    return _adapt_resnet(
        _torchvision_models().resnet101(weights=None, num_classes=num_classes), input_size
    )


@_ARCHS.register("densenet121")
def densenet121(num_classes: int, input_size: int) -> nn.Module:
    """DenseNet-121 from torchvision (3x3 stride-1 stem without max-pool below 64 pixels)."""
    net = _torchvision_models().densenet121(weights=None, num_classes=num_classes)
    if input_size < _SMALL_INPUT:
        net.features.conv0 = _small_stem(net.features.conv0.out_channels)
        net.features.pool0 = nn.Identity()
    return net


def list_archs(pattern: str = "*") -> list[str]:
    """Names of the registered architectures matching the shell-style ``pattern``."""
    return _ARCHS.names(pattern)


def is_arch(name: str) -> bool:
    """Whether ``name`` is a registered architecture."""
    return _ARCHS.is_registered(name)


def create_arch(name: str, num_classes: int, input_size: int) -> nn.Module:
    """Build the raw network (logits of normalised input) registered as ``name``."""
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    if input_size < 8:
        raise ValueError(f"input_size must be at least 8 pixels, got {input_size}")
    return _ARCHS.create(name, num_classes, input_size)


def register_arch(name: str) -> Callable[[ArchFactory], ArchFactory]:
    """Decorator registering an architecture factory ``(num_classes, input_size) -> nn.Module``."""
    return _ARCHS.register(name)
