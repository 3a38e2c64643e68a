"""What a class-presence head learned: its probabilities against the truth, per class."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segedu import models
from segedu.data import IGNORE_INDEX, dataset
from segedu.errors import SegeduError
from segedu.inference.ensemble import Member
from segedu.inference.presence import class_calibration, presence_scores
from segedu.models.class_head import ClassPresenceModel


@pytest.fixture(scope="module")
def head_model():
    torch.manual_seed(0)
    net = models.create("fcn32s", num_classes=11, width=0.125)
    return ClassPresenceModel(net, 11, suppress_threshold=0.5).eval()


@pytest.mark.parametrize("size", [None, 48])
def test_presence_scores_match_the_head_and_the_masks(tiny_data, head_model, size):
    data = dataset.CocoSegmentation(tiny_data, "val")
    probabilities, present = presence_scores(Member(head_model, size=size), data, batch_size=3)
    assert probabilities.shape == present.shape == (len(data), 11)
    for i in range(len(data)):
        image, mask = data[i]
        # the truth, counted by hand: every labelled class of the mask, void excluded
        labelled = mask[mask != IGNORE_INDEX].numpy().ravel()
        assert present[i].tolist() == (np.bincount(labelled, minlength=11) > 0).tolist()
        # the head, run by hand: ImageNet-normalised image at the member's input size
        x = (image[None] - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
        if size is not None:
            h, w = image.shape[-2:]
            target = (size, round(w * size / h)) if h <= w else (round(h * size / w), size)
            x = F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=True)
        with torch.no_grad():
            expected = head_model.presence(x)[0].numpy()
        np.testing.assert_allclose(probabilities[i], expected, rtol=1e-5, atol=1e-6)


def test_class_calibration_by_hand():
    probabilities = np.array([[0.9, 0.2, 0.6],
                              [0.8, 0.4, 0.1],
                              [0.7, 0.1, 0.3],
                              [0.6, 0.3, 0.5]])
    present = np.array([[1, 1, 0],
                        [1, 0, 0],
                        [1, 0, 0],
                        [1, 1, 0]], dtype=bool)
    rows = class_calibration(probabilities, present, threshold=0.25)
    # class 0: in every image, so no mean over absent images
    assert rows[0].prevalence == 1.0 and rows[0].mean_present == pytest.approx(0.75) and math.isnan(rows[0].mean_absent)
    assert rows[0].kept == 1.0
    # class 1: in images 0 and 3 (p 0.2 and 0.3), absent from 1 and 2 (p 0.4 and 0.1): a head that
    # ranks absent images as high as present ones; at 0.25 it keeps the class in one image of two
    assert rows[1].prevalence == 0.5
    assert rows[1].mean_present == pytest.approx(0.25) and rows[1].mean_absent == pytest.approx(0.25)
    assert rows[1].kept == 0.5
    # class 2: in no image
    assert rows[2].prevalence == 0.0 and math.isnan(rows[2].mean_present) and math.isnan(rows[2].kept)
    assert rows[2].mean_absent == pytest.approx(0.375)


def test_class_calibration_refuses_mismatched_arrays():
    with pytest.raises(SegeduError, match=r"two \(N, C\) arrays"):
        class_calibration(np.zeros((3, 4)), np.zeros((3, 5), dtype=bool), threshold=0.5)


def test_presence_scores_needs_a_head(tiny_data):
    data = dataset.CocoSegmentation(tiny_data, "val")
    with pytest.raises(SegeduError, match="class-presence head"):
        presence_scores(models.create("fcn32s", num_classes=11, width=0.125).eval(), data)


def test_the_predictor_runs_the_head_in_the_members_autocast_dtype(tiny_data, head_model):
    data = dataset.CocoSegmentation(tiny_data, "val")
    full, _ = presence_scores(Member(head_model, size=48), data)
    half, _ = presence_scores(Member(head_model, size=48, amp_dtype=torch.bfloat16), data)
    assert not np.array_equal(full, half)  # bf16 rounding reaches the probabilities ...
    np.testing.assert_allclose(full, half, atol=0.02)  # ... and changes them only by its rounding
