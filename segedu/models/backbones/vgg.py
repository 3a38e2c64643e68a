"""VGG16 (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015, Table 1 column D) as a segmentation backbone.

The layers are torchvision's own (``torchvision.models.vgg.make_layers``, at scaled widths), so
``torchvision.models.vgg16``'s (or with ``batch_norm=True`` ``vgg16_bn``'s) state dict loads
unchanged. Without batch norm the indices are

=====  ==========================  =====  ==========================
index  paper name                  index  paper name
=====  ==========================  =====  ==========================
0, 2   conv1_1, conv1_2            4      pool1
5, 7   conv2_1, conv2_2            9      pool2
10-14  conv3_1, conv3_2, conv3_3   16     pool3
17-21  conv4_1, conv4_2, conv4_3   23     pool4
24-28  conv5_1, conv5_2, conv5_3   30     pool5
=====  ==========================  =====  ==========================

(each conv followed by its ReLU). ``fully_convolutional=True`` adds fc6 and fc7 as convolutions,
the "convolutionalization" of Long et al. (FCN, CVPR 2015, Sec. 3.1 and Fig. 2); they take the
ImageNet classifier's weights through :func:`fully_convolutional_state_dict`.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models import VGG16_BN_Weights, VGG16_Weights, WeightsEnum

from ..blocks import kaiming_init_, scaled

#: Table 1, column D: output channels of the 13 convolutions; "M" is a 2x2 max pooling.
CONFIG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
#: Width of the two hidden fully connected layers (fc6, fc7).
FC_CHANNELS = 4096
#: fc6 sees a 7x7 window of pool5 (224 / 32 = 7).
FC6_KERNEL = 7


class VGG16(nn.Module):
    """VGG16 returning ``{"pool1": ..., ..., "pool5": ...}`` (and ``"fc7"`` when fully convolutional).

    Args:
        width: channel multiplier (1.0 = the paper's 64...512 and 4096).
        batch_norm: BatchNorm2d after every convolution (torchvision's ``vgg16_bn`` layout).
        fully_convolutional: add ``fc6`` (7x7 conv, 4096 channels) and ``fc7`` (1x1 conv, 4096),
            each followed by ReLU and dropout 0.5 as in the classifier they replace.
        conv1_padding: padding of conv1_1; FCN's Caffe nets use 100 (see ``segedu.models.fcn``).
        fc6_padding: 0 is the classifier's geometry (a 7x7 map becomes 1x1); 3 keeps the size.
        ceil_mode: round pooled sizes up, as Caffe does (needed with ``conv1_padding=100``).
        pooling_indices: the max poolings also return where each maximum was (``return_indices``),
            what SegNet's and DeconvNet's unpooling needs (``segedu.models.segnet.Encoder``).

    ``channels`` maps each returned feature name to its channel count.
    """

    def __init__(self, width: float = 1.0, *, batch_norm: bool = False, fully_convolutional: bool = False,
                 conv1_padding: int = 1, fc6_padding: int = 3, ceil_mode: bool = False,
                 pooling_indices: bool = False) -> None:
        super().__init__()
        self.width = width
        self.batch_norm = batch_norm
        self.channels: dict[str, int] = {}
        self._pool_names: dict[int, str] = {}  # index in `features` -> "poolN"
        # torchvision's own feature extractor (conv 3x3 [-> BN] -> ReLU, 2x2 max poolings), at the
        # scaled widths; then the options torchvision's classifier does not need
        config = [entry if entry == "M" else scaled(entry, width) for entry in CONFIG_D]
        self.features = torchvision.models.vgg.make_layers(config, batch_norm=batch_norm)
        self.features[0].padding = (conv1_padding, conv1_padding)
        in_channels = 3
        for index, layer in enumerate(self.features):
            if isinstance(layer, nn.Conv2d):
                in_channels = layer.out_channels
            elif isinstance(layer, nn.MaxPool2d):
                layer.ceil_mode, layer.return_indices = ceil_mode, pooling_indices
                name = f"pool{len(self._pool_names) + 1}"
                self._pool_names[index] = name
                self.channels[name] = in_channels

        self.fc6 = self.fc7 = None
        if fully_convolutional:
            fc_channels = scaled(FC_CHANNELS, width)
            self.fc6 = nn.Sequential(nn.Conv2d(in_channels, fc_channels, FC6_KERNEL, padding=fc6_padding),
                                     nn.ReLU(inplace=True), nn.Dropout(0.5))
            self.fc7 = nn.Sequential(nn.Conv2d(fc_channels, fc_channels, 1),
                                     nn.ReLU(inplace=True), nn.Dropout(0.5))
            self.channels["fc7"] = fc_channels

        # torchvision's VGG initialisation for the convolutions
        kaiming_init_(self, zero_bias=True)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if isinstance(x, tuple):  # a pooling that returns its indices too
                x = x[0]
            if index in self._pool_names:
                features[self._pool_names[index]] = x
        if self.fc6 is not None:
            features["fc7"] = self.fc7(self.fc6(x))
        return features

    @property
    def pool_indices(self) -> list[int]:
        """Positions of the five max poolings in ``features``, pool1 first."""
        return list(self._pool_names)

    @property
    def imagenet_weights(self) -> WeightsEnum:
        """torchvision's ImageNet weights for this layout."""
        return VGG16_BN_Weights.IMAGENET1K_V1 if self.batch_norm else VGG16_Weights.IMAGENET1K_V1

    def from_torchvision(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """torchvision's ``vgg16``/``vgg16_bn`` state dict in this module's keys."""
        if self.fc6 is not None:
            return fully_convolutional_state_dict(state_dict)
        return features_state_dict(state_dict)


def features_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The convolutional part (``features.*``) of torchvision's ``vgg16``/``vgg16_bn`` state dict."""
    return {key: value for key, value in state_dict.items() if key.startswith("features.")}


def linear_to_conv_weight(weight: torch.Tensor, in_channels: int, kernel_size: int) -> torch.Tensor:
    """A fully connected layer's (out, in_channels * k * k) weight as a (out, in_channels, k, k)
    convolution kernel.

    The classifier flattens its (C, k, k) input channel-major (``torch.flatten``), so the kernel is
    the same numbers viewed in 4-D: on a k x k input the convolution computes exactly the FC layer.
    """
    return weight.reshape(weight.shape[0], in_channels, kernel_size, kernel_size)


def fully_convolutional_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's ``vgg16`` state dict in ``VGG16(fully_convolutional=True)``'s keys.

    ``features.*`` stay; ``classifier.0`` (fc6, 4096 x 25088) becomes the 7x7 convolution ``fc6.0``
    (4096 x 512 x 7 x 7), ``classifier.3`` (fc7, 4096 x 4096) the 1x1 convolution ``fc7.0``; the
    ImageNet scores ``classifier.6`` (fc8) are dropped, as FCN "decapitates" the net (Sec. 4.1).
    """
    converted = features_state_dict(state_dict)
    fc6 = state_dict["classifier.0.weight"]
    converted["fc6.0.weight"] = linear_to_conv_weight(fc6, fc6.shape[1] // FC6_KERNEL**2, FC6_KERNEL)
    converted["fc6.0.bias"] = state_dict["classifier.0.bias"]
    fc7 = state_dict["classifier.3.weight"]
    converted["fc7.0.weight"] = linear_to_conv_weight(fc7, fc7.shape[1], 1)
    converted["fc7.0.bias"] = state_dict["classifier.3.bias"]
    return converted
