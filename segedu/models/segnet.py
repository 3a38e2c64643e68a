"""SegNet: Badrinarayanan, Kendall & Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder
Architecture for Image Segmentation", IEEE TPAMI 39(12), 2017 (arXiv:1511.00561), Sec. 3 and
Fig. 2-3.

* :class:`Encoder` -- Sec. 3: "the 13 convolutional layers in the VGG16 network" (segedu's one
  :class:`~segedu.models.backbones.VGG16`), each followed by batch normalisation and ReLU, a 2x2
  max pooling of stride 2 ending each of the five stages. The pooling keeps the position of every maximum,
  :class:`PoolingIndices` ("storing only the max-pooling indices", Sec. 3). No fully connected
  layers: dropping them takes the encoder from 134M to 14.7M parameters.
* :class:`Unpooling` / :class:`DecoderStage` -- Fig. 3: a decoder upsamples its input by putting
  each value back where its encoder's maximum was (a sparse map, zeros elsewhere), then
  "convolved with a trainable decoder filter bank" -- conv, batch norm, ReLU.
* :class:`SegNet` -- Fig. 2: encoder, a decoder stage per encoder stage in reverse order, and a
  per-pixel classifier whose softmax lives in the loss.

The encoder, unpooling and decoder stage are shared with DeconvNet (``segedu.models.deconvnet``),
whose decoder unpools with the same indices ("switch variables") and then applies transposed
convolutions.

Layout follows the authors' Caffe model (SegNet-Tutorial ``segnet_train.prototxt``): decoder stage
k mirrors encoder stage k's convolutions in reverse, the last one of each stage narrowing to the
channels of the stage below; the 13th decoder convolution, ``conv1_1_D``, is the classifier itself
(3x3, ``num_classes`` outputs, no batch norm), followed by the softmax loss.

Any H x W: the image is zero-padded at the bottom/right to a multiple of 32, so every pooling
halves exactly and every unpooling restores the size its pooling saw; the logits are cropped back.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from ..data.classes import NUM_CLASSES
from . import register
from .backbones import VGG16
from .blocks import ConvBNReLU, pad_with_crop
from .interface import EncoderDecoder, FeatureTap

#: VGG16's five stages (Simonyan & Zisserman, Table 1 column D): (output channels, 3x3 convolutions).
VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
#: Total stride of the five poolings.
STRIDE = 32


class PoolingIndices(NamedTuple):
    """What a max pooling remembers for its unpooling: the flat position of each maximum in its
    input plane (SegNet's "max-pooling indices"; DeconvNet's "switch variables") and that input's
    height and width, so the unpooled map has exactly the pooled map's size."""

    indices: torch.Tensor
    size: torch.Size


class Unpooling(nn.MaxUnpool2d):
    """2x2 max unpooling (Fig. 3): each value goes back to the position its pooling window's maximum
    came from; the other three cells of the window stay zero."""

    def __init__(self) -> None:
        super().__init__(2, stride=2)

    def forward(self, x: torch.Tensor, pooling: PoolingIndices) -> torch.Tensor:
        return super().forward(x, pooling.indices, output_size=pooling.size)


class DecoderStage(nn.Module):
    """:class:`Unpooling` with an encoder stage's indices, then ``num_layers`` layers mirroring that
    stage's convolutions: ``in_channels`` wide, the last narrowing to ``out_channels``.

    ``layer(in_channels, out_channels)`` builds one of them: conv -> BN -> ReLU for SegNet,
    a transposed convolution -> BN -> ReLU for DeconvNet.
    """

    def __init__(self, in_channels: int, out_channels: int, num_layers: int,
                 layer: Callable[[int, int], nn.Module] = ConvBNReLU) -> None:
        super().__init__()
        self.unpool = Unpooling()
        self.convs = nn.Sequential(*(layer(in_channels, in_channels) for _ in range(num_layers - 1)),
                                   layer(in_channels, out_channels))

    def forward(self, x: torch.Tensor, pooling: PoolingIndices) -> torch.Tensor:
        return self.convs(self.unpool(x, pooling))


class Encoder(VGG16):
    """VGG16's 13 convolutions with batch norm and its five max poolings, each of which keeps its
    :class:`PoolingIndices`; ``forward`` returns the pool5 map and the five stages' indices, first
    stage first.

    It is segedu's one VGG16 (:class:`~segedu.models.backbones.VGG16`, torchvision's ``vgg16_bn``
    layout, so the course's and ImageNet's weights load by ``from_torchvision`` unchanged) with
    ``pooling_indices``. The convolutions keep their bias (redundant before batch norm) as
    torchvision's and the authors' Caffe encoder have them. ``stage_channels`` lists each stage's
    output channels.
    """

    def __init__(self, width: float = 1.0) -> None:
        super().__init__(width, batch_norm=True, pooling_indices=True)
        self.stage_channels = [self.channels[f"pool{index + 1}"] for index in range(len(VGG16_STAGES))]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[PoolingIndices]]:
        indices = []
        pools = set(self.pool_indices)  # by position: a probe may swap the poolings for look-alikes
        for position, layer in enumerate(self.features):
            if position in pools:
                size = x.shape[-2:]
                x, where = layer(x)
                indices.append(PoolingIndices(where, size))
            else:
                x = layer(x)
        return x, indices


class SegNet(EncoderDecoder):
    """SegNet (Fig. 2): :class:`Encoder`, five :class:`DecoderStage`\\ s with conv-BN-ReLU, and the
    classifier ``conv1_1_D`` (3x3 to ``num_classes``).

    ``decoder[0]`` mirrors encoder stage 5 (3 x 512 -> 512), ..., ``decoder[4]`` stage 1, whose
    mirror of conv1_1 is the classifier, so it keeps one conv-BN-ReLU (conv1_2_D).

    ``feature_taps``: pool1..pool5, each encoder stage's pooled output. ``pretrained_backbone``
    loads ImageNet's VGG16 (with batch norm) into the encoder, as the paper initialises its encoder
    from VGG16 (Sec. 3).
    """

    encoder_path = "encoder"

    def __init__(self, num_classes: int = NUM_CLASSES, *, width: float = 1.0) -> None:
        super().__init__()
        self.encoder = Encoder(width)
        channels = self.encoder.stage_channels
        stages = []
        for stage in reversed(range(len(VGG16_STAGES))):
            num_layers = VGG16_STAGES[stage][1]
            if stage == 0:
                stages.append(DecoderStage(channels[0], channels[0], num_layers - 1))
            else:
                stages.append(DecoderStage(channels[stage], channels[stage - 1], num_layers))
        self.decoder = nn.ModuleList(stages)
        self.classifier = nn.Conv2d(channels[0], num_classes, 3, padding=1)

    @property
    def feature_taps(self) -> dict[str, FeatureTap]:
        return stage_taps(self.encoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, crop = pad_with_crop(x, STRIDE)
        x, indices = self.encoder(x)
        for stage, pooling in zip(self.decoder, reversed(indices)):
            x = stage(x, pooling)
        return crop(self.classifier(x))


def stage_taps(encoder: Encoder, path: str = "encoder") -> dict[str, FeatureTap]:
    """``{"pool1": ..., "pool5": ...}``: each stage's pooled map, element 0 of its pooling's output."""
    return {f"pool{index + 1}": FeatureTap(f"{path}.features.{position}", channels, 0)
            for index, (position, channels) in enumerate(zip(encoder.pool_indices, encoder.stage_channels))}


@register("segnet")
def segnet(num_classes: int = NUM_CLASSES, *, width: float = 1.0) -> SegNet:
    """SegNet on VGG16 with batch norm (Badrinarayanan et al., TPAMI 2017).

    Args:
        num_classes: output channels.
        width: channel multiplier (1.0 = the paper).
    """
    return SegNet(num_classes, width=width)
