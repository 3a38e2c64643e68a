"""COCO annotations -> semantic masks (uint8, H x W, one class id per pixel), with a disk cache.

Rasterising is pycocotools' (``frPyObjects`` for polygons and uncompressed RLE, ``merge``
for multi-part polygons, ``decode``); nothing here draws a polygon by hand.

Painting order. Objects overlap (a bottle cap on a bottle, a battery on a bag). Annotations
are painted largest ``area`` first, so a smaller object lying on a larger one is painted
last and stays visible; equal areas go by annotation id, so the result does not depend on
the order of the file. This is what the course baseline does: it sorts an image's
annotations with ``sorted(anns, key=lambda a: a['area'], reverse=True)`` and paints them in
that order with ``masks[coco.annToMask(ann) == 1] = class_id``, later ones overwriting
earlier ones (its ties keep file order instead of id order).

Void pixels. Pixels of ``iscrowd=1`` annotations and of categories named like void/ignore
(:func:`segedu.data.coco.is_void_name`, e.g. ``__ignore__`` as written by
:mod:`segedu.data.convert`) get IGNORE_INDEX (255), in the same painting order.

Caches. Rasterising every annotation of every image each epoch costs more than decoding the
image, and decoding the JPEG costs more than everything else a training step asks of the
loader. Two caches, both under :func:`cache_root`, each in a folder named
``<CODE_VERSION>-<sha256 of the annotation file>``, so a changed annotation file or a change to
the painting rules (bump CODE_VERSION) gets a new folder and old files are never served:

* :class:`MaskCache` stores each image's mask once as a PNG, ``masks/<key>/<image id>.png``
  (a few KB per image: masks are large flat regions); the dataset uses it when it does not
  cache images (``cache_images=False``);
* :class:`ItemCache` stores what a dataset item is made from, uncompressed, as one standard
  ``.npy`` per image, ``items/<key>/<image id>-<file size>-<file mtime_ns>.npy``: a uint8
  array (4, H, W) holding the R, G, B planes and the mask plane, or (3, H, W) without a mask.
  A read is then one file read and no decoding at all. The image file's size and modification
  time are part of the name (the same test ``make`` and ``rsync`` rely on), so an edited image
  is decoded again; its stale file is deleted when the new one is written.

Disk use of :class:`ItemCache`: H*W*4 bytes per image and annotation file (H*W*3 for a file
without annotations), i.e. 1 MiB per 512x512 competition image: about 3.2 GiB for
``train_all.json`` (3,272 images), as much again for ``train.json`` + ``val.json`` together.
It holds at most one file per image of each annotation file used; delete the cache folder
(or set ``cache_images=False`` on the dataset) to give the space back.

Files are written to a temporary name and renamed, so parallel DataLoader workers never see
half a file; a damaged or truncated file is detected on reading and written again.
"""
from __future__ import annotations

import functools
import io
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ..errors import SegeduError
from ..fileio import write_bytes_atomic
from .classes import IGNORE_INDEX
from .coco import CocoData

#: part of the cache key: bump when the painting rules change, so old caches are not reused
CODE_VERSION = "v1"
#: environment variable that moves the cache
CACHE_ENV = "SEGEDU_CACHE"


def annotation_rle(segmentation, height: int, width: int) -> dict:
    """One compressed RLE for an annotation's ``segmentation`` (polygons or RLE), via pycocotools."""
    if isinstance(segmentation, list):  # polygons: one RLE per part, united
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):  # uncompressed RLE
        return mask_utils.frPyObjects(segmentation, height, width)
    counts = segmentation["counts"]
    return {"size": segmentation["size"], "counts": counts.encode() if isinstance(counts, str) else counts}


def paint_order(annotations: list[dict]) -> list[dict]:
    """Annotations in painting order: largest area first, ties by annotation id."""
    return sorted(annotations, key=lambda ann: (-ann["area"], ann["id"]))


def semantic_mask(coco_data: CocoData, image: dict) -> np.ndarray:
    """The (height, width) uint8 class-id mask of one image record of ``coco_data``."""
    height, width = image["height"], image["width"]
    # pycocotools decodes column-major; painting the transposed mask keeps both in one memory order
    transposed = np.zeros((width, height), dtype=np.uint8)
    for ann in paint_order(coco_data.annotations(image)):
        if ann.get("iscrowd", 0) == 1:
            value = IGNORE_INDEX
        else:
            value = coco_data.category_to_class[ann["category_id"]]
        covered = mask_utils.decode(annotation_rle(ann["segmentation"], height, width))
        np.putmask(transposed, covered.T.view(bool), value)
    return np.ascontiguousarray(transposed.T)


def instance_mask(coco_data: CocoData, image: dict) -> np.ndarray:
    """(height, width) int32 instance labels of one image: 0 where no object is, and the i-th
    annotation in painting order labelled i (later objects overwrite earlier ones, as in
    :func:`semantic_mask`). The U-Net boundary weight map needs objects, not classes."""
    height, width = image["height"], image["width"]
    labels = np.zeros((height, width), np.int32)
    for i, ann in enumerate(paint_order(coco_data.annotations(image)), 1):
        labels[mask_utils.decode(annotation_rle(ann["segmentation"], height, width)).astype(bool)] = i
    return labels


def instance_classes(coco_data: CocoData, image: dict) -> list[int]:
    """The class of each object of :func:`instance_mask`: element i - 1 is the class of instance i."""
    return [coco_data.category_to_class[ann["category_id"]] for ann in paint_order(coco_data.annotations(image))]


def cache_root(data_dir: Path) -> Path:
    """``$SEGEDU_CACHE``, else ``data_dir/.segedu-cache`` when writable, else ``~/.cache/segedu``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    local = Path(data_dir) / ".segedu-cache"
    try:
        local.mkdir(exist_ok=True)
        if os.access(local, os.W_OK):
            return local
    except OSError:
        pass  # a read-only dataset folder: use the home cache
    return Path.home() / ".cache" / "segedu"


class MaskCache:
    """Semantic masks of one annotation file, painted once and then read from PNG files.

    ``get(index)`` returns the mask of ``coco_data.images[index]``. ``root`` overrides
    :func:`cache_root`. Safe to use from several DataLoader workers at once.
    """

    def __init__(self, coco_data: CocoData, root: Path | None = None):
        self.coco_data = coco_data
        base = Path(root) if root is not None else cache_root(coco_data.images_dir)
        self.folder = base / "masks" / f"{CODE_VERSION}-{coco_data.sha256}"
        self._can_write = True

    def path(self, index: int) -> Path:
        return self.folder / f"{self.coco_data.images[index]['id']}.png"

    def get(self, index: int, store: bool = True) -> np.ndarray:
        """The mask, from its PNG when cached; ``store=False`` paints a missing one without writing
        it (for a caller that caches it itself, as :class:`ItemCache` does)."""
        image = self.coco_data.images[index]
        path = self.path(index)
        cached = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
        if cached is not None and cached.shape == (image["height"], image["width"]):
            return cached
        mask = semantic_mask(self.coco_data, image)  # missing, or damaged: paint again
        if store:
            self._store(path, mask)
        return mask

    def warm(self) -> None:
        """Paint and store every mask not cached yet (e.g. before timing an epoch)."""
        for index in range(len(self.coco_data)):
            self.get(index)

    def _store(self, path: Path, mask: np.ndarray) -> None:
        if self._can_write:
            _, png = cv2.imencode(".png", mask)
            self._can_write = store_or_warn(self.folder, path, png.tobytes(), "masks are painted")


def store_or_warn(folder: Path, path: Path, data: bytes, fallback: str) -> bool:
    """Write a cache file atomically; on failure warn once and return False (stop writing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data, fsync=False)  # a damaged cache file is painted again
        return True
    except (OSError, SegeduError) as exc:  # SegeduError: a full disk, explained by segedu.fileio
        warnings.warn(f"segedu: cannot write the cache in {folder} ({exc}); {fallback} again each "
                      f"time. Set {CACHE_ENV} to a writable folder.", stacklevel=4)
        return False


@functools.lru_cache(maxsize=64)
def npy_header(shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` (version 1.0) header of a C-ordered uint8 array of ``shape``."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape})
    return out.getvalue()


class ItemCache:
    """Decoded image planes (and mask plane) of one annotation file's images, one ``.npy`` each.

    ``get(index, make)`` returns the uint8 (planes, H, W) array of ``coco_data.images[index]``:
    read from the cache when a file for the image file's current size and mtime is there and
    whole, otherwise ``make()`` (decode and paint) and stored. ``planes`` is 4 (R, G, B, mask) or
    3 (R, G, B, for a file without annotations). Safe to use from several DataLoader workers.
    """

    def __init__(self, coco_data: CocoData, planes: int, root: Path | None = None):
        self.coco_data = coco_data
        self.planes = planes
        base = Path(root) if root is not None else cache_root(coco_data.images_dir)
        self.folder = base / "items" / f"{CODE_VERSION}-{coco_data.sha256}"
        #: False after a write failed (read-only disk): items are then decoded on every access
        self.writable = True
        # image id -> file names on disk, listed once so that replacing a stale file needs no listing
        self._on_disk: dict[str, list[str]] = {}
        if self.folder.is_dir():
            for entry in os.scandir(self.folder):
                if entry.name.endswith(".npy"):
                    self._on_disk.setdefault(entry.name.split("-", 1)[0], []).append(entry.name)

    def path(self, index: int) -> Path:
        """Where the item of ``images[index]`` lives for the image file as it is now."""
        image = self.coco_data.images[index]
        stat = os.stat(self.coco_data.image_path(image))
        return self.folder / f"{image['id']}-{stat.st_size}-{stat.st_mtime_ns}.npy"

    def get(self, index: int, make) -> np.ndarray:
        image = self.coco_data.images[index]
        shape = (self.planes, image["height"], image["width"])
        try:
            path = self.path(index)
        except OSError:  # no image file: make() reports it
            return make()
        cached = _read_npy(path, shape)
        if cached is not None:
            return cached
        planes = make()
        if planes.shape == shape and planes.dtype == np.uint8:  # else: a file the record misdescribes
            self._store(str(image["id"]), path, planes)
        return planes

    def _store(self, image_id: str, path: Path, planes: np.ndarray) -> None:
        if not self.writable:
            return
        data = npy_header(planes.shape) + np.ascontiguousarray(planes).tobytes()
        self.writable = store_or_warn(self.folder, path, data, "images are decoded")
        if not self.writable:
            return
        for stale in self._on_disk.pop(image_id, []):  # the image file has changed since
            if stale != path.name:
                (self.folder / stale).unlink(missing_ok=True)
        self._on_disk[image_id] = [path.name]


def _read_npy(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The uint8 array of ``shape`` in the ``.npy`` at ``path``; None when missing, damaged or other."""
    header = npy_header(shape)
    size = len(header) + int(np.prod(shape))
    try:
        with open(path, "rb") as f:
            data = bytearray(size + 1)  # one byte more: a longer file is not ours either
            if f.readinto(data) != size:
                return None
    except OSError:  # not there (or deleted by a worker that just replaced it)
        return None
    if data[:len(header)] != header:
        return None
    return np.frombuffer(data, np.uint8, count=size - len(header), offset=len(header)).reshape(shape)
