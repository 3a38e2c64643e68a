"""The modified aligned Xception-65 of DeepLab v3+ (Chen, Zhu, Papandreou, Schroff & Adam,
"Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation", ECCV 2018,
Sec. 3.2 and Fig. 4) as a segmentation backbone.

Xception (Chollet, CVPR 2017) is built from depthwise separable convolutions
(:class:`~segedu.models.blocks.SeparableConv2d`): a 3x3 convolution per channel
(``groups=in_channels``) followed by a 1x1 "pointwise" convolution that mixes the channels --
about 8-9x fewer weights than a full 3x3 convolution. DeepLab v3+ changes the
"aligned" Xception of Dai et al. (ICCV 2017) in three ways (Sec. 3.2):

1. deeper: the middle flow is repeated 16 times (2 stem + 3x3 entry + 16x3 middle + 2x3 exit = 65
   layers), the entry flow unchanged;
2. every max pooling is a *stride-2 separable convolution* instead, so that at output stride 16 or
   8 the stride is replaced by an atrous rate like any other convolution (:class:`Xception65`
   ``output_stride``);
3. batch norm (and ReLU) after each 3x3 depthwise convolution, as in MobileNet.

Where ReLU sits follows the authors' TensorFlow code (``research/deeplab/core/xception.py``): each
separable convolution is batch-normalised after its depthwise and after its pointwise part; in the
residual blocks a ReLU comes *before* each separable convolution (Xception's order, so the
residual sum is not rectified); the last exit-flow block, which has no shortcut, puts the ReLU
after the depthwise and the pointwise parts instead. Batch norm uses TensorFlow's epsilon 1e-3.

The layout and the parameter names are timm's ``xception65`` (a port that loads the authors'
TensorFlow checkpoints): ``stem``, ``blocks.0`` .. ``blocks.20``, each block a ``stack`` of
``conv1``..``conv3`` (``conv_dw``, ``bn_dw``, ``conv_pw``, ``bn_pw``) and a ``shortcut``
(``conv``, ``bn``); timm's state dict without its classifier ``head`` loads unchanged.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ...errors import SegeduError
# SeparableConv2d lives in ..blocks (DeepLab v3+'s ASPP and decoder use it too); importing it here
# keeps ``segedu.models.backbones.xception.SeparableConv2d``, where it was defined before, working.
from ..blocks import SeparableConv2d, kaiming_init_, same_padding, scaled

__all__ = ["SeparableConv2d", "Xception65", "XceptionBlock"]

#: TensorFlow's batch-norm epsilon, used by the authors' Xception.
BN_EPS = 1e-3
#: Fig. 4: output channels of the three separable convolutions and the stride of each block.
ENTRY_FLOW = (((128, 128, 128), 2), ((256, 256, 256), 2), ((728, 728, 728), 2))
MIDDLE_FLOW = (((728, 728, 728), 1),) * 16
EXIT_FLOW = (((728, 1024, 1024), 2), ((1536, 1536, 2048), 1))
#: The stem: 3x3 convolutions with 32 (stride 2) and 64 channels.
STEM = (32, 64)
#: The entry-flow block whose second separable convolution (stride 4, 256 channels) feeds the
#: v3+ decoder -- ``entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise`` in the
#: authors' code.
LOW_LEVEL_BLOCK = 1


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, *,
             relu: bool) -> nn.Sequential:
    """Conv (no bias) -> batch norm (-> ReLU), children named ``conv``, ``bn`` as in timm."""
    layers = OrderedDict(conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                        padding=same_padding(kernel_size), bias=False),
                         bn=nn.BatchNorm2d(out_channels, eps=BN_EPS))
    if relu:
        layers["act"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)


class XceptionBlock(nn.Module):
    """One block of Fig. 4: three separable convolutions, the third with the block's stride, plus
    a shortcut -- a strided 1x1 convolution where the shape changes, the identity where it does
    not, none at all with ``shortcut=False`` (the last exit-flow block).

    ``pre_activation``: a ReLU before each separable convolution (Xception); otherwise each
    separable convolution ends in its own ReLUs.
    """

    def __init__(self, in_channels: int, channels: tuple[int, int, int], stride: int = 1, dilation: int = 1,
                 *, shortcut: bool = True, pre_activation: bool = True) -> None:
        super().__init__()
        self.has_shortcut = shortcut
        self.shortcut = None
        if shortcut and (channels[-1] != in_channels or stride != 1):
            self.shortcut = _conv_bn(in_channels, channels[-1], 1, stride, relu=False)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for index, out_channels in enumerate(channels, 1):
            if pre_activation:
                # not in place: the first one's input is the shortcut's input too
                layers[f"act{index}"] = nn.ReLU()
            layers[f"conv{index}"] = SeparableConv2d(in_channels, out_channels, stride=stride if index == 3 else 1,
                                                     dilation=dilation, activation=not pre_activation, eps=BN_EPS)
            in_channels = out_channels
        self.stack = nn.Sequential(layers)

    def forward_with_tap(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's output and the output of its second separable convolution (before the stride)."""
        out = x
        for name, layer in self.stack.named_children():
            out = layer(out)
            if name == "conv2":
                tap = out
        if self.has_shortcut:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        return out, tap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_tap(x)[0]


class Xception65(nn.Module):
    """Modified aligned Xception-65 (Fig. 4) without its classifier, returning
    ``{"low_level": ..., "exit_flow": ...}``: the stride-4 features the v3+ decoder takes (256
    channels) and the last block's (2048 channels, stride ``output_stride``).

    Args:
        width: channel multiplier (1.0 = the paper's).
        output_stride: 32 (classification), 16 or 8: the blocks past that stride keep stride 1 and
            multiply their atrous rate by the stride given up (the block that gives it up keeps
            the previous rate, as in the authors' code).

    ``channels`` maps each returned feature name to its channel count.
    """

    def __init__(self, *, width: float = 1.0, output_stride: int = 32) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise SegeduError(f"Xception-65 output_stride must be 8, 16 or 32, got {output_stride!r}.")
        self.width = width
        stem = [scaled(c, width) for c in STEM]
        self.stem = nn.Sequential(_conv_bn(3, stem[0], 3, stride=2, relu=True),
                                  _conv_bn(stem[0], stem[1], 3, relu=True))
        blocks = []
        in_channels, stride, dilation = stem[1], 2, 1
        plan = ENTRY_FLOW + MIDDLE_FLOW + EXIT_FLOW
        for index, (channels, block_stride) in enumerate(plan):
            block_dilation = dilation
            if block_stride > 1 and stride * block_stride > output_stride:
                dilation *= block_stride
                block_stride = 1
            else:
                stride *= block_stride
            last = index == len(plan) - 1
            channels = tuple(scaled(c, width) for c in channels)
            blocks.append(XceptionBlock(in_channels, channels, block_stride, block_dilation,
                                        shortcut=not last, pre_activation=not last))
            in_channels = channels[-1]
        self.blocks = nn.Sequential(*blocks)
        self.channels = {"low_level": scaled(ENTRY_FLOW[LOW_LEVEL_BLOCK][0][1], width), "exit_flow": in_channels}

        kaiming_init_(self, zero_bias=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        for block in self.blocks[:LOW_LEVEL_BLOCK]:
            x = block(x)
        x, low_level = self.blocks[LOW_LEVEL_BLOCK].forward_with_tap(x)
        for block in self.blocks[LOW_LEVEL_BLOCK + 1:]:
            x = block(x)
        return {"low_level": low_level, "exit_flow": x}
