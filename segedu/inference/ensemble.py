"""Model ensembles: the mean of several models' softmax probabilities.

The usual competition ensembles -- the K models of a K-fold split, the same recipe under several
seeds, snapshots of one run at several epochs, one model at several input sizes -- are all the same
operation: average the members' class probabilities pixel by pixel, then take the argmax. Each
member keeps its own input ``size`` (the size it was trained at, or a different one for a resize
ensemble; an int is the short side of the image, its aspect ratio kept, an (H, W) pair is exact:
:func:`segedu.inference.predict.model_input_size`), so members trained at different resolutions
can be mixed; every member's output is brought to the image's size before averaging.

Probabilities, not logits, are averaged: each member's vote is then bounded (a pixel's
probabilities sum to 1), so one over-confident member with large logits cannot overrule the rest,
and the result is itself a distribution that a CRF or a threshold can use. This is the averaging
of Krizhevsky et al. (AlexNet, NIPS 2012, Sec. 6: "averaging the predictions of ... CNNs") and of
Lakshminarayanan et al. ("Simple and Scalable Predictive Uncertainty Estimation using Deep
Ensembles", NIPS 2017, Sec. 2.4: a uniformly weighted mixture of the members' distributions).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.sizes import check_size
from ..env import resolve_amp
from ..errors import SegeduError
from .checkpoints import load_model
from .predict import amp_dtype, predict_logits


@dataclass
class Member:
    """One model of an ensemble and how to run it.

    ``size``: the model's input size, an int for the image's short side (its aspect ratio kept; a
    square image runs at ``size`` x ``size``), an (H, W) pair, or None for the image's own size
    (:func:`segedu.inference.predict.model_input_size`); ``amp_dtype``: autocast
    dtype (None: full precision); ``name``: how messages refer to it (the checkpoint's path);
    ``num_classes`` and ``class_names``: from the checkpoint, checked across members when known.
    """

    model: torch.nn.Module
    size: int | tuple[int, int] | None = None
    amp_dtype: torch.dtype | None = None
    name: str = "model"
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None


def as_member(member, index: int = 0) -> Member:
    """A :class:`Member` from a Member, a ``(model, size)`` pair or a bare model."""
    if isinstance(member, Member):
        return member
    if isinstance(member, (tuple, list)):
        if len(member) != 2:
            raise SegeduError(f"ensemble member {index} is a sequence of {len(member)} items; "
                              "give a (model, size) pair or a segedu.inference.ensemble.Member.")
        return Member(member[0], member[1], name=f"member {index}")
    if isinstance(member, torch.nn.Module):
        return Member(member, name=f"member {index}")
    raise SegeduError(f"ensemble member {index} is a {type(member).__name__}; give a model, a (model, size) "
                      "pair or a segedu.inference.ensemble.Member.")


def check_members(members: Sequence[Member]) -> None:
    """Refuse members whose checkpoints predict different classes, naming both."""
    first = members[0]
    for other in members[1:]:
        if first.num_classes is not None and other.num_classes is not None and first.num_classes != other.num_classes:
            raise SegeduError(f"cannot ensemble {first.name} ({first.num_classes} classes) with {other.name} "
                              f"({other.num_classes} classes): members must predict the same classes.")
        if first.class_names is not None and other.class_names is not None and first.class_names != other.class_names:
            raise SegeduError(f"cannot ensemble {first.name} with {other.name}: their class names differ "
                              f"({', '.join(first.class_names)} vs {', '.join(other.class_names)}).")


def trained_precision(amp: str | None, dev) -> str:
    """The precision (``off``, ``bf16``, ``fp16``) a checkpoint's model trained in, from its config's ``amp``.

    Runs record the concrete precision; a config saved before they did says ``auto`` (or nothing),
    which then meant fp32 on a CPU and bf16 or fp16 on a GPU -- the checkpoint runs as it trained.
    """
    if amp in (None, "auto") and dev.type != "cuda":
        return "off"
    return resolve_amp(amp or "auto", dev)


def member_from(model, config, payload: dict, name: str) -> Member:
    """The :class:`Member` of a loaded checkpoint (the model, config and payload of
    :func:`segedu.inference.checkpoints.load_model` or ``segedu.engine.load_model``): run at its
    training ``image_size`` with its training autocast setting."""
    dev = next(model.parameters()).device
    return Member(model, check_size(config.image_size), amp_dtype(trained_precision(config.amp, dev), dev), name=name,
                  num_classes=payload["num_classes"], class_names=tuple(payload.get("class_names") or ()) or None)


def load_member(path: str | Path, device="auto") -> Member:
    """A :class:`Member` from a checkpoint or run directory: the model in eval mode on ``device``, run at
    its training ``image_size`` with its training autocast setting."""
    return member_from(*load_model(path, device), name=str(path))


def load_members(paths: Iterable[str | Path | Member], device="auto", like: Member | None = None) -> list[Member]:
    """Members loaded from ``paths`` (checkpoints or run directories; a :class:`Member` is taken as it
    is), checked to predict the same classes as each other (and as ``like``)."""
    members = [path if isinstance(path, Member) else load_member(path, device) for path in paths]
    check_members(([like] if like is not None else []) + members)
    return members


@torch.no_grad()
def ensemble_probabilities(members: Sequence, images: torch.Tensor,
                           logits_fn: Callable[[Member, torch.Tensor], torch.Tensor] | None = None,
                           channels_last: bool = False) -> torch.Tensor:
    """Mean softmax probabilities (B, C, H, W) of ``members`` on [0, 1] ``images`` (B, 3, H, W).

    A member is a :class:`Member`, a ``(model, size)`` pair or a model. ``logits_fn(member, images)``
    gives a member's class scores at the images' size (default: :func:`predict_logits` at the
    member's size); :mod:`segedu.inference.pipeline` passes one with TTA and sliding windows.
    """
    members = [as_member(m, i) for i, m in enumerate(members)]
    if not members:
        raise SegeduError("an ensemble needs at least one member.")
    check_members(members)
    if logits_fn is None:
        def logits_fn(member, x):
            return predict_logits(member.model, x, member.size, member.amp_dtype, channels_last)
    total, first = None, None
    for member in members:
        p = logits_fn(member, images).float().softmax(1)
        if total is None:
            total, first = p, member
        elif p.shape != total.shape:
            raise SegeduError(f"cannot ensemble {first.name} with {member.name}: they predict {total.shape[1]} and "
                              f"{p.shape[1]} classes (output shapes {tuple(total.shape)} and {tuple(p.shape)}).")
        else:
            total = total + p
    return total / len(members)
