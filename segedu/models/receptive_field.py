"""How much of the image one output pixel can see: the receptive field, computed and measured.

* :func:`theoretical_receptive_field` -- layer arithmetic for a *sequential chain* of convolutions
  and poolings. With r the receptive field and j the jump (the distance in input pixels between
  neighbouring cells of a map), starting from r = j = 1 on the image, a layer with kernel k,
  stride s and dilation d gives

      r <- r + (k - 1) * d * j,        j <- j * s.

  Yu & Koltun's Table 1 (ICLR 2016) is this recursion: the context module's 3x3 layers with
  dilations 1, 1, 2, 4, 8, 16, 1 reach 3, 5, 9, 17, 33, 65, 67 (:func:`receptive_fields` lists
  every step). The formula holds for chains only: a network with branches (ResNet shortcuts,
  HRNet's parallel streams) or global pooling needs the measurement below.
* :func:`empirical_receptive_field` -- backpropagate from the centre output pixel to the input
  and measure the extent of the non-zero input gradient. This works for any network, and for a
  chain it reproduces the arithmetic (the tests check both on hand-computed cases).
"""
from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from . import main_output

#: Layers that act pixel by pixel and leave the receptive field unchanged.
POINTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
             nn.Hardswish, nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.Dropout, nn.Dropout2d,
             nn.Identity)

Layer = nn.Module | tuple[int, ...]


def receptive_fields(model_or_layers: nn.Module | Iterable[Layer]) -> list[tuple[int, int]]:
    """(receptive field, jump) after each spatial layer of a sequential chain.

    ``model_or_layers`` is a module, whose leaf modules are taken in registration order (the data
    flow of an ``nn.Sequential``), or an iterable of modules and ``(kernel, stride, dilation)``
    tuples (stride and dilation default to 1). Conv2d, MaxPool2d and AvgPool2d count; the
    :data:`POINTWISE` layers are skipped. Raises ValueError for a layer without a fixed square
    geometry (transposed or adaptive layers, non-square kernels, unknown modules).
    """
    layers = model_or_layers.modules() if isinstance(model_or_layers, nn.Module) else model_or_layers
    field, jump, steps = 1, 1, []
    for layer in layers:
        geometry = _geometry(layer)
        if geometry is None:
            continue
        kernel, stride, dilation = geometry
        field += (kernel - 1) * dilation * jump
        jump *= stride
        steps.append((field, jump))
    return steps


def theoretical_receptive_field(model_or_layers: nn.Module | Iterable[Layer]) -> int:
    """Side length of the receptive field of one output cell of a sequential chain, in input
    pixels (see :func:`receptive_fields` for what is accepted)."""
    steps = receptive_fields(model_or_layers)
    return steps[-1][0] if steps else 1


def empirical_receptive_field(model: nn.Module, input_size: tuple[int, int, int], device: str | torch.device = "cpu",
                              *, threshold: float = 0.0, reinitialise: bool = True) -> tuple[int, int]:
    """(height, width) of the input region whose pixels influence the centre output pixel.

    The gradient of the centre pixel's output (summed over channels) with respect to an input of
    ``input_size`` = (channels, height, width) is computed in float64 on a copy of ``model`` in
    eval mode (dropout off, batch norm on running statistics); the extent is from the first to the
    last row (column) where max |grad| over channels exceeds ``threshold`` times the largest |grad|.

    So that "influence" is well defined:

    * ``reinitialise=True`` (default) sets every weight to a positive constant (each filter the
      average of its inputs), biases to zero and batch norms to the identity. With a positive input
      every activation is then positive, no ReLU blocks a gradient and no two paths cancel, so the
      non-zero gradient covers exactly the pixels the architecture connects (the theoretical field).
      ``reinitialise=False`` keeps trained weights: dead ReLUs then shrink the measured region.
    * max pooling passes the gradient to one input per window, which measures where the maximum
      happened to be rather than what the unit sees; each ``nn.MaxPool2d`` is measured as an
      ``nn.AvgPool2d`` of the same geometry.
    * ``threshold=0.0`` counts every non-zero gradient (float64 keeps the tiny gradients of the far
      edge of a deep network's field above underflow); a positive fraction measures a smaller
      "effective" field instead (Luo et al., NeurIPS 2016).

    Raises ValueError when the region reaches the border of the input: the field is then larger
    than, or cut off by, the input -- measure with a larger ``input_size``.
    """
    probe = copy.deepcopy(model).to(device=device, dtype=torch.float64).eval()
    _average_instead_of_max_pooling(probe)
    if reinitialise:
        _positive_constant_weights(probe)
    generator = torch.Generator().manual_seed(0)
    image = (torch.rand(1, *input_size, generator=generator, dtype=torch.float64) + 0.5).to(device)
    image.requires_grad_(True)
    output = main_output(probe(image))
    height, width = output.shape[-2:]
    output[0, :, height // 2, width // 2].sum().backward()

    magnitude = image.grad[0].abs().amax(dim=0)
    influenced = magnitude > threshold * magnitude.max()
    extents = []
    for axis in (1, 0):  # rows: any over columns; columns: any over rows
        indices = influenced.any(dim=axis).nonzero().flatten().tolist()
        size = influenced.shape[1 - axis]
        if not indices:
            raise ValueError("no input pixel influences the centre output pixel (all gradients are zero)")
        if indices[0] == 0 or indices[-1] == size - 1:
            raise ValueError(f"the receptive field reaches the border of the {tuple(input_size[1:])} input; "
                             f"measure with a larger input_size")
        extents.append(indices[-1] - indices[0] + 1)
    return extents[0], extents[1]


def _geometry(layer: Layer) -> tuple[int, int, int] | None:
    """(kernel, stride, dilation) of a spatial layer; None for containers and pointwise layers."""
    if isinstance(layer, tuple):
        kernel, stride, dilation = (*layer, 1, 1)[:3]
        return kernel, stride, dilation
    if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        dilation = getattr(layer, "dilation", 1)  # AvgPool2d has none
        return _square(layer.kernel_size, layer), _square(layer.stride, layer), _square(dilation, layer)
    if isinstance(layer, POINTWISE) or next(layer.children(), None) is not None:
        return None
    raise ValueError(f"{type(layer).__name__} has no fixed kernel/stride/dilation geometry; the receptive "
                     f"field arithmetic covers chains of Conv2d, MaxPool2d, AvgPool2d and pointwise layers")


def _square(value: int | tuple[int, ...], layer: nn.Module) -> int:
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise ValueError(f"{layer} is not square; the arithmetic here is for square kernels")
    return value[0]


def _average_instead_of_max_pooling(module: nn.Module) -> None:
    replace_switches(module)
    for name, child in module.named_children():
        if isinstance(child, nn.MaxPool2d):
            if _square(child.dilation, child) != 1:
                raise ValueError(f"{child}: dilated max pooling has no average-pooling twin")
            setattr(module, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                               ceil_mode=child.ceil_mode))
        else:
            _average_instead_of_max_pooling(child)


@torch.no_grad()
def _positive_constant_weights(module: nn.Module) -> None:
    for name, parameter in module.named_parameters():
        if parameter.dim() >= 2:  # a filter bank: each output the mean of what it sees
            parameter.fill_(1.0 / parameter[0].numel())
        elif name.endswith("bias"):
            parameter.zero_()
        else:  # norm scales, PReLU slopes
            parameter.fill_(1.0)
    for name, buffer in module.named_buffers():
        if name.endswith("running_mean"):
            buffer.zero_()
        elif name.endswith("running_var"):
            buffer.fill_(1.0)


class _AveragePoolingWithIndices(nn.Module):
    """Average pooling with the geometry of a ``MaxPool2d(return_indices=True)``; returns the pooled
    map and placeholder indices (zeros), which :class:`_DenseUnpooling` ignores."""

    def __init__(self, pooling: nn.MaxPool2d) -> None:
        super().__init__()
        if pooling.dilation not in (1, (1, 1)):
            raise ValueError(f"{pooling}: dilated max pooling has no average-pooling twin")
        self.pool = nn.AvgPool2d(pooling.kernel_size, pooling.stride, pooling.padding, ceil_mode=pooling.ceil_mode)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.pool(x)
        return pooled, torch.zeros(pooled.shape, dtype=torch.long, device=pooled.device)


class _DenseUnpooling(nn.Module):
    """Nearest-neighbour upsampling in place of a max unpooling: every cell of a window receives
    the value a switch would have put in one of them."""

    def forward(self, x: torch.Tensor, indices, output_size=None) -> torch.Tensor:
        size = getattr(indices, "size", None)  # segedu's PoolingIndices carry the pooled map's size
        size = size if isinstance(size, torch.Size) else output_size
        if size is None:
            size = tuple(2 * s for s in x.shape[-2:])
        return F.interpolate(x, size=tuple(size)[-2:], mode="nearest")


def replace_switches(module: nn.Module) -> None:
    """In place: max poolings that return switches average instead, and max unpoolings upsample
    densely, so every position a switch could choose is connected (SegNet, DeconvNet)."""
    for name, child in module.named_children():
        if isinstance(child, nn.MaxPool2d) and child.return_indices:
            setattr(module, name, _AveragePoolingWithIndices(child))
        elif isinstance(child, nn.MaxUnpool2d):
            setattr(module, name, _DenseUnpooling())
        else:
            replace_switches(child)
