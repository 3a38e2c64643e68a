"""ImageNet classifiers cut before their classifier, returning features by name.

Each backbone keeps torchvision's parameter names, so torchvision's ImageNet weights load as
they are: :func:`load_imagenet` fetches them through torchvision's weights API
(``weights.get_state_dict``, downloaded once into torch's cache) or reads a file saved from it
on a machine without network (``torch.save(ResNet50_Weights.IMAGENET1K_V1.get_state_dict(), path)``).
A backbone provides ``width``, ``imagenet_weights`` (the ``WeightsEnum`` member) and
``from_torchvision(state_dict)`` (torchvision's keys to its own).

:class:`TimmEncoder` (optional package timm) offers the same interface -- features by name and
``channels`` -- over any timm classifier, and loads timm's weights itself.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ...errors import SegeduError, download_failed
from .. import course
from .resnet import ResNet
from .timm_encoder import TimmEncoder
from .vgg import VGG16

__all__ = ["ResNet", "TimmEncoder", "VGG16", "load_imagenet", "load_torchvision", "torchvision_state_dict"]


def load_imagenet(backbone: nn.Module, source: bool | str | os.PathLike) -> None:
    """Load pretrained weights into ``backbone``: what a model's ``pretrained_backbone`` names.

    ``"course"`` loads the course's own encoder (:mod:`segedu.models.course`, shipped with the
    package, at the width it was pretrained at). ``True`` or ``"imagenet"`` downloads torchvision's
    ImageNet weights through its weights API; a path reads a state dict saved from that API.
    Raises SegeduError for a width the weights do not exist at, an unreadable file, or a state dict
    of another network.
    """
    load_torchvision(backbone, *torchvision_state_dict(backbone, source))


def load_torchvision(backbone: nn.Module, state_dict: dict, where: str, weights) -> None:
    """Load a state dict in torchvision's layout (what :func:`torchvision_state_dict` returns) into
    ``backbone``, through its ``from_torchvision``; SegeduError naming ``where`` and ``weights`` for
    keys or shapes of another network."""
    state_dict = backbone.from_torchvision(state_dict)
    _check_matches(backbone, state_dict, where, weights)
    backbone.load_state_dict(state_dict)


def torchvision_state_dict(backbone: nn.Module, source: bool | str | os.PathLike) -> tuple[dict, str, object]:
    """The weights ``source`` names for ``backbone`` (see :func:`load_imagenet`), whole and in
    torchvision's layout (a classifier's fully connected layers included), before the backbone
    picks its own keys; with where they came from and the weights' name, for error messages.
    A model that reuses more of the classifier than its backbone holds (DeepLab v1's decimated
    fc6/fc7) reads it here."""
    if source == "course":
        encoder = course.encoder_of(backbone)
        return course.state_dict(encoder, backbone.width), f"the course's {encoder} weights", f"course {encoder}"
    if source == "imagenet":
        source = True
    weights = backbone.imagenet_weights
    if backbone.width != 1.0:
        raise SegeduError(
            f"pretrained_backbone needs width=1.0: torchvision's {weights} exists only at the paper's "
            f"channel counts (got width={backbone.width}); drop pretrained_backbone or the width option."
        )
    if source is True:
        try:  # torch's hub cache first (TORCH_HOME), the network only when the file is not there
            return weights.get_state_dict(progress=True), f"torchvision's {weights}", weights
        except OSError as error:  # URLError, ConnectionError, timeouts: all OSErrors
            cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
            raise download_failed(weights.url, error, f"put it at {cached} (torchvision looks there first), "
                                  "or pass pretrained_backbone=PATH to a state dict saved with "
                                  f"torch.save({weights}.get_state_dict(), PATH)") from error
    path = Path(source)
    if not path.is_file():
        raise SegeduError(f"{path}: no such file for pretrained_backbone; save torchvision's weights "
                          f"there with torch.save({weights}.get_state_dict(), path).")
    try:
        return torch.load(path, map_location="cpu", weights_only=True), str(path), weights
    except Exception as error:
        raise SegeduError(f"{path}: not a readable state dict ({error}); save torchvision's weights "
                          f"with torch.save({weights}.get_state_dict(), path).") from error


def _check_matches(backbone: nn.Module, state_dict: dict, where: str, weights) -> None:
    """SegeduError naming the first keys or shapes where ``state_dict`` differs from ``backbone``."""
    expected = backbone.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [f"{key} {tuple(state_dict[key].shape)} != {tuple(value.shape)}"
                  for key, value in expected.items()
                  if key in state_dict and state_dict[key].shape != value.shape]
    problems = [f"{label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
                for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", mismatched))
                if items]
    if problems:
        raise SegeduError(f"{where}: not the weights of this {type(backbone).__name__} "
                          f"({'; '.join(problems)}); pass the state dict of torchvision's {weights}.")
