"""Batch-level mixing augmentations for segmentation: MixUp, CutMix, SnapMix, Copy-Paste.

albumentations works on one sample at a time; these mix two samples of a batch, so they run on
torch batches after the DataLoader: ``images`` (B, 3, H, W) float and ``masks`` (B, H, W) int64
class ids with ``IGNORE_INDEX`` for unlabelled pixels. All randomness comes from the
``torch.Generator`` passed in (one draw per call seeds a numpy generator for the Beta samples and
boxes), so a seeded generator gives the same mixes on every run.

Pairing: sample ``i`` takes material from sample ``i - 1`` (cyclically) for MixUp, CutMix and SnapMix;
batches come shuffled, so the pairs are random over the dataset. Each sample is mixed with
probability ``p``; an unmixed sample keeps its own image and labels but its targets have the same
form as mixed ones, so a training loop sees one target type per method.

Each method is a random front (``mixup``, ``cutmix``, ...) over a deterministic function that
takes the drawn values explicitly (``blend``, ``paste_boxes``, ...); the book shows the latter with
hand-picked values.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SegeduError
from .classes import IGNORE_INDEX, NUM_CLASSES

#: Box (y0, x0, y1, x1) in pixels, half-open; an empty box (y1 <= y0 or x1 <= x0) pastes nothing.
Box = tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class MixedBatch:
    """The result of a mix.

    ``targets`` is (B, H, W) int64 hard labels (CutMix, SnapMix, Copy-Paste) or (B, C, H, W) float
    soft targets (MixUp) whose ignored pixels are all-zero vectors: ``-(targets * log_probs).sum(1)``
    is then 0 there, so divide the summed loss by the number of valid pixels
    (``targets.sum(1) > 0``), not by B*H*W. ``image_labels`` (B, C) is SnapMix's image-level label.
    """

    images: torch.Tensor
    targets: torch.Tensor
    image_labels: torch.Tensor | None = None


def to_soft_targets(masks: torch.Tensor, num_classes: int = NUM_CLASSES,
                    ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """One-hot (B, C, H, W) float targets from (B, H, W) labels; ignored pixels get all zeros."""
    valid = masks != ignore_index
    bad = valid & ((masks < 0) | (masks >= num_classes))
    if bad.any():
        raise SegeduError(
            f"mask label {int(masks[bad][0])} is neither a class id 0..{num_classes - 1} nor the ignore "
            f"label {ignore_index}; check how the masks were made or pass the right num_classes."
        )
    soft = torch.zeros((masks.shape[0], num_classes, *masks.shape[1:]), dtype=torch.float32, device=masks.device)
    return soft.scatter_(1, torch.where(valid, masks, 0).unsqueeze(1), valid.unsqueeze(1).float())


def _check(images: torch.Tensor, masks: torch.Tensor) -> None:
    if images.ndim != 4 or masks.ndim != 3 or images.shape[0] != masks.shape[0] \
            or images.shape[2:] != masks.shape[1:]:
        raise SegeduError(
            f"mixing needs images (B, 3, H, W) and masks (B, H, W) of the same B, H, W; got "
            f"images {tuple(images.shape)} and masks {tuple(masks.shape)}. Mix the batches a DataLoader returns."
        )


def _numpy_rng(generator: torch.Generator) -> np.random.Generator:
    # torch has no generator-driven Beta sampler; one torch draw seeds numpy for the whole call
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))


def _previous(batch_size: int) -> torch.Tensor:
    return torch.roll(torch.arange(batch_size), 1)


def _random_box(rng: np.random.Generator, height: int, width: int, area_fraction: float) -> Box:
    """CutMix's box (Yun et al. 2019, Alg. A1): sides sqrt(fraction) of the image's, a uniformly
    placed centre, clipped at the borders (so the pasted area may be smaller than asked)."""
    ratio = math.sqrt(area_fraction)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    return (max(cy - cut_h // 2, 0), max(cx - cut_w // 2, 0),
            min(cy + cut_h // 2, height), min(cx + cut_w // 2, width))


# --- MixUp -------------------------------------------------------------------------------------

def blend(images: torch.Tensor, masks: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor,
          num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX) -> MixedBatch:
    """MixUp with given pairs and weights: image ``i`` becomes ``lam[i] * x_i + (1 - lam[i]) * x_partner[i]``
    and its per-pixel soft target ``lam[i] * onehot(m_i) + (1 - lam[i]) * onehot(m_partner[i])``.

    A pixel ignored in either source (that has a non-zero weight) is ignored in the mix (all-zero
    target): its image value contains an unknown share, and giving the other label full weight
    would teach a label for content that is only partly there.
    """
    lam = lam.to(images.dtype).view(-1, 1, 1, 1)
    mixed = lam * images + (1 - lam) * images[partner]
    own = to_soft_targets(masks, num_classes, ignore_index)
    other = to_soft_targets(masks[partner], num_classes, ignore_index)
    soft = lam * own + (1 - lam) * other
    lam = lam.view(-1, 1, 1)
    ignored = ((masks == ignore_index) & (lam > 0)) | ((masks[partner] == ignore_index) & (lam < 1))
    return MixedBatch(mixed, soft * ~ignored.unsqueeze(1))


def mixup(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator, alpha: float = 0.4,
          p: float = 1.0, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX) -> MixedBatch:
    """MixUp (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization"): ``lam ~ Beta(alpha, alpha)``
    per sample (the paper's ImageNet range is alpha 0.1-0.4); see :func:`blend`."""
    _check(images, masks)
    rng = _numpy_rng(generator)
    batch = images.shape[0]
    lam = np.where(rng.random(batch) < p, rng.beta(alpha, alpha, batch), 1.0)
    return blend(images, masks, _previous(batch).to(images.device), torch.as_tensor(lam, device=images.device),
                 num_classes, ignore_index)


# --- CutMix ------------------------------------------------------------------------------------

def paste_boxes(images: torch.Tensor, masks: torch.Tensor, partner: torch.Tensor,
                boxes: Sequence[Box]) -> MixedBatch:
    """Copy ``boxes[i]`` of sample ``partner[i]`` into the same place of sample ``i``, image and mask."""
    mixed_images, mixed_masks = images.clone(), masks.clone()
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        source = int(partner[i])
        mixed_images[i, :, y0:y1, x0:x1] = images[source, :, y0:y1, x0:x1]
        mixed_masks[i, y0:y1, x0:x1] = masks[source, y0:y1, x0:x1]
    return MixedBatch(mixed_images, mixed_masks)


def cutmix(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator, alpha: float = 1.0,
           p: float = 1.0) -> MixedBatch:
    """CutMix (Yun et al. 2019, "CutMix: Regularization Strategy to Train Strong Classifiers with
    Localizable Features"): a box of area ``1 - lam``, ``lam ~ Beta(alpha, alpha)``, from another
    sample is pasted into image and mask; the mask stays hard, each pixel keeps its source's label."""
    _check(images, masks)
    rng = _numpy_rng(generator)
    batch, height, width = masks.shape
    boxes = [_random_box(rng, height, width, 1 - rng.beta(alpha, alpha)) if rng.random() < p else (0, 0, 0, 0)
             for _ in range(batch)]
    return paste_boxes(images, masks, _previous(batch), boxes)


# --- SnapMix -----------------------------------------------------------------------------------

def class_shares(masks: torch.Tensor, num_classes: int = NUM_CLASSES,
                 ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(B, C) share of each class among a sample's labelled pixels (a zero row if none is labelled)."""
    counts = to_soft_targets(masks, num_classes, ignore_index).sum(dim=(2, 3))
    return counts / counts.sum(1, keepdim=True).clamp_min(1)


def paste_resized(images: torch.Tensor, masks: torch.Tensor, partner: torch.Tensor, source_boxes: Sequence[Box],
                  target_boxes: Sequence[Box], num_classes: int = NUM_CLASSES,
                  ignore_index: int = IGNORE_INDEX) -> MixedBatch:
    """Resize ``source_boxes[i]`` of sample ``partner[i]`` into ``target_boxes[i]`` of sample ``i``
    (image bilinear, mask nearest), and label each result by its :func:`class_shares`."""
    mixed_images, mixed_masks = images.clone(), masks.clone()
    for i, ((sy0, sx0, sy1, sx1), (ty0, tx0, ty1, tx1)) in enumerate(zip(source_boxes, target_boxes)):
        if min(sy1 - sy0, sx1 - sx0, ty1 - ty0, tx1 - tx0) <= 0:
            continue
        source, size = int(partner[i]), (ty1 - ty0, tx1 - tx0)
        patch = images[source:source + 1, :, sy0:sy1, sx0:sx1]
        mixed_images[i, :, ty0:ty1, tx0:tx1] = F.interpolate(patch, size=size, mode="bilinear", align_corners=False)[0]
        labels = masks[source:source + 1, None, sy0:sy1, sx0:sx1].float()
        mixed_masks[i, ty0:ty1, tx0:tx1] = F.interpolate(labels, size=size, mode="nearest-exact")[0, 0].long()
    return MixedBatch(mixed_images, mixed_masks, class_shares(mixed_masks, num_classes, ignore_index))


def snapmix(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator, alpha: float = 1.0,
            p: float = 1.0, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX) -> MixedBatch:
    """SnapMix (Huang et al. 2021, "SnapMix: Semantically Proportional Mixing for Augmenting
    Fine-grained Data") for per-pixel labels.

    In classification, SnapMix pastes a box of the source, resized, into a box of different size and
    position in the target, and weights the two image labels by the *semantic* share of what was
    cut and pasted, measured with class activation maps, instead of by box area as CutMix does. With
    per-pixel labels every pasted pixel simply carries its source label, so for the mask SnapMix
    reduces to CutMix with resized boxes (nearest-neighbour resize of the labels). What remains
    meaningful is an image-level label, e.g. for a classification head: here
    ``image_labels[i, c]`` is the share of class ``c`` among the mixed mask's labelled pixels, the
    per-pixel counterpart of the CAM share (the ground-truth mask replaces the CAM, and is exact).
    Target and source box areas are ``1 - lam`` with independent ``lam ~ Beta(alpha, alpha)``.
    """
    _check(images, masks)
    rng = _numpy_rng(generator)
    batch, height, width = masks.shape
    source_boxes, target_boxes = [], []
    for _ in range(batch):
        mix = rng.random() < p
        target_boxes.append(_random_box(rng, height, width, 1 - rng.beta(alpha, alpha)) if mix else (0, 0, 0, 0))
        source_boxes.append(_random_box(rng, height, width, 1 - rng.beta(alpha, alpha)) if mix else (0, 0, 0, 0))
    return paste_resized(images, masks, _previous(batch), source_boxes, target_boxes, num_classes, ignore_index)


# --- Copy-Paste --------------------------------------------------------------------------------

def objects(mask: np.ndarray, classes: Iterable[int]) -> list[np.ndarray]:
    """Boolean masks of the 8-connected components of each of ``classes`` in one (H, W) mask."""
    found = []
    for label in classes:
        count, components = cv2.connectedComponents((mask == label).astype(np.uint8), connectivity=8)
        found += [components == k for k in range(1, count)]
    return found


def paste_objects(images: torch.Tensor, masks: torch.Tensor, target: int, source_image: np.ndarray,
                  source_mask: np.ndarray, chosen: Sequence[np.ndarray]) -> None:
    """Overwrite sample ``target`` (in place) with the ``chosen`` object masks' pixels of the source
    image (3, H, W) and mask (H, W)."""
    if not chosen:
        return
    region = torch.from_numpy(np.logical_or.reduce(chosen)).to(masks.device)
    images[target][:, region] = torch.from_numpy(source_image).to(images)[:, region]
    masks[target][region] = torch.from_numpy(source_mask).to(masks)[region]


def _jitter(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, flip: bool,
            scale_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Random horizontal flip and scale about the centre of a (3, H, W) image and its mask; area
    scaled in from outside the image is unlabelled (``IGNORE_INDEX``), so it is never pasted."""
    height, width = mask.shape
    scale = rng.uniform(*scale_range)
    mirror = -1.0 if flip and rng.random() < 0.5 else 1.0
    # x' = scale * mirror * (x - cx) + cx,  y' = scale * (y - cy) + cy
    cx, cy = (width - 1) / 2, (height - 1) / 2
    affine = np.array([[scale * mirror, 0, cx - scale * mirror * cx], [0, scale, cy - scale * cy]])
    hwc = np.ascontiguousarray(image.transpose(1, 2, 0))
    moved = cv2.warpAffine(hwc, affine, (width, height), flags=cv2.INTER_LINEAR).reshape(hwc.shape)
    moved_mask = cv2.warpAffine(mask.astype(np.uint8), affine, (width, height), flags=cv2.INTER_NEAREST,
                                borderValue=IGNORE_INDEX)
    return moved.transpose(2, 0, 1), moved_mask.astype(mask.dtype)


def copypaste(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator, classes: Iterable[int],
              p: float = 0.5, flip: bool = True, scale_range: tuple[float, float] = (0.75, 1.25)) -> MixedBatch:
    """Simple Copy-Paste (Ghiasi et al. 2021, "Simple Copy-Paste is a Strong Data Augmentation
    Method for Instance Segmentation") with semantic masks: objects are the connected components of
    ``classes`` (e.g. the rare ones) in a source mask.

    Each sample, with probability ``p``, receives a random non-empty subset of the objects of a
    random other sample of the batch that has any, after a random horizontal flip (``flip``) and
    scale (``scale_range``, about the image centre) of that source. Pasted pixels take the source's
    image values and labels; what they cover is lost, as in the paper.
    """
    _check(images, masks)
    classes = list(classes)
    rng = _numpy_rng(generator)
    mask_array, image_array = masks.cpu().numpy(), images.detach().float().cpu().numpy()
    has_objects = np.isin(mask_array, classes).any(axis=(1, 2))
    mixed_images, mixed_masks = images.clone(), masks.clone()
    for target in range(masks.shape[0]):
        donors = np.flatnonzero(has_objects & (np.arange(masks.shape[0]) != target))
        if rng.random() >= p or donors.size == 0:
            continue
        source = int(rng.choice(donors))
        source_image, source_mask = _jitter(image_array[source], mask_array[source], rng, flip, scale_range)
        found = objects(source_mask, classes)
        if found:
            keep = rng.choice(len(found), size=int(rng.integers(1, len(found) + 1)), replace=False)
            paste_objects(mixed_images, mixed_masks, target, source_image, source_mask, [found[k] for k in keep])
    return MixedBatch(mixed_images, mixed_masks)


# --- by name -----------------------------------------------------------------------------------

MIXES = {"mixup": mixup, "cutmix": cutmix, "snapmix": snapmix, "copypaste": copypaste}


def apply(name: str, images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator, **params) -> MixedBatch:
    """Run the mix called ``name`` (a key of :data:`MIXES`) with its keyword ``params``."""
    if name not in MIXES:
        raise SegeduError(f"unknown batch mix {name!r}; choose one of {', '.join(MIXES)}.")
    return MIXES[name](images, masks, generator, **params)


class BatchMix:
    """A mix chosen by name with fixed parameters, e.g. ``BatchMix("copypaste", classes=[9], p=0.5)``;
    call it as ``mix(images, masks, generator)`` in the training loop."""

    def __init__(self, name: str, **params) -> None:
        if name not in MIXES:
            raise SegeduError(f"unknown batch mix {name!r}; choose one of {', '.join(MIXES)}.")
        self.name, self.params = name, params

    def __repr__(self) -> str:
        return f"BatchMix({', '.join([repr(self.name)] + [f'{k}={v!r}' for k, v in self.params.items()])})"

    def __call__(self, images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator) -> MixedBatch:
        return apply(self.name, images, masks, generator, **self.params)
