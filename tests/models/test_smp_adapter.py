"""segmentation_models_pytorch models through segedu: create("smp:<Arch>"), any input size, training."""
import dataclasses

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
