"""Fully convolutional DenseNets: Jégou, Drozdzal, Vazquez, Romero & Bengio, "The One Hundred
Layers Tiramisu: Fully Convolutional DenseNets for Semantic Segmentation", CVPR Workshops 2017
(arXiv:1611.09326).

* :class:`DenseLayer`, :class:`DenseBlock`, :class:`TransitionDown`, :class:`TransitionUp` --
  Table 1 and Fig. 2: BN-ReLU-Conv3x3-Dropout(0.2) layers of ``growth_rate`` (k) new maps each,
  every layer seeing the concatenation of the block's input and all earlier layers' outputs.
* :class:`FCDenseNet` -- Fig. 1 and Sec. 3.2: a 3x3 convolution, a downsampling path of dense
  blocks and transitions down (the input of each block is concatenated to its output and kept as
  a skip), a bottleneck block, and an upsampling path of transitions up and dense blocks.
  Upsampling only the maps a block has just *created* (not the block's input too) keeps the
  feature maps from growing without bound: "the input of a dense block is not concatenated with
  its output" there (Sec. 3.2). The last block is the exception; its full concatenation feeds the
  1x1 classifier (Table 2: m = 256 maps at the end of FC-DenseNet103).
* The three networks of Table 2 (Sec. 4): FC-DenseNet56 (4 layers per block, k = 12),
  FC-DenseNet67 (5 layers per block, k = 16), FC-DenseNet103 (4, 5, 7, 10, 12 layers down, 15 in
  the bottleneck, then the same in reverse; k = 16).

Details the paper leaves to the authors' Lasagne code (SimJeg/FC-DenseNet), followed here:
convolutions carry a bias (Lasagne's default), the 3x3 transposed convolution of TU has no
padding and its ``2h + 1`` output is cut to the skip's ``2h`` rows and columns from the top left
(Lasagne's "center" crop of one extra row rounds to offset 0), and weights start as He-uniform
(Sec. 4: "We initialize our models using HeUniform").

Any input size: five poolings of 2, so the image is zero-padded at the bottom and right to a
multiple of 32 and the logits are cropped back.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.classes import NUM_CLASSES
from ..errors import SegeduError
from . import register
from .blocks import crop_like, kaiming_init_, pad_with_crop, scaled
from .interface import EncoderDecoder, FeatureTap

#: Layers per dense block: down path, bottleneck, up path (Sec. 4, Table 2).
LAYERS_PER_BLOCK = {
    56: (4,) * 11,
    67: (5,) * 11,
    103: (4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4),
}
#: Growth rate k of each network (Sec. 4).
GROWTH_RATE = {56: 12, 67: 16, 103: 16}
#: Filters of the first 3x3 convolution (Table 2: "3x3 Convolution, m = 48").
FIRST_CONV_FILTERS = 48
DROPOUT = 0.2


class DenseLayer(nn.Sequential):
    """Table 1, "Layer": BN, ReLU, 3x3 convolution to ``growth_rate`` maps, dropout p = 0.2."""

    def __init__(self, in_channels: int, growth_rate: int, dropout: float = DROPOUT) -> None:
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, growth_rate, 3, padding=1),
            nn.Dropout(dropout),
        )


class DenseBlock(nn.Module):
    """Fig. 2: ``num_layers`` dense layers, each fed the concatenation of the block's input and all
    previous layers' outputs.

    Output: the concatenation of the input and the ``num_layers * growth_rate`` new maps
    (``keep_input=True``: the downsampling path and the last block), or the new maps alone
    (``keep_input=False``: the bottleneck and the upsampling path, Sec. 3.2). ``out_channels``
    says which.
    """

    def __init__(self, in_channels: int, num_layers: int, growth_rate: int, keep_input: bool = True,
                 dropout: float = DROPOUT) -> None:
        super().__init__()
        self.keep_input = keep_input
        self.layers = nn.ModuleList(DenseLayer(in_channels + i * growth_rate, growth_rate, dropout)
                                    for i in range(num_layers))
        self.out_channels = num_layers * growth_rate + (in_channels if keep_input else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new_maps = []
        for layer in self.layers:
            new = layer(x)
            new_maps.append(new)
            x = torch.cat([x, new], 1)
        return x if self.keep_input else torch.cat(new_maps, 1)


class TransitionDown(nn.Sequential):
    """Table 1, "Transition Down": BN, ReLU, 1x1 convolution keeping the number of maps, dropout
    p = 0.2, 2x2 max pooling."""

    def __init__(self, channels: int, dropout: float = DROPOUT) -> None:
        super().__init__(
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1),
            nn.Dropout(dropout),
            nn.MaxPool2d(2),
        )


class TransitionUp(nn.Module):
    """Table 1, "Transition Up": a 3x3 transposed convolution of stride 2 (keeping the number of
    maps), cut to the skip's size and concatenated with it (Fig. 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat([crop_like(self.conv(x), skip), skip], 1)


class FCDenseNet(EncoderDecoder):
    """Fig. 1: first convolution, dense blocks with transitions down, bottleneck block, transitions
    up with skip concatenations and dense blocks, 1x1 classifier.

    ``layers_per_block`` has ``2 * n + 1`` entries: ``n`` blocks down, the bottleneck, ``n`` up.

    ``encoder`` is None (the down path is module lists, no single module); ``feature_taps`` are
    the skips, the down blocks' outputs ``down1`` .. ``down<n>``, then the ``bottleneck``'s new maps.
    """

    encoder_path = None
    from_scratch = "the paper trains it from scratch (Jégou et al. 2017, Sec. 4)"

    def __init__(self, num_classes: int = NUM_CLASSES, layers_per_block: tuple[int, ...] = LAYERS_PER_BLOCK[103],
                 growth_rate: int = 16, first_conv_filters: int = FIRST_CONV_FILTERS,
                 dropout: float = DROPOUT) -> None:
        super().__init__()
        if len(layers_per_block) % 2 != 1:
            raise SegeduError(f"layers_per_block needs n blocks down, a bottleneck and n up (an odd count), "
                              f"got {layers_per_block}.")
        n_pool = len(layers_per_block) // 2
        self.stride = 2**n_pool
        down, bottleneck, up = layers_per_block[:n_pool], layers_per_block[n_pool], layers_per_block[n_pool + 1:]

        self.first_conv = nn.Conv2d(3, first_conv_filters, 3, padding=1)
        channels = first_conv_filters
        self.down_blocks, self.transitions_down, skip_channels = nn.ModuleList(), nn.ModuleList(), []
        for num_layers in down:
            block = DenseBlock(channels, num_layers, growth_rate, keep_input=True, dropout=dropout)
            channels = block.out_channels
            skip_channels.append(channels)
            self.down_blocks.append(block)
            self.transitions_down.append(TransitionDown(channels, dropout))

        self.bottleneck = DenseBlock(channels, bottleneck, growth_rate, keep_input=False, dropout=dropout)
        upsampled = self.bottleneck.out_channels  # only the new maps go up (Sec. 3.2)
        self.transitions_up, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        for i, (num_layers, skip) in enumerate(zip(up, reversed(skip_channels))):
            self.transitions_up.append(TransitionUp(upsampled))
            last = i == n_pool - 1
            block = DenseBlock(upsampled + skip, num_layers, growth_rate, keep_input=last, dropout=dropout)
            self.up_blocks.append(block)
            upsampled = block.out_channels

        self.classifier = nn.Conv2d(upsampled, num_classes, 1)
        # He-uniform (Sec. 4), Lasagne's HeUniform: fan_in, zero biases
        kaiming_init_(self, zero_bias=True, distribution="uniform", mode="fan_in",
                      layers=(nn.Conv2d, nn.ConvTranspose2d))

    @property
    def feature_taps(self) -> dict[str, FeatureTap]:
        taps = {f"down{i + 1}": FeatureTap(f"down_blocks.{i}", block.out_channels)
                for i, block in enumerate(self.down_blocks)}
        return {**taps, "bottleneck": FeatureTap("bottleneck", self.bottleneck.out_channels)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, crop = pad_with_crop(x, self.stride)
        features = self.first_conv(x)
        skips = []
        for block, transition in zip(self.down_blocks, self.transitions_down):
            features = block(features)
            skips.append(features)
            features = transition(features)
        features = self.bottleneck(features)
        for transition, block, skip in zip(self.transitions_up, self.up_blocks, reversed(skips)):
            features = block(transition(features, skip))
        return crop(self.classifier(features))


def _fc_densenet(depth: int, num_classes: int, width: float) -> FCDenseNet:
    return FCDenseNet(num_classes, LAYERS_PER_BLOCK[depth], growth_rate=scaled(GROWTH_RATE[depth], width),
                      first_conv_filters=scaled(FIRST_CONV_FILTERS, width))


@register("fcdensenet56")
def fcdensenet56(num_classes: int = NUM_CLASSES, *, width: float = 1.0) -> FCDenseNet:
    """FC-DenseNet56: 4 layers per dense block, growth rate 12 (about 1.5M parameters, Table 2).

    Args:
        num_classes: output channels.
        width: multiplies the growth rate k and the first convolution's 48 filters (every layer's
            width follows from those two; 1.0 = the paper).
    """
    return _fc_densenet(56, num_classes, width)


@register("fcdensenet67")
def fcdensenet67(num_classes: int = NUM_CLASSES, *, width: float = 1.0) -> FCDenseNet:
    """FC-DenseNet67: 5 layers per dense block, growth rate 16 (about 3.5M parameters, Table 2);
    arguments as :func:`fcdensenet56`."""
    return _fc_densenet(67, num_classes, width)


@register("fcdensenet103")
def fcdensenet103(num_classes: int = NUM_CLASSES, *, width: float = 1.0) -> FCDenseNet:
    """FC-DenseNet103: 4, 5, 7, 10, 12 layers down, 15 in the bottleneck, the reverse up, growth
    rate 16 (about 9.4M parameters, Table 2); arguments as :func:`fcdensenet56`."""
    return _fc_densenet(103, num_classes, width)
