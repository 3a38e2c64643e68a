"""The encoder interface of segedu's encoder-decoder models: ``model.encoder``, ``model.feature_taps``
and :func:`load_pretrained`.

Every segmentation network of the course is an encoder (an ImageNet classifier cut before its
classifier, or the paper's own contracting path) followed by a decoder or head (Long et al., FCN,
CVPR 2015, Sec. 3-4; Badrinarayanan et al., SegNet, TPAMI 2017, Sec. 3). The models keep the
attribute names of the code they follow -- torchvision's ``backbone``, SegNet's ``encoder``,
DilatedNet's ``frontend.backbone`` -- because checkpoints and the course's weights are stored
under those keys. :class:`EncoderDecoder` gives them one interface on top, without a new key:

* ``model.encoder`` -- the encoder module, the one ``pretrained_backbone`` loads (a property over
  the existing attribute, named by ``encoder_path``); ``None`` where no single module is the
  encoder (U-Net's contracting path, UNet++'s column 0, FC-DenseNet's down path and HRNet's four
  stages share the network's module lists).
* ``model.feature_taps`` -- the encoder features a head may read, ``{name: FeatureTap}`` in
  network order, so the deepest is the last: where the feature is (a submodule's output, and
  which element of it) and its channel count. A head registers a forward hook on that submodule
  (:class:`~segedu.models.class_head.ClassPresenceModel`), so the model's forward runs unchanged
  and the encoder runs once.
"""
from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn

from ..errors import SegeduError
from .backbones import load_imagenet

__all__ = ["EncoderDecoder", "FeatureTap", "load_pretrained"]


@dataclasses.dataclass(frozen=True)
class FeatureTap:
    """Where a feature map is: ``model.get_submodule(name)``'s output, indexed by ``key`` when that
    output is a dict, tuple or list (``None``: the output is the map), with ``channels`` channels."""

    name: str
    channels: int
    key: str | int | None = None

    def select(self, output) -> torch.Tensor:
        return output if self.key is None else output[self.key]


class EncoderDecoder(nn.Module):
    """Base of the encoder-decoder models: ``encoder`` and ``feature_taps`` (see the module).

    ``encoder_path`` is the dotted name of the encoder submodule (``None``: no single module). The
    default ``feature_taps`` suit an encoder that returns a dict of named features and has
    ``channels`` (name -> channel count), as every segedu backbone; other models override it.
    """

    encoder_path: str | None = "backbone"

    @property
    def encoder(self) -> nn.Module | None:
        """The encoder module (the submodule at ``encoder_path``), or None when no single module is."""
        if self.encoder_path is None:
            return None
        module: nn.Module = self
        # through the registered children, not getattr: where the attribute is itself called
        # ``encoder`` (SegNet, DeconvNet), getattr would find this property again
        for name in self.encoder_path.split("."):
            module = module._modules[name]
        return module

    @property
    def feature_taps(self) -> dict[str, FeatureTap]:
        """``{feature name: FeatureTap}`` of the encoder's features, in network order (deepest last)."""
        return {name: FeatureTap(self.encoder_path, channels, name)
                for name, channels in self.encoder.channels.items()}


def load_pretrained(model_or_backbone: nn.Module, source: bool | str | os.PathLike | None) -> nn.Module:
    """Load the ``pretrained_backbone`` weights ``source`` into a model's ``encoder`` (or into a
    backbone given itself) and return what was given; a falsy ``source`` loads nothing.

    ``source`` is what :func:`~segedu.models.backbones.load_imagenet` takes: ``"course"`` (the
    course's own encoders), ``True`` or ``"imagenet"`` (torchvision's ImageNet weights) or the path of
    a saved state dict. A model without one encoder module raises SegeduError (models that refuse
    the option say why in their builders first).
    """
    if not source:
        return model_or_backbone
    backbone = model_or_backbone.encoder if isinstance(model_or_backbone, EncoderDecoder) else model_or_backbone
    if backbone is None:
        raise SegeduError(f"{type(model_or_backbone).__name__} has no pretrained backbone: no single module is its "
                          "encoder; use pretrained_backbone=False.")
    load_imagenet(backbone, source)
    return model_or_backbone
