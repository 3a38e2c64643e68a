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
