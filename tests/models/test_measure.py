"""segedu.models.measure: parameter counts, forward speed, saved-activation bytes and the dense
unpooling probe, against hand-computed cases."""
import math

import pytest
import torch
from torch import nn

from segedu import models
from segedu.models import measure
from segedu.models.receptive_field import empirical_receptive_field


def test_parameter_count_by_hand():
    # conv 3->4, 3x3 with bias: 4*3*9 + 4 = 112; batch norm: weight and bias 4 + 4 (buffers are not parameters)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    assert measure.parameter_count(net) == measure.parameter_count(net, frozen=True) == 120
    net[1].requires_grad_(False)
    assert measure.parameter_count(net) == 112  # the number the book quotes: what training changes
    assert measure.parameter_count(net, frozen=True) == 120
    with torch.device("meta"):
        assert measure.parameter_count(nn.Linear(10, 5)) == 55


def test_parameter_counts_separate_trainable_and_frozen_by_hand():
    # conv 3->4, 3x3 with bias: 4*3*9 + 4 = 112 trainable; a frozen batch norm: 4 + 4 = 8
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    net[1].requires_grad_(False)
    counts = measure.parameter_counts(net)
    assert (counts.trainable, counts.frozen, counts.total) == (112, 8, 120)
    assert str(counts) == "112 (+8 frozen)"
    assert measure.parameter_count(net) == 112 and measure.parameter_count(net, frozen=True) == 120
    # one weight shared by two layers is one set of parameters: 10*5 + 5
    shared = nn.Linear(10, 5)
    assert measure.parameter_counts(nn.Sequential(shared, nn.ReLU(), shared)) == measure.ParameterCount(55, 0)
    assert str(measure.ParameterCount(55, 0)) == "55"


def test_paper_scale_fcn32s_counts_torchvisions_vgg16_plus_the_score_layer():
    """The trainable count is torchvision's VGG16 (its fully connected fc6 and fc7 have the weights
    of the 7x7 and 1x1 convolutions FCN makes of them) without fc8, plus the 21-way 1x1 score layer;
    the frozen count is the fixed 32x bilinear upsampling, 21 x 21 x 64 x 64 without bias. The book's
    134.35M and 136.2M are these two numbers without and with the frozen kernel."""
    import torchvision

    with torch.device("meta"):
        vgg = torchvision.models.vgg16(weights=None)
        fcn32s = models.create("fcn32s", num_classes=21)
    fc6, fc7 = vgg.classifier[0], vgg.classifier[3]
    assert fc6.weight.shape == (4096, 512 * 7 * 7) and fc7.weight.shape == (4096, 4096)
    convolutionalised = (sum(p.numel() for p in vgg.features.parameters())
                         + sum(p.numel() for layer in (fc6, fc7) for p in layer.parameters()))
    counts = measure.parameter_counts(fcn32s)
    assert counts.trainable == convolutionalised + 4096 * 21 + 21 == 134_346_581
    assert counts.frozen == 21 * 21 * 64 * 64
    assert counts.total == measure.parameter_count(fcn32s, frozen=True) == 136_152_917
    assert measure.parameter_count(fcn32s) == counts.trainable
    assert str(counts) == "134.35M (+1.81M frozen)"


def test_saved_activation_bytes_by_hand():
    x = torch.rand(2, 3, 8, 8)
    # a convolution keeps its input for the weight gradient: 2*3*8*8 float32 = 1536 bytes
    conv = nn.Conv2d(3, 4, 3, padding=1)
    assert measure.saved_activation_bytes(nn.Sequential(conv), x) == 1536
    # a (not in-place) ReLU also keeps its output: 2*4*8*8*4 = 2048 more
    assert measure.saved_activation_bytes(nn.Sequential(conv, nn.ReLU()), x) == 1536 + 2048
    # max pooling with 2x2 windows keeps its input (the conv output, 2048 bytes) and the int64
    # indices of the 2*4*4*4 maxima
    pooled = nn.Sequential(conv, nn.MaxPool2d(2))
    assert measure.saved_activation_bytes(pooled, x) == 1536 + 2048 + 2 * 4 * 4 * 4 * 8


def test_saved_activation_bytes_leaves_the_model_alone():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    measure.saved_activation_bytes(net, torch.rand(2, 3, 8, 8) + 5)
    assert not net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # running stats untouched


def test_forward_speed_restores_the_mode():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout())
    speed = measure.forward_speed(net, 2, (16, 12), repeats=2, warmup=0)
    assert speed > 0 and math.isfinite(speed)
    assert net.training


class _PoolUnpool(nn.Module):
    """conv 3x3 -> 2x2 max pooling with switches -> unpooling -> conv 3x3."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1)
        self.pool, self.unpool = nn.MaxPool2d(2, 2, return_indices=True), nn.MaxUnpool2d(2, 2)

    def forward(self, x):
        y = self.conv1(x)
        pooled, indices = self.pool(y)
        return self.conv2(self.unpool(pooled, indices, output_size=y.shape[-2:]))


def test_dense_unpooling_receptive_field_by_hand():
    # centre output pixel 8 of 16: conv2 sees unpooled pixels 7..9, i.e. pooling windows 3 and 4
    # (pixels 6..9 of conv1's output), and conv1 adds one pixel on each side: input 5..10, 6 pixels.
    # A centre pixel at 7 of 15 sees 6..8, windows 3 and 4 again: input 5..10.
    net = _PoolUnpool()
    probe = measure.dense_unpooling(net)
    assert empirical_receptive_field(probe, (1, 16, 16)) == (6, 6)
    assert empirical_receptive_field(probe, (1, 15, 17)) == (6, 6)
    # the original keeps its switches
    assert isinstance(net.pool, nn.MaxPool2d) and isinstance(net.unpool, nn.MaxUnpool2d)


def test_dense_unpooling_on_segnet_keeps_shapes_and_encoder_field():
    net = models.create("segnet", num_classes=3, width=0.03125).eval()
    probe = measure.dense_unpooling(net).eval()
    x = torch.rand(1, 3, 37, 45)
    assert probe(x).shape == net(x).shape == (1, 3, 37, 45)
    # a pool5 cell sees VGG16's pool5 field: by r <- r + (k - 1) j over the five stages (3x3 convs,
    # then the 2x2 pooling), 1 + 4 + 1 + 8 + 2 + 24 + 4 + 48 + 8 + 96 + 16 = 212 pixels.
    encoder = measure.dense_unpooling(net.encoder)

    class Pool5(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, x):
            return self.encoder(x)[0]

    assert empirical_receptive_field(Pool5(), (3, 320, 320)) == (212, 212)


def test_dense_unpooling_refuses_dilated_switch_pooling():
    net = nn.Sequential(nn.MaxPool2d(2, 2, dilation=2, return_indices=True))
    with pytest.raises(ValueError):
        measure.dense_unpooling(net)


def test_flop_count_by_hand():
    """A 3x3 convolution 3 -> 4 channels on 10x10 ('same' padding, no bias): 3*9*4*100 multiply-adds;
    a linear layer in a model is not reached here, so the count is the convolution's alone."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU())
    assert measure.flop_count(net, 10) == 2 * 3 * 9 * 4 * 100
    assert measure.flop_count(net, (10, 20), batch_size=3) == 3 * 2 * 2 * 3 * 9 * 4 * 100


@pytest.mark.parametrize("name, weights", [
    ("deeplabv3_resnet50", "DeepLabV3_ResNet50_Weights"), ("fcn_resnet50", "FCN_ResNet50_Weights"),
    ("deeplabv3_resnet101", "DeepLabV3_ResNet101_Weights"), ("fcn_resnet101", "FCN_ResNet101_Weights"),
])
def test_flop_count_matches_torchvisions_recorded_operations(name, weights):
    """torchvision records each model's cost ("_ops", GMACs) at its 520x520 evaluation size, counted
    with the auxiliary classifier (its models run it in eval mode too): our training-mode count
    (auxiliary head on) halved must give the same number."""
    import torchvision.models.segmentation as tv

    recorded = getattr(tv, weights).DEFAULT.meta["_ops"]
    with torch.device("meta"):
        model = models.create(name, num_classes=21, aux=True)
    # a batch of 2: batch norm after DeepLab's image pooling needs two values per channel in training
    gmacs = measure.flop_count(model, 520, batch_size=2, training=True) / 2 / 2e9
    assert gmacs == pytest.approx(recorded, abs=0.001)
    # inference skips the auxiliary head, so it costs less
    assert measure.flop_count(model, 520) < 2e9 * recorded
    assert model.training  # the mode is restored
