"""Which of the book's models start from a pretrained encoder, and from which weights.

Every encoder-based architecture of the course starts, in its paper, from an encoder pretrained on
ImageNet: FCN, DeconvNet, SegNet, DeepLab v1-v3+, DilatedNet and PSPNet from VGG-16 or ResNet, and
HRNetV2 from its ImageNet-pretrained backbone. U-Net (Ronneberger et al. 2015), UNet++ (Zhou et
al. 2018) and FC-DenseNet (Jegou et al. 2017) train from scratch: their papers have no pretrained
encoder to start from. The book follows the papers, with the profile's stand-in for ImageNet
(:attr:`segedu.profiles.Profile.encoder_weights`): the course's own encoders on a CPU
(:mod:`segedu.models.course`), torchvision's ImageNet weights with a GPU, where they exist.

Each model says that itself (:class:`segedu.models.interface.EncoderDecoder`: ``from_scratch``,
``course_encoder``, ``imagenet_weights_available``); this module asks a model built on the meta
device, so that options which change the encoder count and nothing is allocated.
"""
from __future__ import annotations

import torch

from .. import models, profiles
from ..models import course
from ..models.interface import EncoderDecoder


def _on_meta(model: str, options: dict | None) -> EncoderDecoder:
    """``model`` with ``options`` (but no weights) built on the meta device, to ask it about its
    weights: nothing is allocated."""
    options = {k: v for k, v in (options or {}).items() if k != "pretrained_backbone"}
    with torch.device("meta"):
        return models.create(model, **options)


def course_encoder(model: str, options: dict | None = None) -> str | None:
    """The course encoder (a key of :data:`segedu.models.course.ENCODERS`) that ``model`` with
    ``options`` starts from under "course", or None where the course pretrains none for it (an
    Xception, HRNetV2-W48) or its paper trains it from scratch. Options that change the encoder
    count: DeepLab v2 at ``depth=50`` starts from ResNet-50, at its default depth 101 from ResNet-101;
    HRNetV2-W18 from the course's own HRNetV2-W18, a whole network pretrained apart from the VGG-16
    and ResNet ones."""
    return _on_meta(model, options).course_encoder


def encoder_weights(model: str, profile: profiles.Profile, options: dict | None = None) -> dict:
    """``{"pretrained_backbone": weights}`` for ``model`` under ``profile``, or ``{}`` where it trains
    from scratch: the profile has no weights, the model takes no ``pretrained_backbone``, or the
    weights do not exist for it (an smp model on smp's own encoder, whose weights are smp's option;
    its paper trains it from scratch; or there are none: ImageNet's in torchvision or timm, the
    course's in segedu at the encoder's width, :func:`segedu.models.course.available`); the model
    with its ``options`` says which."""
    weights = profile.encoder_weights
    accepted = models.options_of(model)
    if weights is None or "pretrained_backbone" not in accepted:
        return {}
    # a model with a width is built at its own where the options give one, else at the profile's; an
    # smp model's encoder has the width its options give (segedu's encoders) or its fixed size
    options = {"width": profile.width, **(options or {})} if "width" in accepted else dict(options or {})
    built = _on_meta(model, options)
    if weights == "imagenet" and not built.imagenet_weights_available:
        return {}
    if weights == "course" and (built.course_encoder, built.encoder_width) not in course.available():
        return {}
    return {"pretrained_backbone": weights}
