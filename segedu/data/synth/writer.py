"""Writing a dataset: the planned images drawn in parallel, the JPEGs, the five COCO files, the default dataset."""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ... import profiles
from ...errors import SegeduError
from ...fileio import write_json_atomic
from ..classes import CLASSES, NUM_CLASSES
from ..noise import write_noisy
from ..splits import holdout, subset  # the train/val split is an ordinary seeded hold-out
from . import versions
from .scene import _render, plan_classes
from .versions import GENERATOR_VERSION

#: The competition's batch folders, and the share of images each holds here.
BATCHES = ("batch_01_vt", "batch_02_vt", "batch_03")
BATCH_SHARES = (0.4, 0.35, 0.25)
#: Test images, as a fraction of the annotated ones (the competition: 819 test / 3272 train).
TEST_FRACTION = 0.18
VAL_FRACTION = 0.2
JPEG_QUALITY = 90
DATASET_FILES = ("train_all.json", "train.json", "val.json", "test.json", "test_labels.json")
#: what a drawn dataset's ``info`` records as its generator (beside the version that drew it)
GENERATOR = "segedu.data.synth"


@dataclasses.dataclass(frozen=True)
class _Task:
    """One image to draw and where to save it: what a worker process is sent."""

    seed: int
    index: int
    size: int
    classes: list[int]
    batch: int
    path: str
    flat: bool
    version: str


def _draw_and_save(task: _Task):
    """Render ``task``'s image, write it as a JPEG, and return its (annotations, visible pixels per class)."""
    image, annotations, pixels = _render(task.seed, task.index, task.size, task.classes, task.batch, task.flat,
                                         task.version)
    _, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    Path(task.path).write_bytes(jpeg.tobytes())
    return annotations, pixels


def _default_workers(n_images: int) -> int:
    """One process per core, up to 8; a single one for small runs, where starting processes costs more."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, cores) if n_images >= 64 else 1


def _single_threaded_cv2() -> None:
    cv2.setNumThreads(1)  # one process per core; cv2's own threads would only fight them


@dataclasses.dataclass(frozen=True)
class Summary:
    """What :func:`generate` wrote; ``str()`` gives a one-screen report."""

    path: Path
    images: int
    val_images: int
    test_images: int
    objects: int
    size: int
    seed: int
    #: per class: instances in train_all (not for Background)
    instances: dict[str, int]
    #: per class, Background included: share of all visible annotated pixels, share of images showing it
    pixel_share: dict[str, float]
    image_share: dict[str, float]
    seconds: float

    def __str__(self) -> str:
        lines = [f"segedu synth: wrote {self.path} in {self.seconds:.1f} s",
                 f"  {self.images} annotated images ({self.images - self.val_images} train + {self.val_images} val), "
                 f"{self.test_images} test images, {self.size}x{self.size} px, seed {self.seed}, {self.objects} objects",
                 f"  {'class':<14}{'objects':>8}{'pixels':>9}{'images':>9}"]
        for name in CLASSES:
            count = str(self.instances[name]) if name in self.instances else "-"
            lines.append(f"  {name:<14}{count:>8}{100 * self.pixel_share[name]:>8.1f}%"
                         f"{100 * self.image_share[name]:>8.1f}%")
        return "\n".join(lines)


def _coco(images: list[dict], annotations: list[dict] | None, seed: int, version: str) -> dict:
    coco = {
        "info": {"description": f"segedu synthetic recycling-trash dataset (seed {seed}); drawn, not photographed",
                 "generator": GENERATOR, "version": version},
        "licenses": [{"id": 0, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}],
        "images": images,
        "categories": [{"id": i, "name": name, "supercategory": name} for i, name in enumerate(CLASSES) if i],
    }
    if annotations is not None:
        coco["annotations"] = annotations
    return coco


def _refuse_existing(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        held = [name for name in DATASET_FILES if (out / name).exists()]
        what = f"a dataset ({', '.join(held)})" if held else "other files"
        raise SegeduError(f"{out} already holds {what}; segedu synth never overwrites. Delete the folder or "
                          "choose another --out.")


def _file_names(batch_of: np.ndarray) -> list[str]:
    """``batch_01_vt/0001.jpg``, ...: numbered from 1 within each batch folder."""
    digits = max(4, len(str(len(batch_of))))
    counters = [0] * len(BATCHES)
    names = []
    for b in batch_of:
        counters[b] += 1
        names.append(f"{BATCHES[b]}/{counters[b]:0{digits}d}.jpg")
    return names


def generate(out: str | os.PathLike, n_images: int = 480, size: int = 256, seed: int = 0,
             workers: int | None = None, flat: bool = False, noise=None,
             version: str = GENERATOR_VERSION) -> Summary:
    """Write the dataset into the new folder ``out`` and return a :class:`Summary`.

    ``n_images`` annotated images (split 80:20 into train/val) plus ``round(TEST_FRACTION *
    n_images)`` test images, all ``size`` x ``size`` pixels. Everything is written to a hidden
    temp folder beside ``out`` and renamed into place at the end, so an interrupted run leaves no
    half-written dataset. ``workers`` processes draw the images (default: one per core, at most
    8); the output does not depend on it. ``flat=True`` paints every object in its class's
    palette colour on black with no texture or camera effects: a trivially learnable control,
    and a check that pixels and annotations agree.

    ``noise``: a :class:`segedu.data.noise.NoiseSpec`; then ``train.json`` is also written with
    label noise as ``train_noisy.json`` (train split ``train_noisy``), with the report of every
    corruption in ``train_noisy.noise.json``. The clean ``train.json``, ``val.json`` and test labels
    stay as they are, so a model trained on the noisy labels is scored on clean ones.

    ``version``: the generator version to draw (:mod:`segedu.data.synth.versions`); an older one
    draws exactly what that version drew.
    """
    versions.check(version)
    if n_images < 5 or size < 32:
        raise SegeduError(f"synth needs at least 5 images of at least 32 px; got {n_images} images of {size} px.")
    start = time.perf_counter()
    out = Path(out).expanduser().resolve()
    _refuse_existing(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_test = max(1, round(TEST_FRACTION * n_images))
    n_total = n_images + n_test
    is_test = np.zeros(n_total, bool)
    is_test[np.random.default_rng([seed, 2]).permutation(n_total)[:n_test]] = True
    # each side gets its own deck, so that both show every class
    plan = [[] for _ in range(n_total)]
    for test, count in ((False, n_images), (True, n_test)):
        for index, classes in zip(np.flatnonzero(is_test == test), plan_classes(count, seed, stream=int(test), version=version)):
            plan[index] = classes
    # batch folders hold contiguous runs of images; test images are interleaved, as in the competition
    batch_of = np.searchsorted(np.cumsum(BATCH_SHARES)[:-1] * n_total, np.arange(n_total), side="right")
    file_names = _file_names(batch_of)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the dataset should not be
        for name in BATCHES:
            (tmp / name).mkdir()
        tasks = [_Task(seed, i, size, plan[i], int(batch_of[i]), str(tmp / file_names[i]), flat, version)
                 for i in range(n_total)]
        workers = workers or _default_workers(n_total)
        if workers > 1:
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                        initializer=_single_threaded_cv2) as pool:
                results = list(pool.map(_draw_and_save, tasks, chunksize=8))
        else:
            results = [_draw_and_save(t) for t in tasks]
        counts = _write_annotations(tmp, file_names, is_test, results, size, seed, version)
        if noise is not None:
            write_noisy(tmp / "train.json", tmp / "train_noisy.json", noise)
        _refuse_existing(out)  # another process may have made it meanwhile
        if out.exists():
            out.rmdir()  # an empty folder: replace it
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    objects, instances, pixel_share, image_share = counts
    return Summary(out, n_images, round(VAL_FRACTION * n_images), n_test, objects, size, seed, instances,
                   pixel_share, image_share, time.perf_counter() - start)


def _write_annotations(folder: Path, file_names, is_test, results, size: int, seed: int, version: str):
    """Write the five COCO files; return (objects, instances, pixel share, image share) of train_all."""
    sides: dict[bool, tuple[list, list]] = {False: ([], []), True: ([], [])}  # is test -> (images, annotations)
    pixels = np.zeros(NUM_CLASSES, np.int64)
    shown = np.zeros(NUM_CLASSES, np.int64)
    for file_name, test, (objects, visible) in zip(file_names, is_test, results):
        images, annotations = sides[bool(test)]
        image_id = len(images)
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size, "license": 0,
                       "flickr_url": None, "coco_url": None, "date_captured": None})
        for cls, polygons, area, bbox in objects:
            annotations.append({"id": len(annotations), "image_id": image_id, "category_id": cls,
                                "segmentation": polygons, "area": area, "bbox": bbox, "iscrowd": 0})
        if not test:
            pixels += visible
            shown += visible > 0
    train_all = _coco(*sides[False], seed, version)
    [(train_ids, val_ids)] = holdout(train_all, VAL_FRACTION, seed)
    # compact JSON (the files are large), each written whole or not at all
    write_json_atomic(folder / "train_all.json", train_all)
    write_json_atomic(folder / "train.json", subset(train_all, train_ids))
    write_json_atomic(folder / "val.json", subset(train_all, val_ids))
    write_json_atomic(folder / "test.json", _coco(sides[True][0], None, seed, version))
    write_json_atomic(folder / "test_labels.json", _coco(*sides[True], seed, version))
    cats = [a["category_id"] for a in train_all["annotations"]]
    n_images = len(train_all["images"])
    return (len(cats),
            {name: cats.count(i) for i, name in enumerate(CLASSES) if i},
            {name: float(pixels[i] / max(pixels.sum(), 1)) for i, name in enumerate(CLASSES)},
            {name: float(shown[i] / n_images) for i, name in enumerate(CLASSES)})


def drawn_by(path: Path) -> str | None:
    """The generator version that drew the dataset folder ``path`` (its ``train_all.json``'s
    ``info``), or None for a dataset this generator did not draw, or no readable dataset at all."""
    try:
        info = json.loads((Path(path) / "train_all.json").read_text(encoding="utf-8")).get("info", {})
    except (OSError, ValueError):
        return None
    return info.get("version") if info.get("generator") == GENERATOR else None


def _made_by_another_version(path: Path) -> bool:
    version = drawn_by(path)
    return version is not None and version != GENERATOR_VERSION


def ensure_default_dataset(profile) -> Path:
    """The profile's default dataset folder, generated first (seed 0) if it is not there yet.

    A default dataset drawn by another version of this generator is replaced, so that a
    chapter never mixes results from two different datasets under one name.
    """
    path = profiles.default_data_dir(profile)
    if _made_by_another_version(path):
        stale = path.with_name(f".{path.name}.stale-{os.getpid()}")
        os.rename(path, stale)  # out of the way at once; then deleted
        shutil.rmtree(stale)
    if not (path / "train_all.json").is_file():
        try:
            generate(path, n_images=profile.synth_images, size=profile.synth_size, seed=0)
        except SegeduError:
            if not (path / "train_all.json").is_file():  # it was not just another process finishing first
                raise
    return path
