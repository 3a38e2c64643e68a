"""FCN (Long et al., CVPR 2015) and its parts, against independent references: the bilinear
filter of the authors' surgery.py, F.interpolate, parameter counts from the layer shapes of the
paper's tables and torchvision's recorded ``num_params``, torchvision's VGG16 classifier and
FCN-ResNet models, and the crop offsets of the authors' Caffe nets."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import ResNet50_Weights, VGG16_BN_Weights, VGG16_Weights
from torchvision.models.segmentation import FCN_ResNet50_Weights, FCN_ResNet101_Weights

from segedu import models
from segedu.errors import SegeduError
from segedu.models import fcn
from segedu.models.backbones import VGG16, load_imagenet
from segedu.models.blocks import bilinear_conv_transpose, bilinear_kernel, bilinear_upsample

from model_checks import fake_weights_api, randomize_batch_norm

TINY = 0.125
VGG_FAMILY = ("fcn32s", "fcn16s", "fcn8s")


# --- bilinear upsampling (Sec. 3.3) -----------------------------------------------------------

def surgery_upsample_filt(size):
    """upsample_filt from the FCN authors' surgery.py, in numpy."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


@pytest.mark.parametrize("kernel_size", [3, 4, 16, 64])
def test_bilinear_kernel_is_the_authors_filter_on_the_diagonal(kernel_size):
    weight = bilinear_kernel(3, kernel_size).numpy()
    for i in range(3):
        for j in range(3):
            expected = surgery_upsample_filt(kernel_size) if i == j else 0
            np.testing.assert_allclose(weight[i, j], expected, atol=1e-7)


@pytest.mark.parametrize("factor", [2, 8])
def test_bilinear_transposed_convolution_interpolates_like_f_interpolate(factor):
    """Away from the border (where the transposed conv sees zero padding) the two agree."""
    x = torch.randn(1, 2, 6, 7, generator=torch.Generator().manual_seed(0))
    layer = bilinear_conv_transpose(2, factor, padding=factor // 2, learnable=False)
    with torch.no_grad():
        upsampled = layer(x)
    reference = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert upsampled.shape == reference.shape
    inner = (..., slice(factor, -factor), slice(factor, -factor))
    torch.testing.assert_close(upsampled[inner], reference[inner], rtol=1e-5, atol=1e-6)
    assert not layer.weight.requires_grad


def test_the_upsampling_runs_in_float32_under_bf16_autocast():
    """Inside a bf16 autocast region the upsampling still computes in float32 (a CPU's bf16 kernels
    for 64x64 transposed convolutions are slow): the same output as nn.ConvTranspose2d outside
    autocast, and the same state-dict keys."""
    x = torch.randn(2, 3, 5, 4, generator=torch.Generator().manual_seed(0))
    layer = bilinear_conv_transpose(3, 32, padding=16, learnable=True)
    plain = nn.ConvTranspose2d(3, 3, 64, stride=32, padding=16, bias=False)
    plain.load_state_dict(layer.state_dict())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        inside = layer(x.bfloat16())
        plain_inside = plain(x)
    with torch.no_grad():  # the input was rounded to bf16 by the caller; the layer adds no rounding
        expected = plain(x.bfloat16().float())
    assert inside.dtype == torch.float32 and plain_inside.dtype == torch.bfloat16
    torch.testing.assert_close(inside, expected, rtol=1e-6, atol=1e-6)
    assert list(layer.state_dict()) == list(plain.state_dict()) == ["weight"]


# --- any input size, training -----------------------------------------------------------------

@pytest.mark.parametrize("name", VGG_FAMILY)
@pytest.mark.parametrize("pad100", [False, True])
@pytest.mark.parametrize("size", [(67, 93), (1, 1), (31, 33)])
def test_vgg_fcns_return_logits_at_the_input_size(name, pad100, size):
    model = models.create(name, num_classes=3, width=TINY, pad100=pad100).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 3, *size)


@pytest.mark.parametrize("name, options, final", [
    ("fcn32s", {}, "upscore"),
    ("fcn16s", {}, "upscore16"),
    ("fcn8s", {}, "upscore8"),
    ("fcn8s", {"pad100": True}, "upscore8"),
    ("fcn_resnet50", {"aux": True}, None),
])
def test_a_training_step_updates_the_scores_but_not_the_fixed_upsampling(name, options, final):
    torch.manual_seed(0)
    model = models.create(name, num_classes=4, width=TINY, **options).train()
    images, masks = torch.randn(2, 3, 45, 51), torch.randint(0, 4, (2, 45, 51))
    masks[:, :5] = 255  # ignored pixels take part in nothing
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scores = model.classifier[4] if name.startswith("fcn_resnet") else model.score_fr
    before = {key: value.clone() for key, value in model.state_dict().items()}

    output = model(images)
    loss = F.cross_entropy(models.main_output(output), masks, ignore_index=255)
    if isinstance(output, dict):
        loss = loss + 0.4 * F.cross_entropy(output["aux"], masks, ignore_index=255)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

    assert torch.isfinite(loss)
    assert not torch.equal(scores.weight, before[_key(model, scores) + ".weight"])
    if final:
        assert getattr(model, final).weight.grad is None
        assert torch.equal(getattr(model, final).weight, before[f"{final}.weight"])
    if name in ("fcn16s", "fcn8s"):  # intermediate upsampling is learned (Sec. 4.2)
        assert model.upscore2.weight.grad is not None


def _key(model, module):
    return next(key for key, value in model.named_modules() if value is module)


# --- parameter counts at paper scale (built on the meta device: nothing allocated) -----------

def conv(in_channels, out_channels, kernel_size):
    return in_channels * out_channels * kernel_size**2 + out_channels


#: VGG16's 13 3x3 convolutions (Simonyan & Zisserman, Table 1 column D)
VGG16_CONVS = sum(conv(i, o, 3) for i, o in [
    (3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
    (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)])
FC6_FC7 = conv(512, 4096, 7) + conv(4096, 4096, 1)
PASCAL = 21  # the paper's 20 classes + background


def upsampling(factor, classes=PASCAL):
    return classes * classes * (2 * factor) ** 2


def test_the_hand_count_of_vgg16_matches_torchvision():
    """The layer shapes above, with the 1000-way fc8, are torchvision's VGG16."""
    assert VGG16_CONVS + FC6_FC7 + conv(4096, 1000, 1) == VGG16_Weights.IMAGENET1K_V1.meta["num_params"]


@pytest.mark.parametrize("name, learned_extra, fixed", [
    ("fcn32s", 0, upsampling(32)),
    ("fcn16s", conv(512, PASCAL, 1) + upsampling(2), upsampling(16)),
    ("fcn8s", conv(512, PASCAL, 1) + conv(256, PASCAL, 1) + 2 * upsampling(2), upsampling(8)),
])
def test_vgg_fcn_parameter_counts_match_the_paper(name, learned_extra, fixed):
    """Table 1 lists 134M parameters for FCN-VGG16, rounded to whole millions, for PASCAL's 21
    classes. The learned parameters are the convolutionalised VGG16 plus score layers and the
    learned 2x upsamplings; the skips add at most 30k, so all three variants round to 134M. The
    fixed final upsampling is not learned and not in the 134M (FCN-32s would be 136M with it)."""
    with torch.device("meta"):
        model = models.create(name, num_classes=PASCAL)
    learned = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert learned == VGG16_CONVS + FC6_FC7 + conv(4096, PASCAL, 1) + learned_extra
    assert frozen == fixed
    assert abs(learned - 134e6) < 0.5e6


@pytest.mark.parametrize("name, weights", [("fcn_resnet50", FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1),
                                           ("fcn_resnet101", FCN_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1)])
def test_fcn_resnet_parameter_counts_match_torchvision(name, weights):
    """torchvision records num_params for its 21-class models with the auxiliary head."""
    with torch.device("meta"):
        model = models.create(name, num_classes=PASCAL, aux=True)
    assert sum(p.numel() for p in model.parameters()) == weights.meta["num_params"]


# --- Fig. 2: fully connected layers as convolutions -------------------------------------------

def test_the_convolutionalised_vgg16_gives_the_classifiers_scores():
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None).eval()
    convolutional = fcn.ConvolutionalizedVGG16.from_torchvision(vgg).eval()
    image = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        scores = convolutional(image)
        assert scores.shape == (1, 1000, 1, 1)
        torch.testing.assert_close(scores.flatten(1), vgg(image), rtol=1e-5, atol=1e-5)


def test_the_convolutionalised_vgg16_maps_a_bigger_image_to_a_heatmap():
    """One cell of scores per 32-pixel shift of the 224x224 window."""
    model = fcn.ConvolutionalizedVGG16(width=TINY).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 256, 320)).shape == (1, 1000, 2, 4)


# --- the pad-100 crops (Caffe) ----------------------------------------------------------------

def coordinate_map(layers, start=(1.0, 0.0)):
    """(a, b) such that the input-image coordinate of output cell x is a * x + b, composed layer by
    layer as Caffe's coord_map does: x_in = stride * x_out + dilation * (kernel - 1) / 2 - padding,
    inverted for a transposed convolution."""
    a, b = start
    for layer in layers:
        if not isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.ConvTranspose2d)):
            continue  # ReLU, dropout: pointwise
        k, s, p, d = (v[0] if isinstance(v, tuple) else v
                      for v in (layer.kernel_size, layer.stride, layer.padding, layer.dilation))
        shift = d * (k - 1) / 2 - p
        if isinstance(layer, nn.ConvTranspose2d):
            a, b = a / s, b - a * shift / s
        else:
            a, b = a * s, a * shift + b
    return a, b


def crop_offset(bigger, reference):
    """Where the reference map's cell 0 falls in the bigger map (both on the same grid)."""
    assert bigger[0] == reference[0]
    offset = (reference[1] - bigger[1]) / bigger[0]
    assert offset == int(offset)
    return int(offset)


@pytest.mark.parametrize("pad100", [True, False])
def test_crop_offsets_follow_from_the_layer_geometry(pad100):
    """pad100: the offsets of the authors' voc-fcn32s/16s/8s net.py; padding to 32: none."""
    m32, m16, m8 = (models.create(name, width=TINY, pad100=pad100) for name in VGG_FAMILY)
    layers = list(m8.backbone.features)  # pool3 is layer 16, pool4 layer 23 (torchvision layout)
    pool3, pool4 = coordinate_map(layers[:17]), coordinate_map(layers[:24])
    score = coordinate_map(layers + [m8.backbone.fc6[0], m8.backbone.fc7[0], m8.score_fr])
    image = (1.0, 0.0)
    up2_16 = coordinate_map([m16.upscore2], score)
    up2_8 = coordinate_map([m8.upscore2], score)
    up_pool4 = coordinate_map([m8.upscore_pool4], up2_8)
    derived = {
        "upscore": crop_offset(coordinate_map([m32.upscore], score), image),
        "score_pool4": crop_offset(pool4, up2_16),
        "upscore16": crop_offset(coordinate_map([m16.upscore16], up2_16), image),
        "score_pool3": crop_offset(pool3, up_pool4),
        "upscore8": crop_offset(coordinate_map([m8.upscore8], up_pool4), image),
    }
    caffe = {"upscore": 19, "score_pool4": 5, "upscore16": 27, "score_pool3": 9, "upscore8": 31}
    assert derived == (caffe if pad100 else dict.fromkeys(caffe, 0))
    assert fcn.CAFFE_OFFSETS == caffe


# --- torchvision's FCN-ResNet -----------------------------------------------------------------


@pytest.mark.parametrize("name, aux", [("fcn_resnet50", True), ("fcn_resnet101", False)])
def test_torchvisions_state_dict_loads_and_gives_the_same_outputs(name, aux):
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    builder = getattr(torchvision.models.segmentation, name)
    reference = builder(weights=None, weights_backbone=None, num_classes=PASCAL, aux_loss=aux)
    randomize_batch_norm(reference, generator)
    model = models.create(name, num_classes=PASCAL, aux=aux)
    model.load_state_dict(reference.state_dict())  # strict: the same names, no key map
    image = torch.randn(1, 3, 64, 64, generator=generator)
    with torch.no_grad():
        expected = reference.eval()(image)
        torch.testing.assert_close(model.eval()(image), expected["out"], rtol=1e-5, atol=1e-5)
        if aux:
            aux_logits = bilinear_upsample(model.aux_classifier(model.backbone(image)["layer3"]), (64, 64))
            torch.testing.assert_close(aux_logits, expected["aux"], rtol=1e-5, atol=1e-5)


# --- pretrained_backbone: torchvision's weights API or a local file (never downloads here) -----

@pytest.fixture
def resnet50_imagenet_state():
    """A stand-in for torchvision's ResNet-50 ImageNet weights: a random resnet50's state dict."""
    torch.manual_seed(1)
    model = torchvision.models.resnet50(weights=None)
    randomize_batch_norm(model, torch.Generator().manual_seed(1))
    return model.state_dict()


@pytest.mark.parametrize("source", ["weights API", "file"])
def test_resnet_backbone_loads_torchvisions_imagenet_weights(source, resnet50_imagenet_state, monkeypatch,
                                                             tmp_path):
    requested = fake_weights_api(monkeypatch, ResNet50_Weights, resnet50_imagenet_state)
    if source == "file":
        torch.save(resnet50_imagenet_state, tmp_path / "resnet50.pth")
    model = models.create("fcn_resnet50", pretrained_backbone=True if source == "weights API"
                          else tmp_path / "resnet50.pth")
    assert requested == ([ResNet50_Weights.IMAGENET1K_V1] if source == "weights API" else [])
    loaded = model.backbone.state_dict()
    expected = {key: value for key, value in resnet50_imagenet_state.items() if not key.startswith("fc.")}
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], value) for key, value in expected.items())


@pytest.mark.parametrize("name", VGG_FAMILY)
def test_vgg_backbone_takes_torchvisions_vgg16_with_fc6_fc7_convolutionalised(name, monkeypatch):
    """At paper scale on the meta device: every key and shape must match (the values are checked
    by the Fig. 2 test above, which goes through the same conversion)."""
    with torch.device("meta"):
        requested = fake_weights_api(monkeypatch, VGG16_Weights, torchvision.models.vgg16().state_dict())
        models.create(name, pretrained_backbone=True)
    assert requested == [VGG16_Weights.IMAGENET1K_V1]


def test_the_batch_norm_vgg16_takes_torchvisions_vgg16_bn(monkeypatch):
    """The VGG16-BN layout (for encoders such as SegNet's) matches torchvision's vgg16_bn."""
    with torch.device("meta"):
        state_dict = torchvision.models.vgg16_bn().state_dict()
        requested = fake_weights_api(monkeypatch, VGG16_BN_Weights, state_dict)
        load_imagenet(VGG16(batch_norm=True), True)
    assert requested == [VGG16_BN_Weights.IMAGENET1K_V1]


@pytest.mark.parametrize("name", ["fcn8s", "fcn_resnet50"])
def test_pretrained_backbone_needs_the_papers_width(name):
    with pytest.raises(SegeduError, match="width=1.0"):
        models.create(name, width=0.5, pretrained_backbone=True)


def test_pretrained_backbone_problems_name_the_file(tmp_path):
    with pytest.raises(SegeduError, match="no such file"):
        models.create("fcn_resnet50", pretrained_backbone=tmp_path / "missing.pth")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(SegeduError, match=r"other\.pth: not the weights of this ResNet \(missing: .*shape: "):
        models.create("fcn_resnet50", pretrained_backbone=tmp_path / "other.pth")


def test_vgg_fcns_take_a_batch_norm_backbone():
    from torch import nn

    from segedu import models

    for name in ("fcn32s", "fcn16s", "fcn8s"):
        plain = models.create(name, width=0.125)
        with_bn = models.create(name, width=0.125, batch_norm=True)
        bns = [m for m in with_bn.modules() if isinstance(m, nn.BatchNorm2d)]
        assert len(bns) == 13 and not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
        assert with_bn.eval()(torch.rand(1, 3, 45, 61)).shape == (1, 11, 45, 61)
