"""The encoder interface (segedu.models.interface) and the shared helpers of segedu.models.blocks
that the models use: pad_with_crop, kaiming_init_, SeparableConv2d."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segedu import models
from segedu.errors import SegeduError
from segedu.models import blocks, interface
from segedu.models.backbones import xception
from segedu.models.class_head import encoder_module

from model_checks import registered_models

#: the attribute each family keeps its encoder in (the state-dict prefix checkpoints rely on)
ENCODER_ATTRIBUTE = {"deconvnet": "encoder", "segnet": "encoder", "dilatednet": "frontend.backbone",
                     "unet": None, "unetpp": None, "fcdensenet56": None, "fcdensenet67": None,
                     "fcdensenet103": None, "hrnetv2_w18": None, "hrnetv2_w48": None}


@pytest.mark.parametrize("name", registered_models())
def test_encoder_and_feature_taps_of_every_model(name):
    torch.manual_seed(0)
    model = models.create(name, width=0.125).eval()
    attribute = ENCODER_ATTRIBUTE.get(name, "backbone")
    if attribute is None:
        assert model.encoder is None
    else:
        assert model.encoder is model.get_submodule(attribute)
    assert not any(key.startswith("encoder.") for key in model.state_dict()) or attribute == "encoder"
    # every tap's submodule runs once per forward and gives a map of its channel count
    taps = model.feature_taps
    seen: dict[str, list[torch.Tensor]] = {feature: [] for feature in taps}
    handles = [model.get_submodule(tap.name).register_forward_hook(
        lambda module, inputs, output, tap=tap, feature=feature: seen[feature].append(tap.select(output)))
        for feature, tap in taps.items()]
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    for handle in handles:
        handle.remove()
    for feature, tap in taps.items():
        assert len(seen[feature]) == 1, feature
        assert seen[feature][0].dim() == 4 and seen[feature][0].shape[1] == tap.channels, feature
    # network order: the maps never get finer, so the last tap is the deepest, the class head's
    sizes = [seen[feature][0].shape[-1] for feature in taps]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < 64
    assert encoder_module(model) == list(taps.values())[-1]


def test_feature_taps_by_hand():
    fcn = models.create("fcn8s", width=0.125)
    assert list(fcn.feature_taps) == ["pool1", "pool2", "pool3", "pool4", "pool5", "fc7"]
    assert fcn.feature_taps["fc7"] == interface.FeatureTap("backbone", 512, "fc7")  # 4096 / 8
    assert models.create("segnet", width=0.125).feature_taps["pool5"] == interface.FeatureTap("encoder.features.43", 64, 0)  # vgg16_bn: pool5 is features[43]
    assert models.create("unet", width=0.125).feature_taps["level5"] == interface.FeatureTap("downs.3", 128)
    hrnet = models.create("hrnetv2_w18", width=0.5)
    assert [tap.channels for tap in hrnet.feature_taps.values()] == [9, 18, 36, 72]


def test_load_pretrained_loads_the_encoder_and_nothing_for_false(monkeypatch):
    loaded = []
    monkeypatch.setattr(interface, "load_imagenet", lambda backbone, source: loaded.append((backbone, source)))
    dilated = models.create("dilatednet", width=0.125)
    assert interface.load_pretrained(dilated, "course") is dilated
    assert interface.load_pretrained(dilated, False) is dilated and interface.load_pretrained(dilated, None) is dilated
    backbone = models.backbones.ResNet(50, width=0.125)
    assert interface.load_pretrained(backbone, "x.pt") is backbone
    assert loaded == [(dilated.frontend.backbone, "course"), (backbone, "x.pt")]

    class Tangled(interface.EncoderDecoder):  # an encoder spread over the network, no reason given
        encoder_path = None

    with pytest.raises(SegeduError, match=r"^Tangled has no pretrained backbone: no single module is its encoder"):
        interface.load_pretrained(Tangled(), True)
    with pytest.raises(SegeduError, match=r"^UNet has no pretrained backbone: the paper trains it from scratch"):
        interface.load_pretrained(models.create("unet", width=0.125), True)
    # the registry goes through it
    models.create("segnet", width=0.125, pretrained="imagenet")
    assert loaded[-1][0] is not None and type(loaded[-1][0]).__name__ == "Encoder" and loaded[-1][1] == "imagenet"


def test_pad_with_crop_by_hand():
    x = torch.arange(1.0, 36.0).reshape(1, 1, 5, 7)
    padded, crop = blocks.pad_with_crop(x, 4)
    assert padded.shape == (1, 1, 8, 8)
    assert torch.equal(padded[..., :5, :7], x)
    assert padded[..., 5:, :].abs().sum() == 0 and padded[..., 7:].abs().sum() == 0  # zeros, bottom and right
    assert torch.equal(crop(padded), x) and torch.equal(crop(padded * 2), x * 2)
    reflected, _ = blocks.pad_with_crop(x, 4, mode="reflect")
    assert torch.equal(reflected, F.pad(x, (0, 1, 0, 3), mode="reflect"))
    assert reflected[0, 0, 5, 0] == x[0, 0, 3, 0]  # row 5 mirrors row 3 about row 4
    same, crop = blocks.pad_with_crop(torch.ones(1, 1, 8, 16), 8)
    assert same.shape == (1, 1, 8, 16) and crop(same).shape == (1, 1, 8, 16)


def test_pad_with_crop_min_size_and_reflection_of_a_small_image():
    x = torch.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    # a minimum size beyond the next multiple: zeros up to it, the multiple still kept
    padded, crop = blocks.pad_with_crop(x, 4, min_size=6)
    assert padded.shape == (1, 1, 8, 8) and torch.equal(crop(padded), x) and padded.sum() == x.sum()
    big, _ = blocks.pad_with_crop(torch.ones(1, 1, 40, 36), 32, min_size=8)
    assert big.shape == (1, 1, 64, 64)  # the multiple dominates a small minimum
    # torch cannot reflect 2 rows of a 2-row image: the edge is repeated, by hand
    edge, _ = blocks.pad_with_crop(x, 4, mode="reflect")
    assert torch.equal(edge, torch.tensor([[1., 2., 3., 3.], [4., 5., 6., 6.], [4., 5., 6., 6.],
                                           [4., 5., 6., 6.]]).reshape(1, 1, 4, 4))


def test_kaiming_init_draws_as_torchs_initialisers_in_module_order():
    def network():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ConvTranspose2d(4, 2, 2), nn.Conv2d(2, 5, 1))

    torch.manual_seed(0)
    mine = blocks.kaiming_init_(network(), zero_bias=True)
    torch.manual_seed(0)
    reference = network()
    for layer in (reference[0], reference[3]):  # Conv2d only, in order; the transposed one keeps its default
        nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(layer.bias)
    for a, b in zip(mine.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert mine[2].bias.abs().sum() > 0  # not a Conv2d: untouched

    torch.manual_seed(0)
    kept = blocks.kaiming_init_(network(), zero_bias=False)
    assert torch.equal(kept[0].weight, mine[0].weight) and kept[0].bias.abs().sum() > 0

    torch.manual_seed(1)
    uniform = blocks.kaiming_init_(nn.Conv2d(64, 64, 3), zero_bias=True, distribution="uniform", mode="fan_in")
    bound = math.sqrt(2.0) * math.sqrt(3.0 / (64 * 9))  # gain * sqrt(3 / fan_in)
    assert uniform.weight.abs().max() <= bound and uniform.weight.abs().max() > 0.95 * bound
    with pytest.raises(ValueError, match="distribution"):
        blocks.kaiming_init_(nn.Conv2d(1, 1, 1), zero_bias=True, distribution="gaussian")


def test_separable_conv_is_one_class_reexported_by_xception():
    assert xception.SeparableConv2d is blocks.SeparableConv2d
    conv = blocks.SeparableConv2d(4, 6, 3, dilation=2)
    assert conv.conv_dw.groups == 4 and conv.conv_dw.padding == (2, 2) and conv.conv_pw.kernel_size == (1, 1)
    assert conv(torch.randn(1, 4, 9, 9)).shape == (1, 6, 9, 9)
