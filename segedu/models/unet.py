"""U-Net: Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015 (arXiv:1505.04597).

* :class:`DoubleConv` -- Sec. 2: "two 3x3 convolutions (unpadded convolutions), each followed by
  a rectified linear unit".
* :class:`Down` -- a 2x2 max pooling, then a double convolution that doubles the channels.
* :class:`Up` -- "an upsampling of the feature map followed by a 2x2 convolution ('up-convolution')
  that halves the number of feature channels, a concatenation with the correspondingly cropped
  feature map from the contracting path, and two 3x3 convolutions".
* :class:`UNet` -- Fig. 1: 64, 128, 256, 512, 1024 channels down, back to 64, and a 1x1
  convolution to the classes; drop-out at the end of the contracting path (Sec. 3.1).
* :func:`boundary_weight_map` -- Sec. 3, eq. 2: the pixel weights that make the network learn the
  thin background gaps between touching objects.

Two paddings (option ``padding``):

* ``"valid"`` (the paper): unpadded convolutions, so the output is smaller than the input (572 ->
  388 in Fig. 1) and the skips are centre-cropped. To give logits for every input pixel the
  model uses the paper's overlap-tile strategy (Fig. 2): the image is extended by mirroring --
  92 pixels at the top/left, enough at the bottom/right to reach the next input size the
  network accepts -- so that the valid output covers the image exactly; the extra rows and
  columns are cropped. A valid input is ``16 b + 124`` for a bottom map of ``b`` pixels, giving an
  output of ``16 b - 60`` (:func:`valid_output_size`).
* ``"same"``: padded 3x3 convolutions (the common modern variant); the image is zero-padded at
  the bottom/right to a multiple of 16 (four poolings) and the logits cropped back.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.classes import NUM_CLASSES
from ..errors import SegeduError
from . import register
from .blocks import ConvBNReLU, crop_like, pad_with_crop, scaled
from .interface import EncoderDecoder, FeatureTap

#: Channels of the five levels of Fig. 1.
CHANNELS = (64, 128, 256, 512, 1024)
#: Four 2x2 poolings.
STRIDE = 16
#: Pixels the valid network loses at each side: the output tile's first pixel is input pixel 92
#: (Fig. 1: a 572 tile gives 388 = 572 - 2 * 92).
VALID_BORDER = 92


def valid_output_size(bottom: int) -> tuple[int, int]:
    """(input, output) sizes of the valid U-Net whose lowest (1024-channel) map is ``bottom`` wide.

    Down: each level's two convolutions take 4 pixels, each pooling halves, so the input is
    ``((((b + 4) * 2 + 4) * 2 + 4) * 2 + 4) * 2 + 4 = 16 b + 124``; up: each up-convolution doubles
    and the two convolutions take 4, so the output is ``(((2 b - 4) * 2 - 4) * 2 - 4) * 2 - 4 =
    16 b - 60``. Fig. 1 is ``b = 28``: 572 -> 388.
    """
    return 16 * bottom + 124, 16 * bottom - 60


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions each followed by a ReLU; ``padding`` 0 is the paper's, 1 keeps the size.
    ``batch_norm`` puts a batch norm between each convolution and its ReLU (not in the paper; its
    shift replaces the convolution's bias)."""

    def __init__(self, in_channels: int, out_channels: int, padding: int, batch_norm: bool) -> None:
        if batch_norm:
            layers = [*ConvBNReLU(in_channels, out_channels, 3, padding=padding),
                      *ConvBNReLU(out_channels, out_channels, 3, padding=padding)]
        else:
            layers = [nn.Conv2d(in_channels, out_channels, 3, padding=padding), nn.ReLU(inplace=True),
                      nn.Conv2d(out_channels, out_channels, 3, padding=padding), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class Down(nn.Sequential):
    """One step of the contracting path: 2x2 max pooling (stride 2), then :class:`DoubleConv`."""

    def __init__(self, in_channels: int, out_channels: int, padding: int, batch_norm: bool) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels, padding, batch_norm))


class Up(nn.Module):
    """One step of the expansive path: 2x2 up-convolution halving the channels (the paper's
    "upsampling followed by a 2x2 convolution" as one 2x2 transposed convolution of stride 2, the
    usual reading, with the same weights), concatenation with the centre-cropped contracting-path
    map, :class:`DoubleConv`."""

    def __init__(self, in_channels: int, out_channels: int, padding: int, batch_norm: bool) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = DoubleConv(2 * out_channels, out_channels, padding, batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        # Valid convolutions leave the skip larger by the same amount in both directions; crop the
        # centre ("cropping is necessary due to the loss of border pixels in every convolution").
        offset = (skip.shape[-2] - x.shape[-2]) // 2
        return self.conv(torch.cat([crop_like(skip, x, offset), x], 1))


class UNet(EncoderDecoder):
    """Fig. 1: the contracting path (``inc`` and four :class:`Down`), drop-out on the 1024-channel
    map (Sec. 3.1: "Drop-out layers at the end of the contracting path"), the expansive path (four
    :class:`Up`) and the 1x1 ``classifier``. Logits at the input size for either padding (see the
    module docstring).

    ``encoder`` is None (the contracting path is ``inc`` and ``downs``, no single module);
    ``feature_taps`` are its five levels, ``level1`` (``inc``) .. ``level5`` (the 1024-channel bottom).
    """

    encoder_path = None
    from_scratch = "the paper trains it from scratch (Ronneberger et al. 2015)"

    def __init__(self, num_classes: int = NUM_CLASSES, *, width: float = 1.0, padding: str = "valid",
                 batch_norm: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        if padding not in ("valid", "same"):
            raise SegeduError(f"U-Net padding must be 'valid' (the paper) or 'same', got {padding!r}.")
        if not 0 <= dropout < 1:
            raise SegeduError(f"U-Net dropout must be a probability in [0, 1), got {dropout!r}.")
        self.padding = padding
        pad = 0 if padding == "valid" else 1
        channels = [scaled(c, width) for c in CHANNELS]
        self.channels = channels
        self.inc = DoubleConv(3, channels[0], pad, batch_norm)
        self.downs = nn.ModuleList(Down(c_in, c_out, pad, batch_norm) for c_in, c_out in zip(channels, channels[1:]))
        self.dropout = nn.Dropout(dropout)
        self.ups = nn.ModuleList(Up(c_in, c_out, pad, batch_norm)
                                 for c_in, c_out in zip(channels[:0:-1], channels[-2::-1]))
        self.classifier = nn.Conv2d(channels[0], num_classes, 1)

    @property
    def feature_taps(self) -> dict[str, FeatureTap]:
        names = ["inc", *(f"downs.{index}" for index in range(len(self.downs)))]
        return {f"level{index + 1}": FeatureTap(name, channels)
                for index, (name, channels) in enumerate(zip(names, self.channels, strict=True))}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == "same":
            tile, crop = pad_with_crop(x, STRIDE)
            return crop(self.forward_tile(tile))
        # the overlap tile starts at the image's first pixel too: its output's top-left window is the image's
        height, width = x.shape[-2:]
        return self.forward_tile(self._overlap_tile(x))[..., :height, :width]

    def forward_tile(self, x: torch.Tensor) -> torch.Tensor:
        """The network of Fig. 1 on an input it fits exactly: a multiple of 16 for "same", a
        :func:`valid_output_size` input for "valid" (whose output is 184 pixels smaller)."""
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        features = self.dropout(skips.pop())
        for up in self.ups:
            features = up(features, skips.pop())
        return self.classifier(features)

    @staticmethod
    def _overlap_tile(x: torch.Tensor) -> torch.Tensor:
        """Mirror the image out so that the valid output's first pixel is the image's first and its
        output covers the whole image: the smallest bottom size ``b`` with ``16 b - 60 >= H``."""
        height, width = x.shape[-2:]
        pads = []
        for size in (width, height):  # F.pad order: last dimension first
            bottom = math.ceil((size + 60) / 16)
            tile = valid_output_size(bottom)[0]
            pads += [VALID_BORDER, tile - size - VALID_BORDER]
        return mirror_pad(x, pads)


def mirror_pad(x: torch.Tensor, pads: list[int]) -> torch.Tensor:
    """``F.pad(x, pads, mode="reflect")`` for any amount: torch reflects at most ``size - 1`` pixels
    at a time, so a small image is reflected repeatedly (the mirror image of the mirror image); a
    side of one pixel can only be repeated."""
    pads = list(pads)
    while any(pads):
        step = []
        for i, remaining in enumerate(pads):
            size = x.shape[-1 - i // 2]
            step.append(min(remaining, size - 1))
        if not any(step):  # a 1-pixel side: mirroring is repetition
            return F.pad(x, pads, mode="replicate")
        x = F.pad(x, step, mode="reflect")
        pads = [remaining - done for remaining, done in zip(pads, step)]
    return x


def boundary_weight_map(mask: np.ndarray | torch.Tensor, w0: float = 10.0, sigma: float = 5.0,
                        class_weights: dict[int, float] | None = None) -> np.ndarray | torch.Tensor:
    """Sec. 3, eq. 2: ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))``.

    Args:
        mask: (H, W) instance labels: 0 background, each object its own positive id (touching
            objects must have different ids -- separating them is the point).
        w0, sigma: the paper's 10 and 5 pixels.
        class_weights: ``w_c`` for background (key 0) and objects (key 1). None balances the class
            frequencies: each class present gets the same total weight, ``N / (n_classes * count)``,
            so ``w_c`` averages 1 over the image.

    ``d1`` and ``d2`` are the distances to the nearest and second-nearest object, from Euclidean
    distance transforms (``scipy.ndimage``, which albumentations brings). The separation term is
    added on background pixels only -- the gaps between objects the paper wants learned (its
    Fig. 3d); with fewer than two objects there is no second distance and no term.

    Returns float32 weights of the mask's shape, a NumPy array or a tensor (on the mask's
    device) like the input.
    """
    from scipy import ndimage

    labels = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if labels.ndim != 2:
        raise SegeduError(f"boundary_weight_map takes one (H, W) instance mask, got shape {labels.shape}.")
    foreground = labels > 0
    if class_weights is None:
        counts = {0: np.count_nonzero(~foreground), 1: np.count_nonzero(foreground)}
        present = [c for c in counts if counts[c]]
        class_weights = {c: labels.size / (len(present) * counts[c]) for c in present}
    weights = np.where(foreground, class_weights.get(1, 0.0), class_weights.get(0, 0.0)).astype(np.float64)

    ids = np.unique(labels[foreground])
    if len(ids) >= 2:
        # distance from every pixel to each object (0 on the object), the two smallest per pixel
        distances = np.stack([ndimage.distance_transform_edt(labels != i) for i in ids])
        d1, d2 = np.partition(distances, 1, axis=0)[:2]
        weights += w0 * np.exp(-(d1 + d2) ** 2 / (2 * sigma**2)) * ~foreground
    weights = weights.astype(np.float32)
    return torch.from_numpy(weights).to(mask.device) if isinstance(mask, torch.Tensor) else weights


@register("unet")
def unet(num_classes: int = NUM_CLASSES, *, width: float = 1.0, padding: str = "valid", batch_norm: bool = False,
         dropout: float = 0.5) -> UNet:
    """U-Net (Fig. 1), about 31.0M parameters at width 1.0.

    Args:
        num_classes: output channels.
        width: channel multiplier of the 64...1024 maps (1.0 = the paper).
        padding: "valid" (the paper's unpadded convolutions, with the mirrored overlap-tile input)
            or "same" (padded convolutions, input padded to a multiple of 16).
        batch_norm: batch norm after every 3x3 convolution (not in the paper; common since).
        dropout: drop-out probability on the 1024-channel map at the end of the contracting path
            (Sec. 3.1; the paper gives no rate, 0.5 is Caffe's default); 0 turns it off.
    """
    return UNet(num_classes, width=width, padding=padding, batch_norm=batch_norm, dropout=dropout)
