"""segedu.data.repair / `segedu repair-coco`: safe defects fixed and each named, the rest left, nothing half-written."""
from __future__ import annotations

import json

import pytest
from pycocotools.coco import COCO

from segedu import cli
from segedu.data import coco, repair
from segedu.errors import SegeduError


def defective(kit) -> dict:
    """base_coco() with one of each defect repair fixes (comments: the record it becomes in the file)."""
    data = kit.base_coco()
    anns = data["annotations"]
    del anns[0]["area"]                                   # annotations[0] (id 1): no area
    anns[1]["area"] = -5                                  # annotations[1] (id 2): invalid area
    anns[2]["bbox"] = [1, 2, -3, 4]                       # annotations[2] (id 3): malformed bbox
    anns[3]["id"] = 2                                     # annotations[3] (id 2): duplicate id
    empty = kit.polygon_annotation(10, 1, 3, kit.rect(0, 0, 2, 2))
    anns.append({**empty, "segmentation": []})            # annotations[4] (id 10): no polygon
    anns.append({**empty, "id": 11, "segmentation": [[]]})  # annotations[5] (id 11): only an empty polygon
    anns.append({**empty, "id": 12, "segmentation": [kit.rect(0, 0, 2, 2), [1, 2]]})  # annotations[6]: one empty
    anns.append({**empty, "id": 13, "segmentation": {"size": [kit.HEIGHT, kit.WIDTH],  # annotations[7]: zero RLE
                                                     "counts": [kit.HEIGHT * kit.WIDTH]}})
    data["images"].append({"id": 4, "file_name": "batch_01_vt/0004.png", "width": kit.WIDTH, "height": kit.HEIGHT})
    anns.append({**empty, "id": 14, "image_id": 4})       # annotations[8] (id 14): on the absent image
    return data


@pytest.fixture
def broken(make_dataset, kit):
    ann_file = make_dataset(defective(kit))
    (ann_file.parent / "batch_01_vt/0004.png").unlink()  # images[3] (id 4): file absent
    return ann_file


def test_each_defect_is_repaired_and_named(broken, capsys):
    assert not coco.validate(broken).ok
    out = broken.with_name("fixed.json")
    assert cli.main(["repair-coco", str(broken), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    expected = [
        "annotations[0] (id 1): no 'area': computed with pycocotools (120)",
        "annotations[1] (id 2): 'area' -5 invalid: computed with pycocotools (16)",
        "annotations[2] (id 3): 'bbox' [1, 2, -3, 4] malformed: recomputed from the segmentation ([10.0, 2.0, 8.0, 12.0])",
        "annotations[3] (id 2): duplicate annotation id 2 (also annotations[1] (id 2)): renumbered to 13",
        "annotations[4] (id 10): empty segmentation (no polygon): dropped",
        "annotations[5] (id 11): segmentation has only empty polygons (fewer than 3 points): dropped",
        "annotations[6] (id 12): removed 1 empty polygon(s) (fewer than 3 points): polygon(s) 1",
        "annotations[7] (id 13): RLE segmentation covers no pixel: dropped",
        f"images[3] (id 4): image file {broken.parent / 'batch_01_vt/0004.png'} not found: dropped, with its "
        "1 annotation(s)",
    ]
    for line in expected:
        assert f"  {broken}: {line}\n" in printed, line
    assert f"{broken}: 9 change(s)" in printed
    assert "pycocotools keeps only the last of two annotations sharing an id" in printed
    assert f"wrote {out}, which passes validation\n" in printed

    assert coco.validate(out).ok
    repaired = json.loads(out.read_text())
    assert [a["id"] for a in repaired["annotations"]] == [1, 2, 3, 13, 12]
    assert [img["id"] for img in repaired["images"]] == [1, 2, 3]
    assert repaired["annotations"][4]["segmentation"] == [[0, 0, 2, 0, 2, 2, 0, 2]]
    assert COCO(str(out)).anns.keys() == {1, 2, 3, 12, 13}  # pycocotools sees all five
    assert len(COCO(str(broken)).anns) == 8  # the input: 9 annotations, one lost to the shared id


def test_unsafe_problems_are_left_and_nothing_is_written(make_dataset, kit, capsys):
    data = defective(kit)
    data["images"][2]["id"] = 1  # duplicate image id: which annotations are whose cannot be told
    data["annotations"][8]["category_id"] = 99  # a dangling category on the absent image: dropped with it
    data["annotations"][6]["category_id"] = 42  # a dangling category kept
    ann_file = make_dataset(data)
    (ann_file.parent / "batch_01_vt/0004.png").unlink()
    out = ann_file.with_name("fixed.json")
    assert cli.main(["repair-coco", str(ann_file), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert not out.exists() and [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []
    assert "2 problem(s) left that repair-coco does not fix" in printed
    assert f"nothing written to {out}" in printed
    # records as numbered in the input file, although annotations before them were dropped
    assert f"  {ann_file}: images[2] (id 1): duplicate image id 1\n" in printed
    assert f"  {ann_file}: annotations[6] (id 12): refers to unknown category id 42\n" in printed
    assert "why: duplicate image ids are not repaired: which annotations belong to which" in printed
    assert "annotations[3] (id 2): duplicate annotation id 2" in printed  # the changes it would have made


def test_out_equal_to_the_input_needs_overwrite(broken, capsys):
    before = broken.read_bytes()
    assert cli.main(["repair-coco", str(broken), "--out", str(broken)]) == 2
    assert f"{broken} is the input file; pass --overwrite" in capsys.readouterr().err
    assert broken.read_bytes() == before
    other = broken.with_name("other.json")
    other.write_text("{}")
    with pytest.raises(SegeduError, match="other.json exists; pass --overwrite"):
        repair.repair(broken, other)
    report = repair.repair(broken, broken, overwrite=True)
    assert report.written and coco.validate(broken).ok


def test_skip_images_keeps_records_of_absent_files(broken):
    out = broken.with_name("fixed.json")
    report = repair.repair(broken, out, check_images=False)
    assert report.written and not any("not found" in c for c in report.changes)
    assert len(json.loads(out.read_text())["images"]) == 4
    assert coco.validate(out, check_images=False).ok


def test_repaired_file_elsewhere_says_where_its_images_are(broken, tmp_path):
    out = tmp_path / "elsewhere" / "fixed.json"
    report = repair.repair(broken, out)
    assert report.written and f"pass --images {broken.parent}" in report.render()
    assert coco.validate(out, images_dir=broken.parent).ok


def test_a_valid_file_is_copied_with_nothing_to_repair(make_dataset):
    ann_file = make_dataset()
    report = repair.repair(ann_file, ann_file.with_name("copy.json"))
    assert report.written and report.changes == [] and "nothing to repair" in report.render()
    assert json.loads(ann_file.with_name("copy.json").read_text()) == json.loads(ann_file.read_text())


def test_unreadable_or_shapeless_input_is_refused_in_one_line(make_dataset, tmp_path, capsys):
    assert cli.main(["repair-coco", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o.json")]) == 2
    assert capsys.readouterr().err.strip() == f"segedu: error: {tmp_path / 'missing.json'}: does not exist"
    ann_file = make_dataset(text='{"images": {}, "categories": []}')
    with pytest.raises(SegeduError, match=r"images: must be a list, got a JSON object"):
        repair.repair(ann_file, tmp_path / "o.json")
    assert not (tmp_path / "o.json").exists()
