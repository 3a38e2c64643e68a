"""The course's pretrained encoders (segedu.models.course): the export of a pretext's encoder, the
file's integrity checks, and every model that starts from one loading exactly those weights.

The shipped folder is replaced by a temporary one (``course.WEIGHTS_DIR``), filled by
``pretrain.export`` from pretext networks whose every weight and batch-norm statistic is random, so
that a loaded value equal to the pretext's can only have come from the file.
"""
import dataclasses
import hashlib
import json
import os
import shutil
from operator import attrgetter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision
from torch import nn

from segedu import models
from segedu.engine import pretrain
from segedu.errors import SegeduError
from segedu.models import course, pretext

WIDTH = 0.125
#: what the fake trainer reports: two epochs, the first one validated
HISTORY = [{"epoch": 1, "seconds": 2.25, "val_miou": 0.123456}, {"epoch": 2, "seconds": 1.5}]


def _randomised(encoder: str, width: float = WIDTH, seed: int = 0) -> nn.Module:
    """A pretext whose weights and batch-norm statistics are all random (variances positive)."""
    torch.manual_seed(seed)
    model = models.create(pretext.MODEL, encoder=encoder, width=width)
    with torch.no_grad():
        for key, value in model.state_dict().items():  # shares storage with the parameters and buffers
            if key.endswith("running_var"):
                value.copy_(torch.rand_like(value) + 0.5)
            elif value.is_floating_point():
                value.copy_(torch.randn_like(value))
    return model


def _export(pretext: nn.Module, folder, width: float = WIDTH) -> dict:
    run_dir = Path(folder) / f"run-{pretext.encoder_name}"  # export reads the run's own log
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in HISTORY))
    trainer = SimpleNamespace(model=pretext, history=HISTORY, step=12, device=torch.device("cpu"), run_dir=run_dir)
    return pretrain.export(pretrain.Recipe(pretext.encoder_name, width=width), trainer, folder)


#: the package's own weights folder, before the autouse fixture below points models at a temporary one
PACKAGE_WEIGHTS = course.WEIGHTS_DIR


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A weights folder with every course encoder at width 0.125; returns (folder, {encoder: pretext})."""
    folder = tmp_path_factory.mktemp("weights")
    pretexts = {encoder: _randomised(encoder, seed=i) for i, encoder in enumerate(course.ENCODERS)}
    for network in pretexts.values():
        _export(network, folder)
    return folder, pretexts


@pytest.fixture(autouse=True)
def weights_dir(shipped, monkeypatch):
    """models.create reads the temporary folder, never the package's segedu/weights."""
    monkeypatch.setattr(course, "WEIGHTS_DIR", shipped[0])
    return shipped[0]


# --- the export ------------------------------------------------------------------------------------

def _torchvision_keys(encoder: str) -> set[str]:
    """torchvision's own state-dict keys of the classifier, its ImageNet scores left out."""
    with torch.device("meta"):
        network = getattr(torchvision.models, encoder)()
    scores = "classifier.6." if encoder == "vgg16_bn" else "fc."
    return {key for key in network.state_dict() if not key.startswith(scores)}


@pytest.mark.parametrize("encoder", list(course.ENCODERS))
def test_export_writes_fp16_weights_and_a_card_with_their_sha256(shipped, encoder):
    folder, pretexts = shipped
    path = folder / f"{encoder}-w0.125.pt"
    saved = torch.load(path, weights_only=True)
    floats = [value for value in saved.values() if value.is_floating_point()]
    assert floats and all(value.dtype == torch.float16 for value in floats)
    if encoder != "hrnetv2_w18":  # torchvision has no HRNet; its keys are checked by loading below
        assert set(saved) == _torchvision_keys(encoder)
    else:
        assert not any(key.startswith("last_layer.3.") for key in saved)  # the pretext's classifier is not kept
    card = json.loads((folder / "cards.json").read_text())[path.name]
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (card["encoder"], card["width"], card["file"], card["steps"]) == (encoder, WIDTH, path.name, 12)
    assert (card["seconds"], card["pretext_val_miou"], card["device"]) == (3.8, 0.1235, "cpu")  # 2.25 + 1.5, rounded
    assert card["parameters"] == sum(value.numel() for value in floats)
    assert card["torch"] == torch.__version__ and card["corpus"]["seed"] == pretrain.CORPUS_SEED
    assert course.available(folder) == [(e, WIDTH) for e in course.ENCODERS]


def test_state_dict_is_the_pretexts_encoder_rounded_to_fp16_as_float32(shipped):
    folder, pretexts = shipped
    loaded = course.state_dict("vgg16_bn", WIDTH)
    backbone = pretexts["vgg16_bn"].backbone.state_dict()
    assert all(value.dtype == torch.float32 for value in loaded.values() if value.is_floating_point())
    assert torch.equal(loaded["features.0.weight"], backbone["features.0.weight"].half().float())
    assert not torch.equal(loaded["features.0.weight"], backbone["features.0.weight"])  # fp16, not the fp32 value
    # fc6 as the classifier's fully connected layer: the convolution's kernel flattened channel-major
    fc6 = backbone["fc6.0.weight"]
    assert loaded["classifier.0.weight"].shape == (fc6.shape[0], fc6[0].numel())
    assert torch.equal(loaded["classifier.0.weight"][3, 7 * 7 * 2 + 7 * 4 + 5], fc6[3, 2, 4, 5].half().float())


# --- every model that starts from a course encoder loads exactly its weights ---------------------

#: (model, options, encoder, the module that holds the encoder, convolutions and norms compared):
#: VGG-16 has 13 convolutions with 13 norms, then fc6 and fc7; ResNet-50 53 of each, ResNet-101 104.
LOADS = [
    ("fcn8s", {"batch_norm": True}, "vgg16_bn", "backbone", 15, 13),
    ("fcn16s", {"batch_norm": True}, "vgg16_bn", "backbone", 15, 13),
    ("fcn32s", {"batch_norm": True}, "vgg16_bn", "backbone", 15, 13),
    ("fcn8s", {"batch_norm": True, "pad100": True}, "vgg16_bn", "backbone", 15, 13),
    ("deeplabv1", {"batch_norm": True}, "vgg16_bn", "backbone", 13, 13),  # fc6/fc7 are its own (rate 12, 1024)
    ("dilatednet", {"batch_norm": True}, "vgg16_bn", "frontend.backbone", 15, 13),
    ("deconvnet", {}, "vgg16_bn", "encoder", 15, 13),  # the norms after fc6/fc7 have no counterpart
    ("deconvnet", {"pad_fc6": True}, "vgg16_bn", "encoder", 15, 13),
    ("segnet", {}, "vgg16_bn", "encoder", 13, 13),
    ("deeplabv3plus_resnet50", {}, "resnet50", "backbone", 53, 53),
    ("deeplabv3_resnet50", {}, "resnet50", "backbone", 53, 53),
    ("pspnet_resnet50", {}, "resnet50", "backbone", 53, 53),
    ("deeplabv2", {"depth": 50}, "resnet50", "backbone", 53, 53),
    ("fcn_resnet50", {}, "resnet50", "backbone", 53, 53),
    ("deeplabv2", {}, "resnet101", "backbone", 104, 104),
    ("deeplabv3_resnet101", {}, "resnet101", "backbone", 104, 104),
    ("deeplabv3plus_resnet101", {}, "resnet101", "backbone", 104, 104),
    ("pspnet_resnet101", {}, "resnet101", "backbone", 104, 104),
    ("fcn_resnet101", {}, "resnet101", "backbone", 104, 104),
    ("hrnetv2_w18", {}, "hrnetv2_w18", "", None, None),
]


def _layers(module: nn.Module) -> tuple[list[nn.Conv2d], list[nn.BatchNorm2d]]:
    """The convolutions and batch norms in network order: a pairing that does not use the keys."""
    return ([m for m in module.modules() if isinstance(m, nn.Conv2d)],
            [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)])


def _assert_loaded(target: nn.Module, source: nn.Module, convs: int, norms: int) -> None:
    """The first ``convs`` convolutions and ``norms`` norms of ``target`` hold those of ``source``
    rounded to fp16: weights, biases and running statistics."""
    (target_convs, target_norms), (source_convs, source_norms) = _layers(target), _layers(source)
    assert len(target_convs) >= convs and len(source_convs) >= convs
    assert len(target_norms) >= norms and len(source_norms) >= norms
    pairs = [*zip(target_convs[:convs], source_convs), *zip(target_norms[:norms], source_norms)]
    for index, (mine, theirs) in enumerate(pairs):
        for (name, value), (_, expected) in zip(mine.state_dict().items(), theirs.state_dict().items(), strict=True):
            if expected.is_floating_point():
                expected = expected.half().float()
            assert value.dtype == expected.dtype and torch.equal(value, expected), f"layer {index}: {name}"


@pytest.mark.parametrize("spelling", ["pretrained_backbone", "pretrained"])
@pytest.mark.parametrize("name, options, encoder, where, convs, norms", LOADS,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o, *_ in LOADS])
def test_model_loads_the_course_encoder(shipped, spelling, name, options, encoder, where, convs, norms):
    pretext = shipped[1][encoder]
    model = models.create(name, width=WIDTH, **options, **{spelling: "course"})
    target = attrgetter(where)(model) if where else model
    if encoder == "hrnetv2_w18":  # the whole network but its last classifier convolution
        convs, norms = len(_layers(model)[0]) - 1, len(_layers(model)[1])
        assert not torch.equal(model.last_layer[3].weight, pretext.backbone.last_layer[3].weight.half().float())
    _assert_loaded(target, pretext.backbone, convs, norms)


def test_deeplabv1_decimates_the_pretrained_fc6_and_fc7_as_the_paper(shipped, monkeypatch):
    """``decimated_fc``: LargeFOV's 3x3 fc6 is VGG16's 7x7 fc6 at taps 0, 3, 6 with every fourth
    filter (Sec. 3.1), fc7 every fourth row and column; the convolutions load as without it, from
    one reading of the weights file."""
    vgg = shipped[1]["vgg16_bn"].backbone
    reads = []
    read = course.state_dict
    monkeypatch.setattr(course, "state_dict", lambda *args, **kwargs: reads.append(args) or read(*args, **kwargs))
    model = models.create("deeplabv1", width=WIDTH, batch_norm=True, pretrained="course", decimated_fc=True)
    assert reads == [("vgg16_bn", WIDTH)]
    _assert_loaded(model.backbone, vgg, 13, 13)
    fc6, fc7 = (layer.weight.half().float() for layer in (vgg.fc6[0], vgg.fc7[0]))  # as stored, in fp16
    b6, b7 = (layer.bias.half().float() for layer in (vgg.fc6[0], vgg.fc7[0]))
    mine6, mine7 = model.fc6[0], model.fc7[0]
    assert fc6.shape[0] == 4 * mine6.out_channels and tuple(mine6.weight.shape[2:]) == (3, 3)
    for out, channel, row, col in [(0, 0, 0, 0), (1, 5, 1, 2), (mine6.out_channels - 1, fc6.shape[1] - 1, 2, 2)]:
        assert mine6.weight[out, channel, row, col] == fc6[4 * out, channel, 3 * row, 3 * col]
    assert mine6.bias[2] == b6[8] and mine7.bias[3] == b7[12]
    assert mine7.weight[2, 7, 0, 0] == fc7[8, 28, 0, 0]
    torch.testing.assert_close(mine6.weight, fc6[::4, :, ::3, ::3], rtol=0, atol=0)
    torch.testing.assert_close(mine7.weight, fc7[::4, ::4], rtol=0, atol=0)
    fresh = models.create("deeplabv1", width=WIDTH, batch_norm=True, pretrained="course")
    assert not torch.equal(fresh.fc6[0].weight, mine6.weight)  # the default keeps them fresh
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 11, 64, 64)


def test_deeplabv1_with_decimated_fc_starts_from_the_profiles_encoder_in_a_chapters_plan():
    """What chapter 09's exercise trains: the plan's options ask for the decimated start, and the
    profile supplies the weights it decimates (the question is asked of a model on the meta device)."""
    from segedu import profiles
    from segedu.experiments.encoders import encoder_weights

    cpu = dataclasses.replace(profiles.PROFILES["cpu"], width=WIDTH)  # not get(): the tests force smoke
    assert encoder_weights("deeplabv1", cpu, {"batch_norm": True, "decimated_fc": True}) == {"pretrained_backbone": "course"}


def test_deeplabv1_decimated_fc_without_pretrained_weights_or_a_classifier_is_refused(tmp_path):
    with pytest.raises(SegeduError, match=r"^decimated_fc=True decimates the pretrained VGG16's fc6/fc7, "
                                          r"so it needs pretrained_backbone"):
        models.create("deeplabv1", width=WIDTH, batch_norm=True, decimated_fc=True)
    features_only = tmp_path / "vgg16_features.pt"  # a VGG16 file without its classifier
    with torch.device("meta"):
        keys = torchvision.models.vgg16().state_dict()
    torch.save({k: torch.zeros(v.shape) for k, v in keys.items() if k.startswith("features.")}, features_only)
    with pytest.raises(SegeduError, match=rf"^{features_only}: no VGG16 classifier \(classifier.0.weight missing\)"):
        models.create("deeplabv1", decimated_fc=True, pretrained_backbone=str(features_only))


#: models that must refuse the course's weights, and the start of what they say
REFUSALS = [
    ("fcn8s", {}, "VGG16 (vgg16) has no course weights; the course pretrains vgg16_bn, resnet50, resnet101, "
                  "hrnetv2_w18"),
    ("fcn32s", {}, "VGG16 (vgg16) has no course weights"),
    ("deeplabv1", {}, "VGG16 (vgg16) has no course weights"),
    ("dilatednet", {}, "VGG16 (vgg16) has no course weights"),
    ("deeplabv3plus_xception", {}, "DeepLabV3Plus has no pretrained backbone: torchvision ships no "
                                   "ImageNet Xception-65"),
    ("hrnetv2_w48", {}, "hrnetv2_w48 has no pretrained_backbone 'course'"),
    ("unet", {}, "UNet has no pretrained backbone: the paper trains it from scratch"),
    ("fcdensenet56", {}, "FCDenseNet has no pretrained backbone: the paper trains it from scratch"),
    (pretext.MODEL, {}, "the pretext network trains its encoder from scratch"),
    ("deeplabv3_resnet50", {"width": 0.25}, "no course weights for resnet50 at width 0.25 "),
]


@pytest.mark.parametrize("name, options, message", REFUSALS, ids=[f"{n}-{len(o)}" for n, o, _ in REFUSALS])
def test_model_without_course_weights_refuses_in_one_line(name, options, message, monkeypatch, tmp_path):
    monkeypatch.setattr(course, "WEIGHTS_DIR", tmp_path)  # whatever the package ships
    with pytest.raises(SegeduError) as caught:
        models.create(name, **{"width": WIDTH, **options}, pretrained="course")
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_timm_encoder_refuses_course_and_takes_imagenet_as_timms_weights(monkeypatch):
    timm = pytest.importorskip("timm", reason="the optional package timm is not installed")
    with pytest.raises(SegeduError, match=r"^timm encoder 'resnet18' has no course weights: .*use "
                                          r"pretrained_backbone=True for timm's ImageNet weights"):
        models.create("deeplabv3plus_timm", encoder="resnet18", pretrained="course")
    asked = []
    real = timm.create_model

    def create_model(name, **kwargs):  # records the request; builds without weights (no network here)
        asked.append(kwargs.get("pretrained"))
        return real(name, **{**kwargs, "pretrained": False})

    monkeypatch.setattr(timm, "create_model", create_model)
    models.create("deeplabv3plus_timm", encoder="resnet18", pretrained="imagenet")
    assert asked == [True]  # not a file called "imagenet"


def test_pretrained_and_pretrained_backbone_together_are_refused():
    with pytest.raises(SegeduError, match="give pretrained or pretrained_backbone, not both"):
        models.create("segnet", width=WIDTH, pretrained="course", pretrained_backbone="course")


# --- integrity -------------------------------------------------------------------------------------

@pytest.fixture
def copy(shipped, tmp_path, monkeypatch):
    """A copy of the weights folder that a test may damage, and that models.create reads."""
    folder = tmp_path / "weights"
    shutil.copytree(shipped[0], folder)
    monkeypatch.setattr(course, "WEIGHTS_DIR", folder)
    return folder


def test_a_changed_byte_is_a_sha256_mismatch(copy):
    path = copy / "resnet50-w0.125.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    card = course.cards()["resnet50-w0.125.pt"]
    expected = rf"^{path}: sha256 {hashlib.sha256(data).hexdigest()[:12]}\.\.\. differs from its card's " \
               rf"{card['sha256'][:12]}\.\.\.; the file is damaged or was replaced"
    for load in (lambda: course.state_dict("resnet50", WIDTH),
                 lambda: models.create("deeplabv3_resnet50", width=WIDTH, pretrained="course")):
        with pytest.raises(SegeduError, match=expected) as caught:
            load()
        assert "\n" not in str(caught.value) and "segedu pretrain --encoder resnet50 --width 0.125" in str(caught.value)
    assert course.state_dict("resnet101", WIDTH)  # the other files still load


def test_a_missing_width_names_the_widths_that_exist_and_the_command(copy):
    _export(_randomised("resnet50", width=0.25), copy, width=0.25)
    with pytest.raises(SegeduError) as caught:
        models.create("pspnet_resnet50", width=0.5, pretrained="course")
    assert str(caught.value) == (f"no course weights for resnet50 at width 0.5 ({copy / 'resnet50-w0.5.pt'}); they "
                                 "exist at width 0.125, 0.25. Make them with: segedu pretrain --encoder resnet50 "
                                 "--width 0.5")
    assert models.create("pspnet_resnet50", width=0.25, pretrained="course")  # the new width loads


def test_no_card_and_a_card_without_its_file_are_clear_errors(copy, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SegeduError, match=r"no course weights for hrnetv2_w18 at width 0.125 .*; none ship for "
                                          r"it yet\. Make them with: segedu pretrain --encoder hrnetv2_w18 "
                                          r"--width 0.125$"):
        course.state_dict("hrnetv2_w18", WIDTH, empty)
    os.remove(copy / "hrnetv2_w18-w0.125.pt")
    with pytest.raises(SegeduError, match=r"hrnetv2_w18-w0.125.pt: the course weights its card lists are missing; "
                                          r"reinstall segedu or run segedu pretrain --encoder hrnetv2_w18"):
        models.create("hrnetv2_w18", width=WIDTH, pretrained="course")


def test_an_unknown_encoder_is_refused():
    with pytest.raises(SegeduError, match=r"^no course weights for the encoder 'vgg19': the course pretrains "
                                          r"vgg16_bn, resnet50, resnet101, hrnetv2_w18\.$"):
        course.state_dict("vgg19", WIDTH)
    with pytest.raises(SegeduError, match=r"^the pretext has no encoder 'vgg19'; choose one of vgg16_bn"):
        models.create(pretext.MODEL, encoder="vgg19", width=WIDTH)


# --- torchvision's ImageNet weights through the same option, offline ------------------------------

def test_imagenet_loads_torchvisions_file_from_the_hub_cache_without_network(offline):
    """``pretrained="imagenet"``: the file torchvision's weights URL names, put in TORCH_HOME's cache."""
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    torch.manual_seed(0)
    state = torchvision.models.resnet50(weights=None).state_dict()
    cached = offline / os.path.basename(weights.url)
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    model = models.create("deeplabv3_resnet50", pretrained="imagenet")
    loaded = model.backbone.state_dict()
    for key in ("conv1.weight", "layer4.2.conv3.weight", "layer3.5.bn2.running_var"):
        assert torch.equal(loaded[key], state[key]), key
    with pytest.raises(SegeduError, match=r"pretrained_backbone needs width=1\.0"):
        models.create("deeplabv3_resnet50", width=WIDTH, pretrained="imagenet")


def test_the_shipped_weights_load_by_their_sha256_into_every_model_of_their_encoder(monkeypatch):
    """What the package ships (segedu/weights): each card's file hashes to its sha256, and the
    models of that encoder start from exactly those weights (fp16 -> float32)."""
    monkeypatch.setattr(course, "WEIGHTS_DIR", PACKAGE_WEIGHTS)  # not the autouse fixture's folder
    shipped = course.cards(course.WEIGHTS_DIR)
    assert shipped, "the package ships no course weights"
    # (model, its options, a key of the model, the key of the shipped file it must equal)
    users = {"resnet50": [("deeplabv3plus_resnet50", {}, "backbone.conv1.weight", "conv1.weight"),
                          ("pspnet_resnet50", {}, "backbone.layer4.2.conv3.weight", "layer4.2.conv3.weight")],
             "resnet101": [("deeplabv3_resnet101", {}, "backbone.conv1.weight", "conv1.weight")],
             "vgg16_bn": [("fcn8s", {"batch_norm": True}, "backbone.features.0.weight", "features.0.weight"),
                          ("segnet", {}, "encoder.features.0.weight", "features.0.weight"),
                          ("deeplabv1", {"batch_norm": True}, "backbone.features.40.weight", "features.40.weight")],
             "hrnetv2_w18": [("hrnetv2_w18", {}, "conv1.weight", "conv1.weight")]}
    for name, card in shipped.items():
        path = course.WEIGHTS_DIR / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == card["sha256"]
        weights = torch.load(path, map_location="cpu", weights_only=True)
        assert all(v.dtype == torch.float16 for v in weights.values() if v.is_floating_point())
        for model_name, options, model_key, weight_key in users[card["encoder"]]:
            model = models.create(model_name, width=card["width"], pretrained="course", **options)
            torch.testing.assert_close(model.state_dict()[model_key], weights[weight_key].float())


def test_the_shipped_weights_recipe_is_what_the_documented_command_runs():
    """``segedu pretrain --encoder E --width W`` regenerates a shipped file only if its default recipe
    is the one on the file's card (and the card's corpus is the one the command draws: the pinned
    generator version, whatever version the book's data is drawn by now)."""
    assert course.cards(PACKAGE_WEIGHTS), "the package ships no course weights"
    for name, card in course.cards(PACKAGE_WEIGHTS).items():
        recipe = pretrain.recipe_for(card["encoder"], width=card["width"])
        assert dataclasses.asdict(recipe) == card["recipe"], name
        assert card["corpus"] == {"generator_version": pretrain.CORPUS_VERSION, "seed": pretrain.CORPUS_SEED,
                                  "images": recipe.images, "size": recipe.size}, name
        assert card["steps"] == recipe.steps, name
