"""Which of the book's models start from a pretrained encoder, and from which weights.

Every encoder-based architecture of the course starts, in its paper, from an encoder pretrained on
ImageNet: FCN, DeconvNet, SegNet, DeepLab v1-v3+, DilatedNet and PSPNet from VGG-16 or ResNet, and
HRNetV2 from its ImageNet-pretrained backbone. U-Net (Ronneberger et al. 2015) and FC-DenseNet
(Jegou et al. 2017) train from scratch: their papers have no pretrained encoder to start from. The
book follows the papers, with the profile's stand-in for ImageNet
(:attr:`segedu.profiles.Profile.encoder_weights`): the course's own encoders on a CPU
(:mod:`segedu.models.course`), torchvision's ImageNet weights with a GPU, where they exist.
"""
from __future__ import annotations

import torch

from .. import models, profiles
from ..errors import SegeduError
from ..models import course

#: Architectures whose papers train them from scratch: never given pretrained weights.
FROM_SCRATCH = frozenset({"unet", "unetpp", "fcdensenet56", "fcdensenet67", "fcdensenet103"})
#: Architectures torchvision has no ImageNet encoder for (HRNet's comes from its authors, and timm):
#: under "imagenet" they train from scratch; the course's HRNetV2-W18 stands in on a CPU.
NO_TORCHVISION_WEIGHTS = frozenset({"hrnetv2_w18", "hrnetv2_w48"})
#: Architectures whose course encoder is a whole network of their own, pretrained apart from the
#: VGG-16 and ResNet ones (the key of :data:`segedu.models.course.ENCODERS`): until its file ships
#: with segedu, the model trains from scratch under "course", and the chapter says so.
OWN_COURSE_ENCODER = {"hrnetv2_w18": "hrnetv2_w18"}


def course_encoder(model: str, options: dict | None = None) -> str | None:
    """The course encoder (a key of :data:`segedu.models.course.ENCODERS`) that ``model`` with
    ``options`` starts from under "course", or None where the course pretrains none for it (an
    Xception, HRNetV2-W48). Read from the model's own encoder, built on the meta device (nothing is
    allocated), so that options which change the encoder count: DeepLab v2 at ``depth=50`` starts
    from ResNet-50, at its default depth 101 from ResNet-101."""
    if model in OWN_COURSE_ENCODER:
        return OWN_COURSE_ENCODER[model]
    options = {k: v for k, v in (options or {}).items() if k != "pretrained_backbone"}
    with torch.device("meta"):
        encoder = models.create(model, **options).encoder
    if encoder is None or getattr(encoder, "imagenet_weights", None) is None:
        return None
    try:
        return course.encoder_of(encoder)
    except SegeduError:  # an encoder the course does not pretrain
        return None


def has_course_encoder(model: str, width: float, options: dict | None = None) -> bool:
    """Whether the course weights ``model`` (with ``options``) starts from under "course" ship with
    segedu at ``width`` (:func:`course_encoder`, :func:`segedu.models.course.available`)."""
    encoder = course_encoder(model, options)
    return encoder is not None and (encoder, width) in course.available()


def encoder_weights(model: str, profile: profiles.Profile, options: dict | None = None) -> dict:
    """``{"pretrained_backbone": weights}`` for ``model`` under ``profile``, or ``{}`` where it trains
    from scratch: the profile has no weights, the model's paper trains it from scratch
    (:data:`FROM_SCRATCH`), the model takes no ``pretrained_backbone`` (e.g. an smp model, whose
    encoder weights are smp's option), or the weights do not exist for it: ImageNet's in torchvision,
    or the course's in segedu (:func:`has_course_encoder`, which reads the model's ``options``)."""
    weights = profile.encoder_weights
    if weights is None or model in FROM_SCRATCH or "pretrained_backbone" not in models.options_of(model):
        return {}
    if weights == "imagenet" and model in NO_TORCHVISION_WEIGHTS:
        return {}
    # the model is built at its own width where the options give one, else at the profile's
    options = {"width": profile.width, **(options or {})}
    if weights == "course" and not has_course_encoder(model, options["width"], options):
        return {}
    return {"pretrained_backbone": weights}
