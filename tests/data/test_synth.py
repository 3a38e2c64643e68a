"""segedu.data.synth: layout, determinism, imbalance, and annotations that agree with the pixels.

References are independent of the generator: pycocotools rasterises the written polygons and
recomputes area/bbox; images are decoded from the written JPEGs.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segedu.data import synth
from segedu.data.classes import CLASSES, PALETTE
from segedu.errors import SegeduError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools + numpy 2

FILES = ("train_all.json", "train.json", "val.json", "test.json", "test_labels.json")


def load(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


def all_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def label_map(coco: dict, image: dict) -> np.ndarray:
    """Paint the image's annotations largest first, as the mask loaders do."""
    h, w = image["height"], image["width"]
    labels = np.zeros((h, w), np.uint8)
    anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
    for ann in sorted(anns, key=lambda a: -a["area"]):
        rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], h, w))
        labels[mask_utils.decode(rle) > 0] = ann["category_id"]
    return labels


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "small"
    synth.generate(out, n_images=30, size=64, seed=3)
    return out


@pytest.fixture(scope="module")
def medium(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "medium"
    synth.generate(out, n_images=80, size=64, seed=0, workers=1)
    return out


def test_layout_is_the_competitions(small):
    assert sorted(p.name for p in small.iterdir()) == sorted([*synth.BATCHES, *FILES])
    train_all, train, val = (load(small, n) for n in ("train_all.json", "train.json", "val.json"))
    test, test_labels = load(small, "test.json"), load(small, "test_labels.json")
    for coco in (train_all, train, val, test, test_labels):
        assert [(c["id"], c["name"]) for c in coco["categories"]] == list(enumerate(CLASSES))[1:]
    assert len(train_all["images"]) == 30
    ids = lambda c: {im["id"] for im in c["images"]}  # noqa: E731
    assert ids(train) | ids(val) == ids(train_all) and not ids(train) & ids(val)
    assert len(val["images"]) == round(0.2 * 30)
    for side in (train, val):
        assert {a["image_id"] for a in side["annotations"]} <= ids(side)
        assert len(side["annotations"]) == sum(a["image_id"] in ids(side) for a in train_all["annotations"])
    assert "annotations" not in test and test["images"] == test_labels["images"]
    assert 0.15 <= len(test["images"]) / 30 <= 0.2
    names = [im["file_name"] for im in train_all["images"] + test["images"]]
    assert len(set(names)) == len(names)
    for image in train_all["images"] + test["images"]:
        folder, _ = image["file_name"].split("/")
        assert folder in synth.BATCHES
        pixels = cv2.imread(str(small / image["file_name"]))
        assert pixels.shape == (image["height"], image["width"], 3) == (64, 64, 3)
    assert len({im["file_name"].split("/")[0] for im in train_all["images"]}) == len(synth.BATCHES)


def test_same_seed_same_bytes_whatever_the_process_count(tmp_path):
    synth.generate(tmp_path / "one", n_images=12, size=48, seed=3, workers=1)
    synth.generate(tmp_path / "two", n_images=12, size=48, seed=3, workers=2)
    synth.generate(tmp_path / "other", n_images=12, size=48, seed=4, workers=1)
    assert all_bytes(tmp_path / "one") == all_bytes(tmp_path / "two")
    assert all_bytes(tmp_path / "other")["train_all.json"] != all_bytes(tmp_path / "one")["train_all.json"]


def test_area_and_bbox_are_pycocotools_own_and_polygons_lie_inside(small):
    for name in ("train_all.json", "test_labels.json"):
        coco = load(small, name)
        sizes = {im["id"]: (im["height"], im["width"]) for im in coco["images"]}
        for ann in coco["annotations"]:
            h, w = sizes[ann["image_id"]]
            assert ann["iscrowd"] == 0 and 1 <= ann["category_id"] <= 10
            for polygon in ann["segmentation"]:
                assert len(polygon) >= 6 and len(polygon) % 2 == 0
                xs, ys = np.array(polygon[0::2]), np.array(polygon[1::2])
                assert xs.min() >= 0 and ys.min() >= 0 and xs.max() <= w and ys.max() <= h
            rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], h, w))
            assert ann["area"] == float(mask_utils.area(rle)) > 0
            np.testing.assert_allclose(ann["bbox"], mask_utils.toBbox(rle))


def test_some_objects_have_several_parts(medium):
    parts = [len(a["segmentation"]) for a in load(medium, "train_all.json")["annotations"]]
    assert max(parts) >= 2 and sum(p > 1 for p in parts) < len(parts) / 2


def test_every_class_present_and_the_competitions_imbalance(medium):
    coco = load(medium, "train_all.json")
    counts = np.bincount([a["category_id"] for a in coco["annotations"]], minlength=11)
    assert (counts[1:] > 0).all()
    paper, bag, battery, clothing = (counts[CLASSES.index(n)] for n in ("Paper", "Plastic bag", "Battery", "Clothing"))
    assert min(paper, bag) > 5 * max(battery, clothing)
    visible = np.zeros(11, bool)
    for image in coco["images"]:
        visible[np.unique(label_map(coco, image))] = True
    assert visible.all()  # every class, Background included, is visible somewhere


def test_pixels_agree_with_annotations_in_the_flat_control(tmp_path):
    """Flat mode paints each object in its palette colour: decode, and compare with pycocotools masks."""
    synth.generate(tmp_path / "flat", n_images=20, size=64, seed=1, flat=True)
    coco = load(tmp_path / "flat", "train_all.json")
    agree = total = 0
    hits, counted = np.zeros(11), np.zeros(11)
    for image in coco["images"]:
        pixels = cv2.imread(str(tmp_path / "flat" / image["file_name"]))[:, :, ::-1].astype(int)
        nearest = ((pixels[:, :, None] - PALETTE.astype(int)) ** 2).sum(-1).argmin(-1)
        labels = label_map(coco, image)
        agree += (nearest == labels).sum()
        total += labels.size
        # away from region edges, where JPEG's colour subsampling mixes neighbours
        for cls in np.unique(labels):
            interior = cv2.erode((labels == cls).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            hits[cls] += (nearest[interior] == cls).sum()
            counted[cls] += interior.sum()
    assert agree / total > 0.95
    seen = counted >= 30
    assert seen.sum() >= 8 and (hits[seen] / counted[seen] > 0.9).all()


def test_photo_objects_differ_from_their_background(small):
    """In the real (textured) images, annotated regions are drawn: they do not look like the floor."""
    coco = load(small, "train_all.json")
    distinct = checked = 0
    for image in coco["images"]:
        pixels = cv2.imread(str(small / image["file_name"]))[:, :, ::-1].astype(float)
        labels = label_map(coco, image)
        background = pixels[labels == 0].mean(0) if (labels == 0).any() else None
        for cls in np.unique(labels):
            region = labels == cls
            if cls == 0 or region.sum() < 30 or background is None:
                continue
            checked += 1
            distinct += np.abs(pixels[region].mean(0) - background).max() > 8
    assert checked > 20 and distinct / checked > 0.75


def test_refuses_to_overwrite_and_leaves_nothing_behind(tmp_path, small):
    before = all_bytes(small)
    with pytest.raises(SegeduError, match="already holds a dataset"):
        synth.generate(small, n_images=30, size=64, seed=3)
    assert all_bytes(small) == before
    (tmp_path / "empty").mkdir()
    synth.generate(tmp_path / "empty", n_images=5, size=32)
    assert (tmp_path / "empty" / "train_all.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no temp folder left beside it


def test_ensure_default_dataset_generates_once(tmp_path, monkeypatch):
    from segedu import profiles

    monkeypatch.setenv(profiles.DATA_ROOT_ENV, str(tmp_path))
    tiny = profiles.Profile(**{**profiles.PROFILES["smoke"].__dict__, "synth_images": 6, "synth_size": 32})
    path = synth.ensure_default_dataset(tiny)
    assert path == profiles.default_data_dir(tiny) and (path / "train_all.json").is_file()
    stamp = (path / "train_all.json").stat().st_mtime_ns
    assert synth.ensure_default_dataset(tiny) == path
    assert (path / "train_all.json").stat().st_mtime_ns == stamp
    assert synth.drawn_by(path) == synth.GENERATOR_VERSION
    assert synth.drawn_by(tmp_path / "nothing here") is None
    # a dataset from an older generator version is replaced
    coco = load(path, "train_all.json")
    coco["info"]["version"] = "0"
    (path / "train_all.json").write_text(json.dumps(coco))
    synth.ensure_default_dataset(tiny)
    assert load(path, "train_all.json")["info"]["version"] == synth.GENERATOR_VERSION
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    # a COCO dataset of someone else's is not the generator's: it is never replaced
    coco["info"] = {"description": "my photos"}
    (path / "train_all.json").write_text(json.dumps(coco))
    assert synth.drawn_by(path) is None
    synth.ensure_default_dataset(tiny)
    assert load(path, "train_all.json")["info"] == {"description": "my photos"}


def test_summary_reports_the_written_counts(tmp_path):
    summary = synth.generate(tmp_path / "s", n_images=10, size=32, seed=0)
    coco = load(tmp_path / "s", "train_all.json")
    assert summary.images == 10 and summary.objects == len(coco["annotations"])
    assert summary.instances["Paper"] == sum(a["category_id"] == 2 for a in coco["annotations"])
    assert abs(sum(summary.pixel_share.values()) - 1) < 1e-9
    text = str(summary)
    assert all(name in text for name in CLASSES) and len(text.splitlines()) < 25


def test_version_3_deals_three_times_the_batteries_at_about_twice_the_length():
    """What versions.BATTERY says, measured on the drawn plans and outlines; the other classes are untouched."""
    from segedu.data.synth import shapes
    from segedu.data.synth.shapes import BATTERY, PAPER

    v2, v3 = synth.planned_instances("2"), synth.planned_instances("3")
    assert v2 == synth.COMPETITION_INSTANCES and v3["Battery"] == 3 * v2["Battery"] == 189
    assert {k: v for k, v in v3.items() if k != "Battery"} == {k: v for k, v in v2.items() if k != "Battery"}
    assert sorted(v3, key=v3.get)[:2] == ["Clothing", "Battery"]  # still one of the two rarest classes
    dealt = {v: sum(c.count(BATTERY) for c in synth.plan_classes(2000, seed=0, version=v)) for v in ("2", "3")}
    assert 2.5 < dealt["3"] / dealt["2"] < 3.5, dealt
    rng = np.random.default_rng(0)
    lengths = {v: [shapes._make_shape(BATTERY, rng, 256, BATTERY, v).length / 256 for _ in range(200)]
               for v in ("2", "3")}
    ratio = np.median(lengths["3"]) / np.median(lengths["2"])  # geometric means of the ranges: 0.173 / 0.063
    assert 2.2 < ratio < 3.3, ratio
    assert shapes.length_range(PAPER, "2") == shapes.length_range(PAPER, "3") == shapes.LENGTH_RANGE[PAPER]


def test_an_unknown_generator_version_is_refused_by_name(tmp_path):
    with pytest.raises(SegeduError, match=r"no generator version '9'.*'2', '3'"):
        synth.generate(tmp_path / "x", n_images=5, size=32, version="9")
    assert not (tmp_path / "x").exists()


def test_synth_draws_another_generator_version_on_request(tmp_path):
    """``--generator-version V`` draws byte for byte what ``synth.generate(version=V)`` draws, and
    that differs from the current version's data."""
    from segedu import cli

    other = next(v for v in synth.VERSIONS if v != synth.GENERATOR_VERSION)
    assert cli.main(["synth", "--out", str(tmp_path / "cli"), "--images", "6", "--size", "32",
                     "--generator-version", other]) == 0
    synth.generate(tmp_path / "api", n_images=6, size=32, version=other)
    synth.generate(tmp_path / "current", n_images=6, size=32)
    for name in synth.DATASET_FILES:
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "api" / name).read_bytes(), name
    assert (tmp_path / "cli" / "train.json").read_bytes() != (tmp_path / "current" / "train.json").read_bytes()
    assert json.loads((tmp_path / "cli" / "train_all.json").read_text())["info"]["version"] == other
