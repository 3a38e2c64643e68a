"""Images/s of CocoSegmentation (mask cache) vs the course baseline's dataset (annToMask per item).

Both read the same generated dataset (JPEGs with random many-vertex polygons, written here
with PIL) through a DataLoader with num_workers=0 and no transform, for two epochs. The
baseline re-rasterises every annotation of every image on each access, as the course's
``CustomDataLoader`` does; segedu paints each mask once and reads it from the cache after.

    .venv/bin/python benchmarks/bench_loader.py [--images 200] [--size 256] [--batch-size 8]

Prints images/s per epoch and over both epochs, for a first run (cache empty, so epoch 1
paints the masks) and a later run (cache already on disk), and the ratios to the baseline;
then the same for producing the masks alone, the part the cache replaces (the rest of an
item, decoding the JPEG and converting it to float, costs both datasets the same).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import DataLoader, Dataset

from segedu.data.classes import CLASSES


def write_dataset(root: Path, n_images: int, size: int, seed: int = 0) -> Path:
    """``n_images`` JPEGs of ``size`` x ``size`` with 3-12 random star-shaped polygons each, and train.json."""
    rng = np.random.default_rng(seed)
    (root / "batch_01_vt").mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(1, n_images + 1):
        canvas = Image.fromarray(rng.integers(90, 160, (size, size, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(3, 13))):
            centre = rng.uniform(0.15 * size, 0.85 * size, 2)
            n_vertices = int(rng.integers(20, 80))  # hand-drawn outlines have many vertices
            angles = np.sort(rng.uniform(0, 2 * np.pi, n_vertices))
            radii = rng.uniform(0.03, 0.3) * size * rng.uniform(0.6, 1.0, n_vertices)
            points = np.clip(centre + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None], 0, size)
            polygon = points.round(1).ravel().tolist()
            category = int(rng.integers(1, len(CLASSES)))
            draw.polygon([tuple(p) for p in points], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
            rle = mask_utils.merge(mask_utils.frPyObjects([polygon], size, size))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "segmentation": [polygon], "area": float(mask_utils.area(rle)),
                                "bbox": mask_utils.toBbox(rle).tolist(), "iscrowd": 0})
        file_name = f"batch_01_vt/{image_id:04d}.jpg"
        canvas.save(root / file_name, quality=90)
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
    categories = [{"id": i, "name": name, "supercategory": ""} for i, name in enumerate(CLASSES) if i]
    ann_file = root / "train.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann_file


class CourseBaselineDataset(Dataset):
    """The course baseline's dataset: per item, ``annToMask`` for every annotation, area-sorted."""

    def __init__(self, data_dir: Path, ann_file: Path):
        self.data_dir = data_dir
        self.coco = COCO(str(ann_file))
        self.category_names = list(CLASSES)

    def __len__(self):
        return len(self.coco.getImgIds())

    def __getitem__(self, index):
        image_info = self.coco.loadImgs(self.coco.getImgIds()[index])[0]
        image = cv2.imread(str(self.data_dir / image_info["file_name"]))
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        return image.transpose(2, 0, 1), self.mask(image_info)

    def mask(self, image_info):
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_info["id"]))
        cats = self.coco.loadCats(self.coco.getCatIds())
        mask = np.zeros((image_info["height"], image_info["width"]))
        for ann in sorted(anns, key=lambda a: a["area"], reverse=True):
            name = next(c["name"] for c in cats if c["id"] == ann["category_id"])
            mask[self.coco.annToMask(ann) == 1] = self.category_names.index(name)
        return mask.astype(np.int64)


def baseline_collate(batch):
    images, masks = zip(*batch)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks))


def time_epochs(loader, n_images: int, epochs: int = 2) -> list[float]:
    """Seconds per epoch of iterating ``loader``."""
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        seen = sum(len(images) for images, _ in loader)
        seconds.append(time.perf_counter() - start)
        assert seen == n_images
    return seconds


def time_masks(get_mask, n_images: int, epochs: int = 2) -> list[float]:
    """Seconds per epoch of producing only the masks, ``get_mask(index)`` for every index."""
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for index in range(n_images):
            get_mask(index)
        seconds.append(time.perf_counter() - start)
    return seconds


def print_table(title: str, n_images: int, rows: list[tuple[str, list[float]]]) -> None:
    base_rate = rate(n_images, rows[0][1])
    print(f"\n{title:46s} {'epoch 1':>9s} {'epoch 2':>9s} {'2 epochs':>9s} {'vs baseline':>12s}")
    for name, seconds in rows:
        per_epoch = [n_images / s for s in seconds]
        total = rate(n_images, seconds)
        print(f"{name:46s} {per_epoch[0]:9.1f} {per_epoch[1]:9.1f} {total:9.1f} {total / base_rate:11.2f}x")


def rate(n_images: int, seconds: list[float]) -> float:
    return n_images * len(seconds) / sum(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="segedu-bench-") as tmp:
        root = Path(tmp) / "data"
        os.environ["SEGEDU_CACHE"] = str(Path(tmp) / "cache")  # start with an empty cache
        from segedu.data.dataset import CocoSegmentation, make_loader
        from segedu.data.masks import MaskCache

        ann_file = write_dataset(root, args.images, args.size)
        n_anns = len(json.loads(ann_file.read_text())["annotations"])
        print(f"dataset: {args.images} JPEGs {args.size}x{args.size}, {n_anns} polygon annotations; "
              f"batch {args.batch_size}, num_workers=0, no transform")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads")

        baseline = CourseBaselineDataset(root, ann_file)
        base_s = time_epochs(DataLoader(baseline, args.batch_size, collate_fn=baseline_collate), args.images)

        start = time.perf_counter()
        ours = CocoSegmentation(root, mode="train")
        build_s = time.perf_counter() - start
        first_s = time_epochs(make_loader(ours, args.batch_size), args.images)
        later = CocoSegmentation(root, mode="train")  # a later run: the cache is on disk
        later_s = time_epochs(make_loader(later, args.batch_size), args.images)

        # the masks alone: the part the cache replaces
        infos = baseline.coco.loadImgs(baseline.coco.getImgIds())
        base_mask_s = time_masks(lambda i: baseline.mask(infos[i]), args.images)
        fresh = MaskCache(ours.coco, root=Path(tmp) / "fresh-cache")
        first_mask_s = time_masks(fresh.get, args.images)
        later_mask_s = time_masks(MaskCache(ours.coco, root=Path(tmp) / "fresh-cache").get, args.images)

        # same masks, so the comparison is of equal work
        for index in range(args.images):
            assert np.array_equal(baseline.mask(infos[index]), later.masks.get(index))

    print(f"\nsegedu dataset construction (validation incl. image headers): {build_s:.2f} s")
    print_table("DataLoader, images/s", args.images, [
        ("course baseline (annToMask per item)", base_s),
        ("segedu, first run (epoch 1 fills the cache)", first_s),
        ("segedu, later run (cache on disk)", later_s),
    ])
    print_table("masks only, images/s", args.images, [
        ("course baseline (annToMask per item)", base_mask_s),
        ("segedu MaskCache, first run", first_mask_s),
        ("segedu MaskCache, later run", later_mask_s),
    ])


if __name__ == "__main__":
    main()
