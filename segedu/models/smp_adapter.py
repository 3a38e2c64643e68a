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
* **The course's encoders.** ``encoder="segedu-resnet50"`` (or ``-resnet101``) puts segedu's
  ResNet (:class:`~segedu.models.backbones.ResNet`, at ``encoder_width``) under smp's decoder, as
  an smp encoder (smp's documented way to add one: a class with ``EncoderMixin`` in
  ``smp.encoders.encoders``), so ``pretrained_backbone="course"`` loads the course's pretrained
  ResNet into an smp U-Net or DeepLab v3+ exactly as into the book's models; ImageNet weights load
  the same way (``pretrained_backbone="imagenet"``, torchvision's, at ``encoder_width=1.0``).
* **A clear error** when the optional package is not installed (``pip install
  segmentation-models-pytorch``; segedu's ``book`` extra, which ``make`` installs, has it).
"""
from __future__ import annotations

import functools
import inspect

import torch
from torch import nn

from ..errors import SegeduError, download_failed
from .backbones.resnet import BLOCKS, ResNet
from .blocks import pad_with_crop
from .interface import EncoderDecoder, FeatureTap

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


#: segedu's encoders that smp models can use: name -> ResNet depth
SEGEDU_ENCODERS = {f"segedu-resnet{depth}": depth for depth in BLOCKS}


@functools.cache
def _segedu_encoder_class():
    """segedu's ResNet as an smp encoder (made on first use: smp is an optional package)."""
    _smp()
    from segmentation_models_pytorch.encoders._base import EncoderMixin

    class SegeduResNetEncoder(ResNet, EncoderMixin):
        """segedu's ResNet at any width as an smp encoder: smp's decoders read the list
        ``[image, stem (1/2), layer1 (1/4), layer2 (1/8), layer3, layer4]``, as from smp's own ResNet.
        Built dilated at smp's ``output_stride`` (16 for DeepLab v3+), as the book's DeepLab builds it."""

        def __init__(self, resnet_depth: int, width: float, depth: int = 5, output_stride: int = 32,
                     **_smp_params) -> None:
            if depth != 5:
                raise SegeduError(f"segedu's ResNet encoders give all five stages; encoder_depth must be 5, got {depth}.")
            ResNet.__init__(self, resnet_depth, width=width, output_stride=output_stride)
            self._depth, self._in_channels, self._output_stride = depth, 3, output_stride
            self._out_channels = [3, self.conv1.out_channels, *self.channels.values()]

        def make_dilated(self, output_stride: int) -> None:
            if output_stride != self._output_stride:  # smp asks for the stride it built the encoder with
                raise SegeduError(f"this encoder was built at output stride {self._output_stride}, not {output_stride}.")

        def get_stages(self) -> dict:
            return {16: [self.layer3], 32: [self.layer4]}

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            stem = self.relu(self.bn1(self.conv1(x)))
            features = [x, stem]
            y = self.maxpool(stem)
            for name in ("layer1", "layer2", "layer3", "layer4"):
                y = getattr(self, name)(y)
                features.append(y)
            return features

    return SegeduResNetEncoder


def _register_segedu_encoder(encoder: str, width: float) -> str:
    """Add segedu's ``encoder`` at ``width`` to smp's encoder table; return the name smp knows it by."""
    from segmentation_models_pytorch import encoders

    key = f"{encoder}-w{width:g}"
    encoders.encoders[key] = {"encoder": _segedu_encoder_class(), "pretrained_settings": {},
                              "params": {"resnet_depth": SEGEDU_ENCODERS[encoder], "width": float(width)}}
    return key


class SmpModel(EncoderDecoder):
    """An smp model that takes any input size: the input is padded (reflection) to a multiple of
    ``multiple`` on the bottom and right, and the logits are cropped back to the input's size.

    It has segedu's model interface (:mod:`segedu.models.interface`): ``encoder`` is smp's encoder,
    and ``feature_taps`` are the maps it returns, ``stage1`` (1/2) to the deepest, so a class-presence
    head (:mod:`segedu.models.class_head`) reads an smp model as it reads the book's. Its pretrained
    weights are smp's option ``encoder_weights``, given when it is built.
    """

    encoder_path = "model.encoder"

    def __init__(self, model: nn.Module, multiple: int = 32):
        super().__init__()
        self.model = model
        self.multiple = multiple

    @property
    def feature_taps(self) -> dict[str, FeatureTap]:
        # smp's encoders return a list whose element 0 is the input itself (``out_channels[0]`` = 3)
        return {f"stage{index}": FeatureTap(self.encoder_path, channels, index)
                for index, channels in enumerate(self.encoder.out_channels) if index > 0}

    def load_pretrained(self, source) -> None:
        if not isinstance(self.encoder, ResNet):
            raise SegeduError("an smp model takes the pretrained weights of smp's encoders from smp: build it "
                              "with encoder_weights='imagenet' (online), not pretrained_backbone; or use one of "
                              f"segedu's encoders ({', '.join(SEGEDU_ENCODERS)}), which take pretrained_backbone.")
        super().load_pretrained(source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, crop = pad_with_crop(x, self.multiple, mode="reflect")
        return crop(self.model(x))


def build(name: str, num_classes: int, *, encoder: str = "resnet34", encoder_weights: str | None = None,
          encoder_depth: int = 5, encoder_width: float | None = None, **smp_options) -> SmpModel:
    """The smp architecture ``name`` (``"smp:Unet"`` or ``"Unet"``, any case) with ``num_classes``
    output channels and the timm/smp ``encoder``, or segedu's (:data:`SEGEDU_ENCODERS`, at channel
    multiplier ``encoder_width``, default 1.0); ``smp_options`` go to smp's constructor (e.g.
    ``decoder_channels``)."""
    arch = _architecture(name)
    if encoder in SEGEDU_ENCODERS:
        if encoder_weights is not None:
            raise SegeduError(f"segedu's encoder {encoder!r} takes pretrained_backbone ('course', 'imagenet' or "
                              f"a file), not smp's encoder_weights={encoder_weights!r}.")
        width = 1.0 if encoder_width is None else encoder_width
        if not width > 0:
            raise SegeduError(f"encoder_width must be a positive channel multiplier, got {encoder_width!r}.")
        encoder = _register_segedu_encoder(encoder, width)
    elif encoder_width is not None:
        raise SegeduError(f"encoder_width is for segedu's encoders ({', '.join(SEGEDU_ENCODERS)}); smp's "
                          f"{encoder!r} has a fixed size.")
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
OPTIONS = ("encoder", "encoder_weights", "encoder_depth", "encoder_width")
