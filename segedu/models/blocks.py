"""Layers that several architectures share, defined once.

* ``ConvBNReLU``: the conv -> batch norm -> ReLU unit of every modern encoder and head.
* ``bilinear_upsample``: resize logits or features to a given size (torchvision's heads do this
  to bring their output stride 8 or 16 logits back to the input size).
* ``bilinear_kernel`` / ``bilinear_conv_transpose``: a transposed convolution whose filter starts as
  bilinear interpolation -- FCN's "upsampling is backwards strided convolution" (Long et al., CVPR
  2015, Sec. 3.3), initialised as in the authors' ``surgery.py``; it runs in float32 under
  autocast (``FullPrecisionConvTranspose2d``), where a CPU's bf16 kernels for it are slow.
* ``crop_like``: Caffe's Crop layer, which FCN uses to align a skip or the final scores with a
  reference (Sec. 4.2); ``pad_to_multiple``: pad the bottom/right so every pooling stage divides
  evenly, the modern alternative to FCN's padding of 100; ``pad_with_crop``: that padding and the
  crop that brings the logits back to the input's size, as every model that pads uses them.
* ``SeparableConv2d``: the depthwise separable convolution of Xception and DeepLab v3+.
* ``kaiming_init_``: He et al.'s initialisation of every convolution of a module, as torchvision
  initialises its classifiers.
* ``scaled``: a channel count times the width multiplier (``width=1.0`` is the paper's network,
  ``0.125``-``0.25`` trains on a laptop CPU).
"""
from __future__ import annotations

from collections.abc import Callable

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


class FullPrecisionConvTranspose2d(nn.ConvTranspose2d):
    """A ``ConvTranspose2d`` that always runs in float32, also inside an autocast region.

    FCN's large upsampling kernels (64x64 at stride 32) are about 20 times slower in bf16 than in
    float32 on a CPU (oneDNN, measured in ``benchmarks/book_step_times.py --fast``), while the layer
    is a negligible share of the network's arithmetic; in float32 it costs nothing extra on a GPU.
    Its parameters and state-dict keys are those of ``nn.ConvTranspose2d``.
    """

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        device = x.device.type  # autocast exists only for some device types (not "meta")
        if not (torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)):
            return super().forward(x, output_size)
        with torch.autocast(device, enabled=False):
            return super().forward(x.float(), output_size)


def bilinear_conv_transpose(channels: int, factor: int, padding: int, learnable: bool) -> nn.ConvTranspose2d:
    """A ``factor``-times upsampling ``ConvTranspose2d`` (kernel ``2 * factor``, no bias) that starts
    as bilinear interpolation; ``learnable=False`` freezes it (``requires_grad`` off).

    ``padding = factor // 2`` makes the output exactly ``factor`` times the input and aligned with
    it; ``padding = 0`` is Caffe's layer, whose output is larger and gets cropped.
    """
    kernel_size = 2 * factor
    layer = FullPrecisionConvTranspose2d(channels, channels, kernel_size, stride=factor, padding=padding, bias=False)
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


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "constant", min_size: int = 0) -> torch.Tensor:
    """Pad the bottom and right of (B, C, H, W) so H and W are multiples of ``multiple`` and at
    least ``min_size`` (a network whose deepest layer needs a minimum input, as DeconvNet's 7x7 fc6).

    ``mode`` is ``F.pad``'s: ``"constant"`` pads zeros, what every segedu model does (their outputs,
    and the book's numbers, depend on it); the smp adapter (:class:`~segedu.models.smp_adapter.SmpModel`)
    reflects. torch reflects at most ``size - 1`` pixels, so an image smaller than its padding is
    padded by repeating its edge instead.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = (-max(size, min_size) % multiple + max(0, min_size - size) for size in (height, width))
    if not (pad_h or pad_w):
        return x
    if mode == "reflect" and not (pad_h < height and pad_w < width):
        mode = "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def pad_with_crop(x: torch.Tensor, multiple: int, mode: str = "constant",
                  min_size: int = 0) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``x`` padded at the bottom and right (:func:`pad_to_multiple`, same arguments), and the
    function that crops a map of the padded size back to ``x``'s height and width.

    The padding is all at the bottom/right, so the crop is the top-left window: a model that pads,
    runs and crops gives logits aligned with the input pixel for pixel. Every segedu model that
    pads, and the smp adapter, do it through this one function::

        padded, crop = pad_with_crop(x, 32)
        return crop(self.network(padded))
    """
    height, width = x.shape[-2:]

    def crop(y: torch.Tensor) -> torch.Tensor:
        return y[..., :height, :width]

    return pad_to_multiple(x, multiple, mode, min_size), crop


def kaiming_init_(module: nn.Module, *, zero_bias: bool, distribution: str = "normal", mode: str = "fan_out",
                  layers: tuple[type[nn.Module], ...] = (nn.Conv2d,)) -> nn.Module:
    """He initialisation (He et al., "Delving Deep into Rectifiers", ICCV 2015, Sec. 2.2: variance
    ``2 / fan`` for ReLU) of every ``layers`` instance in ``module``, in ``module.modules()`` order.

    The defaults are torchvision's VGG/ResNet initialisation (normal, ``fan_out``); ``zero_bias``
    zeroes the biases (VGG) or leaves them at PyTorch's default (ResNet's convolutions have none).
    The order matters: the weights are drawn from the global RNG one layer after the other, so a
    model seeded the same way starts from the same weights. Returns ``module``.
    """
    init = {"normal": nn.init.kaiming_normal_, "uniform": nn.init.kaiming_uniform_}.get(distribution)
    if init is None:
        raise ValueError(f"kaiming_init_ distribution must be 'normal' or 'uniform', got {distribution!r}")
    for layer in module.modules():
        if isinstance(layer, layers):
            init(layer.weight, mode=mode, nonlinearity="relu")
            if zero_bias and layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


class SeparableConv2d(nn.Module):
    """Depthwise separable convolution (Chollet, "Xception", CVPR 2017, Sec. 2; DeepLab v3+, Chen et
    al., ECCV 2018, Sec. 3.2 and Fig. 3): a 3x3 depthwise convolution (with ``stride`` and atrous
    ``dilation``), batch norm, then a 1x1 pointwise convolution, batch norm. ``activation=True``
    adds a ReLU after each batch norm (MobileNet's unit; DeepLab v3+'s separable ASPP and decoder);
    ``False`` leaves the ReLU to the caller (Xception's pre-activation blocks).

    Parameter names are timm's (``conv_dw``, ``bn_dw``, ``conv_pw``, ``bn_pw``), so timm's
    ``xception65`` state dict loads into :class:`~segedu.models.backbones.xception.Xception65`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, *, activation: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride,
                                 padding=same_padding(kernel_size, dilation), dilation=dilation,
                                 groups=in_channels, bias=False)
        self.bn_dw = nn.BatchNorm2d(in_channels, eps=eps)
        self.act_dw = nn.ReLU(inplace=True) if activation else nn.Identity()
        self.conv_pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn_pw = nn.BatchNorm2d(out_channels, eps=eps)
        self.act_pw = nn.ReLU(inplace=True) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_dw(self.bn_dw(self.conv_dw(x)))
        return self.act_pw(self.bn_pw(self.conv_pw(x)))


def main_and_aux(features: dict[str, torch.Tensor], head: nn.Module, aux_head: nn.Module | None,
                 size: torch.Size | tuple[int, int], training: bool) -> torch.Tensor | dict[str, torch.Tensor]:
    """The output of a dilated-ResNet model with a head on layer4 and an optional auxiliary head on
    layer3 (FCN-ResNet, DeepLab v3, PSPNet): logits upsampled to ``size``, and in training mode with
    an auxiliary head ``{"out": logits, "aux": aux_logits}`` (torchvision's convention)."""
    out = bilinear_upsample(head(features["layer4"]), size)
    if not training or aux_head is None:
        return out
    return {"out": out, "aux": bilinear_upsample(aux_head(features["layer3"]), size)}
