"""Pseudo-labelling's labels: the confident part of a model's prediction kept as training data,
and the COCO file that holds it. The prediction itself is :mod:`segedu.inference.pseudo`'s.

The method is Lee's "Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for
Deep Neural Networks" (ICML 2013 workshop): the class of maximum predicted probability is taken as
if it were the true label. For segmentation only confident pixels are kept, as in the
self-training of Zou et al., "Unsupervised Domain Adaptation for Semantic Segmentation via
Class-Balanced Self-Training" (ECCV 2018), and the common competition recipe: the rest is marked
IGNORE_INDEX, so no loss counts it. Averaging the softmax of several checkpoints first (an
ensemble, or the folds of a cross-validation) makes the labels better than any single model's.

Two rules decide what is kept (:func:`pseudo_label_masks`):

* ``mode="pixel"``: a pixel keeps its arg-max class when its maximum probability is at least
  ``threshold``; every other pixel is IGNORE_INDEX. ``threshold`` may be one number per class (the
  arg-max class's applies): Zou et al.'s class-balanced self-training (CBST, Sec. 3.2) sets each
  class's threshold so that the same share of the pixels predicted as that class is kept, so a
  rare class, whose pixels the model is less sure of, is not crowded out by the easy ones
  (:func:`segedu.inference.pseudo.confidence_threshold` with ``class_balanced=True``).
* ``mode="image"``: an image keeps the arg-max class on *every* pixel when the mean over its
  pixels of the maximum probability is at least ``threshold``; otherwise the whole image is
  IGNORE_INDEX (and :func:`write_pseudo_coco` leaves it out).

The file :func:`write_pseudo_coco` writes (for :func:`segedu.inference.pseudo.write_pseudo_labels`)
is an ordinary COCO file that :class:`segedu.data.dataset.CocoSegmentation` reads back into
exactly those masks:

* the training split's ``images`` and ``annotations`` are copied unchanged, then the pseudo
  images follow with new ids (their ``file_name``s stay relative to the dataset folder);
* per pseudo image and non-background class, one ``iscrowd=0`` annotation whose segmentation is
  pycocotools' compressed RLE of the confident pixels of that class (exact by construction);
  background pixels need none, as masks start at 0;
* per pseudo image with low-confidence pixels, one ``iscrowd=1`` RLE annotation covering them, of
  the void category ``__ignore__`` (:data:`segedu.data.convert.IGNORE_CATEGORY`, added to the
  categories unless the file has a void category already): :mod:`segedu.data.masks` paints
  crowd annotations and void categories as IGNORE_INDEX, so either rule alone would do.
  Regions of one image never overlap, so the painting order cannot change the result.

An image with no kept pixel is left out: a batch of only ignored pixels has no loss to average.
Train on the file with ``TrainConfig(train_split="pseudo.json")``.
"""
from __future__ import annotations

import dataclasses
import json
import numbers
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils

from ..errors import SegeduError
from ..fileio import write_bytes_atomic
from . import coco, dataset
from .classes import IGNORE_INDEX
from .convert import IGNORE_CATEGORY

#: the ways :func:`pseudo_label_masks` decides what is kept
MODES = ("pixel", "image")


def is_one_threshold(threshold) -> bool:
    """Whether ``threshold`` is one number (a Python, numpy or 0-d torch number), not one per class."""
    return isinstance(threshold, numbers.Real) or getattr(threshold, "ndim", None) == 0


def pseudo_label_masks(probabilities: torch.Tensor, threshold: float | Sequence[float] = 0.9, mode: str = "pixel",
                       ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(B, H, W) int64 pseudo labels from class probabilities (B, C, H, W); see the module docstring.

    ``mode="pixel"``: arg-max class where the maximum probability is >= ``threshold`` (one number,
    or one per class: the arg-max class's), else ``ignore_index``. ``mode="image"``: the arg-max
    class everywhere in images whose mean maximum probability is >= ``threshold`` (one number),
    ``ignore_index`` everywhere in the others.
    """
    if mode not in MODES:
        raise SegeduError(f"unknown pseudo-label mode {mode!r}; choose one of {', '.join(MODES)}.")
    if probabilities.dim() != 4:
        raise SegeduError(f"probabilities must be (B, C, H, W), got shape {tuple(probabilities.shape)}.")
    confidence, labels = probabilities.max(dim=1)
    per_class = not is_one_threshold(threshold)
    if per_class and (mode != "pixel" or len(threshold) != probabilities.shape[1]):
        raise SegeduError(f"per-class thresholds need mode='pixel' and one threshold per class "
                          f"({probabilities.shape[1]}); got {len(threshold)} in mode {mode!r}.")
    if mode == "pixel":
        if per_class:
            threshold = torch.as_tensor(list(threshold), dtype=confidence.dtype, device=confidence.device)[labels]
        keep = confidence >= threshold
    else:
        keep = (confidence.flatten(1).mean(dim=1) >= threshold)[:, None, None].expand_as(labels)
    return torch.where(keep, labels, torch.full_like(labels, ignore_index))


@dataclasses.dataclass
class PseudoLabelSummary:
    """What :func:`write_pseudo_coco` (for :func:`segedu.inference.pseudo.write_pseudo_labels`) wrote."""

    path: Path
    checkpoints: list[str]
    split: str
    #: one threshold, or one per class (class-balanced)
    threshold: float | list[float]
    mode: str
    #: images copied from the training split
    train_images: int
    #: images of ``split`` predicted, and those written (the others kept no pixel)
    predicted_images: int
    images: int
    #: kept pixels / all predicted pixels of ``split``
    kept_fraction: float
    #: class name -> kept pixels of that class (Background included)
    class_pixels: dict[str, int]

    def __str__(self) -> str:
        per_class = isinstance(self.threshold, list)
        rule = "a threshold per class" if per_class else f"threshold {self.threshold:g}"
        lines = [f"segedu pseudo-label: wrote {self.path}",
                 f"  {self.images} of {self.predicted_images} {self.split} images pseudo-labelled "
                 f"({self.mode} mode, {rule}, {len(self.checkpoints)} checkpoint(s)), "
                 f"{100 * self.kept_fraction:.1f}% of their pixels kept; {self.train_images} training images copied",
                 f"  {'class':<14}{'pixels':>10}" + (f"{'threshold':>11}" if per_class else "")]
        thresholds = self.threshold if per_class else [None] * len(self.class_pixels)
        lines += [f"  {name:<14}{count:>10}" + (f"{t:>11.4f}" if per_class else "")
                  for (name, count), t in zip(self.class_pixels.items(), thresholds)]
        return "\n".join(lines)


def _rle_annotation(region: np.ndarray) -> dict:
    """``segmentation`` (compressed RLE), ``area`` and ``bbox`` of a bool (H, W) region."""
    rle = mask_utils.encode(np.asfortranarray(region.astype(np.uint8)))
    return {"segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)]}


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8-sig"))


def write_pseudo_coco(root: Path, unlabelled, masks: Iterable[tuple[int, np.ndarray]], out_json: str | Path,
                      class_names: Sequence[str], checkpoints: Sequence, split: str,
                      threshold: float | Sequence[float], mode: str,
                      train_split: str | None = "train") -> PseudoLabelSummary:
    """Write ``train_split``'s images and annotations, then the pseudo-labelled images of ``split``, as the
    COCO file ``out_json`` (atomically); see the module docstring.

    ``root``: the dataset folder; ``unlabelled``: ``split``'s :class:`~segedu.data.dataset.CocoSegmentation`;
    ``masks``: its ``(index, pseudo-label mask)`` pairs (int (H, W), :func:`pseudo_label_masks`), by increasing
    index, read only after the training split is checked; ``class_names``: the classes the masks number;
    ``checkpoints``, ``threshold``, ``mode``: what made the masks, recorded in the file and the summary.
    Raises SegeduError for a training split with other classes or images in both splits.
    """
    class_names = tuple(class_names)
    if train_split is not None:
        base_file = dataset.annotation_file(root, train_split)
        base = coco.load(base_file, images_dir=root, check_images=False)
        if base.class_names != class_names:
            raise SegeduError(f"{base_file} has the classes {list(base.class_names)} but the checkpoint predicts "
                              f"{list(class_names)}; pseudo-label with a model trained on this kind of data.")
        base_json = _read_json(base_file)
        images, annotations = list(base_json["images"]), list(base_json.get("annotations", []))
        categories, licenses = list(base_json["categories"]), base_json.get("licenses", [])
        category_to_class = base.category_to_class
    else:
        split_json = _read_json(unlabelled.coco.ann_file)
        images, annotations, categories, licenses = [], [], list(split_json["categories"]), split_json.get("licenses", [])
        category_to_class = unlabelled.coco.category_to_class
    category_of = {cls: cat for cat, cls in sorted(category_to_class.items(), reverse=True) if cls != IGNORE_INDEX}
    void = [cat["id"] for cat in categories if coco.is_void_name(cat["name"])]
    if void:
        ignore_category = void[0]
    else:
        ignore_category = max(cat["id"] for cat in categories) + 1
        categories.append({"id": ignore_category, "name": IGNORE_CATEGORY, "supercategory": ""})
    taken = {img["file_name"] for img in images}
    train_images = len(images)
    next_image = max((img["id"] for img in images), default=-1) + 1
    next_annotation = max((ann["id"] for ann in annotations), default=-1) + 1

    class_pixels = np.zeros(len(class_names), np.int64)
    total = written = predicted = 0

    for index, mask in masks:
        record = unlabelled.coco.images[index]
        predicted += 1
        total += mask.size
        if (record["height"], record["width"]) != mask.shape:
            raise SegeduError(f"{unlabelled.coco.image_path(record)} is {mask.shape[1]}x{mask.shape[0]} but "
                              f"{unlabelled.coco.ann_file} (image id {record['id']}) says "
                              f"{record['width']}x{record['height']}")
        kept = mask != IGNORE_INDEX
        if not kept.any():
            continue
        if record["file_name"] in taken:
            raise SegeduError(f"{record['file_name']} is in both {split!r} and {train_split!r}; pseudo-label "
                              "images that are not in the training split.")
        class_pixels += np.bincount(mask[kept].ravel(), minlength=len(class_names))[:len(class_names)]
        image_id, written = next_image, written + 1
        next_image += 1
        images.append({**record, "id": image_id})
        regions = [(cls, mask == cls, 0) for cls in np.unique(mask[kept]).tolist() if cls != 0]
        if not kept.all():
            regions.append((IGNORE_INDEX, ~kept, 1))
        for cls, region, crowd in regions:
            if cls != IGNORE_INDEX and cls not in category_of:
                raise SegeduError(f"class {class_names[cls]!r} has no category in the categories of "
                                  f"{train_split or split!r}; add it to the file's categories.")
            category = ignore_category if crowd else category_of[cls]
            annotations.append({"id": next_annotation, "image_id": image_id, "category_id": category,
                                "iscrowd": crowd, **_rle_annotation(region)})
            next_annotation += 1

    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    # a plain float, or one per class as a plain list, for the file and the summary
    threshold = float(threshold) if is_one_threshold(threshold) else [float(t) for t in threshold]
    info = {"description": "pseudo labels written by segedu.data.pseudo",
            "checkpoints": [str(p) for p in checkpoints],
            "split": str(split), "train_split": None if train_split is None else str(train_split),
            "threshold": threshold, "mode": mode}
    result = {"info": info, "licenses": licenses, "images": images, "annotations": annotations,
              "categories": categories}
    write_bytes_atomic(out_json, json.dumps(result, separators=(",", ":")).encode("utf-8"))
    coco.load(out_json, images_dir=root, check_images=False)  # what was written reads back, or a clear error
    return PseudoLabelSummary(
        path=out_json, checkpoints=[str(p) for p in checkpoints], split=str(split),
        threshold=threshold, mode=mode,
        train_images=train_images, predicted_images=predicted, images=written,
        kept_fraction=float(class_pixels.sum() / total) if total else 0.0,
        class_pixels={name: int(n) for name, n in zip(class_names, class_pixels)})
