"""Dataset statistics against hand-computed values."""
import json

import numpy as np
import pytest
from PIL import Image

from segedu.data import coco, stats
from segedu.errors import SegeduError


@pytest.fixture()
def tiny(tmp_path):
    """Two 10x10 images: image 0 holds a 4x4 Paper square under a 2x2 Battery; image 1 a 3x5 Metal box."""
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (10, 10)).save(tmp_path / name)
    square = lambda x, y, w, h: [[x, y, x + w, y, x + w, y + h, x, y + h]]  # noqa: E731
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10},
                   {"id": 2, "file_name": "b.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 2, "name": "Paper"}, {"id": 4, "name": "Metal"}, {"id": 9, "name": "Battery"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 2, "segmentation": square(0, 0, 4, 4), "area": 16.0,
             "bbox": [0, 0, 4, 4], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 9, "segmentation": square(1, 1, 2, 2), "area": 4.0,
             "bbox": [1, 1, 2, 2], "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 4, "segmentation": square(5, 5, 3, 5), "area": 15.0,
             "bbox": [5, 5, 3, 5], "iscrowd": 0},
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return coco.load(path, images_dir=tmp_path)


def test_pixel_counts_and_presence_follow_the_painting_order(tiny, tmp_path):
    from segedu.data.masks import MaskCache

    counts, present = stats.pixel_counts_and_presence(tiny, MaskCache(tiny, root=tmp_path / "cache"))
    # Paper 16 - 4 covered by the battery painted on top; Metal 15; background the rest of 200
    assert counts[2] == 12 and counts[9] == 4 and counts[4] == 15
    assert counts[0] == 200 - 31 and counts.sum() == 200
    assert present[0].nonzero()[0].tolist() == [0, 2, 9]
    assert present[1].nonzero()[0].tolist() == [0, 4]


def test_object_table(tiny):
    table = stats.object_table(tiny)
    assert table["cls"].tolist() == [2, 9, 4]
    assert table["side"].tolist() == [4.0, 2.0, pytest.approx(15 ** 0.5)]
    assert table["image"].tolist() == [0, 0, 1]


def test_pixel_table_and_image_pixels(tiny, tmp_path):
    from segedu.data.masks import MaskCache

    table = stats.pixel_table(tiny, MaskCache(tiny, root=tmp_path / "cache"))
    assert table.shape == (2, tiny.num_classes) and table.sum(1).tolist() == [100, 100]
    assert table[0, [0, 2, 9]].tolist() == [84, 12, 4] and table[1, [0, 4]].tolist() == [85, 15]
    # background in both images (200 pixels), Paper and Battery only in image 0, Metal only in image 1
    expected = np.zeros(tiny.num_classes, dtype=np.int64)
    expected[[0, 2, 9, 4]] = [200, 100, 100, 100]
    assert stats.image_pixels(table).tolist() == expected.tolist()


def test_class_weights_by_hand():
    counts = np.array([70, 20, 10, 0])
    f = counts / 100
    assert stats.class_weights(counts, "inverse")[:3] == pytest.approx(1 / f[:3])
    assert stats.class_weights(counts, "sqrt_inverse")[:3] == pytest.approx(1 / np.sqrt(f[:3]))
    assert stats.class_weights(counts, "inverse")[3] == 0.0
    with pytest.raises(SegeduError, match="unknown class weighting 'log'"):
        stats.class_weights(counts, "log")


def test_median_frequency_uses_the_pixels_of_the_images_holding_the_class():
    # four 100-pixel images: class 1 fills 10 pixels of image 1; class 2 10 pixels of images 2 and 3
    table = np.array([[100, 0, 0, 0], [90, 10, 0, 0], [90, 0, 10, 0], [90, 0, 10, 0]])
    counts, totals = table.sum(0), stats.image_pixels(table)
    assert counts.tolist() == [370, 10, 20, 0] and totals.tolist() == [400, 100, 200, 0]
    # SegNet: freq = (370/400, 10/100, 20/200) = (0.925, 0.1, 0.1), median 0.1. Classes 1 and 2
    # cover the same tenth of the images they occur in, so they weigh the same
    weights = stats.class_weights(counts, "median_frequency", image_pixels=totals)
    assert weights.tolist() == pytest.approx([0.1 / 0.925, 1.0, 1.0, 0.0])
    # the share of all pixels (0.925, 0.025, 0.05; median 0.05) would weigh class 1 twice class 2
    all_pixels = stats.class_weights(counts, "median_frequency", image_pixels=np.full(4, 400))
    assert all_pixels.tolist() == pytest.approx([0.05 / 0.925, 2.0, 1.0, 0.0])
    with pytest.raises(SegeduError, match="median_frequency weighting needs image_pixels"):
        stats.class_weights(counts, "median_frequency")
    with pytest.raises(SegeduError, match="at least its own pixel count"):
        stats.class_weights(counts, "median_frequency", image_pixels=[400, 5, 200, 0])


def test_cooccurrence():
    presence = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 1]], dtype=bool)
    assert stats.cooccurrence(presence).tolist() == [[3, 2, 2], [2, 2, 1], [2, 1, 2]]
