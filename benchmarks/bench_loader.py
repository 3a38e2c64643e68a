"""Images/s of CocoSegmentation (decoded-item cache) vs the course baseline's dataset (annToMask per item).

Both read the same generated dataset (JPEGs with random many-vertex polygons, written here
with PIL) through a DataLoader with num_workers=0, batch 8 and no transform, for two epochs.
The baseline decodes the JPEG and re-rasterises every annotation of every image on each
access, as the course's ``CustomDataLoader`` does. segedu is timed

* cold: a first run with an empty cache (epoch 1 decodes, paints and fills the cache);
* warm: a later run over the same annotation file (the cache is on disk, the normal case in
  the course, where many experiments train on the same data);

each with ``cache_images=True`` (the default: pixels and mask cached) and ``cache_images=False``
(masks only). Every round times all rows again with a fresh empty cache and computes its
ratios from its own baseline, because the machine's load drifts; the table gives medians
(and the range of the ratio) over the rounds. The items are checked equal to the
baseline's after timing, so the comparison is of equal work.

    .venv/bin/python benchmarks/bench_loader.py [--config 200x256 --config 100x512] [--rounds 3]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
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

#: the row every ratio is taken against
BASELINE = "course baseline (annToMask per item)"


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


def print_table(title: str, n_images: int, rounds: list[dict[str, list[float]]]) -> None:
    """Median images/s per epoch and over both epochs, and median (min-max) ratio to the round's baseline."""
    print(f"\n{title:44s} {'epoch 1':>8s} {'epoch 2':>8s} {'2 epochs':>9s} {'vs baseline':>12s} {'(range)':>13s}")
    for name in rounds[0]:
        per_epoch = [statistics.median(n_images / r[name][e] for r in rounds) for e in range(2)]
        total = statistics.median(rate(n_images, r[name]) for r in rounds)
        ratios = [rate(n_images, r[name]) / rate(n_images, r[BASELINE]) for r in rounds]
        print(f"{name:44s} {per_epoch[0]:8.1f} {per_epoch[1]:8.1f} {total:9.1f} "
              f"{statistics.median(ratios):11.2f}x  ({min(ratios):.2f}-{max(ratios):.2f}x)")


def rate(n_images: int, seconds: list[float]) -> float:
    """Images/s over all the epochs timed."""
    return n_images * len(seconds) / sum(seconds)


def time_round(root: Path, ann_file: Path, cache: Path, n_images: int, batch_size: int) -> dict:
    """Seconds per epoch of every row; segedu's caches go under ``cache`` (not there yet)."""
    from segedu.data.dataset import CocoSegmentation, make_loader

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' "loading annotations..." lines
        baseline = CourseBaselineDataset(root, ann_file)
    times = {BASELINE: time_epochs(DataLoader(baseline, batch_size, collate_fn=baseline_collate), n_images)}
    for cache_images, label in ((True, "pixels+mask"), (False, "masks only")):
        os.environ["SEGEDU_CACHE"] = str(cache / label)  # empty; read by the datasets built below
        for run in ("cold (empty cache)", "warm (cache from a run)"):
            dataset = CocoSegmentation(root, mode="train", cache_images=cache_images)
            times[f"segedu {label}, {run}"] = time_epochs(make_loader(dataset, batch_size), n_images)
    return times


def check_equal_items(root: Path, ann_file: Path, cache: Path) -> None:
    """segedu's items, decoded (cold) and read from the cache (warm), equal the baseline's."""
    from segedu.data.dataset import CocoSegmentation

    os.environ["SEGEDU_CACHE"] = str(cache)
    with contextlib.redirect_stdout(io.StringIO()):
        baseline = CourseBaselineDataset(root, ann_file)
    for ours in (CocoSegmentation(root, mode="train"), CocoSegmentation(root, mode="train")):
        for index in range(len(ours)):
            image, mask = ours[index]
            base_image, base_mask = baseline[index]
            assert np.array_equal(image.numpy(), base_image) and np.array_equal(mask.numpy(), base_mask), index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", metavar="NxSIZE",
                        help="N images of SIZE x SIZE; repeatable (default: 200x256 and 100x512)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    configs = [tuple(int(v) for v in c.split("x")) for c in (args.config or ["200x256", "100x512"])]

    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.rounds} rounds")
    for n_images, size in configs:
        with tempfile.TemporaryDirectory(prefix="segedu-bench-") as tmp:
            root = Path(tmp) / "data"
            ann_file = write_dataset(root, n_images, size)
            n_anns = len(json.loads(ann_file.read_text())["annotations"])
            rounds = [time_round(root, ann_file, Path(tmp) / f"cache-{r}", n_images, args.batch_size)
                      for r in range(args.rounds)]
            check_equal_items(root, ann_file, Path(tmp) / "cache-check")
        print_table(f"{n_images} JPEGs {size}x{size}, {n_anns} polygons, images/s", n_images, rounds)


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
