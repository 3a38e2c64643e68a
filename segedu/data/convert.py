"""Images + index-colour masks -> a COCO file that paints back to exactly the same masks.

Input: a folder of images and a folder of single-channel or palette ('P') PNG masks with the
same file stems; mask value ``v`` is class ``classes[v]``, 0 the background, and ``ignore``
(e.g. 255) void.

Output: one annotation per class present in an image (and one for its void pixels), so the
annotations of an image never overlap and the painting order of :mod:`segedu.data.masks`
cannot change the result. Its segmentation is a polygon list when polygons reproduce the
region exactly, checked by rasterising them with pycocotools, and otherwise (holes,
one-pixel-wide diagonal necks) pycocotools' compressed RLE (``mask.encode``), which is
exact by construction. Polygons follow pixel edges, the convention under which
pycocotools' ``frPyObjects`` fills exactly the enclosed pixels. Void pixels become an
``iscrowd=1`` annotation of an extra category named ``__ignore__``, which
:mod:`segedu.data.masks` paints as IGNORE_INDEX.

Round trip: mask -> :func:`coco_from_masks` -> :func:`segedu.data.masks.semantic_mask` gives the
mask back bit for bit (ignore pixels as 255) when the class names are the competition's in
competition order, or are not competition names at all (then they become classes 1..K in
order). Competition names in another order are mapped by name onto the competition ids.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from ..errors import SegeduError
from .classes import IGNORE_INDEX
from ..fileio import write_json_atomic
from .coco import is_void_name, normalize_name

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: name of the category that holds void pixels
IGNORE_CATEGORY = "__ignore__"


def parse_classes(classes) -> list[str]:
    """Class names from a list, a path to a file with one name a line, or ``"a,b,c"``."""
    if isinstance(classes, (list, tuple)):
        names = [str(name).strip() for name in classes]
    elif Path(classes).is_file():
        names = [line.strip() for line in Path(classes).read_text(encoding="utf-8").splitlines()]
        names = [name for name in names if name]
    else:
        names = [name.strip() for name in str(classes).split(",")]
    if len(names) < 2 or not all(names):
        raise SegeduError(f"classes {classes!r}: need the background name first and at least one "
                          "class, all non-empty (a list, 'a,b,c', or a file with one name a line)")
    void = [name for name in names if is_void_name(name)]
    if void:
        raise SegeduError(f"class name(s) {void} mean 'void' to segedu; give void pixels their own "
                          "mask value and pass it as ignore instead")
    seen: dict[str, str] = {}
    for name in names:
        if normalize_name(name) in seen:  # classes are matched by name: the two would be one class
            raise SegeduError(f"classes {classes!r}: {seen[normalize_name(name)]!r} and {name!r} are the same "
                              "name to segedu (case, spaces, '_' and '-' are ignored); give each class its own name")
        seen[normalize_name(name)] = name
    return names


def _open_image(path: Path, what: str, decode: bool):
    """``PIL.Image.open(path)``, or SegeduError naming the file when it is not a readable image.
    ``decode`` reads the pixels too (a truncated file fails then); otherwise only the header."""
    try:
        im = Image.open(path)
        if decode:
            im.load()
        return im
    except OSError as exc:  # UnidentifiedImageError, a truncated file, no permission: all OSErrors
        raise SegeduError(f"{path}: the {what} cannot be read ({type(exc).__name__}: {exc}); replace or "
                          "remove the file (with its pair) and run again") from None


def exact_polygons(region: np.ndarray) -> list[list[float]] | None:
    """Polygons along the pixel edges of ``region`` (bool H x W) if pycocotools fills back exactly it.

    Contours are traced (OpenCV) on the region upsampled 2x, where the boundary pixels' centres
    sit half a pixel inside the original pixel edges; mapping the upsampled coordinate ``c``
    to ``ceil(c / 2)`` puts each vertex on a pixel corner.
    """
    height, width = region.shape
    doubled = np.repeat(np.repeat(region.astype(np.uint8), 2, axis=0), 2, axis=1)
    contours, _ = cv2.findContours(doubled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = [((c.reshape(-1, 2) + 1) // 2).astype(float).ravel().tolist() for c in contours]
    if not polygons:
        return None
    filled = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width)))
    return polygons if np.array_equal(filled.view(bool), region) else None


def region_annotation(region: np.ndarray) -> dict:
    """``segmentation``, ``area`` and ``bbox`` of one region (bool H x W), exact polygons or RLE."""
    rle = mask_utils.encode(np.asfortranarray(region.astype(np.uint8)))
    polygons = exact_polygons(region)
    segmentation = polygons if polygons is not None else {
        "size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
    return {
        "segmentation": segmentation,
        "area": float(mask_utils.area(rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
    }


def read_index_mask(path: Path, num_classes: int, ignore: int | None) -> np.ndarray:
    """A mask PNG as a 2-D integer array of class indices; SegeduError for RGB or unknown values."""
    with _open_image(path, "mask", decode=True) as im:
        if im.mode not in ("P", "L", "1", "I", "I;16"):
            raise SegeduError(f"{path}: mask has mode {im.mode!r}; expected an index-colour ('P') or "
                              "single-channel PNG whose values are class ids")
        mask = np.array(im).astype(np.int64)
    bad = sorted(set(np.unique(mask).tolist()) - set(range(num_classes)) - {ignore})
    if bad:
        raise SegeduError(f"{path}: mask value(s) {bad[:10]} are not class ids 0..{num_classes - 1}"
                          + (f" nor the ignore value {ignore}" if ignore is not None else
                             " (pass --ignore VALUE if one of them marks void pixels)"))
    return mask


def _pair_files(images_dir: Path, masks_dir: Path) -> list[tuple[Path, Path]]:
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise SegeduError(f"folder {folder} does not exist")
    images = {p.stem: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    masks = {p.stem: p for p in sorted(masks_dir.iterdir()) if p.suffix.lower() == ".png"}
    if not images:
        raise SegeduError(f"{images_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    lonely = sorted(set(images) ^ set(masks))
    if lonely:
        where = [f"{images[s]} has no mask {masks_dir / (s + '.png')}" if s in images
                 else f"{masks[s]} has no image in {images_dir}" for s in lonely[:10]]
        raise SegeduError("images and masks must pair up by file stem:\n" + "\n".join(where)
                          + (f"\n... and {len(lonely) - 10} more" if len(lonely) > 10 else ""))
    return [(images[stem], masks[stem]) for stem in sorted(images)]


def coco_from_masks(images_dir, masks_dir, classes, out, ignore: int | None = None) -> Path:
    """Write a COCO file for ``images_dir`` + ``masks_dir`` to ``out``; return ``out``.

    ``classes[0]`` names the background (value 0); ``classes[v]`` names mask value ``v``.
    ``file_name``s are relative to ``out``'s folder, as :func:`segedu.data.coco.validate`
    expects by default, so ``out`` must lie in a folder above the images (the validator refuses
    ``..`` in a file name). A corrupt image or mask is a SegeduError naming it; the file is
    written (atomically) only once every pair was read.
    """
    images_dir, masks_dir, out = Path(images_dir), Path(masks_dir), Path(out)
    names = parse_classes(classes)
    climb = Path(os.path.relpath(images_dir, out.parent)).parts[:1] == ("..",)
    if climb:  # a file_name with '..' is refused by segedu.data.coco: images must lie under the JSON's folder
        raise SegeduError(f"{out}: file names in a COCO file are relative to its folder, and {images_dir} is not "
                          f"inside {out.parent}; write --out into {images_dir.parent} or a folder above it")
    if ignore is not None and 0 <= ignore < len(names):
        raise SegeduError(f"ignore value {ignore} is also the id of class {names[ignore]!r}; "
                          f"use a value >= {len(names)} (e.g. {IGNORE_INDEX})")
    categories = [{"id": v, "name": name, "supercategory": ""} for v, name in enumerate(names) if v]
    ignore_id = len(names)
    if ignore is not None:
        categories.append({"id": ignore_id, "name": IGNORE_CATEGORY, "supercategory": ""})

    images, annotations = [], []
    for image_id, (image_path, mask_path) in enumerate(_pair_files(images_dir, masks_dir), start=1):
        with _open_image(image_path, "image", decode=False) as im:
            width, height = im.size
        mask = read_index_mask(mask_path, len(names), ignore)
        if mask.shape != (height, width):
            raise SegeduError(f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image "
                              f"{image_path} is {width}x{height}")
        images.append({"id": image_id, "file_name": Path(os.path.relpath(image_path, out.parent)).as_posix(),
                       "width": width, "height": height})
        for value in np.unique(mask).tolist():
            if value == 0:
                continue
            crowd = value == ignore
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id,
                "category_id": ignore_id if crowd else value, "iscrowd": int(crowd),
                **region_annotation(mask == value),
            })

    coco = {"images": images, "annotations": annotations, "categories": categories}
    write_json_atomic(out, coco)  # nothing is written unless every pair was read
    return out
