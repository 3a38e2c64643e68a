"""DeepLab v3+: Chen, Zhu, Papandreou, Schroff & Adam, "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation", ECCV 2018 (arXiv:1802.02611), Sec. 3, Fig. 2 and 4.

DeepLab v3 as the encoder, plus a light decoder that recovers object boundaries (Sec. 3.1, Fig. 2):

* encoder: a backbone at output stride 16 (or 8) -- ResNet, or the modified aligned Xception-65 of
  Sec. 3.2 (:class:`~segedu.models.backbones.xception.Xception65`) -- and
  :class:`~segedu.models.aspp.ASPP` (256 channels, image pooling);
* decoder (:class:`Decoder`): a 1x1 convolution reduces the stride-4 low-level features to 48
  channels (so they do not outweigh the encoder's 256, Table 1), the encoder output is upsampled
  bilinearly to their size and concatenated, two 3x3 convolutions with 256 channels refine them
  (Table 2's best choice), a 1x1 convolution gives the class scores, upsampled to the image size
  (the paper's "upsample by 4").

With ``separable=True`` the ASPP's atrous branches and the decoder's 3x3 convolutions are
depthwise separable (Sec. 3.2, "Xception+SC" in Table 5), the default for the Xception encoder;
the ResNet models default to ordinary convolutions, as in the paper's ResNet-101 experiments
(Table 3). The ASPP dropout is 0.1 and the low-level features of Xception are the output of entry
block 2's second separable convolution, both as in the authors' code.

:func:`deeplabv3plus_timm` puts the same ASPP and decoder on any timm encoder
(:class:`~segedu.models.backbones.timm_encoder.TimmEncoder`); its stride-4 feature is the low level.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from ..data.classes import NUM_CLASSES
from . import register
from .aspp import ASPP, atrous_rates
from .backbones import ResNet, TimmEncoder
from .backbones.xception import Xception65
from .blocks import ConvBNReLU, SeparableConv2d, bilinear_upsample, scaled
from .interface import EncoderDecoder

#: Sec. 3.1: ASPP and decoder channels, and the low-level reduction ("[1x1, 48]", Table 1).
CHANNELS = 256
LOW_LEVEL_CHANNELS = 48
#: Dropout after the ASPP projection in the authors' code (keep probability 0.9).
ASPP_DROPOUT = 0.1
#: Why the Xception-65 model takes no pretrained weights, where the paper starts from ImageNet's.
XCEPTION_FROM_SCRATCH = ("torchvision ships no ImageNet Xception-65 (the backbone's parameter names are timm's "
                         "xception65: train from scratch, or load its state dict without 'head.*' into model.backbone)")


class Decoder(nn.Module):
    """Fig. 2, decoder: ``reduce`` (1x1 to 48 channels on the low-level features), concatenation
    with the upsampled encoder output, ``refine`` (two 3x3 convolutions, 256 channels), ``classifier``
    (1x1 class scores)."""

    def __init__(self, low_level_channels: int, encoder_channels: int, num_classes: int, *,
                 width: float = 1.0, separable: bool = False) -> None:
        super().__init__()
        reduced, channels = scaled(LOW_LEVEL_CHANNELS, width), scaled(CHANNELS, width)
        conv3x3 = SeparableConv2d if separable else ConvBNReLU
        self.reduce = ConvBNReLU(low_level_channels, reduced, 1)
        self.refine = nn.Sequential(conv3x3(encoder_channels + reduced, channels, 3),
                                    conv3x3(channels, channels, 3))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, encoder: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        low_level = self.reduce(low_level)
        x = torch.cat([bilinear_upsample(encoder, low_level.shape[-2:]), low_level], dim=1)
        return self.classifier(self.refine(x))


class DeepLabV3Plus(EncoderDecoder):
    """Encoder (``backbone`` + ``aspp``) and :class:`Decoder`. ``encoder`` is ``backbone`` (the ASPP
    is the head's); ``feature_taps`` its named features.

    Args:
        backbone: returns a dict of features with ``channels`` naming their channel counts.
        low_level, high_level: the names of its stride-4 and last features.
        num_classes, width, output_stride, separable: as the builders'.
    """

    def __init__(self, backbone: nn.Module, low_level: str, high_level: str, num_classes: int = NUM_CLASSES, *,
                 width: float = 1.0, output_stride: int = 16, separable: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.low_level, self.high_level = low_level, high_level
        channels = scaled(CHANNELS, width)
        self.aspp = ASPP(backbone.channels[high_level], atrous_rates(output_stride), channels,
                         separable=separable, dropout=ASPP_DROPOUT)
        self.decoder = Decoder(backbone.channels[low_level], channels, num_classes, width=width, separable=separable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        scores = self.decoder(self.aspp(features[self.high_level]), features[self.low_level])
        return bilinear_upsample(scores, x.shape[-2:])


def _resnet(depth: int, num_classes: int, width: float, output_stride: int, separable: bool) -> DeepLabV3Plus:
    atrous_rates(output_stride)  # refuse a stride without ASPP rates before building anything
    backbone = ResNet(depth, width=width, output_stride=output_stride)
    return DeepLabV3Plus(backbone, "layer1", "layer4", num_classes, width=width, output_stride=output_stride,
                         separable=separable)


@register("deeplabv3plus_resnet50")
def deeplabv3plus_resnet50(num_classes: int = NUM_CLASSES, *, width: float = 1.0, output_stride: int = 16,
                           separable: bool = False) -> DeepLabV3Plus:
    """DeepLab v3+ on ResNet-50 (low-level features: layer1, stride 4, 256 channels).

    Args:
        num_classes: output channels.
        width: channel multiplier (1.0 = the paper).
        output_stride: 16 (the paper's training setting, ASPP rates 6/12/18) or 8 (rates 12/24/36).
        separable: depthwise separable ASPP and decoder convolutions (Sec. 3.2).
    """
    return _resnet(50, num_classes, width, output_stride, separable)


@register("deeplabv3plus_resnet101")
def deeplabv3plus_resnet101(num_classes: int = NUM_CLASSES, *, width: float = 1.0, output_stride: int = 16,
                            separable: bool = False) -> DeepLabV3Plus:
    """DeepLab v3+ on ResNet-101 (Table 3); arguments as :func:`deeplabv3plus_resnet50`."""
    return _resnet(101, num_classes, width, output_stride, separable)


@register("deeplabv3plus_xception")
def deeplabv3plus_xception(num_classes: int = NUM_CLASSES, *, width: float = 1.0, output_stride: int = 16,
                           separable: bool = True) -> DeepLabV3Plus:
    """DeepLab v3+ on the modified aligned Xception-65 (Sec. 3.2, Table 5 "Xception+SC"), from
    scratch (:data:`XCEPTION_FROM_SCRATCH`).

    Args:
        num_classes: output channels.
        width: channel multiplier (1.0 = the paper).
        output_stride: 16 or 8, as :func:`deeplabv3plus_resnet50`.
        separable: depthwise separable ASPP and decoder convolutions (default, as the paper's best).
    """
    atrous_rates(output_stride)
    backbone = Xception65(width=width, output_stride=output_stride)
    model = DeepLabV3Plus(backbone, "low_level", "exit_flow", num_classes, width=width, output_stride=output_stride,
                          separable=separable)
    model.from_scratch = XCEPTION_FROM_SCRATCH  # this model's, not every DeepLabV3Plus's: the ResNets have weights
    return model


@register("deeplabv3plus_timm")
def deeplabv3plus_timm(num_classes: int = NUM_CLASSES, *, encoder: str = "resnet18", width: float = 1.0,
                       output_stride: int = 16, separable: bool = False,
                       pretrained_backbone: bool | str | os.PathLike = False) -> DeepLabV3Plus:
    """DeepLab v3+ (ASPP and decoder as the paper's) on the timm classifier ``encoder``.

    The low-level features are the encoder's last stride-4 feature (``layer1`` on a ResNet), the
    high-level ones its last. Needs the optional package timm.

    Args:
        num_classes: output channels.
        encoder: a timm model name (``timm.list_models()``), e.g. ``"resnet18"``, ``"resnet50"``,
            ``"efficientnet_b0"``; it must support timm's ``output_stride`` (ResNets, EfficientNets,
            ConvNeXts do; vision transformers do not).
        width: channel multiplier of the ASPP and the decoder only (1.0 = the paper's 256 and 48);
            the encoder's size is set by its name.
        output_stride: 16 (ASPP rates 6/12/18) or 8 (rates 12/24/36).
        separable: depthwise separable ASPP and decoder convolutions (Sec. 3.2).
        pretrained_backbone: True: timm's default ImageNet weights for ``encoder`` (downloads from
            the Hugging Face hub); or the path of ``timm.create_model(encoder, pretrained=True)``'s
            saved state dict, for offline machines.
    """
    atrous_rates(output_stride)
    backbone = TimmEncoder(encoder, output_stride=output_stride, pretrained=pretrained_backbone)
    high_level = list(backbone.channels)[-1]
    return DeepLabV3Plus(backbone, backbone.feature_at(4), high_level, num_classes, width=width,
                         output_stride=output_stride, separable=separable)
