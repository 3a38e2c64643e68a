"""segmentation_models_pytorch (smp) architectures as segedu models: ``create("smp:Unet", ...)``.

Competition teams often take their models from smp (Iakubovskii, *Segmentation Models Pytorch*,
https://github.com/qubvel-org/segmentation_models.pytorch): a dozen decoders (U-Net, U-Net++,
FPN, PSPNet, DeepLab v3/v3+, Linknet, MA-Net, PAN, UPerNet, SegFormer, DPT) over hundreds of
encoders from timm. segedu's engine, metrics, inference tricks and CLI only need an ``nn.Module``
mapping ``(B, 3, H, W)`` images to ``(B, C, H, W)`` logits, so an smp model trains, evaluates
and predicts like any of the book's own models::

    models.create("smp:Unet", num_classes=11, encoder="resnet34")        # from Python
    segedu train --model smp:DeepLabV3Plus --option encoder=resnet50     # from a shell

What the adapter adds to smp's model:

* **Any input size.** smp's encoders downsample by 32 (or 16), and the decoders need the input
  side to be a multiple of it; :class:`SmpModel` pads the input (reflection) up to the next
  multiple and crops the logits back, so like every segedu model it takes any size.
* **No download unless asked.** ``encoder_weights=None`` is the default, so building a model never
  touches the network (the book and the tests run offline); pass ``encoder_weights="imagenet"``
  when you are online to start from smp's pretrained encoders.
* **A clear error** when the optional package is not installed (``pip install
  segmentation-models-pytorch``; segedu's ``book`` extra, which ``make`` installs, has it).
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SegeduError, download_failed

#: model-name prefix that routes :func:`segedu.models.create` here
PREFIX = "smp:"

INSTALL_HINT = ("segmentation_models_pytorch is not installed; `pip install segmentation-models-pytorch` "
                "(or install segedu's book extra: `pip install -e '.[book]'`) to build smp models.")


def _smp():
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        raise SegeduError(INSTALL_HINT) from None
    return smp


def architectures() -> list[str]:
    """The smp architectures (class names) usable as ``smp:<name>``."""
    smp = _smp()
    return sorted(name for name, value in vars(smp).items()
                  if inspect.isclass(value) and issubclass(value, smp.base.SegmentationModel)
                  and value is not smp.base.SegmentationModel)


def _architecture(name: str):
    smp = _smp()
    arch = name[len(PREFIX):] if name.lower().startswith(PREFIX) else name
    found = {a.lower(): a for a in architectures()}
    if arch.lower() not in found:
        raise SegeduError(f"unknown smp architecture {arch!r}; the architectures: "
                          f"{', '.join(PREFIX + a for a in architectures())}.")
    return getattr(smp, found[arch.lower()])


class SmpModel(nn.Module):
    """An smp model that takes any input size: the input is padded (reflection) to a multiple of
    ``multiple`` on the bottom and right, and the logits are cropped back to the input's size."""

    def __init__(self, model: nn.Module, multiple: int = 32):
        super().__init__()
        self.model = model
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return self.model(x)[..., :height, :width]


def build(name: str, num_classes: int, *, encoder: str = "resnet34", encoder_weights: str | None = None,
          encoder_depth: int = 5, **smp_options) -> SmpModel:
    """The smp architecture ``name`` (``"smp:Unet"`` or ``"Unet"``, any case) with ``num_classes``
    output channels and the timm/smp ``encoder``; ``smp_options`` go to smp's constructor (e.g.
    ``decoder_channels``)."""
    arch = _architecture(name)
    accepted = inspect.signature(arch.__init__).parameters
    if "encoder_depth" not in accepted:
        if encoder_depth != 5:
            raise SegeduError(f"smp:{arch.__name__} has no encoder_depth option.")
        depth = {}
    else:
        depth = {"encoder_depth": encoder_depth}
    try:
        model = arch(encoder_name=encoder, encoder_weights=encoder_weights, classes=num_classes, **depth,
                     **smp_options)
    except OSError as error:  # encoder_weights without network
        raise download_failed(f"the {encoder_weights} weights of smp's encoder {encoder!r}", error,
                              "put them in torch's hub cache ($TORCH_HOME/hub/checkpoints) or build with "
                              "encoder_weights=None and load a saved state dict") from None
    except (KeyError, ValueError, TypeError) as exc:
        raise SegeduError(f"smp:{arch.__name__} with encoder {encoder!r}: {exc}") from None
    return SmpModel(model, multiple=2 ** encoder_depth)


#: the keyword options of ``create("smp:...")`` (others are passed on to smp's constructor)
OPTIONS = ("encoder", "encoder_weights", "encoder_depth")
