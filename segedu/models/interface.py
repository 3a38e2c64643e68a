"""The encoder interface of segedu's encoder-decoder models: ``model.encoder``, ``model.feature_taps``
and the pretrained weights the encoder starts from.

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
* ``model.load_pretrained(source)`` -- loads pretrained weights into the encoder (what
  ``models.create(..., pretrained_backbone=source)`` does after building), and what the model says
  about them before anything is loaded: ``from_scratch`` (why it takes none, as in its paper),
  ``course_encoder`` (the course's weights it starts from), ``encoder_width`` (the width those
  weights must have) and ``imagenet_weights_available``.
"""
from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn

from ..errors import SegeduError
from . import course
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

    ``from_scratch`` is None for a model whose encoder starts from pretrained weights, as its paper
    starts from ImageNet's; where the model takes none, it is the reason, which
    :meth:`load_pretrained` gives when asked for weights.
    """

    encoder_path: str | None = "backbone"
    from_scratch: str | None = None

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

    @property
    def course_encoder(self) -> str | None:
        """The key of :data:`segedu.models.course.ENCODERS` whose weights ``load_pretrained("course")``
        loads: the network of the encoder's ImageNet weights. None where the course pretrains none
        for it (e.g. VGG-16 without batch norm) or the model takes no pretrained weights."""
        if self.from_scratch is not None or getattr(self.encoder, "imagenet_weights", None) is None:
            return None
        try:
            return course.encoder_of(self.encoder)
        except SegeduError:  # an encoder the course does not pretrain
            return None

    @property
    def encoder_width(self) -> float | None:
        """The channel multiplier of the encoder, which the course's weights must match (its ``width``;
        None where no single module is the encoder)."""
        return getattr(self.encoder, "width", None)

    @property
    def imagenet_weights_available(self) -> bool:
        """Whether ``load_pretrained("imagenet")`` has weights to load: torchvision's for the encoder
        (its ``imagenet_weights``), or those an encoder fetches itself (timm's: ``own_imagenet_weights``)."""
        if self.from_scratch is not None:
            return False
        return (getattr(self.encoder, "imagenet_weights", None) is not None
                or getattr(self.encoder, "own_imagenet_weights", False))

    def load_pretrained(self, source: bool | str | os.PathLike) -> None:
        """Load the pretrained weights ``source`` into the encoder: what
        :func:`~segedu.models.backbones.load_imagenet` takes, ``"course"`` (the course's own
        encoders), ``True`` or ``"imagenet"`` (torchvision's ImageNet weights) or the path of a saved
        state dict. SegeduError for a model that takes none (``from_scratch``, with its reason) or
        whose encoder is no single module."""
        name = type(self).__name__
        if self.from_scratch is not None:
            raise SegeduError(f"{name} has no pretrained backbone: {self.from_scratch}; use pretrained_backbone=False.")
        if self.encoder is None:
            raise SegeduError(f"{name} has no pretrained backbone: no single module is its encoder; "
                              "use pretrained_backbone=False.")
        load_imagenet(self.encoder, source)


def load_pretrained(model_or_backbone: nn.Module, source: bool | str | os.PathLike | None) -> nn.Module:
    """Load the pretrained weights ``source`` into a model (:meth:`EncoderDecoder.load_pretrained`)
    or into a backbone given itself (:func:`~segedu.models.backbones.load_imagenet`), and return
    what was given; a falsy ``source`` loads nothing."""
    if not source:
        return model_or_backbone
    if isinstance(model_or_backbone, EncoderDecoder):
        model_or_backbone.load_pretrained(source)
    else:
        load_imagenet(model_or_backbone, source)
    return model_or_backbone
