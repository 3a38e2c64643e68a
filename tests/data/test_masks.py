"""segedu.data.masks: painting order, void pixels, RLE input, and the disk cache."""
from __future__ import annotations

import hashlib
import io
import json
import os

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from segedu import fileio
from segedu.data import coco, masks
from segedu.data.classes import IGNORE_INDEX


def course_baseline_mask(ann_file, image_id) -> np.ndarray:
    """The course baseline's painting, as an independent reference (area-sorted annToMask)."""
    api = COCO(str(ann_file))
    info = api.loadImgs(image_id)[0]
    anns = sorted(api.loadAnns(api.getAnnIds(imgIds=image_id)), key=lambda a: a["area"], reverse=True)
    mask = np.zeros((info["height"], info["width"]))
    for ann in anns:
        mask[api.annToMask(ann) == 1] = ann["category_id"]
    return mask.astype(np.uint8)


def test_matches_the_course_baseline_on_random_overlapping_polygons(make_dataset, kit, capsys):
    rng = np.random.default_rng(0)
    data = kit.base_coco()
    data["annotations"] = []
    for image in data["images"]:
        for _ in range(6):
            points = rng.uniform(0, [kit.WIDTH, kit.HEIGHT], size=(int(rng.integers(3, 7)), 2))
            polygon = points.ravel().tolist()
            rle = mask_utils.merge(mask_utils.frPyObjects([polygon], kit.HEIGHT, kit.WIDTH))
            data["annotations"].append({
                "id": len(data["annotations"]) + 1, "image_id": image["id"], "iscrowd": 0,
                "category_id": int(rng.integers(1, 11)), "segmentation": [polygon],
                "area": float(mask_utils.area(rle)) + rng.uniform(0, 0.5),  # no ties
                "bbox": mask_utils.toBbox(rle).tolist(),
            })
    ann_file = make_dataset(data)
    loaded = coco.load(ann_file)
    for image in loaded.images:
        ours = masks.semantic_mask(loaded, image)
        assert ours.dtype == np.uint8 and ours.shape == (kit.HEIGHT, kit.WIDTH)
        np.testing.assert_array_equal(ours, course_baseline_mask(ann_file, image["id"]))


@pytest.mark.parametrize("reverse_file_order", [False, True])
def test_smaller_object_on_top_stays_visible(make_dataset, kit, reverse_file_order):
    data = kit.base_coco()
    if reverse_file_order:
        data["annotations"].reverse()
    loaded = coco.load(make_dataset(data))
    expected = np.zeros((kit.HEIGHT, kit.WIDTH), np.uint8)
    expected[0:10, 0:12] = 2  # Paper, rect(0, 0, 12, 10)
    expected[4:8, 4:8] = 4    # Metal on top, rect(4, 4, 8, 8)
    np.testing.assert_array_equal(masks.semantic_mask(loaded, loaded.images[0]), expected)


def test_instance_mask_numbers_objects_in_painting_order(make_dataset, kit):
    data = kit.base_coco()
    data["annotations"].append(kit.polygon_annotation(7, 1, 2, kit.rect(14, 10, 18, 14)))  # a second Paper
    loaded = coco.load(make_dataset(data))
    instances = masks.instance_mask(loaded, loaded.images[0])
    expected = np.zeros((kit.HEIGHT, kit.WIDTH), np.int32)
    expected[0:10, 0:12] = 1    # the large Paper (area 120) first
    expected[4:8, 4:8] = 2      # Metal (area 16, annotation id 2) on top of it
    expected[10:14, 14:18] = 3  # the second Paper: also area 16, so after id 2 by its id 7
    np.testing.assert_array_equal(instances, expected)
    semantic = masks.semantic_mask(loaded, loaded.images[0])
    assert set(np.unique(semantic[instances == 3])) == {2}  # two Papers: one class, two instances
    assert set(np.unique(semantic[instances == 1])) == {2}
    # the class of each instance, in the same painting order: Paper, Metal, Paper
    assert masks.instance_classes(loaded, loaded.images[0]) == [2, 4, 2]


def test_equal_areas_are_painted_by_annotation_id(make_dataset, kit):
    data = kit.base_coco()
    data["annotations"] = [kit.polygon_annotation(9, 1, 5, kit.rect(0, 0, 6, 6)),
                           kit.polygon_annotation(3, 1, 7, kit.rect(3, 3, 9, 9))]
    loaded = coco.load(make_dataset(data))
    mask = masks.semantic_mask(loaded, loaded.images[0])
    assert mask[4, 4] == 5  # id 9 is painted after id 3
    assert mask[1, 1] == 5 and mask[8, 8] == 7


def test_crowd_and_void_category_pixels_get_ignore_index(make_dataset, kit):
    data = kit.base_coco()
    data["categories"].append({"id": 11, "name": "Void"})
    data["annotations"] = [kit.polygon_annotation(1, 1, 3, kit.rect(0, 0, 10, 10)),
                           kit.polygon_annotation(2, 1, 6, kit.rect(2, 2, 5, 5), iscrowd=1),
                           kit.polygon_annotation(3, 1, 11, kit.rect(12, 0, 14, 2))]
    loaded = coco.load(make_dataset(data))
    expected = np.zeros((kit.HEIGHT, kit.WIDTH), np.uint8)
    expected[0:10, 0:10] = 3
    expected[2:5, 2:5] = IGNORE_INDEX
    expected[0:2, 12:14] = IGNORE_INDEX
    np.testing.assert_array_equal(masks.semantic_mask(loaded, loaded.images[0]), expected)


def test_rle_and_multi_part_polygon_segmentations(make_dataset, kit):
    region = np.zeros((kit.HEIGHT, kit.WIDTH), np.uint8)
    region[3:9, 2:7] = 1
    region[5, 4] = 0  # a hole, which only RLE can hold
    compressed = mask_utils.encode(np.asfortranarray(region))["counts"].decode()
    flat = region.flatten(order="F")  # uncompressed RLE by hand: runs of the column-major bits
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    data = kit.base_coco()
    data["annotations"] = [
        {"id": 1, "image_id": 1, "category_id": 8, "iscrowd": 0, "area": 29.0,
         "segmentation": {"size": [kit.HEIGHT, kit.WIDTH], "counts": compressed}},
        {"id": 2, "image_id": 2, "category_id": 9, "iscrowd": 0, "area": 29.0,
         "segmentation": {"size": [kit.HEIGHT, kit.WIDTH], "counts": runs}},
        {"id": 3, "image_id": 3, "category_id": 10, "iscrowd": 0, "area": 8.0,
         "segmentation": [kit.rect(0, 0, 2, 2), kit.rect(10, 10, 12, 12)]},
    ]
    loaded = coco.load(make_dataset(data))
    np.testing.assert_array_equal(masks.semantic_mask(loaded, loaded.images[0]), region * 8)
    np.testing.assert_array_equal(masks.semantic_mask(loaded, loaded.images[1]), region * 9)
    expected = np.zeros_like(region)
    expected[0:2, 0:2] = expected[10:12, 10:12] = 10
    np.testing.assert_array_equal(masks.semantic_mask(loaded, loaded.images[2]), expected)


def test_other_classes_are_painted_with_their_own_ids(make_dataset, kit):
    data = kit.base_coco()
    data["categories"] = [{"id": 40, "name": "cat"}, {"id": 7, "name": "dog"}]
    data["annotations"] = [kit.polygon_annotation(1, 1, 40, kit.rect(0, 0, 3, 3)),
                           kit.polygon_annotation(2, 1, 7, kit.rect(5, 5, 9, 9))]
    loaded = coco.load(make_dataset(data))
    assert loaded.class_names == ("Background", "dog", "cat")
    mask = masks.semantic_mask(loaded, loaded.images[0])
    assert mask[1, 1] == 2 and mask[6, 6] == 1 and mask[12, 12] == 0


# --- cache --------------------------------------------------------------------------------

def _count_paints(monkeypatch):
    calls = []
    real = masks.semantic_mask

    def counting(coco_data, image):
        calls.append(image["id"])
        return real(coco_data, image)

    monkeypatch.setattr(masks, "semantic_mask", counting)
    return calls


def test_cache_paints_each_mask_once_across_epochs_and_runs(make_dataset, monkeypatch, tmp_path):
    ann_file = make_dataset()
    loaded = coco.load(ann_file)
    calls = _count_paints(monkeypatch)
    first = masks.MaskCache(loaded)
    epoch1 = [first.get(i) for i in range(len(loaded))]
    epoch2 = [first.get(i) for i in range(len(loaded))]
    later_run = masks.MaskCache(coco.load(ann_file))
    epoch3 = [later_run.get(i) for i in range(len(loaded))]
    assert calls == [1, 2, 3]
    for a, b, c, image in zip(epoch1, epoch2, epoch3, loaded.images):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        assert b.dtype == np.uint8 and b.shape == (image["height"], image["width"])
    key = hashlib.sha256(ann_file.read_bytes()).hexdigest()
    folder = tmp_path / "cache" / "masks" / f"{masks.CODE_VERSION}-{key}"
    assert sorted(p.name for p in folder.iterdir()) == ["1.png", "2.png", "3.png"]


def test_changed_annotation_file_gets_a_new_cache(make_dataset):
    ann_file = make_dataset()
    before = masks.MaskCache(coco.load(ann_file))
    before.warm()
    data = json.loads(ann_file.read_text())
    data["annotations"][1]["category_id"] = 9
    ann_file.write_text(json.dumps(data))
    after = masks.MaskCache(coco.load(ann_file))
    assert after.folder != before.folder
    assert after.get(0)[5, 5] == 9 and before.get(0)[5, 5] == 4


def test_damaged_cache_file_is_painted_again(make_dataset, monkeypatch):
    loaded = coco.load(make_dataset())
    cache = masks.MaskCache(loaded)
    good = cache.get(0)
    cache.path(0).write_bytes(b"not a png")
    calls = _count_paints(monkeypatch)
    np.testing.assert_array_equal(cache.get(0), good)
    assert calls == [1]
    assert not [p for p in cache.folder.iterdir() if p.suffix == ".tmp"]


def test_cache_root_order(tmp_path, monkeypatch):
    monkeypatch.setenv(masks.CACHE_ENV, str(tmp_path / "env-cache"))
    assert masks.cache_root(tmp_path) == tmp_path / "env-cache"
    monkeypatch.delenv(masks.CACHE_ENV)
    assert masks.cache_root(tmp_path) == tmp_path / ".segedu-cache"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    assert masks.cache_root(not_a_folder) == tmp_path / "home" / ".cache" / "segedu"


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "x.bin"
    fileio.write_bytes_atomic(target, b"old")
    with pytest.raises(TypeError):
        fileio.write_bytes_atomic(target, "not bytes")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


# --- item cache (decoded pixels + mask) -------------------------------------------------

def _planes(loaded, index):
    """Reference item: R, G, B planes read by PIL and the painted mask, (4, H, W) uint8."""
    from PIL import Image

    image = loaded.images[index]
    rgb = np.asarray(Image.open(loaded.image_path(image)).convert("RGB"))
    return np.concatenate([rgb.transpose(2, 0, 1), masks.semantic_mask(loaded, image)[None]])


def _counting_maker(loaded, index, calls):
    def make():
        calls.append(index)
        return _planes(loaded, index)
    return make


def test_item_cache_stores_a_standard_npy_once_and_reads_it_back(make_dataset, tmp_path):
    loaded = coco.load(make_dataset())
    calls = []
    first = masks.ItemCache(loaded, planes=4)
    got = [first.get(i, _counting_maker(loaded, i, calls)) for i in range(len(loaded))]
    later_run = masks.ItemCache(coco.load(loaded.ann_file), planes=4)
    again = [later_run.get(i, _counting_maker(loaded, i, calls)) for i in range(len(loaded))]
    assert calls == [0, 1, 2]
    for index, (a, b) in enumerate(zip(got, again)):
        expected = _planes(loaded, index)
        np.testing.assert_array_equal(b, expected)
        assert b.dtype == np.uint8 and b.flags.writeable
        on_disk = np.load(first.path(index))  # plain numpy can read it
        np.testing.assert_array_equal(on_disk, expected)
        saved = io.BytesIO()
        np.save(saved, expected)
        assert first.path(index).read_bytes() == saved.getvalue()  # H*W*4 bytes + the .npy header
    assert first.folder == tmp_path / "cache" / "items" / f"{masks.CODE_VERSION}-{loaded.sha256}"


def test_edited_image_is_read_again_and_its_old_file_removed(make_dataset, kit):
    loaded = coco.load(make_dataset())
    cache = masks.ItemCache(loaded, planes=4)
    old = cache.get(0, lambda: _planes(loaded, 0))
    image_file = loaded.image_path(loaded.images[0])
    kit.write_images(loaded.images_dir, {"images": loaded.images[:1]}, seed=1)  # new pixels, same size
    stat = image_file.stat()
    os.utime(image_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # an edit a second later
    calls = []
    new = masks.ItemCache(coco.load(loaded.ann_file), planes=4).get(0, _counting_maker(loaded, 0, calls))
    assert calls == [0]
    assert not np.array_equal(new[:3], old[:3])
    np.testing.assert_array_equal(new, _planes(loaded, 0))
    assert [p.name for p in cache.folder.iterdir()] == [cache.path(0).name]


@pytest.mark.parametrize("damage", [b"", b"not an npy", "truncated", "longer", "other shape"])
def test_damaged_item_file_is_made_again(make_dataset, damage):
    loaded = coco.load(make_dataset())
    cache = masks.ItemCache(loaded, planes=4)
    good = cache.get(1, lambda: _planes(loaded, 1))
    whole = cache.path(1).read_bytes()
    transposed = io.BytesIO()  # as many bytes, but a (4, W, H) array
    np.save(transposed, np.ascontiguousarray(good.transpose(0, 2, 1)))
    damaged = {"truncated": whole[:-1], "longer": whole + b"\0",
               "other shape": transposed.getvalue()}.get(damage, damage)
    cache.path(1).write_bytes(damaged)
    calls = []
    np.testing.assert_array_equal(cache.get(1, _counting_maker(loaded, 1, calls)), good)
    assert calls == [1]
    assert cache.path(1).read_bytes() == whole
    assert not [p for p in cache.folder.iterdir() if p.suffix == ".tmp"]


def test_unwritable_item_cache_warns_once_and_still_serves(make_dataset, tmp_path):
    loaded = coco.load(make_dataset())
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    cache = masks.ItemCache(loaded, planes=4, root=blocker)
    expected = [_planes(loaded, i) for i in range(len(loaded))]
    with pytest.warns(UserWarning) as warned:
        got = [cache.get(i, lambda i=i: expected[i]) for i in range(len(loaded))]
    ours = [w for w in warned if "cannot write the cache" in str(w.message)]
    assert len(ours) == 1 and str(blocker) in str(ours[0].message) and not cache.writable
    for planes, reference in zip(got, expected):
        np.testing.assert_array_equal(planes, reference)
