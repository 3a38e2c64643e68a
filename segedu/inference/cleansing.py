"""Data cleansing: find the training images whose labels are probably wrong, and relabel them.

Two things a competition team does with a trained model and noisy labels:

* **rank** the training images by how much the model disagrees with their labels
  (:func:`image_scores`: per image, the mean cross-entropy of the label under the model, ``loss``,
  and the share of labelled pixels where the model's class differs, ``disagreement``), then look
  at (or drop) the top of the ranking. On the generated dataset the corruption is known
  (:mod:`segedu.data.noise`), so :func:`precision_at_k` says how many of the top ``k`` images
  really were corrupted; a random ranking finds the corruption rate.
* **relabel** (:func:`relabel`): where the models are confident, their class replaces the label;
  elsewhere the label stays. This is pseudo-labelling (:mod:`segedu.data.pseudo`) applied to the
  training images themselves.

A model scores the images it was trained on more kindly than unseen ones, the wrong labels
included: it partly learned them. Scoring each image with models that did not train on it
(out-of-fold, as in K-fold validation) avoids that; :func:`image_scores` takes any checkpoints
and any annotation file, so both ways are one call.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data import IGNORE_INDEX, coco, dataset
from ..data.convert import IGNORE_CATEGORY
from ..data.pseudo import _rle_annotation
from ..errors import SegeduError
from ..fileio import write_bytes_atomic
from . import ensemble
from .predictor import Predictor

SCORES = ("loss", "disagreement")


@dataclasses.dataclass(frozen=True)
class ImageScore:
    """How much the model disagrees with one image's labels."""

    image_id: int
    file_name: str
    loss: float          # mean -log p(label) over labelled pixels
    disagreement: float  # share of labelled pixels whose predicted class differs from the label
    pixels: int          # labelled (non-void) pixels


def _members(checkpoints, device):
    paths = [checkpoints] if isinstance(checkpoints, (str, Path, ensemble.Member)) else list(checkpoints)
    if not paths:
        raise SegeduError("data cleansing needs at least one checkpoint or run directory.")
    return ensemble.load_members(paths, device)  # checked to predict the same classes; Members as they are


def _probabilities(members, data_dir, split, batch_size: int):
    """(dataset, iterator of (dataset indices, mean probabilities (B, C, H, W), labels (B, H, W))) over
    ``split``, in batches of one image size (:func:`segedu.data.dataset.make_eval_loader`), on the CPU."""
    images = dataset.CocoSegmentation(Path(data_dir), str(split), cache_images=False)
    if images.is_test:
        raise SegeduError(f"{images.coco.ann_file} has no annotations; data cleansing compares predictions "
                          "with labels, so it needs a labelled file.")

    def batches():
        loader = dataset.make_eval_loader(images, batch_size)
        for indices, probabilities, labels in Predictor(members).batches(loader, probabilities=True):
            yield indices, probabilities.cpu(), labels.cpu()

    return images, batches()


@torch.no_grad()
def image_scores(checkpoints, data_dir: str | Path, split: str | Path,
                 device="cpu", batch_size: int = 4) -> list[ImageScore]:
    """:class:`ImageScore` of every image of ``split`` (an annotation file, or ``train``/``val``), in
    file order, from the averaged probabilities of ``checkpoints``: run directories, checkpoint files
    or :class:`~segedu.inference.ensemble.Member` objects, one or several."""
    members = _members(checkpoints, device)
    images, batches = _probabilities(members, data_dir, split, batch_size)

    def per_image():
        for indices, probs, labels in batches:
            valid = labels != IGNORE_INDEX
            safe = torch.where(valid, labels, 0)
            log_p = probs.clamp_min(1e-12).log().gather(1, safe.unsqueeze(1)).squeeze(1)
            wrong = probs.argmax(1) != labels
            for b, index in enumerate(indices):
                record = images.coco.images[index]
                n = int(valid[b].sum())
                yield index, ImageScore(int(record["id"]), record["file_name"],
                                        float(-(log_p[b][valid[b]]).mean()) if n else 0.0,
                                        float((wrong[b] & valid[b]).sum() / n) if n else 0.0, n)

    return [score for _, score in dataset.in_order(per_image())]  # file order, whatever the batching


def rank(scores: Sequence[ImageScore], by: str = "loss") -> list[int]:
    """Image ids, most suspicious first (largest ``by``: ``loss`` or ``disagreement``; ties by id)."""
    if by not in SCORES:
        raise SegeduError(f"rank by one of {', '.join(SCORES)}, not {by!r}.")
    return [s.image_id for s in sorted(scores, key=lambda s: (-getattr(s, by), s.image_id))]


def precision_at_k(ranking: Sequence[int], corrupted, k: int) -> float:
    """Share of the first ``k`` ids of ``ranking`` that are in ``corrupted``."""
    if not 0 < k <= len(ranking):
        raise SegeduError(f"precision at k needs 0 < k <= {len(ranking)} (the ranked images), got k={k}.")
    corrupted = set(corrupted)
    return sum(i in corrupted for i in ranking[:k]) / k


def precision_curve(ranking: Sequence[int], corrupted, ks: Sequence[int]) -> dict[int, float]:
    """:func:`precision_at_k` for each ``k`` of ``ks``."""
    return {k: precision_at_k(ranking, corrupted, k) for k in ks}


@torch.no_grad()
def relabel(checkpoints, data_dir: str | Path, split: str | Path,
            out_json: str | Path, keep_fraction: float = 0.3, device="cpu", batch_size: int = 4) -> dict:
    """Write ``split``'s images to ``out_json`` with labels corrected by the models where they are confident.

    The ``keep_fraction`` most confident labelled pixels (by the averaged probabilities' maximum)
    take the models' class; every other pixel keeps its label, void stays void. Each image's new
    mask is stored as one RLE annotation per class (void as a crowd region of an ``ignore``
    category), so the file trains like any other. Written atomically; returns a summary: the
    threshold, the share of pixels that changed class, and the file.
    """
    if not 0.0 < keep_fraction <= 1.0:
        raise SegeduError(f"relabel keep_fraction must be in (0, 1], got {keep_fraction}.")
    members = _members(checkpoints, device)
    images, batches = _probabilities(members, data_dir, split, batch_size)
    # kept compactly: the confidence, the predicted class and the label as uint8 (void is 255)
    collected = [(indices, *probs.max(1), labels.to(torch.uint8)) for indices, probs, labels in batches]
    confidence = torch.cat([values[labels != IGNORE_INDEX] for _, values, _, labels in collected])
    if confidence.numel() == 0:
        raise SegeduError(f"{images.coco.ann_file} has no labelled pixels to relabel.")
    ordered = confidence.sort(descending=True).values
    threshold = float(ordered[max(0, math.ceil(keep_fraction * len(ordered)) - 1)])

    source = json.loads(Path(images.coco.ann_file).read_text(encoding="utf-8-sig"))
    categories = list(source["categories"])
    category_of = {cls: cat for cat, cls in sorted(images.coco.category_to_class.items(), reverse=True)
                   if cls != IGNORE_INDEX}
    void = [c["id"] for c in categories if coco.is_void_name(c["name"])]
    ignore_category = void[0] if void else max(c["id"] for c in categories) + 1
    if not void:
        categories.append({"id": ignore_category, "name": IGNORE_CATEGORY, "supercategory": ""})
    annotations, changed, total = [], 0, 0
    per_image = ((index, (values[b], classes[b], labels[b])) for indices, values, classes, labels in collected
                 for b, index in enumerate(indices))
    # image by image in the file's order (batches hold one image size each, so they may come in another)
    for index, (values, classes, labels) in dataset.in_order(per_image):
        mask = torch.where((values >= threshold) & (labels != IGNORE_INDEX), classes.to(torch.uint8), labels).numpy()
        old = labels.numpy()
        valid = old != IGNORE_INDEX
        changed += int((mask != old)[valid].sum())
        total += int(valid.sum())
        record = images.coco.images[index]
        for cls in np.unique(mask).tolist():
            if cls == 0:
                continue
            crowd = cls == IGNORE_INDEX
            annotations.append({"id": len(annotations), "image_id": record["id"],
                                "category_id": ignore_category if crowd else category_of[cls],
                                "iscrowd": int(crowd), **_rle_annotation(mask == cls)})
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    info = {"description": "labels corrected by segedu.inference.cleansing.relabel", "source": str(images.coco.ann_file),
            "checkpoints": [str(m.name) for m in members], "keep_fraction": keep_fraction, "threshold": threshold}
    result = {"info": info, "licenses": source.get("licenses", []), "images": source["images"],
              "annotations": annotations, "categories": categories}
    write_bytes_atomic(out_json, json.dumps(result, separators=(",", ":")).encode("utf-8"))
    coco.load(out_json, images_dir=Path(data_dir), check_images=False)  # reads back, or a clear error
    return {"path": out_json, "threshold": threshold, "changed_fraction": changed / max(total, 1)}
