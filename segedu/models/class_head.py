"""An image-level class-presence head on any segmentation model, and class suppression with it.

A competition trick (used e.g. in the Kaggle steel-defect and cloud segmentation winners'
solutions, and in the recycling-trash competition): next to the dense logits, predict which
classes occur in the image at all. The head is a multi-label classifier on the encoder's deepest
feature map -- global average pooling, then one ``Linear(C_enc, num_classes)`` -- trained with
binary cross-entropy against the classes present in the mask (:func:`presence_targets`). It
shares the encoder, so its loss is an extra, image-level supervision signal for it; at inference
a class the head judges absent (presence probability below ``suppress_threshold``) is removed
from the dense prediction, which removes small false-positive blobs of that class.

Where the encoder's deepest map comes from. Every segedu encoder-decoder model names the encoder
features a head may read in ``model.feature_taps`` (:mod:`segedu.models.interface`), deepest last;
:func:`encoder_module` takes that last one, an :class:`EncoderTap`: a submodule's dotted name,
which element of its output, and the channel count. :class:`ClassPresenceModel` registers a
forward hook on that submodule for the length of one forward pass and keeps the selected tensor,
so the wrapped model's ``forward`` runs unchanged. The hook is removed after every pass, so the
wrapper deep-copies (EMA, SWA) and pickles like any module.

=========================================  ===========================  =========================
family (models)                            submodule                    deepest map
=========================================  ===========================  =========================
FCN-VGG16, FCN-ResNet, DeepLab v1/v2/v3,   ``backbone``                 its last named feature
DeepLab v3+, PSPNet                                                     (fc7, pool5, layer4,
                                                                        exit_flow)
DilatedNet                                 ``frontend.backbone``        fc7
DeconvNet                                  ``encoder.fc7``              fc7
SegNet                                     ``encoder.stages.4``         pool5 (output[0])
U-Net                                      ``downs.<last>``             the 1024-channel bottom
UNet++                                     ``nodes.<last>.0``           X^{4,0}
FC-DenseNet                                ``bottleneck``               the bottleneck block
HRNetV2                                    ``stage4``                   the 1/32 branch (output[3])
=========================================  ===========================  =========================

A model without ``feature_taps`` raises SegeduError; pass ``tap=EncoderTap(...)`` for it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.classes import IGNORE_INDEX
from ..errors import SegeduError
from .interface import FeatureTap

__all__ = ["ClassPresenceModel", "EncoderTap", "encoder_module", "presence_loss", "presence_targets"]

#: Where a model's encoder map is: ``model.get_submodule(name)``'s output, indexed by ``key`` when
#: that output is a dict, tuple or list (``None``: the output is the map), with ``channels`` channels
#: (:class:`segedu.models.interface.FeatureTap`, under the name this module has always used).
EncoderTap = FeatureTap


def encoder_module(model: nn.Module) -> EncoderTap:
    """The :class:`EncoderTap` of the deepest of ``model.feature_taps`` (see the module's table)."""
    taps = getattr(model, "feature_taps", None)
    if not taps:
        raise SegeduError(f"encoder_module does not know {type(model).__name__}: it has no feature_taps, which "
                          "segedu's encoder-decoder models have (segedu.models.interface); for another model pass "
                          "tap=EncoderTap(submodule name, channels, key).")
    return list(taps.values())[-1]


def presence_targets(masks: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(B, C) float multi-hot: 1 where class c has at least one pixel in image b, ignored pixels excluded.

    ``masks`` is (B, H, W) class ids, or (B, C, H, W) soft targets (MixUp, whose ignored pixels are
    all-zero vectors): there a class is present where any pixel gives it a positive share -- both
    images of a MixUp blend are visible in the mixed image.
    """
    if masks.dim() == 4:
        return (masks.flatten(2).amax(2) > 0).float()
    valid = masks != ignore_index
    labels = torch.where(valid, masks, torch.zeros_like(masks)).flatten(1)
    counts = torch.zeros(masks.shape[0], num_classes, device=masks.device, dtype=torch.float32)
    counts.scatter_add_(1, labels, valid.flatten(1).float())
    return (counts > 0).float()


def presence_loss(presence_logits: torch.Tensor, masks: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean binary cross-entropy (with logits) between the head and :func:`presence_targets`."""
    targets = presence_targets(masks, presence_logits.shape[1], ignore_index)
    return F.binary_cross_entropy_with_logits(presence_logits.float(), targets)


class ClassPresenceModel(nn.Module):
    """A segmentation model plus a class-presence head on its deepest encoder map.

    Args:
        model: a segmentation model following segedu's model contract.
        num_classes: its output classes (the head predicts the same classes, background included).
        suppress_threshold: in eval mode, classes other than the background (0) whose presence
            probability is below it get the lowest finite logit of the dtype, so they can never
            win the argmax (a tie with the background resolves to the background, argmax's first
            index). None: the segmentation logits unchanged.
        tap: where the encoder map is (default: :func:`encoder_module`).

    Training mode: ``{"out": logits, "presence": presence logits (B, C)}``, plus ``"aux"`` when
    the wrapped model returns one. Eval mode: the logits tensor (the model contract).
    """

    def __init__(self, model: nn.Module, num_classes: int, suppress_threshold: float | None = None,
                 tap: EncoderTap | None = None) -> None:
        super().__init__()
        if suppress_threshold is not None and not 0.0 < suppress_threshold <= 1.0:
            raise SegeduError(f"suppress_threshold must be a probability in (0, 1] or None, got {suppress_threshold!r}.")
        self.model = model
        self.tap = tap or encoder_module(model)
        self.suppress_threshold = suppress_threshold
        self.head = nn.Linear(self.tap.channels, num_classes)

    def _forward_both(self, x: torch.Tensor):
        """(the wrapped model's output, presence logits (B, C)) of one pass."""
        kept: list[torch.Tensor] = []
        handle = self.model.get_submodule(self.tap.name).register_forward_hook(
            lambda module, inputs, output: kept.append(self.tap.select(output)))
        try:
            output = self.model(x)
        finally:
            handle.remove()
        if len(kept) != 1:
            raise SegeduError(f"{type(self.model).__name__}.{self.tap.name} ran {len(kept)} times in one forward "
                              "pass; the presence head needs it to run exactly once.")
        features = kept[0]
        if features.dim() != 4 or features.shape[1] != self.tap.channels:
            raise SegeduError(f"{type(self.model).__name__}.{self.tap.name} gave a map of shape "
                              f"{tuple(features.shape)}; the head expects (B, {self.tap.channels}, h, w).")
        return output, self.head(features.mean(dim=(2, 3)))

    def presence(self, images: torch.Tensor) -> torch.Tensor:
        """Presence probabilities (B, C) for model inputs ``images`` (normalised as for ``forward``)."""
        return torch.sigmoid(self._forward_both(images)[1])

    def forward(self, x: torch.Tensor):
        output, presence = self._forward_both(x)
        if self.training:
            if isinstance(output, dict):
                return {**output, "presence": presence}
            return {"out": output, "presence": presence}
        logits = output["out"] if isinstance(output, dict) else output
        if self.suppress_threshold is None:
            return logits
        absent = torch.sigmoid(presence.float()) < self.suppress_threshold
        absent[:, 0] = False  # the background is never suppressed: every pixel keeps a candidate
        return logits.masked_fill(absent[:, :, None, None], torch.finfo(logits.dtype).min)
