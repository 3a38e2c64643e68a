"""Dataset statistics the EDA chapter reports and later chapters act on.

* :func:`pixel_counts` / :func:`presence`: how often each class occurs, by pixel and by image,
  from the cached semantic masks (what the model is trained on, after the painting order).
* :func:`object_table`: one row per annotation (class, pixel area, bbox side), from the COCO file.
* :func:`class_weights`: loss weights from pixel frequencies: ``inverse`` (1/f), ``sqrt_inverse``
  (1/sqrt f) or ``median_frequency`` (median f / f, Eigen & Fergus 2015, "Predicting Depth,
  Surface Normals and Semantic Labels with a Common Multi-Scale Convolutional Architecture",
  Sec. 4.3, as used by SegNet). Classes with no pixel get weight 0.
* :func:`cooccurrence`: how many images contain both class i and class j.
"""
from __future__ import annotations

import numpy as np

from .classes import IGNORE_INDEX
from .coco import CocoData
from .masks import MaskCache

WEIGHTINGS = ("inverse", "sqrt_inverse", "median_frequency")


def pixel_counts_and_presence(coco_data: CocoData, cache: MaskCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(C,)`` pixel count per class and ``(N, C)`` bool presence per image; ignore pixels excluded."""
    cache = cache or MaskCache(coco_data)
    c = coco_data.num_classes
    counts = np.zeros(c, dtype=np.int64)
    present = np.zeros((len(coco_data), c), dtype=bool)
    for i in range(len(coco_data)):
        m = cache.get(i)
        per_image = np.bincount(m[m != IGNORE_INDEX].ravel(), minlength=c)[:c]
        counts += per_image
        present[i] = per_image > 0
    return counts, present


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


def class_weights(pixel_counts, method: str = "median_frequency") -> np.ndarray:
    """Loss weight per class from its pixel count (see the module docstring for the methods)."""
    counts = np.asarray(pixel_counts, dtype=np.float64)
    if method not in WEIGHTINGS:
        from ..errors import SegeduError

        raise SegeduError(f"unknown class weighting {method!r}; choose one of {', '.join(WEIGHTINGS)}.")
    freq = counts / counts.sum()
    seen = freq > 0
    weights = np.zeros_like(freq)
    if method == "inverse":
        weights[seen] = 1.0 / freq[seen]
    elif method == "sqrt_inverse":
        weights[seen] = 1.0 / np.sqrt(freq[seen])
    else:
        weights[seen] = np.median(freq[seen]) / freq[seen]
    return weights


def cooccurrence(presence: np.ndarray) -> np.ndarray:
    """``(C, C)`` number of images holding both classes; the diagonal counts images per class."""
    p = np.asarray(presence, dtype=np.int64)
    return p.T @ p
