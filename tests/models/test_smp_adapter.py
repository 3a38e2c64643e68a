"""segmentation_models_pytorch models through segedu: create("smp:<Arch>"), any input size, training."""

import pytest
import torch

from segedu import models
from segedu.models import measure
from segedu.errors import SegeduError

smp = pytest.importorskip("segmentation_models_pytorch", reason="the optional smp extra is not installed "
                          "(make test installs it with the book extra)")


def test_the_adapter_holds_smps_own_model_with_the_same_parameters():
    torch.manual_seed(0)
    ours = models.create("smp:Unet", num_classes=11, encoder="resnet18")
    reference = smp.Unet(encoder_name="resnet18", encoder_weights=None, classes=11)
    assert isinstance(ours.model, smp.Unet)
    assert measure.parameter_count(ours) == measure.parameter_count(reference)
    reference.load_state_dict(ours.model.state_dict())
    x = torch.rand(2, 3, 64, 96)
    ours.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))  # a multiple of 32: no padding, smp's output


@pytest.mark.parametrize("arch", ["smp:FPN", "smp:deeplabv3plus", "smp:UnetPlusPlus"])
def test_any_input_size_gives_logits_of_that_size(arch):
    model = models.create(arch, num_classes=5, encoder="resnet18").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 50, 70))  # not a multiple of 32: padded, then cropped back
    assert out.shape == (1, 5, 50, 70)


def test_clear_errors_for_unknown_architecture_encoder_and_width():
    with pytest.raises(SegeduError, match="unknown smp architecture 'Unett'.*smp:Unet"):
        models.create("smp:Unett")
    with pytest.raises(SegeduError, match="encoder 'resnet9999'"):
        models.create("smp:Unet", encoder="resnet9999")
    with pytest.raises(SegeduError, match="no width option"):
        models.create("smp:Unet", width=0.5)
    assert "width" not in models.options_of("smp:Unet") and "encoder" in models.options_of("smp:Unet")


def test_missing_package_is_named(monkeypatch):
    import builtins

    from segedu.models import smp_adapter

    real = builtins.__import__

    def no_smp(name, *args, **kwargs):
        if name.startswith("segmentation_models_pytorch"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_smp)
    with pytest.raises(SegeduError, match="pip install segmentation-models-pytorch"):
        smp_adapter.architectures()


def test_an_smp_model_has_the_model_interface_and_takes_a_class_head():
    from segedu.models.class_head import ClassPresenceModel

    model = models.create("smp:Unet", num_classes=11, encoder="resnet18")
    assert model.encoder is model.model.encoder and model.course_encoder is None
    taps = model.feature_taps
    # resnet18's stages: 64 channels at 1/2 and 1/4, then 128, 256, 512 (the deepest last)
    assert [(name, tap.channels) for name, tap in taps.items()] == [
        ("stage1", 64), ("stage2", 64), ("stage3", 128), ("stage4", 256), ("stage5", 512)]
    seen = []  # a hook that returns None leaves the output as it is
    handle = model.get_submodule(taps["stage5"].name).register_forward_hook(
        lambda module, args, output: seen.append(taps["stage5"].select(output)))
    with torch.no_grad():
        model.eval()(torch.rand(1, 3, 64, 64))
    handle.remove()
    assert len(seen) == 1 and seen[0].shape == (1, 512, 2, 2)  # 1/32 of the input
    headed = ClassPresenceModel(model, 11).eval()
    with torch.no_grad():
        assert headed(torch.rand(1, 3, 64, 64)).shape == (1, 11, 64, 64)
    with pytest.raises(SegeduError, match="encoder_weights"):
        model.load_pretrained("imagenet")


# --- segedu's encoders under smp's decoders ---------------------------------------------------

def test_segedus_resnet_under_smps_unet_gives_the_backbones_features():
    """smp's decoder reads [image, stem, layer1..layer4] from segedu's ResNet: the same maps that
    segedu's ResNet itself returns, at smp's channel list."""
    from segedu.models.backbones import ResNet

    torch.manual_seed(0)
    model = models.create("smp:Unet", num_classes=11, encoder="segedu-resnet50", encoder_width=0.25).eval()
    encoder = model.encoder
    assert isinstance(encoder, ResNet) and encoder.width == 0.25
    reference = ResNet(50, width=0.25).eval()
    reference.load_state_dict(encoder.state_dict())
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        features = encoder(x)
        expected = reference(x)
    assert encoder.out_channels == [3, 16, 64, 128, 256, 512]
    assert [f.shape[1] for f in features] == encoder.out_channels
    for name, feature in zip(("layer1", "layer2", "layer3", "layer4"), features[2:]):
        torch.testing.assert_close(feature, expected[name])
    with torch.no_grad():
        assert model(torch.rand(1, 3, 50, 70)).shape == (1, 11, 50, 70)


def test_smps_deeplabv3plus_gets_segedus_resnet_dilated_at_output_stride_16():
    model = models.create("smp:DeepLabV3Plus", num_classes=11, encoder="segedu-resnet50", encoder_width=0.25).eval()
    with torch.no_grad():
        features = model.encoder(torch.rand(1, 3, 64, 64))
    assert [f.shape[-1] for f in features] == [64, 32, 16, 8, 4, 4]  # layer4 dilated, not strided
    assert [f.shape[-1] for f in models.create("smp:Unet", encoder="segedu-resnet50", encoder_width=0.25)
            .encoder(torch.rand(1, 3, 64, 64))] == [64, 32, 16, 8, 4, 2]


def test_the_course_encoder_loads_into_an_smp_model(tmp_path):
    from segedu.experiments import encoders
    from segedu import profiles
    from segedu.models import course

    model = models.create("smp:Unet", num_classes=11, encoder="segedu-resnet50", encoder_width=0.25,
                          pretrained_backbone="course")
    assert model.course_encoder == "resnet50"
    shipped = course.state_dict("resnet50", 0.25)
    state = model.encoder.state_dict()
    assert set(shipped) == set(state)
    assert all(torch.equal(state[key].to(value.dtype), value) for key, value in shipped.items())
    # the book's experiments ask the model: course weights for segedu's encoder, none for smp's own
    cpu = profiles.PROFILES["cpu"]  # not get(): the test suite forces the smoke profile
    assert encoders.encoder_weights("smp:Unet", cpu, {"encoder": "segedu-resnet50", "encoder_width": 0.25}) == {
        "pretrained_backbone": "course"}
    assert encoders.encoder_weights("smp:Unet", cpu, {"encoder": "resnet18"}) == {}
    # no course weights at a width the course does not ship
    assert encoders.encoder_weights("smp:Unet", cpu, {"encoder": "segedu-resnet50", "encoder_width": 0.5}) == {}


def test_pretrained_weights_for_smps_own_encoders_and_bad_widths_are_refused():
    with pytest.raises(SegeduError, match="encoder_weights='imagenet'.*segedu-resnet50"):
        models.create("smp:Unet", encoder="resnet18", pretrained_backbone="course")
    with pytest.raises(SegeduError, match="encoder_width is for segedu's encoders"):
        models.create("smp:Unet", encoder="resnet18", encoder_width=0.5)
    with pytest.raises(SegeduError, match="takes pretrained_backbone"):
        models.create("smp:Unet", encoder="segedu-resnet50", encoder_weights="imagenet")
    with pytest.raises(SegeduError, match="positive channel multiplier"):
        models.create("smp:Unet", encoder="segedu-resnet50", encoder_width=0)


@pytest.mark.parametrize("source", ["weights API", "file"])
def test_torchvisions_imagenet_resnet50_goes_under_an_smp_decoder(source, monkeypatch, tmp_path):
    """At the paper's width segedu's encoder takes torchvision's ImageNet ResNet-50, through
    torchvision's weights API (stubbed here: nothing is downloaded) or from a saved file, as the
    book's own models do: the route a team online takes to put ImageNet weights under smp's U-Net."""
    import torchvision
    from torchvision.models import ResNet50_Weights

    from model_checks import fake_weights_api

    torch.manual_seed(1)
    imagenet = torchvision.models.resnet50(weights=None).state_dict()
    requested = fake_weights_api(monkeypatch, ResNet50_Weights, imagenet)
    if source == "file":
        torch.save(imagenet, tmp_path / "resnet50.pth")
    model = models.create("smp:Unet", num_classes=11, encoder="segedu-resnet50",
                          pretrained_backbone="imagenet" if source == "weights API" else tmp_path / "resnet50.pth")
    assert requested == ([ResNet50_Weights.IMAGENET1K_V1] if source == "weights API" else [])
    state = model.encoder.state_dict()
    expected = {key: value for key, value in imagenet.items() if not key.startswith("fc.")}
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[key], value) for key, value in expected.items())
