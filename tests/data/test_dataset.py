"""segedu.data.dataset: the course interface, clear errors at construction, reproducible loaders."""
from __future__ import annotations

import json
import multiprocessing
import os

import albumentations as A
import numpy as np
import pytest
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image
from torch.utils.data import Subset

from segedu.data import coco, masks
from segedu.data.dataset import CocoSegmentation, collate, make_loader
from segedu.errors import SegeduError


@pytest.fixture
def data_dir(make_dataset, kit):
    """train.json (base file), val.json (its second image), test.json (no annotations)."""
    train = make_dataset()
    data = kit.base_coco()
    val = {**data, "images": data["images"][1:2],
           "annotations": [a for a in data["annotations"] if a["image_id"] == 2]}
    (train.parent / "val.json").write_text(json.dumps(val))
    (train.parent / "test.json").write_text(json.dumps({"images": data["images"], "categories": data["categories"]}))
    return train.parent


def test_train_item_is_float_image_and_int64_mask(data_dir, kit):
    ds = CocoSegmentation(data_dir, mode="train")
    assert len(ds) == 3
    image, mask = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, kit.HEIGHT, kit.WIDTH)
    assert mask.dtype == torch.int64 and mask.shape == (kit.HEIGHT, kit.WIDTH)
    rgb = np.asarray(Image.open(data_dir / "batch_01_vt/0001.png").convert("RGB"))
    np.testing.assert_allclose(image.numpy(), rgb.transpose(2, 0, 1) / 255.0, atol=1e-6)
    loaded = coco.load(data_dir / "train.json")
    np.testing.assert_array_equal(mask.numpy(), masks.semantic_mask(loaded, loaded.images[0]))


def test_val_and_path_modes(data_dir):
    assert len(CocoSegmentation(data_dir, mode="val")) == 1
    by_path = CocoSegmentation(data_dir, mode=data_dir / "val.json")
    assert len(by_path) == 1 and not by_path.is_test


def test_test_mode_returns_file_names(data_dir, kit):
    ds = CocoSegmentation(data_dir, mode="test")
    image, name = ds[2]
    assert name == "batch_01_vt/0003.png" and image.shape == (3, kit.HEIGHT, kit.WIDTH)
    images, names = next(iter(make_loader(ds, batch_size=3)))
    assert images.shape == (3, 3, kit.HEIGHT, kit.WIDTH)
    assert names == [f"batch_01_vt/{i:04d}.png" for i in (1, 2, 3)]


def test_transform_gets_image_and_mask_together(data_dir):
    plain = CocoSegmentation(data_dir, mode="train")
    flipped = CocoSegmentation(data_dir, mode="train", transform=A.Compose([A.HorizontalFlip(p=1.0)]))
    image, mask = plain[0]
    f_image, f_mask = flipped[0]
    torch.testing.assert_close(f_image, image.flip(-1))
    torch.testing.assert_close(f_mask, mask.flip(-1))


def test_transform_ending_in_to_tensor(data_dir):
    normalise = A.Compose([A.Normalize(mean=(0.5,) * 3, std=(0.25,) * 3), ToTensorV2()])
    image, mask = CocoSegmentation(data_dir, mode="train", transform=normalise)[0]
    plain, plain_mask = CocoSegmentation(data_dir, mode="train")[0]
    torch.testing.assert_close(image, (plain - 0.5) / 0.25, atol=1e-5, rtol=0)
    assert mask.dtype == torch.int64 and torch.equal(mask, plain_mask)


def test_missing_folder_and_files_are_named(tmp_path, data_dir):
    with pytest.raises(SegeduError, match="does not exist.*train_all.json"):
        CocoSegmentation(tmp_path / "nowhere")
    (data_dir / "val.json").unlink()
    with pytest.raises(SegeduError) as err:
        CocoSegmentation(data_dir, mode="val")
    assert str(data_dir / "val.json") in str(err.value) and "test.json" in str(err.value)
    with pytest.raises(SegeduError, match="neither one of train, val, test"):
        CocoSegmentation(data_dir, mode="training")


def test_bad_annotations_fail_at_construction(data_dir):
    data = json.loads((data_dir / "train.json").read_text())
    data["annotations"][0]["segmentation"] = [[0, 0, 1]]
    (data_dir / "train.json").write_text(json.dumps(data))
    with pytest.raises(SegeduError, match=r"annotations\[0\] \(id 1\): segmentation polygon 0 has an odd"):
        CocoSegmentation(data_dir, mode="train")


def test_train_file_without_annotations_is_refused(data_dir):
    (data_dir / "train.json").write_text((data_dir / "test.json").read_text())
    with pytest.raises(SegeduError, match="has no 'annotations' section"):
        CocoSegmentation(data_dir, mode="train")


def test_loader_batches(data_dir, kit):
    images, batch_masks = next(iter(make_loader(CocoSegmentation(data_dir), batch_size=2)))
    assert images.shape == (2, 3, kit.HEIGHT, kit.WIDTH) and images.dtype == torch.float32
    assert batch_masks.shape == (2, kit.HEIGHT, kit.WIDTH) and batch_masks.dtype == torch.int64


def _epoch_fingerprint(loader):
    return [(images.sum().item(), m.sum().item()) for images, m in loader]


def test_loader_order_depends_only_on_the_seed(data_dir):
    ds = CocoSegmentation(data_dir)
    orders = {seed: [_epoch_fingerprint(make_loader(ds, 1, shuffle=True, seed=seed)) for _ in range(2)]
              for seed in range(4)}
    assert all(first == again for first, again in orders.values())
    assert len({str(first) for first, _ in orders.values()}) > 1  # 4 seeds, 6 orders: not all equal


def test_workers_give_the_same_batches_and_seeded_augmentations(data_dir):
    def run():  # a fresh Compose each time: its own generator starts from OS entropy
        augment = A.Compose([A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(p=0.5)])
        ds = Subset(CocoSegmentation(data_dir, transform=augment), [0, 1, 2])  # as a fold would be
        return _epoch_fingerprint(make_loader(ds, 1, shuffle=True, num_workers=2, seed=3))

    runs = [run(), run()]
    assert runs[0] == runs[1]
    plain = CocoSegmentation(data_dir)
    assert sorted(m for _, m in runs[0]) == sorted(
        m for _, m in _epoch_fingerprint(make_loader(plain, 1)))  # flips keep the class counts


def test_collate_refuses_images_of_different_sizes():
    batch = [(torch.zeros(3, 4, 4), torch.zeros(4, 4, dtype=torch.int64)),
             (torch.zeros(3, 5, 4), torch.zeros(5, 4, dtype=torch.int64))]
    with pytest.raises(SegeduError, match="differ in size"):
        collate(batch)


# --- decoded-item cache (cache_images) ------------------------------------------------------

def _reference_item(data_dir, index):
    """Item computed without segedu's caches: PIL pixels / 255 and the painted mask."""
    loaded = coco.load(data_dir / "train.json")
    record = loaded.images[index]
    rgb = np.asarray(Image.open(loaded.image_path(record)).convert("RGB"))
    return rgb.transpose(2, 0, 1) / 255.0, masks.semantic_mask(loaded, record)


def _assert_item(item, reference):
    np.testing.assert_allclose(item[0].numpy(), reference[0], atol=1e-6)
    np.testing.assert_array_equal(item[1].numpy(), reference[1])
    assert item[0].dtype == torch.float32 and item[1].dtype == torch.int64


@pytest.mark.parametrize("cache_images", [True, False])
def test_items_with_and_without_the_image_cache_agree(data_dir, tmp_path, monkeypatch, cache_images):
    references = [_reference_item(data_dir, index) for index in range(3)]
    first = CocoSegmentation(data_dir, cache_images=cache_images)
    for index, reference in enumerate(references):  # a first run: the cache is empty
        _assert_item(first[index], reference)
    assert (tmp_path / "cache" / "items").exists() == cache_images
    if cache_images:  # a later run reads everything from the cache, decodes and paints nothing
        def no_decoding(*args):
            raise AssertionError("decoded although cached")
        monkeypatch.setattr("segedu.data.dataset.read_image", no_decoding)
        monkeypatch.setattr(masks, "semantic_mask", no_decoding)
    later = CocoSegmentation(data_dir, cache_images=cache_images)
    flipped = CocoSegmentation(data_dir, cache_images=cache_images, transform=A.Compose([A.HorizontalFlip(p=1.0)]))
    for index, reference in enumerate(references):
        _assert_item(later[index], reference)
        f_image, f_mask = flipped[index]
        np.testing.assert_allclose(f_image.numpy(), reference[0][..., ::-1], atol=1e-6)
        np.testing.assert_array_equal(f_mask.numpy(), reference[1][..., ::-1])


def test_test_mode_items_are_cached_without_a_mask(data_dir, kit):
    first = [CocoSegmentation(data_dir, mode="test")[index] for index in range(3)]  # fills the cache
    later = CocoSegmentation(data_dir, mode="test")
    for index, (image, name) in enumerate(first):
        rgb = np.asarray(Image.open(data_dir / name).convert("RGB")).transpose(2, 0, 1) / 255.0
        again, again_name = later[index]
        np.testing.assert_allclose(image.numpy(), rgb, atol=1e-6)
        np.testing.assert_allclose(again.numpy(), rgb, atol=1e-6)
        assert again_name == name
    assert np.load(later.items.path(0)).shape == (3, kit.HEIGHT, kit.WIDTH)


def test_edited_image_is_not_served_stale(data_dir, kit):
    CocoSegmentation(data_dir)[0]  # cached
    image_file = data_dir / "batch_01_vt/0001.png"
    kit.write_images(data_dir, {"images": kit.base_coco()["images"][:1]}, seed=5)  # new pixels, same size
    stat = image_file.stat()
    os.utime(image_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # saved a second later
    _assert_item(CocoSegmentation(data_dir)[0], _reference_item(data_dir, 0))


def test_changed_annotation_file_is_not_served_stale(data_dir):
    before = CocoSegmentation(data_dir)[0][1]
    data = json.loads((data_dir / "train.json").read_text())
    data["annotations"][1]["category_id"] = 9  # the Metal square becomes Battery
    (data_dir / "train.json").write_text(json.dumps(data))
    after = CocoSegmentation(data_dir)[0][1]
    assert before[5, 5] == 4 and after[5, 5] == 9
    _assert_item(CocoSegmentation(data_dir)[0], _reference_item(data_dir, 0))


def _all_items(dataset):
    return [tuple(t.numpy() for t in dataset[index]) for index in range(len(dataset))]


def test_processes_filling_the_cache_at_once_agree(data_dir):
    dataset = CocoSegmentation(data_dir)  # cache empty: every process decodes and writes every item
    with multiprocessing.get_context("fork").Pool(3) as pool:
        runs = pool.map(_all_items, [dataset] * 6)
    for run in runs + [_all_items(CocoSegmentation(data_dir))]:
        for index, (image, mask) in enumerate(run):
            reference = _reference_item(data_dir, index)
            np.testing.assert_allclose(image, reference[0], atol=1e-6)
            np.testing.assert_array_equal(mask, reference[1])
    names = sorted(p.name for p in dataset.items.folder.iterdir())
    assert names == sorted(dataset.items.path(i).name for i in range(3))  # one file each, no temp files
