"""The class-presence head: targets, outputs for every model, suppression, training and reloading."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segedu import models
from segedu.data import IGNORE_INDEX
from segedu.errors import SegeduError
from segedu.models.class_head import ClassPresenceModel, EncoderTap, encoder_module, presence_targets

from model_checks import registered_models

SIZE = 32


def test_presence_targets_by_hand():
    masks = torch.tensor([
        [[0, 2, 2], [IGNORE_INDEX, 2, 0]],                        # classes 0 and 2
        [[IGNORE_INDEX, IGNORE_INDEX, 3], [3, 3, IGNORE_INDEX]],  # class 3 only; void is no class
        [[IGNORE_INDEX] * 3, [IGNORE_INDEX] * 3],                 # nothing labelled
    ])
    assert presence_targets(masks, num_classes=4).tolist() == [[1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert presence_targets(masks, num_classes=4).dtype == torch.float32
    # MixUp's soft targets (B, C, H, W): a class is present where any pixel gives it a positive share
    soft = torch.zeros(1, 3, 1, 2)
    soft[0, :, 0, 0] = torch.tensor([0.7, 0.3, 0.0])
    soft[0, :, 0, 1] = 0.0  # an ignored pixel: all-zero vector
    assert presence_targets(soft, num_classes=3).tolist() == [[1, 1, 0]]


def build(name: str, **options) -> nn.Module:
    return models.create(name, num_classes=11, width=0.125, **options)


@pytest.mark.parametrize("name", registered_models())
def test_every_model_gets_a_head(name):
    torch.manual_seed(0)
    model = ClassPresenceModel(build(name), num_classes=11)
    x = torch.randn(2, 3, 64, 64)
    model.train()
    out = model(x)
    assert set(out) == {"out", "presence"}
    assert out["out"].shape == (2, 11, 64, 64) and out["presence"].shape == (2, 11)
    model.eval()
    with torch.no_grad():
        logits = model(x[:1])
        assert torch.equal(logits, model.model(x[:1]))  # no threshold: the wrapped model's logits exactly
        assert model.presence(x[:1]).shape == (1, 11)


def test_presence_is_the_head_on_the_pooled_deepest_map():
    torch.manual_seed(0)
    wrapped = build("fcn8s").eval()
    model = ClassPresenceModel(wrapped, num_classes=11).eval()
    assert encoder_module(wrapped) == EncoderTap("backbone", wrapped.backbone.channels["fc7"], "fc7")
    x = torch.randn(1, 3, 64, 64)  # a multiple of 32: the FCN pads nothing
    with torch.no_grad():
        fc7 = wrapped.backbone(x)["fc7"]
        by_hand = torch.sigmoid(fc7.mean(dim=(2, 3)) @ model.head.weight.T + model.head.bias)
        assert torch.allclose(model.presence(x), by_hand, atol=1e-6)


def test_aux_output_is_kept_in_training():
    model = ClassPresenceModel(build("fcn_resnet50", aux=True), num_classes=11).train()
    out = model(torch.randn(2, 3, 32, 32))
    assert set(out) == {"out", "aux", "presence"} and out["aux"].shape == (2, 11, 32, 32)


def test_unknown_family_is_refused_with_the_way_out():
    with pytest.raises(SegeduError, match="does not know Conv2d.*tap=EncoderTap"):
        ClassPresenceModel(nn.Conv2d(3, 11, 1), num_classes=11)
    with pytest.raises(SegeduError, match="suppress_threshold"):
        ClassPresenceModel(build("fcn32s"), num_classes=11, suppress_threshold=1.5)


class Stub(nn.Module):
    """Fixed logits (B, 4, H, W); its ``encoder`` is what the head reads."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, 5, 1)
        self.register_buffer("logits", logits)

    def forward(self, x):
        self.encoder(x)
        return self.logits.expand(x.shape[0], -1, -1, -1).clone()


def stub_model(threshold):
    torch.manual_seed(1)
    logits = torch.randn(1, 4, 8, 8) * 3
    model = ClassPresenceModel(Stub(logits), num_classes=4, suppress_threshold=threshold, tap=EncoderTap("encoder", 5))
    with torch.no_grad():
        model.head.weight.zero_()
        # presence probabilities sigmoid(bias): background and class 2 "absent", classes 1 and 3 present
        model.head.bias.copy_(torch.tensor([-20.0, 20.0, -20.0, 20.0]))
    return model.eval(), logits


def test_suppressed_class_never_wins_and_background_is_never_suppressed():
    model, logits = stub_model(0.5)
    before = logits.argmax(1)
    assert (before == 2).sum() > 5 and (before == 0).sum() > 5  # the case is not trivial
    with torch.no_grad():
        after = model(torch.zeros(2, 3, 8, 8)).argmax(1)
        assert torch.allclose(model.presence(torch.zeros(1, 3, 8, 8)),
                              torch.sigmoid(torch.tensor([[-20.0, 20.0, -20.0, 20.0]])))
    assert not (after == 2).any()
    # by hand: the arg-max over classes 0, 1, 3 -- the background stays a candidate although its head says absent
    others = logits.clone()
    others[:, 2] = -torch.inf
    assert torch.equal(after, others.argmax(1).expand(2, -1, -1))
    assert ((after == 0) == (others.argmax(1) == 0)).all() and (after == 0).sum() >= (before == 0).sum()


def test_no_threshold_returns_the_wrapped_output_exactly():
    model, logits = stub_model(None)
    with torch.no_grad():
        assert torch.equal(model(torch.zeros(1, 3, 8, 8)), logits)
    model.train()
    out = model(torch.zeros(1, 3, 8, 8))
    assert torch.equal(out["out"], logits) and out["presence"].shape == (1, 4)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from segedu.data import synth

    out = tmp_path_factory.mktemp("class_head") / "data"
    synth.generate(out, n_images=20, size=SIZE, seed=4, workers=1)
    return out


def config_for(data, tmp_path, **changes):
    from segedu.engine import TrainConfig

    values = dict(model="fcn32s", model_options={"width": 0.125}, data_dir=str(data), profile="smoke",
                  image_size=SIZE, epochs=1, max_steps=2, batch_size=4, num_workers=0, device="cpu",
                  out=str(tmp_path / "run"), class_head=0.5)
    return TrainConfig(**{**values, **changes})


def test_training_saves_and_reloads_the_head(data, tmp_path):
    from segedu.engine import load_model, train

    trainer = train(config_for(data, tmp_path, suppress_threshold=0.5))
    assert isinstance(trainer.model, ClassPresenceModel) and trainer.step == 2
    model, config, _ = load_model(tmp_path / "run", "cpu")
    assert isinstance(model, ClassPresenceModel) and model.suppress_threshold == config.suppress_threshold == 0.5
    x = torch.randn(2, 3, SIZE, SIZE)
    trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), trainer.model(x))
        assert torch.equal(model.presence(x), trainer.model.presence(x))


def test_loss_is_segmentation_loss_plus_weighted_presence_bce(data, tmp_path):
    from segedu.engine import Trainer
    from segedu.inference.predict import normalize

    trainer = Trainer(config_for(data, tmp_path, model="fcn_resnet50", model_options={"width": 0.125, "aux": True}))
    images, masks = next(iter(trainer._train_loader(0)))
    trainer.model.train()
    output = trainer.model(normalize(images))
    targets = torch.zeros(len(masks), 11)
    for b, mask in enumerate(masks):
        for c in mask.unique().tolist():
            if c != IGNORE_INDEX:
                targets[b, c] = 1.0
    by_hand = (F.cross_entropy(output["out"], masks, ignore_index=IGNORE_INDEX)
               + 0.4 * F.cross_entropy(output["aux"], masks, ignore_index=IGNORE_INDEX)
               + 0.5 * F.binary_cross_entropy_with_logits(output["presence"], targets))
    assert torch.allclose(trainer._loss(output, masks), by_hand, rtol=1e-5)
    assert not torch.allclose(trainer._loss(output, masks), by_hand - 0.5 * F.binary_cross_entropy_with_logits(
        output["presence"], targets), rtol=1e-5)  # the presence term is there, not negligible


def test_config_checks_and_cli_flags():
    from segedu.cli import build_parser
    from segedu.engine import TrainConfig

    with pytest.raises(SegeduError, match="needs the class-presence head"):
        TrainConfig(profile="smoke", suppress_threshold=0.5).resolved()
    with pytest.raises(SegeduError, match="class_head"):
        TrainConfig(profile="smoke", class_head=-1.0).resolved()
    args = build_parser().parse_args(["train", "--class-head", "0.5", "--suppress-threshold", "0.3"])
    assert (args.class_head, args.suppress_threshold) == (0.5, 0.3)
