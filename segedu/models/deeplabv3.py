"""DeepLab v3: Chen, Papandreou, Schroff & Adam, "Rethinking Atrous Convolution for Semantic Image
Segmentation", arXiv:1706.05587, 2017, Sec. 3.2-3.3 and 4.2-4.3 (the "ASPP" variant, Fig. 5).

A ResNet whose last stages trade stride for atrous rate (output stride 16, or 8 for denser
features) and :class:`~segedu.models.aspp.ASPP` on its last features: a 1x1 branch, three 3x3
atrous branches and image pooling, concatenated and projected; then class scores, upsampled
bilinearly to the image size.

The model is torchvision's ``deeplabv3_resnet50``/``deeplabv3_resnet101`` with the same parameter
names, so their state dicts load without a key map. torchvision departs from the paper in two
ways, kept here for that reason: a 3x3 convolution (256 channels, batch norm, ReLU) between the
ASPP and the final 1x1 scores, and output stride 8 with rates 12, 24, 36 by default. The optional
auxiliary head on layer3 (torchvision's ``aux_loss``) is :class:`~segedu.models.fcn.FCNHead`.
``multi_grid=True`` gives block4's three units the unit rates (1, 2, 4) of Sec. 3.2, multiplied by
the stage's rate: (2, 4, 8) at output stride 16, (4, 8, 16) at 8.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data.classes import NUM_CLASSES
from . import register
from .aspp import ASPP, atrous_rates
from .backbones import ResNet
from .blocks import ConvBNReLU, main_and_aux, scaled
from .fcn import FCNHead
from .interface import EncoderDecoder

#: Channels of every ASPP branch and of the projection (Sec. 3.3).
ASPP_CHANNELS = 256
#: Sec. 3.2, "Multi-grid Method": unit rates of block4's three units.
MULTI_GRID = (1, 2, 4)


class DeepLabHead(nn.Sequential):
    """torchvision's DeepLab head: ASPP, 3x3 conv + BN + ReLU, 1x1 class scores (flat children
    0 ASPP, 1 conv, 2 norm, 3 ReLU, 4 scores, so the parameter names are torchvision's)."""

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int], channels: int = ASPP_CHANNELS) -> None:
        super().__init__(ASPP(in_channels, rates, channels), *ConvBNReLU(channels, channels, 3),
                         nn.Conv2d(channels, num_classes, 1))


def apply_multi_grid(layer4: nn.Sequential, stage_rate: int, unit_rates: Sequence[int] = MULTI_GRID) -> None:
    """Set the 3x3 convolution of each block4 unit to rate ``stage_rate * unit_rate`` (Sec. 3.2)."""
    for block, unit_rate in zip(layer4, unit_rates, strict=True):
        rate = stage_rate * unit_rate
        block.conv2.dilation = block.conv2.padding = (rate, rate)


class DeepLabV3(EncoderDecoder):
    """DeepLab v3 on a ResNet: ``backbone``, ``classifier`` (:class:`DeepLabHead` on layer4),
    optional ``aux_classifier`` on layer3 (training mode only); both upsampled to the input size.
    ``encoder`` is ``backbone``; ``feature_taps`` its layer1..layer4.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, depth: int = 50, *, width: float = 1.0,
                 output_stride: int = 8, multi_grid: bool = False, aux: bool = False) -> None:
        super().__init__()
        rates = atrous_rates(output_stride)
        self.backbone = ResNet(depth, width=width, output_stride=output_stride)
        if multi_grid:
            apply_multi_grid(self.backbone.layer4, 32 // output_stride)
        channels = self.backbone.channels
        self.classifier = DeepLabHead(channels["layer4"], num_classes, rates, scaled(ASPP_CHANNELS, width))
        self.aux_classifier = FCNHead(channels["layer3"], num_classes) if aux else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        return main_and_aux(self.backbone(x), self.classifier, self.aux_classifier, x.shape[-2:], self.training)


@register("deeplabv3_resnet50")
def deeplabv3_resnet50(num_classes: int = NUM_CLASSES, *, width: float = 1.0, output_stride: int = 8,
                       multi_grid: bool = False, aux: bool = False) -> DeepLabV3:
    """DeepLab v3 on ResNet-50, torchvision's ``deeplabv3_resnet50`` (its state dict loads as is).

    Args:
        num_classes: output channels.
        width: channel multiplier (1.0 = the paper).
        output_stride: 8 (torchvision's, ASPP rates 12/24/36) or 16 (the paper's training setting,
            rates 6/12/18).
        multi_grid: block4 unit rates (1, 2, 4) times the stage's rate (Sec. 3.2; not torchvision's).
        aux: add the auxiliary FCN head on layer3 (torchvision's ``aux_loss=True``).
    """
    return DeepLabV3(num_classes, 50, width=width, output_stride=output_stride, multi_grid=multi_grid, aux=aux)


@register("deeplabv3_resnet101")
def deeplabv3_resnet101(num_classes: int = NUM_CLASSES, *, width: float = 1.0, output_stride: int = 8,
                        multi_grid: bool = False, aux: bool = False) -> DeepLabV3:
    """DeepLab v3 on ResNet-101, torchvision's ``deeplabv3_resnet101``; arguments as
    :func:`deeplabv3_resnet50`."""
    return DeepLabV3(num_classes, 101, width=width, output_stride=output_stride, multi_grid=multi_grid, aux=aux)
