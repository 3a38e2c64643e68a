"""What a model costs, measured: parameters, forward speed, the activations a training step keeps
for its backward pass; and a probe that lets the receptive-field measurement see through
unpooling with switches.

* :func:`parameter_counts` -- the weights split into trainable and frozen (a
  :class:`ParameterCount`); :func:`parameter_count` -- one of those numbers as an int.
* :func:`flop_count` -- floating-point operations of one forward pass, counted by
  ``torch.utils.flop_counter`` (a multiply-add is 2 FLOPs; convolutions and matrix products only,
  so pooling, normalisation and interpolation are free). Works on the ``meta`` device, so a
  paper-scale model can be counted without allocating it. Papers and torchvision usually report
  multiply-adds ("GFLOPs" that are GMACs): divide by 2 to compare.
* :func:`forward_speed` -- images per second of an inference forward pass (eval mode, no
  gradients) on a random batch: the median of several timed passes after warm-up, synchronised on
  CUDA. A timing: it depends on the machine, its load and the thread count.
* :func:`saved_activation_bytes` -- the bytes of the tensors autograd saves for the backward pass
  during one training-mode forward pass (parameters excluded, each storage counted once). This is
  the memory that grows with batch size and image size, and it is the same count on any machine
  for the same operations; it is not an allocator's peak (temporary buffers, the gradients and the
  optimiser state come on top).
* :func:`dense_unpooling` -- a copy of an encoder-decoder in which every max pooling that returns
  its indices (SegNet's and DeconvNet's "switches") becomes an average pooling and every
  ``nn.MaxUnpool2d`` a nearest-neighbour upsampling. Which input pixels an output pixel of the
  real network sees depends on where the maxima were; the copy connects every position a switch
  could choose, so :func:`segedu.models.receptive_field.empirical_receptive_field` on it gives the
  largest region any switch configuration can connect (the theoretical receptive field).
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..env import autocast
from . import main_output
from .receptive_field import replace_switches


@dataclass(frozen=True)
class ParameterCount:
    """A model's parameters: ``trainable`` (``requires_grad`` on), ``frozen`` (off) and ``total``.

    ``str`` gives the number the book quotes, the trainable one, with the frozen ones after it:
    "134.35M (+1.81M frozen)", or "134.35M" when nothing is frozen.
    """

    trainable: int
    frozen: int

    @property
    def total(self) -> int:
        return self.trainable + self.frozen

    def __str__(self) -> str:
        frozen = f" (+{_count_text(self.frozen)} frozen)" if self.frozen else ""
        return _count_text(self.trainable) + frozen


def parameter_counts(model: nn.Module) -> ParameterCount:
    """The parameters of ``model``, trainable and frozen (works on the ``meta`` device).

    The number the book quotes is ``.trainable``: what training changes, and what a paper's
    "# params" means for a network it trained. Sources differ on the rest, so always say which:

    * frozen parameters -- weights kept fixed (``requires_grad`` off), such as FCN's final
      upsampling, a transposed convolution fixed to bilinear interpolation (Long et al., CVPR 2015,
      Sec. 3.3 and 4.3). Their Table 1's 134M for FCN-VGG16 is the learned weights (VGG16 with a
      21-way score layer; the learned 2x upsamplings of FCN-16s/8s add 7k each). Counting the
      fixed 32x kernel too (21 x 21 x 64 x 64 = 1.81M; the released Caffe models store it as a
      blob with ``lr_mult: 0``) gives 136.2M for FCN-32s: that is ``.total``.
    * buffers -- batch norm's running statistics are not parameters and counted nowhere here.
    * heads -- torchvision's ``fcn_resnet50`` upsamples by ``F.interpolate`` (no weights at all),
      and its recorded ``num_params`` includes the auxiliary classifier, which inference drops.
    """
    trainable = frozen = 0
    for parameter in model.parameters():
        if parameter.requires_grad:
            trainable += parameter.numel()
        else:
            frozen += parameter.numel()
    return ParameterCount(trainable, frozen)


def parameter_count(model: nn.Module, frozen: bool = False) -> int:
    """Number of parameters of ``model`` as an int: the trainable ones, the number the book quotes in
    every chapter, or with ``frozen=True`` the frozen ones too (``total``; see :func:`parameter_counts`,
    which this reads: e.g. FCN-32s's fixed bilinear upsampling)."""
    counts = parameter_counts(model)
    return counts.total if frozen else counts.trainable


def _count_text(count: int) -> str:
    """134346581 -> "134.35M", 112896 -> "112.9k", 55 -> "55"."""
    if count >= 1_000_000:
        return f"{count / 1e6:.2f}M"
    return f"{count / 1e3:.1f}k" if count >= 1_000 else str(count)


@torch.no_grad()
def flop_count(model: nn.Module, image_size: int | tuple[int, int], batch_size: int = 1, *,
               training: bool = False) -> int:
    """FLOPs (2 per multiply-add) of one forward pass of ``model`` on a (batch_size, 3, H, W) input.

    The input is made on the model's device (``meta`` works: nothing is computed). ``training=False``
    counts the eval-mode forward, which is what inference costs (auxiliary heads off);
    ``training=True`` counts the training-mode forward, auxiliary heads included. The model's mode
    is restored afterwards.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    images = torch.zeros(batch_size, 3, height, width, device=device)
    was_training = model.training
    model.train(training)
    try:
        with FlopCounterMode(display=False) as counter:
            model(images)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


@torch.no_grad()
def forward_speed(model: nn.Module, batch_size: int, image_size: int | tuple[int, int], device="cpu", *,
                  repeats: int = 5, warmup: int = 1, seed: int = 0) -> float:
    """Images per second of ``model``'s eval-mode forward pass on a random (batch_size, 3, H, W) batch.

    The median of ``repeats`` timed passes after ``warmup`` untimed ones; the model's training mode
    is restored afterwards.
    """
    device = torch.device(device)
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch_size, 3, height, width, generator=generator).to(device)
    was_training = model.training
    model.eval()
    try:
        times = []
        for index in range(warmup + repeats):
            _synchronize(device)
            start = time.perf_counter()
            main_output(model(images))
            _synchronize(device)
            if index >= warmup:
                times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return batch_size / statistics.median(times)


def saved_activation_bytes(model: nn.Module, images: torch.Tensor) -> int:
    """Bytes autograd saves for the backward pass in one training-mode forward pass of ``images``.

    Runs on a copy of ``model``, so its batch-norm statistics are not touched. Tensors sharing one
    storage (an in-place ReLU's output and its input, views) count once; parameters not at all.
    """
    probe = copy.deepcopy(model).train()
    parameters = {p.untyped_storage().data_ptr() for p in probe.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = main_output(probe(images))
    del output
    return sum(saved.values())


def dense_unpooling(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose switch poolings average and whose unpoolings upsample densely
    (see the module docstring); the original is not changed."""
    probe = copy.deepcopy(model)
    replace_switches(probe)
    return probe


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_speed(model: nn.Module, batch_size: int, image_size: int, device="cpu", *, dtype=None,
                   channels_last: bool = False, num_classes: int | None = None, repeats: int = 3, warmup: int = 1,
                   seed: int = 0) -> dict:
    """Images per second of full training steps (forward, cross-entropy, backward, SGD step) of
    ``model`` on a random batch, under autocast to ``dtype`` (None: fp32), and on CUDA the peak
    memory in MiB. The median of ``repeats`` timed steps after ``warmup``; ``model`` is trained in
    place (pass a copy to keep its weights)."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch_size, 3, image_size, image_size, generator=generator).to(device)
    model = model.to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    if num_classes is None:  # one eval-mode pass (batch norm cannot train on a single image)
        model.eval()
        with torch.no_grad():
            num_classes = main_output(model(images[:1])).shape[1]
        model.train()
    classes = num_classes
    target = torch.randint(0, classes, (batch_size, image_size, image_size), generator=generator).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for index in range(warmup + repeats):
        _synchronize(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            logits = main_output(model(images))
        torch.nn.functional.cross_entropy(logits.float(), target).backward()
        optimizer.step()
        _synchronize(device)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"images_per_s": batch_size / statistics.median(times), "peak_mib": peak}
