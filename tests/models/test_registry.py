"""The model registry and the contract every registered model keeps (checked on all of them)."""
import pytest
import torch

from segedu import models
from segedu.errors import SegeduError
from segedu.models import backbones, course

from model_checks import registered_models

TINY = 0.125  # width that keeps every model a few hundred kilobytes


def test_available_lists_the_fcn_family_sorted():
    names = models.available()
    assert {"fcn32s", "fcn16s", "fcn8s", "fcn_resnet50", "fcn_resnet101"} <= set(names)
    assert names == sorted(names)


def test_create_builds_the_registered_model_case_insensitively():
    model = models.create("FCN8s", num_classes=5, width=TINY)
    assert isinstance(model, models.fcn.FCN8s)
    assert model.score_fr.out_channels == 5


def test_a_typo_names_the_closest_model_and_lists_all():
    with pytest.raises(SegeduError) as error:
        models.create("fcn8")
    message = str(error.value)
    assert "did you mean 'fcn8s'" in message
    assert all(name in message for name in models.available())


def test_an_unknown_option_lists_the_builders_options():
    with pytest.raises(SegeduError, match=r"no option 'widht' \(did you mean 'width'\?\).*pad100"):
        models.create("fcn8s", widht=0.5)


@pytest.mark.parametrize("options", [{"num_classes": 0}, {"num_classes": 2.5}, {"width": 0}])
def test_bad_sizes_are_refused(options):
    with pytest.raises(SegeduError):
        models.create("fcn32s", **options)


def test_names_register_once():
    with pytest.raises(ValueError):
        models.register("fcn8s")


def test_main_output_reads_both_output_forms():
    logits = torch.zeros(1, 2, 3, 3)
    assert models.main_output(logits) is logits
    assert models.main_output({"out": logits, "aux": logits + 1}) is logits


@pytest.mark.parametrize("name", registered_models())
def test_every_model_returns_logits_at_any_input_size(name):
    """Eval: a tensor at the input size. Training: the same, or {"out", "aux"} with an aux head."""
    torch.manual_seed(0)
    images = torch.randn(2, 3, 37, 45)
    model = models.create(name, num_classes=4, width=TINY).eval()
    with torch.no_grad():
        assert model(images).shape == (2, 4, 37, 45)

    with_aux = "aux" in models.options_of(name)
    model = models.create(name, num_classes=4, width=TINY, **({"aux": True} if with_aux else {}))
    output = model.train()(images)
    if with_aux:
        assert set(output) == {"out", "aux"}
        assert output["out"].shape == output["aux"].shape == (2, 4, 37, 45)
    else:
        assert isinstance(output, torch.Tensor) and output.shape == (2, 4, 37, 45)


@pytest.mark.parametrize("name", registered_models())
def test_every_model_runs_on_the_device_of_its_input(name):
    """Moved to another device (here "meta", which has no data), nothing in forward stays behind on
    the CPU: the model is device-agnostic, as on a GPU."""
    model = models.create(name, num_classes=4, width=TINY).eval().to("meta")
    assert model(torch.empty(1, 3, 37, 45, device="meta")).shape == (1, 4, 37, 45)


def test_every_model_takes_a_width_multiplier():
    assert all("width" in models.options_of(name) for name in models.available())


def test_options_of_lists_a_builders_keyword_options():
    assert models.options_of("fcn8s") == ["width", "pad100", "batch_norm", "pretrained_backbone"]


# --- pretrained weights: the registry takes the option, the model loads or refuses -----------------

@pytest.mark.parametrize("name, says", [
    ("unet", r"^UNet has no pretrained backbone: the paper trains it from scratch \(Ronneberger et al\. 2015\)"),
    ("fcdensenet56", r"^FCDenseNet has no pretrained backbone: the paper trains it from scratch \(Jégou et al\. 2017"),
    ("deeplabv3plus_xception", r"^DeepLabV3Plus has no pretrained backbone: torchvision ships no ImageNet Xception-65"),
])
def test_a_model_without_pretrained_weights_says_why(name, says):
    with pytest.raises(SegeduError, match=says):
        models.create(name, width=TINY, pretrained_backbone=True)
    models.create(name, width=TINY, pretrained_backbone=False)  # the book's from-scratch spelling builds


def test_the_registry_loads_the_course_encoder_after_building():
    # the package's own course weights: VGG-16 with batch norm at width 0.25
    assert ("vgg16_bn", 0.25) in course.available()
    loaded = models.create("fcn8s", width=0.25, batch_norm=True, pretrained_backbone="course").encoder
    fresh = models.create("fcn8s", width=0.25, batch_norm=True).encoder
    initial = fresh.features[0].weight.clone()
    backbones.load_imagenet(fresh, "course")
    assert not torch.equal(initial, fresh.features[0].weight)  # something was loaded
    expected = fresh.state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(value, expected[key]) for key, value in loaded.state_dict().items())


def test_every_registered_model_lists_pretrained_backbone_once():
    assert models.options_of("segnet") == ["width", "pretrained_backbone"]
    # a builder that declares it (timm loads its own weights) keeps it where it declares it
    assert models.options_of("deeplabv3plus_timm").count("pretrained_backbone") == 1
    assert all("pretrained_backbone" in models.options_of(name) for name in models.available())


@pytest.mark.parametrize("name, options, course_encoder, imagenet", [
    ("fcn8s", {}, None, True),  # VGG-16 without batch norm: the course pretrains only the batch-norm one
    ("fcn8s", {"batch_norm": True}, "vgg16_bn", True),
    ("deeplabv2", {}, "resnet101", True),
    ("deeplabv2", {"depth": 50}, "resnet50", True),
    ("unet", {}, None, False),
    ("hrnetv2_w18", {}, "hrnetv2_w18", False),  # the course's own HRNet; torchvision has none
    ("hrnetv2_w48", {}, None, False),
    ("deeplabv3plus_xception", {}, None, False),
])
def test_a_model_says_which_weights_it_starts_from(name, options, course_encoder, imagenet):
    with torch.device("meta"):
        model = models.create(name, **options)
    assert model.course_encoder == course_encoder
    assert model.imagenet_weights_available is imagenet


def test_a_timm_model_has_timms_imagenet_weights_and_no_course_ones():
    pytest.importorskip("timm", reason="the optional package timm is not installed")
    with torch.device("meta"):
        model = models.create("deeplabv3plus_timm", encoder="resnet18")
    assert model.imagenet_weights_available and model.course_encoder is None
