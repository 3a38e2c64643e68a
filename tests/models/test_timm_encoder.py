"""timm classifiers as segedu backbones: TimmEncoder and DeepLab v3+ on it (deeplabv3plus_timm)."""
import sys

import pytest
import torch

from segedu import models
from segedu.errors import SegeduError
from segedu.models import measure
from segedu.models.backbones import TimmEncoder
from segedu.models.deeplabv3plus import DeepLabV3Plus

timm = pytest.importorskip("timm", reason="the optional package timm is not installed (segedu's book extra, "
                           "which make test installs, has it)")


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_features_carry_timms_names_channels_and_strides(output_stride):
    encoder = TimmEncoder("resnet18", output_stride=output_stride)
    kwargs = {} if output_stride == 32 else {"output_stride": output_stride}
    info = timm.create_model("resnet18", features_only=True, **kwargs).feature_info
    assert list(encoder.channels) == info.module_name() == ["act1", "layer1", "layer2", "layer3", "layer4"]
    assert list(encoder.channels.values()) == info.channels()
    assert list(encoder.strides.values()) == info.reduction()
    features = encoder(torch.rand(1, 3, 64, 96))
    assert list(features) == list(encoder.channels)
    for name, feature in features.items():  # the channels and strides are what forward returns
        stride = encoder.strides[name]
        assert feature.shape == (1, encoder.channels[name], 64 // stride, 96 // stride)
    assert max(encoder.strides.values()) == output_stride


def test_the_encoder_part_has_timms_parameter_count():
    encoder = TimmEncoder("resnet18")
    reference = timm.create_model("resnet18", features_only=True)
    assert measure.parameter_count(encoder) == measure.parameter_count(reference) == 11_176_512
    model = models.create("deeplabv3plus_timm", num_classes=11, encoder="resnet18")
    assert measure.parameter_count(model.backbone) == measure.parameter_count(reference)


@pytest.mark.parametrize("size", [(37, 45), (65, 33), (17, 19)])
def test_deeplabv3plus_on_timm_gives_logits_at_odd_input_sizes(size):
    torch.manual_seed(0)
    model = models.create("deeplabv3plus_timm", num_classes=5, encoder="resnet18", width=0.25).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, *size)).shape == (2, 5, *size)


def test_low_level_is_the_stride_4_feature_and_high_level_the_last():
    model = models.create("deeplabv3plus_timm", num_classes=3, encoder="efficientnet_b0", width=0.25)
    assert isinstance(model, DeepLabV3Plus)
    assert (model.low_level, model.high_level) == ("blocks.1", "blocks.6")
    assert model.backbone.strides[model.low_level] == 4 and model.backbone.strides[model.high_level] == 16
    # the decoder reduces the low-level features of the encoder (24 channels) and the ASPP reads 320
    assert model.decoder.reduce[0].in_channels == 24
    assert model.aspp.convs[0][0].in_channels == 320
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 41, 29)).shape == (1, 3, 41, 29)


def test_width_scales_only_the_decoder():
    small = models.create("deeplabv3plus_timm", num_classes=11, width=0.25)
    large = models.create("deeplabv3plus_timm", num_classes=11, width=1.0)
    assert measure.parameter_count(small.backbone) == measure.parameter_count(large.backbone)
    assert measure.parameter_count(small) < measure.parameter_count(large)
    assert "encoder" in models.options_of("deeplabv3plus_timm")


def test_unknown_encoder_names_the_closest_timm_models():
    with pytest.raises(SegeduError, match=r"unknown timm encoder 'resnet19'.*did you mean.*'resnet18'"):
        models.create("deeplabv3plus_timm", encoder="resnet19")
    with pytest.raises(SegeduError, match="timm encoder 'vit_tiny_patch16_224'.*output_stride"):
        models.create("deeplabv3plus_timm", encoder="vit_tiny_patch16_224")  # no dilated variant in timm
    with pytest.raises(SegeduError, match="output_stride must be 8 or 16"):
        models.create("deeplabv3plus_timm", output_stride=32)  # no ASPP rates for it


def test_missing_timm_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now raises ImportError
    with pytest.raises(SegeduError, match="timm is not installed; `pip install timm`"):
        models.create("deeplabv3plus_timm")


def test_weights_from_a_file_load_and_a_wrong_file_is_refused(tmp_path):
    """pretrained_backbone=<path>: the offline way to timm's weights (True downloads; not tested)."""
    torch.manual_seed(0)
    classifier = timm.create_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(classifier.state_dict(), path)
    model = models.create("deeplabv3plus_timm", num_classes=3, encoder="resnet18", pretrained_backbone=path)
    torch.testing.assert_close(model.backbone.model.layer4[1].conv2.weight, classifier.layer4[1].conv2.weight)

    wrong = tmp_path / "resnet34.pth"
    torch.save(timm.create_model("resnet34").state_dict(), wrong)
    with pytest.raises(SegeduError, match="not the weights of timm's 'resnet18'"):
        models.create("deeplabv3plus_timm", encoder="resnet18", pretrained_backbone=wrong)
    with pytest.raises(SegeduError, match="no such file"):
        models.create("deeplabv3plus_timm", pretrained_backbone=tmp_path / "absent.pth")
