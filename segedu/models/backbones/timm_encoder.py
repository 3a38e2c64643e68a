"""Any timm classifier as a segmentation backbone: :class:`TimmEncoder`.

timm (Wightman, *PyTorch Image Models*, https://github.com/huggingface/pytorch-image-models) holds
over a thousand ImageNet classifiers, and its ``features_only=True`` mode cuts any of them before
the classifier and returns the feature map after each stage. segmentation_models_pytorch's
encoders come from there. :class:`TimmEncoder` wraps that mode in segedu's backbone interface --
a dict of features by name and ``channels`` (name -> channel count) -- so the book's own decoders
(DeepLab v3+ here: :func:`segedu.models.deeplabv3plus.deeplabv3plus_timm`) run on a timm encoder.

* **Names.** A feature is named after the timm module that produces it
  (``feature_info.module_name()``: ``act1``, ``layer1`` ... ``layer4`` on a ResNet, ``blocks.1`` ...
  on an EfficientNet), in network order, so the deepest feature is the last one; ``strides`` maps
  each name to its reduction of the input (``feature_info.reduction()``).
* **Output stride.** timm's ``output_stride=16`` or ``8`` replaces the stride of the last stages by
  dilation, as :class:`~segedu.models.backbones.resnet.ResNet` does -- for the architectures timm
  implements it for (ResNets, EfficientNets, ConvNeXts, ...; not vision transformers).
* **No download unless asked.** ``pretrained=False`` is the default; ``True`` asks timm for its
  default ImageNet weights (downloaded from the Hugging Face hub), a path loads a state dict saved
  from ``timm.create_model(name).state_dict()`` on a machine with network.
* timm is an optional package (segedu's ``book`` extra installs it); without it, building raises
  a SegeduError saying how to install it.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import torch
from torch import nn

from ...errors import SegeduError, download_failed

INSTALL_HINT = ("timm is not installed; `pip install timm` (segedu's book extra has it: "
                "`pip install -e '.[book]'`) to build models on timm encoders.")


def _timm():
    try:
        import timm
    except ImportError:
        raise SegeduError(INSTALL_HINT) from None
    return timm


def check_name(name: str) -> None:
    """SegeduError unless ``name`` is one of timm's models (``timm.list_models()``; a pretrained tag
    such as ``resnet18.a1_in1k`` is allowed)."""
    timm = _timm()
    if not timm.is_model(name):
        match = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(repr(m) for m in match)}?)" if match else ""
        raise SegeduError(f"unknown timm encoder {name!r}{hint}; timm.list_models() lists the "
                          f"{len(timm.list_models())} names, e.g. 'resnet18', 'resnet50', 'efficientnet_b0'.")


class TimmEncoder(nn.Module):
    """The timm model ``name`` with ``features_only=True``, returning ``{module name: feature}``.

    Args:
        name: a timm model name (``timm.list_models()``), e.g. ``"resnet18"``.
        output_stride: 32 (classification), 16 or 8 (dilated last stages, for dense prediction).
        pretrained: False; True (or "imagenet") for timm's default ImageNet weights (downloads), or the path of a
            state dict saved from ``timm.create_model(name)`` (checked strictly against it).

    ``channels`` and ``strides`` map each returned feature name to its channel count and its
    reduction of the input size.
    """

    #: timm fetches ImageNet weights for its encoders itself (``pretrained``), where torchvision's
    #: backbones name theirs in ``imagenet_weights``: what ``EncoderDecoder.imagenet_weights_available`` reads.
    own_imagenet_weights = True

    def __init__(self, name: str, *, output_stride: int = 16,
                 pretrained: bool | str | os.PathLike = False) -> None:
        super().__init__()
        timm = _timm()
        check_name(name)
        if output_stride not in (8, 16, 32):
            raise SegeduError(f"output_stride must be 8, 16 or 32, got {output_stride!r}.")
        options = {} if output_stride == 32 else {"output_stride": output_stride}
        # the names models.create(pretrained=...) gives every model; without this they read as file paths
        if pretrained == "imagenet":
            pretrained = True
        elif pretrained == "course":
            raise SegeduError(f"timm encoder {name!r} has no course weights: the course pretrains only the encoders "
                              "of segedu.models.course.ENCODERS; use pretrained_backbone=True for timm's ImageNet "
                              "weights, or a course model (e.g. deeplabv3plus_resnet50).")
        if pretrained and pretrained is not True:
            options["pretrained_cfg_overlay"] = {"file": str(_checked_file(timm, name, pretrained))}
        try:
            self.model = timm.create_model(name, features_only=True, pretrained=bool(pretrained), **options)
        except OSError as error:  # pretrained=True without network (hub errors are OSErrors)
            raise download_failed(f"timm's weights of {name!r}", error,
                                  f"save them with torch.save(timm.create_model({name!r}, pretrained=True)"
                                  ".state_dict(), PATH) and pass pretrained=PATH") from None
        except (TypeError, ValueError, AssertionError, RuntimeError) as error:
            raise SegeduError(f"timm encoder {name!r} with features_only=True, output_stride={output_stride}: "
                              f"{error}") from None
        self.name = name
        info = self.model.feature_info
        self.feature_names = list(info.module_name())
        self.channels = dict(zip(self.feature_names, info.channels(), strict=True))
        self.strides = dict(zip(self.feature_names, info.reduction(), strict=True))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.feature_names, self.model(x), strict=True))

    def feature_at(self, stride: int) -> str:
        """The name of the last (deepest) feature at ``stride`` (e.g. 4: DeepLab v3+'s low level)."""
        names = [name for name, s in self.strides.items() if s == stride]
        if not names:
            raise SegeduError(f"timm encoder {self.name!r} has no feature at stride {stride}; its strides: "
                              f"{self.strides}.")
        return names[-1]


def _checked_file(timm, name: str, path: str | os.PathLike) -> Path:
    """``path`` if it holds the state dict of timm's classifier ``name``; else a SegeduError.

    timm loads a file given as ``pretrained_cfg_overlay`` into a features-only model without
    complaining about missing keys, so the file is first loaded strictly into the full classifier.
    """
    path = Path(path)
    how = f"torch.save(timm.create_model({name!r}, pretrained=True).state_dict(), path)"
    if not path.is_file():
        raise SegeduError(f"{path}: no such file for the timm encoder's weights; save them with {how}.")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        timm.create_model(name).load_state_dict(state_dict)
    except Exception as error:
        raise SegeduError(f"{path}: not the weights of timm's {name!r} ({str(error)[:300]}); save them with "
                          f"{how}.") from None
    return path
