"""What an ``image_size`` means, in one place: the model's input size for an image of any shape.

``image_size`` (a :class:`~segedu.engine.TrainConfig` field, a profile's ``image_size``) is

* an int ``s``: the **short side**. An image is scaled so that its shorter side is ``s`` and its
  aspect ratio is kept (each side rounded to whole pixels); a square image becomes exactly
  ``s`` x ``s``, so square datasets (the competition's) see what they always saw. Training crops
  are ``s`` x ``s`` squares cut from the image;
* a pair ``(H, W)``: exactly that size, for every image (and training crops of ``H`` x ``W``);
* None: the image's own size.

Prediction and training both read it through :func:`model_input_size` and :func:`crop_size`, so a
360 x 480 street scene is neither squashed into a square for prediction nor scored on a distorted copy.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import SegeduError


def check_size(size) -> int | tuple[int, int] | None:
    """``size`` as an int, an (H, W) tuple or None; SegeduError for anything else."""
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        if size < 1:
            raise SegeduError(f"image_size must be a positive number of pixels (the short side) or an (H, W) "
                              f"pair of them; got {size!r}.")
        return size
    if isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size):
        return int(size[0]), int(size[1])
    raise SegeduError(f"image_size must be a positive whole number of pixels (the short side, e.g. 256) or an "
                      f"(H, W) pair of them (e.g. [240, 320]); got {size!r}.")


def _round(value: float) -> int:
    """Half up, not Python's half to even: 340.5 px is 341, whatever the parity."""
    return max(1, int(math.floor(value + 0.5)))


def model_input_size(image_hw: Sequence[int], size) -> tuple[int, int]:
    """(h, w) the model runs at for an image of ``image_hw`` = (height, width).

    ``size`` an int: the short side becomes ``size``, the aspect ratio is kept (360 x 480 at 256 ->
    256 x 341; a square image -> ``size`` x ``size``); an (H, W) pair: that pair; None: ``image_hw``.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    size = check_size(size)
    if size is None:
        return h, w
    if isinstance(size, tuple):
        return size
    if h == w:
        return size, size
    if h < w:
        return size, _round(w * size / h)
    return _round(h * size / w), size


def crop_size(size) -> tuple[int, int]:
    """(h, w) of a training crop: ``size`` x ``size`` for an int (a square crop), the pair itself."""
    size = check_size(size)
    if size is None:
        raise SegeduError("a training crop needs an image_size (an int for square crops or an (H, W) pair).")
    return size if isinstance(size, tuple) else (size, size)
