"""Label noise, injected on purpose: what a sloppy annotator does to a COCO annotation file.

Competition labels are noisy, and on real data nobody knows which labels are wrong. On segedu's
generated dataset the true labels are known, so noise can be *injected* at a chosen rate, a model
trained on the noisy labels can be scored on clean ones, and a data-cleansing ranking can be
checked against the corruption that was really done.

The noise model: a share ``rate`` of the images had a careless annotator. In each of them a share
``objects`` of the annotations (at least one) is corrupted, each by one kind drawn uniformly from
``kinds``:

``flip``
    the category is changed to a confusable one (:data:`CONFUSABLE`: Paper <-> Paper pack, Plastic
    <-> Plastic bag, Metal <-> Battery, ...), the mistake of an annotator who clicked the wrong
    class;
``boundary``
    the outline is eroded or dilated (one or the other, at random) by ``boundary_px`` pixels, an
    outline drawn too tight or too loose; an object eroded to nothing is gone; the new outline is
    stored as an RLE mask (exact), as COCO allows;
``missing``
    the annotation is deleted, an object nobody outlined (its pixels become Background);
``jitter``
    every polygon vertex moves by Gaussian noise of ``jitter_px`` pixels, a hurried outline.

Only the copy changes: the clean file is left as it is, and :func:`write_noisy` writes the noisy
file and, beside it, a report (``<name>.noise.json``) listing every corruption and, per image, the
share of pixels whose label changed. The images themselves are not touched, so the noisy file
lives in any folder and names the dataset's image files.

Determinism: which images, which objects, which kinds and every random offset come from one
generator seeded by ``seed``; the same call twice writes the same bytes.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ..errors import SegeduError
from ..fileio import write_bytes_atomic
from . import coco
from .coco import CocoData, class_mapping
from .masks import annotation_rle, semantic_mask

KINDS = ("flip", "boundary", "missing", "jitter")

#: For each class, the classes a careless annotator mistakes it for (drawn uniformly). The pairs
#: follow what makes the generated (and the real) classes confusable: shared colours and shapes
#: (Paper / Paper pack, Plastic / Plastic bag / Glass), batteries that look like small cans, white
#: Styrofoam that looks like paper, General trash that borrows other classes' looks.
CONFUSABLE: dict[str, tuple[str, ...]] = {
    "General trash": ("Plastic", "Paper", "Plastic bag"),
    "Paper": ("Paper pack", "General trash"),
    "Paper pack": ("Paper",),
    "Metal": ("Battery", "General trash"),
    "Glass": ("Plastic",),
    "Plastic": ("Plastic bag", "Glass", "General trash"),
    "Styrofoam": ("Paper", "Plastic"),
    "Plastic bag": ("Plastic", "General trash"),
    "Battery": ("Metal",),
    "Clothing": ("General trash",),
}


@dataclasses.dataclass(frozen=True)
class NoiseSpec:
    """What to corrupt; see the module docstring.

    ``rate``: share of the images with corrupted labels (rounded to a whole number of images);
    ``objects``: share of a corrupted image's annotations that are corrupted (rounded up, at least
    one); ``boundary_px`` / ``jitter_px``: pixels of erosion or dilation and the vertex noise's
    standard deviation (None: 1/64 of the image's longer side, at least 1); ``seed``: the generator.
    """

    rate: float
    kinds: tuple[str, ...] = KINDS
    objects: float = 0.5
    boundary_px: int | None = None
    jitter_px: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        kinds = (self.kinds,) if isinstance(self.kinds, str) else tuple(self.kinds)
        object.__setattr__(self, "kinds", kinds)
        if not 0.0 <= self.rate <= 1.0:
            raise SegeduError(f"noise rate must be a share of the images in [0, 1], got {self.rate}.")
        if not 0.0 < self.objects <= 1.0:
            raise SegeduError(f"noise objects must be a share of an image's annotations in (0, 1], got {self.objects}.")
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise SegeduError(f"unknown noise kind(s) {unknown or kinds!r}; choose from {', '.join(KINDS)}.")
        if len(set(kinds)) != len(kinds):
            raise SegeduError(f"noise kinds {list(kinds)} name one kind twice.")
        for name in ("boundary_px", "jitter_px"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise SegeduError(f"noise {name} must be > 0 pixels (or None for 1/64 of the image), got {value}.")


@dataclasses.dataclass
class NoiseReport:
    """What :func:`write_noisy` did: the spec, the files, every corruption (``records``: image_id,
    annotation_id, kind, detail, category before and after, area before and after) and, per image
    id, the share of its pixels whose label changed (``changed``; 0 for untouched images)."""

    spec: NoiseSpec
    clean: Path
    noisy: Path
    report: Path
    records: list[dict]
    changed: dict[int, float]
    images: int
    annotations: int

    @property
    def corrupted_images(self) -> list[int]:
        """Ids of the images the annotator corrupted, in file order."""
        return sorted({r["image_id"] for r in self.records})

    def kind_counts(self) -> dict[str, int]:
        return {kind: sum(r["kind"] == kind for r in self.records) for kind in self.spec.kinds}

    def __str__(self) -> str:
        counts = ", ".join(f"{k} {n}" for k, n in self.kind_counts().items())
        changed = np.array(list(self.changed.values()) or [0.0])
        hit = [self.changed[i] for i in self.corrupted_images]
        return (f"label noise: {len(self.corrupted_images)} of {self.images} images corrupted (rate {self.spec.rate}), "
                f"{len(self.records)} of {self.annotations} annotations ({counts}); "
                f"{100 * changed.mean():.2f}% of all pixels changed label "
                f"({100 * (np.mean(hit) if hit else 0.0):.2f}% in a corrupted image); written to {self.noisy}")


def _category_partners(categories: list[dict]) -> dict[int, list[int]]:
    """category id -> the category ids it is confused with (by the names of :data:`CONFUSABLE`)."""
    by_name = {c["name"]: c["id"] for c in categories}
    return {c["id"]: [by_name[n] for n in CONFUSABLE.get(c["name"], ()) if n in by_name] for c in categories}


def _default_px(image: dict) -> float:
    return max(1.0, round(max(image["height"], image["width"]) / 64))


def _polygons_of_mask(mask: np.ndarray) -> list[list[float]]:
    """Outer contours of a bool mask as COCO polygons (each at least 3 points, non-zero area)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        if len(contour) >= 3 and cv2.contourArea(contour) > 0:
            # contours run through pixel centres; +0.5 puts the outline on the pixel edges again
            polygons.append((contour.reshape(-1, 2).astype(np.float64) + 0.5).round(1).ravel().tolist())
    return polygons


def _rle(segmentation, height: int, width: int) -> dict:
    return annotation_rle(segmentation, height, width)


def _with_geometry(ann: dict, segmentation, height: int, width: int) -> dict | None:
    """``ann`` with a new segmentation and the matching area and bbox; None when nothing is left."""
    if isinstance(segmentation, list) and not segmentation:
        return None
    rle = _rle(segmentation, height, width)
    area = float(mask_utils.area(rle))
    if area < 1:
        return None
    return {**ann, "segmentation": segmentation, "area": area, "bbox": [float(v) for v in mask_utils.toBbox(rle)]}


def _boundary(rng, ann: dict, image: dict, px: int) -> tuple[dict | None, str]:
    height, width = image["height"], image["width"]
    mask = mask_utils.decode(_rle(ann["segmentation"], height, width))
    detail = "erode" if rng.random() < 0.5 else "dilate"
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    changed = cv2.erode(mask, kernel) if detail == "erode" else cv2.dilate(mask, kernel)
    if not changed.any():
        return None, f"{detail} {px} px"
    # stored as an exact compressed RLE: a polygon traced around the pixels would shift the outline again
    rle = mask_utils.encode(np.asfortranarray(changed))
    segmentation = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
    return _with_geometry(ann, segmentation, height, width), f"{detail} {px} px"


def _jitter(rng, ann: dict, image: dict, sigma: float) -> tuple[dict | None, str]:
    height, width = image["height"], image["width"]
    segmentation = ann["segmentation"]
    if not isinstance(segmentation, list):  # an RLE has no vertices: jitter the outline of its mask
        segmentation = _polygons_of_mask(mask_utils.decode(_rle(segmentation, height, width)))
    moved = []
    for polygon in segmentation:
        points = np.asarray(polygon, np.float64).reshape(-1, 2)
        points = points + rng.normal(0.0, sigma, points.shape)
        points[:, 0] = points[:, 0].clip(0, width)
        points[:, 1] = points[:, 1].clip(0, height)
        moved.append(points.round(1).ravel().tolist())
    return _with_geometry(ann, moved, height, width), f"sigma {sigma:g} px"


def corrupt(coco: dict, spec: NoiseSpec) -> tuple[dict, list[dict]]:
    """A noisy copy of the COCO dict ``coco`` and the list of corruptions (see :class:`NoiseReport`).

    ``coco`` is not changed. Crowd (void) annotations are never corrupted. An image without
    corruptible annotations can still be drawn as corrupted; it then stays as it was (its records
    are empty), so the number of corrupted images can fall short of ``rate`` on such data.
    """
    rng = np.random.default_rng([spec.seed, 7])
    images = coco["images"]
    partners = _category_partners(coco.get("categories", []))
    by_image: dict[int, list[int]] = {}
    for index, ann in enumerate(coco.get("annotations", [])):
        if not ann.get("iscrowd", 0):
            by_image.setdefault(ann["image_id"], []).append(index)
    n_corrupt = round(spec.rate * len(images))
    chosen = sorted(rng.permutation(len(images))[:n_corrupt].tolist())
    annotations: list[dict | None] = [dict(a) for a in coco.get("annotations", [])]
    records = []
    for image_index in chosen:
        image = images[image_index]
        candidates = by_image.get(image["id"], [])
        if not candidates:
            continue
        count = max(1, math.ceil(spec.objects * len(candidates)))
        for ann_index in sorted(rng.permutation(candidates)[:count].tolist()):
            ann = annotations[ann_index]
            kinds = [k for k in spec.kinds if k != "flip" or partners.get(ann["category_id"])]
            if not kinds:
                continue  # only flips were asked for and this category has no confusable partner
            kind = kinds[int(rng.integers(len(kinds)))]
            px = spec.boundary_px or _default_px(image)
            sigma = spec.jitter_px or _default_px(image)
            if kind == "flip":
                options = partners[ann["category_id"]]
                new = {**ann, "category_id": int(options[int(rng.integers(len(options)))])}
                detail = "class"
            elif kind == "missing":
                new, detail = None, "deleted"
            elif kind == "boundary":
                new, detail = _boundary(rng, ann, image, int(px))
            else:
                new, detail = _jitter(rng, ann, image, float(sigma))
            annotations[ann_index] = new
            records.append({"image_id": image["id"], "annotation_id": ann["id"], "kind": kind, "detail": detail,
                            "category_from": ann["category_id"],
                            "category_to": None if new is None else new["category_id"],
                            "area_from": ann["area"], "area_to": 0.0 if new is None else new["area"]})
    noisy = {**coco, "annotations": [a for a in annotations if a is not None]}
    noisy["info"] = {**coco.get("info", {}), "label_noise": dataclasses.asdict(spec)}
    return noisy, records


def _indexed(coco: dict):
    """A :class:`~segedu.data.coco.CocoData` of an in-memory COCO dict (for painting its masks)."""
    by_image: dict[int, list[dict]] = {}
    for ann in coco.get("annotations", []):
        by_image.setdefault(ann["image_id"], []).append(ann)
    mapping, names = class_mapping(coco["categories"])
    return CocoData(ann_file=Path("<memory>"), images_dir=Path("."), sha256="", images=coco["images"],
                    categories=coco["categories"], annotations_by_image=by_image, category_to_class=mapping,
                    class_names=names, has_annotations=True)


def changed_pixels(clean: dict, noisy: dict, image_ids=None) -> dict[int, float]:
    """Per image id (all, or ``image_ids``), the share of pixels whose semantic label differs between
    two COCO dicts of the same images, masks painted as the data loader paints them."""
    clean_data, noisy_data = _indexed(clean), _indexed(noisy)
    wanted = None if image_ids is None else set(image_ids)
    return {image["id"]: float((semantic_mask(clean_data, image) != semantic_mask(noisy_data, image)).mean())
            for image in clean["images"] if wanted is None or image["id"] in wanted}


def write_noisy(clean_file: str | Path, noisy_file: str | Path, spec: NoiseSpec) -> NoiseReport:
    """Read ``clean_file``, write its noisy copy to ``noisy_file`` and the report beside it
    (``<noisy stem>.noise.json``), both atomically; return the :class:`NoiseReport`.

    The noisy file's images (and so its image paths) are the clean file's; put it anywhere and pass
    it as a training split (``train_split`` of a run, ``--train-split`` of ``segedu train``) with
    the dataset folder as ``data_dir``.
    """
    clean_file, noisy_file = Path(clean_file), Path(noisy_file)
    if clean_file.resolve() == noisy_file.resolve():
        raise SegeduError(f"{noisy_file}: the noisy labels must not overwrite the clean ones; choose another file.")
    try:
        clean = json.loads(clean_file.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as error:
        raise SegeduError(f"{clean_file}: cannot read it as a COCO annotation file ({error}).") from error
    for key in ("images", "annotations", "categories"):  # a test file (no annotations) has no labels to corrupt
        if isinstance(clean, dict) and not isinstance(clean.get(key), list):
            raise SegeduError(f"{clean_file}: a COCO annotation file needs a list '{key}'; it has "
                              f"{type(clean.get(key)).__name__}.")
    # every record checked as the loaders check it (image files aside: only the labels are rewritten),
    # so a malformed one is named here instead of failing inside the corruption
    checked = coco.validate_data(clean, clean_file, check_images=False)
    if not checked.ok:
        raise checked.error()
    noisy, records = corrupt(clean, spec)
    corrupted = sorted({r["image_id"] for r in records})
    changed = {img["id"]: 0.0 for img in clean["images"]}
    changed.update(changed_pixels(clean, noisy, corrupted))
    report_file = noisy_file.with_name(noisy_file.stem + ".noise.json")
    noisy_file.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(noisy_file, json.dumps(noisy, separators=(",", ":")).encode("utf-8"))
    # the clean file by name when it sits beside the noisy one, so the folder can move
    where = clean_file.name if clean_file.parent.resolve() == noisy_file.parent.resolve() else str(clean_file.resolve())
    report = {"clean": where, "noisy": noisy_file.name, "spec": dataclasses.asdict(spec),
              "records": records, "changed": {str(k): v for k, v in changed.items()}}
    write_bytes_atomic(report_file, json.dumps(report, indent=1).encode("utf-8"))
    return NoiseReport(spec, clean_file, noisy_file, report_file, records, changed, len(clean["images"]),
                       sum(not a.get("iscrowd", 0) for a in clean["annotations"]))


def read_report(path: str | Path) -> NoiseReport:
    """The :class:`NoiseReport` of a noisy file (or of its ``.noise.json``) written by :func:`write_noisy`."""
    path = Path(path)
    if not path.name.endswith(".noise.json"):
        path = path.with_name(path.stem + ".noise.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        spec = NoiseSpec(**{**data["spec"], "kinds": tuple(data["spec"]["kinds"])})
        clean_file, noisy_file = path.parent / data["clean"], path.parent / data["noisy"]  # an absolute path stays
        changed = {int(k): v for k, v in data["changed"].items()}
        records = data["records"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise SegeduError(f"{path}: not a noise report written by segedu.data.noise.write_noisy ({error!r}).") from None
    annotations = 0
    if clean_file.is_file():  # the clean file's annotation count, for the report's shares
        try:
            clean = json.loads(clean_file.read_text(encoding="utf-8-sig"))
            annotations = sum(not a.get("iscrowd", 0) for a in clean["annotations"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise SegeduError(f"{clean_file}: the clean file named by the noise report {path} is not a readable "
                              f"COCO file with annotations ({error!r}); run `segedu validate-coco {clean_file}`.") from None
    return NoiseReport(spec, clean_file, noisy_file, path, records, changed, len(changed), annotations)
