"""Receptive fields: the layer arithmetic against hand-computed chains and Table 1 of Yu & Koltun
(ICLR 2016), and the gradient measurement against the arithmetic."""
import pytest
import torch
from torch import nn

from segedu import models
from segedu.models.dilatednet import ContextModule, FrontEnd
from segedu.models.receptive_field import (empirical_receptive_field, receptive_fields,
                                           theoretical_receptive_field)


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
