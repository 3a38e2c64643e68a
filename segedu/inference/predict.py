"""From images to class maps: input normalisation, resizing to the training size and back.

Models see images resized to the size they were trained at (``image_size``: an int is the short
side, the aspect ratio kept; an (H, W) pair is exact; see :func:`model_input_size`), normalised
with the ImageNet mean and standard deviation (what torchvision's pretrained backbones expect);
their logits are upsampled bilinearly back to the image's own size, so scores are computed
against the original masks, as the competition does. A model runs under the autocast precision
of its config's ``amp`` setting (:func:`amp_dtype`, :func:`autocast`), in training as in inference.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from ..data.sizes import model_input_size
from ..env import autocast, resolve_amp
from ..errors import SegeduError
from ..models import main_output

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "amp_dtype", "autocast", "model_input_size", "normalize",
           "predict_logits", "resized_forward", "resized_input"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images (B, 3, H, W) -> ImageNet-normalised images."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mode`` on ``device`` (None: full precision); ``auto`` as
    :func:`segedu.env.resolve_amp` decides it."""
    mode = resolve_amp(mode, device)
    if mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if device.type != "cuda":
        raise SegeduError("amp='fp16' needs a CUDA device; on the CPU use amp='bf16' or 'off'.")
    return torch.float16


def resized_forward(model, x: torch.Tensor, input_hw: tuple[int, int] | None, amp_dtype: torch.dtype | None = None,
                    channels_last: bool = False) -> torch.Tensor:
    """Float logits (N, C, h, w) for *normalised* images ``x`` (N, 3, h, w), the model run at ``input_hw``.

    The images are resized to ``input_hw`` (antialiased bilinear; None: their own size) for the model,
    and the logits bilinearly back to (h, w). Every prediction path (plain, TTA, ensembles) runs the
    model through here, so they agree exactly where they overlap.
    """
    h, w = x.shape[-2:]
    x = resized_input(x, input_hw, channels_last)
    with autocast(x.device, amp_dtype):
        logits = main_output(model(x)).float()
    if logits.shape[-2:] != (h, w):
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return logits


def resized_input(x: torch.Tensor, input_hw: tuple[int, int] | None, channels_last: bool = False) -> torch.Tensor:
    """Images ``x`` (N, 3, h, w) as a model sees them: resized to ``input_hw`` (antialiased bilinear;
    unchanged where it is None or already their size), in channels-last memory if asked."""
    if input_hw is not None and tuple(input_hw) != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=tuple(input_hw), mode="bilinear", align_corners=False, antialias=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def predict_logits(model, images: torch.Tensor, size: int | None = None, amp_dtype: torch.dtype | None = None,
                   channels_last: bool = False) -> torch.Tensor:
    """Logits (B, C, H, W) at the images' own size, for [0, 1] images (B, 3, H, W).

    With ``size``, the images are resized to :func:`model_input_size` for the model (an int: the
    short side, the aspect ratio kept, so a square image becomes ``size`` x ``size``; an (H, W)
    pair: that size) and the logits resized back.
    """
    input_hw = None if size is None else model_input_size(images.shape[-2:], size)
    return resized_forward(model, normalize(images), input_hw, amp_dtype, channels_last)
