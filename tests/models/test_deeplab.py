"""The DeepLab family (v1 LargeFOV, v2, v3, v3+) and its ASPP heads, against independent
references: parameter counts of the papers' tables and counted by hand from the layer shapes,
torchvision's DeepLabV3 (state dict and outputs) and recorded ``num_params``, timm's port of the
authors' Xception-65, and hand-worked atrous cases."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import ResNet101_Weights, VGG16_Weights
from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights, DeepLabV3_ResNet101_Weights

from segedu import models
from segedu.errors import SegeduError
from segedu.models.aspp import ASPPv2
from segedu.models.backbones.xception import SeparableConv2d, Xception65
from segedu.models.blocks import bilinear_upsample

from model_checks import count, fake_weights_api, randomize_batch_norm

TINY = 0.125
PASCAL = 21  # the papers' 20 classes + background


# --- hand counts from layer shapes --------------------------------------------------------------

def conv(in_channels, out_channels, kernel_size, bias=True):
    return in_channels * out_channels * kernel_size**2 + (out_channels if bias else 0)


def conv_bn(in_channels, out_channels, kernel_size):
    """Convolution without bias + batch norm (weight and bias per channel)."""
    return conv(in_channels, out_channels, kernel_size, bias=False) + 2 * out_channels


def separable(in_channels, out_channels):
    """3x3 depthwise (one filter per channel) + BN, 1x1 pointwise + BN."""
    return 9 * in_channels + 2 * in_channels + conv_bn(in_channels, out_channels, 1)


def aspp_v3(in_channels, sep=False, channels=256):
    """1x1 branch, three 3x3 atrous branches, image pooling (1x1), projection of the 5-way concat."""
    atrous = separable(in_channels, channels) if sep else conv_bn(in_channels, channels, 3)
    return 2 * conv_bn(in_channels, channels, 1) + 3 * atrous + conv_bn(5 * channels, channels, 1)


def v3plus_decoder(low_level_channels, classes, sep=False):
    """1x1 to 48 on the low-level features, two 3x3 with 256 on the 256+48 concat, 1x1 scores."""
    if sep:
        refine = separable(304, 256) + separable(256, 256)
    else:
        refine = conv_bn(304, 256, 3) + conv_bn(256, 256, 3)
    return conv_bn(low_level_channels, 48, 1) + refine + conv(256, classes, 1)


#: VGG16's 13 3x3 convolutions (Simonyan & Zisserman, Table 1 column D).
VGG16_CONVS = sum(conv(i, o, 3) for i, o in [
    (3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
    (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)])
#: torchvision's ResNet-101 without its 1000-way fc layer.
RESNET101_BACKBONE = ResNet101_Weights.IMAGENET1K_V1.meta["num_params"] - conv(2048, 1000, 1)


def xception65_by_hand():
    """Fig. 4 of Chen et al. (ECCV 2018), layer by layer: the stem, 3 entry-flow blocks, 16 middle-flow
    blocks, 2 exit-flow blocks; a 1x1 stride-2 shortcut (+BN) where the shape changes."""
    total = conv_bn(3, 32, 3) + conv_bn(32, 64, 3)
    blocks = [(64, (128, 128, 128), True), (128, (256, 256, 256), True), (256, (728, 728, 728), True)]
    blocks += [(728, (728, 728, 728), False)] * 16  # identity shortcut
    blocks += [(728, (728, 1024, 1024), True), (1024, (1536, 1536, 2048), False)]  # the last: no shortcut
    for in_channels, channels, projection in blocks:
        if projection:
            total += conv_bn(in_channels, channels[-1], 1)
        for out_channels in channels:
            total += separable(in_channels, out_channels)
            in_channels = out_channels
    return total


# --- DeepLab v1 LargeFOV (ICLR 2015) ------------------------------------------------------------

def test_largefov_has_the_papers_20_5m_parameters():
    """Table 1: DeepLab-LargeFOV has 20.5M parameters (PASCAL, 21 classes), rounded to 0.1M, hence
    the 0.05M tolerance. By hand: VGG16's convolutions, fc6 3x3 with 1024, fc7 1x1 1024, fc8."""
    with torch.device("meta"):
        model = models.create("deeplabv1", num_classes=PASCAL)
    by_hand = VGG16_CONVS + conv(512, 1024, 3) + conv(1024, 1024, 1) + conv(1024, PASCAL, 1)
    assert count(model) == by_hand == 20_505_429
    assert abs(count(model) - 20.5e6) <= 0.05e6


def test_largefov_keeps_vgg16s_layout_with_atrous_pooling_and_conv5():
    model = models.create("deeplabv1", width=TINY)
    pools = [m for m in model.backbone.features if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride, p.padding) for p in pools] == [(3, 2, 1)] * 3 + [(3, 1, 1)] * 2
    convs = [m for m in model.backbone.features if isinstance(m, nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [1] * 10 + [2] * 3
    assert model.fc6[0].dilation == (12, 12) and model.fc6[0].kernel_size == (3, 3)


def test_largefov_with_batch_norm_adds_one_norm_per_convolution_and_keeps_the_geometry():
    """The from-scratch option (vgg16_bn layout): 13 batch norms, 2 parameters per channel of each,
    the same atrous layout and output, and the same receptive field (a norm is pointwise)."""
    from segedu.models.receptive_field import theoretical_receptive_field

    with torch.device("meta"):
        plain, normed = models.create("deeplabv1", num_classes=PASCAL), models.create("deeplabv1", num_classes=PASCAL,
                                                                                     batch_norm=True)
    norms = [m for m in normed.backbone.features if isinstance(m, nn.BatchNorm2d)]
    convs = [m for m in normed.backbone.features if isinstance(m, nn.Conv2d)]
    assert len(norms) == len(convs) == 13
    assert count(normed) - count(plain) == 2 * sum(c.out_channels for c in convs)
    assert [c.dilation[0] for c in convs] == [1] * 10 + [2] * 3
    small = models.create("deeplabv1", width=TINY, batch_norm=True).eval()
    assert small(torch.rand(1, 3, 37, 45)).shape == (1, 11, 37, 45)
    assert theoretical_receptive_field(normed.backbone) == theoretical_receptive_field(plain.backbone)


def test_an_atrous_3x3_at_rate_12_sees_a_25_cell_window_through_9_taps():
    """Hand case, LargeFOV's fc6: an impulse at the centre of pool5 reaches exactly the outputs at
    offsets {-12, 0, 12}^2. The field of view is (3 - 1) * 12 + 1 = 25 cells -- that of the 7x7
    rate-4 fc6 it replaces ((7 - 1) * 4 + 1 = 25), which is why Table 1 gives both a 224 RF --
    with 9 instead of 49 weights per channel pair."""
    fc6 = models.create("deeplabv1", width=TINY).fc6[0]
    with torch.no_grad():
        fc6.weight.fill_(1.0)
        fc6.bias.zero_()
        impulse = torch.zeros(1, fc6.in_channels, 41, 41)
        impulse[0, 0, 20, 20] = 1.0
        response = fc6(impulse)[0, 0]
    hit = {tuple(ij) for ij in response.nonzero().tolist()}
    assert hit == {(20 + dy, 20 + dx) for dy in (-12, 0, 12) for dx in (-12, 0, 12)}
    assert torch.all(response[tuple(torch.tensor(sorted(hit)).T)] == 1.0)


# --- ASPP ----------------------------------------------------------------------------------------

def test_aspp_v2_sums_its_four_branches():
    """Hand case: one input and one output channel, all-ones 3x3 filters, zero biases, except the
    rate-24 branch, whose weights are zero and bias 0.5. An impulse at the centre c of a 49x49 map
    gives: 3 + 0.5 at c (three branches' centre taps); 1 + 0.5 at c + (6, 0), c + (12, 12),
    c + (-18, 18) (one branch each); only the bias 0.5 at c + (24, 0), where just the zeroed
    branch would look; 0.5 elsewhere."""
    aspp = ASPPv2(1, 1)
    assert [b.dilation[0] for b in aspp.branches] == [6, 12, 18, 24]
    with torch.no_grad():
        for branch in aspp.branches:
            branch.weight.fill_(1.0)
            branch.bias.zero_()
        aspp.branches[3].weight.zero_()
        aspp.branches[3].bias.fill_(0.5)
        x = torch.zeros(1, 1, 49, 49)
        x[0, 0, 24, 24] = 1.0
        out = aspp(x)[0, 0]
    expected = torch.full((49, 49), 0.5)
    expected[24, 24] = 3.5
    for rate in (6, 12, 18):
        for dy in (-rate, 0, rate):
            for dx in (-rate, 0, rate):
                if (dy, dx) != (0, 0):
                    expected[24 + dy, 24 + dx] = 1.5
    assert out[24, 30] == 1.5 and out[36, 36] == 1.5 and out[6, 42] == 1.5 and out[24, 48] == 0.5
    torch.testing.assert_close(out, expected)


def test_aspp_v2_on_random_weights_is_the_sum_of_four_convolutions():
    torch.manual_seed(0)
    aspp = ASPPv2(3, 2)
    x = torch.randn(1, 3, 30, 33)
    with torch.no_grad():
        expected = sum(F.conv2d(x, b.weight, b.bias, padding=r, dilation=r)
                       for b, r in zip(aspp.branches, (6, 12, 18, 24)))
        torch.testing.assert_close(aspp(x), expected)


# --- output strides -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, options, module, size", [
    ("deeplabv1", {}, "fc8", 8),
    ("deeplabv2", {}, "classifier", 8),
    ("deeplabv3_resnet50", {}, "classifier", 8),
    ("deeplabv3_resnet50", {"output_stride": 16}, "classifier", 4),
    ("deeplabv3plus_resnet50", {}, "aspp", 4),
    ("deeplabv3plus_resnet50", {"output_stride": 8}, "aspp", 8),
    ("deeplabv3plus_resnet50", {}, "decoder.reduce", 16),
    ("deeplabv3plus_xception", {}, "aspp", 4),
    ("deeplabv3plus_xception", {"output_stride": 8}, "aspp", 8),
    ("deeplabv3plus_xception", {}, "decoder.reduce", 16),
])
def test_scores_and_features_come_at_the_papers_output_stride(name, options, module, size):
    """On a 64x64 image: v1 and v2 at output stride 8, v3 at 8 (torchvision) or 16, v3+'s encoder at
    16 or 8 and its decoder at 4 (the low-level features); the logits are at 64x64."""
    model = models.create(name, num_classes=3, width=TINY, **options).eval()
    seen = []
    model.get_submodule(module).register_forward_hook(lambda m, i, out: seen.append(out.shape[-2:]))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    assert seen == [(size, size)]


# --- DeepLab v2 ---------------------------------------------------------------------------------

def test_deeplabv2_parameter_count():
    """Not reported in the paper; by hand: torchvision's ResNet-101 without fc plus four 3x3
    convolutions 2048 -> 21 with bias (the authors' fc1_voc12_c0..c3)."""
    with torch.device("meta"):
        model = models.create("deeplabv2", num_classes=PASCAL)
    assert count(model) == RESNET101_BACKBONE + 4 * conv(2048, PASCAL, 3) == 44_048_532
    assert [m.dilation[0] for m in model.backbone.layer4.modules() if isinstance(m, nn.Conv2d)
            and m.kernel_size == (3, 3)] == [2, 4, 4]  # res5 at rate 4 (output stride 8)


# --- DeepLab v3 (torchvision) -------------------------------------------------------------------

def test_deeplabv3_resnet50_loads_torchvisions_state_dict_and_gives_its_outputs():
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    reference = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=PASCAL, aux_loss=True)
    randomize_batch_norm(reference, generator)
    model = models.create("deeplabv3_resnet50", num_classes=PASCAL, aux=True)
    model.load_state_dict(reference.state_dict())  # strict: the same names, no key map
    image = torch.randn(1, 3, 65, 65, generator=generator)
    with torch.no_grad():
        expected = reference.eval()(image)
        torch.testing.assert_close(model.eval()(image), expected["out"], rtol=1e-5, atol=1e-5)
        aux = bilinear_upsample(model.aux_classifier(model.backbone(image)["layer3"]), (65, 65))
        torch.testing.assert_close(aux, expected["aux"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, weights", [
    ("deeplabv3_resnet50", DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1),
    ("deeplabv3_resnet101", DeepLabV3_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1),
])
def test_deeplabv3_parameter_counts_match_torchvision(name, weights):
    """torchvision records num_params for its 21-class models with the auxiliary head (42,004,074
    and 60,996,202); its model built on the meta device has the same parameter shapes as ours."""
    with torch.device("meta"):
        model = models.create(name, num_classes=PASCAL, aux=True)
        reference = getattr(torchvision.models.segmentation, name)(
            weights=None, weights_backbone=None, num_classes=PASCAL, aux_loss=True)
    assert count(model) == weights.meta["num_params"] == count(reference)
    shapes = {key: value.shape for key, value in model.state_dict().items()}
    assert shapes == {key: value.shape for key, value in reference.state_dict().items()}


@pytest.mark.parametrize("output_stride, plain, multi_grid", [(16, [1, 2, 2], [2, 4, 8]),
                                                             (8, [2, 4, 4], [4, 8, 16])])
def test_multi_grid_multiplies_the_unit_rates_1_2_4_by_the_stage_rate(output_stride, plain, multi_grid):
    """Sec. 3.2: "when output_stride = 16 and Multi_Grid = (1, 2, 4), the three convolutions will
    have rates = 2 * (1, 2, 4) = (2, 4, 8) in the block4". Without it, torchvision's layout: the
    first unit keeps the rate of the stage before."""
    for flag, rates in ((False, plain), (True, multi_grid)):
        model = models.create("deeplabv3_resnet50", width=TINY, output_stride=output_stride, multi_grid=flag)
        assert [block.conv2.dilation[0] for block in model.backbone.layer4] == rates
        assert [block.conv2.padding[0] for block in model.backbone.layer4] == rates  # size-preserving
        with torch.no_grad():
            assert model.eval()(torch.randn(1, 3, 40, 36)).shape == (1, 11, 40, 36)


def test_aspp_rates_follow_the_output_stride():
    """Sec. 3.3: rates (6, 12, 18) at output stride 16, doubled at 8."""
    for output_stride, rates in ((16, [6, 12, 18]), (8, [12, 24, 36])):
        model = models.create("deeplabv3_resnet50", width=TINY, output_stride=output_stride)
        assert [model.classifier[0].convs[i][0].dilation[0] for i in (1, 2, 3)] == rates


# --- DeepLab v3+ and Xception-65 -----------------------------------------------------------------

def test_xception65_parameter_count_by_hand():
    """Chen et al. report no parameter count for Xception-65; counted by hand from Fig. 4 (and equal
    to timm's port of the authors' network without its classifier, 37,867,312, when timm is there)."""
    with torch.device("meta"):
        backbone = Xception65()
    assert count(backbone) == xception65_by_hand() == 37_867_312


def test_deeplabv3plus_parameter_counts_by_hand():
    """No counts in the paper; by hand: backbone + ASPP (separable with Xception) + decoder."""
    with torch.device("meta"):
        resnet = models.create("deeplabv3plus_resnet101", num_classes=PASCAL)
        xception = models.create("deeplabv3plus_xception", num_classes=PASCAL)
    assert count(resnet) == (RESNET101_BACKBONE + aspp_v3(2048)
                             + v3plus_decoder(256, PASCAL)) == 59_344_309
    assert count(xception) == (xception65_by_hand() + aspp_v3(2048, sep=True)
                               + v3plus_decoder(256, PASCAL, sep=True)) == 41_055_413
    assert isinstance(xception.aspp.convs[1], SeparableConv2d)
    assert isinstance(xception.decoder.refine[0], SeparableConv2d)
    assert not any(isinstance(m, SeparableConv2d) for m in resnet.modules())


def test_xception65_matches_timms_port_of_the_authors_network():
    """timm's xception65 loads the authors' TensorFlow checkpoints; its state dict (without the
    classifier) loads strictly into ours and gives the same features, at output stride 16 too
    (where the exit flow is atrous), and our low-level features are its entry block 2's second
    separable convolution."""
    timm = pytest.importorskip("timm")
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    reference = timm.create_model("xception65", num_classes=0, output_stride=16).eval()
    randomize_batch_norm(reference, generator)
    assert count(reference) == xception65_by_hand()
    ours = Xception65(output_stride=16).eval()
    ours.load_state_dict(reference.state_dict())
    taps = []
    reference.blocks[1].stack.conv2.register_forward_hook(lambda m, i, out: taps.append(out.clone()))
    image = torch.randn(1, 3, 49, 49, generator=generator)
    with torch.no_grad():
        expected = reference.forward_features(image)
        features = ours(image)
    assert features["exit_flow"].shape == (1, 2048, 4, 4) and features["low_level"].shape == (1, 256, 13, 13)
    torch.testing.assert_close(features["exit_flow"], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(features["low_level"], taps[0], rtol=1e-5, atol=1e-5)


def test_deeplabv3plus_trains_through_decoder_and_encoder():
    torch.manual_seed(0)
    model = models.create("deeplabv3plus_xception", num_classes=4, width=TINY).train()
    images, masks = torch.randn(2, 3, 45, 51), torch.randint(0, 4, (2, 45, 51))
    loss = F.cross_entropy(model(images), masks)
    loss.backward()
    assert torch.isfinite(loss)
    for part in (model.decoder.reduce[0], model.aspp.convs[0][0], model.backbone.stem[0].conv):
        assert part.weight.grad is not None and part.weight.grad.abs().sum() > 0


# --- options --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, options", [
    ("deeplabv3_resnet50", {"output_stride": 32}),
    ("deeplabv3plus_resnet50", {"output_stride": 4}),
    ("deeplabv3plus_xception", {"output_stride": 32}),
    ("deeplabv2", {"depth": 34}),
    ("deeplabv3plus_xception", {"pretrained_backbone": True}),
    ("deeplabv1", {"width": 0.5, "pretrained_backbone": True}),
])
def test_bad_options_are_refused(name, options):
    with pytest.raises(SegeduError):
        models.create(name, **options)


@pytest.mark.parametrize("name, weights, reference", [
    ("deeplabv1", VGG16_Weights, torchvision.models.vgg16),
    ("deeplabv3plus_resnet101", ResNet101_Weights, torchvision.models.resnet101),
])
def test_pretrained_backbone_takes_torchvisions_imagenet_weights(name, weights, reference, monkeypatch):
    """At paper scale on the meta device: every key and shape of the backbone must match (LargeFOV's
    changed poolings and dilations add no parameters)."""
    with torch.device("meta"):
        requested = fake_weights_api(monkeypatch, weights, reference().state_dict())
        models.create(name, pretrained_backbone=True)
    assert requested == [weights.IMAGENET1K_V1]


@pytest.mark.parametrize("depth, output_stride, dilate", [(50, 8, [False, True, True]), (101, 16, [False, False, True])])
def test_the_resnet_backbone_at_the_papers_width_is_torchvisions_own_network(depth, output_stride, dilate):
    """At width 1.0 the backbone is torchvision's resnet built by torchvision: under the same seed its
    state dict is torchvision's (classifier aside), tensor for tensor; narrower widths reuse its
    Bottleneck."""
    from torchvision.models.resnet import Bottleneck

    from segedu.models.backbones import ResNet

    torch.manual_seed(0)
    ours = ResNet(depth, output_stride=output_stride)
    torch.manual_seed(0)
    reference = getattr(torchvision.models, f"resnet{depth}")(replace_stride_with_dilation=dilate)
    expected = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    assert list(ours.state_dict()) == list(expected)
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in expected.items())
    assert ours.layer4[0].conv2.dilation == reference.layer4[0].conv2.dilation
    assert ours.channels == {"layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}
    assert isinstance(ResNet(depth, width=0.125).layer1[0], Bottleneck)
