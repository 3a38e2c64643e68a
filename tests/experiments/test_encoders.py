"""Which models start from a pretrained encoder (segedu.experiments.encoders)."""
import dataclasses

import pytest

from segedu import models, profiles
from segedu.experiments import compare, encoders
from segedu.models import course

CPU = profiles.PROFILES["cpu"]
GPU = profiles.PROFILES["gpu"]
SMOKE = profiles.PROFILES["smoke"]


@pytest.mark.parametrize("model", ["fcn8s", "segnet", "deconvnet", "deeplabv1", "dilatednet",
                                   "pspnet_resnet50", "deeplabv3_resnet50", "deeplabv3plus_resnet50",
                                   "hrnetv2_w18"])
def test_encoder_models_start_from_the_profiles_weights(model, monkeypatch):
    # (DeepLab v2 at its default depth 101 is tested below: the course ships no ResNet-101)
    # as if every course encoder shipped (HRNet's own is tested below, both ways)
    shipped = course.available()
    monkeypatch.setattr(course, "available", lambda folder=None: [*shipped, ("hrnetv2_w18", CPU.width)])
    options = compare.ARCHITECTURES[model]  # the book's options: VGG-16 with batch norm, as the course's
    assert encoders.encoder_weights(model, CPU, options) == {"pretrained_backbone": "course"}
    assert encoders.encoder_weights(model, SMOKE, options) == {}
    expected = {} if model.startswith("hrnet") else {"pretrained_backbone": "imagenet"}  # none in torchvision
    assert encoders.encoder_weights(model, GPU, options) == expected


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


def test_hrnet_starts_from_its_course_encoder_only_where_it_ships_at_that_width(monkeypatch):
    shipped = course.available()  # the package's own cards: VGG-16, ResNet-50 and HRNetV2-W18
    assert {("resnet50", CPU.width), ("vgg16_bn", CPU.width), ("hrnetv2_w18", CPU.width)} <= set(shipped)
    assert encoders.encoder_weights("hrnetv2_w18", CPU) == {"pretrained_backbone": "course"}
    others = [e for e in shipped if e[0] != "hrnetv2_w18"]
    monkeypatch.setattr(course, "available", lambda folder=None: others)
    assert encoders.encoder_weights("hrnetv2_w18", CPU) == {}  # not shipped: from scratch
    assert encoders.encoder_weights("deeplabv3plus_resnet50", CPU) == {"pretrained_backbone": "course"}
    monkeypatch.setattr(course, "available", lambda folder=None: [*others, ("hrnetv2_w18", 0.5)])
    assert encoders.encoder_weights("hrnetv2_w18", CPU) == {}  # another width does not count


@pytest.mark.parametrize("model, options, encoder", [
    ("fcn8s", {"batch_norm": True}, "vgg16_bn"), ("deeplabv1", {"batch_norm": True}, "vgg16_bn"),
    ("dilatednet", {"batch_norm": True}, "vgg16_bn"), ("segnet", {}, "vgg16_bn"),
    ("fcn8s", {}, None),  # VGG-16 without batch norm: the course pretrains only the batch-norm one
    ("deeplabv3plus_resnet50", {}, "resnet50"), ("pspnet_resnet50", {}, "resnet50"),
    ("deeplabv2", {"depth": 50}, "resnet50"), ("deeplabv2", {}, "resnet101"), ("hrnetv2_w18", {}, "hrnetv2_w18"),
    ("deeplabv3plus_xception", {}, None), ("hrnetv2_w48", {}, None), ("unet", {}, None)])
def test_the_course_encoder_is_read_from_the_models_own_encoder(model, options, encoder):
    assert encoders.course_encoder(model, options) == encoder


def test_models_the_course_has_no_weights_for_train_from_scratch_under_course():
    # ResNet-101 and Xception are not shipped, so these fall back instead of failing at build time
    for model, options in (("deeplabv2", {}), ("deeplabv3plus_xception", {}), ("hrnetv2_w48", {}), ("fcn8s", {})):
        assert encoders.encoder_weights(model, CPU, options) == {}, model
    assert encoders.encoder_weights("deeplabv2", CPU, {"depth": 50}) == {"pretrained_backbone": "course"}
    assert ("resnet101", CPU.width) not in course.available()  # the premise: only ResNet-50 ships


def test_a_model_at_another_width_than_the_profiles_is_checked_at_its_own():
    # the course ships ResNet-50 at the profile's width only: at width 0.5 there is nothing to load
    assert ("resnet50", 0.5) not in course.available()
    assert encoders.encoder_weights("deeplabv3plus_resnet50", CPU, {"width": 0.5}) == {}
    assert encoders.encoder_weights("deeplabv3plus_resnet50", CPU, {"width": CPU.width}) == {"pretrained_backbone": "course"}
