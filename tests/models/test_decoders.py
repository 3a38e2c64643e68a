"""DeconvNet (Noh et al., ICCV 2015) and SegNet (Badrinarayanan et al., TPAMI 2017), against
independent references: parameter counts hand-computed from the papers' layer tables (and the
authors' Caffe models) and the totals the papers report, torchvision's recorded VGG16-BN size,
max pooling's own indices and gradient for the unpooling, and torchvision's vgg16_bn layers."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import VGG16_BN_Weights

from segedu import models
from segedu.errors import SegeduError
from segedu.models.deconvnet import ConvolutionNetwork
from segedu.models.segnet import Encoder, PoolingIndices, Unpooling

from model_checks import conv, norm, randomize_batch_norm

TINY = 0.125
NAMES = ("deconvnet", "segnet")


# --- parameter counts at paper scale (meta device: nothing allocated) -------------------------

def conv_bn(in_channels, out_channels, kernel_size=3, bias=False):
    return conv(in_channels, out_channels, kernel_size, bias) + norm(out_channels)


#: VGG16's 13 convolutions (Table 1 column D), each with bias and batch norm (torchvision's vgg16_bn)
VGG16_BN_CONVS = sum(conv_bn(i, o, bias=True) for i, o in [
    (3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
    (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)])

#: The decoders' 3x3 layers, deepest first, as the authors' prototxts list them (deconv5_1 ... for
#: DeconvNet, conv5_3_D ... for SegNet); both mirror VGG16, and differ only in the first stage.
MIRRORED_VGG16 = [(512, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 256),
                  (256, 256), (256, 256), (256, 128), (128, 128), (128, 64)]
DECONVNET_DECODER = MIRRORED_VGG16 + [(64, 64), (64, 64)]  # deconv1_1, deconv1_2
SEGNET_DECODER = MIRRORED_VGG16 + [(64, 64)]  # conv1_2_D; conv1_1_D is the classifier


def test_the_hand_count_of_vgg16_bn_matches_torchvision():
    """The encoder shapes above, with the classifier's fc6, fc7 and 1000-way fc8, are torchvision's
    vgg16_bn: the reference for the encoder both models share."""
    classifier = conv(512 * 7 * 7, 4096, 1) + conv(4096, 4096, 1) + conv(4096, 1000, 1)
    assert VGG16_BN_CONVS + classifier == VGG16_BN_Weights.IMAGENET1K_V1.meta["num_params"]


def count(name, num_classes, **options):
    with torch.device("meta"):
        model = models.create(name, num_classes=num_classes, **options)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("pad_fc6", [False, True])
def test_deconvnet_has_the_papers_252m_parameters(pad_fc6):
    """Table 1 layer by layer, for PASCAL VOC's 21 classes: fc6 (7x7, 4096) and fc7 with batch
    norm, deconv-fc6 (7x7 transposed, 4096 -> 512), the 13 deconvolutions, the 1x1 seg-score.
    The paper reports 252M, in whole millions, so |count - 252M| < 0.5M; we measure 251.80M. Our
    deconvolutions drop the bias before batch norm (5k less than the Caffe model) and the class
    count moves 65 per class: both far inside the rounding. Padding fc6 changes no shape."""
    expected = (VGG16_BN_CONVS
                + conv_bn(512, 4096, 7, bias=True) + conv_bn(4096, 4096, 1, bias=True)  # fc6, fc7
                + conv_bn(4096, 512, 7)  # deconv-fc6
                + sum(conv_bn(i, o) for i, o in DECONVNET_DECODER)
                + conv(64, 21, 1))  # seg-score
    measured = count("deconvnet", 21, pad_fc6=pad_fc6)
    assert measured == expected == 251_801_365
    assert abs(measured - 252e6) < 0.5e6


@pytest.mark.parametrize("num_classes", [11, 37])
def test_segnet_has_the_papers_29_5m_parameters(num_classes):
    """The encoder (14.7M, the paper's figure for VGG16 without its fully connected layers), the
    12 decoder conv-BN-ReLU layers and the 3x3 classifier conv1_1_D of the authors' prototxt.
    The paper reports 29.5M (one decimal). We measure 29.45M for CamVid's 11 classes and 29.46M for
    SUN RGB-D's 37 (the 3x3 classifier adds 577 per class), so we allow one unit of the paper's
    last digit, 0.1M; our decoder drops Caffe's bias before batch norm (3.7k), well inside it."""
    assert abs(VGG16_BN_CONVS - 14.7e6) < 0.05e6
    expected = (VGG16_BN_CONVS + sum(conv_bn(i, o) for i, o in SEGNET_DECODER)
                + conv(64, num_classes, 3))
    measured = count("segnet", num_classes)
    assert measured == expected
    assert abs(measured - 29.5e6) < 0.1e6


# --- unpooling with the pooling's indices ("switches") ---------------------------------------

def test_unpooling_puts_values_back_where_the_maxima_were():
    """Hand-computed 4x4 case: the maxima of the four 2x2 windows are 4 at (1,1), 6 at (1,3),
    9 at (2,1) and 7 at (3,3); flat positions 5, 7, 9, 15 in the 4x4 plane."""
    x = torch.tensor([[1., 2., 5., 0.],
                      [3., 4., 1., 6.],
                      [0., 9., 2., 2.],
                      [8., 1., 3., 7.]]).reshape(1, 1, 4, 4)
    pooled, indices = nn.MaxPool2d(2, stride=2, return_indices=True)(x)
    assert pooled.flatten().tolist() == [4, 6, 9, 7]
    assert indices.flatten().tolist() == [5, 7, 9, 15]

    decoded = torch.tensor([[10., 20.], [30., 40.]]).reshape(1, 1, 2, 2)
    unpooled = Unpooling()(decoded, PoolingIndices(indices, x.shape[-2:]))
    expected = torch.tensor([[0., 0., 0., 0.],
                             [0., 10., 0., 20.],
                             [0., 30., 0., 0.],
                             [0., 0., 0., 40.]]).reshape(1, 1, 4, 4)
    assert torch.equal(unpooled, expected)


@pytest.mark.parametrize("size", [(5, 7), (6, 6)])
def test_unpooling_is_the_gradient_of_max_pooling(size):
    """Routing a value back to its window's maximum is what backpropagation through max pooling
    does; with an odd size, the recorded input size restores the last row/column (never a max)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *size, generator=generator, requires_grad=True)
    pooled, indices = F.max_pool2d(x, 2, stride=2, return_indices=True)
    upstream = torch.randn(pooled.shape, generator=generator)
    pooled.backward(upstream)
    unpooled = Unpooling()(upstream, PoolingIndices(indices, x.shape[-2:]))
    assert unpooled.shape == x.shape
    assert torch.equal(unpooled, x.grad)


def test_the_encoder_records_the_indices_of_its_own_pooling():
    """Each encoder stage hands its decoder the indices max pooling found on that stage's output."""
    encoder = Encoder(TINY).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        _, indices = encoder(x)
        start = 0
        for position, pooling in zip(encoder.pool_indices, indices):  # each stage: its convolutions, then its pooling
            features = encoder.features[start:position](x)
            x, expected = F.max_pool2d(features, 2, stride=2, return_indices=True)
            assert pooling.size == features.shape[-2:]
            assert torch.equal(pooling.indices, expected)
            start = position + 1
    assert [tuple(p.size) for p in indices] == [(64, 96), (32, 48), (16, 24), (8, 12), (4, 6)]


# --- any input size, geometry, training --------------------------------------------------------

@pytest.mark.parametrize("name, options", [("deconvnet", {}), ("deconvnet", {"pad_fc6": True}), ("segnet", {})])
@pytest.mark.parametrize("size", [(37, 45), (1, 1), (65, 33), (257, 231)])
def test_logits_come_back_at_the_input_size(name, options, size):
    model = models.create(name, num_classes=3, width=TINY, **options).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 3, *size)


@pytest.mark.parametrize("pad_fc6, size, fc7", [
    (False, (224, 224), (1, 1)),  # Table 1: pool5 7x7 -> fc6 1x1
    (False, (37, 45), (1, 1)),  # padded up to 224 x 224
    (False, (257, 300), (3, 4)),  # padded to 288 x 320: pool5 9 x 10
    (True, (37, 45), (2, 2)),  # padded to 64 x 64, fc6 keeps pool5's 2 x 2
])
def test_deconvnet_fc6_sees_a_7x7_pool5_window(pad_fc6, size, fc7):
    model = models.create("deconvnet", num_classes=3, width=TINY, pad_fc6=pad_fc6).eval()
    seen = {}

    def record(name):
        def hook(module, args, output):
            seen[name] = output.shape  # returns None: the output stays as it is
        return hook

    model.encoder.fc7.register_forward_hook(record("fc7"))
    model.decoder.fc6_deconv.register_forward_hook(record("up"))
    with torch.no_grad():
        model(torch.randn(1, 3, *size))
    padded = [max(224, -(-s // 32) * 32) if not pad_fc6 else -(-s // 32) * 32 for s in size]
    assert tuple(seen["fc7"][-2:]) == fc7
    assert tuple(seen["up"][-2:]) == tuple(s // 32 for s in padded)  # deconv-fc6 restores pool5's size


@pytest.mark.parametrize("name", NAMES)
def test_one_sgd_step_reaches_the_first_convolution_and_lowers_the_loss(name):
    torch.manual_seed(0)
    model = models.create(name, num_classes=4, width=TINY).train()
    images, masks = torch.randn(2, 3, 40, 52), torch.randint(0, 4, (2, 40, 52))
    masks[:, :4] = 255  # ignored pixels, as the loss in training
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    first = model.encoder.features[0]  # conv1_1
    before = first.weight.detach().clone()

    loss = F.cross_entropy(model(images), masks, ignore_index=255)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

    assert torch.isfinite(loss)
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0
    assert not torch.equal(first.weight, before)
    with torch.no_grad():
        after = F.cross_entropy(model(images), masks, ignore_index=255)
    assert after < loss


# --- torchvision's ImageNet vgg16_bn in the encoder ---------------------------------------------

def tiny_vgg16_bn_features(generator):
    """torchvision's own vgg16_bn feature layers at width 1/8, BN statistics randomised."""
    config = [max(1, round(c * TINY)) if c != "M" else c for c in torchvision.models.vgg.cfgs["D"]]
    return randomize_batch_norm(torchvision.models.vgg.make_layers(config, batch_norm=True), generator)


def test_the_encoder_takes_torchvisions_vgg16_bn_layers():
    """torchvision's layers load key for key (the encoder is segedu's VGG16 in torchvision's layout)
    and compute the same pool5."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    features = tiny_vgg16_bn_features(generator).eval()
    state_dict = {f"features.{key}": value for key, value in features.state_dict().items()}
    encoder = Encoder(TINY).eval()
    encoder.load_state_dict(encoder.from_torchvision(state_dict))  # strict: every key mapped
    image = torch.randn(1, 3, 64, 64, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(encoder(image)[0], features(image), rtol=1e-5, atol=1e-5)


def test_deconvnets_fc6_and_fc7_take_the_classifier_and_keep_their_norms():
    """fc6 on a 7x7 pool5 computes torchvision's fully connected fc6; the batch norms DeconvNet
    adds after fc6 and fc7 are not in vgg16_bn and keep their initial values."""
    generator = torch.Generator().manual_seed(0)
    network = ConvolutionNetwork(TINY)
    c5, fc = network.stage_channels[-1], network.fc_channels
    state_dict = {f"features.{key}": value
                  for key, value in tiny_vgg16_bn_features(generator).state_dict().items()}
    classifier = {"classifier.0": nn.Linear(c5 * 49, fc), "classifier.3": nn.Linear(fc, fc)}
    for prefix, layer in classifier.items():
        state_dict.update({f"{prefix}.{key}": value for key, value in layer.state_dict().items()})
    norms_before = {key: value.clone() for key, value in network.state_dict().items()
                    if key.startswith(("fc6.1.", "fc7.1."))}

    network.load_state_dict(network.from_torchvision(state_dict))
    pool5 = torch.randn(2, c5, 7, 7, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(network.fc6[0](pool5).flatten(1), classifier["classifier.0"](pool5.flatten(1)),
                                   rtol=1e-5, atol=1e-5)
    assert norms_before and all(torch.equal(network.state_dict()[key], value) for key, value in norms_before.items())


def fake_vgg16_bn_weights(monkeypatch):
    """torchvision's weights API answering with a (meta) vgg16_bn state dict; records requests."""
    state_dict = torchvision.models.vgg16_bn().state_dict()
    requested = []

    def get_state_dict(self, *args, **kwargs):
        requested.append(self)
        return state_dict

    monkeypatch.setattr(VGG16_BN_Weights, "get_state_dict", get_state_dict)
    return requested


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_backbone_loads_vgg16_bn_at_paper_scale(name, monkeypatch):
    """Every key and shape of torchvision's vgg16_bn lands (load_imagenet refuses any mismatch)."""
    with torch.device("meta"):
        requested = fake_vgg16_bn_weights(monkeypatch)
        models.create(name, pretrained_backbone=True)
    assert requested == [VGG16_BN_Weights.IMAGENET1K_V1]


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_backbone_needs_the_papers_width(name):
    with torch.device("meta"), pytest.raises(SegeduError, match="width=1.0"):
        models.create(name, width=0.5, pretrained_backbone=True)
