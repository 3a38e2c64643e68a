"""What a class-presence head has learned: its probabilities against the classes really present.

A :class:`~segedu.models.class_head.ClassPresenceModel` suppresses a class whose presence
probability is below a threshold. That is only as good as the head's ranking of images: a head
that gives a class about the same probability whether or not the class is in the image has
learned the class's prevalence (how often it occurs), not the image, and a threshold above that
prevalence then removes the class from every image. :func:`presence_scores` collects the head's
probabilities and the truth over a labelled dataset, and :func:`class_calibration` summarises them
per class, so the two cases can be told apart before a threshold is chosen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.classes import IGNORE_INDEX
from ..data.dataset import in_order
from ..errors import SegeduError
from ..models.class_head import presence_targets
from .ensemble import Member
from .predictor import Predictor

__all__ = ["ClassCalibration", "class_calibration", "presence_scores"]


def presence_scores(member: Member, data, batch_size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities, present)``, both (N, C) over the N images of the labelled dataset ``data`` in
    its order: the head's presence probabilities, and whether each class has a pixel in the image's
    mask (ignored pixels excluded, :func:`~segedu.models.class_head.presence_targets`).

    Each image reaches the model as a prediction does (:meth:`Predictor.presence
    <segedu.inference.predictor.Predictor.presence>`): normalised, resized to the member's input
    ``size`` and run in its autocast dtype."""
    def per_image():
        for indices, values, masks in Predictor(member, batch_size=batch_size).batches(data, presence=True):
            truth = presence_targets(masks, values.shape[1], IGNORE_INDEX).bool()
            yield from zip(indices, zip(values.cpu().numpy(), truth.cpu().numpy()))

    probabilities, present = zip(*(pair for _, pair in in_order(per_image())))
    return np.stack(probabilities), np.stack(present)


@dataclass(frozen=True)
class ClassCalibration:
    """One class: ``prevalence`` (share of images that contain it), the head's mean probability on
    the images that contain it (``mean_present``) and on those that do not (``mean_absent``; nan
    where every image or none contains it), and ``kept`` (the share of the images that contain it
    where the probability reaches the threshold, so a suppression at that threshold keeps it)."""

    prevalence: float
    mean_present: float
    mean_absent: float
    kept: float


def class_calibration(probabilities: np.ndarray, present: np.ndarray, threshold: float) -> list[ClassCalibration]:
    """:class:`ClassCalibration` per class (columns) of :func:`presence_scores`' arrays."""
    probabilities, present = np.asarray(probabilities, dtype=float), np.asarray(present, dtype=bool)
    if probabilities.shape != present.shape or probabilities.ndim != 2:
        raise SegeduError(f"class_calibration needs two (N, C) arrays of one shape, got {probabilities.shape} "
                          f"and {present.shape}.")

    def mean(values):
        return float(values.mean()) if values.size else float("nan")

    return [ClassCalibration(prevalence=float(present[:, c].mean()) if len(present) else float("nan"),
                             mean_present=mean(probabilities[present[:, c], c]),
                             mean_absent=mean(probabilities[~present[:, c], c]),
                             kept=mean(probabilities[present[:, c], c] >= threshold))
            for c in range(present.shape[1])]
