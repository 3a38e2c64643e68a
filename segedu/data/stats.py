"""Dataset statistics the EDA chapter reports and later chapters act on.

* :func:`pixel_table`: pixels of each class in each image, from the cached semantic masks (what
  the model is trained on, after the painting order); ignore pixels are left out.
* :func:`pixel_counts_and_presence`: how often each class occurs, by pixel and by image.
* :func:`image_pixels`: per class, the pixels of the images that contain it (for median frequency).
* :func:`object_table`: one row per annotation (class, pixel area, bbox side), from the COCO file.
* :func:`class_weights`: loss weights from class frequencies. ``inverse`` (1/f) and
  ``sqrt_inverse`` (1/sqrt f) use ``f_c`` = pixels of class c / all pixels of the dataset.
  ``median_frequency`` is median frequency balancing as SegNet defines it (Badrinarayanan et al.
  2017, "SegNet: A Deep Convolutional Encoder-Decoder Architecture for Image Segmentation",
  Sec. 3.1, after Eigen & Fergus 2015, "Predicting Depth, Surface Normals and Semantic Labels with
  a Common Multi-Scale Convolutional Architecture", Sec. 4.3): ``freq(c)`` = pixels of class c /
  pixels of the images where c is present, and the weight is ``median freq / freq(c)``. That
  frequency measures how much of an image a class covers when it occurs, not how often it occurs,
  so it needs the per-image totals of :func:`image_pixels`. Classes with no pixel get weight 0.
* :func:`cooccurrence`: how many images contain both class i and class j.
"""
from __future__ import annotations

import numpy as np

from ..errors import SegeduError
from .classes import IGNORE_INDEX
from .coco import CocoData
from .masks import MaskCache

WEIGHTINGS = ("inverse", "sqrt_inverse", "median_frequency")


def pixel_table(coco_data: CocoData, cache: MaskCache | None = None) -> np.ndarray:
    """``(N, C)`` int64 pixel count of each class in each image; ignore pixels excluded."""
    cache = cache or MaskCache(coco_data)
    c = coco_data.num_classes
    table = np.zeros((len(coco_data), c), dtype=np.int64)
    for i in range(len(coco_data)):
        m = cache.get(i)
        table[i] = np.bincount(m[m != IGNORE_INDEX].ravel(), minlength=c)[:c]
    return table


def pixel_counts_and_presence(coco_data: CocoData, cache: MaskCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(C,)`` pixel count per class and ``(N, C)`` bool presence per image; ignore pixels excluded."""
    table = pixel_table(coco_data, cache)
    return table.sum(axis=0), table > 0


def image_pixels(table) -> np.ndarray:
    """``(C,)``: for each class, the (non-ignore) pixels of all images that contain it, from the
    ``(N, C)`` :func:`pixel_table`; the denominator of SegNet's ``freq(c)``. 0 for absent classes."""
    table = np.asarray(table, dtype=np.int64)
    if table.ndim != 2:
        raise SegeduError(f"image_pixels needs the (N images, C classes) table of pixel_table; got {table.shape}.")
    return (table > 0).T.astype(np.int64) @ table.sum(axis=1)


def object_table(coco_data: CocoData) -> dict[str, np.ndarray]:
    """Per annotation: ``cls`` (segedu class id), ``area`` (pixels), ``side`` (sqrt of area),
    ``image`` (index into ``coco_data.images``); crowd and void annotations are left out."""
    rows = []
    for index, image in enumerate(coco_data.images):
        for ann in coco_data.annotations(image):
            cls = coco_data.category_to_class[ann["category_id"]]
            if ann.get("iscrowd", 0) == 0 and cls != IGNORE_INDEX:
                rows.append((cls, float(ann["area"]), index))
    arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
    return {"cls": arr[:, 0].astype(np.int64), "area": arr[:, 1], "side": np.sqrt(arr[:, 1]),
            "image": arr[:, 2].astype(np.int64)}


def class_weights(pixel_counts, method: str = "median_frequency", image_pixels=None) -> np.ndarray:
    """Loss weight per class from its pixel count (see the module docstring for the methods).

    ``image_pixels[c]``, the pixels of the images containing class c (:func:`image_pixels`), is
    required by ``median_frequency`` and unused by the others.
    """
    counts = np.asarray(pixel_counts, dtype=np.float64)
    if method not in WEIGHTINGS:
        raise SegeduError(f"unknown class weighting {method!r}; choose one of {', '.join(WEIGHTINGS)}.")
    seen = counts > 0
    weights = np.zeros_like(counts)
    if method == "median_frequency":
        if image_pixels is None:
            raise SegeduError("median_frequency weighting needs image_pixels (per class, the pixels of the images "
                              "containing it): pass stats.image_pixels(stats.pixel_table(data)).")
        totals = np.asarray(image_pixels, dtype=np.float64)
        if totals.shape != counts.shape or (totals[seen] < counts[seen]).any():
            raise SegeduError(f"image_pixels must give, for each of the {counts.size} classes, at least its own pixel "
                              f"count; got shape {totals.shape}. Build it with stats.image_pixels from the same table.")
        freq = counts[seen] / totals[seen]  # SegNet: share of the images where the class occurs
        weights[seen] = np.median(freq) / freq
        return weights
    freq = counts / counts.sum()  # share of all pixels of the dataset
    if method == "inverse":
        weights[seen] = 1.0 / freq[seen]
    else:
        weights[seen] = 1.0 / np.sqrt(freq[seen])
    return weights


def cooccurrence(presence: np.ndarray) -> np.ndarray:
    """``(C, C)`` number of images holding both classes; the diagonal counts images per class."""
    p = np.asarray(presence, dtype=np.int64)
    return p.T @ p
