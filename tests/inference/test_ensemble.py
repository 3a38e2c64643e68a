"""Ensembles: one member is its softmax, two are the mean of softmaxes, probabilities not logits, checkpoint checks."""
import dataclasses
import math

import pytest
import torch
from torch import nn

from segedu import models
from segedu.engine import checkpoint
from segedu.engine.config import TrainConfig
from segedu.errors import SegeduError
from segedu.inference.ensemble import Member, ensemble_probabilities, load_member, load_members
from segedu.inference.predict import predict_logits


def _images(b=2, h=12, w=15, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _conv_model(seed, classes=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, classes, 3, padding=1)).eval()


class Constant(nn.Module):
    """The same logits at every pixel, whatever the image."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.logits.view(1, -1, 1, 1).expand(x.shape[0], -1, *x.shape[-2:])


def _softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def test_one_member_is_its_softmax():
    model, images = _conv_model(0), _images()
    got = ensemble_probabilities([(model, 8)], images)
    assert torch.equal(got, predict_logits(model, images, 8).softmax(1))


def test_two_members_with_their_own_sizes_average_their_softmaxes():
    a, b, images = _conv_model(0), _conv_model(1), _images()
    got = ensemble_probabilities([Member(a, 8), Member(b, 20)], images)
    want = (predict_logits(a, images, 8).softmax(1) + predict_logits(b, images, 20).softmax(1)) / 2
    torch.testing.assert_close(got, want, atol=1e-7, rtol=0)
    # by hand on constant models: [1, 0, 2] and [0, 3, 0]
    got = ensemble_probabilities([Constant([1.0, 0.0, 2.0]), Constant([0.0, 3.0, 0.0])], images)
    want = [(p + q) / 2 for p, q in zip(_softmax([1, 0, 2]), _softmax([0, 3, 0]))]
    assert got[1, :, 5, 7].tolist() == pytest.approx(want, abs=1e-6)
    torch.testing.assert_close(got.sum(1), torch.ones(2, 12, 15), atol=1e-6, rtol=0)


def test_probabilities_not_logits_are_averaged():
    """A is torn between classes 0 and 2 but sure it is not 1 (huge negative logit); B is sure of class 1.

    The mean logits pick class 0 (A's large logit gap outweighs B), the mean probabilities class 1:
    A's vote is worth at most 1, and it splits it between 0 and 2.
    """
    a, b = [0.0, -20.0, -0.1], [0.0, 5.0, 0.0]
    mean_logits = [(x + y) / 2 for x, y in zip(a, b)]
    mean_probs = [(p + q) / 2 for p, q in zip(_softmax(a), _softmax(b))]
    assert max(range(3), key=mean_logits.__getitem__) == 0 and max(range(3), key=mean_probs.__getitem__) == 1
    got = ensemble_probabilities([Constant(a), Constant(b)], _images())
    assert got[0, :, 0, 0].tolist() == pytest.approx(mean_probs, abs=1e-6)
    assert (got.argmax(1) == 1).all()


def test_members_predicting_different_class_counts_are_refused():
    with pytest.raises(SegeduError, match="member 0 with member 1: they predict 3 and 4 classes"):
        ensemble_probabilities([Constant([0.0, 1, 2]), Constant([0.0, 1, 2, 3])], _images())
    with pytest.raises(SegeduError, match="at least one member"):
        ensemble_probabilities([], _images())


def _checkpoint(path, num_classes, image_size=16, names=None):
    config = TrainConfig(model="fcn32s", model_options={"width": 0.125}, image_size=image_size, device="cpu")
    model = models.create("fcn32s", num_classes=num_classes, width=0.125)
    checkpoint.save(path, {"model": model.state_dict(), "model_name": "fcn32s", "num_classes": num_classes,
                           "class_names": names or [f"c{i}" for i in range(num_classes)],
                           "config": dataclasses.asdict(config)})
    return path


def test_checkpoints_with_different_class_counts_are_refused_naming_both(tmp_path):
    three = _checkpoint(tmp_path / "three.pt", 3)
    four = _checkpoint(tmp_path / "four.pt", 4)
    with pytest.raises(SegeduError) as err:
        load_members([three, four], "cpu")
    assert str(three) in str(err.value) and str(four) in str(err.value) and "3 classes" in str(err.value)
    other_names = _checkpoint(tmp_path / "renamed.pt", 3, names=["x", "y", "z"])
    with pytest.raises(SegeduError, match="class names differ"):
        load_members([three, other_names], "cpu")


def test_load_member_runs_the_checkpoint_at_its_training_size(tmp_path):
    path = _checkpoint(tmp_path / "m.pt", 3, image_size=24)
    member = load_member(path, "cpu")
    assert member.size == 24 and member.num_classes == 3 and member.name == str(path)
    assert member.amp_dtype is None and not member.model.training
    images = _images(b=1, h=20, w=28)
    got = ensemble_probabilities(load_members([path, path], "cpu"), images)
    torch.testing.assert_close(got, predict_logits(member.model, images, 24).softmax(1), atol=1e-6, rtol=0)
