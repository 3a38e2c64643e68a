"""Class-aware sampling: rare classes are drawn as often as the weights say, reproducibly."""
import math

import numpy as np
import pytest

from segedu.data.classes import CLASSES, NUM_CLASSES
from segedu.data.sampler import (LVIS_THRESHOLD, ClassAwareSampler, class_presence_from_coco, class_repeat_factors,
                                 image_weights)
from segedu.errors import SegeduError


def skewed_presence():
    """100 images: all have background; images 0-89 class 1; images 0-4 also the rare class 2."""
    presence = np.zeros((100, 3), dtype=bool)
    presence[:, 0] = True
    presence[:90, 1] = True
    presence[:5, 2] = True
    return presence


def test_rare_class_share_matches_the_analytic_share_and_beats_uniform():
    draws = 20_000
    sampler = ClassAwareSampler(skewed_presence(), num_samples=draws, seed=0, power=0.5)
    # weights (1/f)^0.5 of each image's rarest class: f = 0.05 for the 5 rare images, 0.9 for the
    # next 85, 1.0 (background only) for the last 10
    rare, common, plain = 5 * math.sqrt(1 / 0.05), 85 * math.sqrt(1 / 0.9), 10 * 1.0
    expected = rare / (rare + common + plain)
    uniform = 5 / 100
    assert expected > 3 * uniform
    share = np.mean(np.array(list(sampler)) < 5)
    assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / draws)


def test_power_zero_is_uniform_and_power_one_is_inverse_frequency():
    presence = skewed_presence()
    np.testing.assert_allclose(image_weights(presence, power=0.0), np.ones(100))
    np.testing.assert_allclose(image_weights(presence, power=1.0), [20.0] * 5 + [1 / 0.9] * 85 + [1.0] * 10)


def test_an_image_without_classes_gets_the_smallest_weight():
    presence = np.array([[True, False], [False, False]])  # class 0 in half the images
    np.testing.assert_allclose(image_weights(presence), [math.sqrt(2), 1.0])


def lvis_presence():
    """20 images: class 0 in images 0-18 (f = 0.95), class 1 in 0-9 (0.5), class 2 in 0-3 (0.2),
    class 3 in image 0 only (0.05); image 19 holds no class."""
    presence = np.zeros((20, 4), dtype=bool)
    presence[:19, 0] = True
    presence[:10, 1] = True
    presence[:4, 2] = True
    presence[0, 3] = True
    return presence


def test_repeat_factors_follow_lvis():
    presence = lvis_presence()
    # LVIS: r_c = max(1, sqrt(t / f_c)); with t = 0.25 classes 0 and 1 are above the threshold
    np.testing.assert_allclose(class_repeat_factors(presence, threshold=0.25),
                               [1.0, 1.0, math.sqrt(0.25 / 0.2), math.sqrt(0.25 / 0.05)])
    # r_i = max over the image's classes: image 0 takes class 3's factor, images 1-3 class 2's
    expected = [math.sqrt(5.0)] + [math.sqrt(1.25)] * 3 + [1.0] * 16
    np.testing.assert_allclose(image_weights(presence, threshold=0.25), expected)
    np.testing.assert_allclose(image_weights(presence, power=1.0, threshold=0.25), [5.0] + [1.25] * 3 + [1.0] * 16)
    # LVIS's own t = 0.001 leaves every class of this small dataset at 1: uniform sampling
    np.testing.assert_allclose(image_weights(presence, threshold=LVIS_THRESHOLD), np.ones(20))
    # the default t = 1 over-samples every class by sqrt(1 / f_c); the empty image keeps 1
    np.testing.assert_allclose(class_repeat_factors(presence), np.sqrt([1 / 0.95, 2.0, 5.0, 20.0]))
    np.testing.assert_allclose(image_weights(presence),
                               [math.sqrt(20)] + [math.sqrt(5)] * 3 + [math.sqrt(2)] * 6 + [math.sqrt(1 / 0.95)] * 9
                               + [1.0])
    sampler = ClassAwareSampler(presence, num_samples=10, threshold=0.25)
    np.testing.assert_allclose(sampler.weights.numpy(), expected)


def test_draw_is_deterministic_for_a_seed_and_changes_with_the_epoch():
    presence = skewed_presence()

    def draw(seed, epoch):
        sampler = ClassAwareSampler(presence, num_samples=50, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert draw(0, 0) == draw(0, 0)
    assert draw(0, 0) != draw(1, 0)
    assert draw(0, 1) != draw(0, 0)
    assert len(ClassAwareSampler(presence, num_samples=50, seed=0)) == len(draw(0, 3)) == 50


def test_bad_arguments_are_explained():
    with pytest.raises(SegeduError, match="num_samples"):
        ClassAwareSampler(skewed_presence(), num_samples=0, seed=0)
    with pytest.raises(SegeduError, match="bool array"):
        ClassAwareSampler(np.ones(5, dtype=bool), num_samples=3, seed=0)
    with pytest.raises(SegeduError, match="threshold t > 0"):
        image_weights(skewed_presence(), threshold=0.0)
    with pytest.raises(SegeduError, match="power >= 0"):
        ClassAwareSampler(skewed_presence(), num_samples=3, power=-0.5)


def coco(categories, annotations):
    images = [{"id": image_id, "file_name": f"batch_01_vt/{image_id:04d}.jpg", "height": 8, "width": 8}
              for image_id in (7, 3, 5)]
    return {"images": images, "categories": categories,
            "annotations": [{"id": k, "image_id": image_id, "category_id": category_id}
                            for k, (image_id, category_id) in enumerate(annotations)]}


def test_presence_from_coco_maps_categories_by_name_in_image_order():
    # ids deliberately differ from the class order: 1 -> Battery (9), 2 -> Paper (2)
    categories = [{"id": 1, "name": "Battery"}, {"id": 2, "name": "Paper"}]
    presence = class_presence_from_coco(coco(categories, [(3, 1), (3, 2), (5, 2), (5, 2)]))
    expected = np.zeros((3, NUM_CLASSES), dtype=bool)
    expected[:, 0] = True        # background everywhere
    expected[1, [2, 9]] = True   # image id 3 is the second image
    expected[2, 2] = True        # image id 5, two Paper annotations
    np.testing.assert_array_equal(presence, expected)
    assert CLASSES[9] == "Battery" and CLASSES[2] == "Paper"


def test_presence_from_coco_explains_bad_records():
    with pytest.raises(SegeduError, match="train.json: category id 4 is named 'Tin'"):
        class_presence_from_coco(coco([{"id": 4, "name": "Tin"}], []), source="train.json")
    with pytest.raises(SegeduError, match="annotation id 0 refers to image id 99"):
        class_presence_from_coco(coco([{"id": 1, "name": "Metal"}], [(99, 1)]))
    with pytest.raises(SegeduError, match="annotation id 0 has category id 6"):
        class_presence_from_coco(coco([{"id": 1, "name": "Metal"}], [(7, 6)]))
