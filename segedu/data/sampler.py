"""Class-aware sampling: draw images that contain rare classes more often.

The weight of an image is its repeat factor (Gupta et al. 2019, "LVIS: A Dataset for Large
Vocabulary Instance Segmentation", Sec. 5; Detectron2's ``RepeatFactorTrainingSampler``): with
``f_c`` the fraction of images that contain class ``c``, the class factor is
``r_c = max(1, (t / f_c) ** power)`` and an image takes the *largest* factor among its classes,
``r_i = max_c r_c``, so one rare object is enough to lift an image. LVIS uses ``power = 0.5``
(the square root); ``power = 0`` is uniform sampling, ``power = 1`` inverse-frequency weighting.

Classes with ``f_c >= t`` are not over-sampled (``r_c = 1``). LVIS's ``t = 0.001`` is meant for
1,203 classes; on the 11 classes here, with ``f_c`` between about 0.05 and 1, it would give every
class ``r_c = 1``, i.e. uniform sampling. The default is therefore :data:`NO_THRESHOLD`,
``t = 1``: since ``f_c <= 1`` the ``max(1, .)`` never binds, every class missing from some image
is over-sampled by ``(1 / f_c) ** power``, and only a class present in every image (here the
background) gets ``r_c = 1``, as does an image without any class. Lower ``t`` to leave the classes
that occur in more than that share of images at 1.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from ..errors import SegeduError
from .classes import CLASSES, NUM_CLASSES


#: The default threshold ``t = 1``: as ``f_c <= 1`` the clip ``max(1, .)`` never binds, and only a
#: class present in every image gets ``r_c = 1`` (see the module docstring).
NO_THRESHOLD = 1.0
#: LVIS's threshold, chosen for its 1,203 classes; on a few common classes it samples uniformly.
LVIS_THRESHOLD = 0.001


def class_repeat_factors(image_class_presence: np.ndarray, threshold: float = NO_THRESHOLD,
                         power: float = 0.5) -> np.ndarray:
    """(C,) LVIS class repeat factor ``r_c = max(1, (t / f_c) ** power)``, ``f_c`` the fraction of
    images containing class ``c``; a class in no image gets 1 (it lifts no image anyway)."""
    presence = _checked_presence(image_class_presence)
    if not threshold > 0:
        raise SegeduError(f"repeat-factor sampling needs a threshold t > 0 (a fraction of images); got {threshold}.")
    if not power >= 0:
        raise SegeduError(f"repeat-factor sampling needs power >= 0 (0 is uniform, 0.5 is LVIS); got {power}.")
    frequency = presence.mean(axis=0)
    ratio = threshold / np.where(frequency > 0, frequency, threshold)  # absent class: ratio 1
    return np.maximum(1.0, ratio ** power)


def image_weights(image_class_presence: np.ndarray, power: float = 0.5,
                  threshold: float = NO_THRESHOLD) -> np.ndarray:
    """(N,) LVIS image repeat factor ``r_i = max over the classes of image i of r_c``
    (:func:`class_repeat_factors`); an image with no class gets 1, the smallest weight."""
    presence = _checked_presence(image_class_presence)
    factor = class_repeat_factors(presence, threshold, power)
    return np.maximum((presence * factor).max(axis=1), 1.0)


def _checked_presence(image_class_presence) -> np.ndarray:
    presence = np.asarray(image_class_presence, dtype=bool)
    if presence.ndim != 2 or presence.shape[0] == 0:
        raise SegeduError(
            f"image_class_presence must be a (N images, C classes) bool array with N > 0; got shape "
            f"{presence.shape}. Build it with class_presence_from_coco or the dataset's class presence."
        )
    return presence


class ClassAwareSampler(Sampler[int]):
    """Draws ``num_samples`` image indices with replacement, weighted by :func:`image_weights`
    (``power`` and ``threshold`` as there).

    The draw is fixed by ``seed`` and the epoch: call :meth:`set_epoch` before each epoch (as with
    ``DistributedSampler``) for a new, still reproducible, draw.

    Distributed training (``num_replicas`` processes): every process makes the same draw of
    ``num_samples`` and takes every ``num_replicas``-th index from position ``rank``, cut to an equal
    length; together the processes see the single-process draw (up to ``num_replicas - 1`` left-over
    indices), and no index of the draw twice.
    """

    def __init__(self, image_class_presence: np.ndarray, num_samples: int, seed: int = 0, power: float = 0.5,
                 rank: int = 0, num_replicas: int = 1, threshold: float = NO_THRESHOLD):
        if num_samples <= 0:
            raise SegeduError(f"ClassAwareSampler needs num_samples > 0; got {num_samples}.")
        if not 0 <= rank < num_replicas:
            raise SegeduError(f"ClassAwareSampler needs 0 <= rank < num_replicas; got rank {rank} of {num_replicas}.")
        self.weights = torch.as_tensor(image_weights(image_class_presence, power, threshold), dtype=torch.float64)
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0
        self.rank, self.num_replicas = rank, num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples // self.num_replicas

    def __iter__(self) -> Iterator[int]:
        # SeedSequence mixes (seed, epoch) so that no two pairs share a stream
        stream = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(stream)
        draw = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)
        return iter(draw[self.rank::self.num_replicas][: len(self)].tolist())


def class_presence_from_coco(coco: Mapping[str, Any], num_classes: int = NUM_CLASSES,
                             source: str = "COCO dict") -> np.ndarray:
    """(N images, C classes) bool presence, rows in the order of ``coco["images"]``.

    Categories are matched to :data:`~segedu.data.classes.CLASSES` by name (not by id), so a file
    whose category ids differ still maps right. Background (class 0) is marked present in every
    image: annotations only outline objects, and the competition has no fully covered image.
    ``source`` names the file in error messages.
    """
    class_of_name = {name: index for index, name in enumerate(CLASSES[:num_classes])}
    class_of_category = {}
    for category in coco.get("categories", []):
        if category.get("name") not in class_of_name:
            raise SegeduError(
                f"{source}: category id {category.get('id')} is named {category.get('name')!r}, which is none of "
                f"the competition classes ({', '.join(CLASSES[1:num_classes])}); fix the name in the file."
            )
        class_of_category[category["id"]] = class_of_name[category["name"]]
    row_of_image = {image["id"]: row for row, image in enumerate(coco.get("images", []))}
    presence = np.zeros((len(row_of_image), num_classes), dtype=bool)
    presence[:, 0] = True
    for annotation in coco.get("annotations", []):
        if annotation["image_id"] not in row_of_image:
            raise SegeduError(
                f"{source}: annotation id {annotation.get('id')} refers to image id {annotation['image_id']}, "
                "which is not in 'images'; remove the annotation or add the image."
            )
        if annotation["category_id"] not in class_of_category:
            raise SegeduError(
                f"{source}: annotation id {annotation.get('id')} has category id {annotation['category_id']}, "
                "which is not in 'categories'; fix the annotation's category_id."
            )
        presence[row_of_image[annotation["image_id"]], class_of_category[annotation["category_id"]]] = True
    return presence
