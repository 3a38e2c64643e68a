"""The course's pretrained encoders: ImageNet's stand-in on a machine without a network.

Every paper of the course starts its encoder from ImageNet weights; a model trained from scratch
on a few hundred images for a few hundred steps learns Background and the largest classes and
little else. This machine cannot download ImageNet weights, and training on ImageNet is out of a
CPU's reach, so the course ships its own: each encoder was trained by ``segedu pretrain``
(:mod:`segedu.engine.pretrain`) to segment a large synthetic corpus generated with seeds that no
split of the book uses, through a light head that is then thrown away. The weights are stored in
**torchvision's layout** (``features.*``/``classifier.*`` for VGG-16, ``conv1``/``layer1..4`` for
ResNets), so every segedu backbone loads them through the same ``from_torchvision`` that loads
ImageNet weights, and in fp16 to keep the package small.

Each file has a **model card** in ``segedu/weights/cards.json``: the pretext, its corpus, steps,
seconds, machine, torch version, the pretext's own validation mIoU, and the file's sha256, which
:func:`state_dict` checks before anything is loaded.

``models.create(name, pretrained_backbone="course")`` (or ``pretrained="course"``) loads them;
``"imagenet"`` (or True) loads torchvision's ImageNet weights instead, for the competition's real
photos on a machine that is online.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..errors import SegeduError

#: The folder that ships the weights and their cards inside the package; ``$SEGEDU_WEIGHTS_DIR``
#: points the loader at another one (e.g. weights regenerated with ``segedu pretrain --weights-dir``).
WEIGHTS_ENV = "SEGEDU_WEIGHTS_DIR"
WEIGHTS_DIR = Path(os.environ.get(WEIGHTS_ENV) or Path(__file__).resolve().parent.parent / "weights")
CARDS = "cards.json"

#: The encoders the course pretrains, and the models that start from each (U-Net and FC-DenseNet
#: train from scratch, as in their papers).
ENCODERS: dict[str, str] = {
    "vgg16_bn": "FCN-8s/16s/32s, DeconvNet, SegNet, DeepLab v1, DilatedNet (with batch norm)",
    "resnet50": "FCN-ResNet50, DeepLab v2 (depth 50), DeepLab v3/v3+ and PSPNet on ResNet-50",
    "resnet101": "DeepLab v2, DeepLab v3/v3+ and PSPNet on ResNet-101",
    "hrnetv2_w18": "HRNetV2-W18 (everything but its last classifier)",
}


def file_name(encoder: str, width: float) -> str:
    """``<encoder>-w<width>.pt``, e.g. ``resnet50-w0.25.pt``."""
    return f"{encoder}-w{width:g}.pt"


def cards(folder: Path | None = None) -> dict[str, dict]:
    """The model cards: file name -> card (an empty dict when none ship)."""
    path = (folder or WEIGHTS_DIR) / CARDS
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def available(folder: Path | None = None) -> list[tuple[str, float]]:
    """(encoder, width) of every shipped file."""
    return [(card["encoder"], card["width"]) for card in cards(folder).values()]


def state_dict(encoder: str, width: float, folder: Path | None = None) -> dict[str, torch.Tensor]:
    """The course weights of ``encoder`` at ``width`` in torchvision's keys, as float32, after
    checking the file against its card's sha256. SegeduError names what is missing or wrong."""
    if encoder not in ENCODERS:
        raise SegeduError(f"no course weights for the encoder {encoder!r}: the course pretrains "
                          f"{', '.join(ENCODERS)}.")
    folder = folder or WEIGHTS_DIR
    name = file_name(encoder, width)
    card = cards(folder).get(name)
    if card is None:
        widths = sorted(w for e, w in available(folder) if e == encoder)
        offer = (f"they exist at width {', '.join(f'{w:g}' for w in widths)}" if widths
                 else "none ship for it yet")
        raise SegeduError(f"no course weights for {encoder} at width {width:g} ({folder / name}); {offer}. "
                          f"Make them with: segedu pretrain --encoder {encoder} --width {width:g}")
    path = folder / name
    if not path.is_file():
        raise SegeduError(f"{path}: the course weights its card lists are missing; reinstall segedu or run "
                          f"segedu pretrain --encoder {encoder} --width {width:g}.")
    found = sha256(path)
    if found != card["sha256"]:
        raise SegeduError(f"{path}: sha256 {found[:12]}... differs from its card's {card['sha256'][:12]}...; "
                          "the file is damaged or was replaced. Reinstall segedu or regenerate it with "
                          f"segedu pretrain --encoder {encoder} --width {width:g}.")
    weights = torch.load(path, map_location="cpu", weights_only=True)
    return {key: value.float() if value.is_floating_point() else value for key, value in weights.items()}


def encoder_of(backbone) -> str:
    """The course encoder a segedu backbone takes: its ImageNet weights' network, by name."""
    weights = type(backbone.imagenet_weights).__name__  # e.g. ResNet50_Weights, VGG16_BN_Weights
    encoder = weights.removesuffix("_Weights").lower()
    if encoder not in ENCODERS:
        raise SegeduError(f"{type(backbone).__name__} ({encoder}) has no course weights; the course "
                          f"pretrains {', '.join(ENCODERS)}.")
    return encoder
