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

from .. import models, profiles
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


def has_course_encoder(model: str, width: float) -> bool:
    """Whether the course weights ``model`` starts from under "course" ship at ``width``: always for
    the VGG-16 and ResNet models (a shipped-weights test checks them), and for a model of
    :data:`OWN_COURSE_ENCODER` when its encoder's file is in :func:`segedu.models.course.available`."""
    encoder = OWN_COURSE_ENCODER.get(model)
    return encoder is None or (encoder, width) in course.available()


def encoder_weights(model: str, profile: profiles.Profile) -> dict:
    """``{"pretrained_backbone": weights}`` for ``model`` under ``profile``, or ``{}`` where it trains
    from scratch: the profile has no weights, the model's paper trains it from scratch
    (:data:`FROM_SCRATCH`), the model takes no ``pretrained_backbone`` (e.g. an smp model, whose
    encoder weights are smp's option), or the weights do not exist for it: ImageNet's in torchvision,
    or the course's in segedu (:func:`has_course_encoder`)."""
    weights = profile.encoder_weights
    if weights is None or model in FROM_SCRATCH or "pretrained_backbone" not in models.options_of(model):
        return {}
    if weights == "imagenet" and model in NO_TORCHVISION_WEIGHTS:
        return {}
    if weights == "course" and not has_course_encoder(model, profile.width):
        return {}
    return {"pretrained_backbone": weights}
