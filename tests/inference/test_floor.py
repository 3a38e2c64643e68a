"""The all-background floor (segedu.inference.evaluate.background_floor): hand-computed on painted
masks, and equal to what evaluate() gives a model that predicts Background everywhere."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from segedu.data.classes import CLASSES
from segedu.errors import SegeduError
from segedu.inference.evaluate import background_floor, evaluate

PAPER, METAL, GLASS = (CLASSES.index(name) for name in ("Paper", "Metal", "Glass"))


@pytest.fixture(autouse=True)
def mask_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGEDU_CACHE", str(tmp_path / "cache"))


def _dataset(folder, masks):
    """A COCO file whose images' masks are ``masks`` (one polygon per rectangle of a class)."""
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index, rects in enumerate(masks):
        name = f"{index}.png"
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / name)
        images.append({"id": index, "file_name": name, "width": 8, "height": 8})
        for cls, (x0, y0, x1, y1) in rects:
            annotations.append({"id": len(annotations) + 1, "image_id": index, "category_id": cls, "iscrowd": 0,
                                "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                                "area": float((x1 - x0) * (y1 - y0)), "bbox": [x0, y0, x1 - x0, y1 - y0]})
    categories = [{"id": i, "name": n, "supercategory": ""} for i, n in enumerate(CLASSES) if i]
    (folder / "val.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                 "categories": categories}))
    return folder


def test_the_floor_is_backgrounds_pixel_share_over_the_classes_present(tmp_path):
    # image 0: a 4x4 Paper square; image 1: a 4x2 Metal bar; no other class appears
    data = _dataset(tmp_path / "d", [[(PAPER, (0, 0, 4, 4))], [(METAL, (2, 2, 6, 4))]])
    floor = background_floor(data, "val")
    painted = [np.asarray(m) for m in _painted(data)]
    labelled = np.concatenate([m.ravel() for m in painted])
    counts = np.bincount(labelled[labelled < 255], minlength=len(CLASSES))
    assert (counts[PAPER], counts[METAL], counts[GLASS]) == (16, 8, 0)
    assert counts[0] == 2 * 64 - 24
    share = counts[0] / counts.sum()  # Background's IoU: its pixels over all labelled pixels
    assert floor["miou"] == pytest.approx(share / 3)  # Background, Paper, Metal present; the rest excluded
    assert floor["pixel_accuracy"] == pytest.approx(share)
    assert floor["split"] == "val"


def _painted(folder):
    from segedu.data import dataset

    data = dataset.CocoSegmentation(folder, "val", check_images=False, cache_images=False)
    return [data.masks.get(i) for i in range(len(data))]


class AllBackground(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(len(CLASSES)))

    def forward(self, x):
        logits = torch.zeros(x.shape[0], len(CLASSES), *x.shape[-2:])
        logits[:, 0] = 1.0
        return logits + 0 * self.bias[None, :, None, None]


def test_the_floor_is_what_evaluate_gives_a_model_predicting_background(tmp_path, monkeypatch):
    from segedu.inference import evaluate as evaluate_module

    data = _dataset(tmp_path / "d", [[(PAPER, (0, 0, 4, 4)), (GLASS, (5, 5, 8, 8))], [(METAL, (2, 2, 6, 4))], []])
    config = type("Config", (), {"image_size": None})()
    payload = {"num_classes": len(CLASSES), "class_names": CLASSES}
    monkeypatch.setattr(evaluate_module, "load_model", lambda path, device: (AllBackground(), config, payload))
    monkeypatch.setattr(evaluate_module, "_members", lambda path, options, model, config, payload: [model])
    scored = evaluate("unused.pt", data_dir=str(data), split="val", device="cpu")
    floor = background_floor(data, "val")
    assert floor["miou"] == pytest.approx(float(scored["miou"]))
    assert torch.equal(torch.as_tensor(floor["confusion"]), torch.as_tensor(scored["confusion"]))


def test_a_split_without_labels_is_refused(tmp_path):
    data = _dataset(tmp_path / "d", [[(PAPER, (0, 0, 4, 4))]])
    info = json.loads((data / "val.json").read_text())
    (data / "test.json").write_text(json.dumps({**info, "annotations": []}))
    with pytest.raises(SegeduError, match="no annotations"):
        background_floor(data, "test")
