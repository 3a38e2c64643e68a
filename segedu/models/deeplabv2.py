"""DeepLab v2: Chen, Papandreou, Kokkinos, Murphy & Yuille, "DeepLab: Semantic Image Segmentation
with Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs", TPAMI 2018
(arXiv:1606.00915), Sec. 3.1, 3.3 and 4.2 (ResNet-101 with ASPP-L).

ResNet-101 with the stride of its last two stages replaced by atrous rates 2 and 4 (output stride
8, Sec. 3.1) and :class:`~segedu.models.aspp.ASPPv2` on res5: four 3x3 atrous convolutions with
rates 6, 12, 18, 24, each giving class scores, summed (Sec. 3.3). The scores are upsampled
bilinearly to the image size.

Not included: the multi-scale input fusion (MSC) and COCO pre-training of the best PASCAL model,
and the CRF of Sec. 4 (post-processing). The ResNet is torchvision's (stride in the 3x3
convolution), not the Caffe model's (stride in the first 1x1); the parameter count is the same.
"""
from __future__ import annotations

import torch

from ..data.classes import NUM_CLASSES
from . import register
from .aspp import ASPP_V2_RATES, ASPPv2
from .backbones import ResNet
from .blocks import bilinear_upsample
from .interface import EncoderDecoder

#: "we employ ... output_stride = 8" (Sec. 3.1): res4 and res5 atrous with rates 2 and 4.
OUTPUT_STRIDE = 8


class DeepLabV2(EncoderDecoder):
    """ResNet (output stride 8) ``backbone`` + ASPP-L ``classifier`` on layer4 (res5). ``encoder``
    is ``backbone``; ``feature_taps`` its layer1..layer4."""

    def __init__(self, num_classes: int = NUM_CLASSES, depth: int = 101, *, width: float = 1.0) -> None:
        super().__init__()
        self.backbone = ResNet(depth, width=width, output_stride=OUTPUT_STRIDE)
        self.classifier = ASPPv2(self.backbone.channels["layer4"], num_classes, ASPP_V2_RATES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bilinear_upsample(self.classifier(self.backbone(x)["layer4"]), x.shape[-2:])


@register("deeplabv2")
def deeplabv2(num_classes: int = NUM_CLASSES, *, width: float = 1.0, depth: int = 101) -> DeepLabV2:
    """DeepLab v2: dilated ResNet + ASPP-L (four summed atrous score branches).

    Args:
        num_classes: output channels.
        width: channel multiplier (1.0 = the paper).
        depth: ResNet depth, 101 (the paper) or 50.
    """
    return DeepLabV2(num_classes, depth, width=width)
