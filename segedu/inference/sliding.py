"""Sliding-window inference: a large image predicted window by window, the overlaps blended.

A model trained on crops of a given size can meet images much larger than those crops at their
own resolution by predicting overlapping windows and blending them. The scheme is nnU-Net's
(Isensee et al., "nnU-Net: a self-configuring method for deep learning-based biomedical image
segmentation", Nature Methods 2021; ``nnunetv2/inference/sliding_window_prediction.py``):

* **Window positions** (``compute_steps_for_sliding_window``): along each axis of length ``L``, a
  window of ``n`` pixels and a target step of ``n * (1 - overlap)``, take
  ``k = ceil((L - n) / step) + 1`` windows spread evenly from 0 to ``L - n``, so the first window
  starts at the image's first pixel, the last one ends at its last pixel, every pixel is covered and
  neighbours overlap by at least ``overlap`` of a window.
* **Blending** (``compute_gaussian``): each window's logits are multiplied by a weight map and
  summed; the sum is divided by the summed weights. ``weighting="gaussian"`` uses a Gaussian with
  ``sigma = window / 8`` per axis, peak 1 at the window's centre, because predictions near a window's
  border see less context and are worse; ``"uniform"`` weights every pixel 1 (a plain average).
  The Gaussian here is evaluated analytically and centred at ``(n - 1) / 2``, so it is symmetric
  (nnU-Net puts the peak on pixel ``n // 2`` and blurs a delta with scipy); its smallest value, at a
  corner, is ``exp(-16) ~ 1e-7 > 0``, so every pixel keeps a positive weight.

Windows larger than the image are **clamped**: along an axis shorter than the window, one window
spanning the whole axis is used (no padding, whose invented pixels would change the prediction),
so an image that fits in one window gets exactly the plain forward pass.
"""
from __future__ import annotations

import math

import torch

from ..errors import SegeduError
from .predict import model_input_size, normalize, resized_forward

WEIGHTINGS = ("uniform", "gaussian")
#: nnU-Net's sigma of the Gaussian importance map, as a fraction of the window size
SIGMA_SCALE = 1 / 8


def _pair(value, what: str) -> tuple[int, int]:
    """A positive int or (height, width) pair of them, validated."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise SegeduError(f"{what} must be a positive whole number of pixels (or a (height, width) pair of them); "
                          f"got {value!r}.")
    return pair


def check_options(window, overlap: float, weighting: str, size=None, batch_size: int = 1) -> None:
    """SegeduError for a bad window, overlap, weighting, model input size or batch size."""
    _pair(window, "the sliding window")
    if size is not None:
        _pair(size, "the sliding window's model input size")
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
        raise SegeduError(f"the sliding-window overlap is a fraction of the window in [0, 1) (0.5 = half a window); "
                          f"got {overlap!r}.")
    if weighting not in WEIGHTINGS:
        raise SegeduError(f"unknown sliding-window weighting {weighting!r}; choose 'gaussian' (nnU-Net) or 'uniform'.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SegeduError(f"the sliding-window batch size must be a positive integer; got {batch_size!r}.")


def window_starts(length: int, window: int, overlap: float) -> list[int]:
    """First pixels of the windows along an axis of ``length`` (nnU-Net's evenly spread steps; see the module)."""
    if window >= length:
        return [0]
    count = math.ceil((length - window) / (window * (1 - overlap))) + 1
    step = (length - window) / (count - 1)
    return [int(round(step * i)) for i in range(count)]


def window_weights(height: int, width: int, weighting: str, device=None) -> torch.Tensor:
    """(height, width) float32 blending weights of one window: all ones, or the Gaussian of the module docstring."""
    if weighting == "uniform":
        return torch.ones(height, width, device=device)

    def axis(n):
        x = torch.arange(n, dtype=torch.float64, device=device) - (n - 1) / 2
        return torch.exp(-(x ** 2) / (2 * (n * SIGMA_SCALE) ** 2))

    return (axis(height)[:, None] * axis(width)[None, :]).float()


@torch.no_grad()
def sliding_window_logits(model, images: torch.Tensor, window, overlap: float = 0.5, weighting: str = "gaussian",
                          size=None, batch_size: int = 8, amp_dtype: torch.dtype | None = None,
                          channels_last: bool = False) -> torch.Tensor:
    """Logits (B, C, H, W) of [0, 1] ``images`` (B, 3, H, W), predicted window by window and blended.

    ``window``: the window's side in image pixels (or a (height, width) pair); ``overlap``: the least
    fraction of a window that neighbours share, in [0, 1); ``weighting``: ``gaussian`` or
    ``uniform`` (module docstring). ``size``: the model's input size for a full window, as
    :func:`~segedu.inference.predict.model_input_size` reads it (an int: the window's short side,
    its aspect ratio kept; an (H, W) pair: exact); each crop is resized by that size over the
    window and its logits resized back; None runs the model on the crop as it is. ``batch_size``
    windows (from any of the images) go through the model per forward pass.
    Windows larger than the image are clamped to it (one window along that axis).
    """
    check_options(window, overlap, weighting, size, batch_size)
    wh, ww = _pair(window, "the sliding window")
    b, _, h, w = images.shape
    ch, cw = min(wh, h), min(ww, w)  # the crop: the window, clamped to the image
    if size is None:
        input_hw = None
    else:
        sh, sw = model_input_size((wh, ww), size)  # an int: the window's short side, as for whole images
        input_hw = (max(1, round(ch * sh / wh)), max(1, round(cw * sw / ww)))
    ys, xs = window_starts(h, ch, overlap), window_starts(w, cw, overlap)
    weights = window_weights(ch, cw, weighting, images.device)
    total = torch.zeros(1, 1, h, w, device=images.device)
    for y in ys:
        for x in xs:
            total[..., y:y + ch, x:x + cw] += weights
    x_all = normalize(images)  # normalising is per pixel, so cropping the normalised image is exact
    positions = [(i, y, x) for i in range(b) for y in ys for x in xs]
    out = None
    for start in range(0, len(positions), batch_size):
        chunk = positions[start:start + batch_size]
        crops = torch.stack([x_all[i, :, y:y + ch, x:x + cw] for i, y, x in chunk])
        logits = resized_forward(model, crops, input_hw, amp_dtype, channels_last)
        if out is None:
            out = torch.zeros(b, logits.shape[1], h, w, device=images.device)
        for (i, y, x), window_logits in zip(chunk, logits):
            out[i, :, y:y + ch, x:x + cw] += window_logits * weights
    return out / total
