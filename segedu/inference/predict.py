"""From images to class maps: input normalisation, resizing to the training size and back.

Models see images resized to the size they were trained at (``image_size``), normalised with
the ImageNet mean and standard deviation (what torchvision's pretrained backbones expect); their
logits are upsampled bilinearly back to the image's own size, so scores are computed against
the original masks, as the competition does.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ..models import main_output

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images (B, 3, H, W) -> ImageNet-normalised images."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def predict_logits(model, images: torch.Tensor, size: int | None = None, amp_dtype: torch.dtype | None = None,
                   channels_last: bool = False) -> torch.Tensor:
    """Logits (B, C, H, W) at the images' own size, for [0, 1] images (B, 3, H, W).

    With ``size``, the images are resized to ``size`` x ``size`` for the model and the logits resized back.
    """
    h, w = images.shape[-2:]
    x = normalize(images)
    if size is not None and (h, w) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(images.device, amp_dtype):
        logits = main_output(model(x)).float()
    if logits.shape[-2:] != (h, w):
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return logits
