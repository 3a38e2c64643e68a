"""Layers that several architectures share, defined once.

* ``ConvBNReLU``: the conv -> batch norm -> ReLU unit of every modern encoder and head.
* ``bilinear_upsample``: resize logits or features to a given size (torchvision's heads do this
  to bring their output stride 8 or 16 logits back to the input size).
* ``bilinear_kernel`` / ``bilinear_conv_transpose``: a transposed convolution whose filter starts as
  bilinear interpolation -- FCN's "upsampling is backwards strided convolution" (Long et al., CVPR
  2015, Sec. 3.3), initialised as in the authors' ``surgery.py``.
* ``crop_like``: Caffe's Crop layer, which FCN uses to align a skip or the final scores with a
  reference (Sec. 4.2); ``pad_to_multiple``: pad the bottom/right so every pooling stage divides
  evenly, the modern alternative to FCN's padding of 100.
* ``scaled``: a channel count times the width multiplier (``width=1.0`` is the paper's network,
  ``0.125``-``0.25`` trains on a laptop CPU).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def scaled(channels: int, width: float) -> int:
    """``channels`` times the width multiplier, at least 1."""
    return max(1, round(channels * width))


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps the spatial size of a stride-1 convolution with an odd kernel."""
    return dilation * (kernel_size - 1) // 2


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias: the norm's shift replaces it) -> BatchNorm2d -> ReLU.

    ``padding`` defaults to :func:`same_padding`, so stride 1 keeps the size at any dilation.
    Children are ``0`` conv, ``1`` norm, ``2`` ReLU, as in torchvision's ``Conv2dNormActivation``;
    ``nn.Sequential(*ConvBNReLU(...), ...)`` inlines them where a state-dict layout demands it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, groups: int = 1, padding: int | None = None) -> None:
        if padding is None:
            padding = same_padding(kernel_size, dilation)
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                      dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def bilinear_upsample(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Resize (B, C, h, w) to (B, C, *size) bilinearly (``align_corners=False``, as torchvision)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """(channels, channels, k, k) weights that make ``ConvTranspose2d`` interpolate bilinearly.

    Each channel is upsampled on its own (the filter sits on the diagonal, zero elsewhere), as in
    ``upsample_filt``/``interp`` of the FCN authors' ``surgery.py``: for ``k = 2 * factor`` the
    tent ``(1 - |i - c| / factor)`` per axis, centred at ``c = factor - 0.5``.
    """
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    tent = 1 - (torch.arange(kernel_size, dtype=torch.float32) - centre).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    diagonal = torch.arange(channels)
    weight[diagonal, diagonal] = tent[:, None] * tent[None, :]
    return weight


def bilinear_conv_transpose(channels: int, factor: int, padding: int, learnable: bool) -> nn.ConvTranspose2d:
    """A ``factor``-times upsampling ``ConvTranspose2d`` (kernel ``2 * factor``, no bias) that starts
    as bilinear interpolation; ``learnable=False`` freezes it (``requires_grad`` off).

    ``padding = factor // 2`` makes the output exactly ``factor`` times the input and aligned with
    it; ``padding = 0`` is Caffe's layer, whose output is larger and gets cropped.
    """
    kernel_size = 2 * factor
    layer = nn.ConvTranspose2d(channels, channels, kernel_size, stride=factor, padding=padding, bias=False)
    with torch.no_grad():
        layer.weight.copy_(bilinear_kernel(channels, kernel_size))
    layer.weight.requires_grad_(learnable)
    return layer


def crop_like(x: torch.Tensor, reference: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """The window of ``x`` of ``reference``'s height and width starting at (offset, offset).

    Caffe's Crop layer (axis 2) as FCN uses it: the offset is where the reference's first pixel
    falls in ``x``'s coordinates.
    """
    height, width = reference.shape[-2:]
    if x.shape[-2] < offset + height or x.shape[-1] < offset + width:
        raise ValueError(f"cannot crop {tuple(x.shape[-2:])} at offset {offset} to {(height, width)}")
    return x[..., offset:offset + height, offset:offset + width]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad the bottom and right of (B, C, H, W) so H and W are multiples of ``multiple``."""
    height, width = x.shape[-2:]
    return F.pad(x, (0, -width % multiple, 0, -height % multiple))


def main_and_aux(features: dict[str, torch.Tensor], head: nn.Module, aux_head: nn.Module | None,
                 size: torch.Size | tuple[int, int], training: bool) -> torch.Tensor | dict[str, torch.Tensor]:
    """The output of a dilated-ResNet model with a head on layer4 and an optional auxiliary head on
    layer3 (FCN-ResNet, DeepLab v3, PSPNet): logits upsampled to ``size``, and in training mode with
    an auxiliary head ``{"out": logits, "aux": aux_logits}`` (torchvision's convention)."""
    out = bilinear_upsample(head(features["layer4"]), size)
    if not training or aux_head is None:
        return out
    return {"out": out, "aux": bilinear_upsample(aux_head(features["layer3"]), size)}
