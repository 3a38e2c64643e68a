"""The pretext network that pretrains the course's encoders (:mod:`segedu.models.course`).

ImageNet pretraining teaches an encoder features (edges, textures, parts) that a segmentation
network would otherwise have to learn from its few hundred labelled images. The course's
stand-in trains the same encoders on a related task with far more data: segmenting a large
synthetic corpus, generated with seeds that no split of the book uses. The head is deliberately
light -- a 1x1 score layer on three feature maps of strides 8, 16 and 32, upsampled and summed as
in FCN-8s (Long et al. 2015, Sec. 4.2) -- so that what is learned has to live in the encoder, which
is all that is kept (:meth:`PretextNet.encoder_state_dict`).

The encoders are built exactly as the course's models build them, in torchvision's layout:
VGG-16 with batch norm and its fc6/fc7 as convolutions (``fc6`` padded by 3 here so that small
images keep a map; the weights are the same shape either way), ResNet-50/101 at output stride 32,
and HRNetV2-W18, whose own HRNetV2 head is already light (its last classifier is dropped).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.classes import NUM_CLASSES
from ..errors import SegeduError
from . import course
from .backbones import ResNet, VGG16
from .blocks import bilinear_upsample
from .hrnet import HRNetV2

#: the name the trainer and ``models.create`` build this network by
MODEL = "segedu.models.pretext:pretext"
#: the feature maps the light head reads, per encoder family
TAPS = {"vgg": ("pool3", "pool4", "fc7"), "resnet": ("layer2", "layer3", "layer4")}


class PretextNet(nn.Module):
    """An encoder of :data:`segedu.models.course.ENCODERS` and a light FCN-8s-style score head."""

    def __init__(self, encoder: str, num_classes: int = NUM_CLASSES, *, width: float = 1.0) -> None:
        super().__init__()
        if encoder not in course.ENCODERS:
            raise SegeduError(f"the pretext has no encoder {encoder!r}; choose one of {', '.join(course.ENCODERS)}.")
        self.encoder_name, self.width = encoder, width
        if encoder == "hrnetv2_w18":
            self.backbone = HRNetV2(num_classes, 18, width=width)
            self.scores = None
            return
        if encoder == "vgg16_bn":
            self.backbone = VGG16(width, batch_norm=True, fully_convolutional=True, fc6_padding=3)
            self.taps = TAPS["vgg"]
        else:
            self.backbone = ResNet(int(encoder.removeprefix("resnet")), width=width)
            self.taps = TAPS["resnet"]
        self.scores = nn.ModuleList(nn.Conv2d(self.backbone.channels[t], num_classes, 1) for t in self.taps)

    @property
    def head(self) -> str:
        """The pretext's head in words, for the model card."""
        if self.scores is None:
            return "HRNetV2's own head (the concatenated streams, 1x1 convolutions), whose last classifier is dropped"
        return "a light FCN-8s-style head (1x1 scores on three encoder stages, summed), then dropped"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scores is None:
            return self.backbone(x)
        features = self.backbone(x)
        finest = features[self.taps[0]].shape[-2:]
        total = sum(bilinear_upsample(score(features[t]), finest) for score, t in zip(self.scores, self.taps))
        return bilinear_upsample(total, x.shape[-2:])

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's weights in torchvision's keys (what the course ships): VGG's fc6/fc7
        convolutions back in the classifier's fully connected layout (``classifier.0``/``.3``),
        ResNets as they are, HRNet without its last classifier convolution."""
        state = {k: v.detach().clone() for k, v in self.backbone.state_dict().items()}
        if self.encoder_name == "hrnetv2_w18":
            return {k: v for k, v in state.items() if not k.startswith("last_layer.3.")}
        if self.encoder_name == "vgg16_bn":
            for conv, linear in (("fc6.0", "classifier.0"), ("fc7.0", "classifier.3")):
                weight = state.pop(f"{conv}.weight")
                state[f"{linear}.weight"] = weight.reshape(weight.shape[0], -1)
                state[f"{linear}.bias"] = state.pop(f"{conv}.bias")
        return state


def pretext(num_classes: int = NUM_CLASSES, *, encoder: str = "resnet50", width: float = 1.0,
            pretrained_backbone: bool | str = False) -> PretextNet:
    """The pretext network of ``segedu pretrain`` (see the module docstring). Not in the registry,
    which lists the course's architectures: the trainer builds it by its import path,
    :data:`MODEL` (``models.create(MODEL, encoder=...)``).

    Args:
        num_classes: output channels.
        encoder: one of :data:`segedu.models.course.ENCODERS`.
        width: channel multiplier (1.0 = the paper's encoder).
        pretrained_backbone: must be False: this network is what makes the course's weights.
    """
    if pretrained_backbone:
        raise SegeduError("the pretext network trains its encoder from scratch; use pretrained_backbone=False.")
    return PretextNet(encoder, num_classes, width=width)
