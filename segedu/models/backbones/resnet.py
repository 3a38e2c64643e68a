"""ResNet-50/101 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Table 1)
as a segmentation backbone, in torchvision's layout so its ImageNet state dict loads unchanged. At
the paper's width it is torchvision's own network; at the narrower widths the course trains on a
CPU, the same stages of torchvision's ``Bottleneck`` with every channel count scaled.

Like torchvision (and unlike the paper's Fig. 5), a bottleneck strides in its 3x3 convolution
("ResNet v1.5"). ``output_stride`` 16 or 8 replaces the stride of the last one or two stages by
dilation -- the atrous trick of DeepLab (Chen et al., TPAMI 2018, Sec. 3.1), torchvision's
``replace_stride_with_dilation=[False, False, True]`` or ``[False, True, True]`` -- so the
features stay at 1/16 or 1/8 of the input while each layer keeps the field of view it was
trained with.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models import ResNet50_Weights, ResNet101_Weights, WeightsEnum
# torchvision's own bottleneck (1x1 reduce -> 3x3 with stride and dilation -> 1x1 expand x4, plus the
# shortcut, Fig. 5 right): its names are the ImageNet state dict's, and it is not re-typed here
from torchvision.models.resnet import Bottleneck

from ...errors import SegeduError
from ..blocks import kaiming_init_, scaled

#: Table 1: bottleneck blocks per stage (conv2_x..conv5_x, torchvision's layer1..layer4).
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
#: Which of layer2..layer4 trade their stride for dilation, per output stride.
DILATE = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}
#: Bottleneck inner widths of layer1..layer4 (the paper's 64, 128, 256, 512; outputs are 4x).
PLANES = (64, 128, 256, 512)
#: The ImageNet weights torchvision's segmentation builders start from.
IMAGENET_WEIGHTS = {50: ResNet50_Weights.IMAGENET1K_V1, 101: ResNet101_Weights.IMAGENET1K_V1}


def _stage(in_channels: int, planes: int, blocks: int, stride: int, dilation: int,
           dilate: bool) -> tuple[nn.Sequential, int]:
    """One stage as torchvision's ``ResNet._make_layer`` builds it; returns it and its dilation.

    A dilated stage keeps stride 1 and multiplies the dilation by the stride it gave up; its first
    block still uses the previous dilation, so the weights line up with the undilated network's.
    """
    previous_dilation = dilation
    if dilate:
        dilation *= stride
        stride = 1
    out_channels = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(out_channels))
    layers = [Bottleneck(in_channels, planes, stride=stride, dilation=previous_dilation, downsample=downsample)]
    layers += [Bottleneck(out_channels, planes, dilation=dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers), dilation


class ResNet(nn.Module):
    """ResNet-50/101 without its classifier, returning ``{"layer1": ..., ..., "layer4": ...}``
    (strides 4, 8, 16, 32 of the input, or 8 for layer3/layer4 at ``output_stride=8``).

    Args:
        depth: 50 or 101.
        width: channel multiplier (1.0 = the paper's; layer4 then has 2048 channels).
        output_stride: 32 (classification), 16 or 8 (dilated, for dense prediction).

    ``channels`` maps each returned feature name to its channel count.
    """

    def __init__(self, depth: int = 50, *, width: float = 1.0, output_stride: int = 32) -> None:
        super().__init__()
        if depth not in BLOCKS or output_stride not in DILATE:
            raise SegeduError(f"ResNet depth {depth} with output_stride {output_stride} does not exist; "
                              f"choose depth from {sorted(BLOCKS)} and output_stride from {sorted(DILATE)}.")
        self.depth = depth
        self.width = width
        planes = [scaled(p, width) for p in PLANES]
        self.channels = {f"layer{i}": p * Bottleneck.expansion for i, p in enumerate(planes, 1)}
        if width == 1.0:
            self._adopt_torchvision(depth, output_stride)
            return
        stem_channels = scaled(64, width)
        self.conv1 = nn.Conv2d(3, stem_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        blocks, dilate = BLOCKS[depth], (False, *DILATE[output_stride])
        channels, dilation = stem_channels, 1
        self.layer1, dilation = _stage(channels, planes[0], blocks[0], 1, dilation, dilate[0])
        channels = planes[0] * Bottleneck.expansion
        self.layer2, dilation = _stage(channels, planes[1], blocks[1], 2, dilation, dilate[1])
        channels = planes[1] * Bottleneck.expansion
        self.layer3, dilation = _stage(channels, planes[2], blocks[2], 2, dilation, dilate[2])
        channels = planes[2] * Bottleneck.expansion
        self.layer4, dilation = _stage(channels, planes[3], blocks[3], 2, dilation, dilate[3])

        # torchvision's ResNet initialisation
        kaiming_init_(self, zero_bias=False)

    def _adopt_torchvision(self, depth: int, output_stride: int) -> None:
        """At the paper's width the network is torchvision's own ``resnet50``/``resnet101`` (built,
        and initialised, by torchvision; the classifier ``avgpool``/``fc`` dropped); the narrower
        widths above follow its ``_make_layer`` with scaled channels, which torchvision cannot build."""
        net = torchvision.models.resnet.ResNet(Bottleneck, list(BLOCKS[depth]),
                                               replace_stride_with_dilation=list(DILATE[output_stride]))
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(net, name))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = {}
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            features[name] = x
        return features

    @property
    def imagenet_weights(self) -> WeightsEnum:
        """torchvision's ImageNet weights for this depth."""
        return IMAGENET_WEIGHTS[self.depth]

    def from_torchvision(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """torchvision's ``resnet50``/``resnet101`` state dict without its ImageNet classifier ``fc``."""
        return {key: value for key, value in state_dict.items() if not key.startswith("fc.")}
