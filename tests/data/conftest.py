"""Tiny COCO datasets built on the fly for the data tests (a few images of 20x16 pixels)."""
from __future__ import annotations

import copy
import json
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segedu.data.classes import CLASSES

WIDTH, HEIGHT = 20, 16


def rect(x0, y0, x1, y1) -> list[float]:
    """Polygon along pixel edges covering columns x0..x1-1 and rows y0..y1-1."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def polygon_annotation(ann_id, image_id, category_id, polygon, iscrowd=0) -> dict:
    xs, ys = polygon[0::2], polygon[1::2]
    return {
        "id": ann_id, "image_id": image_id, "category_id": category_id, "iscrowd": iscrowd,
        "segmentation": [polygon], "area": float((max(xs) - min(xs)) * (max(ys) - min(ys))),
        "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
    }


def base_coco() -> dict:
    """A valid competition-style file: 3 images (the third unannotated), 4 annotations."""
    images = [{"id": i, "file_name": f"batch_01_vt/{i:04d}.png", "width": WIDTH, "height": HEIGHT}
              for i in (1, 2, 3)]
    categories = [{"id": i, "name": name, "supercategory": ""} for i, name in enumerate(CLASSES) if i]
    annotations = [
        polygon_annotation(1, 1, 2, rect(0, 0, 12, 10)),     # Paper, large
        polygon_annotation(2, 1, 4, rect(4, 4, 8, 8)),       # Metal, on top of the paper
        polygon_annotation(3, 2, 6, rect(10, 2, 18, 14)),    # Plastic
        polygon_annotation(4, 2, 2, rect(1, 1, 5, 5)),       # Paper
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_images(root: Path, coco: dict, seed: int = 0) -> None:
    """A random RGB PNG for every usable image record, of the record's size."""
    rng = np.random.default_rng(seed)
    for img in coco["images"]:
        if not (isinstance(img, dict) and isinstance(img.get("file_name"), str)
                and all(isinstance(img.get(k), int) and img[k] > 0 for k in ("width", "height"))):
            continue  # a record made broken on purpose
        path = root / img["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (img["height"], img["width"], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)


@pytest.fixture
def make_dataset(tmp_path, monkeypatch):
    """``make_dataset(coco=None, name="train.json", text=None)`` -> annotation file path.

    Writes ``coco`` (default :func:`base_coco`) or the raw ``text`` as JSON into a dataset
    folder, plus PNG images for the records. Masks are cached under tmp_path.
    """
    monkeypatch.setenv("SEGEDU_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    root.mkdir()

    def make(coco: dict | None = None, name: str = "train.json", text: str | None = None) -> Path:
        coco = copy.deepcopy(base_coco() if coco is None else coco)
        if isinstance(coco, dict) and isinstance(coco.get("images"), list):
            write_images(root, coco)
        path = root / name
        path.write_text(text if text is not None else json.dumps(coco))
        return path

    return make


@pytest.fixture
def kit():
    """The builders above, for test modules (they cannot import conftest)."""
    return types.SimpleNamespace(WIDTH=WIDTH, HEIGHT=HEIGHT, rect=rect, polygon_annotation=polygon_annotation,
                                 base_coco=base_coco, write_images=write_images)
