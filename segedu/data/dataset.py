"""The competition's COCO data as a PyTorch dataset, and a reproducible DataLoader for it.

``CocoSegmentation(data_dir, mode, transform)`` keeps the course's interface: ``mode`` is
``train``/``val``/``test`` (reading ``train.json``/``val.json``/``test.json`` in ``data_dir``)
or the path of any COCO file whose ``file_name``s are relative to ``data_dir``. An item is
``(image, mask)``: a float32 (3, H, W) tensor in [0, 1] (unless the transform normalises) and
an int64 (H, W) tensor of class ids, 255 where void. In test mode (``mode="test"``, or a file
without an ``annotations`` section) an item is ``(image, file_name)``.

Differences from the course baseline, on purpose:

* the annotation file is validated when the dataset is built (:func:`segedu.data.coco.load`),
  so bad data stops the run at once with every problem listed, not in the middle of epoch 3;
* masks are painted once per annotation file (:mod:`segedu.data.masks`) and cached, not
  re-rasterised with ``annToMask`` on every access;
* with ``cache_images=True`` (the default) the decoded pixels are cached too, together with
  the mask, uncompressed (:class:`segedu.data.masks.ItemCache`: H*W*4 bytes of disk per image,
  1 MiB for a 512x512 competition image); from the second epoch, and in every later run over
  the same annotation file, an item is one file read instead of a JPEG decode and a mask.
  With ``cache_images=False`` (when disk is short) only the masks are cached, as PNGs of a few
  KB each (:class:`segedu.data.masks.MaskCache`), and every access decodes the JPEG;
* the transform (an albumentations ``Compose``) gets the uint8 RGB image and the uint8 mask,
  the types albumentations is written for; the dataset scales to [0, 1] afterwards.
"""
from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from ..errors import SegeduError
from . import coco
from .masks import ItemCache, MaskCache

#: the annotation file each named mode reads
MODE_FILES = {"train": "train.json", "val": "val.json", "test": "test.json",
              "train_noisy": "train_noisy.json"}  # the last: `segedu synth --noise-rate` (segedu.data.noise)
_EXPECTED_LAYOUT = ("a competition dataset folder holds train_all.json, train.json, val.json, "
                    "test.json and the image folders they name (e.g. batch_01_vt/0001.jpg)")


def annotation_file(data_dir, mode: str) -> Path:
    """The COCO file that ``mode`` names in ``data_dir``; SegeduError when it is not there."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise SegeduError(f"dataset folder {data_dir} does not exist; {_EXPECTED_LAYOUT}. "
                          "Run `segedu synth --out DIR` to make a small one.")
    if mode not in MODE_FILES:
        path = Path(mode)
        if not path.is_file():
            raise SegeduError(f"mode {str(mode)!r} is neither one of {', '.join(MODE_FILES)} "
                              "nor an existing COCO annotation file")
        return path
    path = data_dir / MODE_FILES[mode]
    if not path.is_file():
        raise SegeduError(f"{path} not found: mode {mode!r} reads it; {_EXPECTED_LAYOUT}.")
    return path


def read_image(path: Path) -> np.ndarray:
    """An image file as a uint8 RGB array (H, W, 3); SegeduError when it cannot be decoded."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SegeduError(f"{path}: cannot decode this image (missing, truncated or not an image); "
                          "run `segedu validate-coco` on its annotation file.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# The conversions below run in numpy on purpose: with num_workers=0 they run in the main
# process, where torch's intra-op thread pool turns a 0.1 ms cast of one image into several
# milliseconds of thread hand-off on a busy 2-core machine.

def image_to_tensor(image) -> torch.Tensor:
    """(H, W, 3) array or (3, H, W) tensor (after ``ToTensorV2``) -> float32 (3, H, W); uint8 scaled to [0, 1]."""
    if isinstance(image, torch.Tensor):
        return planes_to_tensor(image.numpy())
    return planes_to_tensor(image.transpose(2, 0, 1))


def planes_to_tensor(chw: np.ndarray) -> torch.Tensor:
    """(3, H, W) array -> float32 tensor, uint8 divided by 255 (as ``astype(float32) / 255``)."""
    if chw.dtype != np.uint8:
        return torch.from_numpy(np.array(chw, dtype=np.float32, order="C"))
    # a strided float pass is 3x slower than a contiguous one; the uint8 copy costs less than that
    chw = np.ascontiguousarray(chw)
    out = np.empty(chw.shape, np.float32)
    np.divide(chw, np.float32(255), out=out)
    return torch.from_numpy(out)


def mask_to_tensor(mask) -> torch.Tensor:
    """(H, W) array or tensor -> int64 tensor."""
    if isinstance(mask, torch.Tensor):
        mask = mask.numpy()
    return torch.from_numpy(mask.astype(np.int64, order="C"))


class CocoSegmentation(Dataset):
    """Images and semantic masks of one COCO annotation file (see the module docstring)."""

    def __init__(self, data_dir, mode: str = "train", transform=None, check_images: bool = True,
                 cache_images: bool = True):
        self.data_dir = Path(data_dir)
        self.mode = mode
        self.transform = transform
        ann_file = annotation_file(self.data_dir, mode)
        self.coco = coco.load(ann_file, images_dir=self.data_dir, check_images=check_images)
        if mode in ("train", "val") and not self.coco.has_annotations:
            raise SegeduError(f"{ann_file} has no 'annotations' section; mode {mode!r} needs labelled "
                              "images (only test.json may lack annotations).")
        self.is_test = mode == "test" or not self.coco.has_annotations
        self.masks = None if self.is_test else MaskCache(self.coco)
        #: decoded pixels (+ mask) per image, or None: decode the image file on every access
        self.items = ItemCache(self.coco, planes=3 if self.is_test else 4) if cache_images else None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.coco.class_names

    def __len__(self) -> int:
        return len(self.coco)

    def __getitem__(self, index: int):
        if self.items is None:
            image, mask = self._read(index)  # (H, W, 3), decoded now
        else:
            planes = self.items.get(index, lambda: self._decode(index))
            image, mask = planes[:3], (None if self.is_test else planes[3])  # (3, H, W)
            if self.transform is None:  # no layout change at all: one division into float32
                return self._item(index, planes_to_tensor(image), mask)
            image = cv2.merge(list(image))  # albumentations works on (H, W, 3)
        if self.transform is not None:
            out = self.transform(image=image) if self.is_test else self.transform(image=image, mask=mask)
            image, mask = out["image"], out.get("mask")
        return self._item(index, image_to_tensor(image), mask)

    def _item(self, index: int, image: torch.Tensor, mask):
        """``(image, mask tensor)``, or ``(image, file name)`` in test mode."""
        if self.is_test:
            return image, self.coco.images[index]["file_name"]
        return image, mask_to_tensor(mask)

    def _read(self, index: int):
        """The uint8 (H, W, 3) image decoded from its file, and its uint8 mask (None in test mode)."""
        record = self.coco.images[index]
        image = read_image(self.coco.image_path(record))
        if self.is_test:
            return image, None
        # an item file holds the mask too: a PNG as well would cost a second file write per image
        mask = self.masks.get(index, store=self.items is None or not self.items.writable)
        if image.shape[:2] != mask.shape:
            raise SegeduError(f"{self.coco.image_path(record)} is {image.shape[1]}x{image.shape[0]} but "
                              f"{self.coco.ann_file} (image id {record['id']}) says "
                              f"{record['width']}x{record['height']}")
        return image, mask

    def _decode(self, index: int) -> np.ndarray:
        """What :class:`ItemCache` stores: uint8 planes (R, G, B[, mask]) of shape (3 or 4, H, W)."""
        image, mask = self._read(index)
        # cv2.split + stack: contiguous copies, 10x faster than numpy's strided HWC -> CHW copy
        return np.stack([*cv2.split(image), *([] if mask is None else [mask])])


def collate(batch):
    """Stack items into (images (B, 3, H, W) float32, masks (B, H, W) int64), or (images, file names)."""
    images = [item[0] for item in batch]
    sizes = {tuple(im.shape) for im in images}
    if len(sizes) > 1:
        raise SegeduError(f"images of one batch differ in size {sorted(sizes)}; batch them by size "
                          "(make_eval_loader, for prediction at each image's own size), add a resize or crop "
                          "to the transform (e.g. A.Resize(H, W)), or use batch_size=1.")
    seconds = [item[1] for item in batch]
    if isinstance(seconds[0], str):
        return _stack(images), seconds
    return _stack(images), _stack(seconds)


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack`` done by numpy, single-threaded (see the note above ``image_to_tensor``)."""
    return torch.from_numpy(np.stack([t.numpy() for t in tensors]))


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive every RNG of a worker from the loader's generator.

    PyTorch gives worker ``i`` the seed ``base + i`` with ``base`` drawn from the loader's
    generator; numpy, ``random`` and the dataset's albumentations ``Compose`` (which keeps its
    own generator, copied identically into every worker otherwise) are seeded from it.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    cv2.setNumThreads(0)  # one process per core already; OpenCV threads would oversubscribe
    dataset = torch.utils.data.get_worker_info().dataset
    while not hasattr(dataset, "transform") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset  # a Subset of the dataset (e.g. one fold)
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def base_transform(dataset):
    """The albumentations transform of ``dataset``, looking through ``Subset`` wrappers (None if none)."""
    while not hasattr(dataset, "transform") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    return getattr(dataset, "transform", None)


class PerImageSeeds(Dataset):
    """``dataset`` whose random transform is re-seeded for every item from ``(seed, epoch, index)``.

    Item ``i`` of epoch ``e`` then gets the same augmentation in any process and any DataLoader
    worker, whatever was loaded before it. Distributed training uses this, so that splitting a
    batch between processes does not change what the images look like. Call :meth:`set_epoch`
    before each epoch (like ``DistributedSampler``).
    """

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0
        self.transform = base_transform(dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        if self.transform is not None:
            stream = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
            self.transform.set_random_state(np.random.default_rng(stream), random.Random(stream))
        return self.dataset[index]


def make_loader(dataset, batch_size: int, shuffle: bool = False, num_workers: int = 0,
                seed: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader with :func:`collate` whose order and worker seeds depend only on ``seed``."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=seed_worker,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
    )


def image_sizes(dataset) -> list[tuple[int, int]] | None:
    """(height, width) of every item of ``dataset``, read from its COCO records (no image is decoded),
    looking through ``Subset`` and other wrappers with a ``.dataset`` (e.g. :class:`PerImageSeeds`);
    None when there are no COCO records to read.

    These are the images' stored sizes: a transform that resizes every image alike (or crops to one
    size) keeps images of one stored size at one size, so grouping by them is still right.
    """
    positions = range(len(dataset))  # item i of ``dataset`` is item positions[i] of the level below
    level = dataset
    while True:
        if isinstance(level, Subset):
            positions = [level.indices[i] for i in positions]
        elif hasattr(level, "coco") and hasattr(level.coco, "images"):
            records = level.coco.images
            return [(int(records[i]["height"]), int(records[i]["width"])) for i in positions]
        if not hasattr(level, "dataset"):
            return None
        level = level.dataset


class SizeGroupedBatches(Sampler[list[int]]):
    """Batches of ``batch_size`` indices whose images all have one size, for prediction at each image's size.

    ``indices`` (a sampler such as :class:`segedu.engine.distributed.ShardSampler`, or a list: anything
    that can be iterated again; default: every index in order) are grouped by the image size of :func:`image_sizes`, the sizes
    in the order they first appear, each group in the order ``indices`` gives and cut into batches.
    Every index comes exactly once; when all images have one size (the competition's data), the
    batches are exactly those of sequential batching, so no score changes. Without COCO records to
    read sizes from, the batches are sequential.
    """

    def __init__(self, dataset, batch_size: int, indices=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise SegeduError(f"batch_size must be a positive integer; got {batch_size!r}.")
        self.batch_size = batch_size
        self.indices = indices
        self.length = len(dataset)
        self.sizes = image_sizes(dataset)

    def batches(self) -> list[list[int]]:
        order = range(self.length) if self.indices is None else self.indices
        groups: dict = {}  # size -> indices; dicts keep the order sizes first appear in
        for index in order:
            groups.setdefault(None if self.sizes is None else self.sizes[index], []).append(int(index))
        return [group[start:start + self.batch_size] for group in groups.values()
                for start in range(0, len(group), self.batch_size)]

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def make_eval_loader(dataset, batch_size: int, num_workers: int = 0, indices=None) -> DataLoader:
    """A DataLoader for prediction and scoring: batches of one image size (:class:`SizeGroupedBatches`
    over ``indices``, default all in order) stacked by :func:`collate`, nothing shuffled.

    Datasets whose images differ in size are then predicted (and scored against their original
    masks) at each image's own size. ``loader.batch_sampler`` gives each batch's dataset indices, in
    the loader's order: ``zip(loader.batch_sampler, loader)``.
    """
    return DataLoader(dataset, batch_sampler=SizeGroupedBatches(dataset, batch_size, indices),
                      num_workers=num_workers, collate_fn=collate, persistent_workers=False)


def in_order(items):
    """``(index, value)`` pairs (e.g. per image of :func:`make_eval_loader`'s batches) again as
    ``(index, value)``, by increasing index from 0: a value that comes early is held back until its
    turn, so files are written in the annotation file's order whatever the batching."""
    pending, turn = {}, 0
    for index, value in items:
        pending[int(index)] = value
        while turn in pending:
            yield turn, pending.pop(turn)
            turn += 1
    if pending:
        raise SegeduError(f"in_order: index {turn} never came (the batches skipped it); every index of the "
                          "dataset must be predicted once.")
