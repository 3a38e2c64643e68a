"""A user's own COCO dataset, passed as ``data_dir``, runs through the data chapters.

Two stand-ins for a real dataset, made from the generator's output: the competition's classes
under other category ids in another order (the real files map by name), and a dataset with three
classes of its own (any COCO file works). Chapters 01-03 execute on each in the smoke profile.
"""
import json
from pathlib import Path

import pytest

from segedu import book
from segedu.data import synth

ROOT = Path(__file__).resolve().parents[2]
OTHER = ["cat", "dog", "bird"]


def _rewrite(folder: Path, mode: str) -> None:
    for name in ("train_all.json", "train.json", "val.json", "test.json"):
        path = folder / name
        data = json.loads(path.read_text())
        if mode == "renumbered":
            count = len(data["categories"])
            remap = {c["id"]: 100 + count - i for i, c in enumerate(data["categories"])}
            data["categories"] = sorted(({**c, "id": remap[c["id"]]} for c in data["categories"]), key=lambda c: c["id"])
            for ann in data.get("annotations", []):
                ann["category_id"] = remap[ann["category_id"]]
        else:
            for ann in data.get("annotations", []):
                ann["category_id"] = ann["category_id"] % 3 + 1
            data["categories"] = [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(OTHER)]
        path.write_text(json.dumps(data))


@pytest.fixture(scope="module", params=["renumbered", "other_classes"])
def user_data(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param) / "data"
    synth.generate(folder, n_images=16, size=64, seed=5, workers=1)
    _rewrite(folder, request.param)
    return folder


@pytest.mark.parametrize("chapter", ["01_coco_format", "02_eda", "03_dataloader_and_augmentation"])
def test_data_chapters_run_on_a_users_coco_dataset(user_data, chapter, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGEDU_PROFILE", "smoke")
    out = book.execute(ROOT / "book" / f"{chapter}.py", tmp_path / f"{chapter}.ipynb", profile="smoke",
                       data_dir=str(user_data))
    text = out.read_text()
    assert str(user_data) in text  # the chapter read this folder, not the default dataset
    if user_data.parent.name.startswith("other"):
        assert "bird" in text
