"""Sliding-window inference: one window is the plain pass, pixelwise models are window-independent,
coverage, hand-computed blending, clamping, argument errors."""
import math

import pytest
import torch
from torch import nn

from segedu.errors import SegeduError
from segedu.inference.predict import predict_logits
from segedu.inference.sliding import sliding_window_logits, window_starts, window_weights
from toy_models import Counting


def _images(b=2, h=21, w=27, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _conv_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 3, 3, padding=1)).eval()


def _pixelwise_model(seed=0):
    torch.manual_seed(seed)
    return nn.Conv2d(3, 4, 1).eval()


class CropMean(nn.Module):
    """One channel holding the mean of the crop's first channel: every window gives a different constant."""

    def forward(self, x):
        return x[:, :1].mean((2, 3), keepdim=True).expand(-1, 1, *x.shape[-2:])


@pytest.mark.parametrize("window", [27, 32, 100])
def test_an_image_inside_one_window_is_the_plain_forward_pass(window):
    model, images = _conv_model(), _images()
    plain = predict_logits(model, images, None)
    assert torch.equal(sliding_window_logits(model, images, window, weighting="uniform"), plain)
    torch.testing.assert_close(sliding_window_logits(model, images, window, weighting="gaussian"), plain,
                               atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("weighting", ["uniform", "gaussian"])
def test_a_pixelwise_model_gives_the_full_image_result_for_any_overlap(overlap, weighting):
    model, images = _pixelwise_model(), _images(h=23, w=31)
    got = sliding_window_logits(model, images, 8, overlap=overlap, weighting=weighting, batch_size=5)
    # up to 60 windows overlap at 0.9: float32 sums of that many terms round at ~1e-6 relative
    torch.testing.assert_close(got, predict_logits(model, images, None), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("length,window,overlap",
                         [(23, 8, 0.5), (31, 8, 0.0), (9, 4, 0.75), (101, 16, 0.3), (8, 8, 0.5)])
def test_windows_cover_every_pixel_and_end_on_the_border(length, window, overlap):
    starts = window_starts(length, window, overlap)
    assert starts[0] == 0 and starts[-1] == length - window
    covered = torch.zeros(length, dtype=torch.bool)
    for s in starts:
        covered[s:s + window] = True
    assert covered.all()
    # neighbours share at least `overlap` of a window (the steps are at most window * (1 - overlap))
    assert all(b - a <= window * (1 - overlap) + 1e-9 for a, b in zip(starts, starts[1:]))


def test_every_pixel_gets_weight_on_odd_sizes():
    """A model that outputs 1 everywhere must give exactly 1 everywhere: a pixel of zero weight would be 0/0."""
    class Ones(nn.Module):
        def forward(self, x):
            return torch.ones(x.shape[0], 2, *x.shape[-2:])

    for h, w in [(23, 31), (17, 9), (5, 41)]:
        out = sliding_window_logits(Ones(), _images(h=h, w=w), 7, overlap=0.3, weighting="gaussian")
        assert out.shape == (2, 2, h, w)
        torch.testing.assert_close(out, torch.ones_like(out), atol=1e-5, rtol=0)


def test_nnunet_positions_and_gaussian_by_hand():
    # nnU-Net: L=40, n=16, target step 8 -> ceil(24 / 8) + 1 = 4 windows, step 24/3 = 8
    assert window_starts(40, 16, 0.5) == [0, 8, 16, 24]
    # L=30, n=16 -> ceil(14 / 8) + 1 = 3 windows, step 14/2 = 7
    assert window_starts(30, 16, 0.5) == [0, 7, 14]
    g = window_weights(8, 8, "gaussian")  # sigma = 8 / 8 = 1, centre 3.5
    assert g[0, 0].item() == pytest.approx(math.exp(-(3.5 ** 2 + 3.5 ** 2) / 2), rel=1e-5)
    assert g[3, 4].item() == pytest.approx(math.exp(-(0.25 + 0.25) / 2), rel=1e-5)
    assert torch.equal(g, g.flip(0)) and torch.equal(g, g.flip(1)) and torch.equal(g, g.T)
    assert window_weights(9, 5, "gaussian").max().item() == pytest.approx(1.0)  # odd: the centre pixel peaks at 1
    assert torch.equal(window_weights(3, 4, "uniform"), torch.ones(3, 4))


@pytest.mark.parametrize("weighting", ["uniform", "gaussian"])
def test_blending_of_two_windows_by_hand(weighting):
    """Width 12, window 8, overlap 0.5: windows at columns 0 and 4 (nnU-Net: ceil(4/4) + 1 = 2 windows)."""
    images = _images(b=1, h=8, w=12)
    from segedu.inference.predict import normalize

    red = normalize(images)[0, 0]
    m0, m1 = red[:, 0:8].mean().item(), red[:, 4:12].mean().item()
    out = sliding_window_logits(CropMean(), images, 8, overlap=0.5, weighting=weighting)[0, 0]
    g = lambda i: math.exp(-((i - 3.5) ** 2) / 2) if weighting == "gaussian" else 1.0  # sigma = 8/8
    for j in range(12):
        if j < 4:
            want = m0
        elif j >= 8:
            want = m1
        else:  # the rows' weights are the same in both windows and cancel
            want = (g(j) * m0 + g(j - 4) * m1) / (g(j) + g(j - 4))
        assert out[:, j].tolist() == pytest.approx([want] * 8, abs=1e-5), j
    if weighting == "gaussian":  # column 4 is the first window's centre-ish, the second's border: m0 dominates
        assert abs(out[0, 4].item() - m0) < abs(out[0, 4].item() - m1)


def test_window_larger_than_the_image_along_one_axis_is_clamped():
    """20 x 40 image, window 32: one full-height row of windows at columns 0 and 8, no padding."""
    model, images = _conv_model(), _images(h=20, w=40)
    got = sliding_window_logits(model, images, 32, overlap=0.5, weighting="uniform")
    left = predict_logits(model, images[..., 0:32], None)
    right = predict_logits(model, images[..., 8:40], None)
    want = torch.zeros_like(got)
    count = torch.zeros(40)
    want[..., 0:32] += left
    want[..., 8:40] += right
    count[0:32] += 1
    count[8:40] += 1
    torch.testing.assert_close(got, want / count, atol=1e-6, rtol=1e-6)


def test_batches_and_model_input_size():
    model, images = Counting(_conv_model()), _images(b=2, h=20, w=40)
    once = sliding_window_logits(model, images, 16, overlap=0.5, batch_size=64)
    n_windows = len(window_starts(20, 16, 0.5)) * len(window_starts(40, 16, 0.5))
    assert model.calls == [(2 * n_windows, 3, 16, 16)]
    model.calls.clear()
    torch.testing.assert_close(sliding_window_logits(model, images, 16, overlap=0.5, batch_size=3), once,
                               atol=1e-6, rtol=0)
    assert len(model.calls) == math.ceil(2 * n_windows / 3)
    # size: each window is resized for the model; a square image in one window is predict_logits at that size
    model.calls.clear()
    square = _images(h=24, w=24)
    got = sliding_window_logits(model, square, 24, size=12, weighting="uniform")
    assert model.calls == [(2, 3, 12, 12)]
    assert torch.equal(got, predict_logits(model, square, 12))


@pytest.mark.parametrize("kwargs,message", [
    ({"window": 16, "overlap": 1.0}, r"overlap .* in \[0, 1\)"),
    ({"window": 16, "overlap": -0.1}, r"overlap .* in \[0, 1\)"),
    ({"window": 0}, "sliding window must be a positive whole number"),
    ({"window": 1.5}, "sliding window must be a positive whole number"),
    ({"window": 16, "weighting": "cosine"}, "unknown sliding-window weighting 'cosine'"),
    ({"window": 16, "batch_size": 0}, "batch size must be a positive integer"),
    ({"window": 16, "size": 0}, "model input size must be a positive"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(SegeduError, match=message):
        sliding_window_logits(_pixelwise_model(), _images(), **kwargs)
