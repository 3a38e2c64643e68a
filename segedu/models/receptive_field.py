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
* :func:`effective_receptive_field` -- how the centre output pixel's sensitivity is *distributed*
  over that field with the model's own weights (Luo et al., NeurIPS 2016): a normalised map of the
  input gradient's magnitude (an :class:`ERF`) with the radii holding 50% and 95% of it.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SegeduError
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


@dataclass(frozen=True)
class ERF:
    """An effective receptive field: where the centre output pixel's input gradient lies.

    ``weights`` is the (H, W) map over the input (float64, on the CPU, summing to 1); ``centre`` its
    centre of mass (row, column); ``field`` the (height, width) of the theoretical receptive field,
    None where it was not known (see :func:`effective_receptive_field`).
    """

    weights: torch.Tensor
    centre: tuple[float, float]
    field: tuple[int, int] | None

    def radius(self, share: float) -> float:
        """The smallest distance r from ``centre`` (Euclidean, in input pixels, pixel centre to
        pixel centre) such that the pixels within r hold ``share`` of the mass."""
        share = _check_share(share)
        height, width = self.weights.shape
        rows = torch.arange(height, dtype=torch.float64)[:, None] - self.centre[0]
        columns = torch.arange(width, dtype=torch.float64)[None, :] - self.centre[1]
        distance = (rows ** 2 + columns ** 2).sqrt().flatten()
        order = distance.argsort()
        reached = self.weights.flatten()[order].cumsum(0) >= share - 1e-12  # rounding of the cumsum
        return float(distance[order][int(reached.nonzero()[0])])

    def area(self, share: float) -> int:
        """The fewest input pixels that hold ``share`` of the mass (the heaviest ones first)."""
        share = _check_share(share)
        heaviest = self.weights.flatten().sort(descending=True).values
        return int((heaviest.cumsum(0) >= share - 1e-12).nonzero()[0]) + 1

    def field_share(self, share: float = 0.95) -> float | None:
        """:meth:`area` of ``share`` as a fraction of the theoretical field's area (None without
        ``field``). Luo et al. show this fraction shrinks as a network gets deeper."""
        return None if self.field is None else self.area(share) / (self.field[0] * self.field[1])

    @property
    def radius_50(self) -> float:
        return self.radius(0.5)

    @property
    def radius_95(self) -> float:
        return self.radius(0.95)


def effective_receptive_field(model: nn.Module, image_size: int | tuple[int, int], *,
                              images: torch.Tensor | None = None, channel: int | None = None,
                              samples: int = 8, seed: int = 0, in_channels: int = 3,
                              field: int | tuple[int, int] | None = None) -> ERF:
    """The effective receptive field of the centre output pixel of ``model`` (Luo et al., "Understanding
    the Effective Receptive Field in Deep Convolutional Neural Networks", NeurIPS 2016, Sec. 2).

    The theoretical receptive field (:func:`theoretical_receptive_field`) is every input pixel the
    architecture connects to an output pixel. Luo et al. define the effective one by the gradient
    of the centre output pixel with respect to the input: in a deep network the paths to the
    field's centre far outnumber those to its edge, so the gradient is concentrated -- Gaussian-like
    (Sec. 2; the central limit theorem over the layers), with a radius growing as sqrt(n) in
    the number n of layers while the theoretical field grows as n, so it occupies a shrinking
    fraction of the theoretical field. Training enlarges it (Sec. 3). Sensitivity is not
    importance, but the ERF tells how much context a model actually uses.

    Here: the centre output pixel's logits (summed over classes, or class ``channel`` only) are
    differentiated with respect to ``images`` -- a (N, C, H, W) batch of real images, or, when None,
    ``samples`` standard-normal noise images of ``image_size`` and ``in_channels`` drawn with
    ``seed`` (on the CPU, so any device gives the same inputs). |gradient| is summed over input
    channels, averaged over the images and normalised to sum 1. The model runs in eval mode on its
    own device and dtype (max pooling routes the gradient by where the maxima are, as in the real
    network); its mode is restored and no parameter gradient is written.

    ``field`` is the theoretical field's side (or (height, width)) for :meth:`ERF.field_share`;
    None measures it with :func:`empirical_receptive_field`, and leaves it None when the field
    reaches past the input.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    if images is None:
        if samples < 1:
            raise SegeduError(f"effective_receptive_field: samples must be at least 1, got {samples}")
        generator = torch.Generator().manual_seed(seed)
        images = torch.randn(samples, in_channels, height, width, generator=generator, dtype=torch.float64)
    elif images.dim() != 4 or tuple(images.shape[-2:]) != (height, width):
        raise SegeduError(f"effective_receptive_field: images of shape {tuple(images.shape)} do not match "
                          f"image_size {(height, width)}; pass a (N, C, {height}, {width}) batch")
    if field is None:
        try:
            field = empirical_receptive_field(model, (images.shape[1], height, width), device)
        except ValueError:  # the field reaches past the input: no finite area to compare with
            field = None
    field = (field, field) if isinstance(field, int) else field

    was_training = model.training
    model.eval()
    total = torch.zeros(height, width, dtype=torch.float64)
    try:
        with torch.enable_grad():
            for image in images:  # one at a time: the memory of a single backward pass
                image = image[None].to(device=device, dtype=dtype).requires_grad_(True)
                output = main_output(model(image))
                classes, out_height, out_width = output.shape[1:]
                if channel is not None and not 0 <= channel < classes:
                    raise SegeduError(f"effective_receptive_field: channel {channel} is not one of the "
                                      f"model's {classes} output channels")
                centre = output[0, :, out_height // 2, out_width // 2]
                target = centre.sum() if channel is None else centre[channel]
                # autograd.grad, not backward: the parameters' .grad stay untouched
                (gradient,) = torch.autograd.grad(target, image)
                total += gradient[0].abs().sum(dim=0).to(device="cpu", dtype=torch.float64)
    finally:
        model.train(was_training)
    mass = total.sum()
    if mass == 0:
        raise SegeduError("effective_receptive_field: no input pixel influences the centre output pixel "
                          "(all gradients are zero)")
    weights = total / mass
    rows = torch.arange(height, dtype=torch.float64)
    columns = torch.arange(width, dtype=torch.float64)
    centre_of_mass = (float((weights.sum(1) * rows).sum()), float((weights.sum(0) * columns).sum()))
    return ERF(weights, centre_of_mass, field)


def _check_share(share: float) -> float:
    if not 0 < share <= 1:
        raise SegeduError(f"a share of the gradient mass must be in (0, 1], got {share}")
    return float(share)


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
