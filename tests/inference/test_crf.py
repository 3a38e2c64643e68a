"""DenseCRF post-processing (DeepLab v1, Sec. 4): edge sharpening, no invented edges, validation, install hint."""
import importlib
import sys

import numpy as np
import pytest
import torch

from segedu.errors import SegeduError
from segedu.inference import crf

H, W, EDGE = 48, 64, 32  # not square, so a width/height swap inside the wrapper cannot go unnoticed
LEFT, RIGHT = (200, 40, 40), (40, 60, 200)


def _needs_pydensecrf():
    pytest.importorskip("pydensecrf.densecrf")


def _edge_image(noise=3.0, seed=0):
    """Left of column EDGE one colour, right of it another, with a little sensor noise."""
    img = np.zeros((H, W, 3))
    img[:, :EDGE], img[:, EDGE:] = LEFT, RIGHT
    img += np.random.default_rng(seed).normal(0, noise, img.shape)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def _blurred_probabilities(shift=6, ramp=15.0):
    """Two-class probabilities that rise from 10% to 90% over ``ramp`` px, centred ``shift`` px left of the edge.

    What a coarse network upsampled bilinearly looks like: right in the middle of objects, wrong
    near their boundary (here every pixel in columns EDGE-shift .. EDGE-1 is given to the right class).
    """
    x = np.arange(W) + 0.5
    scale = ramp / (2 * np.log(9))  # logistic: 10% -> 90% over 2 ln 9 scale units
    right = 1 / (1 + np.exp(-(x - (EDGE - shift)) / scale))
    p = np.stack([1 - right, right])[:, None, :].repeat(H, axis=1)
    return torch.from_numpy(p.astype(np.float32))


def _truth():
    labels = torch.zeros(H, W, dtype=torch.int64)
    labels[:, EDGE:] = 1
    return labels


def test_crf_moves_a_blurred_boundary_onto_the_colour_edge():
    _needs_pydensecrf()
    image, p, truth = _edge_image(), _blurred_probabilities(shift=6), _truth()
    unary = p.argmax(0)
    # the setup is what it claims: the unary alone puts the boundary 6 columns too far left
    assert ((unary != truth).sum(0) > 0).sum().item() == 6
    refined = crf.dense_crf(image, p).argmax(0)
    acc_unary = (unary == truth).float().mean().item()
    acc_crf = (refined == truth).float().mean().item()
    assert acc_crf >= acc_unary + 0.05, (acc_unary, acc_crf)
    # in every row the first "right" pixel lies within 1 px of the true edge
    first_right = (refined == 1).int().argmax(1)
    assert (first_right - EDGE).abs().max().item() <= 1, first_right.unique()
    assert (refined[:, : EDGE - 1] == 0).all() and (refined[:, EDGE + 1:] == 1).all()


def test_uniform_image_keeps_confident_labels():
    """No colour edge anywhere: the CRF must not invent one, nor move the boundaries the unary gives."""
    _needs_pydensecrf()
    image = np.full((H, W, 3), 128, np.uint8)
    labels = torch.zeros(H, W, dtype=torch.int64)
    labels[:, 20:], labels[:, 44:] = 1, 2  # three wide stripes
    p = torch.full((3, H, W), 0.05)
    p.scatter_(0, labels[None], 0.9)
    q = crf.dense_crf(image, p)
    assert torch.equal(q.argmax(0), labels)
    # and a single confident class stays that class everywhere
    one = torch.tensor([0.8, 0.1, 0.1]).view(3, 1, 1).expand(3, H, W).contiguous()
    assert (crf.dense_crf(image, one).argmax(0) == 0).all()


def test_output_is_cpu_float32_distributions_and_zero_iterations_return_the_input():
    _needs_pydensecrf()
    image, p = _edge_image(), _blurred_probabilities()
    q = crf.dense_crf(image, p)
    assert q.shape == (2, H, W) and q.dtype == torch.float32 and q.device.type == "cpu"
    assert (q >= 0).all() and torch.allclose(q.sum(0), torch.ones(H, W), atol=1e-5)
    # with no mean-field step the CRF's marginals are softmax(-unary) = p itself: checks that the
    # unary is -log p and that pixels and classes are laid out the way the C++ code reads them
    assert torch.allclose(crf.dense_crf(image, p, iterations=0), p, atol=1e-5)
    # a float (3, H, W) tensor in [0, 1] is the same image as its uint8 (H, W, 3) array;
    # numpy probabilities are the same as tensor ones
    as_tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    assert torch.equal(crf.dense_crf(as_tensor, p.numpy()), q)


def test_refine_is_argmax_of_crf_on_softmax_of_logits():
    _needs_pydensecrf()
    image, p = _edge_image(), _blurred_probabilities()
    # log-probabilities plus an arbitrary per-pixel offset: the softmax over classes (dim 0) undoes it
    logits = p.log() + torch.randn(1, H, W, generator=torch.Generator().manual_seed(0)) * 5
    labels = crf.refine(image, logits)
    assert labels.dtype == torch.int64 and labels.shape == (H, W)
    assert torch.equal(labels, crf.dense_crf(image, torch.softmax(logits, dim=0)).argmax(0))
    assert torch.equal(labels, _truth())  # the same refinement as in the sharpening test
    # keyword arguments reach dense_crf: without mean-field steps refine is the plain argmax
    assert torch.equal(crf.refine(image, logits, iterations=0), p.argmax(0))


def test_mismatched_shapes_name_both():
    with pytest.raises(SegeduError, match=r"image \(48, 64, 3\).*probabilities \(2, 40, 64\)"):
        crf.dense_crf(_edge_image(), _blurred_probabilities()[:, :40])


@pytest.mark.parametrize("p, message", [
    (lambda p: p * 2, "sum to 1 .* off by 1"),
    (lambda p: torch.stack([p[0] + 0.5, p[1] - 0.5]), "non-negative"),
    (lambda p: p[0], r"shape \(C, H, W\)"),
])
def test_probabilities_must_be_distributions(p, message):
    with pytest.raises(SegeduError, match=message):
        crf.dense_crf(_edge_image(), p(_blurred_probabilities()))


@pytest.mark.parametrize("image, message", [
    (lambda img: img.astype(np.float32) / 255, r"must be uint8 of shape \(H, W, 3\).*; got float32"),
    (lambda img: img.transpose(2, 0, 1), r"got uint8 of shape \(3, 48, 64\)"),
    (lambda img: torch.from_numpy(img).permute(2, 0, 1).float(), r"values in \[0, 1\]; got \[28, 209\]"),
    (lambda img: torch.from_numpy(img).permute(2, 0, 1), "float \\(3, H, W\\) tensor"),
])
def test_images_must_be_uint8_or_unit_float(image, message):
    with pytest.raises(SegeduError, match=message):
        crf.dense_crf(image(_edge_image()), _blurred_probabilities())


def test_missing_pydensecrf_explains_how_to_install(monkeypatch):
    # None in sys.modules makes `import pydensecrf...` raise ImportError, as if it were not installed
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    importlib.reload(crf)  # the module itself imports fine without the package
    assert crf.is_available() is False
    with pytest.raises(SegeduError) as err:
        crf.dense_crf(_edge_image(), _blurred_probabilities())
    message = str(err.value)
    for part in ("pydensecrf2", "pip install pydensecrf2", "pip install -e '.[crf]'", "C++ compiler",
                 "Everything else in segedu works without it"):
        assert part in message, part
