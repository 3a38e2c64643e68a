"""Pseudo-labelling: trained models label the unlabelled test images, and the confident part of
their prediction becomes extra training data.

The method is Lee's "Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for
Deep Neural Networks" (ICML 2013 workshop), with the confident-pixel self-training of Zou et al.,
"Unsupervised Domain Adaptation for Semantic Segmentation via Class-Balanced Self-Training"
(ECCV 2018). Here the checkpoints predict: their softmax probabilities are averaged (an ensemble,
or the folds of a cross-validation, :func:`segedu.inference.ensemble.ensemble_probabilities`),
which makes the labels better than any single model's. What is kept of the prediction, and the
COCO file that holds it, are :mod:`segedu.data.pseudo`'s (re-exported here: :func:`pseudo_label_masks`,
:class:`PseudoLabelSummary`, :data:`MODES`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from ..data import dataset
from ..data.location import resolve_data_dir
from ..data.pseudo import MODES, PseudoLabelSummary, pseudo_label_masks, write_pseudo_coco
from ..errors import SegeduError
from .checkpoints import load_model
from .ensemble import member_from
from .predictor import Predictor

__all__ = ["MODES", "PseudoLabelSummary", "confidence_threshold", "pseudo_label_masks", "write_pseudo_labels"]


def _load(checkpoints, device, caller: str) -> tuple[list, list]:
    """(paths, [(model, config, payload)]) of one checkpoint or run directory, or several."""
    paths = [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints)
    if not paths:
        raise SegeduError(f"{caller} needs at least one checkpoint or run directory.")
    return paths, [load_model(path, device) for path in paths]


def _mean_probabilities(paths, loaded, images, batch_size: int):
    """Per batch of ``images`` (a dataset; batches of one image size, so images of any size work):
    the batch's dataset indices and the mean softmax of the ``loaded`` checkpoints, each at its own
    training size (:meth:`segedu.inference.predictor.Predictor.probabilities`)."""
    predictor = Predictor([member_from(*checkpoint, name=str(path)) for path, checkpoint in zip(paths, loaded)])
    for indices, probabilities, _ in predictor.batches(dataset.make_eval_loader(images, batch_size), True):
        yield indices, probabilities


def confidence_threshold(checkpoints: str | Path | Sequence[str | Path], data_dir: str | Path, keep_fraction: float,
                         split: str = "test", device="auto", batch_size: int = 4,
                         class_balanced: bool = False) -> float | list[float]:
    """The pixel threshold that keeps the ``keep_fraction`` most confident pixels of ``split``.

    A model trained briefly is rarely 90% sure of anything, so a fixed threshold such as 0.9 may keep
    no pixel at all; choosing the threshold as a quantile of the models' own confidence (the mean
    softmax's maximum over ``split``'s pixels) keeps a known share instead, the most confident first.

    ``class_balanced=True``: one threshold per class instead, each keeping the ``keep_fraction`` most
    confident of the pixels predicted as that class (Zou et al., ECCV 2018, Sec. 3.2, class-balanced
    self-training): one threshold for all keeps mostly the classes a model is sure of, the common
    ones, and leaves the rare ones out of the labels. A class no pixel is predicted as gets 1.0.
    """
    if not 0.0 < keep_fraction <= 1.0:
        raise SegeduError(f"keep_fraction is the share of pixels to keep, in (0, 1]; got {keep_fraction}.")
    paths, loaded = _load(checkpoints, device, "confidence_threshold")
    unlabelled = dataset.CocoSegmentation(Path(data_dir), split, cache_images=False)
    confidences, labels = [], []
    for _, probabilities in _mean_probabilities(paths, loaded, unlabelled, batch_size):
        confidence, label = probabilities.max(dim=1)
        confidences.append(confidence.flatten().cpu())
        labels.append(label.flatten().cpu())
    confidence, label = torch.cat(confidences), torch.cat(labels)
    if not class_balanced:
        return _top_share_threshold(confidence, keep_fraction)
    num_classes = len(loaded[0][2]["class_names"])
    return [_top_share_threshold(confidence[label == c], keep_fraction) if (label == c).any() else 1.0
            for c in range(num_classes)]


def _top_share_threshold(confidence: torch.Tensor, keep_fraction: float) -> float:
    """The largest threshold t with P(confidence >= t) >= keep_fraction: the (1 - keep_fraction)
    quantile of ``confidence``, exactly."""
    ordered = confidence.sort(descending=True).values
    return float(ordered[max(0, math.ceil(keep_fraction * len(ordered)) - 1)])


def write_pseudo_labels(checkpoints: str | Path | Sequence[str | Path], data_dir: str | Path | None,
                        out_json: str | Path, split: str = "test", threshold: float | Sequence[float] = 0.9,
                        mode: str = "pixel",
                        device="auto", train_split: str | None = "train", batch_size: int = 4) -> PseudoLabelSummary:
    """Pseudo-label ``split`` of ``data_dir`` and write it, with ``train_split``, as the COCO file ``out_json``.

    Args:
        checkpoints: a run directory or checkpoint, or several: their softmax probabilities are
            averaged (each model sees the images at its own training size).
        data_dir: the dataset folder (None: the first checkpoint's training data).
        out_json: the COCO file to write (atomically: a temporary file renamed into place;
            :func:`segedu.data.pseudo.write_pseudo_coco`).
        split: the unlabelled images: ``test`` or an annotation file (its annotations are not used).
        threshold, mode: see :func:`pseudo_label_masks` (one threshold, or one per class in pixel mode).
        device: where the models run (``auto``, ``cpu``, ``cuda``, or a ``torch.device``).
        train_split: the labelled images copied unchanged in front of the pseudo images
            (``train``, ``val``, a file), or None for the pseudo images alone.
        batch_size: images per forward pass (images are batched by size, so any sizes work).

    Returns a :class:`PseudoLabelSummary`; raises SegeduError for checkpoints that disagree on
    the classes, a training split with other classes, or images in both splits.
    """
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

    def per_image():
        for indices, probabilities in _mean_probabilities(paths, loaded, unlabelled, batch_size):
            yield from zip(indices, pseudo_label_masks(probabilities, threshold, mode).cpu().numpy())

    # a generator: nothing is predicted before write_pseudo_coco has checked the training split
    masks = dataset.in_order(per_image())  # the split file's order, whatever the batching
    return write_pseudo_coco(root, unlabelled, masks, out_json, class_names, paths, split, threshold, mode,
                             train_split)
