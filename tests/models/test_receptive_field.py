"""Receptive fields: the layer arithmetic against hand-computed chains and Table 1 of Yu & Koltun
(ICLR 2016), and the gradient measurement against the arithmetic."""
import numpy as np
import pytest
import torch
from scipy.signal import convolve2d
from torch import nn

from segedu import models
from segedu.errors import SegeduError
from segedu.models.dilatednet import ContextModule, FrontEnd
from segedu.models.receptive_field import (effective_receptive_field, empirical_receptive_field,
                                           receptive_fields, theoretical_receptive_field)


def conv_stack(n, dilation=1, channels=2):
    return nn.Sequential(*(layer for _ in range(n) for layer in (
        nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation), nn.ReLU())))


def test_three_3x3_convolutions_see_7x7():
    """1 + 3 x (3 - 1) = 7, by arithmetic and by measurement."""
    model = conv_stack(3)
    assert theoretical_receptive_field(model) == 7
    assert empirical_receptive_field(model, (2, 31, 31)) == (7, 7)


def test_three_3x3_convolutions_with_dilation_2_see_13x13():
    """Each dilated 3x3 spans 5 pixels, adding 4: 1 + 3 x 4 = 13. The field has holes (only every
    other pixel is connected) but spans 13."""
    model = conv_stack(3, dilation=2)
    assert theoretical_receptive_field(model) == 13
    assert empirical_receptive_field(model, (2, 33, 33)) == (13, 13)


def test_strides_multiply_the_growth_of_later_layers():
    """By hand, (r, j) from (1, 1): conv 3x3 -> (3, 1); max pool 2/2 -> (4, 2);
    conv 3x3 dilation 2 -> (4 + 2*2*2, 2) = (12, 2); conv 3x3 stride 2 -> (12 + 2*2, 4) = (16, 4);
    conv 3x3 -> (16 + 2*4, 4) = (24, 4)."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(2, 2, 3, padding=2, dilation=2), nn.BatchNorm2d(2), nn.ReLU(),
                          nn.Conv2d(2, 2, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 3, padding=1))
    assert receptive_fields(model) == [(3, 1), (4, 2), (12, 2), (16, 4), (24, 4)]
    assert empirical_receptive_field(model, (1, 64, 64)) == (24, 24)
    assert theoretical_receptive_field([(3,), (2, 2), (3, 1, 2), (3, 2), (3,)]) == 24


def test_the_basic_context_module_reproduces_table_1():
    """Yu & Koltun, Table 1, "Receptive field": 3, 5, 9, 17, 33, 65, 67, 67 (layers 1-8)."""
    module = ContextModule(2)
    assert [field for field, _ in receptive_fields(module)] == [3, 5, 9, 17, 33, 65, 67, 67]
    # the identity initialisation would connect the centre only; the measurement reinitialises
    assert empirical_receptive_field(module, (2, 96, 96)) == (67, 67)
    assert empirical_receptive_field(module, (2, 96, 96), reinitialise=False) == (1, 1)


def test_the_dilated_front_end_sees_380_pixels():
    """By hand: conv1 (2 layers) 5; pool1 6, j 2; conv2 14; pool2 16, j 4; conv3 40; pool3 44,
    j 8; conv4 92; conv5 with dilation 2 adds 3 x 2*2*8 = 96 -> 188; fc6 7x7 dilation 4 adds
    6*4*8 = 192 -> 380; fc7, fc8 are 1x1. The context module would add 66 x 8 = 528 more."""
    front_end = FrontEnd(2, width=1 / 64)
    assert theoretical_receptive_field(front_end) == 380
    assert empirical_receptive_field(front_end, (3, 424, 424)) == (380, 380)


def test_a_threshold_measures_the_smaller_effective_field():
    """Three 3x3 averaging filters give each axis the profile (1, 3, 6, 7, 6, 3, 1) / 27; a row's
    peak is its profile value times 7, the overall peak 49. With threshold 0.2 the outer rows
    (7/49 = 0.14) drop and those with 3 x 7 / 49 = 0.43 stay: 5 of the 7 rows."""
    model = conv_stack(3, channels=1)
    assert empirical_receptive_field(model, (1, 31, 31), threshold=0.2) == (5, 5)


def test_a_too_small_input_and_non_chain_layers_are_refused():
    with pytest.raises(ValueError, match="border"):
        empirical_receptive_field(conv_stack(3), (2, 7, 7))
    with pytest.raises(ValueError, match="ConvTranspose2d"):
        theoretical_receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.ConvTranspose2d(1, 1, 2, 2)))
    with pytest.raises(ValueError, match="not square"):
        theoretical_receptive_field(nn.Conv2d(1, 1, (1, 3)))


def test_networks_with_pooling_switches_are_measured_through_their_unpooling():
    """SegNet's max poolings return switches and its decoder unpools with them; the measurement
    connects every position a switch could choose, so it equals the dense probe's field."""
    from segedu.models import measure

    model = models.create("segnet", num_classes=2, width=0.125)
    direct = empirical_receptive_field(model, (3, 480, 480), "cpu")
    probed = empirical_receptive_field(measure.dense_unpooling(model), (3, 480, 480), "cpu")
    assert direct == probed and direct[0] > 200


# --- the effective receptive field (Luo et al., NeurIPS 2016) ---------------------------------------

def ones_stack(n, channels=(3, 2, 2, 1)):
    """n 3x3 convolutions with all-ones weights and no nonlinearity (channels cycle through the
    middle widths); biases random, which a gradient does not see."""
    widths = [channels[0]] + [channels[1 + i % (len(channels) - 2)] for i in range(n - 1)] + [channels[-1]]
    layers = [nn.Conv2d(widths[i], widths[i + 1], 3, padding=1) for i in range(n)]
    for layer in layers:
        nn.init.ones_(layer.weight)
    return nn.Sequential(*layers)


@pytest.mark.parametrize("n", [1, 4])
def test_the_erf_of_linear_box_filters_is_their_n_fold_convolution(n):
    """Without nonlinearity the gradient is the same for every input: the n-fold convolution of a
    3x3 box (scipy), centred on the centre pixel; every channel path gives the same map up to scale."""
    torch.manual_seed(0)
    size = 21
    kernel = np.ones((1, 1))
    for _ in range(n):
        kernel = convolve2d(kernel, np.ones((3, 3)))
    expected = np.zeros((size, size))
    expected[10 - n:10 + n + 1, 10 - n:10 + n + 1] = kernel / kernel.sum()
    erf = effective_receptive_field(ones_stack(n), size, samples=3)
    torch.testing.assert_close(erf.weights, torch.from_numpy(expected), rtol=1e-6, atol=1e-9)
    assert erf.centre == pytest.approx((10.0, 10.0))
    assert erf.field == (2 * n + 1, 2 * n + 1)


def test_erf_summaries_of_a_single_box_by_hand():
    """One 3x3 box: nine pixels of 1/9. Half the mass: the centre and its 4 neighbours at distance 1
    (5/9); 95%: all nine, the corners at sqrt(2). The fewest pixels for 95% are all 9 = the field."""
    erf = effective_receptive_field(ones_stack(1), 9, samples=1)
    assert erf.radius_50 == pytest.approx(1.0) and erf.area(0.5) == 5
    assert erf.radius_95 == pytest.approx(2 ** 0.5) and erf.area(0.95) == 9
    assert erf.field_share(0.95) == pytest.approx(1.0)
    with pytest.raises(SegeduError, match="share"):
        erf.radius(0.0)


def test_the_erf_fills_a_shrinking_share_of_the_theoretical_field_with_depth():
    """Luo et al., Sec. 2: the ERF's radius grows as sqrt(n), the theoretical field as n."""
    shares = [effective_receptive_field(ones_stack(n, (1, 1, 1)), 4 * n + 5, samples=1, in_channels=1).field_share()
              for n in (2, 4, 8)]
    assert shares[0] > shares[1] > shares[2]


def test_one_class_or_the_sum_of_classes():
    """Class 0 is a 3x3 box, class 1 the centre pixel alone: class 1 alone is a point, the sum over
    classes has 2 at the centre and 1 around it, 10 in all."""
    model = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[0] = 1.0
        model.weight[1, 0, 1, 1] = 1.0
    point = effective_receptive_field(model, 7, channel=1, samples=1, in_channels=1).weights
    assert point[3, 3] == 1.0 and point.sum() == 1.0
    both = effective_receptive_field(model, 7, samples=1, in_channels=1).weights
    expected = torch.zeros(7, 7, dtype=torch.float64)
    expected[2:5, 2:5] = 0.1
    expected[3, 3] = 0.2
    torch.testing.assert_close(both, expected)
    with pytest.raises(SegeduError, match="channel 2"):
        effective_receptive_field(model, 7, channel=2, samples=1, in_channels=1)
    with pytest.raises(SegeduError, match="image_size"):
        effective_receptive_field(model, 7, images=torch.rand(1, 1, 8, 8))


def small_real_model():
    """The chain of test_strides_multiply_the_growth_of_later_layers (theoretical field 24) with
    random weights and its ReLUs and max pooling, so the gradient depends on the input."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 4, 3, padding=2, dilation=2), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))


def test_the_erf_lies_within_the_theoretical_field():
    model = small_real_model()
    field = theoretical_receptive_field(model)
    erf = effective_receptive_field(model, 64, samples=4)
    assert erf.field == (field, field) == (24, 24)
    rows, columns = erf.weights.nonzero().unbind(1)
    assert 0 < rows.max() - rows.min() + 1 <= field and 0 < columns.max() - columns.min() + 1 <= field
    assert 0 < erf.field_share(0.95) < 1


def test_the_erf_is_deterministic_restores_the_mode_and_leaves_no_gradients():
    model = small_real_model().train()
    first = effective_receptive_field(model, 48, samples=3, seed=1)
    again = effective_receptive_field(model, 48, samples=3, seed=1)
    other = effective_receptive_field(model, 48, samples=3, seed=2)
    assert torch.equal(first.weights, again.weights) and first.radius_50 == again.radius_50
    assert not torch.equal(first.weights, other.weights)  # max pooling and ReLUs: the input matters
    assert model.training and all(p.grad is None for p in model.parameters())
    # given images: the same noise as seed 1 gives the same map
    noise = torch.randn(3, 3, 48, 48, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(effective_receptive_field(model, 48, images=noise).weights, first.weights)
