"""UNet++: Zhou, Rahman Siddiquee, Tajbakhsh & Liang, "UNet++: A Nested U-Net Architecture for
Medical Image Segmentation", DLMIA (MICCAI workshop) 2018 (arXiv:1807.10165).

* :class:`NestedUNet` -- Fig. 1a and Sec. 2: nodes ``X[i][j]`` on a grid; column ``j = 0`` is the
  encoder (a double 3x3 convolution per level, 2x2 max pooling between levels), and every other
  node is a double convolution of the concatenation of all earlier nodes of its level and the
  up-sampled node below: ``x[i][j] = H([x[i][0], ..., x[i][j-1], U(x[i+1][j-1])])`` (eq. 1). These
  "nested, dense skip pathways" bridge the semantic gap between encoder and decoder maps that
  U-Net's plain skips concatenate directly.
* Sizes: 32, 64, 128, 256, 512 channels per level and 2x2 transposed convolutions as ``U``, as in
  the authors' Keras ``Nest_Net``; a grey-level input and one class give 9.04M parameters, the
  paper's Table 2 (its U-Net at these widths, 7.76M, is :mod:`unet` with ``width=0.5``).

Padded convolutions: the image is zero-padded at the bottom/right to a multiple of 16 (four
poolings) and the logits cropped back. The classifier is a 1x1 convolution on ``X[0][4]``.
Deep supervision (Sec. 2.3: a loss on each of ``X[0][1..4]``) is left out: the registry's
``{"out", "aux"}`` output has room for one auxiliary map, not three.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.classes import NUM_CLASSES
from . import register
from .blocks import pad_with_crop, scaled
from .interface import EncoderDecoder, FeatureTap
from .unet import STRIDE, DoubleConv

#: Channels of the five levels (the authors' ``nb_filter``).
CHANNELS = (32, 64, 128, 256, 512)


class NestedUNet(EncoderDecoder):
    """Fig. 1a: ``nodes[i][j]`` is the convolution block of node X^{i,j}; ``ups[i][j]`` up-samples
    X^{i+1,j} for the node X^{i,j+1}.

    ``encoder`` is None (the encoder is column 0 of ``nodes``, no single module); ``feature_taps``
    are X^{0,0} .. X^{4,0}, named ``level1`` .. ``level5``.
    """

    encoder_path = None
    from_scratch = "the paper trains it from scratch (Zhou et al. 2018)"

    def __init__(self, num_classes: int = NUM_CLASSES, *, width: float = 1.0, batch_norm: bool = False) -> None:
        super().__init__()
        channels = [scaled(c, width) for c in CHANNELS]
        self.channels = channels
        depth = len(channels)
        self.pool = nn.MaxPool2d(2)
        # column 0: the encoder; X^{i,j} for j >= 1 takes j maps of its level and one from below
        self.nodes = nn.ModuleList(
            nn.ModuleList(DoubleConv(channels[i - 1] if i else 3, channels[i], 1, batch_norm) if j == 0 else
                          DoubleConv((j + 1) * channels[i], channels[i], 1, batch_norm)
                          for j in range(depth - i))
            for i in range(depth))
        self.ups = nn.ModuleList(
            nn.ModuleList(nn.ConvTranspose2d(channels[i + 1], channels[i], 2, stride=2) for _ in range(depth - 1 - i))
            for i in range(depth - 1))
        self.classifier = nn.Conv2d(channels[0], num_classes, 1)

    @property
    def feature_taps(self) -> dict[str, FeatureTap]:
        return {f"level{i + 1}": FeatureTap(f"nodes.{i}.0", channels) for i, channels in enumerate(self.channels)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        depth = len(self.nodes)
        x, crop = pad_with_crop(x, STRIDE)
        grid: list[list[torch.Tensor]] = [[] for _ in range(depth)]
        # Walk the encoder column down; after X^{i,0}, complete the anti-diagonal that ends there
        # (X^{i-1,1}, X^{i-2,2}, ..., X^{0,i}): each needs only nodes already computed.
        for i in range(depth):
            grid[i].append(self.nodes[i][0](x if i == 0 else self.pool(grid[i - 1][0])))
            for j in range(1, i + 1):
                level = i - j
                below = self.ups[level][j - 1](grid[level + 1][j - 1])
                grid[level].append(self.nodes[level][j](torch.cat([*grid[level], below], 1)))
        return crop(self.classifier(grid[0][-1]))


@register("unetpp")
def unetpp(num_classes: int = NUM_CLASSES, *, width: float = 1.0, batch_norm: bool = False) -> NestedUNet:
    """UNet++ without deep supervision (Fig. 1a), about 9.0M parameters at width 1.0.

    Args:
        num_classes: output channels.
        width: channel multiplier of the 32...512 maps (1.0 = the paper).
        batch_norm: batch norm after every 3x3 convolution (not in the paper).
    """
    return NestedUNet(num_classes, width=width, batch_norm=batch_norm)
