"""segedu.data.noise: injected label noise at the rates and of the kinds asked, clean labels untouched."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segedu.data import dataset, noise, synth
from segedu.data.classes import CLASSES
from segedu.errors import SegeduError

SIZE = 64


def square(x, y, side):
    return [float(v) for v in (x, y, x + side, y, x + side, y + side, x, y + side)]


def toy_coco(n_images=60, per_image=4) -> dict:
    """``n_images`` images of 64x64, each with ``per_image`` separate 12x12 squares of cycling classes."""
    images = [{"id": i + 1, "file_name": f"b/{i:04d}.jpg", "width": SIZE, "height": SIZE} for i in range(n_images)]
    annotations = []
    for img in images:
        for k in range(per_image):
            poly = square(2 + 15 * k, 10 + 10 * (k % 2), 12)
            annotations.append({"id": len(annotations) + 1, "image_id": img["id"],
                                "category_id": 1 + (k + img["id"]) % 10, "segmentation": [poly], "area": 144.0,
                                "bbox": [poly[0], poly[1], 12.0, 12.0], "iscrowd": 0})
    categories = [{"id": i, "name": name, "supercategory": ""} for i, name in enumerate(CLASSES) if i]
    return {"images": images, "annotations": annotations, "categories": categories}


def rle(ann):
    seg = ann["segmentation"]
    if isinstance(seg, list):
        return mask_utils.merge(mask_utils.frPyObjects(seg, SIZE, SIZE))
    return {"size": seg["size"], "counts": seg["counts"].encode()}


def decode(ann):
    return mask_utils.decode(rle(ann)).astype(bool)


def test_rates_images_objects_and_kinds_as_asked():
    coco = toy_coco(n_images=200, per_image=4)
    before = copy.deepcopy(coco)
    noisy, records = noise.corrupt(coco, noise.NoiseSpec(rate=0.3, objects=0.5, seed=3))
    assert coco == before  # the clean labels are not touched
    corrupted = {r["image_id"] for r in records}
    assert len(corrupted) == 60  # 30% of 200 images
    per_image = {i: sum(r["image_id"] == i for r in records) for i in corrupted}
    assert set(per_image.values()) == {2}  # half of each corrupted image's 4 annotations
    counts = [sum(r["kind"] == k for r in records) for k in noise.KINDS]
    assert sum(counts) == 120 and min(counts) >= 15  # each kind drawn about 30 times of 120 (uniform)
    # the untouched images keep their annotations exactly
    clean_by_id = {a["id"]: a for a in coco["annotations"]}
    touched = {r["annotation_id"] for r in records}
    for ann in noisy["annotations"]:
        if ann["id"] not in touched:
            assert ann == clean_by_id[ann["id"]]
    assert len(noisy["annotations"]) == 800 - counts[noise.KINDS.index("missing")] - sum(
        r["kind"] == "boundary" and r["area_to"] == 0 for r in records)


def test_rate_zero_and_one_and_a_single_kind():
    coco = toy_coco(n_images=10)
    noisy, records = noise.corrupt(coco, noise.NoiseSpec(rate=0.0))
    assert records == [] and noisy["annotations"] == coco["annotations"]
    _, records = noise.corrupt(coco, noise.NoiseSpec(rate=1.0, kinds=("missing",), objects=1.0))
    assert len(records) == 40 and {r["kind"] for r in records} == {"missing"}


def test_each_kind_does_what_it_says():
    coco = toy_coco(n_images=40)
    clean = {a["id"]: a for a in coco["annotations"]}
    noisy, records = noise.corrupt(coco, noise.NoiseSpec(rate=1.0, objects=1.0, boundary_px=2, jitter_px=1.0))
    after = {a["id"]: a for a in noisy["annotations"]}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    seen = set()
    for r in records:
        old, new = clean[r["annotation_id"]], after.get(r["annotation_id"])
        seen.add(r["detail"].split()[0] if r["kind"] == "boundary" else r["kind"])
        if r["kind"] == "missing":
            assert new is None
            continue
        assert new["area"] == pytest.approx(float(mask_utils.area(rle(new))))  # area and bbox follow the outline
        assert new["bbox"] == pytest.approx([float(v) for v in mask_utils.toBbox(rle(new))])
        if r["kind"] == "flip":
            assert names[new["category_id"]] in noise.CONFUSABLE[names[old["category_id"]]]
            assert new["segmentation"] == old["segmentation"]
        elif r["kind"] == "boundary":
            a, b = decode(old), decode(new)
            assert new["category_id"] == old["category_id"]
            if r["detail"].startswith("erode"):  # a 12x12 square eroded by 2: the inner 8x8
                assert not (b & ~a).any() and b.sum() == 64
            else:  # dilated by cv2's 5x5 disc (its corner rows are 0 0 1 0 0 and 1 1 1 1 1): 2 more
                # pixels on each side, and each corner of the 16x16 square misses 2 pixels
                assert not (a & ~b).any() and b.sum() == 16 * 16 - 4 * 2
        else:  # jitter: same vertices, each moved a little
            p, q = np.array(old["segmentation"][0]), np.array(new["segmentation"][0])
            assert p.shape == q.shape and 0 < np.abs(p - q).max() < 6
    assert seen == {"flip", "erode", "dilate", "missing", "jitter"}


def test_same_seed_same_noise_other_seed_other_noise():
    coco = toy_coco()
    first = noise.corrupt(coco, noise.NoiseSpec(rate=0.5, seed=1))
    assert noise.corrupt(coco, noise.NoiseSpec(rate=0.5, seed=1)) == first
    assert noise.corrupt(coco, noise.NoiseSpec(rate=0.5, seed=2)) != first


@pytest.mark.parametrize("kwargs, message", [
    ({"rate": 1.5}, "noise rate"), ({"rate": 0.2, "kinds": ("flop",)}, "unknown noise kind"),
    ({"rate": 0.2, "objects": 0.0}, "noise objects"), ({"rate": 0.2, "kinds": ("flip", "flip")}, "twice"),
    ({"rate": 0.2, "boundary_px": 0}, "boundary_px")])
def test_bad_specs_are_refused(kwargs, message):
    with pytest.raises(SegeduError, match=message):
        noise.NoiseSpec(**kwargs)


def test_write_noisy_keeps_the_clean_file_and_reports_changed_pixels(tmp_path):
    clean_file = tmp_path / "train.json"
    clean_file.write_text(json.dumps(toy_coco(n_images=20)))
    before = clean_file.read_bytes()
    report = noise.write_noisy(clean_file, tmp_path / "train_noisy.json", noise.NoiseSpec(rate=0.5, objects=1.0))
    assert clean_file.read_bytes() == before
    assert report.report.name == "train_noisy.noise.json" and report.noisy.is_file()
    clean, noisy = json.loads(before), json.loads(report.noisy.read_text())
    # changed pixels, painted independently: largest area first (the loader's order), then compared
    for image in clean["images"]:
        def paint(coco):
            label = np.zeros((SIZE, SIZE), np.uint8)
            for ann in sorted((a for a in coco["annotations"] if a["image_id"] == image["id"]),
                              key=lambda a: (-a["area"], a["id"])):
                label[decode(ann)] = ann["category_id"]
            return label
        expected = float((paint(clean) != paint(noisy)).mean())
        assert report.changed[image["id"]] == pytest.approx(expected)
        if image["id"] not in report.corrupted_images:
            assert expected == 0.0
    again = noise.read_report(report.noisy)
    assert again.records == report.records and again.changed == report.changed and again.clean == clean_file
    with pytest.raises(SegeduError, match="must not overwrite the clean"):
        noise.write_noisy(clean_file, clean_file, noise.NoiseSpec(rate=0.1))


def test_bad_clean_file_is_named(tmp_path):
    bad = tmp_path / "train.json"
    bad.write_text('{"images": []}')
    with pytest.raises(SegeduError, match=r"train.json: a COCO annotation file needs a list 'annotations'"):
        noise.write_noisy(bad, tmp_path / "noisy.json", noise.NoiseSpec(rate=0.1))
    assert not (tmp_path / "noisy.json").exists()


def test_synth_writes_noisy_labels_beside_the_clean_ones(tmp_path):
    plain = synth.generate(tmp_path / "plain", n_images=12, size=64, seed=5)
    noisy = synth.generate(tmp_path / "noisy", n_images=12, size=64, seed=5,
                           noise=noise.NoiseSpec(rate=0.5, kinds=("flip", "missing")))
    for name in synth.DATASET_FILES:  # the clean files are those of a dataset made without noise
        assert (plain.path / name).read_bytes() == (noisy.path / name).read_bytes()
    report = noise.read_report(noisy.path / "train_noisy.json")
    assert {r["kind"] for r in report.records} <= {"flip", "missing"}
    assert len(report.corrupted_images) == round(0.5 * (12 - round(0.2 * 12)))
    train = dataset.CocoSegmentation(noisy.path, "train_noisy")  # a training split by name
    assert len(train) == len(dataset.CocoSegmentation(noisy.path, "train"))
    assert not (plain.path / "train_noisy.json").exists()
