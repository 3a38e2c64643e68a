"""The inference tricks composed: TTA, sliding windows, ensembles and DenseCRF in one call.

:class:`InferenceOptions` says which tricks to use; :func:`class_probabilities` and
:func:`predict_classes` apply them to a batch of [0, 1] images. The order is fixed:

1. for each ensemble member, for each TTA view (flip x scale, :mod:`.tta`), the model runs either on
   the whole view resized to the member's training size (what :func:`.predict.predict_logits` does:
   an int size is the view's short side, its aspect ratio kept, an (H, W) pair is exact) or, with
   ``sliding_window``, window by window at the view's own resolution (:mod:`.sliding`); a TTA
   scale then rescales the view before the windows are laid out, as mmsegmentation's multi-scale
   ``slide`` inference does;
2. the member's views are merged (``tta.merge``), giving the member's probabilities;
3. the members' probabilities are averaged (:mod:`.ensemble`);
4. the DenseCRF (:mod:`.crf`), last, on the CPU, refines each image's averaged probabilities.

Without any option (``InferenceOptions()``) the class map is the argmax of ``predict_logits`` for
the one member -- exactly segedu's plain prediction.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import SegeduError
from ..metrics import class_map
from . import crf as crf_module
from .ensemble import Member, as_member, ensemble_probabilities, load_member, load_members
from .predict import autocast, model_input_size, normalize, predict_logits, resized_input
from .sliding import check_options, sliding_window_logits
from .tta import TTA, tta_logits


@dataclass(frozen=True)
class InferenceOptions:
    """Which inference tricks to apply (all off by default); validated on construction.

    ``tta``: a :class:`segedu.inference.tta.TTA` (flips, scales, merge) or None.
    ``sliding_window``: window side in pixels, or None to resize whole images to the member's size;
    ``overlap`` (fraction of a window, [0, 1)) and ``weighting`` (``gaussian`` | ``uniform``) apply
    to it, and ``window_batch_size`` windows go through the model at once.
    ``crf``: refine with the DenseCRF (needs the pydensecrf2 extra).
    ``ensemble``: extra checkpoints (files or run directories) whose models are averaged with the
    main one; read by :func:`load_pipeline_members`, not by :func:`class_probabilities`, which takes
    the loaded members.
    ``channels_last``: run the models in channels-last memory format.
    """

    tta: TTA | None = None
    sliding_window: int | None = None
    overlap: float = 0.5
    weighting: str = "gaussian"
    crf: bool = False
    ensemble: tuple[str, ...] = field(default_factory=tuple)
    window_batch_size: int = 8
    channels_last: bool = False

    def __post_init__(self):
        if self.tta is not None and not isinstance(self.tta, TTA):
            raise SegeduError(f"tta must be a segedu.inference.tta.TTA or None; got {type(self.tta).__name__}.")
        if self.sliding_window is not None:
            check_options(self.sliding_window, self.overlap, self.weighting, None, self.window_batch_size)
        else:  # still refuse nonsense that would only surface once a window is asked for
            check_options(1, self.overlap, self.weighting, None, self.window_batch_size)
        ensemble = (self.ensemble,) if isinstance(self.ensemble, (str, Path)) else tuple(self.ensemble or ())
        object.__setattr__(self, "ensemble", tuple(str(p) for p in ensemble))

    @classmethod
    def build(cls, tta=None, sliding_window: int | None = None, overlap: float = 0.5, weighting: str = "gaussian",
              crf: bool = False, ensemble=(), **more) -> InferenceOptions:
        """Options from the keyword arguments of :func:`segedu.engine.evaluate` and ``predict``.

        ``tta``: None, a :class:`TTA`, or a sequence of flip names taken as ``TTA(flips=tta)``.
        """
        if tta is not None and not isinstance(tta, TTA):
            tta = TTA(flips=tta)
        return cls(tta=tta, sliding_window=sliding_window, overlap=overlap, weighting=weighting, crf=bool(crf),
                   ensemble=ensemble, **more)

    def describe(self) -> dict:
        """The options as JSON-ready values (for a scores file)."""
        return {"tta": None if self.tta is None else {"flips": list(self.tta.flips), "scales": list(self.tta.scales),
                                                       "merge": self.tta.merge},
                "sliding_window": self.sliding_window, "overlap": self.overlap, "weighting": self.weighting,
                "crf": self.crf, "ensemble": list(self.ensemble)}

    @property
    def plain(self) -> bool:
        """No trick at all: the prediction is the one model's plain forward pass."""
        return self.tta is None and self.sliding_window is None and not self.crf and not self.ensemble


def require_crf() -> None:
    """Raise the crf module's install message unless pydensecrf2 can be imported."""
    if not crf_module.is_available():
        raise SegeduError(crf_module.INSTALL_HINT)


def load_pipeline_members(path: str | Path, options: InferenceOptions, device="auto",
                          main: Member | None = None) -> list[Member]:
    """The main checkpoint's member (``main``, or loaded from ``path``) followed by ``options.ensemble``'s."""
    main = main if main is not None else load_member(path, device)
    if not options.ensemble:
        return [main]
    dev = next(main.model.parameters()).device
    return [main, *load_members(options.ensemble, dev, like=main)]


def _sliding_fn(member: Member, options: InferenceOptions):
    """``logits_fn(views, scale)`` for :func:`tta_logits`: windows over the view rescaled by ``scale``."""
    def logits_fn(views: torch.Tensor, scale: float) -> torch.Tensor:
        h, w = views.shape[-2:]
        scaled = views
        if scale != 1:
            hw = (max(1, round(h * scale)), max(1, round(w * scale)))
            scaled = F.interpolate(views, size=hw, mode="bilinear", align_corners=False, antialias=True)
        logits = sliding_window_logits(member.model, scaled, options.sliding_window, options.overlap,
                                       options.weighting, None, options.window_batch_size, member.amp_dtype,
                                       options.channels_last)
        if logits.shape[-2:] != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits
    return logits_fn


@torch.no_grad()
def member_scores(member, images: torch.Tensor, options: InferenceOptions | None = None) -> torch.Tensor:
    """One member's class scores (B, C, H, W) under ``options``' TTA and sliding window (steps 1-2).

    Scores as :func:`tta_logits` returns them: their softmax is the member's probabilities, their
    argmax its classes; without TTA or windows, ``predict_logits`` at the member's size.
    """
    options = options or InferenceOptions()
    member = as_member(member)
    sliding = _sliding_fn(member, options) if options.sliding_window is not None else None
    if options.tta is not None:
        t = options.tta
        return tta_logits(member.model, images, member.size, t.flips, t.scales, t.merge, member.amp_dtype,
                          options.channels_last, logits_fn=sliding)
    if sliding is not None:
        return sliding(images, 1.0)
    return predict_logits(member.model, images, member.size, member.amp_dtype, options.channels_last)


@torch.no_grad()
def member_presence(member, images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """Presence probabilities (B, C) of a member whose model has a class-presence head
    (:class:`~segedu.models.class_head.ClassPresenceModel`), for [0, 1] ``images``: the images
    normalised and resized to the member's input size, and run in its autocast dtype, as
    :func:`predict_logits` runs them for the class scores."""
    member = as_member(member)
    if not hasattr(member.model, "presence"):
        raise SegeduError(f"{member.name}: presence probabilities need a model with a class-presence head "
                          f"(a ClassPresenceModel, trained with class_head > 0); got {type(member.model).__name__}.")
    size = None if member.size is None else model_input_size(images.shape[-2:], member.size)
    x = resized_input(normalize(images), size, channels_last)
    with autocast(x.device, member.amp_dtype):
        return member.model.presence(x).float()


@torch.no_grad()
def class_probabilities(members: Sequence, images: torch.Tensor,
                        options: InferenceOptions | None = None) -> torch.Tensor:
    """Class probabilities (B, C, H, W) of [0, 1] ``images``: steps 1-3, the members' mean probability.

    ``members``: :class:`segedu.inference.ensemble.Member` s, ``(model, size)`` pairs or models
    (a single one may be given bare). The CRF (step 4) is :func:`predict_classes`'.
    """
    options = options or InferenceOptions()
    members = [members] if isinstance(members, (Member, torch.nn.Module)) else members
    return ensemble_probabilities(members, images, lambda m, x: member_scores(m, x, options))


@torch.no_grad()
def predict_classes(members: Sequence, images: torch.Tensor, options: InferenceOptions | None = None) -> torch.Tensor:
    """Class maps (B, H, W) int64 on the images' device: the argmax of :func:`class_probabilities`,
    refined by the DenseCRF when ``options.crf`` (each image on the CPU, with
    :func:`segedu.inference.crf.dense_crf` on the averaged probabilities).

    A single member without CRF takes the argmax of its scores directly (softmax is monotonic, and
    this keeps the plain path bit-identical to the class map of ``predict_logits``).
    """
    options = options or InferenceOptions()
    if options.crf:
        require_crf()
    members = [members] if isinstance(members, (Member, torch.nn.Module)) else list(members)
    if len(members) == 1 and not options.crf:
        return class_map(member_scores(members[0], images, options))
    probabilities = class_probabilities(members, images, options)
    if not options.crf:
        return class_map(probabilities)
    return class_map(crf_probabilities(images, probabilities))


def crf_probabilities(images: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """Step 4: each image's averaged ``probabilities`` (B, C, H, W) refined by
    :func:`segedu.inference.crf.dense_crf` on the CPU (its mean-field marginals), on the images' device.

    ``crf.refine()`` is softmax + dense_crf + argmax; the probabilities are already averaged, so
    dense_crf directly."""
    refined = [crf_module.dense_crf(image.cpu(), p.cpu()) for image, p in zip(images, probabilities)]
    return torch.stack(refined).to(images.device)
