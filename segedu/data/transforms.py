"""Per-sample augmentation pipelines (albumentations 2.0.8) and the course's named augmentations.

Every pipeline takes ``image`` (H, W, 3) uint8 and ``mask`` (H, W) class ids and returns numpy
arrays: the image stays **uint8** (the dataset turns it into a (3, H, W) float tensor in [0, 1];
uint8 is the colour transforms' native range and a quarter of float32's memory in DataLoader
workers); pass masks as uint8, which they come back as (albumentations turns int64 masks into
int32). Masks are only ever resampled with nearest-neighbour interpolation, so no blended label
(e.g. "3" between 2 and 4) can appear, and pixels from outside the source image are labelled
``IGNORE_INDEX``, never background.

Seeding: ``A.Compose(seed=s)`` in albumentations 2.0.8 gives *every* transform its own generator
seeded with the same ``s``, so two transforms with the same probability make the same decision
(a horizontal and a vertical flip would always fire together). :func:`reseed` instead shares one
generator between all transforms of a pipeline; the pipelines here are built that way. Inside a
DataLoader with workers, call ``reseed(transform, torch.initial_seed() % 2**32)`` from the
worker's ``worker_init_fn``: otherwise every worker (and, without persistent workers, every
epoch) starts from the same copy of the generator and repeats the same augmentations.
"""
from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.augmentations.geometric import functional as fgeometric

from .. import profiles
from ..errors import SegeduError
from . import sizes
from .classes import IGNORE_INDEX

#: Named augmentations of the course; :func:`augmentation` builds each by name.
AUGMENTATIONS: dict[str, str] = {
    "scale": "random scale and aspect crop, resized to image_size (the default training crop)",
    "crop_non_empty": "crop of image_size at native resolution around a random object pixel",
    "flip": "horizontal flip with p=0.5",
    "colour": "mild brightness/contrast/saturation/hue jitter; the mask is untouched",
    "cutout": "1-4 rectangles of the image set to 0 (DeVries & Taylor 2017)",
    "gridmask": "a regular grid of squares set to 0 (Chen et al. 2020, GridMask)",
    "elastic": "U-Net elastic deformation: 3x3 grid of Gaussian displacements, bicubic (Ronneberger et al. 2015)",
}
#: The augmentations that fix the output size; exactly one of them starts a training pipeline.
CROPS = ("scale", "crop_non_empty")


def image_size(profile: profiles.Profile | str) -> int | tuple[int, int]:
    """The ``image_size`` of ``profile`` (a :class:`~segedu.profiles.Profile` or its name): an int, the
    side of the square training crop and the short side images are resized to, or an (H, W) pair
    (see :mod:`segedu.data.sizes`)."""
    size = (profile if isinstance(profile, profiles.Profile) else profiles.get(profile)).image_size
    return sizes.check_size(size)


def crop_hw(profile: profiles.Profile | str) -> tuple[int, int]:
    """(height, width) of ``profile``'s training crop: ``image_size`` x ``image_size``, or the (H, W) pair."""
    return sizes.crop_size(image_size(profile))


class ResizeShortSide(A.DualTransform):
    """Resize to :func:`segedu.data.sizes.model_input_size`: the short side to ``size`` keeping the
    aspect ratio (an int), or to exactly ``size`` (an (H, W) pair), as prediction resizes.

    The resampling is ``A.Resize``'s (the same cv2 call and the same choice of area averaging when
    shrinking), so a square image comes out bit for bit as ``A.Resize(size, size)`` made it.
    """

    def __init__(self, size, interpolation: int = cv2.INTER_LINEAR, mask_interpolation: int = cv2.INTER_NEAREST,
                 area_for_downscale: str | None = None, p: float = 1.0):
        super().__init__(p=p)
        self.size = sizes.check_size(size)
        self.interpolation = interpolation
        self.mask_interpolation = mask_interpolation
        self.area_for_downscale = area_for_downscale

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "interpolation", "mask_interpolation", "area_for_downscale")

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return {"target_hw": sizes.model_input_size(params["shape"][:2], self.size)}

    def _resize(self, array: np.ndarray, target_hw, interpolation: int, area: bool) -> np.ndarray:
        height, width = array.shape[:2]
        if area and (target_hw[0] < height or target_hw[1] < width):  # A.Resize's rule
            interpolation = cv2.INTER_AREA
        return fgeometric.resize(array, tuple(target_hw), interpolation=interpolation)

    def apply(self, img: np.ndarray, target_hw=None, **params: Any) -> np.ndarray:
        return self._resize(img, target_hw, self.interpolation, self.area_for_downscale in ("image", "image_mask"))

    def apply_to_mask(self, mask: np.ndarray, target_hw=None, **params: Any) -> np.ndarray:
        return self._resize(mask, target_hw, self.mask_interpolation, self.area_for_downscale == "image_mask")


class UNetElastic(A.DualTransform):
    """Elastic deformation as in U-Net (Ronneberger et al. 2015, "U-Net: Convolutional Networks for
    Biomedical Image Segmentation", Sec. 3.1): "random displacement vectors on a coarse 3 by 3 grid
    [...] sampled from a Gaussian distribution with 10 pixels standard deviation. Per-pixel
    displacements are then computed using bicubic interpolation."

    The grid nodes sit on the image corners, edge midpoints and centre; bicubic interpolation passes
    through them, so a node's pixel moves by exactly its sampled vector. The image is resampled
    bilinearly, the mask with nearest neighbour; borders are mirrored so no unlabelled area appears.

    Why not ``A.ElasticTransform``: it smooths per-pixel noise with a Gaussian of std ``sigma``
    (Simard et al. 2003), padding with replicated border pixels. A field as smooth as a 3x3 grid
    needs ``sigma`` of about a sixth of the image side, and at that width the replicated border
    noise dominates: with ``alpha`` set for a 10 px std of the smoothed noise, the measured RMS
    displacement was 2.2x that at 64 px and 9.4x at 512 px, concentrated at the borders. No
    (alpha, sigma) pair reproduces "3x3 grid, 10 px std".
    """

    def __init__(self, displacement_std: float = 10.0, grid: int = 3, p: float = 0.5):
        super().__init__(p=p)
        if grid < 2:
            raise SegeduError(f"UNetElastic: grid={grid} needs at least 2 nodes per side (U-Net uses 3).")
        self.displacement_std = displacement_std
        self.grid = grid

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("displacement_std", "grid")

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        nodes = self.random_generator.normal(0.0, self.displacement_std, (self.grid, self.grid, 2))
        # Node (i, j) sits at pixel (i*(H-1)/(g-1), j*(W-1)/(g-1)): sample the node array at those
        # fractional positions with cv2's bicubic remap (align-corners bicubic interpolation).
        node_y = np.linspace(0, self.grid - 1, height, dtype=np.float32)
        node_x = np.linspace(0, self.grid - 1, width, dtype=np.float32)
        grid_x, grid_y = np.meshgrid(node_x, node_y)
        field = cv2.remap(nodes.astype(np.float32), grid_x, grid_y, cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)
        pixel_y, pixel_x = np.mgrid[0:height, 0:width].astype(np.float32)
        return {"map_x": pixel_x + field[..., 0], "map_y": pixel_y + field[..., 1]}

    def apply(self, img: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, **params: Any) -> np.ndarray:
        return _remap(img, map_x, map_y, cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, **params: Any) -> np.ndarray:
        return _remap(mask, map_x, map_y, cv2.INTER_NEAREST)


def _remap(array: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, interpolation: int) -> np.ndarray:
    out = cv2.remap(array, map_x, map_y, interpolation, borderMode=cv2.BORDER_REFLECT_101)
    # cv2 drops a trailing channel axis of length 1; keep the input's shape
    return out.reshape(array.shape)


def augmentation(name: str, profile: profiles.Profile | str, **overrides: Any) -> A.BasicTransform | A.BaseCompose:
    """Build the named augmentation (a key of :data:`AUGMENTATIONS`) for ``profile``'s image size.

    ``overrides`` replace the constructor arguments chosen here (for "crop_non_empty", those of its
    ``A.CropNonEmptyMaskIfExists``), e.g. ``augmentation("cutout", profile, fill_mask=IGNORE_INDEX)``.
    Dropouts ("cutout", "gridmask") keep the mask under a dropped region by default, so the model
    must still label what it cannot see; ``fill_mask=IGNORE_INDEX`` instead removes those pixels
    from the loss. Pixel sizes are for an ``image_size`` input (they run after the training crop):
    crops are ``image_size`` x ``image_size`` for an int, H x W for an (H, W) pair, whose short side
    then sets the pixel sizes.
    """
    height, width = crop_hw(profile)
    size = min(height, width)  # what pixel sizes scale with: the crop's side (its short side for a pair)
    if name == "scale":
        # ratio is the crop region's width / height before the resize: centred on the output's aspect,
        # so a (H, W) crop is not stretched on average (for a square crop, the usual 3/4 .. 4/3)
        aspect = width / height
        return A.RandomResizedCrop(**{
            "size": (height, width), "scale": (0.25, 1.0),
            "ratio": (3 / 4, 4 / 3) if height == width else (3 / 4 * aspect, 4 / 3 * aspect),
            "interpolation": cv2.INTER_LINEAR, "mask_interpolation": cv2.INTER_NEAREST,
            "area_for_downscale": "image", **overrides,
        })
    if name == "crop_non_empty":
        # Pad first so smaller images work too; padding is unlabelled, and (like the background)
        # never chosen as the object pixel the crop must contain.
        return A.Sequential([
            A.PadIfNeeded(min_height=height, min_width=width, border_mode=cv2.BORDER_CONSTANT,
                          fill=0, fill_mask=IGNORE_INDEX),
            A.CropNonEmptyMaskIfExists(**{"height": height, "width": width,
                                          "ignore_values": [0, IGNORE_INDEX], **overrides}),
        ], p=1.0)
    if name == "flip":
        return A.HorizontalFlip(**{"p": 0.5, **overrides})
    if name == "colour":
        return A.ColorJitter(**{"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02,
                                "p": 0.5, **overrides})
    if name == "cutout":
        return A.CoarseDropout(**{"num_holes_range": (1, 4), "hole_height_range": (0.1, 0.25),
                                  "hole_width_range": (0.1, 0.25), "fill": 0, "fill_mask": None,
                                  "p": 0.5, **overrides})
    if name == "gridmask":
        return A.GridDropout(**{"ratio": 0.4, "unit_size_range": (max(2, size // 8), max(2, size // 3)),
                                "random_offset": True, "fill": 0, "fill_mask": None, "p": 0.5, **overrides})
    if name == "elastic":
        # U-Net's 10 px were on 512x512 images; scale them so the deformation is the same
        # fraction of the image at every profile's resolution (exactly 10 px at 512).
        return UNetElastic(**{"displacement_std": 10.0 * size / 512, "p": 0.5, **overrides})
    raise SegeduError(f"unknown augmentation {name!r}; choose one of {', '.join(AUGMENTATIONS)}.")


def reseed(transform: A.BaseCompose, seed: int) -> A.BaseCompose:
    """Make ``transform`` draw from one generator seeded with ``seed``, shared by all its steps."""
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return transform


def _pipeline(steps: list, seed: int) -> A.Compose:
    return reseed(A.Compose(steps, seed=seed), seed)


def train_transform(profile: profiles.Profile | str, extra: Iterable[str | A.BasicTransform] = (),
                    crop: str = "scale", seed: int = 0) -> A.Compose:
    """Training pipeline: ``crop`` (one of :data:`CROPS`) to image_size, horizontal flip, mild colour
    jitter, then ``extra`` (augmentation names or albumentations transforms), which therefore see
    image_size x image_size inputs (H x W for an (H, W) image_size): every batch has one size,
    whatever the images' sizes and shapes."""
    if crop not in CROPS:
        raise SegeduError(f"crop={crop!r} is not a cropping augmentation; use one of {', '.join(CROPS)}.")
    extra = list(extra)
    misplaced = [step for step in extra if isinstance(step, str) and step in CROPS]
    if misplaced:
        raise SegeduError(
            f"{misplaced[0]!r} sets the output size and would run after the crop to image_size "
            f"(doing nothing); pass it as train_transform(..., crop={misplaced[0]!r}) instead (in a shell: "
            f"segedu train --crop {misplaced[0]})."
        )
    steps = [augmentation(crop, profile), augmentation("flip", profile), augmentation("colour", profile)]
    steps += [augmentation(step, profile) if isinstance(step, str) else step for step in extra]
    return _pipeline(steps, seed)


def val_transform(profile: profiles.Profile | str) -> A.Compose:
    """Validation pipeline: resize as prediction does (:class:`ResizeShortSide`: the short side to an int
    image_size keeping the aspect ratio, so a square image becomes image_size x image_size; an
    (H, W) image_size exactly), area averaging when shrinking the image, nearest neighbour for the
    mask; nothing random."""
    return _pipeline([ResizeShortSide(image_size(profile), interpolation=cv2.INTER_LINEAR,
                                      mask_interpolation=cv2.INTER_NEAREST, area_for_downscale="image")], seed=0)


def test_transform(profile: profiles.Profile | str) -> A.Compose:
    """Test pipeline: the validation resize; call it with ``image=`` only (test images have no mask)."""
    return val_transform(profile)


# pytest would otherwise collect this module-level function as a test when imported into a test module
test_transform.__test__ = False
