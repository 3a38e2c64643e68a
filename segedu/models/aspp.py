"""Atrous spatial pyramid pooling (ASPP): several atrous convolutions with different rates look at
the same feature map, so one head sees objects at several scales.

* :class:`ASPPv2` -- DeepLab v2: Chen, Papandreou, Kokkinos, Murphy & Yuille, "DeepLab: Semantic
  Image Segmentation with Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs",
  TPAMI 2018 (arXiv:1606.00915), Sec. 3.3, Fig. 4 and 7. Four parallel 3x3 atrous branches, rates
  6, 12, 18, 24 ("ASPP-L"), each computing class scores; the scores are *summed*.
* :class:`ASPP` -- DeepLab v3: Chen, Papandreou, Schroff & Adam, "Rethinking Atrous Convolution for
  Semantic Image Segmentation", arXiv:1706.05587, 2017, Sec. 3.3 and Fig. 5. A 1x1 convolution,
  three 3x3 atrous convolutions (rates 6, 12, 18 at output stride 16, doubled at 8) and image-level
  features (global average pooling), each 256 channels with batch norm; *concatenated* and
  projected by a 1x1 convolution. v3 adds the pooling branch because a 3x3 filter at a rate near
  the feature-map size degenerates to its centre tap (Sec. 3.3, Fig. 4).

:class:`ASPP` has torchvision's parameter names (``convs.0`` .. ``convs.4``, ``project``), so the
``classifier.0`` part of ``torchvision.models.segmentation.deeplabv3_resnet50`` loads unchanged.
``separable=True`` makes the atrous branches depthwise separable, as DeepLab v3+ does (Chen et
al., ECCV 2018, Sec. 3.1-3.2).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import SegeduError
from .blocks import ConvBNReLU, SeparableConv2d, bilinear_upsample

#: DeepLab v2's ASPP-L rates (Sec. 3.3).
ASPP_V2_RATES = (6, 12, 18, 24)
#: DeepLab v3's rates per output stride (Sec. 3.3: "rates = (6, 12, 18) when output stride = 16";
#: at output stride 8 "the rates are doubled").
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}


def atrous_rates(output_stride: int) -> tuple[int, int, int]:
    """The three ASPP rates for a backbone of output stride 16 or 8."""
    if output_stride not in ASPP_RATES:
        raise SegeduError(f"output_stride must be 8 or 16 (the ASPP rates are given for those), got {output_stride!r}.")
    return ASPP_RATES[output_stride]


class ASPPv2(nn.Module):
    """DeepLab v2's ASPP (Fig. 4): one 3x3 atrous convolution to the class scores per rate, summed.

    Each branch is a single convolution (with bias) on the backbone's features, as in the authors'
    ResNet-101 model (``fc1_voc12_c0``..``c3``, initialised N(0, 0.01)); the VGG-16 variant of
    Fig. 7 puts fc6-fc7-fc8 in every branch instead.
    """

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int] = ASPP_V2_RATES) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(in_channels, num_classes, 3, padding=rate, dilation=rate)
                                      for rate in rates)
        for branch in self.branches:
            nn.init.normal_(branch.weight, std=0.01)
            nn.init.zeros_(branch.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # "fused" by summation (Fig. 4), so each rate's scores weigh the same
        return sum(branch(x) for branch in self.branches)


class ASPPPooling(nn.Sequential):
    """Image-level features (Sec. 3.3): global average pooling, 1x1 convolution, batch norm, ReLU,
    bilinearly upsampled back to the feature map's size. Children 0 pool, 1 conv, 2 norm, 3 ReLU,
    as torchvision's. (Batch norm on a 1x1 map needs a batch of at least 2 in training.)"""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), *ConvBNReLU(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bilinear_upsample(super().forward(x), x.shape[-2:])


class ASPP(nn.Module):
    """DeepLab v3's ASPP (Fig. 5): ``convs`` = [1x1, 3x3 rate r1, r2, r3, image pooling], all
    ``out_channels`` with batch norm and ReLU, concatenated; ``project`` = 1x1 convolution, batch
    norm, ReLU, dropout.

    Args:
        in_channels: channels of the backbone's last features.
        rates: the three atrous rates (:func:`atrous_rates`).
        out_channels: 256 in the paper.
        separable: depthwise separable atrous branches (DeepLab v3+, Sec. 3.2).
        dropout: after the projection; 0.5 in torchvision, 0.1 in the authors' v3+ code.
    """

    def __init__(self, in_channels: int, rates: Sequence[int], out_channels: int = 256, *,
                 separable: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        atrous = SeparableConv2d if separable else ConvBNReLU
        self.convs = nn.ModuleList([
            ConvBNReLU(in_channels, out_channels, 1),
            *(atrous(in_channels, out_channels, 3, dilation=rate) for rate in rates),
            ASPPPooling(in_channels, out_channels),
        ])
        self.project = nn.Sequential(*ConvBNReLU(len(self.convs) * out_channels, out_channels, 1),
                                     nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))
