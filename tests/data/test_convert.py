"""segedu.data.convert: index-colour masks -> COCO -> segedu masks must give the masks back exactly."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from segedu import cli
from segedu.data import coco, convert, masks
from segedu.data.classes import CLASSES, IGNORE_INDEX, PALETTE
from segedu.errors import SegeduError


def random_mask(rng, height, width, num_classes, ignore):
    """Overlapping blobs of random classes with holes, single pixels, touching regions and void."""
    mask = np.zeros((height, width), np.uint8)
    for _ in range(int(rng.integers(3, 9))):
        value = int(rng.integers(1, num_classes))
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            cv2.rectangle(mask, (x0, y0), (x0 + int(rng.integers(1, 12)), y0 + int(rng.integers(1, 12))), value, -1)
        else:
            cv2.circle(mask, (x0, y0), int(rng.integers(1, 8)), value, -1)
        if rng.random() < 0.5:  # a hole
            mask[y0:y0 + 2, x0:x0 + 2] = 0
    mask[: height // 4, : width // 4] = np.arange(width // 4) % num_classes  # touching 1-px stripes
    speckle = rng.random((height, width)) < 0.02
    mask[speckle] = rng.integers(0, num_classes, speckle.sum())
    if ignore is not None:
        mask[rng.random((height, width)) < 0.03] = ignore
        cv2.circle(mask, (width - 5, height - 5), 3, ignore, -1)
    return mask


def write_pairs(root, mask_list, palette: bool):
    images, mask_dir = root / "images", root / "masks"
    images.mkdir(parents=True)
    mask_dir.mkdir()
    rng = np.random.default_rng(1)
    for k, mask in enumerate(mask_list):
        Image.fromarray(rng.integers(0, 256, (*mask.shape, 3), dtype=np.uint8)).save(images / f"img_{k}.jpg")
        im = Image.fromarray(mask)
        if palette:  # an 'L' image with a palette attached becomes 'P' with the same indices
            im.putpalette(np.resize(PALETTE, (256, 3)).ravel().tolist())
            assert im.mode == "P"
        im.save(mask_dir / f"img_{k}.png")
    return images, mask_dir


@pytest.mark.parametrize("ignore,palette", [(IGNORE_INDEX, True), (200, False), (None, False)])
def test_round_trip_is_exact(tmp_path, monkeypatch, ignore, palette):
    monkeypatch.setenv("SEGEDU_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    originals = [random_mask(rng, 24, 32, len(CLASSES), ignore) for _ in range(6)]
    images, mask_dir = write_pairs(tmp_path / "ds", originals, palette)
    out = convert.coco_from_masks(images, mask_dir, list(CLASSES), tmp_path / "ds" / "train.json", ignore=ignore)
    assert coco.validate(out).ok
    loaded = coco.load(out)
    for image, original in zip(loaded.images, originals):
        expected = original.copy()
        if ignore is not None:
            expected[original == ignore] = IGNORE_INDEX
        np.testing.assert_array_equal(masks.semantic_mask(loaded, image), expected)
        assert image["file_name"].startswith("images/img_")


def test_polygons_where_exact_rle_for_holes(tmp_path):
    solid = np.zeros((16, 20), np.uint8)
    solid[2:9, 3:11] = 1
    cv2.circle(solid, (15, 10), 3, 2, -1)
    ring = np.zeros((16, 20), np.uint8)
    ring[2:12, 2:12] = 3
    ring[5:8, 5:8] = 0
    images, mask_dir = write_pairs(tmp_path, [solid, ring], palette=False)
    out = convert.coco_from_masks(images, mask_dir, "Background,a,b,c", tmp_path / "out.json")
    anns = {a["category_id"]: a for a in json.loads(out.read_text())["annotations"]}
    assert isinstance(anns[1]["segmentation"], list) and isinstance(anns[2]["segmentation"], list)
    assert isinstance(anns[3]["segmentation"], dict)
    assert anns[1]["area"] == 7 * 8 and anns[1]["bbox"] == [3, 2, 8, 7]
    assert anns[3]["area"] == 100 - 9


def test_classes_from_list_string_and_file(tmp_path):
    names_file = tmp_path / "classes.txt"
    names_file.write_text("background\ncat\n\ndog\n")
    assert convert.parse_classes(["background", "cat", "dog"]) == ["background", "cat", "dog"]
    assert convert.parse_classes("background, cat,dog") == ["background", "cat", "dog"]
    assert convert.parse_classes(str(names_file)) == ["background", "cat", "dog"]
    with pytest.raises(SegeduError, match="background name first"):
        convert.parse_classes("background")
    with pytest.raises(SegeduError, match="mean 'void'"):
        convert.parse_classes("background,void,cat")


def test_other_class_names_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGEDU_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(5)
    originals = [random_mask(rng, 20, 20, 4, None) for _ in range(2)]
    images, mask_dir = write_pairs(tmp_path, originals, palette=True)
    out = convert.coco_from_masks(images, mask_dir, "bg,cat,dog,eel", tmp_path / "out.json")
    loaded = coco.load(out)
    assert loaded.class_names == ("Background", "cat", "dog", "eel")
    for image, original in zip(loaded.images, originals):
        np.testing.assert_array_equal(masks.semantic_mask(loaded, image), original)


def test_value_beyond_the_classes_names_file_and_value(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[1, 1] = 7
    mask[2, 2] = 255
    images, mask_dir = write_pairs(tmp_path, [mask], palette=False)
    with pytest.raises(SegeduError) as err:
        convert.coco_from_masks(images, mask_dir, "bg,a,b", tmp_path / "out.json", ignore=255)
    assert str(mask_dir / "img_0.png") in str(err.value) and "[7]" in str(err.value)
    with pytest.raises(SegeduError, match=r"\[7, 255\].*--ignore"):
        convert.coco_from_masks(images, mask_dir, "bg,a,b", tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_bad_inputs_are_explained(tmp_path):
    images, mask_dir = write_pairs(tmp_path, [np.zeros((8, 8), np.uint8)] * 2, palette=False)
    Image.new("RGB", (8, 8)).save(mask_dir / "img_1.png")
    with pytest.raises(SegeduError, match="mode 'RGB'"):
        convert.coco_from_masks(images, mask_dir, "bg,a", tmp_path / "out.json")
    (mask_dir / "img_1.png").unlink()
    with pytest.raises(SegeduError, match="img_1.jpg has no mask"):
        convert.coco_from_masks(images, mask_dir, "bg,a", tmp_path / "out.json")
    Image.new("L", (9, 8)).save(mask_dir / "img_1.png")
    with pytest.raises(SegeduError, match="is 9x8 but its image"):
        convert.coco_from_masks(images, mask_dir, "bg,a", tmp_path / "out.json")
    with pytest.raises(SegeduError, match="also the id of class"):
        convert.coco_from_masks(images, mask_dir, "bg,a", tmp_path / "out.json", ignore=1)


def test_cli_coco_from_masks(tmp_path, capsys):
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 1
    images, mask_dir = write_pairs(tmp_path, [mask], palette=False)
    out = tmp_path / "cli.json"
    assert cli.main(["coco-from-masks", "--images", str(images), "--masks", str(mask_dir),
                     "--classes", "bg,box", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert coco.validate(out).ok


@pytest.mark.parametrize("which", ["image", "mask"])
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_or_mask_is_named_and_nothing_is_written(tmp_path, capsys, which, damage):
    mask = np.zeros((16, 16), np.uint8)
    mask[2:5, 2:5] = 1
    images, mask_dir = write_pairs(tmp_path, [mask, mask], palette=False)
    bad = images / "img_1.jpg" if which == "image" else mask_dir / "img_1.png"
    data = bad.read_bytes()
    bad.write_bytes(b"not an image at all" if damage == "garbage" else data[: len(data) // 2])
    out = tmp_path / "out.json"
    code = cli.main(["coco-from-masks", "--images", str(images), "--masks", str(mask_dir), "--classes", "bg,box",
                     "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"segedu: error: {bad}: the {which} cannot be read (") and len(err.splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".json" or p.name.startswith(".")] == []


def test_out_must_lie_above_the_images(tmp_path):
    images, mask_dir = write_pairs(tmp_path / "ds", [np.zeros((8, 8), np.uint8)], palette=False)
    with pytest.raises(SegeduError, match=r"not inside .*annotations; write --out into .*ds or a folder above it"):
        convert.coco_from_masks(images, mask_dir, "bg,a", tmp_path / "ds" / "annotations" / "train.json")
    assert not (tmp_path / "ds" / "annotations").exists()


def test_class_names_that_are_the_same_to_segedu_are_refused():
    with pytest.raises(SegeduError, match=r"'Paper pack' and 'paper_pack' are the same name to segedu"):
        convert.parse_classes("bg,Paper pack,paper_pack")
