"""Segmentation scores from a confusion matrix: pixel accuracy, mean accuracy, IoU, mIoU, fwIoU, Dice.

Every score here is a function of the confusion matrix ``n`` (C x C, int64), where ``n[i, j]`` counts
the valid pixels of true class ``i`` predicted as class ``j`` (rows = target, columns = prediction).
Pixels whose target is ``ignore_index`` (255, void) are not counted at all. With
``t_i = sum_j n[i, j]`` (target pixels of class i) and ``p_j = sum_i n[i, j]`` (predicted pixels of
class j), following Long et al. 2015 ("Fully Convolutional Networks for Semantic Segmentation", sec. 5)::

    pixel accuracy      = sum_i n_ii / sum_i t_i
    class accuracy_i    = n_ii / t_i                      (recall of class i)
    mean accuracy       = mean_i class accuracy_i
    IoU_i               = n_ii / (t_i + p_i - n_ii)        (intersection over union, Jaccard)
    mIoU                = mean_i IoU_i
    fwIoU               = sum_i t_i * IoU_i / sum_i t_i    (frequency-weighted IoU)
    Dice_i              = 2 n_ii / (t_i + p_i)             (F1 score of class i)
    mDice               = mean_i Dice_i

Absent classes. A class with ``t_i + p_i = 0`` (absent from both prediction and target, "union 0")
has no defined IoU, Dice or accuracy: its per-class scores are NaN and every class mean skips it
(a NaN-ignoring mean). This is what torchmetrics does for ``MulticlassJaccardIndex(average='macro')``
and ``MulticlassAccuracy(average='macro')``: both drop classes with ``tp + fp + fn = 0`` from the mean.
(torchmetrics' ``average='none'`` reports 0 instead of NaN for them; ``torch.nan_to_num(iou, 0.0)``
gives its numbers.) A class present only in the prediction has IoU 0 and Dice 0, and -- again as in
torchmetrics -- class accuracy 0 (``n_ii / t_i`` with ``t_i = 0`` is taken as 0, not NaN), so it
lowers the mean accuracy. Note that some code bases (mmsegmentation) instead skip every class with
``t_i = 0`` from the mean accuracy; on the same matrix their mAcc can be higher than this one.
When no valid pixel was seen at all, every score is NaN.

Dataset-level vs per-image. :class:`SegMetrics` sums one confusion matrix over all pixels of all
images (``per_image=False``, what the competition's mIoU and torchmetrics compute), so large objects
dominate. With ``per_image=True`` it also scores every image on its own and averages the scores over
the images (NaN-ignoring, so a class counts only in images where it appears); some competitions rank
that way, and it weights small images and rare classes differently.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .data.classes import IGNORE_INDEX
from .errors import SegeduError

#: Scalar scores, in the order of the per-image accumulator.
SCALAR_KEYS = ("pixel_accuracy", "mean_accuracy", "miou", "fwiou", "mdice")


def class_map(scores: torch.Tensor) -> torch.Tensor:
    """Class ids (B, H, W) int64 of class scores (B, C, H, W): the argmax over the class dimension.

    ``max(1).indices`` is ``argmax(1)`` (both return the first of tied maxima) but reduces over the
    strided class dimension about 6x faster on CPU, where it was most of a validation pass.
    """
    return scores.max(1).indices


def _labels(pred_or_logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted labels, target) as int64 of the same shape; logits (B, C, H, W) become argmax labels."""
    if pred_or_logits.ndim == target.ndim + 1:
        if pred_or_logits.shape[1] != num_classes:
            raise SegeduError(
                f"logits have {pred_or_logits.shape[1]} channels but the metric counts {num_classes} classes; "
                "pass num_classes equal to the model's output channels."
            )
        pred = class_map(pred_or_logits)
    elif pred_or_logits.is_floating_point():
        raise SegeduError(
            f"predictions of shape {tuple(pred_or_logits.shape)} are floats but have no class dimension; pass "
            "logits (B, C, H, W) or integer labels (B, H, W)."
        )
    else:
        pred = pred_or_logits
    if pred.shape != target.shape:
        raise SegeduError(
            f"prediction labels {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape; both must be "
            "(B, H, W) (logits (B, C, H, W)) at the same resolution -- resize the logits to the mask size first."
        )
    return pred.long(), target.long()


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = IGNORE_INDEX, per_image: bool = False) -> torch.Tensor:
    """Confusion matrix (C, C) int64, rows = target class, columns = predicted class; on the inputs' device.

    ``pred`` is labels (B, H, W) or logits (B, C, H, W) (argmax taken), ``target`` (B, H, W) with
    ``ignore_index`` for void pixels. One ``torch.bincount`` of ``num_classes * target + pred`` over
    all pixels: the void pixels land in bins past the C*C matrix (row ``ignore_index``), which are
    dropped -- cheaper than first selecting the valid pixels with a boolean mask. ``per_image=True``
    returns (B, C, C), one matrix per image, from the same single bincount (image ``b``'s bins are
    offset by ``b`` times the bins per image).
    """
    if ignore_index is not None and ignore_index < 0:
        raise SegeduError(f"ignore_index must be a label >= 0 (the competition uses {IGNORE_INDEX}) or None, "
                          f"got {ignore_index}.")
    pred, target = _labels(pred, target, num_classes)
    # target values the bincount has rows for: the classes, and the void label when it lies above them
    rows = num_classes if ignore_index is None else max(num_classes, ignore_index + 1)
    if pred.numel():
        # out-of-range labels would land in a wrong cell (or make a huge bincount), so check both ranges
        target_low, target_high = torch.aminmax(target)
        pred_low, pred_high = torch.aminmax(pred)
        if bool((target_low < 0) | (target_high >= rows) | (pred_low < 0) | (pred_high >= num_classes)):
            _bad_labels(num_classes, ignore_index, f"target range {int(target_low)}..{int(target_high)}, "
                        f"prediction range {int(pred_low)}..{int(pred_high)}")
    bins = torch.add(pred, target, alpha=num_classes)
    images = target.shape[0] if per_image else 1
    if per_image:
        bins += torch.arange(images, device=bins.device).view(-1, *[1] * (bins.ndim - 1)) * (rows * num_classes)
    counts = torch.bincount(bins.flatten(), minlength=images * rows * num_classes).view(images, rows, num_classes)
    beyond = counts[:, num_classes:].sum((0, 2))  # target labels >= C: only the void label may occur
    if ignore_index is not None and ignore_index >= num_classes:
        beyond[ignore_index - num_classes] = 0
    if bool(beyond.any()):
        _bad_labels(num_classes, ignore_index, f"target label {num_classes + int(beyond.nonzero()[0])}")
    matrix = counts[:, :num_classes].clone()
    if ignore_index is not None and ignore_index < num_classes:
        matrix[:, ignore_index] = 0  # a void label that is also a class id: drop its pixels
    return matrix if per_image else matrix[0]


def _bad_labels(num_classes: int, ignore_index: int | None, found: str):
    raise SegeduError(
        f"labels must be class ids 0..{num_classes - 1} (or {ignore_index} in the target for void pixels); "
        f"got {found}. Check num_classes and how the masks were made."
    )


def scores_from_confusion(cm: torch.Tensor) -> dict:
    """All scores of the module docstring from a confusion matrix (C, C), or a stack of them (..., C, C).

    Returns float64 tensors: ``pixel_accuracy``, ``mean_accuracy``, ``miou``, ``fwiou``, ``mdice``
    (shape ``...``) and per-class ``accuracy``, ``iou``, ``dice`` (shape ``..., C``), with NaN for
    classes absent from both target and prediction (they are left out of the means).
    """
    cm = cm.to(torch.float64)
    true_positive = cm.diagonal(dim1=-2, dim2=-1)
    target_count = cm.sum(-1)   # t_i: row sums
    pred_count = cm.sum(-2)     # p_i: column sums
    union = target_count + pred_count - true_positive
    present = union > 0
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=cm.device)
    total = target_count.sum(-1)

    iou = torch.where(present, true_positive / union, nan)
    dice = torch.where(present, 2 * true_positive / (target_count + pred_count), nan)
    # recall; a class only predicted (t_i = 0 < p_i) scores 0, as in torchmetrics
    accuracy = torch.where(present, true_positive / target_count.clamp_min(1), nan)
    return {
        "pixel_accuracy": true_positive.sum(-1) / total,
        "mean_accuracy": accuracy.nanmean(-1),
        "accuracy": accuracy,
        "iou": iou,
        "miou": iou.nanmean(-1),
        "fwiou": (target_count * iou.nan_to_num(0.0)).sum(-1) / total,
        "dice": dice,
        "mdice": dice.nanmean(-1),
    }


class SegMetrics:
    """Accumulates a confusion matrix over batches and scores it (see the module docstring for formulas).

    >>> metrics = SegMetrics(num_classes=11)
    >>> for logits, masks in batches:          # doctest: +SKIP
    ...     metrics.update(logits, masks)      # logits (B, C, H, W) or labels (B, H, W)
    >>> metrics.compute()["miou"]              # doctest: +SKIP

    State lives on the device of the first batch. ``confusion`` is the live (C, C) int64 tensor
    (rows = target, columns = prediction): ``torch.distributed.all_reduce(m.confusion)`` sums it
    across processes in place. ``merge(other)`` adds another accumulator's state (e.g. one per
    worker). With ``per_image=True``, ``compute()`` returns the averages over images of the
    per-image scores instead of the dataset-level ones; the summed confusion is kept as well.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = IGNORE_INDEX, per_image: bool = False):
        if num_classes < 1:
            raise SegeduError(f"num_classes must be at least 1, got {num_classes}.")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.per_image = per_image
        self.reset()

    def reset(self) -> None:
        """Forget all batches seen so far."""
        self._confusion: torch.Tensor | None = None
        # per-image mode: sums and counts (over images where the score is defined) of the scores,
        # laid out as SCALAR_KEYS then per-class iou, dice, accuracy
        self._image_sum: torch.Tensor | None = None
        self._image_count: torch.Tensor | None = None

    @property
    def confusion(self) -> torch.Tensor:
        """The accumulated (C, C) int64 confusion matrix (zeros before the first update)."""
        if self._confusion is None:
            self._confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        return self._confusion

    def update(self, pred_or_logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred_or_logits`` (B, C, H, W) logits or (B, H, W) labels, ``target`` (B, H, W)."""
        with torch.no_grad():
            if not self.per_image:
                self._add(confusion_matrix(pred_or_logits, target, self.num_classes, self.ignore_index))
                return
            per_image = confusion_matrix(pred_or_logits, target, self.num_classes, self.ignore_index, per_image=True)
            self._add(per_image.sum(0))
            flat = self._flatten(scores_from_confusion(per_image))
            image_sum, image_count = flat.nan_to_num(0.0).sum(0), (~flat.isnan()).sum(0)
            if self._image_sum is None:
                self._image_sum, self._image_count = image_sum, image_count
            else:
                self._image_sum += image_sum.to(self._image_sum.device)
                self._image_count += image_count.to(self._image_count.device)

    def _add(self, confusion: torch.Tensor) -> None:
        if self._confusion is None:
            self._confusion = confusion.clone()
        else:
            self._confusion += confusion.to(self._confusion.device)

    @staticmethod
    def _flatten(scores: dict) -> torch.Tensor:
        """(..., 5 + 3C) vector of the scalars then the per-class iou, dice, accuracy."""
        scalars = torch.stack([scores[key] for key in SCALAR_KEYS], -1)
        return torch.cat([scalars, scores["iou"], scores["dice"], scores["accuracy"]], -1)

    def merge(self, other: "SegMetrics") -> "SegMetrics":
        """Add ``other``'s accumulated state to this one (same classes, ignore label and mode); returns self."""
        if (other.num_classes, other.ignore_index, other.per_image) != (self.num_classes, self.ignore_index,
                                                                        self.per_image):
            raise SegeduError(
                f"cannot merge SegMetrics(num_classes={other.num_classes}, ignore_index={other.ignore_index}, "
                f"per_image={other.per_image}) into SegMetrics(num_classes={self.num_classes}, "
                f"ignore_index={self.ignore_index}, per_image={self.per_image}); create both the same way."
            )
        if other._confusion is not None:
            self._add(other._confusion)
        if other._image_sum is not None:
            if self._image_sum is None:
                self._image_sum, self._image_count = other._image_sum.clone(), other._image_count.clone()
            else:
                self._image_sum += other._image_sum.to(self._image_sum.device)
                self._image_count += other._image_count.to(self._image_count.device)
        return self

    def all_reduce(self, device: torch.device | str | None = None) -> "SegMetrics":
        """Sum the accumulated state over every process of a ``torch.distributed`` group, in place.

        After it, every process holds the state of all batches that any process saw, so
        :meth:`compute` gives the single-process scores of the whole set (each image must have been
        scored by exactly one process). A no-op outside a process group. ``device``: where the
        exchange happens (the NCCL backend needs CUDA tensors; default: where the state lives).
        Returns self.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self
        device = torch.device(device) if device is not None else self.confusion.device
        confusion = self.confusion.to(device)
        dist.all_reduce(confusion)
        self._confusion = confusion
        if self.per_image:
            width = len(SCALAR_KEYS) + 3 * self.num_classes
            if self._image_sum is None:  # this process scored no image
                self._image_sum = torch.zeros(width, dtype=torch.float64, device=device)
                self._image_count = torch.zeros(width, dtype=torch.int64, device=device)
            self._image_sum, self._image_count = self._image_sum.to(device), self._image_count.to(device)
            dist.all_reduce(self._image_sum)
            dist.all_reduce(self._image_count)
        return self

    def compute(self) -> dict:
        """Scores so far: floats ``pixel_accuracy``, ``mean_accuracy``, ``miou``, ``fwiou``, ``mdice`` and
        per-class float64 CPU tensors ``iou``, ``dice``, ``accuracy`` (NaN where a class never appeared).

        Dataset-level (one confusion matrix over all pixels) unless ``per_image=True``, where each
        value is the mean over images of that image's score (images where it is NaN are skipped).
        """
        if not self.per_image:
            scores = {key: value.cpu() for key, value in scores_from_confusion(self.confusion).items()}
        else:
            c = self.num_classes
            if self._image_sum is None:
                mean = torch.full((len(SCALAR_KEYS) + 3 * c,), float("nan"), dtype=torch.float64)
            else:
                mean = (self._image_sum / self._image_count).cpu()  # 0 / 0 = NaN: never defined
            scores = dict(zip(SCALAR_KEYS, mean[:len(SCALAR_KEYS)]))
            per_class = mean[len(SCALAR_KEYS):]
            scores.update(iou=per_class[:c], dice=per_class[c:2 * c], accuracy=per_class[2 * c:])
        return {key: float(value) if key in SCALAR_KEYS else value for key, value in scores.items()}


def boundary_band(target: torch.Tensor, width: int, ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """Pixels within ``width`` pixels (Chebyshev distance) of a change of label in ``target`` (B, H, W).

    The "trimap" of Kohli et al. 2009 and Chen et al. 2018 (DeepLab, Sec. 4.1.2): scoring only these
    pixels measures how well a model places boundaries, which coarse outputs get wrong first.
    Ignored pixels are never in the band. Returns a bool tensor of ``target``'s shape.
    """
    t = target.unsqueeze(1).float()
    k = 2 * width + 1
    # a pixel is near a boundary when the labels in its (2w+1)^2 window are not all equal
    local_max = F.max_pool2d(t, k, stride=1, padding=width)
    local_min = -F.max_pool2d(-t, k, stride=1, padding=width)
    band = (local_max != local_min).squeeze(1)
    if ignore_index is not None:
        band &= target != ignore_index
    return band


def mask_outside(target: torch.Tensor, keep: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``target`` with every pixel outside ``keep`` set to ``ignore_index`` (score a region only)."""
    return torch.where(keep, target, torch.full_like(target, ignore_index))


def object_recall(pred: torch.Tensor, instances: torch.Tensor, instance_classes) -> torch.Tensor:
    """Per object: its visible area and the share of its pixels predicted as its class.

    ``pred`` (H, W) holds predicted classes, ``instances`` (H, W) object ids (0: no object, i: the
    i-th object, as :func:`segedu.data.masks.instance_mask` paints them) and ``instance_classes[i - 1]``
    is object i's class. Pixel metrics are dominated by large objects; this scores every object
    equally, so that recall can be compared by object size (small objects are the first thing a
    coarse output loses). Objects fully covered by later ones (area 0) are left out.

    Returns a float64 tensor (N, 3): object id, visible area in pixels, recall in [0, 1].
    """
    if pred.shape != instances.shape:
        raise SegeduError(f"object_recall: prediction {tuple(pred.shape)} and instances {tuple(instances.shape)} "
                          f"must have the same (H, W) shape")
    classes = torch.as_tensor(list(instance_classes), dtype=torch.int64, device=pred.device)
    ids = instances.flatten().long()
    count = len(classes)
    if count == 0:
        return torch.zeros(0, 3, dtype=torch.float64)
    if int(ids.max()) > count:
        raise SegeduError(f"object_recall: instance id {int(ids.max())} has no class ({count} classes given)")
    area = torch.bincount(ids, minlength=count + 1)[1:]
    # an object's pixel is a hit when the prediction there is the object's class
    own_class = torch.cat([classes.new_full((1,), -1), classes])[ids]
    hits = torch.bincount(ids, weights=(pred.flatten().long() == own_class).double(), minlength=count + 1)[1:]
    visible = area > 0
    object_ids = torch.arange(1, count + 1, device=pred.device)[visible]
    return torch.stack([object_ids.double(), area[visible].double(), hits[visible] / area[visible]], 1).cpu()
