"""Segmentation models by name: ``available()`` lists them, ``create(name, num_classes, **options)``
builds one.

Every registered model follows the same contract, so training, evaluation and the book treat
them alike:

* **Input and output.** Images (B, 3, H, W) of any H and W; logits (B, num_classes, H, W) at the
  input size.
* **Auxiliary outputs.** In eval mode ``forward`` returns the logits tensor. In training mode a
  model built with an auxiliary head (torchvision's ``aux_classifier``, PSPNet's deep supervision)
  returns ``{"out": logits, "aux": aux_logits}``, both at the input size -- torchvision's
  convention; a model without one returns the tensor. :func:`main_output` takes the logits from
  either form; the loss adds the weighted ``"aux"`` term.
* **Options every model takes.** ``width`` (float channel multiplier, 1.0 = the paper's network,
  0.125-0.25 trains on a CPU) and ``pretrained_backbone``: False (from scratch), ``"course"`` (the
  course's own encoders, :mod:`segedu.models.course`, at the widths they ship at), True or
  ``"imagenet"`` (torchvision's ImageNet weights through its weights API, width 1.0 only), or the
  path of a file saved from that API, for offline machines. The registry takes it, not the
  builders: it builds the model, then calls ``model.load_pretrained(source)``, which says why it
  refuses where the paper trains from scratch (U-Net, UNet++, FC-DenseNet) or the weights do not
  exist (DeepLab v3+ on Xception-65; HRNet, whose only pretrained weights are the course's W18).
  Further options are the builder's keyword arguments, listed in its docstring.
* **Outside encoders.** ``deeplabv3plus_timm`` puts the book's DeepLab v3+ on any timm classifier
  (option ``encoder``, e.g. ``"resnet18"``; ``width`` then scales the ASPP and decoder only, and
  ``pretrained_backbone`` means timm's weights); it needs the optional package timm. Whole models
  from segmentation_models_pytorch come through ``create("smp:<Architecture>", ...)`` (below).
* **Your own model.** ``create("my_package.my_module:MyNet", ...)`` imports ``MyNet`` (a module
  class or a builder function) and calls it with ``num_classes`` and the options; the result must
  be an ``nn.Module`` that maps (B, 3, H, W) images to (B, num_classes, H, W) logits. Everything
  that builds models by name -- the trainer, checkpoints, ``segedu train --model``, evaluation and
  inference -- then works with it, provided the module can be imported where it runs.
* **Devices.** Nothing is tied to a device: build, then ``.to(device)``; building inside
  ``with torch.device("meta"):`` allocates nothing (parameter counts at paper scale).
* **Encoder interface.** Every registered model is an
  :class:`~segedu.models.interface.EncoderDecoder`: ``model.encoder`` is its encoder module (what
  ``pretrained_backbone`` loads; None for U-Net, UNet++, FC-DenseNet and HRNetV2, whose encoder is
  no single module) and ``model.feature_taps`` names the encoder features a head may read, deepest
  last (:mod:`segedu.models.class_head` reads the deepest).

Adding an architecture: a module whose builders are decorated with ``@register("name")``, imported
at the bottom of this file; its model class derives from ``EncoderDecoder``, which loads the
``pretrained_backbone`` weights into its ``encoder``. A model whose paper trains it from scratch
sets ``from_scratch`` to the paper's reason; one whose weights load otherwise overrides
``load_pretrained``. A builder declares ``pretrained_backbone`` itself only where its encoder loads
its own weights as it is built (``deeplabv3plus_timm``: timm's) or where another option needs the
weights (``deeplabv1``'s ``decimated_fc``).
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import os
from collections.abc import Callable

import torch
from torch import nn

from ..data.classes import NUM_CLASSES
from ..errors import SegeduError

__all__ = ["PretrainedSource", "available", "create", "main_output", "options_of", "register"]

#: What the ``pretrained_backbone`` option takes, the registry's for every model (see the module docstring).
PretrainedSource = bool | str | os.PathLike

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a builder ``(num_classes, *, width=1.0, ...)`` under the lower-case ``name``;
    ``pretrained_backbone`` is the registry's (see the module docstring)."""
    if name != name.lower() or name in _BUILDERS:
        raise ValueError(f"model name {name!r} must be lower case and not registered yet")

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _BUILDERS[name] = builder
        return builder

    return add


def available() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_BUILDERS)


def create(name: str, num_classes: int = NUM_CLASSES, **options) -> nn.Module:
    """Build the model registered as ``name`` (case-insensitive) with ``num_classes`` outputs.

    Raises SegeduError for an unknown name or option (listing the valid ones and the closest
    match), a non-positive ``num_classes`` or ``width``.

    ``"smp:<Architecture>"`` builds a segmentation_models_pytorch model instead
    (:mod:`segedu.models.smp_adapter`; options ``encoder``, ``encoder_weights``, ``encoder_depth``,
    ``encoder_width`` for segedu's encoders, and smp's own constructor arguments).

    ``pretrained`` is another name for the ``pretrained_backbone`` option: ``"course"`` (the course's
    own encoders, :mod:`segedu.models.course`), ``"imagenet"`` (torchvision's), or a file.
    """
    if "pretrained" in options:
        if "pretrained_backbone" in options:
            raise SegeduError("give pretrained or pretrained_backbone, not both (they are the same option).")
        options["pretrained_backbone"] = options.pop("pretrained")
    if name.lower().startswith("smp:"):
        from . import smp_adapter

        if not isinstance(num_classes, int) or num_classes < 1:
            raise SegeduError(f"num_classes must be a positive integer, got {num_classes!r}.")
        if "width" in options:
            raise SegeduError(f"{name} has no width option: an smp model's size is set by its encoder "
                              "(e.g. encoder='resnet18' for a small one, or one of segedu's with encoder_width).")
        source = options.pop("pretrained_backbone", False)
        return load_pretrained(smp_adapter.build(name, num_classes, **options), source)
    if _is_import_path(name):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise SegeduError(f"num_classes must be a positive integer, got {num_classes!r}.")
        model = _imported(name)(num_classes=num_classes, **options)
        if not isinstance(model, nn.Module):
            raise SegeduError(f"model {name!r} returned a {type(model).__name__}, not a torch.nn.Module; it must "
                              "build a module that maps (B, 3, H, W) images to (B, num_classes, H, W) logits.")
        return model
    accepted = options_of(name)
    for option in options:
        if option not in accepted:
            raise SegeduError(f"model {name!r} has no option {option!r}{_closest(option, accepted)}; "
                              f"its options: {', '.join(accepted)}.")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise SegeduError(f"num_classes must be a positive integer, got {num_classes!r}.")
    if not options.get("width", 1.0) > 0:
        raise SegeduError(f"width must be a positive channel multiplier (1.0 = the paper), "
                          f"got {options['width']!r}.")
    builder = _builder(name)
    if "pretrained_backbone" in _keyword_options(builder):  # an encoder that loads its own weights as built
        return builder(num_classes, **options)
    source = options.pop("pretrained_backbone", False)
    return load_pretrained(builder(num_classes, **options), source)


def options_of(name: str) -> list[str]:
    """The keyword options of model ``name`` in the builder's order; its docstring explains them. A
    registered model's include ``pretrained_backbone``, which the registry takes for every one (after
    the builder's own options, unless the builder declares it)."""
    if name.lower().startswith("smp:"):
        from . import smp_adapter

        arch = smp_adapter._architecture(name)
        skip = {"self", "encoder_name", "encoder_weights", "encoder_depth", "classes", "in_channels", "kwargs"}
        return [*smp_adapter.OPTIONS, *(p for p in inspect.signature(arch.__init__).parameters if p not in skip),
                "pretrained_backbone"]
    if _is_import_path(name):
        parameters = inspect.signature(_imported(name)).parameters.values()
        return [p.name for p in parameters if p.name != "num_classes"
                and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    own = _keyword_options(_builder(name))
    return own if "pretrained_backbone" in own else [*own, "pretrained_backbone"]


def _keyword_options(builder: Callable[..., nn.Module]) -> list[str]:
    """A registered builder's keyword-only parameters, in order."""
    return [p.name for p in inspect.signature(builder).parameters.values() if p.kind is p.KEYWORD_ONLY]


def _is_import_path(name: str) -> bool:
    """``"module.path:Attribute"`` (any prefix but ``smp``)."""
    module, sep, attr = name.partition(":")
    return bool(sep) and module.lower() != "smp"


def _imported(name: str) -> Callable[..., nn.Module]:
    """The class or builder that ``"module.path:Attribute"`` names; SegeduError when it cannot be imported."""
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SegeduError(f"model {name!r}: cannot import the module {module_name!r} ({error}); put it on the "
                          "Python path (e.g. PYTHONPATH=.) or install its package.") from error
    builder = getattr(module, attr, None)
    if not callable(builder):
        found = [n for n in dir(module) if not n.startswith("_")]
        raise SegeduError(f"model {name!r}: the module {module_name!r} has no class or function {attr!r}"
                          f"{_closest(attr, found)}.")
    return builder


def main_output(output: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    """The logits of a model's output: the tensor itself, or ``output["out"]`` in training mode."""
    return output["out"] if isinstance(output, dict) else output


def _builder(name: str) -> Callable[..., nn.Module]:
    key = name.lower()
    if key not in _BUILDERS:
        raise SegeduError(f"unknown model {name!r}{_closest(key, _BUILDERS)}; available models: "
                          f"{', '.join(available())}.")
    return _BUILDERS[key]


def _closest(word: str, choices) -> str:
    """' (did you mean X?)' for the most similar choice, or ''."""
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


# Architecture modules register their builders on import.
from . import (  # noqa: E402,F401
    deconvnet, deeplabv1, deeplabv2, deeplabv3, deeplabv3plus, dilatednet, fcdensenet, fcn, hrnet, pspnet,
    segnet, unet, unetpp,
)
from .interface import load_pretrained  # noqa: E402
