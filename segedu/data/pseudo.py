"""Pseudo-labelling: a trained model labels the unlabelled test images, and the confident part of
its prediction becomes extra training data.

The method is Lee's "Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for
Deep Neural Networks" (ICML 2013 workshop): the class of maximum predicted probability is taken as
if it were the true label. For segmentation only confident pixels are kept, as in the
self-training of Zou et al., "Unsupervised Domain Adaptation for Semantic Segmentation via
Class-Balanced Self-Training" (ECCV 2018), and the common competition recipe: the rest is marked
IGNORE_INDEX, so no loss counts it. Averaging the softmax of several checkpoints first (an
ensemble, or the folds of a cross-validation) makes the labels better than any single model's.

Two rules decide what is kept (:func:`pseudo_label_masks`):

* ``mode="pixel"``: a pixel keeps its arg-max class when its maximum probability is at least
  ``threshold``; every other pixel is IGNORE_INDEX.
* ``mode="image"``: an image keeps the arg-max class on *every* pixel when the mean over its
  pixels of the maximum probability is at least ``threshold``; otherwise the whole image is
  IGNORE_INDEX (and :func:`write_pseudo_labels` leaves it out).

The file :func:`write_pseudo_labels` writes is an ordinary COCO file that
:class:`segedu.data.dataset.CocoSegmentation` reads back into exactly those masks:

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
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils

from ..errors import SegeduError
from .classes import IGNORE_INDEX

#: the ways :func:`pseudo_label_masks` decides what is kept
MODES = ("pixel", "image")


def pseudo_label_masks(probabilities: torch.Tensor, threshold: float = 0.9, mode: str = "pixel",
                       ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(B, H, W) int64 pseudo labels from class probabilities (B, C, H, W); see the module docstring.

    ``mode="pixel"``: arg-max class where the maximum probability is >= ``threshold``, else
    ``ignore_index``. ``mode="image"``: the arg-max class everywhere in images whose mean maximum
    probability is >= ``threshold``, ``ignore_index`` everywhere in the others.
    """
    if mode not in MODES:
        raise SegeduError(f"unknown pseudo-label mode {mode!r}; choose one of {', '.join(MODES)}.")
    if probabilities.dim() != 4:
        raise SegeduError(f"probabilities must be (B, C, H, W), got shape {tuple(probabilities.shape)}.")
    confidence, labels = probabilities.max(dim=1)
    if mode == "pixel":
        keep = confidence >= threshold
    else:
        keep = (confidence.flatten(1).mean(dim=1) >= threshold)[:, None, None].expand_as(labels)
    return torch.where(keep, labels, torch.full_like(labels, ignore_index))


@dataclasses.dataclass
class PseudoLabelSummary:
    """What :func:`write_pseudo_labels` wrote."""

    path: Path
    checkpoints: list[str]
    split: str
    threshold: float
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
        lines = [f"segedu pseudo-label: wrote {self.path}",
                 f"  {self.images} of {self.predicted_images} {self.split} images pseudo-labelled "
                 f"({self.mode} mode, threshold {self.threshold:g}, {len(self.checkpoints)} checkpoint(s)), "
                 f"{100 * self.kept_fraction:.1f}% of their pixels kept; {self.train_images} training images copied",
                 f"  {'class':<14}{'pixels':>10}"]
        lines += [f"  {name:<14}{count:>10}" for name, count in self.class_pixels.items()]
        return "\n".join(lines)


def _rle_annotation(region: np.ndarray) -> dict:
    """``segmentation`` (compressed RLE), ``area`` and ``bbox`` of a bool (H, W) region."""
    rle = mask_utils.encode(np.asfortranarray(region.astype(np.uint8)))
    return {"segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)]}


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8-sig"))


def _load(checkpoints, device, caller: str) -> tuple[list, list]:
    """(paths, [(model, config, payload)]) of one checkpoint or run directory, or several."""
    from ..engine.evaluate import load_model  # the engine imports segedu.data: import it late

    paths = [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints)
    if not paths:
        raise SegeduError(f"{caller} needs at least one checkpoint or run directory.")
    return paths, [load_model(path, device) for path in paths]


def _mean_probabilities(paths, loaded, images, batch_size: int):
    """Per batch of ``images`` (a dataset; batches of one image size, so images of any size work):
    the batch's dataset indices and the mean softmax of the ``loaded`` checkpoints, each at its own
    training size (:func:`segedu.inference.ensemble.ensemble_probabilities`)."""
    from ..inference.ensemble import ensemble_probabilities, member_from
    from . import dataset

    members = [member_from(*checkpoint, name=str(path)) for path, checkpoint in zip(paths, loaded)]
    device = next(members[0].model.parameters()).device
    loader = dataset.make_eval_loader(images, batch_size)
    for indices, (batch, _) in zip(loader.batch_sampler, loader):
        yield indices, ensemble_probabilities(members, batch.to(device))


def confidence_threshold(checkpoints: str | Path | Sequence[str | Path], data_dir: str | Path, keep_fraction: float,
                         split: str = "test", device="auto", batch_size: int = 4) -> float:
    """The pixel threshold that keeps the ``keep_fraction`` most confident pixels of ``split``.

    A model trained briefly is rarely 90% sure of anything, so a fixed threshold such as 0.9 may keep
    no pixel at all; choosing the threshold as a quantile of the models' own confidence (the mean
    softmax's maximum over ``split``'s pixels) keeps a known share instead, the most confident first.
    """
    from . import dataset

    if not 0.0 < keep_fraction <= 1.0:
        raise SegeduError(f"keep_fraction is the share of pixels to keep, in (0, 1]; got {keep_fraction}.")
    paths, loaded = _load(checkpoints, device, "confidence_threshold")
    unlabelled = dataset.CocoSegmentation(Path(data_dir), split, cache_images=False)
    confidence = torch.cat([p.max(dim=1).values.flatten().cpu()
                            for _, p in _mean_probabilities(paths, loaded, unlabelled, batch_size)])
    # the largest threshold t with P(confidence >= t) >= keep_fraction: the (1 - keep_fraction) quantile, exactly
    ordered = confidence.sort(descending=True).values
    return float(ordered[max(0, math.ceil(keep_fraction * len(ordered)) - 1)])


def write_pseudo_labels(checkpoints: str | Path | Sequence[str | Path], data_dir: str | Path | None, out_json: str | Path,
                        split: str = "test", threshold: float = 0.9, mode: str = "pixel", device="auto",
                        train_split: str | None = "train", batch_size: int = 4) -> PseudoLabelSummary:
    """Pseudo-label ``split`` of ``data_dir`` and write it, with ``train_split``, as the COCO file ``out_json``.

    Args:
        checkpoints: a run directory or checkpoint, or several: their softmax probabilities are
            averaged (each model sees the images at its own training size).
        data_dir: the dataset folder (None: the first checkpoint's training data).
        out_json: the COCO file to write (atomically: a temporary file renamed into place).
        split: the unlabelled images: ``test`` or an annotation file (its annotations are not used).
        threshold, mode: see :func:`pseudo_label_masks`.
        device: where the models run (``auto``, ``cpu``, ``cuda``, or a ``torch.device``).
        train_split: the labelled images copied unchanged in front of the pseudo images
            (``train``, ``val``, a file), or None for the pseudo images alone.
        batch_size: images per forward pass (images are batched by size, so any sizes work).

    Returns a :class:`PseudoLabelSummary`; raises SegeduError for checkpoints that disagree on
    the classes, a training split with other classes, or images in both splits.
    """
    from ..engine.trainer import resolve_data_dir  # the engine imports segedu.data: import it late
    from . import coco, dataset
    from .convert import IGNORE_CATEGORY
    from ..fileio import write_bytes_atomic

    if mode not in MODES:
        raise SegeduError(f"unknown pseudo-label mode {mode!r}; choose one of {', '.join(MODES)}.")
    paths, loaded = _load(checkpoints, device, "write_pseudo_labels")
    _, first_config, first_payload = loaded[0]
    class_names = tuple(first_payload["class_names"])
    for path, (_, _, payload) in zip(paths[1:], loaded[1:]):
        if tuple(payload["class_names"]) != class_names:
            raise SegeduError(f"{path} predicts the classes {list(payload['class_names'])} but {paths[0]} "
                              f"predicts {list(class_names)}; average checkpoints of the same classes.")
    root = Path(data_dir) if data_dir is not None else resolve_data_dir(first_config)
    if not root.is_dir():
        raise SegeduError(f"data_dir {str(root)!r} does not exist; point it at the dataset folder.")

    unlabelled = dataset.CocoSegmentation(root, split, cache_images=False)  # read once: no item cache
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

    def per_image():
        for indices, probabilities in _mean_probabilities(paths, loaded, unlabelled, batch_size):
            yield from zip(indices, pseudo_label_masks(probabilities, threshold, mode).cpu().numpy())

    for index, mask in dataset.in_order(per_image()):  # the split file's order, whatever the batching
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
    info = {"description": "pseudo labels written by segedu.data.pseudo", "checkpoints": [str(p) for p in paths],
            "split": str(split), "train_split": None if train_split is None else str(train_split),
            "threshold": threshold, "mode": mode}
    result = {"info": info, "licenses": licenses, "images": images, "annotations": annotations,
              "categories": categories}
    write_bytes_atomic(out_json, json.dumps(result, separators=(",", ":")).encode("utf-8"))
    coco.load(out_json, images_dir=root, check_images=False)  # what was written reads back, or a clear error
    return PseudoLabelSummary(
        path=out_json, checkpoints=[str(p) for p in paths], split=str(split), threshold=threshold, mode=mode,
        train_images=train_images, predicted_images=predicted, images=written,
        kept_fraction=float(class_pixels.sum() / total) if total else 0.0,
        class_pixels={name: int(n) for name, n in zip(class_names, class_pixels)})
