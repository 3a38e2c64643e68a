"""segedu.data.coco: every malformed case gives one clear line (file, record, problem), never a traceback."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from segedu import cli
from segedu.data import coco
from segedu.data.classes import CLASSES, IGNORE_INDEX
from segedu.errors import SegeduError


def _width(c):
    return c["images"][0]["width"]


def _set(path, value):
    """A mutation setting coco[path[0]][path[1]]...[path[-1]] = value."""
    def mutate(c):
        target = c
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _delete(path):
    def mutate(c):
        target = c
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return mutate


def _polygon(values):
    return _set(("annotations", 0, "segmentation"), [values])


def _rle(size_and_counts):
    """A mutation giving annotation 2 the RLE ``size_and_counts(height, width)`` of image 2."""
    def mutate(c):
        size, counts = size_and_counts(c["images"][1]["height"], c["images"][1]["width"])
        c["annotations"][2]["segmentation"] = {"size": size, "counts": counts}
    return mutate


# (mutation of base_coco(), record the message must name, problem text it must contain)
CASES = {
    "missing images section": (_delete(("images",)), "images", "section missing"),
    "missing categories section": (_delete(("categories",)), "categories", "section missing"),
    "section of wrong type": (_set(("annotations",), {}), "annotations", "must be a list, got a JSON object"),
    "images not a list": (_set(("images",), "x"), "images", "must be a list, got a JSON string"),
    "image record not an object": (_set(("images", 2), 7), "images[2]", "must be an object"),
    "duplicate image id": (_set(("images", 2, "id"), 1), "images[2] (id 1)", "duplicate image id 1"),
    "duplicate annotation id": (_set(("annotations", 3, "id"), 2), "annotations[3] (id 2)",
                                "duplicate annotation id 2"),
    "duplicate category id": (_set(("categories", 1, "id"), 1), "categories[1] (id 1)",
                              "duplicate category id 1"),
    "image without id": (_delete(("images", 2, "id")), "images[2]", "has no integer 'id'"),
    "image without file_name": (_delete(("images", 2, "file_name")), "images[2] (id 3)", "has no 'file_name'"),
    "image without width": (_delete(("images", 2, "width")), "images[2] (id 3)", "has no 'width'"),
    "image without height": (_delete(("images", 2, "height")), "images[2] (id 3)", "has no 'height'"),
    "image of zero height": (_set(("images", 2, "height"), 0), "images[2] (id 3)",
                             "'height' must be a positive integer, got 0"),
    "image of negative width": (_set(("images", 2, "width"), -5), "images[2] (id 3)",
                                "'width' must be a positive integer, got -5"),
    "duplicate file name": (_set(("images", 2, "file_name"), "batch_01_vt/0001.png"), "images[2] (id 3)",
                            "duplicate file_name 'batch_01_vt/0001.png' (also images[0])"),
    "unknown image id": (_set(("annotations", 1, "image_id"), 99), "annotations[1] (id 2)",
                         "refers to unknown image id 99"),
    "unknown category id": (_set(("annotations", 1, "category_id"), 11), "annotations[1] (id 2)",
                            "refers to unknown category id 11"),
    "annotation without id": (_delete(("annotations", 1, "id")), "annotations[1]", "has no integer 'id'"),
    "segmentation missing": (_delete(("annotations", 1, "segmentation")), "annotations[1] (id 2)",
                             "has no 'segmentation'"),
    "segmentation of wrong type": (_set(("annotations", 1, "segmentation"), 3), "annotations[1] (id 2)",
                                   "'segmentation' must be a list of polygons or an RLE object"),
    "segmentation empty": (_set(("annotations", 1, "segmentation"), []), "annotations[1] (id 2)",
                           "'segmentation' is an empty list"),
    "polygon with odd coordinates": (_polygon([0, 0, 5, 0, 5, 5, 0]), "annotations[0] (id 1)",
                                     "polygon 0 has an odd number of coordinates (7)"),
    "polygon with 2 points": (_polygon([0, 0, 5, 5]), "annotations[0] (id 1)",
                              "polygon 0 has 2 point(s); a polygon needs at least 3"),
    "polygon with NaN": (_polygon([0, 0, float("nan"), 0, 5, 5]), "annotations[0] (id 1)",
                         "polygon 0 has NaN or infinite coordinates"),
    "polygon with inf": (_polygon([0, 0, float("inf"), 0, 5, 5]), "annotations[0] (id 1)",
                         "polygon 0 has NaN or infinite coordinates"),
    "polygon with a string": (_polygon([0, 0, "5", 0, 5, 5]), "annotations[0] (id 1)",
                              "polygon 0 has non-numeric coordinates"),
    "polygon part not a list": (_set(("annotations", 0, "segmentation"), [3]), "annotations[0] (id 1)",
                                "polygon 0 must be a list of numbers"),
    "polygon outside the image": (lambda c: _polygon([0, 0, _width(c) + 1.5, 0, 5, 5])(c), "annotations[0] (id 1)",
                                  "polygon 0 has points outside the {w}x{h} image"),
    "polygon above the image": (_polygon([0, -2, 5, 0, 5, 5]), "annotations[0] (id 1)",
                                "has points outside"),
    "RLE of another size": (_rle(lambda h, w: ([h, w + 1], [h * (w + 1)])), "annotations[2] (id 3)",
                            "RLE size [{h}, {w1}] differs from the image size [{h}, {w}]"),
    "RLE counts not covering the image": (_rle(lambda h, w: ([h, w], [10, 20])), "annotations[2] (id 3)",
                                          "RLE 'counts' cover 30 pixels; size [{h}, {w}] has {hw}"),
    "RLE counts negative": (_rle(lambda h, w: ([h, w], [h * w + 5, -5])), "annotations[2] (id 3)",
                            "negative run lengths"),
    "RLE counts of wrong type": (_rle(lambda h, w: ([h, w], 12)), "annotations[2] (id 3)",
                                 "RLE 'counts' must be a list of integers or a compressed RLE string"),
    "RLE compressed string garbage": (_rle(lambda h, w: ([h, w], "\x01\x02")), "annotations[2] (id 3)",
                                      "not a valid compressed COCO RLE string"),
    "RLE without size": (_set(("annotations", 2, "segmentation"), {"counts": [1]}), "annotations[2] (id 3)",
                         "RLE 'size' must be [height, width]"),
    "bbox of wrong length": (_set(("annotations", 1, "bbox"), [1, 2, 3]), "annotations[1] (id 2)",
                             "'bbox' must be [x, y, width, height]"),
    "bbox of negative size": (_set(("annotations", 1, "bbox"), [1, 2, -3, 4]), "annotations[1] (id 2)",
                              "'bbox' has a negative width or height"),
    "area negative": (_set(("annotations", 1, "area"), -1), "annotations[1] (id 2)", "'area' is negative"),
    "area not a number": (_set(("annotations", 1, "area"), "big"), "annotations[1] (id 2)",
                          "'area' must be a finite number, got 'big'"),
    "iscrowd not 0/1": (_set(("annotations", 1, "iscrowd"), 2), "annotations[1] (id 2)",
                        "'iscrowd' must be 0 or 1, got 2"),
    "category without name": (_delete(("categories", 3, "name")), "categories[3] (id 4)", "has no 'name'"),
    "category with blank name": (_set(("categories", 3, "name"), " "), "categories[3] (id 4)", "has no 'name'"),
    "category without id": (_delete(("categories", 3, "id")), "categories[3]", "has no integer 'id'"),
    "empty category list": (_set(("categories",), []), "categories", "the list is empty"),
    "duplicate category name": (_set(("categories", 3, "name"), "PA per"), "categories[3] (id 4)",
                                "duplicate category name 'PA per': categories[1] (id 2) 'Paper' has the same name"),
    "file_name with ..": (_set(("images", 2, "file_name"), "batch_01_vt/../../0003.png"), "images[2] (id 3)",
                          "file_name 'batch_01_vt/../../0003.png' has a '..' component"),
    "file_name starting with ..": (_set(("images", 2, "file_name"), "../0003.png"), "images[2] (id 3)",
                                   "has a '..' component"),
    "file_name a Windows absolute path": (_set(("images", 2, "file_name"), "C:\\data\\0003.png"),
                                          "images[2] (id 3)", "is an absolute path"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_malformed_case_names_file_record_and_problem(make_dataset, kit, case):
    mutate, record, problem = CASES[case]
    problem = problem.format(w=kit.WIDTH, h=kit.HEIGHT, w1=kit.WIDTH + 1, hw=kit.WIDTH * kit.HEIGHT)
    data = kit.base_coco()
    mutate(data)
    ann_file = make_dataset(data)
    report = coco.validate(ann_file)
    assert not report.ok
    expected_prefix = f"{ann_file}: {record}: "
    matching = [p for p in report.problems if p.startswith(expected_prefix) and problem in p]
    assert matching, f"no problem {expected_prefix}...{problem}... in {report.problems}"
    with pytest.raises(SegeduError) as err:
        coco.load(ann_file)
    assert matching[0] in str(err.value)


def test_broken_json_reports_line_and_column(make_dataset):
    # the second comma on line 2 sits at column 16: two spaces, '"images":' (9), a space, '[1,'
    ann_file = make_dataset(text='{\n  "images": [1,,2]\n}')
    report = coco.validate(ann_file)
    assert report.problems == [f"{ann_file}: line 2, column 16: broken JSON: Expecting value"]


def test_top_level_not_an_object(make_dataset):
    ann_file = make_dataset(text="[]")
    (problem,) = coco.validate(ann_file).problems
    assert problem.startswith(f"{ann_file}: top level is a JSON array")


def test_missing_file_and_folder(tmp_path):
    assert coco.validate(tmp_path / "nope.json").problems == [f"{tmp_path / 'nope.json'}: does not exist"]
    assert "is a folder" in coco.validate(tmp_path).problems[0]


def test_image_file_missing(make_dataset):
    ann_file = make_dataset()
    (ann_file.parent / "batch_01_vt/0002.png").unlink()
    (problem,) = coco.validate(ann_file).problems
    assert problem.startswith(f"{ann_file}: images[1] (id 2): image file ")
    assert problem.endswith("0002.png not found")
    assert coco.validate(ann_file, check_images=False).ok


def test_image_file_corrupt(make_dataset):
    ann_file = make_dataset()
    (ann_file.parent / "batch_01_vt/0002.png").write_bytes(b"\x89PNG not really" * 10)
    (problem,) = coco.validate(ann_file).problems
    assert problem.startswith(f"{ann_file}: images[1] (id 2): image file ")
    assert "is unreadable" in problem


def test_image_file_of_another_size(make_dataset, kit):
    ann_file = make_dataset()
    Image.new("RGB", (kit.WIDTH + 3, kit.HEIGHT)).save(ann_file.parent / "batch_01_vt/0003.png")
    (problem,) = coco.validate(ann_file).problems
    assert problem.startswith(f"{ann_file}: images[2] (id 3): image file ")
    assert f"is {kit.WIDTH + 3}x{kit.HEIGHT} but the JSON says {kit.WIDTH}x{kit.HEIGHT}" in problem


def test_images_dir_defaults_to_json_folder_and_can_be_given(make_dataset, tmp_path):
    ann_file = make_dataset()
    moved = tmp_path / "elsewhere.json"
    moved.write_bytes(ann_file.read_bytes())
    assert not coco.validate(moved).ok  # images are not next to it
    assert coco.validate(moved, images_dir=ann_file.parent).ok


def test_no_annotation_section_is_a_valid_test_file(make_dataset, kit):
    data = kit.base_coco()
    del data["annotations"]
    report = coco.validate(make_dataset(data, name="test.json"))
    assert report.ok and not report.summary.has_annotations
    assert "no annotations section" in report.render()


def test_points_within_one_pixel_of_the_border_are_accepted(make_dataset, kit):
    data = kit.base_coco()
    data["annotations"][0]["segmentation"] = [[-1, -1, kit.WIDTH + 1, -0.5, kit.WIDTH + 1, kit.HEIGHT + 1]]
    assert coco.validate(make_dataset(data)).ok


def test_valid_rle_segmentations_are_accepted(make_dataset, kit):
    region = np.zeros((kit.HEIGHT, kit.WIDTH), np.uint8)
    region[3:9, 2:7] = 1
    compressed = mask_utils.encode(np.asfortranarray(region))
    data = kit.base_coco()
    data["annotations"][2]["segmentation"] = {"size": [kit.HEIGHT, kit.WIDTH], "counts": compressed["counts"].decode()}
    # uncompressed: column-major runs, starting with a run of zeros
    runs = [2 * kit.HEIGHT + 3] + [6, kit.HEIGHT - 6] * 4 + [6, kit.HEIGHT - 9 + kit.HEIGHT * (kit.WIDTH - 7)]
    assert sum(runs) == kit.HEIGHT * kit.WIDTH
    data["annotations"][3]["segmentation"] = {"size": [kit.HEIGHT, kit.WIDTH], "counts": runs}
    assert coco.validate(make_dataset(data)).ok


def test_compressed_rle_counts_decode_like_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(20):
        region = (rng.random((13, 9)) < rng.random()).astype(np.uint8)
        compressed = mask_utils.encode(np.asfortranarray(region))["counts"].decode()
        counts = coco.rle_string_counts(compressed)
        # independent reference: run lengths of the column-major bits, starting with zeros
        flat = region.flatten(order="F")
        edges = np.flatnonzero(np.diff(flat)) + 1
        runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
        if flat[0] == 1:
            runs = [0] + runs
        assert counts == runs


def test_many_problems_are_all_reported_and_load_lists_twenty(make_dataset, kit):
    data = kit.base_coco()
    data["annotations"] = [kit.polygon_annotation(100 + k, 1, 2, kit.rect(0, 0, 4, 4)) for k in range(30)]
    for ann in data["annotations"]:
        ann["iscrowd"] = 7
    ann_file = make_dataset(data)
    assert len(coco.validate(ann_file).problems) == 30
    with pytest.raises(SegeduError) as err:
        coco.load(ann_file)
    message = str(err.value)
    assert message.count("'iscrowd' must be 0 or 1") == coco.MAX_LISTED
    assert message.endswith(f"... and {30 - coco.MAX_LISTED} more")


def test_summary_counts(make_dataset, kit):
    report = coco.validate(make_dataset())
    assert report.ok
    s = report.summary
    data = kit.base_coco()
    assert (s.images, s.annotations, s.empty_images) == (3, 4, 1)
    expected = {name: sum(a["category_id"] == i for a in data["annotations"])
                for i, name in enumerate(CLASSES) if i}
    assert s.annotations_per_category == expected
    text = report.render()
    assert "OK" in text and "Paper" in text and len(text.splitlines()) < 25


def test_cli_validate_coco_exit_status(make_dataset, capsys, kit):
    good = make_dataset()
    assert cli.main(["validate-coco", str(good)]) == 0
    data = kit.base_coco()
    data["annotations"][0]["area"] = -3
    bad = make_dataset(data, name="bad.json")
    assert cli.main(["validate-coco", str(bad)]) == 1
    assert f"{bad}: annotations[0] (id 1): 'area' is negative" in capsys.readouterr().out


def test_load_indexes_images_in_file_order(make_dataset, kit):
    data = kit.base_coco()
    data["images"].reverse()
    loaded = coco.load(make_dataset(data))
    assert [img["id"] for img in loaded.images] == [3, 2, 1]
    assert [a["id"] for a in loaded.annotations(loaded.images[2])] == [1, 2]
    assert loaded.annotations(loaded.images[0]) == []
    assert loaded.category_to_class == {i: i for i in range(1, 11)}
    assert loaded.class_names == CLASSES


def test_competition_names_map_by_name_ignoring_case_and_spaces():
    categories = [{"id": 1, "name": "paper  PACK"}, {"id": 2, "name": "Battery"}, {"id": 9, "name": "general_trash"}]
    mapping, names = coco.class_mapping(categories)
    assert mapping == {1: CLASSES.index("Paper pack"), 2: CLASSES.index("Battery"), 9: 1}
    assert names == CLASSES


def test_other_classes_become_1_to_k_in_category_id_order():
    categories = [{"id": 5, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 7, "name": "void"},
                  {"id": 3, "name": "Paper"}]
    mapping, names = coco.class_mapping(categories)
    assert mapping == {2: 1, 3: 2, 5: 3, 7: IGNORE_INDEX}
    assert names == ("Background", "dog", "Paper", "cat")


def test_junk_records_give_problems_not_exceptions(make_dataset):
    junk = {"images": [{"id": [1]}, {"id": {"a": 1}, "width": "x"}, None],
            "categories": [{"id": 1, "name": 3}],
            "annotations": [{"id": 1, "image_id": [1], "category_id": {}, "segmentation": [[[1, 2]]],
                             "area": "big", "bbox": ["a", 1, 2, 3], "iscrowd": True}, "x"]}
    report = coco.validate(make_dataset(junk, name="junk.json"))
    assert len(report.problems) >= 10
    assert all(p.startswith(f"{report.ann_file}: ") for p in report.problems)


def test_absolute_file_name_is_a_problem_even_when_the_file_exists(make_dataset):
    ann_file = make_dataset()
    data = json.loads(ann_file.read_text())
    absolute = str(ann_file.parent / data["images"][1]["file_name"])
    data["images"][1]["file_name"] = absolute
    ann_file.write_text(json.dumps(data))
    (problem,) = coco.validate(ann_file).problems
    assert problem == (f"{ann_file}: images[1] (id 2): file_name {absolute!r} is an absolute path; file names "
                       "are relative to the images folder (--images), so that a dataset can move")


def test_one_problem_gives_a_one_line_error(make_dataset, kit):
    data = kit.base_coco()
    data["annotations"][1]["iscrowd"] = 2
    ann_file = make_dataset(data)
    with pytest.raises(SegeduError) as err:
        coco.load(ann_file)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{ann_file}: annotations[1] (id 2): 'iscrowd' must be 0 or 1, got 2")
    assert f"segedu validate-coco {ann_file}`" in message
    data["annotations"][0]["iscrowd"] = 3  # two problems: the head line and the list
    with pytest.raises(SegeduError) as err:
        coco.load(make_dataset(data, name="two.json"))
    assert str(err.value).splitlines()[0].endswith("to list them all:") and len(str(err.value).splitlines()) == 3


def test_missing_area_is_computed_with_pycocotools_and_noted(make_dataset, kit, capsys):
    data = kit.base_coco()
    region = np.zeros((kit.HEIGHT, kit.WIDTH), np.uint8)
    region[3:9, 2:7] = 1
    compressed = mask_utils.encode(np.asfortranarray(region))
    data["annotations"][2]["segmentation"] = {"size": [kit.HEIGHT, kit.WIDTH], "counts": compressed["counts"].decode()}
    for ann in data["annotations"][1:3]:
        del ann["area"]
    ann_file = make_dataset(data)
    report = coco.validate(ann_file)
    assert report.ok, report.problems
    assert report.notes == ["2 annotation(s) had no area; computed with pycocotools"]
    assert "note: 2 annotation(s) had no area; computed with pycocotools" in report.render()
    loaded = coco.load(ann_file)
    by_id = {a["id"]: a for image in loaded.images for a in loaded.annotations(image)}
    assert by_id[2]["area"] == 16.0  # rect(4, 4, 8, 8) along pixel edges: 4 x 4 pixels
    assert by_id[3]["area"] == 30.0  # the RLE's 6 x 5 pixels
    assert by_id[1]["area"] == data["annotations"][0]["area"]  # a present area is kept
    assert cli.main(["validate-coco", str(ann_file)]) == 0
    assert "2 annotation(s) had no area; computed with pycocotools" in capsys.readouterr().out


def test_missing_area_of_a_broken_segmentation_is_not_computed(make_dataset, kit):
    data = kit.base_coco()
    data["annotations"][1]["segmentation"] = [[0, 0, 5]]
    del data["annotations"][1]["area"]
    report = coco.validate(make_dataset(data))
    assert len(report.problems) == 1 and "odd number of coordinates" in report.problems[0]
    assert report.notes == []


def test_unreadable_annotation_file_is_a_problem_not_a_traceback(make_dataset, monkeypatch):
    ann_file = make_dataset()
    real = type(ann_file).read_bytes

    def read_bytes(self):
        if self == ann_file:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(type(ann_file), "read_bytes", read_bytes)  # root reads a chmod 000 file anyway
    (problem,) = coco.validate(ann_file).problems
    assert problem == f"{ann_file}: cannot be read (Permission denied); check the file and its permissions"
    with pytest.raises(SegeduError) as err:
        coco.load(ann_file)
    assert "\n" not in str(err.value) and str(err.value).startswith(problem)


def test_annotation_file_not_utf8_is_named(make_dataset):
    ann_file = make_dataset(text="")
    ann_file.write_bytes(b'{"images": "\xff\xfe"}')
    (problem,) = coco.validate(ann_file).problems
    assert problem == f"{ann_file}: byte 12: not UTF-8 text; a COCO file is UTF-8 JSON"
    with pytest.raises(SegeduError, match="not UTF-8 text"):
        coco.load(ann_file)


def test_annotation_path_that_is_a_folder_is_named(tmp_path):
    folder = tmp_path / "train.json"
    folder.mkdir()
    with pytest.raises(SegeduError) as err:
        coco.load(folder)
    assert str(err.value).startswith(f"{folder}: is a folder, not a JSON file")


def test_unreadable_image_file_names_the_image_record(make_dataset, monkeypatch):
    import PIL.Image

    ann_file = make_dataset()
    target = ann_file.parent / "batch_01_vt/0003.png"
    real = PIL.Image.open

    def open_(path, *args, **kwargs):
        if str(path) == str(target):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", open_)
    (problem,) = coco.validate(ann_file).problems
    assert problem.startswith(f"{ann_file}: images[2] (id 3): image file {target} is unreadable (PermissionError")
    with pytest.raises(SegeduError, match=r"images\[2\] \(id 3\): image file .* is unreadable"):
        coco.load(ann_file)


def test_validate_data_checks_a_parsed_dict_and_names_the_file(kit, tmp_path):
    data = kit.base_coco()
    data["annotations"][0]["category_id"] = 42
    report = coco.validate_data(data, tmp_path / "x.json", check_images=False)
    assert report.problems == [f"{tmp_path / 'x.json'}: annotations[0] (id 1): refers to unknown category id 42"]
    with pytest.raises(SegeduError, match="refers to unknown category id 42"):
        raise report.error()


def _random_checkpoint(path, data_dir):
    """A tiny FCN checkpoint as the trainer writes it (random weights: only the data checks matter here)."""
    import dataclasses

    import torch

    from segedu import models
    from segedu.engine import TrainConfig, checkpoint

    config = TrainConfig(model="fcn8s", model_options={"width": 0.125}, data_dir=str(data_dir), profile="smoke",
                         image_size=16, device="cpu", amp="off").resolved()
    torch.manual_seed(0)
    model = models.create("fcn8s", num_classes=len(CLASSES), width=0.125)
    checkpoint.save(path, {"model_name": "fcn8s", "num_classes": len(CLASSES), "class_names": list(CLASSES),
                           "config": dataclasses.asdict(config), "model": model.state_dict()})
    return path


@pytest.mark.parametrize("command", ["add-noise", "split", "pseudo-label", "cleanse"])
def test_every_command_validates_its_input_file(make_dataset, kit, tmp_path, capsys, command):
    data = kit.base_coco()
    del data["annotations"][1]["category_id"]  # KeyError deep inside, were the file not checked
    ann_file = make_dataset(data)
    root = ann_file.parent
    out = tmp_path / "out"
    argv = {
        "add-noise": ["add-noise", str(root), "--noise-rate", "1", "--out", str(out / "noisy.json")],
        "split": ["split", str(ann_file), "--out", str(out), "--method", "kfold", "--folds", "2"],
        "pseudo-label": lambda ckpt: ["pseudo-label", str(ckpt), "--data-dir", str(root), "--split", str(ann_file),
                                      "--no-train", "--out", str(out / "pseudo.json"), "--device", "cpu"],
        "cleanse": lambda ckpt: ["cleanse", str(ckpt), "--data-dir", str(root), "--split", str(ann_file),
                                 "--out", str(out / "ranking.csv"), "--device", "cpu"],
    }[command]
    if callable(argv):
        argv = argv(_random_checkpoint(tmp_path / "run" / "best.pt", root))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"segedu: error: {ann_file}: annotations[1] (id 2): has no 'category_id'; fix it and "
                          f"check the file with `segedu validate-coco {ann_file}")
    assert len(err.splitlines()) == 1
    assert not out.exists() or list(out.iterdir()) == []
