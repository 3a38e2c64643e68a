"""segedu.inference.cleansing: the ranking finds the known corruption; precision at k; relabelling."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segedu.data import IGNORE_INDEX, dataset, noise, synth
from segedu.data.classes import CLASSES
from segedu.inference import cleansing
from segedu.errors import SegeduError
from segedu.inference.ensemble import Member


class Oracle(torch.nn.Module):
    """A model that knows the clean labels: it looks each input image up among the clean training
    images and returns its true classes as logits. The input arrives normalised (an affine map per
    channel), so the match is the image whose pixels correlate perfectly with it."""

    def __init__(self, data_dir):
        super().__init__()
        clean = dataset.CocoSegmentation(data_dir, "train")
        self.images = torch.stack([clean[i][0] for i in range(len(clean))])
        self.masks = torch.stack([clean[i][1] for i in range(len(clean))])
        self.anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)  # gives the model a device

    def forward(self, x):
        def standard(t):  # per channel: zero mean, unit norm
            t = t.flatten(-2) - t.flatten(-2).mean(-1, keepdim=True)
            return t / t.norm(dim=-1, keepdim=True)

        correlation = torch.einsum("ncp,bcp->bnc", standard(self.images), standard(x)).mean(-1)
        assert (correlation.max(1).values > 0.9999).all()
        found = correlation.argmax(1)
        labels = self.masks[found].clamp_max(len(CLASSES) - 1)
        return 20.0 * torch.nn.functional.one_hot(labels, len(CLASSES)).permute(0, 3, 1, 2).float()


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    """A synth dataset with flips in half of the training images."""
    summary = synth.generate(tmp_path_factory.mktemp("flat") / "data", n_images=30, size=48, seed=4,
                             noise=noise.NoiseSpec(rate=0.5, kinds=("flip",), objects=1.0))
    return summary.path


def oracle(data_dir):
    return Member(Oracle(data_dir), None, name="oracle", num_classes=len(CLASSES), class_names=CLASSES)


def test_precision_at_k_hand_cases():
    ranking = [5, 3, 9, 1, 7]
    assert cleansing.precision_at_k(ranking, {3, 7}, 1) == 0.0
    assert cleansing.precision_at_k(ranking, {3, 7}, 2) == 0.5
    assert cleansing.precision_curve(ranking, [3, 7], [4, 5]) == {4: 0.25, 5: 0.4}
    with pytest.raises(SegeduError, match="0 < k <= 5"):
        cleansing.precision_at_k(ranking, {3}, 6)


def test_rank_orders_by_the_score_and_breaks_ties_by_id():
    scores = [cleansing.ImageScore(i, f"{i}.jpg", loss, dis, 10)
              for i, loss, dis in [(1, 0.5, 0.1), (2, 0.9, 0.0), (3, 0.5, 0.3)]]
    assert cleansing.rank(scores, "loss") == [2, 1, 3]
    assert cleansing.rank(scores, "disagreement") == [3, 1, 2]
    with pytest.raises(SegeduError, match="rank by one of"):
        cleansing.rank(scores, "confidence")


def test_a_model_that_knows_the_truth_ranks_every_corrupted_image_first(flat):
    report = noise.read_report(flat / "train_noisy.json")
    corrupted = report.corrupted_images
    # flips that changed no visible pixel (an object hidden under another) cannot be found
    visible = [i for i in corrupted if report.changed[i] > 0]
    scores = cleansing.image_scores(oracle(flat), flat, flat / "train_noisy.json", device="cpu")
    file_order = [img["id"] for img in json.loads((flat / "train.json").read_text())["images"]]
    assert [s.image_id for s in scores] == file_order
    for by in cleansing.SCORES:
        ranking = cleansing.rank(scores, by)
        assert cleansing.precision_at_k(ranking, visible, len(visible)) == 1.0
    # disagreement measures the changed pixels: against the clean labels the oracle is right almost everywhere
    clean = {s.image_id: s.disagreement for s in cleansing.image_scores(oracle(flat), flat, "train", device="cpu")}
    noisy = {s.image_id: s for s in scores}
    for i in visible:
        assert noisy[i].disagreement == pytest.approx(report.changed[i] * 48 * 48 / noisy[i].pixels)
    assert max(clean.values()) == 0.0


def test_relabel_with_a_confident_oracle_restores_the_clean_labels(flat, tmp_path):
    out = tmp_path / "relabelled.json"
    summary = cleansing.relabel(oracle(flat), flat, flat / "train_noisy.json", out, keep_fraction=1.0)
    relabelled = dataset.CocoSegmentation(flat, str(out))
    clean = dataset.CocoSegmentation(flat, "train")
    noisy = dataset.CocoSegmentation(flat, str(flat / "train_noisy.json"))

    def wrong(data):
        return np.mean([(data[i][1] != clean[i][1]).float().mean().item() for i in range(len(clean))])

    assert wrong(noisy) > 0.02 and wrong(relabelled) == 0.0
    assert summary["changed_fraction"] == pytest.approx(wrong(noisy))
    with pytest.raises(SegeduError, match="keep_fraction must be in"):
        cleansing.relabel(oracle(flat), flat, flat / "train_noisy.json", tmp_path / "x.json", keep_fraction=0.0)
    assert not (tmp_path / "x.json").exists()
    assert all((relabelled[i][1] != IGNORE_INDEX).all() for i in range(3))


def test_cleansing_needs_labels(flat):
    with pytest.raises(SegeduError, match="has no annotations"):
        cleansing.image_scores(oracle(flat), flat, "test", device="cpu")
