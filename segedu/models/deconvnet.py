"""DeconvNet: Noh, Hong & Han, "Learning Deconvolution Network for Semantic Segmentation",
ICCV 2015 (arXiv:1505.04366), Sec. 3, Fig. 2 and Table 1.

* :class:`ConvolutionNetwork` -- Sec. 3.1: VGG16's 13 convolutions, each pooling recording its
  "switch variables" (the position of every maximum), then fc6 (7x7 convolution, 4096 channels)
  and fc7 (1x1, 4096): pool5's 7x7 map becomes a 1x1 class-agnostic description.
* :class:`DeconvolutionNetwork` -- Sec. 3.2, "a mirrored version of the convolution network":
  ``deconv-fc6`` (7x7 transposed convolution, 1x1 back to 7x7), then per VGG stage an unpooling
  with that stage's switches (Sec. 3.2.1, "reconstructs the original size of activations") and
  3x3 :class:`Deconvolution` layers that "densify the sparse activations obtained by unpooling"
  (Sec. 3.2.2).
* :class:`DeconvNet` -- the two networks and the 1x1 ``seg-score`` classifier (Table 1, "output").

Batch normalisation follows every convolution and deconvolution, fc6, fc7 and deconv-fc6
included (Sec. 4.1: it is what makes the deep network train); there is no dropout. Layer sizes
are the authors' Caffe model (``DeconvNet_inference_deploy.prototxt``): 252M parameters.

The stages are SegNet's (``segedu.models.segnet``): :class:`~segedu.models.segnet.Encoder` (segedu's
one VGG16, its poolings keeping their indices), :class:`~segedu.models.segnet.Unpooling` and
:class:`~segedu.models.segnet.DecoderStage`, here with transposed convolutions; the two papers differ in what follows pool5 and in the decoder's layer.

Any H x W. The image is zero-padded at the bottom/right to a multiple of 32 (every pooling halves
exactly, every unpooling restores its size) and the logits are cropped back. fc6 is the paper's
7x7 convolution without padding, so pool5 must be at least 7x7: by default an image is also padded
to at least 224 x 224, the paper's input (a 37x45 image runs as 224x224; a 480x640 one as
480x640, whose 15x20 pool5 gives a 9x14 fc7 that deconv-fc6 takes back to 15x20).
``pad_fc6=True`` instead pads fc6 and deconv-fc6 by 3, keeping pool5's size: any image then only
needs a multiple of 32 (much cheaper for small images), at the cost of fc6 seeing zero padding at
the border, which the paper's network never does.

Training mode needs more than one value per channel for the batch norm after fc6 and fc7: with
the default geometry an image up to 255 x 255 has a 1x1 fc7, so a batch needs two or more images
(the paper trains with 64).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.classes import NUM_CLASSES
from . import register
from .backbones.vgg import FC6_KERNEL, FC_CHANNELS, features_state_dict, linear_to_conv_weight
from .blocks import kaiming_init_, pad_with_crop, scaled
from .interface import EncoderDecoder, FeatureTap
from .segnet import STRIDE, VGG16_STAGES, DecoderStage, Encoder, PoolingIndices, stage_taps

#: Smallest padded input side with the paper's fc6: pool5 must be at least 7 x 7.
MIN_SIZE = FC6_KERNEL * STRIDE


class Deconvolution(nn.Sequential):
    """Transposed convolution -> batch norm -> ReLU (Sec. 3.2.2), a deconvolution layer of
    Table 1. 3x3 with padding 1 keeps the size; no bias, the norm's shift replaces it."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size, padding=padding, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ConvolutionNetwork(Encoder):
    """VGG16 with batch norm (:class:`~segedu.models.segnet.Encoder`), then fc6 and fc7 as
    convolutions, each followed by batch norm and ReLU; ``forward`` returns fc7 and the five
    stages' switches.

    ``from_torchvision`` takes torchvision's ``vgg16_bn``: the 13 convolutions with their norms,
    and the classifier's fc6/fc7 reshaped into convolutions (as the paper initialises from VGG16).
    The norms after fc6 and fc7 have no ImageNet counterpart and keep their initial values.
    """

    def __init__(self, width: float = 1.0, fc6_padding: int = 0) -> None:
        super().__init__(width)
        fc_channels = scaled(FC_CHANNELS, width)
        self.fc_channels = fc_channels
        self.fc6 = nn.Sequential(nn.Conv2d(self.stage_channels[-1], fc_channels, FC6_KERNEL, padding=fc6_padding),
                                 nn.BatchNorm2d(fc_channels), nn.ReLU(inplace=True))
        self.fc7 = nn.Sequential(nn.Conv2d(fc_channels, fc_channels, 1),
                                 nn.BatchNorm2d(fc_channels), nn.ReLU(inplace=True))
        for layer in (self.fc6, self.fc7):  # as the VGG convolutions
            kaiming_init_(layer, zero_bias=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[PoolingIndices]]:
        x, switches = super().forward(x)
        return self.fc7(self.fc6(x)), switches

    def from_torchvision(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        converted = features_state_dict(state_dict)
        for name, source, kernel_size in (("fc6", "classifier.0", FC6_KERNEL), ("fc7", "classifier.3", 1)):
            if f"{source}.weight" not in state_dict:
                continue  # load_imagenet reports the missing keys
            weight = state_dict[f"{source}.weight"]
            converted[f"{name}.0.weight"] = linear_to_conv_weight(weight, weight.shape[1] // kernel_size**2,
                                                                  kernel_size)
            converted[f"{name}.0.bias"] = state_dict[f"{source}.bias"]
        converted.update({key: value for key, value in self.state_dict().items()
                          if key.startswith(("fc6.1.", "fc7.1."))})
        return converted


class DeconvolutionNetwork(nn.Module):
    """deconv-fc6, then five :class:`~segedu.models.segnet.DecoderStage`\\ s of unpooling and 3x3
    :class:`Deconvolution` layers, the deepest first.

    Stage k mirrors VGG stage k: as many layers as it has convolutions, the last narrowing to the
    stage below (deconv4_3: 512 -> 256, ...); stage 1 stays at 64 (deconv1_1, deconv1_2).
    """

    def __init__(self, channels: list[int], fc_channels: int, fc6_padding: int = 0) -> None:
        super().__init__()
        self.fc6_deconv = Deconvolution(fc_channels, channels[-1], FC6_KERNEL, padding=fc6_padding)
        self.stages = nn.ModuleList(
            DecoderStage(channels[stage], channels[max(stage - 1, 0)], VGG16_STAGES[stage][1], layer=Deconvolution)
            for stage in reversed(range(len(VGG16_STAGES))))

    def forward(self, x: torch.Tensor, switches: list[PoolingIndices]) -> torch.Tensor:
        x = self.fc6_deconv(x)
        for stage, pooling in zip(self.stages, reversed(switches)):
            x = stage(x, pooling)
        return x


class DeconvNet(EncoderDecoder):
    """DeconvNet (Fig. 2): :class:`ConvolutionNetwork`, :class:`DeconvolutionNetwork` and a 1x1
    classifier (``seg-score``). ``feature_taps``: pool1..pool5 and fc7. ``pretrained_backbone`` loads
    ImageNet's VGG16 (with batch norm) into the convolution network, fc6 and fc7 from its classifier."""

    encoder_path = "encoder"

    def __init__(self, num_classes: int = NUM_CLASSES, *, width: float = 1.0, pad_fc6: bool = False) -> None:
        super().__init__()
        self.pad_fc6 = pad_fc6
        fc6_padding = FC6_KERNEL // 2 if pad_fc6 else 0
        self.encoder = ConvolutionNetwork(width, fc6_padding)
        self.decoder = DeconvolutionNetwork(self.encoder.stage_channels, self.encoder.fc_channels, fc6_padding)
        self.classifier = nn.Conv2d(self.encoder.stage_channels[0], num_classes, 1)

    @property
    def feature_taps(self) -> dict[str, FeatureTap]:
        return {**stage_taps(self.encoder), "fc7": FeatureTap("encoder.fc7", self.encoder.fc_channels)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # bottom/right zero padding to a multiple of 32 and, for the unpadded fc6, to 224 at least
        x, crop = pad_with_crop(x, STRIDE, min_size=0 if self.pad_fc6 else MIN_SIZE)
        x, switches = self.encoder(x)
        return crop(self.classifier(self.decoder(x, switches)))


@register("deconvnet")
def deconvnet(num_classes: int = NUM_CLASSES, *, width: float = 1.0, pad_fc6: bool = False) -> DeconvNet:
    """DeconvNet on VGG16 with batch norm (Noh et al., ICCV 2015).

    Args:
        num_classes: output channels.
        width: channel multiplier (1.0 = the paper).
        pad_fc6: pad fc6 and deconv-fc6 by 3 so that pool5 keeps its size, instead of padding small
            images up to 224 x 224 for the paper's unpadded 7x7 fc6 (see the module docstring).
    """
    return DeconvNet(num_classes, width=width, pad_fc6=pad_fc6)
