"""The predict-and-score loop, once: loaded models over a loader, to probabilities, class maps or scores.

Every place that runs trained models over a split -- the trainer's validation, ``segedu evaluate``
and ``predict``, the chapters' scoring (:mod:`segedu.experiments.compare`), pseudo-labelling
(:mod:`.pseudo`), data cleansing (:mod:`segedu.inference.cleansing`) -- goes through a
:class:`Predictor`. Per batch it does what :mod:`.pipeline` composes (each member at its own input
size and autocast dtype, TTA and sliding windows, the members' softmax averaged, the DenseCRF
last); over a loader it does the batching, the moving to the models' device, the confusion-matrix
accumulation (:class:`segedu.metrics.SegMetrics`, rows = truth) and the timing.

Batches hold images of one size (:func:`segedu.data.dataset.make_eval_loader`, whose
:class:`~segedu.data.dataset.SizeGroupedBatches` group a split by image size), so images of any
size are predicted at their own resolution and scored against their original masks, every
labelled pixel once. A loader's ``batch_sampler`` names each batch's dataset indices.

The scores are Long et al.'s ("Fully Convolutional Networks for Semantic Segmentation", CVPR 2015,
Sec. 5) computed from one confusion matrix over all pixels (:mod:`segedu.metrics`); the averaged
softmax is the ensemble of :mod:`.ensemble` (Lakshminarayanan et al., NIPS 2017, Sec. 2.4).
"""
from __future__ import annotations

import time
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, RandomSampler

from .. import metrics
from ..data import IGNORE_INDEX, dataset
from ..errors import SegeduError
from .ensemble import Member, as_member, check_members
from .pipeline import InferenceOptions, class_probabilities, crf_probabilities, member_presence, predict_classes

__all__ = ["Predictor"]


class Predictor:
    """Loaded models and how to run them: ``probabilities``/``labels`` of a batch, ``predict``,
    ``score`` and ``per_image_confusions`` over a loader.

    ``members``: :class:`~segedu.inference.ensemble.Member` s (each with its input ``size`` and
    ``amp_dtype``; :func:`~segedu.inference.ensemble.member_from` makes one of a loaded checkpoint),
    ``(model, size)`` pairs or models (a single Member or model may be given bare). ``options``: the
    :class:`~segedu.inference.pipeline.InferenceOptions` (TTA, sliding window, ensemble weighting,
    ``crf``, the DenseCRF refinement; None: the plain prediction). ``batch_size``: images per batch
    when a method is given a dataset instead of a loader. ``device``: where images go (default: the
    first member's parameters' device).
    """

    def __init__(self, members, options: InferenceOptions | None = None, *, batch_size: int = 4,
                 device: torch.device | str | None = None):
        members = [members] if isinstance(members, (Member, torch.nn.Module)) else list(members)
        if not members:
            raise SegeduError("a Predictor needs at least one model.")
        self.members = [as_member(m, i) for i, m in enumerate(members)]
        check_members(self.members)
        self.options = options or InferenceOptions()
        self.batch_size = batch_size
        if device is None:
            first = next(self.members[0].model.parameters(), None)
            device = first.device if first is not None else "cpu"
        self.device = torch.device(device)
        self.images, self.seconds = 0, 0.0  # of the last pass over a loader (images_per_s)

    # ------------------------------------------------------------------ one batch
    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, C, H, W) of [0, 1] ``images`` (B, 3, H, W) at their size: the
        members' mean softmax (:func:`~segedu.inference.pipeline.class_probabilities`), refined by
        the DenseCRF when ``options.crf`` (its mean-field marginals, still a distribution per pixel)."""
        probabilities = class_probabilities(self.members, images, self.options)
        return crf_probabilities(images, probabilities) if self.options.crf else probabilities

    @torch.no_grad()
    def labels(self, images: torch.Tensor) -> torch.Tensor:
        """Class maps (B, H, W) int64 on the images' device (:func:`~segedu.inference.pipeline.predict_classes`)."""
        return predict_classes(self.members, images, self.options)

    @torch.no_grad()
    def presence(self, images: torch.Tensor) -> torch.Tensor:
        """Presence probabilities (B, C) of the first member's class-presence head for [0, 1] ``images``
        (:func:`~segedu.inference.pipeline.member_presence`; one model: a head is not ensembled)."""
        return member_presence(self.members[0], images, self.options.channels_last)

    # ------------------------------------------------------------------ over a loader
    def _loader(self, loader) -> DataLoader:
        if not isinstance(loader, DataLoader):  # a dataset: batches of one image size
            return dataset.make_eval_loader(loader, self.batch_size)
        if isinstance(loader.sampler, RandomSampler):
            raise SegeduError("the Predictor names each batch's images by the loader's batch_sampler, so the loader "
                              "must not shuffle; use segedu.data.dataset.make_eval_loader.")
        return loader

    def batches(self, loader, probabilities: bool = False, *,
                presence: bool = False) -> Iterator[tuple[list[int], torch.Tensor, object]]:
        """Per batch of ``loader`` (or of a dataset, batched by image size): ``(dataset indices, values,
        targets)``, values the :meth:`probabilities` (B, C, H, W), :meth:`labels` (B, H, W) or, with
        ``presence``, the :meth:`presence` probabilities (B, C) on the device, targets the batch's
        second item (masks moved to the device, or image names).

        Times the prediction alone (synchronising a GPU) for :attr:`images_per_s`."""
        loader = self._loader(loader)
        predict = self.presence if presence else self.probabilities if probabilities else self.labels
        self.images, self.seconds = 0, 0.0
        for indices, (images, targets) in zip(loader.batch_sampler, loader):
            images = images.to(self.device)
            if isinstance(targets, torch.Tensor):
                targets = targets.to(self.device)
            start = time.perf_counter()
            values = predict(images)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds += time.perf_counter() - start
            self.images += len(images)
            yield list(indices), values, targets

    def predict(self, loader, probabilities: bool = False) -> Iterator[tuple[int, torch.Tensor]]:
        """``(dataset index, class map (H, W) or probabilities (C, H, W))`` per image, in the loader's
        order (batches of one size may come in another than the dataset's: :func:`segedu.data.dataset.in_order`)."""
        for indices, values, _ in self.batches(loader, probabilities):
            yield from zip(indices, values)

    @property
    def images_per_s(self) -> float:
        """Images per second of prediction in the last pass over a loader (every member, view and window)."""
        return self.images / max(self.seconds, 1e-9)

    def _num_classes(self, num_classes: int | None) -> int:
        num_classes = num_classes if num_classes is not None else self.members[0].num_classes
        if num_classes is None:
            raise SegeduError("scoring needs num_classes: pass it, or give members that know theirs "
                              "(segedu.inference.ensemble.member_from).")
        return num_classes

    def score(self, loader, num_classes: int | None = None, *, per_image: bool = False,
              boundary_px: int | None = None, distributed: bool = False) -> dict:
        """Scores of the class maps over ``loader``'s labelled images: :meth:`SegMetrics.compute
        <segedu.metrics.SegMetrics.compute>`'s dict (``miou``, per-class ``iou``, ...; averages over
        images with ``per_image=True``) plus ``confusion``, the (C, C) int64 matrix (rows: truth).

        ``boundary_px``: also ``boundary``, the same scores (with its ``confusion``) over the pixels
        within that many pixels of a class boundary (:func:`segedu.metrics.boundary_band`).
        ``distributed``: each process scored its shard; the matrices are summed over the processes
        (:meth:`~segedu.metrics.SegMetrics.all_reduce`), so every process returns the same scores.
        ``num_classes`` defaults to the members'."""
        num_classes = self._num_classes(num_classes)
        overall = metrics.SegMetrics(num_classes, ignore_index=IGNORE_INDEX, per_image=per_image)
        band = metrics.SegMetrics(num_classes, ignore_index=IGNORE_INDEX) if boundary_px is not None else None
        for _, labels, targets in self.batches(loader):
            overall.update(labels, targets)
            if band is not None:
                band.update(labels, metrics.mask_outside(targets, metrics.boundary_band(targets, boundary_px)))
        if distributed:
            overall.all_reduce(self.device)
        result = {**overall.compute(), "confusion": overall.confusion}
        if band is not None:
            result["boundary"] = {**band.compute(), "confusion": band.confusion}
        return result

    def per_image_confusions(self, loader, num_classes: int | None = None) -> torch.Tensor:
        """(N, C, C) int64 confusion matrices (rows: truth) on the CPU, one per image of ``loader``, by
        increasing dataset index: what :func:`segedu.significance.bootstrap_miou_difference` resamples.
        Their sum is :meth:`score`'s ``confusion``."""
        num_classes = self._num_classes(num_classes)
        found: dict[int, torch.Tensor] = {}
        for indices, labels, targets in self.batches(loader):
            per_image = metrics.confusion_matrix(labels, targets, num_classes, IGNORE_INDEX, per_image=True).cpu()
            found.update(zip(indices, per_image))
        if not found:
            return torch.zeros(0, num_classes, num_classes, dtype=torch.int64)
        return torch.stack([found[i] for i in sorted(found)])

