"""Which models start from a pretrained encoder (segedu.experiments.encoders)."""
import dataclasses

import pytest

from segedu import models, profiles
from segedu.experiments import encoders
from segedu.models import course

CPU = profiles.PROFILES["cpu"]
GPU = profiles.PROFILES["gpu"]
SMOKE = profiles.PROFILES["smoke"]


@pytest.mark.parametrize("model", ["fcn8s", "segnet", "deconvnet", "deeplabv1", "dilatednet", "deeplabv2",
                                   "pspnet_resnet50", "deeplabv3_resnet50", "deeplabv3plus_resnet50",
                                   "hrnetv2_w18"])
def test_encoder_models_start_from_the_profiles_weights(model, monkeypatch):
    # as if every course encoder shipped (HRNet's own is tested below, both ways)
    monkeypatch.setattr(course, "available", lambda folder=None: [("hrnetv2_w18", CPU.width)])
    assert encoders.encoder_weights(model, CPU) == {"pretrained_backbone": "course"}
    assert encoders.encoder_weights(model, SMOKE) == {}
    expected = {} if model.startswith("hrnet") else {"pretrained_backbone": "imagenet"}  # none in torchvision
    assert encoders.encoder_weights(model, GPU) == expected


@pytest.mark.parametrize("model", ["unet", "unetpp", "fcdensenet56", "fcdensenet103"])
def test_the_papers_from_scratch_models_never_get_weights(model):
    for profile in (CPU, GPU):
        assert encoders.encoder_weights(model, profile) == {}


def test_a_model_without_the_option_gets_none(monkeypatch):
    # a model built by import path whose builder takes no pretrained_backbone
    monkeypatch.setattr(models, "options_of", lambda name: {"width"})
    assert encoders.encoder_weights("deeplabv3plus_resnet50", CPU) == {}


def test_a_profile_without_weights_trains_everything_from_scratch():
    scratch = dataclasses.replace(CPU, encoder_weights=None)
    assert all(encoders.encoder_weights(name, scratch) == {} for name in models.available())


def test_hrnet_trains_from_scratch_until_its_course_encoder_ships(monkeypatch):
    shipped = course.available()  # the package's own cards: VGG-16 and ResNet-50, not HRNet yet
    assert ("resnet50", CPU.width) in shipped and ("vgg16_bn", CPU.width) in shipped
    monkeypatch.setattr(course, "available", lambda folder=None: [e for e in shipped if e[0] != "hrnetv2_w18"])
    assert encoders.encoder_weights("hrnetv2_w18", CPU) == {}
    assert encoders.encoder_weights("deeplabv3plus_resnet50", CPU) == {"pretrained_backbone": "course"}
    monkeypatch.setattr(course, "available", lambda folder=None: [*shipped, ("hrnetv2_w18", 0.5)])
    assert encoders.encoder_weights("hrnetv2_w18", CPU) == {}  # another width does not count
    monkeypatch.setattr(course, "available", lambda folder=None: [*shipped, ("hrnetv2_w18", CPU.width)])
    assert encoders.encoder_weights("hrnetv2_w18", CPU) == {"pretrained_backbone": "course"}
