"""Test-time augmentation (TTA): predict on flipped and rescaled copies of an image, undo, average.

A segmentation network is only approximately equivariant to flips and scale changes, so its
errors on a flipped or rescaled copy of an image are partly independent of those on the image
itself; averaging the copies' predictions, each mapped back onto the original pixel grid, removes
part of them. This is the multi-scale + flip inference of the DeepLab and PSPNet papers (e.g.
Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation", arXiv:1706.05587,
Sec. 4.1, "multi-scale inputs ... left-right flipped"; Zhao et al., PSPNet, CVPR 2017, Sec. 5),
and what the ``ttach`` library's ``SegmentationTTAWrapper`` and mmsegmentation's ``aug_test`` do.

Views. ``flips`` picks from ``none``, ``hflip`` (left-right), ``vflip`` (up-down) and ``hvflip``
(both, i.e. a 180-degree rotation); each view's output is flipped back before averaging.
``scales`` multiply the model's input size: the training size of the image
(:func:`segedu.inference.predict.model_input_size`: an int ``size`` is the short side, the aspect
ratio kept) times ``scale`` when ``size`` is given, otherwise the image's own height and width
times ``scale``; every view's logits are resized back to the image's size. All flip views of one
scale go through the model in **one** forward pass, concatenated along the batch axis, so ``k``
flips cost about ``k`` images' compute and one call.

Merging and the returned convention. ``merge="prob"`` averages the views' softmax probabilities;
``merge="logit"`` averages their logits (ttach's ``merge_mode="mean"``). Either way the result is
a tensor of **class scores** (B, C, H, W) whose softmax over dim 1 is the merged prediction and
whose argmax is the predicted class, so it is a drop-in replacement for logits (for ``argmax``,
:class:`segedu.metrics.SegMetrics`, :func:`segedu.inference.crf.refine`):

* ``merge="prob"``: the log of the mean probability, floored at the smallest normal float32 so that
  no score is ``-inf`` (``softmax(log p) = p``, as ``p`` sums to 1);
* ``merge="logit"``: the mean logits;
* a single view (``flips=("none",)``, ``scales=(1.0,)``): the model's logits unchanged, exactly
  :func:`segedu.inference.predict.predict_logits`; softmax and argmax are the same as the
  log-probabilities would give, since the two differ by a per-pixel constant.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..errors import SegeduError
from .predict import model_input_size, normalize, resized_forward

#: flip name -> the tensor dims it reverses (a flip is its own inverse, so undoing is the same call)
FLIPS = {"none": (), "hflip": (-1,), "vflip": (-2,), "hvflip": (-2, -1)}
MERGES = ("prob", "logit")


def _check(flips, scales, merge) -> tuple[tuple[str, ...], tuple[float, ...], str]:
    """Validated (flips, scales, merge) as tuples; SegeduError naming the bad value and the valid ones."""
    if isinstance(flips, str):
        flips = (flips,)
    flips = tuple(flips)
    if not flips:
        raise SegeduError(f"TTA needs at least one flip view; choose from {', '.join(FLIPS)}.")
    for flip in flips:
        if flip not in FLIPS:
            raise SegeduError(f"unknown TTA flip {flip!r}; choose from {', '.join(FLIPS)}.")
    if len(set(flips)) != len(flips):
        raise SegeduError(f"TTA flips {', '.join(flips)} name a view twice; each view is counted once.")
    try:
        scales = tuple(float(s) for s in ((scales,) if isinstance(scales, (int, float)) else scales))
    except (TypeError, ValueError):
        raise SegeduError(f"TTA scales must be positive numbers, e.g. 0.75,1,1.25; got {scales!r}.") from None
    if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
        raise SegeduError(f"TTA scales must be positive numbers, e.g. 0.75,1,1.25; got {scales!r}.")
    if merge not in MERGES:
        raise SegeduError(f"unknown TTA merge {merge!r}; choose 'prob' (average softmax probabilities) "
                          "or 'logit' (average logits).")
    return flips, scales, merge


@dataclass(frozen=True)
class TTA:
    """A test-time augmentation: the flip views, the input-size scales and how views are merged.

    ``TTA()`` is the common left-right flip at the training size; the views are every flip at every
    scale (``len(flips) * len(scales)``). Arguments are validated on construction.
    """

    flips: tuple[str, ...] = ("none", "hflip")
    scales: tuple[float, ...] = (1.0,)
    merge: str = "prob"

    def __post_init__(self):
        flips, scales, merge = _check(self.flips, self.scales, self.merge)
        object.__setattr__(self, "flips", flips)
        object.__setattr__(self, "scales", scales)

    @property
    def views(self) -> int:
        return len(self.flips) * len(self.scales)


def flip(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` (..., H, W) flipped as view ``name`` says (also undoes it: every flip is its own inverse)."""
    dims = FLIPS[name]
    return x.flip(dims) if dims else x


def input_size(image_hw: tuple[int, int], size, scale: float) -> tuple[int, int]:
    """The model's input (height, width) for one scale: ``model_input_size(image_hw, size)`` times ``scale``
    (``size`` x ``size`` times ``scale`` for a square image and an int ``size``)."""
    base = model_input_size(image_hw, size)
    hw = tuple(int(round(b * scale)) for b in base)
    if min(hw) < 1:
        raise SegeduError(f"TTA scale {scale} makes the model input {hw[0]} x {hw[1]} pixels from {base[0]} x "
                          f"{base[1]}; use a larger scale.")
    return hw


def merge_views(views: Sequence[torch.Tensor], merge: str) -> torch.Tensor:
    """Class scores (see the module docstring) from the views' logits, all already on the image's grid."""
    if len(views) == 1:
        return views[0]
    if merge == "logit":
        return torch.stack(views).mean(0)
    mean = torch.stack([v.softmax(1) for v in views]).mean(0)
    return mean.clamp_min(torch.finfo(mean.dtype).tiny).log()


@torch.no_grad()
def tta_logits(model, images: torch.Tensor, size: int | tuple[int, int] | None = None,
               flips: Sequence[str] = ("none", "hflip"), scales: Sequence[float] = (1.0,), merge: str = "prob",
               amp_dtype: torch.dtype | None = None, channels_last: bool = False,
               logits_fn: Callable[[torch.Tensor, float], torch.Tensor] | None = None) -> torch.Tensor:
    """Class scores (B, C, H, W) at the images' size, merged over flip and scale views of [0, 1] ``images``.

    See the module docstring for the views and for what the scores are (log mean probability for
    ``merge="prob"``, mean logits for ``"logit"``, the plain logits for a single view).

    ``logits_fn(views, scale)`` replaces the model call: given [0, 1] images (N, 3, H, W) (the flip
    views of one scale, concatenated) it returns their logits (N, C, H, W) at that same size, for the
    model run at ``scale``. The default resizes to :func:`input_size` and back
    (:func:`segedu.inference.predict.resized_forward`); :mod:`segedu.inference.pipeline` passes a
    sliding-window one.
    """
    flips, scales, merge = _check(flips, scales, merge)
    b = images.shape[0]
    image_hw = tuple(images.shape[-2:])
    if logits_fn is None:
        def logits_fn(views, scale):
            return resized_forward(model, normalize(views), input_size(image_hw, size, scale), amp_dtype, channels_last)
    outputs = []
    for scale in scales:
        views = torch.cat([flip(images, name) for name in flips]) if len(flips) > 1 else flip(images, flips[0])
        logits = logits_fn(views, scale)  # one model call for all flips of this scale
        outputs += [flip(part, name) for part, name in zip(logits.split(b), flips)]
    return merge_views(outputs, merge)
