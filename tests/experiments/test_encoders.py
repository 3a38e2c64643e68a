"""Which models start from a pretrained encoder (segedu.experiments.encoders)."""
import dataclasses

import pytest

from segedu import models, profiles
from segedu.experiments import encoders

CPU = profiles.PROFILES["cpu"]
GPU = profiles.PROFILES["gpu"]
SMOKE = profiles.PROFILES["smoke"]


@pytest.mark.parametrize("model", ["fcn8s", "segnet", "deconvnet", "deeplabv1", "dilatednet", "deeplabv2",
                                   "pspnet_resnet50", "deeplabv3_resnet50", "deeplabv3plus_resnet50",
                                   "hrnetv2_w18"])
def test_encoder_models_start_from_the_profiles_weights(model):
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
