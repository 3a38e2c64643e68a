"""Segmentation losses: cross-entropy, focal, Dice, Tversky, Lovasz-Softmax, and weighted sums of them.

Every loss is an ``nn.Module`` called as ``loss(logits, target)`` with ``logits`` (B, C, H, W) and
``target`` either (B, H, W) int64 hard labels, ``ignore_index`` (255) marking void pixels, or
(B, C, H, W) float soft targets (MixUp, see ``segedu.data.mixing``) whose void pixels are all-zero
vectors. Cross-entropy, focal, Dice and Tversky accept both; Lovasz-Softmax needs hard labels.
Void pixels contribute neither to the value nor to the gradient. A batch without any valid pixel
gives a loss of 0 (with zero gradient) instead of NaN, so one fully void crop cannot spoil training.

``build_loss("ce+0.5*dice")`` builds a :class:`CompoundLoss`, the weighted sum of named terms.

Conventions compared with segmentation_models_pytorch (smp), the independent implementation the
tests check against:

* Dice uses ``(2 TP + s) / (P + T + s)``; smp's DiceLoss uses ``(TP + s') / ((P + T) / 2 + s')``,
  the same value for ``s' = s / 2``. smp gives a class absent from the batch's target a loss of 0
  but still divides by all C classes; ``skip_absent=True`` here leaves such classes out of the mean
  instead (smp's value times ``C / number of present classes``).
* smp computes TP as ``(P + T - sum |p - t|) / 2``; that equals ``sum p * t`` for hard targets, and
  differs for soft targets, where this module uses the product (the usual soft Dice).
* smp's multiclass FocalLoss is the one-vs-rest sigmoid focal loss of Lin et al. (``mode='sigmoid'``
  here); the default ``mode='softmax'`` is the multi-class form ``-(1 - p_y)^gamma log p_y``.
* Lovasz-Softmax: smp (Berman's reference code) averages an image without valid pixels into a
  per-image mean as 0; here such images are left out of the mean.
"""
from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data.classes import IGNORE_INDEX
from .data.mixing import to_soft_targets
from .errors import SegeduError


# --- shared input handling --------------------------------------------------------------------

def _is_soft(logits: torch.Tensor, target: torch.Tensor, loss_name: str) -> bool:
    """Whether ``target`` is soft (B, C, H, W); raises SegeduError for shapes that are neither form."""
    if logits.ndim != 4:
        raise SegeduError(f"{loss_name}: logits must be (B, C, H, W), got shape {tuple(logits.shape)}.")
    if target.shape == logits.shape and target.is_floating_point():
        return True
    if target.ndim == 3 and target.shape[0] == logits.shape[0] and target.shape[1:] == logits.shape[2:]:
        if target.is_floating_point():
            raise SegeduError(f"{loss_name}: hard labels (B, H, W) must be integer class ids, got {target.dtype}; "
                              "use target.long().")
        return False
    raise SegeduError(
        f"{loss_name}: target must be (B, H, W) int64 labels or (B, C, H, W) float soft targets matching logits "
        f"{tuple(logits.shape)}, got {tuple(target.shape)} {target.dtype}. Resize logits to the mask size first."
    )


def _one_hot(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, loss_name: str) -> torch.Tensor:
    """(B, C, H, W) target probabilities in the logits' dtype; void pixels are all-zero vectors."""
    if _is_soft(logits, target, loss_name):
        return target.to(logits.dtype)
    return to_soft_targets(target.long(), logits.shape[1], ignore_index).to(logits.dtype)


def _hard_labels(target: torch.Tensor, num_classes: int, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels with void pixels set to class 0, valid mask) from checked (B, H, W) hard labels."""
    target = target.long()
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= num_classes))
    if bad.any():
        raise SegeduError(f"mask label {int(target[bad][0])} is neither a class id 0..{num_classes - 1} nor the "
                          f"ignore label {ignore_index}; check how the masks were made or pass the right num_classes.")
    return torch.where(valid, target, 0), valid


def _class_weights(weights: Sequence[float] | torch.Tensor | None) -> torch.Tensor | None:
    if weights is None:
        return None
    weights = torch.as_tensor(weights, dtype=torch.float32).flatten()
    if (weights < 0).any() or not torch.isfinite(weights).all():
        raise SegeduError(f"class weights must be finite and >= 0, got {weights.tolist()}.")
    return weights


def _weights_for(weights: torch.Tensor | None, logits: torch.Tensor, loss_name: str) -> torch.Tensor:
    """The (C,) class weights on the logits' device and dtype (ones when none were given)."""
    num_classes = logits.shape[1]
    if weights is None:
        return torch.ones(num_classes, dtype=logits.dtype, device=logits.device)
    if weights.numel() != num_classes:
        raise SegeduError(f"{loss_name}: {weights.numel()} class weights for logits with {num_classes} classes; "
                          "give one weight per class.")
    return weights.to(device=logits.device, dtype=logits.dtype)


def _weighted_mean(pixel_loss: torch.Tensor, pixel_weight: torch.Tensor) -> torch.Tensor:
    """sum(loss) / sum(weight) over pixels; 0 (not NaN) when there is no weight, i.e. no valid pixel."""
    total = pixel_weight.sum()
    return pixel_loss.sum() / torch.where(total > 0, total, torch.ones_like(total))


# --- cross-entropy and focal -------------------------------------------------------------------

def _soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                        label_smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel: the class-weighted cross-entropy against (B, C, H, W) target probabilities (void
    pixels all-zero), smoothed towards the uniform distribution, and the pixel's weight
    ``sum_c w_c t_c`` (the normaliser of :class:`CrossEntropyLoss`)."""
    valid = target.sum(1, keepdim=True) > 0
    smoothed = (1 - label_smoothing) * target + valid * (label_smoothing / logits.shape[1])
    class_weights = weights.view(1, -1, 1, 1)
    return -(class_weights * smoothed * F.log_softmax(logits, 1)).sum(1), (class_weights * target).sum(1)


class CrossEntropyLoss(nn.Module):
    """Cross-entropy with class weights ``w``, label smoothing ``eps`` and void pixels excluded.

    For a pixel with target distribution ``t`` (one-hot for hard labels) and predicted log
    probabilities ``log p``, smoothing first mixes the target with the uniform distribution,
    ``t' = (1 - eps) t + eps / C``, and the loss is::

        L = sum_pixels ( -sum_c w_c t'_c log p_c ) / sum_pixels sum_c w_c t_c

    For hard labels this is ``F.cross_entropy(logits, target, weight=w, ignore_index=255,
    label_smoothing=eps)`` (whose weighted mean divides by the summed weights of the target classes);
    torch computes the per-pixel terms. Soft targets use the same normaliser; with equal weights it
    is the mean over valid pixels. (``F.cross_entropy`` with probability targets would divide by B*H*W even with
    weights and count void pixels, hence the separate soft path.)
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX, class_weights: Sequence[float] | None = None,
                 label_smoothing: float = 0.0):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise SegeduError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
        self.ignore_index = ignore_index
        self.class_weights = _class_weights(class_weights)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weights = _weights_for(self.class_weights, logits, "cross-entropy")
        if not _is_soft(logits, target, "cross-entropy"):
            labels, valid = _hard_labels(target, logits.shape[1], self.ignore_index)
            per_pixel = F.cross_entropy(logits, target.long(), weight=weights, ignore_index=self.ignore_index,
                                        label_smoothing=self.label_smoothing, reduction="none")
            return _weighted_mean(per_pixel, weights[labels] * valid)
        return _weighted_mean(*_soft_cross_entropy(logits, target.to(logits.dtype), weights, self.label_smoothing))


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection"): cross-entropy scaled by
    ``(1 - p)^gamma`` so that well-classified pixels count less.

    ``mode='softmax'`` (default), the multi-class form, per pixel with target distribution ``t``::

        FL = -sum_c a_c t_c (1 - p_c)^gamma log p_c,   p = softmax(logits)

    averaged with the same normaliser as :class:`CrossEntropyLoss` (``sum_pixels sum_c a_c t_c``);
    ``a = class_weights`` is the paper's alpha balancing, one weight per class. With ``gamma = 0`` it
    equals the weighted cross-entropy.

    ``mode='sigmoid'`` is the paper's own (RetinaNet) form and smp's multiclass FocalLoss: every
    class is a one-vs-rest binary problem on ``q_c = sigmoid(logit_c)``::

        FL_c = -(alpha t_c + (1 - alpha)(1 - t_c)) (1 - q_t)^gamma log q_t,  q_t = q_c if t_c = 1 else 1 - q_c

    averaged over valid pixels per class, then over classes (weighted by ``class_weights`` if given).
    ``alpha`` (a float, e.g. the paper's 0.25) is only meaningful here.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = None, class_weights: Sequence[float] | None = None,
                 ignore_index: int = IGNORE_INDEX, mode: str = "softmax"):
        super().__init__()
        if mode not in ("softmax", "sigmoid"):
            raise SegeduError(f"focal loss mode must be 'softmax' or 'sigmoid', got {mode!r}.")
        if alpha is not None and mode == "softmax":
            raise SegeduError("focal loss: a scalar alpha only applies to mode='sigmoid'; for the softmax form "
                              "give per-class alpha as class_weights.")
        self.gamma = gamma
        self.alpha = alpha
        self.class_weights = _class_weights(class_weights)
        self.ignore_index = ignore_index
        self.mode = mode

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weights = _weights_for(self.class_weights, logits, "focal loss")
        if self.mode == "softmax" and not _is_soft(logits, target, "focal loss"):
            # hard labels: only the target class's term is non-zero, so gather it instead of a one-hot
            labels, valid = _hard_labels(target, logits.shape[1], self.ignore_index)
            log_p = F.log_softmax(logits, 1).gather(1, labels.unsqueeze(1)).squeeze(1)
            pixel_weight = weights[labels] * valid
            per_pixel = -pixel_weight * (1 - log_p.exp()).pow(self.gamma) * log_p
            return _weighted_mean(per_pixel, pixel_weight)
        target = _one_hot(logits, target, self.ignore_index, "focal loss")
        valid = target.sum(1, keepdim=True) > 0
        if self.mode == "softmax":
            log_p = F.log_softmax(logits, 1)
            class_weights = weights.view(1, -1, 1, 1)
            per_pixel = -(class_weights * target * (1 - log_p.exp()).pow(self.gamma) * log_p).sum(1)
            return _weighted_mean(per_pixel, (class_weights * target).sum(1))
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        per_element = (1 - torch.exp(-bce)).pow(self.gamma) * bce
        if self.alpha is not None:
            per_element = per_element * (self.alpha * target + (1 - self.alpha) * (1 - target))
        per_class = (per_element * valid).sum((0, 2, 3)) / valid.sum().clamp_min(1)
        return (per_class * weights).sum() / weights.sum()


# --- losses for noisy labels ----------------------------------------------------------------------

class GeneralizedCrossEntropyLoss(nn.Module):
    """Generalized cross-entropy (Zhang & Sabuncu, "Generalized Cross Entropy Loss for Training Deep
    Neural Networks with Noisy Labels", NeurIPS 2018, eq. 5), a loss that is robust to wrong labels::

        L_q = (1 - p_y^q) / q,   0 < q <= 1

    It tends to cross-entropy ``-log p_y`` as ``q -> 0`` and is the MAE ``1 - p_y`` (robust to
    noise, slow to train) at ``q = 1``; the paper's ``q = 0.7`` sits between. The gradient of a
    pixel is CE's times ``p_y^q``: a pixel the model finds unlikely (often a wrong label) pulls less.
    Soft targets ``t``: ``sum_c t_c (1 - p_c^q) / q``. Averaged over valid pixels with the class
    weights as in :class:`CrossEntropyLoss`.
    """

    def __init__(self, q: float = 0.7, class_weights: Sequence[float] | None = None,
                 ignore_index: int = IGNORE_INDEX):
        super().__init__()
        if not 0.0 < q <= 1.0:
            raise SegeduError(f"generalized cross-entropy needs 0 < q <= 1, got q={q}.")
        self.q = q
        self.class_weights = _class_weights(class_weights)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weights = _weights_for(self.class_weights, logits, "generalized cross-entropy")
        target = _one_hot(logits, target, self.ignore_index, "generalized cross-entropy")
        class_weights = weights.view(1, -1, 1, 1)
        # p^q = exp(q log p): stable where p underflows
        per_pixel = (class_weights * target * (1 - torch.exp(self.q * F.log_softmax(logits, 1))) / self.q).sum(1)
        return _weighted_mean(per_pixel, (class_weights * target).sum(1))


class SmallLossCrossEntropy(nn.Module):
    """Small-loss selection: cross-entropy over the share of a batch's valid pixels with the
    smallest loss, that share ramped down from 1 to ``keep`` as in co-teaching.

    The small-loss trick of sample selection against noisy labels (Han et al., "Co-teaching:
    Robust Training of Deep Neural Networks with Extremely Noisy Labels", NeurIPS 2018, Sec. 2):
    networks fit clean labels before noisy ones, so the pixels with the largest loss are more often
    the wrongly labelled ones, and leaving them out of the update keeps the model from learning the
    noise. Co-teaching keeps the share ``R(T) = 1 - min(T / T_k * tau, tau)`` at step ``T``
    (Sec. 2, Algorithm 1), with ``tau = 1 - keep`` the share finally dropped and ``T_k =
    ramp_steps``: at first every pixel is kept, since before the network has fitted anything the
    loss does not yet tell clean labels from noisy ones; the dropped share then grows linearly to
    ``tau``. ``ramp_steps = 0`` drops ``tau`` from the start. Call :meth:`set_step` after each
    optimiser step (the trainer does). Here one network selects for itself, per pixel and per batch;
    co-teaching proper trains two networks that swap their selections. Class weights and label
    smoothing as :class:`CrossEntropyLoss`; the pixels kept are ``ceil(R(T) * valid pixels)``. The
    cost: rare classes and object boundaries also have large losses and are dropped with the noise.
    """

    def __init__(self, keep: float = 0.8, class_weights: Sequence[float] | None = None,
                 ignore_index: int = IGNORE_INDEX, label_smoothing: float = 0.0, ramp_steps: int = 0):
        super().__init__()
        if not 0.0 < keep <= 1.0:
            raise SegeduError(f"small-loss selection keeps a share of the pixels in (0, 1], got keep={keep}.")
        if not (isinstance(ramp_steps, int) and ramp_steps >= 0):
            raise SegeduError(f"small-loss selection needs ramp_steps, an int >= 0 (0: no ramp), got {ramp_steps!r}.")
        self.keep = keep
        self.ramp_steps = ramp_steps
        self.step = 0
        self.ce = CrossEntropyLoss(ignore_index, class_weights, label_smoothing)

    def set_step(self, step: int) -> None:
        """Tell the loss how many optimiser steps have been taken (``T`` of the ramp)."""
        if step < 0:
            raise SegeduError(f"small-loss selection: the step must be >= 0, got {step}.")
        self.step = int(step)

    def kept_share(self) -> float:
        """``R(T) = 1 - tau * min(T / T_k, 1)`` with ``tau = 1 - keep``; ``keep`` without a ramp."""
        if not self.ramp_steps or self.step >= self.ramp_steps:
            return self.keep  # exactly, not 1 - (1 - keep), so ceil() counts as without a ramp
        return 1.0 - (1.0 - self.keep) * self.step / self.ramp_steps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weights = _weights_for(self.ce.class_weights, logits, "small-loss cross-entropy")
        soft = _one_hot(logits, target, self.ce.ignore_index, "small-loss cross-entropy")
        valid = soft.sum(1) > 0
        per_pixel, pixel_weight = _soft_cross_entropy(logits, soft, weights, self.ce.label_smoothing)
        count = int(valid.sum())
        if count == 0:
            return _weighted_mean(per_pixel, pixel_weight)
        kept = math.ceil(self.kept_share() * count)
        # the kept pixels: the `kept` smallest losses among the valid ones (void pixels sort last)
        ranked = torch.where(valid, per_pixel.detach(), torch.full_like(per_pixel, float("inf"))).flatten()
        selected = torch.zeros_like(ranked, dtype=torch.bool)
        selected[ranked.topk(kept, largest=False).indices] = True
        selected = selected.view_as(per_pixel)
        return _weighted_mean(per_pixel * selected, pixel_weight * selected)


# --- overlap losses: Dice and Tversky ------------------------------------------------------------

class _OverlapLoss(nn.Module):
    """``mean_c (1 - score_c)`` of a per-class overlap score from soft counts over the batch's valid
    pixels: ``TP = sum p t``, ``P = sum p``, ``T = sum t`` with ``p = softmax(logits)``.

    ``skip_absent=True`` leaves out of the mean the classes with no target pixel in the batch (their
    score could only reward predicting nothing there); with ``class_weights`` the mean is weighted.
    """

    def __init__(self, smooth: float, ignore_index: int, skip_absent: bool,
                 class_weights: Sequence[float] | None, eps: float):
        super().__init__()
        self.smooth, self.eps = smooth, eps
        self.ignore_index = ignore_index
        self.skip_absent = skip_absent
        self.class_weights = _class_weights(class_weights)

    def class_scores(self, true_positive: torch.Tensor, pred_sum: torch.Tensor,
                     target_sum: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        weights = _weights_for(self.class_weights, logits, name)
        target = _one_hot(logits, target, self.ignore_index, name)
        valid = target.sum(1, keepdim=True) > 0
        probs = F.softmax(logits, 1) * valid  # void pixels: no prediction counted, so no gradient
        sums = (0, 2, 3)
        target_sum = target.sum(sums)
        score = self.class_scores((probs * target).sum(sums), probs.sum(sums), target_sum)
        counted = weights * (target_sum > 0) if self.skip_absent else weights * valid.any()
        return _weighted_mean((1 - score) * counted, counted)


class DiceLoss(_OverlapLoss):
    """Soft Dice loss (Milletari et al. 2016, V-Net), per class over the batch::

        Dice_c = (2 TP + s) / (P + T + s),   loss = mean_c (1 - Dice_c)

    (denominator clamped to ``eps``); ``skip_absent`` and ``class_weights`` as in :class:`_OverlapLoss`.
    """

    def __init__(self, smooth: float = 1.0, ignore_index: int = IGNORE_INDEX, skip_absent: bool = True,
                 class_weights: Sequence[float] | None = None, eps: float = 1e-7):
        super().__init__(smooth, ignore_index, skip_absent, class_weights, eps)

    def class_scores(self, true_positive, pred_sum, target_sum):
        return (2 * true_positive + self.smooth) / (pred_sum + target_sum + self.smooth).clamp_min(self.eps)


class TverskyLoss(_OverlapLoss):
    """Tversky loss (Salehi, Erdogmus, Gholipour 2017), per class over the batch, with
    ``FP = P - TP`` and ``FN = T - TP``::

        TI_c = (TP + s) / (TP + alpha FP + beta FN + s),   loss = mean_c (1 - TI_c)

    ``alpha`` weighs false positives, ``beta`` false negatives (the paper's 0.3 / 0.7 favours
    recall of small objects). ``alpha = beta = 0.5`` is :class:`DiceLoss` with smoothing ``2 s``.
    """

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0, ignore_index: int = IGNORE_INDEX,
                 skip_absent: bool = True, class_weights: Sequence[float] | None = None, eps: float = 1e-7):
        super().__init__(smooth, ignore_index, skip_absent, class_weights, eps)
        self.alpha, self.beta = alpha, beta

    def class_scores(self, true_positive, pred_sum, target_sum):
        false_positive, false_negative = pred_sum - true_positive, target_sum - true_positive
        denominator = true_positive + self.alpha * false_positive + self.beta * false_negative + self.smooth
        return (true_positive + self.smooth) / denominator.clamp_min(self.eps)


# --- Lovasz-Softmax ----------------------------------------------------------------------------

def _lovasz_grad(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss at errors sorted descending
    (Berman et al. 2018, Alg. 1), along the last dimension: the increments of
    ``1 - |fg - prefix fg| / |fg + prefix bg|`` (IoU loss if the first k pixels are predicted wrong)."""
    total = fg_sorted.sum(-1, keepdim=True)
    intersection = total - fg_sorted.cumsum(-1)
    union = total + (1 - fg_sorted).cumsum(-1)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], -1)


class LovaszSoftmaxLoss(nn.Module):
    """Lovasz-Softmax loss (Berman, Rannen Triki, Blaschko 2018, "The Lovasz-Softmax loss: a tractable
    surrogate for the optimization of the intersection-over-union measure in neural networks").

    For class ``c`` with pixel errors ``e_i = |fg_i - p_ic|`` (``fg`` = target is c), the loss is the
    Lovasz extension of the Jaccard loss, ``sum_k e_(k) g_k`` with errors sorted descending and
    ``g`` from :func:`_lovasz_grad`; the result is averaged over classes: ``classes='present'``
    those in the target (of the image or batch), ``'all'`` every class. ``per_image=True`` computes
    it per image and averages over the images that have valid pixels; otherwise over the batch as
    one set of pixels. Void pixels get error 0 and fg 0: sorted last, they change no term.
    Needs hard labels; all classes are sorted at once.
    """

    def __init__(self, per_image: bool = False, classes: str = "present", ignore_index: int = IGNORE_INDEX):
        super().__init__()
        if classes not in ("present", "all"):
            raise SegeduError(f"Lovasz classes must be 'present' or 'all', got {classes!r}.")
        self.per_image = per_image
        self.classes = classes
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if _is_soft(logits, target, "Lovasz-Softmax"):
            raise SegeduError("Lovasz-Softmax needs hard labels (B, H, W) int64, got soft targets (B, C, H, W); "
                              "use it with CutMix/copy-paste (hard labels) or drop it from the loss when using MixUp.")
        fg = to_soft_targets(target.long(), logits.shape[1], self.ignore_index).to(logits.dtype)
        valid = fg.sum(1, keepdim=True) > 0
        errors = (fg - F.softmax(logits, 1)).abs() * valid
        groups = logits.shape[0] if self.per_image else 1

        def by_group(x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (G, C, pixels of the group)
            return x.transpose(0, 1).reshape(x.shape[1], groups, -1).transpose(0, 1)

        fg, errors = by_group(fg), by_group(errors)
        errors_sorted, order = errors.sort(-1, descending=True)
        per_class = (errors_sorted * _lovasz_grad(fg.gather(-1, order))).sum(-1)           # (G, C)
        has_pixels = valid.reshape(groups, -1).any(-1, keepdim=True)
        counted = (fg.sum(-1) > 0) if self.classes == "present" else has_pixels.expand_as(per_class)
        per_group = (per_class * counted).sum(-1) / counted.sum(-1).clamp_min(1)
        return _weighted_mean(per_group, has_pixels.squeeze(-1).to(per_group.dtype))


# --- compound losses ---------------------------------------------------------------------------

#: Loss names usable in a spec, e.g. ``build_loss("0.7*focal+0.3*lovasz")``.
LOSSES: dict[str, type[nn.Module]] = {
    "ce": CrossEntropyLoss,
    "focal": FocalLoss,
    "dice": DiceLoss,
    "tversky": TverskyLoss,
    "lovasz": LovaszSoftmaxLoss,
    "gce": GeneralizedCrossEntropyLoss,
    "small_loss": SmallLossCrossEntropy,
}


class CompoundLoss(nn.Module):
    """Weighted sum ``sum_i w_i L_i(logits, target)`` of named losses; ``terms`` gives each term's value."""

    def __init__(self, terms: Sequence[tuple[str, float, nn.Module]]):
        super().__init__()
        self.names = [name for name, _, _ in terms]
        self.weights = [float(weight) for _, weight, _ in terms]
        self.losses = nn.ModuleList([loss for _, _, loss in terms])

    def terms(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each unweighted term by name, e.g. for logging next to the total."""
        return {name: loss(logits, target) for name, loss in zip(self.names, self.losses)}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        values = self.terms(logits, target).values()
        return sum(weight * value for weight, value in zip(self.weights, values))

    def extra_repr(self) -> str:
        return " + ".join(f"{weight:g}*{name}" for name, weight in zip(self.names, self.weights))


_TERM = re.compile(r"^\s*(?:(?P<weight>[0-9]*\.?[0-9]+(?:[eE]-?[0-9]+)?)\s*\*\s*)?(?P<name>[A-Za-z_]+)"
                   r"\s*(?:\((?P<params>[^()]*)\))?\s*$")


def _term_params(text: str | None, spec: str) -> dict:
    """``"keep=0.8, ramp_steps=24"`` -> {"keep": 0.8, "ramp_steps": 24} (numbers, true/false, else text)."""
    params = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, equals, raw = item.partition("=")
        if not equals or not key.strip().isidentifier():
            raise SegeduError(f"loss spec {spec!r}: cannot read the parameter {item!r}; write NAME(KEY=VALUE, ...), "
                              "e.g. 'small_loss(keep=0.8, ramp_steps=24)'.")
        try:
            params[key.strip()] = json.loads(raw.strip())
        except ValueError:
            params[key.strip()] = raw.strip()
    return params


def _parse_string(spec: str) -> list[tuple[str, float, dict]]:
    """"ce+0.5*dice" -> [("ce", 1.0, {}), ("dice", 0.5, {})]; a term may carry its loss's parameters,
    "0.5*focal(gamma=3)" -> [("focal", 0.5, {"gamma": 3})]."""
    terms = []
    for part in spec.split("+"):
        match = _TERM.match(part)
        if not match:
            raise SegeduError(f"loss spec {spec!r}: cannot read the term {part.strip()!r}; write terms as NAME or "
                              f"WEIGHT*NAME joined by '+', e.g. 'ce+0.5*dice', with NAME one of {sorted(LOSSES)}.")
        terms.append((match["name"].lower(), float(match["weight"] or 1.0), _term_params(match["params"], spec)))
    return terms


def _parse_entry(entry, spec) -> list[tuple[str, float, dict]]:
    """One list item: a term string, or a dict ``{"name": ..., "weight": ..., **params}``."""
    if isinstance(entry, str):
        return _parse_string(entry)
    if isinstance(entry, Mapping) and "name" in entry:
        params = {key: value for key, value in entry.items() if key not in ("name", "weight")}
        return [(str(entry["name"]).lower(), float(entry.get("weight", 1.0)), params)]
    raise SegeduError(f"loss spec {spec!r}: list items must be strings like '0.5*dice' or dicts with a 'name' "
                      f"(and optional 'weight' and loss parameters), got {entry!r}.")


def _parse(spec) -> list[tuple[str, float, dict]]:
    if isinstance(spec, str):
        return _parse_string(spec)
    if isinstance(spec, Mapping):
        # {"ce": 1.0, "dice": 0.5} or {"focal": {"weight": 0.7, "gamma": 3}}
        return [term for name, value in spec.items()
                for term in _parse_entry({"name": name, **value} if isinstance(value, Mapping)
                                         else {"name": name, "weight": value}, spec)]
    if isinstance(spec, Sequence):
        return [term for entry in spec for term in _parse_entry(entry, spec)]
    raise SegeduError(f"loss spec must be a string like 'ce+0.5*dice', a dict or a list, got {type(spec).__name__}.")


def build_loss(spec, num_classes: int = 11, ignore_index: int = IGNORE_INDEX,
               class_weights: Sequence[float] | None = None, label_smoothing: float = 0.0) -> CompoundLoss:
    """A :class:`CompoundLoss` from a spec naming losses of :data:`LOSSES` with weights.

    ``spec`` is a string (``"ce"``, ``"ce+0.5*dice"``, ``"0.7*focal(gamma=3)+0.3*lovasz"``), a dict
    (``{"ce": 1.0, "dice": 0.5}``, or a name mapped to ``{"weight": w, **params}``) or a list of
    term strings and ``{"name", "weight", **params}`` dicts. ``ignore_index`` goes to every loss,
    ``class_weights`` to those that take them (all but Lovasz), ``label_smoothing`` to cross-entropy;
    per-term params (e.g. ``gamma``) override them.
    """
    terms = _parse(spec)
    if not terms:
        raise SegeduError(f"loss spec {spec!r} names no loss; use e.g. 'ce' or 'ce+0.5*dice'.")
    if class_weights is not None and len(class_weights) != num_classes:
        raise SegeduError(f"{len(class_weights)} class weights for {num_classes} classes; give one per class.")
    shared = {"ignore_index": ignore_index, "class_weights": class_weights, "label_smoothing": label_smoothing}
    built, seen = [], set()
    for name, weight, params in terms:
        if name not in LOSSES:
            raise SegeduError(f"loss spec {spec!r}: unknown loss {name!r}; known losses: {', '.join(LOSSES)}.")
        if name in seen:
            raise SegeduError(f"loss spec {spec!r} names {name!r} twice; give it once with the summed weight.")
        seen.add(name)
        accepted = set(inspect.signature(LOSSES[name]).parameters)
        unknown = set(params) - accepted
        if unknown:
            raise SegeduError(f"loss spec {spec!r}: {name} takes no parameter {sorted(unknown)}; "
                              f"its parameters are {sorted(accepted)}.")
        kwargs = {key: value for key, value in shared.items() if key in accepted} | params
        built.append((name, weight, LOSSES[name](**kwargs)))
    return CompoundLoss(built)
