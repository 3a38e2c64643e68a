"""segedu.data.splits: folds partition the images, groups stay whole, stratification helps, seeds fix it.

The class-share deviation used as the reference is recomputed here with numpy from the
COCO dict, not taken from the module.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from segedu.data import splits
from segedu.errors import SegeduError

SPLITTERS = {
    "kfold": splits.kfold,
    "stratified": splits.stratified_kfold,
    "group": splits.group_kfold,
}


def skewed_coco(n_images: int = 200, seed: int = 0) -> dict:
    """Images in 6 batch folders; class 2 on most images, 9 and 10 on a few (like Battery, Clothing)."""
    rng = np.random.default_rng(seed)
    presence = {1: 0.5, 2: 0.8, 6: 0.3, 8: 0.6, 9: 0.04, 10: 0.08}
    images, annotations = [], []
    for i in range(n_images):
        images.append({"id": 100 + i, "file_name": f"batch_{i % 6}/{i:04d}.jpg", "width": 8, "height": 8})
        for cat, p in presence.items():
            if rng.random() < p:
                annotations.append({"id": len(annotations), "image_id": 100 + i, "category_id": cat,
                                    "segmentation": [[0, 0, 4, 0, 4, 4]], "area": 8.0, "bbox": [0, 0, 4, 4],
                                    "iscrowd": 0})
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, 11)]
    return {"images": images, "annotations": annotations, "categories": categories}


def max_deviation(coco: dict, val_ids: list[int]) -> float:
    """Reference: max over classes of |share of val images with the class - share of all images|."""
    ids = [im["id"] for im in coco["images"]]
    row = {image_id: k for k, image_id in enumerate(ids)}
    present = np.zeros((len(ids), 11), bool)
    for ann in coco["annotations"]:
        present[row[ann["image_id"]], ann["category_id"]] = True
    val = present[[row[i] for i in val_ids]]
    return float(np.abs(val.mean(0) - present.mean(0)).max())


@pytest.mark.parametrize("method", SPLITTERS)
def test_folds_partition_the_images(method):
    coco = skewed_coco()
    folds = SPLITTERS[method](coco, 5, 0)
    all_ids = sorted(im["id"] for im in coco["images"])
    assert len(folds) == 5
    val_count = {}
    for train, val in folds:
        assert not set(train) & set(val)
        assert sorted(train + val) == all_ids
        for i in val:
            val_count[i] = val_count.get(i, 0) + 1
    assert sorted(val_count) == all_ids and set(val_count.values()) == {1}


def test_kfold_sizes_differ_by_at_most_one():
    sizes = [len(val) for _, val in splits.kfold(skewed_coco(203), 5, 0)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 203


def test_group_folds_never_split_a_group():
    coco = skewed_coco()
    group = {im["id"]: im["file_name"].split("/")[0] for im in coco["images"]}
    for train, val in splits.group_kfold(coco, 3, 0):
        assert not {group[i] for i in train} & {group[i] for i in val}
    with pytest.raises(SegeduError, match="6 groups"):
        splits.group_kfold(coco, 7, 0)


def test_stratified_deviates_less_than_plain_kfold_on_a_skewed_set():
    plain, strat = [], []
    for seed in range(5):
        coco = skewed_coco(seed=seed)
        plain += [max_deviation(coco, val) for _, val in splits.kfold(coco, 5, seed)]
        strat += [max_deviation(coco, val) for _, val in splits.stratified_kfold(coco, 5, seed)]
    assert np.mean(strat) < 0.6 * np.mean(plain)
    assert max(strat) < max(plain)


def test_stratified_spreads_a_rare_class_evenly():
    """A hand-made case: 10 images with class 9 among 50, 5 folds -> 2 in each val fold."""
    coco = skewed_coco(50)
    coco["annotations"] = [a for a in coco["annotations"] if a["category_id"] != 9]
    for image in coco["images"][:10]:
        coco["annotations"].append({"id": 10_000 + image["id"], "image_id": image["id"], "category_id": 9,
                                    "segmentation": [[0, 0, 2, 0, 2, 2]], "area": 2.0, "bbox": [0, 0, 2, 2],
                                    "iscrowd": 0})
    with_9 = {im["id"] for im in coco["images"][:10]}
    for _, val in splits.stratified_kfold(coco, 5, 0):
        assert len(with_9 & set(val)) == 2
        assert 9 <= len(val) <= 11  # sizes are balanced only approximately (classes come first)


def test_background_only_images_are_assigned_too():
    coco = skewed_coco(40)
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] >= 120]  # 20 without any
    folds = splits.stratified_kfold(coco, 4, 0)
    assert sorted(i for _, val in folds for i in val) == sorted(im["id"] for im in coco["images"])


@pytest.mark.parametrize("method", ["holdout", *SPLITTERS])
def test_seeded(method):
    coco = skewed_coco()
    a = splits.make_splits(coco, method, folds=3, seed=1)
    assert a == splits.make_splits(coco, method, folds=3, seed=1)
    if method in ("holdout", "kfold", "stratified"):
        assert a != splits.make_splits(coco, method, folds=3, seed=2)


def test_holdout_fraction():
    coco = skewed_coco(101)
    [(train, val)] = splits.holdout(coco, 0.2, 0)
    assert len(val) == 20 and len(train) == 81 and not set(train) & set(val)
    with pytest.raises(SegeduError):
        splits.holdout(coco, 1.0, 0)


def test_write_splits_files_and_report(tmp_path):
    coco = skewed_coco(60)
    source = tmp_path / "train_all.json"
    source.write_text(json.dumps(coco))
    written = splits.write_splits(source, tmp_path / "folds", "stratified", folds=3, seed=0)
    assert [w.train.name for w in written] == ["fold0_train.json", "fold1_train.json", "fold2_train.json"]
    for w in written:
        train, val = json.loads(w.train.read_text()), json.loads(w.val.read_text())
        assert train["categories"] == val["categories"] == coco["categories"]
        for side in (train, val):
            ids = {im["id"] for im in side["images"]}
            expected = [a for a in coco["annotations"] if a["image_id"] in ids]
            assert side["annotations"] == expected
        assert (len(train["images"]), len(val["images"])) == (w.n_train, w.n_val)
        assert w.deviation == pytest.approx(max_deviation(coco, [im["id"] for im in val["images"]]))
    assert sorted(p.name for p in (tmp_path / "folds").iterdir()) == sorted(
        n for w in written for n in (w.train.name, w.val.name))  # no temp files left
    report = splits.render_report(written)
    assert len(report.splitlines()) == 2 + 3 and "fold0_val.json" in report

    [hold] = splits.write_splits(source, tmp_path / "hold", "holdout", val_fraction=0.25)
    assert (hold.train.name, hold.val.name, hold.n_val) == ("train.json", "val.json", 15)


def test_write_splits_explains_bad_input(tmp_path):
    with pytest.raises(SegeduError, match="no such annotation file"):
        splits.write_splits(tmp_path / "missing.json", tmp_path, "kfold")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(SegeduError, match="not valid JSON"):
        splits.write_splits(tmp_path / "broken.json", tmp_path, "kfold")
    (tmp_path / "ok.json").write_text(json.dumps(skewed_coco(10)))
    with pytest.raises(SegeduError, match="unknown split method"):
        splits.write_splits(tmp_path / "ok.json", tmp_path, "random")
