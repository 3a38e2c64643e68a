"""Test-time augmentation: the plain path, ttach's results, equivariant and hand-computed cases, one call per scale."""
import math

import pytest
import torch
from torch import nn

from segedu.errors import SegeduError
from segedu.inference.predict import normalize, predict_logits
from segedu.inference.tta import TTA, tta_logits
from toy_models import Counting

H, W = 13, 18  # odd and not square: a flip about the wrong axis or an off-by-one cannot go unnoticed


def _images(b=2, h=H, w=W, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _conv_model(seed=0, classes=4):
    """A small deterministic CNN that is not flip-equivariant (random 3x3 kernels)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, classes, 3, padding=1)).eval()


class PositionModel(nn.Module):
    """Two-class logits ``[A * column + red channel, 0]``: the output depends on x position, so hflip changes it."""

    A = 0.3

    def forward(self, x):
        column = torch.arange(x.shape[-1], dtype=x.dtype).view(1, 1, 1, -1)
        z0 = self.A * column + x[:, :1]
        return torch.cat([z0, torch.zeros_like(z0)], 1)


@pytest.mark.parametrize("size", [None, 24, 13])
def test_a_single_view_is_predict_logits_exactly(size):
    model, images = _conv_model(), _images()
    got = tta_logits(model, images, size=size, flips=("none",), scales=(1.0,))
    assert torch.equal(got, predict_logits(model, images, size))
    # and a single rescaled view is predict_logits at the scaled size (the scale multiplies the input size,
    # whose short side is ``size``: 24 -> 24 x 33 -> 12 x 16 (16.5 to even); 13 -> 13 x 18 -> 6 x 9 (6.5 to even))
    if size is not None:
        got = tta_logits(model, images, size=size, flips=("none",), scales=(0.5,))
        assert torch.equal(got, predict_logits(model, images, {24: (12, 16), 13: (6, 9)}[size]))


def test_equals_ttach_with_logit_averaging():
    ttach = pytest.importorskip("ttach", reason="ttach (the reference TTA library) is not installed")
    model, images = _conv_model(), _images()
    # ttach flips whatever tensor it is given, so it receives the normalised images segedu feeds the model
    hflip = ttach.SegmentationTTAWrapper(model, ttach.Compose([ttach.HorizontalFlip()]), merge_mode="mean")
    ours = tta_logits(model, images, flips=("none", "hflip"), merge="logit")
    torch.testing.assert_close(ours, hflip(normalize(images)), atol=1e-5, rtol=0)
    # ttach's Compose of two flips is their product: none, vflip, hflip and both (our hvflip)
    both = ttach.SegmentationTTAWrapper(model, ttach.Compose([ttach.HorizontalFlip(), ttach.VerticalFlip()]),
                                        merge_mode="mean")
    ours = tta_logits(model, images, flips=("none", "hflip", "vflip", "hvflip"), merge="logit")
    torch.testing.assert_close(ours, both(normalize(images)), atol=1e-5, rtol=0)
    assert not torch.allclose(ours, predict_logits(model, images), atol=1e-3)  # the views did differ


def test_probability_merge_equals_ttach_on_a_softmax_model():
    ttach = pytest.importorskip("ttach", reason="ttach (the reference TTA library) is not installed")
    model, images = _conv_model(), _images()
    softmax_model = nn.Sequential(model, nn.Softmax(dim=1))
    wrapper = ttach.SegmentationTTAWrapper(softmax_model, ttach.Compose([ttach.VerticalFlip()]), merge_mode="mean")
    ours = tta_logits(model, images, flips=("none", "vflip"), merge="prob")
    # the returned scores are log mean probabilities: exp gives ttach's mean probability
    torch.testing.assert_close(ours.exp(), wrapper(normalize(images)), atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.softmax(1), ours.exp(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("merge", ["prob", "logit"])
def test_a_flip_equivariant_model_gains_nothing(merge):
    """A 3x3 kernel symmetric under both flips makes the model exactly flip-equivariant (also through the resize)."""
    conv = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        k = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(1))
        conv.weight.copy_((k + k.flip(-1) + k.flip(-2) + k.flip(-1, -2)) / 4)
    model, images = conv.eval(), _images()
    plain = predict_logits(model, images, 16)
    got = tta_logits(model, images, size=16, flips=("none", "hflip", "vflip", "hvflip"), merge=merge)
    expected = plain if merge == "logit" else plain.log_softmax(1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert torch.equal(got.argmax(1), plain.argmax(1))


def test_position_dependent_model_by_hand():
    images = _images(b=1)
    red = normalize(images)[0, 0]  # what the model adds to class 0
    a = PositionModel.A
    merged_logit = tta_logits(PositionModel(), images, flips=("none", "hflip"), merge="logit")
    merged_prob = tta_logits(PositionModel(), images, flips=("none", "hflip"), merge="prob")
    for i in range(H):
        for j in range(W):
            plain = a * j + red[i, j].item()  # view 1: column j as it is
            flipped = a * (W - 1 - j) + red[i, j].item()  # view 2: pixel (i, j) sat in column W-1-j
            assert merged_logit[0, 0, i, j].item() == pytest.approx((plain + flipped) / 2, abs=1e-5)
            assert merged_logit[0, 1, i, j].item() == 0
            sigmoid = lambda z: 1 / (1 + math.exp(-z))  # two classes: p0 = sigmoid(z0 - z1)
            p0 = (sigmoid(plain) + sigmoid(flipped)) / 2
            assert merged_prob[0, 0, i, j].exp().item() == pytest.approx(p0, abs=1e-5)
            assert merged_prob[0, 1, i, j].exp().item() == pytest.approx(1 - p0, abs=1e-5)


def test_one_model_call_per_scale_holding_every_flip():
    model, images = Counting(_conv_model()), _images(b=2)
    flips, scales = ("none", "hflip", "vflip"), (0.5, 1.0, 1.5)
    out = tta_logits(model, images, size=16, flips=flips, scales=scales)
    # size 16 is the short side of the 13 x 18 images: 16 x 22 (18 * 16 / 13 = 22.2), times each scale
    assert model.calls == [(6, 3, 8, 11), (6, 3, 16, 22), (6, 3, 24, 33)]
    assert out.shape == (2, 4, H, W)
    # without a size the scales multiply the image's own height and width
    model.calls.clear()
    tta_logits(model, images, flips=("none", "hflip"), scales=(0.5, 2.0))
    assert model.calls == [(4, 3, round(H * 0.5), round(W * 0.5)), (4, 3, 2 * H, 2 * W)]


def test_batched_views_equal_the_views_run_one_by_one():
    model, images = _conv_model(), _images()
    got = tta_logits(model, images, size=20, flips=("none", "hflip", "vflip"), scales=(0.75, 1.25), merge="logit")
    views = []
    for scale in (0.75, 1.25):
        for dims in ((), (-1,), (-2,)):
            z = predict_logits(model, images.flip(dims) if dims else images, round(20 * scale))
            views.append(z.flip(dims) if dims else z)
    torch.testing.assert_close(got, torch.stack(views).mean(0), atol=1e-5, rtol=0)


def test_bad_arguments_are_refused_clearly():
    model, images = _conv_model(), _images()
    with pytest.raises(SegeduError, match="unknown TTA flip 'rot90'.*hflip"):
        tta_logits(model, images, flips=("none", "rot90"))
    with pytest.raises(SegeduError, match="scales must be positive"):
        tta_logits(model, images, scales=(1.0, 0))
    with pytest.raises(SegeduError, match="unknown TTA merge 'max'"):
        tta_logits(model, images, merge="max")
    with pytest.raises(SegeduError, match="twice"):
        TTA(flips=("none", "hflip", "hflip"))
    with pytest.raises(SegeduError, match="at least one flip"):
        TTA(flips=())
    assert TTA().views == 2 and TTA(flips=["none", "vflip"], scales=[1, 2]).scales == (1.0, 2.0)
