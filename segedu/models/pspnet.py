"""PSPNet: Zhao, Shi, Qi, Wang & Jia, "Pyramid Scene Parsing Network", CVPR 2017 (arXiv:1612.01105).

* :class:`PyramidPoolingModule` -- Sec. 3.2 and Fig. 3(c): the feature map is average-pooled to
  1x1, 2x2, 3x3 and 6x6 bins; each level goes through a 1x1 convolution to 1/N of the channels
  (N = 4 levels) with BN and ReLU, is upsampled bilinearly back to the map's size and concatenated
  with the map itself -- twice the input channels (2048 + 4 x 512 = 4096 on ResNet).
* :class:`PSPHead` -- Fig. 3(d): the pyramid, a 3x3 convolution (512, BN, ReLU), dropout 0.1 and
  a 1x1 classifier, as in the authors' released code.
* :class:`PSPNet` -- a ResNet dilated to output stride 8 (Sec. 3.3: dilated convolutions)
  with the head on layer4 and, for deep supervision (Sec. 3.3, Fig. 4), an auxiliary classifier on
  layer3 whose loss is weighted :data:`AUX_LOSS_WEIGHT` = 0.4 during training only.

The paper's ResNet has a deep stem (three 3x3 convolutions); this one is torchvision's
(:class:`~segedu.models.backbones.ResNet`, one 7x7 convolution), so torchvision's ImageNet weights
load. Upsampling uses ``align_corners=False`` like the rest of segedu (the authors' code: True).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.classes import NUM_CLASSES
from . import register
from .backbones import ResNet
from .blocks import ConvBNReLU, bilinear_upsample, main_and_aux, scaled
from .interface import EncoderDecoder

#: Sec. 3.2: the four pyramid levels pool to 1x1, 2x2, 3x3 and 6x6 bins.
BINS = (1, 2, 3, 6)
#: Deep supervision (Sec. 3.3): the auxiliary loss enters with this weight, the value the paper's
#: ablation of the weight settles on.
AUX_LOSS_WEIGHT = 0.4
#: Dropout before each classifier (the authors' code).
DROPOUT = 0.1


class PyramidPoolingModule(nn.Module):
    """Sec. 3.2: pool to each bin size, 1x1 conv to ``in_channels / len(bins)`` + BN + ReLU,
    upsample, concatenate with the input; ``out_channels`` = 2 x ``in_channels`` for 4 bins.

    A 1x1 bin is a single value per channel: its batch norm needs a batch of 2 or more in
    training mode (as torchvision's ASPP pooling branch).
    """

    def __init__(self, in_channels: int, bins: tuple[int, ...] = BINS) -> None:
        super().__init__()
        reduced = in_channels // len(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(bin_size), ConvBNReLU(in_channels, reduced, 1))
            for bin_size in bins)
        self.out_channels = in_channels + reduced * len(bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return torch.cat([x, *(bilinear_upsample(stage(x), size) for stage in self.stages)], dim=1)


class PSPHead(nn.Sequential):
    """Fig. 3(c)-(d): pyramid pooling, then 3x3 conv-BN-ReLU to ``channels``, dropout, 1x1 classifier."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 512) -> None:
        pyramid = PyramidPoolingModule(in_channels)
        super().__init__(pyramid, ConvBNReLU(pyramid.out_channels, channels, 3), nn.Dropout2d(DROPOUT),
                         nn.Conv2d(channels, num_classes, 1))


class AuxHead(nn.Sequential):
    """Deep supervision on layer3 (Sec. 3.3, Fig. 4): 3x3 conv-BN-ReLU to ``channels``, dropout,
    1x1 classifier (the authors' code: 1024 -> 256 -> classes)."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256) -> None:
        super().__init__(ConvBNReLU(in_channels, channels, 3), nn.Dropout2d(DROPOUT),
                         nn.Conv2d(channels, num_classes, 1))


class PSPNet(EncoderDecoder):
    """Dilated ResNet (output stride 8) + :class:`PSPHead` on layer4, optional :class:`AuxHead` on
    layer3 (training mode only); both bilinearly upsampled to the input size. ``encoder`` is
    ``backbone``; ``feature_taps`` its layer1..layer4."""

    def __init__(self, num_classes: int = NUM_CLASSES, depth: int = 50, *, width: float = 1.0,
                 aux: bool = False) -> None:
        super().__init__()
        self.backbone = ResNet(depth, width=width, output_stride=8)
        self.head = PSPHead(self.backbone.channels["layer4"], num_classes, scaled(512, width))
        self.aux_head = (AuxHead(self.backbone.channels["layer3"], num_classes, scaled(256, width))
                         if aux else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        return main_and_aux(self.backbone(x), self.head, self.aux_head, x.shape[-2:], self.training)


@register("pspnet_resnet50")
def pspnet_resnet50(num_classes: int = NUM_CLASSES, *, width: float = 1.0, aux: bool = False) -> PSPNet:
    """PSPNet on a dilated ResNet-50 (output stride 8).

    Args:
        num_classes: output channels.
        width: channel multiplier (1.0 = the paper).
        aux: add the deep-supervision head on layer3 (loss weight :data:`AUX_LOSS_WEIGHT`).
    """
    return PSPNet(num_classes, 50, width=width, aux=aux)


@register("pspnet_resnet101")
def pspnet_resnet101(num_classes: int = NUM_CLASSES, *, width: float = 1.0, aux: bool = False) -> PSPNet:
    """PSPNet on a dilated ResNet-101; arguments as :func:`pspnet_resnet50`."""
    return PSPNet(num_classes, 101, width=width, aux=aux)
