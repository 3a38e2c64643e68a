"""HRNetV2: Wang, Sun, Cheng, Jiang, Deng, Zhao, Liu, Mu, Tan, Wang, Liu & Xiao, "Deep
High-Resolution Representation Learning for Visual Recognition", TPAMI 2020 (arXiv:1908.07919);
first as Sun, Zhao, Jiang, Cheng, Xiao, Liu, Mu, Wang, Liu & Wang, "High-Resolution Representations
for Labeling Pixels and Regions", arXiv:1904.04514, 2019.

The network keeps a high-resolution stream from start to end and adds lower-resolution streams
in parallel (Sec. 3, Fig. 2):

* stem -- two 3x3 stride-2 convolutions (to 1/4 of the input);
* stage 1 -- four bottleneck residual units of width 64 (256 channels out);
* stages 2-4 -- 2, 3 and 4 parallel branches at 1/4, 1/8, 1/16, 1/32 with widths C, 2C, 4C, 8C
  (C = 18 for W18, 48 for W48), made of 1, 4 and 3 :class:`HighResolutionModule` s; each module
  runs 4 basic residual blocks per branch and then a :class:`FuseLayer`, the repeated
  multi-resolution fusion (Sec. 3, Fig. 3): strided 3x3 convolutions carry a higher resolution
  down, 1x1 convolutions plus bilinear upsampling carry a lower one up, and each output is the
  sum of all inputs, then ReLU;
* :class:`Transition` layers between stages add the new, lower-resolution branch with a strided
  3x3 convolution of the lowest existing one;
* HRNetV2 representation head (Sec. 3, Fig. 4(b)) -- upsample the four outputs to the highest
  resolution, concatenate (15C channels), 1x1 conv-BN-ReLU mixing them, 1x1 classifier; the 1/4
  scores are upsampled bilinearly to the input size.

Stride-2 convolutions with padding 1 make every size ceil(n / 2), and new branches are always made
from the branch above, so all maps of one branch agree for any H x W. Attribute names follow the
authors' ``seg_hrnet.py`` (``conv1``, ``layer1``, ``transition1``, ``stage2``, ``branches``,
``fuse_layers``, ``last_layer``). Their code upsamples with ``align_corners=True``; segedu uses
False throughout.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from ..data.classes import NUM_CLASSES
from ..errors import SegeduError
from . import course, register
from .blocks import ConvBNReLU, bilinear_upsample, kaiming_init_, scaled
from .interface import EncoderDecoder, FeatureTap

#: Stage 1: four bottleneck residual units of inner width 64 (256 channels out).
STAGE1_BLOCKS, STAGE1_PLANES = 4, 64
#: Stages 2-4: number of high-resolution modules (1, 4, 3); branches are 2, 3, 4.
MODULES_PER_STAGE = (1, 4, 3)
#: Basic residual blocks per branch in every module.
BLOCKS_PER_BRANCH = 4
#: Width C of the highest-resolution branch per variant.
WIDTHS = {"w18": 18, "w48": 48}


class FuseLayer(nn.ModuleList):
    """Multi-resolution fusion (Fig. 3): output i is ReLU(sum over inputs j of f_ij(x_j)) with

    * j = i: the identity (``None``);
    * j < i (higher resolution to lower): i - j strided 3x3 convolutions, the last to branch i's
      channels without ReLU, the others keeping branch j's channels with BN-ReLU;
    * j > i (lower resolution to higher): a 1x1 convolution to branch i's channels and BN, then
      bilinear upsampling to branch i's size.

    Row i of this list holds f_i0 ... f_i(n-1).
    """

    def __init__(self, channels: list[int]) -> None:
        rows = []
        for i, out_channels in enumerate(channels):
            row: list[nn.Module | None] = []
            for j, in_channels in enumerate(channels):
                if j > i:
                    row.append(nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                             nn.BatchNorm2d(out_channels)))
                elif j == i:
                    row.append(None)
                else:
                    steps = [ConvBNReLU(in_channels, in_channels, 3, stride=2) for _ in range(i - j - 1)]
                    steps.append(nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, 2, 1, bias=False),
                                               nn.BatchNorm2d(out_channels)))
                    row.append(nn.Sequential(*steps))
            rows.append(nn.ModuleList(row))
        super().__init__(rows)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        fused = []
        for i, row in enumerate(self):
            total = None
            for j, (layer, x) in enumerate(zip(row, xs)):
                if layer is not None:
                    x = layer(x)
                    if j > i:
                        x = bilinear_upsample(x, xs[i].shape[-2:])
                total = x if total is None else total + x
            fused.append(F.relu(total))
        return fused


class HighResolutionModule(nn.Module):
    """One module of stages 2-4: ``BLOCKS_PER_BRANCH`` basic blocks on every branch, then fusion."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c, c) for _ in range(BLOCKS_PER_BRANCH))) for c in channels)
        self.fuse_layers = FuseLayer(channels)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.fuse_layers([branch(x) for branch, x in zip(self.branches, xs)])


class Transition(nn.ModuleList):
    """Between stages: a branch whose width changes gets a 3x3 conv-BN-ReLU (only stage 1's 256
    channels to C), an unchanged one passes (``None``), and the new branch is a stride-2 3x3
    conv-BN-ReLU of the lowest-resolution existing branch."""

    def __init__(self, in_channels: list[int], out_channels: list[int]) -> None:
        layers: list[nn.Module | None] = []
        for i, channels in enumerate(out_channels):
            if i < len(in_channels):
                layers.append(None if channels == in_channels[i] else ConvBNReLU(in_channels[i], channels, 3))
            else:
                # wrapped in a Sequential as in the authors' code (one stride-2 step per new level)
                layers.append(nn.Sequential(ConvBNReLU(in_channels[-1], channels, 3, stride=2)))
        super().__init__(layers)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [layer(xs[min(i, len(xs) - 1)]) if layer is not None else xs[i]
                for i, layer in enumerate(self)]


class HRNetV2(EncoderDecoder):
    """HRNetV2 for segmentation: the four-stage high-resolution network and the HRNetV2 head.

    Args:
        num_classes: output channels.
        base_channels: C, the width of the highest-resolution branch (18 or 48 in the paper).
        width: channel multiplier applied to the stem, stage 1 and C.

    ``channels`` lists the widths of the four branches (C, 2C, 4C, 8C); ``variant`` is the paper's
    name for C, ``"w18"`` or ``"w48"``. ``encoder`` is None (the network up to stage 4 is a dozen
    modules; the course's weights load into all but ``last_layer``); ``feature_taps`` are stage 4's
    four outputs, ``branch1`` (1/4) .. ``branch4`` (1/32). torchvision has no ImageNet HRNet, so
    ``imagenet_weights_available`` is False.
    """

    encoder_path = None

    def __init__(self, num_classes: int = NUM_CLASSES, base_channels: int = 48, *, width: float = 1.0) -> None:
        super().__init__()
        self.variant, self.width = f"w{base_channels}", width
        stem = scaled(64, width)
        # stem: two stride-2 3x3 convolutions, 1/4 resolution
        self.conv1 = nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.conv2 = nn.Conv2d(stem, stem, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)

        planes = scaled(STAGE1_PLANES, width)
        stage1_channels = planes * Bottleneck.expansion
        downsample = nn.Sequential(nn.Conv2d(stem, stage1_channels, 1, bias=False), nn.BatchNorm2d(stage1_channels))
        self.layer1 = nn.Sequential(Bottleneck(stem, planes, downsample=downsample),
                                    *(Bottleneck(stage1_channels, planes) for _ in range(STAGE1_BLOCKS - 1)))

        c = scaled(base_channels, width)
        self.channels = [c, 2 * c, 4 * c, 8 * c]
        previous = [stage1_channels]
        for stage, modules in enumerate(MODULES_PER_STAGE, start=2):
            current = self.channels[:stage]
            setattr(self, f"transition{stage - 1}", Transition(previous, current))
            setattr(self, f"stage{stage}", nn.Sequential(*(HighResolutionModule(current) for _ in range(modules))))
            previous = current

        total = sum(self.channels)
        self.last_layer = nn.Sequential(nn.Conv2d(total, total, 1), nn.BatchNorm2d(total), nn.ReLU(inplace=True),
                                        nn.Conv2d(total, num_classes, 1))

        # He initialisation, as torchvision's ResNets. The authors' init_weights draws N(0, 0.001), but
        # their segmentation nets then load ImageNet weights over it; torchvision has none for HRNet,
        # so here the net trains from its initialisation, and with weights that small in front of
        # batch norm an Adam step is as large as the weights themselves (the effective step of a
        # scale-invariant weight grows as 1 / |w|^2): in chapter 10's cpu budget such a net still
        # predicted only background after 3 epochs, while He-initialised it learns from epoch 1.
        kaiming_init_(self, zero_bias=False)

    @property
    def feature_taps(self) -> dict[str, FeatureTap]:
        return {f"branch{i + 1}": FeatureTap("stage4", channels, i) for i, channels in enumerate(self.channels)}

    @property
    def course_encoder(self) -> str | None:
        """``hrnetv2_<variant>`` where the course pretrains this variant (a whole network of its own,
        :data:`segedu.models.course.ENCODERS`), else None."""
        encoder = f"hrnetv2_{self.variant}"
        return encoder if encoder in course.ENCODERS else None

    @property
    def encoder_width(self) -> float:
        """The whole network is the pretrained part: its own width."""
        return self.width

    def load_pretrained(self, source: bool | str | os.PathLike) -> None:
        """Load the course's weights of this variant (``source="course"``) into everything but the last
        classifier convolution, whose outputs are this model's classes; SegeduError for anything else."""
        encoder = self.course_encoder
        if source != "course" or encoder is None:
            raise SegeduError(f"hrnetv2_{self.variant} has no pretrained_backbone {source!r}: torchvision has no "
                              "ImageNet HRNet weights, and the course pretrains HRNetV2-W18 only (\"course\").")
        missing, unexpected = self.load_state_dict(course.state_dict(encoder, self.width), strict=False)
        if unexpected or any(not key.startswith("last_layer.3.") for key in missing):
            raise SegeduError(f"the course's {encoder} weights do not fit this network (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}); regenerate them with segedu pretrain.")

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four outputs of stage 4, at 1/4, 1/8, 1/16 and 1/32 of the input (rounded up)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for stage in (2, 3, 4):
            xs = getattr(self, f"stage{stage}")(getattr(self, f"transition{stage - 1}")(xs))
        return xs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = self.features(x)
        size = xs[0].shape[-2:]
        # HRNetV2: every resolution upsampled to the highest and concatenated (Fig. 4(b))
        representation = torch.cat([xs[0], *(bilinear_upsample(y, size) for y in xs[1:])], dim=1)
        return bilinear_upsample(self.last_layer(representation), x.shape[-2:])


@register("hrnetv2_w18")
def hrnetv2_w18(num_classes: int = NUM_CLASSES, *, width: float = 1.0) -> HRNetV2:
    """HRNetV2-W18 (C = 18): branches of 18, 36, 72, 144 channels.

    Args:
        num_classes: output channels.
        width: channel multiplier (1.0 = the paper).
    """
    return HRNetV2(num_classes, WIDTHS["w18"], width=width)


@register("hrnetv2_w48")
def hrnetv2_w48(num_classes: int = NUM_CLASSES, *, width: float = 1.0) -> HRNetV2:
    """HRNetV2-W48 (C = 48): branches of 48, 96, 192, 384 channels; arguments as :func:`hrnetv2_w18`."""
    return HRNetV2(num_classes, WIDTHS["w48"], width=width)
