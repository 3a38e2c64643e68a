"""DeepLab v1, the LargeFOV variant: Chen, Papandreou, Kokkinos, Murphy & Yuille, "Semantic Image
Segmentation with Deep Convolutional Nets and Fully Connected CRFs", ICLR 2015 (arXiv:1412.7062),
Sec. 3.1 and 4, Table 1 ("DeepLab-LargeFOV", 20.5M parameters).

VGG16 made dense without losing its field of view (Sec. 3.1, the "hole algorithm", i.e. atrous
convolution):

* pool4 and pool5 keep stride 1, so the scores come at output stride 8 instead of 32;
* the three conv5 layers, which followed a stride-2 pooling, are dilated by 2 to see what they saw
  before;
* fc6 becomes a 3x3 convolution with atrous rate 12 and 1024 channels: it spans
  (3 - 1) * 12 + 1 = 25 cells, the field of view (224 pixels in Table 1) of the ImageNet 7x7 fc6 at
  rate 4 with 4096 channels, with 15% of the parameters (20.5M against 134.3M for the whole
  net); fc7 is 1x1 with 1024 channels, fc8 the class scores;
* the scores are upsampled bilinearly to the image size (Sec. 3.1, "we simply bilinearly
  interpolate"); the fully connected CRF of Sec. 4 is post-processing and not part of the network.

All five poolings are 3x3 with padding 1, as in the authors' released prototxt (strides 2, 2, 2,
1, 1), so any H x W works: the scores are ceil(H/8) x ceil(W/8) before upsampling. The layers keep
torchvision's ``vgg16`` ``features`` layout, so its ImageNet weights load into the convolutions.
fc6/fc7 start fresh by default. ``decimated_fc=True`` instead starts them as the authors did
(Sec. 3.1, "we spatially subsample (by simple decimation) the first FC layer"): VGG16's fc6, a 7x7
kernel over pool5, keeps every third tap in each direction (3x3; rate 12 at output stride 8 is its
rate 4 times 3) and every fourth of its 4096 filters (1024), and fc7 the same filters of its rows
and columns. On the course's data and encoder the decimated start did not help in 240 steps (0.031
mIoU below the fresh one over three seeds, p = 0.19; benchmarks/RESULTS.md), so the book keeps
the fresh one.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.classes import NUM_CLASSES
from ..errors import SegeduError
from . import register
from .backbones import VGG16, load_torchvision, torchvision_state_dict
from .backbones.vgg import FC6_KERNEL, linear_to_conv_weight
from .blocks import bilinear_upsample, kaiming_init_, scaled
from .interface import EncoderDecoder

#: Strides of pool1..pool5 (Sec. 3.1: "we skip subsampling after the last two max-pooling layers").
POOL_STRIDES = (2, 2, 2, 1, 1)
#: conv5 follows the first skipped subsampling: rate 2 (Sec. 3.1: "2x in the last three
#: convolutional layers").
CONV5_DILATION = 2
#: fc6 of LargeFOV: "kernel size 3x3, input stride = 12", 1024 channels (Table 1).
FC6_RATE = 12
FC_CHANNELS = 1024
OUTPUT_STRIDE = 8
#: Decimation of VGG16's 7x7 fc6 to LargeFOV's 3x3: every third tap (rows and columns 0, 3, 6).
FC6_TAP_STEP = 3


def largefov_vgg16(width: float = 1.0, batch_norm: bool = False) -> VGG16:
    """torchvision's VGG16 layout with DeepLab's poolings and atrous conv5 (no parameter changes)."""
    backbone = VGG16(width, batch_norm=batch_norm)
    pools = [index for index, layer in enumerate(backbone.features) if isinstance(layer, nn.MaxPool2d)]
    for index, stride in zip(pools, POOL_STRIDES):
        backbone.features[index] = nn.MaxPool2d(3, stride=stride, padding=1)
    for layer in backbone.features[pools[3] + 1:pools[4]]:
        if isinstance(layer, nn.Conv2d):
            layer.dilation = layer.padding = (CONV5_DILATION, CONV5_DILATION)
    return backbone


class DeepLabLargeFOV(EncoderDecoder):
    """DeepLab-LargeFOV: atrous VGG16 (``backbone``, output stride 8), ``fc6`` (3x3, rate 12,
    1024), ``fc7`` (1x1, 1024), each with ReLU and dropout 0.5, and ``fc8`` (class scores).
    ``encoder`` is ``backbone``; ``feature_taps`` its pool1..pool5. ``pretrained_backbone`` loads
    ImageNet's VGG16 convolutions (vgg16_bn's with ``batch_norm``); fc6 and fc7 start fresh, or with
    ``decimated_fc`` from the same weights' fc6 and fc7, decimated as in the paper."""

    def __init__(self, num_classes: int = NUM_CLASSES, *, width: float = 1.0, batch_norm: bool = False,
                 decimated_fc: bool = False) -> None:
        super().__init__()
        self.decimated_fc = decimated_fc
        self.backbone = largefov_vgg16(width, batch_norm)
        channels, fc_channels = self.backbone.channels["pool5"], scaled(FC_CHANNELS, width)
        self.fc6 = nn.Sequential(nn.Conv2d(channels, fc_channels, 3, padding=FC6_RATE, dilation=FC6_RATE),
                                 nn.ReLU(inplace=True), nn.Dropout(0.5))
        self.fc7 = nn.Sequential(nn.Conv2d(fc_channels, fc_channels, 1), nn.ReLU(inplace=True), nn.Dropout(0.5))
        self.fc8 = nn.Conv2d(fc_channels, num_classes, 1)
        for layer in (self.fc6, self.fc7):  # as the VGG16 convolutions
            kaiming_init_(layer, zero_bias=True)
        # the prototxt's Gaussian(0.01) for the new score layer
        nn.init.normal_(self.fc8.weight, std=0.01)
        nn.init.zeros_(self.fc8.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.fc8(self.fc7(self.fc6(self.backbone(x)["pool5"])))
        return bilinear_upsample(scores, x.shape[-2:])

    def load_pretrained(self, source) -> None:
        """The pretrained convolutions (every VGG model's), and with ``decimated_fc`` also fc6 and fc7
        decimated from the same weights' classifier (:meth:`decimate_fc`), read once for both."""
        if not self.decimated_fc:
            return super().load_pretrained(source)
        state_dict, where, weights = torchvision_state_dict(self.backbone, source)
        load_torchvision(self.backbone, state_dict, where, weights)
        self.decimate_fc(state_dict, where)

    @torch.no_grad()
    def decimate_fc(self, state_dict: dict[str, torch.Tensor], where: str = "the state dict") -> None:
        """Set fc6 and fc7 from a torchvision VGG16 state dict's ``classifier.0`` (fc6, 7x7 over pool5)
        and ``classifier.3`` (fc7): every third tap of the 7x7 kernel, and every k-th filter where VGG's
        fully connected layers have k times LargeFOV's channels (k = 4 at any width)."""
        fc6, fc7 = self.fc6[0], self.fc7[0]
        try:
            vgg_fc6, vgg_fc7 = state_dict["classifier.0.weight"], state_dict["classifier.3.weight"]
            vgg_b6, vgg_b7 = state_dict["classifier.0.bias"], state_dict["classifier.3.bias"]
        except KeyError as error:
            raise SegeduError(f"{where}: no VGG16 classifier ({error.args[0]} missing) to decimate fc6/fc7 "
                              "from; use decimated_fc=False.") from None
        step = vgg_fc6.shape[0] // fc6.out_channels
        if (step * fc6.out_channels != vgg_fc6.shape[0] or vgg_fc6.shape[1] != fc6.in_channels * FC6_KERNEL**2
                or tuple(vgg_fc7.shape) != (vgg_fc6.shape[0],) * 2):
            raise SegeduError(f"{where}: fc6 {tuple(vgg_fc6.shape)} and fc7 {tuple(vgg_fc7.shape)} do not "
                              f"decimate to LargeFOV's fc6 ({fc6.out_channels} filters over {fc6.in_channels} "
                              "channels); the weights are of another width.")
        kernel = linear_to_conv_weight(vgg_fc6, fc6.in_channels, FC6_KERNEL)
        fc6.weight.copy_(kernel[::step, :, ::FC6_TAP_STEP, ::FC6_TAP_STEP])
        fc6.bias.copy_(vgg_b6[::step])
        fc7.weight.copy_(vgg_fc7[::step, ::step, None, None])
        fc7.bias.copy_(vgg_b7[::step])


@register("deeplabv1")
def deeplabv1(num_classes: int = NUM_CLASSES, *, width: float = 1.0, batch_norm: bool = False,
              decimated_fc: bool = False, pretrained_backbone=False) -> DeepLabLargeFOV:
    """DeepLab v1, LargeFOV (VGG16, output stride 8).

    Args:
        num_classes: output channels.
        width: channel multiplier (1.0 = the paper).
        batch_norm: batch norm after every VGG convolution (torchvision's vgg16_bn layout; not in the
            paper, which starts from ImageNet weights; it lets the net train from scratch).
        decimated_fc: start fc6 and fc7 from the pretrained VGG16's, decimated as in the paper
            (needs ``pretrained_backbone``); False: they start fresh.
        pretrained_backbone: the registry's (``"course"``, ``"imagenet"``, a file, or False).
    """
    # On the meta device a model is only built to be asked about its encoder
    # (segedu.experiments.encoders), and no weights are loaded into it, so nothing is refused there.
    if decimated_fc and not pretrained_backbone and torch.empty(0).device.type != "meta":
        raise SegeduError("decimated_fc=True decimates the pretrained VGG16's fc6/fc7, so it needs "
                          "pretrained_backbone (\"course\", \"imagenet\" or a file); without one, drop decimated_fc.")
    model = DeepLabLargeFOV(num_classes, width=width, batch_norm=batch_norm, decimated_fc=decimated_fc)
    if pretrained_backbone:
        model.load_pretrained(pretrained_backbone)
    return model
