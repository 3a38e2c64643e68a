"""Helpers of the model tests: hand counts of parameters and non-trivial batch-norm statistics."""
import torch
from torch import nn


def count(model: nn.Module) -> int:
    """All parameters (batch norm's running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


def conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> int:
    """Parameters of a Conv2d, by hand."""
    return in_channels * out_channels * kernel_size**2 + (out_channels if bias else 0)


def norm(channels: int) -> int:
    """Parameters of a BatchNorm2d: its scale and shift."""
    return 2 * channels


def randomize_batch_norm(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so eval-mode BN is not the identity."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            with torch.no_grad():
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) - 0.5)
    return model


def fake_weights_api(monkeypatch, weights_class, state_dict):
    """Replace ``weights.get_state_dict`` of a torchvision WeightsEnum (no download); returns the
    members asked for."""
    requested = []

    def get_state_dict(self, *args, **kwargs):
        requested.append(self)
        return state_dict

    monkeypatch.setattr(weights_class, "get_state_dict", get_state_dict)
    return requested


#: registered models that need an optional package, and the package
OPTIONAL_PACKAGE = {"deeplabv3plus_timm": "timm"}


def registered_models() -> list:
    """``models.available()`` as pytest parameters; a model whose optional package is not installed
    is skipped with the package's name (it raises a SegeduError naming it, tested on its own)."""
    import importlib.util

    import pytest

    from segedu import models

    def missing(name: str) -> bool:
        return name in OPTIONAL_PACKAGE and importlib.util.find_spec(OPTIONAL_PACKAGE[name]) is None

    return [pytest.param(name, marks=pytest.mark.skipif(missing(name), reason=f"needs {OPTIONAL_PACKAGE.get(name)}"))
            for name in models.available()]
