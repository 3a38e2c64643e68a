"""Fully convolutional networks: Long, Shelhamer & Darrell, "Fully Convolutional Networks for
Semantic Segmentation", CVPR 2015 (arXiv:1411.4038; extended in TPAMI 2017).

* :class:`ConvolutionalizedVGG16` -- Fig. 2 / Sec. 3.1: the ImageNet classifier with its fully
  connected layers rewritten as convolutions; same scores on 224x224, a heatmap on larger images.
* :class:`FCN32s`, :class:`FCN16s`, :class:`FCN8s` -- Sec. 4.1-4.2 and Fig. 3: class scores on
  the convolutionalised VGG16 (fc7), upsampled by transposed convolutions that start as bilinear
  interpolation (Sec. 3.3), with skips from pool4 (16s) and pool3 (8s).
* :class:`FCNResNet` -- torchvision's ``fcn_resnet50``/``fcn_resnet101``: a ResNet dilated to
  output stride 8 with :class:`FCNHead`; the same parameter names, so torchvision's state dicts
  load without a key map.

Two ways to reach the input size with the VGG nets, both exact for any H x W:

* ``pad100=False`` (default): pad the image at the bottom/right to a multiple of 32, keep every
  layer size-preserving (conv1_1 padding 1, fc6 padding 3, upsampling kernel 2f with padding
  f/2), and crop the logits back to H x W. Skips line up without offsets.
* ``pad100=True``: the authors' Caffe nets. conv1_1 pads by 100 so that even a small image leaves
  fc6 (7x7, no padding) something to see; pooling rounds up; the transposed convolutions have no
  padding; Caffe ``Crop`` layers cut each skip and the final scores at fixed offsets
  (:data:`CAFFE_OFFSETS`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.classes import NUM_CLASSES
from . import register
from .backbones import ResNet, VGG16
from .backbones.vgg import fully_convolutional_state_dict, linear_to_conv_weight
from .blocks import ConvBNReLU, bilinear_conv_transpose, crop_like, main_and_aux, pad_to_multiple
from .interface import EncoderDecoder

#: Crop offsets of the pad-100 nets, as in the authors' voc-fcn{32,16,8}s/net.py. An offset is
#: where the cropped map's first pixel falls in the bigger map. Composing each layer's
#: coordinate map ``x_in = stride * x_out + (kernel - 1) / 2 - padding`` (inverted for the
#: transposed convolutions) gives, in image coordinates u:
#:   pool4 cell e: u = 16 e - 91.5;  pool3 cell d: u = 8 d - 95.5;  score cell g: u = 32 g + 12.5,
#:   upscore2 cell y: u = 16 y - 11.5 = pool4 at e = y + 5;  upscore_pool4 cell y: u = 8 y - 23.5 =
#:   pool3 at d = y + 9;  and the final maps u = y - 19 (x32), u = y - 27 (x16), u = y - 31 (x8).
CAFFE_OFFSETS = {"score_pool4": 5, "score_pool3": 9, "upscore": 19, "upscore16": 27, "upscore8": 31}
#: Total stride of VGG16's five poolings.
VGG_STRIDE = 32


def _score_layer(in_channels: int, num_classes: int) -> nn.Conv2d:
    """A 1x1 class-score convolution, zero-initialised: "We zero-initialize the class scoring
    convolution layer" (Sec. 4.3), and new skip scores start at zero "so that the net starts with
    unmodified predictions" (Sec. 4.2)."""
    layer = nn.Conv2d(in_channels, num_classes, 1)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class FCNVGG16(EncoderDecoder):
    """What FCN-32s, -16s and -8s share: the convolutionalised VGG16 (fc6 a 7x7 convolution with
    4096 channels, fc7 1x1 with 4096) and the class scores on fc7, ``score_fr`` (Sec. 4.1).
    ``pretrained_backbone`` loads ImageNet's VGG16 with fc6/fc7 convolutionalised (Sec. 3.1).

    Upsampling (Sec. 4.3, "Dense Prediction"): the final transposed convolution is fixed to
    bilinear interpolation (``requires_grad=False``); the intermediate 2x ones start bilinear and
    are learned.

    ``encoder`` is ``backbone``; ``feature_taps`` its pool1..pool5 and fc7.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, *, width: float = 1.0, pad100: bool = False,
                 batch_norm: bool = False) -> None:
        super().__init__()
        self.pad100 = pad100
        self.backbone = VGG16(width, batch_norm=batch_norm, fully_convolutional=True, conv1_padding=100 if pad100 else 1,
                              fc6_padding=0 if pad100 else 3, ceil_mode=pad100)
        self.score_fr = _score_layer(self.backbone.channels["fc7"], num_classes)

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # zero padding; the crop back to x is Caffe's crop (offset 0 here), shared with pad100
        return self.backbone(x if self.pad100 else pad_to_multiple(x, VGG_STRIDE))

    def _upsampling(self, num_classes: int, factor: int, learnable: bool) -> nn.ConvTranspose2d:
        return bilinear_conv_transpose(num_classes, factor, padding=0 if self.pad100 else factor // 2,
                                       learnable=learnable)

    def _crop(self, x: torch.Tensor, reference: torch.Tensor, layer: str) -> torch.Tensor:
        """Caffe's crop at the pad-100 offset of ``layer``; the padded variant's maps already align."""
        return crop_like(x, reference, CAFFE_OFFSETS[layer] if self.pad100 else 0)


class FCN32s(FCNVGG16):
    """FCN-32s (Fig. 3, top): fc7's class scores upsampled 32x in one step."""

    def __init__(self, num_classes: int = NUM_CLASSES, *, width: float = 1.0, pad100: bool = False,
                 batch_norm: bool = False) -> None:
        super().__init__(num_classes, width=width, pad100=pad100, batch_norm=batch_norm)
        self.upscore = self._upsampling(num_classes, 32, learnable=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self._features(x)
        score = self.score_fr(features["fc7"])
        return self._crop(self.upscore(score), x, "upscore")


class FCN16s(FCNVGG16):
    """FCN-16s (Fig. 3, middle): 2x-upsampled fc7 scores plus scores from pool4, upsampled 16x."""

    def __init__(self, num_classes: int = NUM_CLASSES, *, width: float = 1.0, pad100: bool = False,
                 batch_norm: bool = False) -> None:
        super().__init__(num_classes, width=width, pad100=pad100, batch_norm=batch_norm)
        self.upscore2 = self._upsampling(num_classes, 2, learnable=True)
        self.score_pool4 = _score_layer(self.backbone.channels["pool4"], num_classes)
        self.upscore16 = self._upsampling(num_classes, 16, learnable=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self._features(x)
        upscore2 = self.upscore2(self.score_fr(features["fc7"]))
        fuse_pool4 = upscore2 + self._crop(self.score_pool4(features["pool4"]), upscore2, "score_pool4")
        return self._crop(self.upscore16(fuse_pool4), x, "upscore16")


class FCN8s(FCNVGG16):
    """FCN-8s (Fig. 3, bottom): as FCN-16s, then 2x again plus scores from pool3, upsampled 8x."""

    def __init__(self, num_classes: int = NUM_CLASSES, *, width: float = 1.0, pad100: bool = False,
                 batch_norm: bool = False) -> None:
        super().__init__(num_classes, width=width, pad100=pad100, batch_norm=batch_norm)
        self.upscore2 = self._upsampling(num_classes, 2, learnable=True)
        self.score_pool4 = _score_layer(self.backbone.channels["pool4"], num_classes)
        self.upscore_pool4 = self._upsampling(num_classes, 2, learnable=True)
        self.score_pool3 = _score_layer(self.backbone.channels["pool3"], num_classes)
        self.upscore8 = self._upsampling(num_classes, 8, learnable=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self._features(x)
        upscore2 = self.upscore2(self.score_fr(features["fc7"]))
        fuse_pool4 = upscore2 + self._crop(self.score_pool4(features["pool4"]), upscore2, "score_pool4")
        upscore_pool4 = self.upscore_pool4(fuse_pool4)
        score_pool3 = self.score_pool3(features["pool3"])
        fuse_pool3 = upscore_pool4 + self._crop(score_pool3, upscore_pool4, "score_pool3")
        return self._crop(self.upscore8(fuse_pool3), x, "upscore8")


class ConvolutionalizedVGG16(nn.Module):
    """Fig. 2 / Sec. 3.1: VGG16 whose fully connected layers fc6, fc7, fc8 are convolutions
    (7x7, 1x1, 1x1). On a 224x224 image it outputs the classifier's scores as a 1x1 map; a larger
    image gives a coarse map of scores, one per 32-pixel step.
    """

    def __init__(self, num_classes: int = 1000, *, width: float = 1.0) -> None:
        super().__init__()
        self.backbone = VGG16(width, fully_convolutional=True, fc6_padding=0)
        self.fc8 = nn.Conv2d(self.backbone.channels["fc7"], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.backbone(x)["fc7"])

    @classmethod
    def from_torchvision(cls, vgg: nn.Module) -> ConvolutionalizedVGG16:
        """The convolutional twin of a ``torchvision.models.vgg16`` (weights copied, not shared)."""
        state_dict = {key: value.detach().clone() for key, value in vgg.state_dict().items()}
        fc8 = state_dict["classifier.6.weight"]
        with torch.device("meta"):  # no initialisation: every weight comes from `vgg`
            model = cls(fc8.shape[0])
        model.backbone.load_state_dict(fully_convolutional_state_dict(state_dict), assign=True)
        model.fc8.load_state_dict({"weight": linear_to_conv_weight(fc8, fc8.shape[1], 1),
                                   "bias": state_dict["classifier.6.bias"]}, assign=True)
        return model


class FCNHead(nn.Sequential):
    """torchvision's FCN head: 3x3 conv to a quarter of the channels, BN, ReLU, dropout 0.1,
    1x1 conv to the classes. Flat children (0 conv, 1 BN, 2 ReLU, 3 dropout, 4 conv), so the
    parameter names are torchvision's."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        inter_channels = in_channels // 4
        super().__init__(*ConvBNReLU(in_channels, inter_channels, 3), nn.Dropout(0.1),
                         nn.Conv2d(inter_channels, num_classes, 1))


class FCNResNet(EncoderDecoder):
    """FCN on a ResNet dilated to output stride 8 (torchvision's ``FCN`` with ``fcn_resnet50``/
    ``fcn_resnet101``): ``classifier`` on layer4, optional ``aux_classifier`` on layer3 (training
    mode only), both bilinearly upsampled to the input size. ``encoder`` is ``backbone``;
    ``feature_taps`` its layer1..layer4.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, depth: int = 50, *, width: float = 1.0,
                 aux: bool = False) -> None:
        super().__init__()
        self.backbone = ResNet(depth, width=width, output_stride=8)
        self.classifier = FCNHead(self.backbone.channels["layer4"], num_classes)
        self.aux_classifier = FCNHead(self.backbone.channels["layer3"], num_classes) if aux else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        return main_and_aux(self.backbone(x), self.classifier, self.aux_classifier, x.shape[-2:], self.training)


@register("fcn32s")
def fcn32s(num_classes: int = NUM_CLASSES, *, width: float = 1.0, pad100: bool = False,
           batch_norm: bool = False) -> FCN32s:
    """FCN-32s on VGG16.

    Args:
        num_classes: output channels.
        width: channel multiplier (1.0 = the paper).
        pad100: the authors' Caffe geometry (pad 100, crops) instead of padding to a multiple of 32.
        batch_norm: VGG16 with batch norm after every convolution (torchvision's vgg16_bn; not in
            the paper, which fine-tunes ImageNet weights; it lets the network train from scratch).
    """
    return FCN32s(num_classes, width=width, pad100=pad100, batch_norm=batch_norm)


@register("fcn16s")
def fcn16s(num_classes: int = NUM_CLASSES, *, width: float = 1.0, pad100: bool = False,
           batch_norm: bool = False) -> FCN16s:
    """FCN-16s on VGG16; arguments as :func:`fcn32s`."""
    return FCN16s(num_classes, width=width, pad100=pad100, batch_norm=batch_norm)


@register("fcn8s")
def fcn8s(num_classes: int = NUM_CLASSES, *, width: float = 1.0, pad100: bool = False,
          batch_norm: bool = False) -> FCN8s:
    """FCN-8s on VGG16; arguments as :func:`fcn32s`."""
    return FCN8s(num_classes, width=width, pad100=pad100, batch_norm=batch_norm)


@register("fcn_resnet50")
def fcn_resnet50(num_classes: int = NUM_CLASSES, *, width: float = 1.0, aux: bool = False) -> FCNResNet:
    """FCN on ResNet-50, torchvision's ``fcn_resnet50`` (its state dict loads as is).

    Args:
        num_classes: output channels.
        width: channel multiplier (1.0 = the paper).
        aux: add the auxiliary head on layer3 (torchvision's ``aux_loss=True``).
    """
    return FCNResNet(num_classes, 50, width=width, aux=aux)


@register("fcn_resnet101")
def fcn_resnet101(num_classes: int = NUM_CLASSES, *, width: float = 1.0, aux: bool = False) -> FCNResNet:
    """FCN on ResNet-101, torchvision's ``fcn_resnet101``; arguments as :func:`fcn_resnet50`."""
    return FCNResNet(num_classes, 101, width=width, aux=aux)
