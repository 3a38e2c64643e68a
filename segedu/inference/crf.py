"""Fully connected CRF post-processing: sharpening a network's soft masks along image edges.

DeepLab v1 (Chen et al., "Semantic Image Segmentation with Deep Convolutional Nets and Fully
Connected CRFs", ICLR 2015, Sec. 4) upsamples its coarse, blurry class scores and refines them
with the fully connected CRF of Krähenbühl & Koltun ("Efficient Inference in Fully Connected
CRFs with Gaussian Edge Potentials", NIPS 2011). Every pixel is linked to every other one; the
energy is the network's unary ``-log p(x_i)`` plus a Potts penalty for giving two pixels
different labels, weighted by two Gaussian kernels (DeepLab v1 eq. 2-3):

* a bilateral ("appearance") kernel ``w1 * exp(-|p_i - p_j|^2 / 2 sa^2 - |I_i - I_j|^2 / 2 sb^2)``:
  nearby pixels of similar colour should share a label, which pulls boundaries onto colour edges;
* a Gaussian ("smoothness") kernel ``w2 * exp(-|p_i - p_j|^2 / 2 sg^2)``: removes small isolated
  regions regardless of colour.

Mean-field inference (10 iterations, as in the paper) runs in the ``pydensecrf2`` package
(import name ``pydensecrf``), an optional dependency with a C++ extension; it runs on the CPU,
one image at a time, so tensors are moved to the CPU here and callers move results back.

Default parameters. DeepLab v1 (Sec. 5) keeps Krähenbühl & Koltun's ``w2 = 3, sg = 3`` and
cross-validates ``w1, sa, sb`` on 100 PASCAL VOC val images; the values chosen for its best
model, DeepLab-CRF-LargeFOV, as distributed with the authors' code, are ``w1 = 4, sa = 121,
sb = 5``, and those are the defaults below. They were tuned for VOC (~500 x 375 px) images and a
VGG-16 net's softmax: on other data they are a starting point to re-tune on a few validation
images, not a law. (pydensecrf's README example uses ``w1 = 10, sa = 80, sb = 13``.)
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import SegeduError

# Mean-field iterations: DeepLab v1 (Sec. 5) fixes 10 for every reported experiment.
ITERATIONS = 10
# The smallest probability turned into energy: exact zeros (float32 softmax underflow) would
# otherwise become infinite unaries that no pairwise term can outvote.
MIN_PROBABILITY = 1e-8
# How far a pixel's probabilities may sum away from 1 (float32 softmax is accurate to ~1e-6).
SUM_TOLERANCE = 1e-3

INSTALL_HINT = (
    "DenseCRF post-processing needs the optional package pydensecrf2 (import name 'pydensecrf'), "
    "which is not installed. Install it with `pip install pydensecrf2`, or with segedu's extra: "
    "`pip install -e '.[crf]'`; it compiles a C++ extension, so a C++ compiler (g++ / clang, or the "
    "MSVC build tools on Windows) and Cython must be available. Everything else in segedu works "
    "without it; only the CRF refinement is unavailable."
)


def _densecrf():
    """The ``pydensecrf.densecrf`` module, imported only when a CRF is actually run."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as e:
        raise SegeduError(f"{INSTALL_HINT} (import failed: {e})") from e
    return dcrf


def is_available() -> bool:
    """Whether ``pydensecrf`` can be imported, i.e. whether :func:`dense_crf` can run."""
    try:
        _densecrf()
    except SegeduError:
        return False
    return True


def _rgb_uint8(image) -> np.ndarray:
    """The image as the C-contiguous uint8 (H, W, 3) array the C++ code reads byte by byte."""
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise SegeduError(f"a tensor image must be a float (3, H, W) tensor with values in [0, 1]; "
                              f"got {image.dtype} of shape {tuple(image.shape)}.")
        image = image.detach().float().cpu()
        lo, hi = image.min().item(), image.max().item()
        if lo < 0 or hi > 1:
            raise SegeduError(f"a tensor image must hold values in [0, 1]; got [{lo:.3g}, {hi:.3g}] "
                              f"(divide 0-255 images by 255; undo ImageNet normalisation first).")
        return np.ascontiguousarray((image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise SegeduError(f"a numpy image must be uint8 of shape (H, W, 3) (RGB, 0-255); got {image.dtype} "
                          f"of shape {image.shape}. Pass float images in [0, 1] as a (3, H, W) torch tensor, "
                          f"or convert with (image * 255).round().astype(np.uint8).")
    return np.ascontiguousarray(image)


def _probabilities(probabilities) -> np.ndarray:
    """(C, H, W) class probabilities as float32, checked to be a distribution at every pixel."""
    if isinstance(probabilities, torch.Tensor):
        probabilities = probabilities.detach().cpu().numpy()
    p = np.asarray(probabilities, dtype=np.float32)
    if p.ndim != 3 or p.shape[0] < 2:
        raise SegeduError(f"probabilities must have shape (C, H, W) with C >= 2 classes; got {p.shape}.")
    if not np.isfinite(p).all() or p.min() < 0:
        raise SegeduError(f"probabilities must be finite and non-negative; the minimum is {np.nanmin(p):.3g}. "
                          f"Pass softmax(logits, dim=0), or logits to refine().")
    worst = float(np.abs(p.sum(axis=0) - 1).max())
    if worst > SUM_TOLERANCE:
        raise SegeduError(f"probabilities must sum to 1 over the class axis (dim 0) at every pixel; the worst "
                          f"pixel is off by {worst:.3g}. Pass softmax(logits, dim=0), or logits to refine().")
    return p


def dense_crf(image, probabilities, iterations: int = ITERATIONS,
              gaussian_sxy: float = 3.0, gaussian_compat: float = 3.0,
              bilateral_sxy: float = 121.0, bilateral_srgb: float = 5.0, bilateral_compat: float = 4.0) -> torch.Tensor:
    """Refine ``probabilities`` (C, H, W) with a fully connected CRF on ``image``.

    ``image`` is a uint8 (H, W, 3) RGB numpy array or a float (3, H, W) tensor in [0, 1] (not
    ImageNet-normalised: the bilateral kernel compares raw 0-255 colours); ``probabilities`` a
    softmax output, tensor or array. Parameters follow Krähenbühl & Koltun eq. 3 (see the module
    docstring): ``gaussian_*`` are ``sg, w2``; ``bilateral_*`` are ``sa`` (pixels), ``sb`` (0-255
    colour units) and ``w1``. Returns the CRF's marginals as a float32 (C, H, W) tensor on the CPU.
    """
    rgb = _rgb_uint8(image)
    p = _probabilities(probabilities)
    c, h, w = p.shape
    if rgb.shape[:2] != (h, w):
        raise SegeduError(f"image and probabilities differ in size: image {tuple(rgb.shape)} (H, W, 3) is "
                          f"{rgb.shape[0]} x {rgb.shape[1]}, probabilities {p.shape} (C, H, W) are {h} x {w}. "
                          f"Upsample the probabilities to the image's size first.")
    dcrf = _densecrf()
    crf = dcrf.DenseCRF2D(w, h, c)  # note the order: width, height, labels
    unary = -np.log(np.maximum(p, MIN_PROBABILITY)).reshape(c, -1)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    crf.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb, rgbim=rgb, compat=bilateral_compat)
    q = np.array(crf.inference(iterations), dtype=np.float32).reshape(c, h, w)
    return torch.from_numpy(q)


def refine(image, logits, **kwargs) -> torch.Tensor:
    """Class map (H, W) int64 on the CPU: softmax of ``logits`` (C, H, W), then :func:`dense_crf`, then argmax.

    ``kwargs`` are :func:`dense_crf`'s parameters.
    """
    logits = torch.as_tensor(logits).detach().float().cpu()
    if logits.dim() != 3:
        raise SegeduError(f"logits must have shape (C, H, W) for one image; got {tuple(logits.shape)}.")
    return dense_crf(image, logits.softmax(dim=0), **kwargs).argmax(dim=0)
