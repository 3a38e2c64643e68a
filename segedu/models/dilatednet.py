"""DilatedNet: Yu & Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions", ICLR 2016
(arXiv:1511.07122).

* :class:`FrontEnd` -- Sec. 4: VGG16 adapted to dense prediction. The last two pooling and
  striding layers are removed entirely; every later convolution is dilated by 2 for each pooling
  layer removed, so conv5 has dilation 2 and fc6 (a 7x7 convolution with 4096 channels) dilation 4.
  fc7 (1x1, 4096) and fc8 (1x1, the classes) follow. Output stride 8, weights unchanged in shape,
  so torchvision's ImageNet VGG16 loads as the paper's initialisation did.
* :class:`ContextModule` -- Sec. 3 and Table 1, the *basic* module: seven 3x3 layers with
  dilations 1, 1, 2, 4, 8, 16, 1, each followed by truncation max(., 0), then a 1x1 layer, all with
  C = num_classes channels in and out. Its receptive field grows exponentially, to 67x67 on the
  front-end's grid, while the parameters (64 C^2 weights) grow linearly.
* :class:`DilatedNet` -- front-end + context module (``context=False``: the front-end alone).

Geometry differs from the authors' Caffe net in one respect: they removed the padding of the
intermediate maps and padded the image by reflection instead; here every layer keeps the size
(zero "same" padding), the image is zero-padded at the bottom/right to a multiple of 8, the
stride-8 scores are upsampled bilinearly and cropped back to H x W -- exact for any input size.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.classes import NUM_CLASSES
from . import register
from .backbones import VGG16
from .backbones.vgg import FC6_KERNEL
from .blocks import bilinear_upsample, pad_with_crop, same_padding
from .interface import EncoderDecoder

#: Pooling layers kept (pool1..pool3): output stride 2**3.
OUTPUT_STRIDE = 8
#: Table 1, basic context module: (kernel, dilation) of layers 1-8.
CONTEXT_LAYERS = ((3, 1), (3, 1), (3, 2), (3, 4), (3, 8), (3, 16), (3, 1), (1, 1))


class FrontEnd(nn.Module):
    """Sec. 4: VGG16 without pool4 and pool5, conv5 dilated by 2, fc6 by 4, then fc8 scores.

    ``backbone`` is a :class:`~segedu.models.backbones.VGG16` (fully convolutional) with the
    surgery applied in place, so its parameter names, and torchvision's weights, are unchanged.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, *, width: float = 1.0, batch_norm: bool = False) -> None:
        super().__init__()
        self.backbone = VGG16(width, batch_norm=batch_norm, fully_convolutional=True,
                              fc6_padding=same_padding(FC6_KERNEL, 4))
        features = self.backbone.features
        pools = [index for index, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
        # Sec. 4: pool4 and pool5 go, without replacement
        for index in pools[3:]:
            features[index] = nn.Identity()
        # convolutions after pool4's place (conv5_1..conv5_3) see a grid twice as fine: dilation 2
        for layer in features[pools[3]:]:
            if isinstance(layer, nn.Conv2d):
                layer.dilation, layer.padding = (2, 2), (same_padding(3, 2),) * 2
        # fc6 follows both removed poolings: dilation 4
        fc6 = self.backbone.fc6[0]
        fc6.dilation = (4, 4)
        self.fc8 = nn.Conv2d(self.backbone.channels["fc7"], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores at 1/8 of ``x``'s size (``x`` a multiple of 8 in height and width)."""
        return self.fc8(self.backbone(x)["fc7"])


class ContextModule(nn.Sequential):
    """Table 1, basic: layers 1-7 are 3x3 convolutions with dilations 1, 1, 2, 4, 8, 16, 1, each
    followed by ReLU ("truncation"), layer 8 a 1x1 convolution without truncation; every layer has
    ``channels`` inputs and outputs.

    Identity initialisation (Sec. 3): k(t, a) = 1[t = 0] 1[a = b] -- the centre tap of each filter
    copies its own channel, all else (biases included) is zero -- so each layer hands its input on
    unchanged. Because of the truncations the module starts as max(x, 0), which is x itself on
    non-negative inputs. (The paper reports that standard random initialisation did not work here.)
    """

    def __init__(self, channels: int) -> None:
        layers: list[nn.Module] = []
        for index, (kernel, dilation) in enumerate(CONTEXT_LAYERS):
            layers.append(nn.Conv2d(channels, channels, kernel, padding=same_padding(kernel, dilation),
                                    dilation=dilation))
            if index < len(CONTEXT_LAYERS) - 1:
                layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        self.identity_init_()

    def identity_init_(self) -> None:
        """Set every convolution to the identity filter with zero bias (Sec. 3)."""
        with torch.no_grad():
            for layer in self:
                if isinstance(layer, nn.Conv2d):
                    layer.weight.zero_()
                    centre = layer.kernel_size[0] // 2
                    channels = torch.arange(layer.out_channels)
                    layer.weight[channels, channels, centre, centre] = 1.0
                    layer.bias.zero_()


class DilatedNet(EncoderDecoder):
    """The front-end followed by the basic context module on its C = num_classes score maps
    (Sec. 5: the module is plugged into the front-end), upsampled 8x to the input size.
    ``encoder`` is the front-end's VGG16, ``frontend.backbone``; ``feature_taps`` its pool1..pool5
    (pool4 and pool5 are the identity here) and fc7. ``pretrained_backbone`` loads ImageNet's VGG16
    with fc6/fc7 convolutionalised (dilation changes no weight shape)."""

    encoder_path = "frontend.backbone"

    def __init__(self, num_classes: int = NUM_CLASSES, *, width: float = 1.0, context: bool = True,
                 batch_norm: bool = False) -> None:
        super().__init__()
        self.frontend = FrontEnd(num_classes, width=width, batch_norm=batch_norm)
        # the context module works on class scores, so its width is the class count, not scaled
        self.context = ContextModule(num_classes) if context else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, crop = pad_with_crop(x, OUTPUT_STRIDE)
        scores = self.frontend(padded)
        if self.context is not None:
            scores = self.context(scores)
        # an exact 8x upsampling of the padded grid keeps every score cell centred on its 8x8
        # block of pixels; the padding is then cut off
        return crop(bilinear_upsample(scores, padded.shape[-2:]))


@register("dilatednet")
def dilatednet(num_classes: int = NUM_CLASSES, *, width: float = 1.0, context: bool = True,
               batch_norm: bool = False) -> DilatedNet:
    """DilatedNet (Yu & Koltun, ICLR 2016): dilated VGG16 front-end + basic context module.

    Args:
        num_classes: output channels (also the context module's width, C in Table 1).
        width: channel multiplier of the front-end (1.0 = the paper).
        context: add the basic context module (False: the front-end alone, Sec. 4).
        batch_norm: batch norm after every VGG convolution (torchvision's vgg16_bn; not in the
            paper, which starts from ImageNet weights; it lets the net train from scratch).
    """
    return DilatedNet(num_classes, width=width, context=context, batch_norm=batch_norm)
