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

Cache. Rasterising every annotation of every image each epoch costs more than decoding the
image. :class:`MaskCache` paints each image's mask once and stores it as a PNG under
``<cache root>/masks/<CODE_VERSION>-<sha256 of the annotation file>/<image id>.png``: a
changed annotation file or a change to the painting rules (bump CODE_VERSION) gets a new
folder, and later epochs and later runs only read PNGs. Files are written to a temporary
name and renamed, so parallel DataLoader workers never see half a file.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

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


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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

    def get(self, index: int) -> np.ndarray:
        image = self.coco_data.images[index]
        path = self.path(index)
        cached = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
        if cached is not None and cached.shape == (image["height"], image["width"]):
            return cached
        mask = semantic_mask(self.coco_data, image)  # missing, or damaged: paint again
        self._store(path, mask)
        return mask

    def warm(self) -> None:
        """Paint and store every mask not cached yet (e.g. before timing an epoch)."""
        for index in range(len(self.coco_data)):
            self.get(index)

    def _store(self, path: Path, mask: np.ndarray) -> None:
        if not self._can_write:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _, png = cv2.imencode(".png", mask)
            write_bytes_atomic(path, png.tobytes())
        except OSError as exc:
            self._can_write = False
            warnings.warn(f"segedu: cannot write the mask cache in {self.folder} ({exc}); masks are "
                          f"painted again each time. Set {CACHE_ENV} to a writable folder.", stacklevel=3)
