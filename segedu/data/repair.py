"""Repair the defects of real COCO files that are cheap and clearly safe to fix; leave the rest.

Public datasets carry defects that :mod:`segedu.data.coco` rightly refuses, but some have
exactly one sensible fix. :func:`repair` writes a repaired copy and reports each change on one
line, ``FILE: RECORD: CHANGE``, naming the record of the input file:

* a duplicate annotation id is renumbered (new ids after the largest one), as is an annotation
  without an integer id. This matters beyond tidiness: pycocotools indexes annotations by id
  (``COCO.anns``), so of two annotations sharing an id it keeps only the last, and every tool
  built on it (``loadAnns``, ``annToMask``, COCOeval) silently sees one object twice and the
  other never;
* a missing or invalid ``area`` is computed with pycocotools from the segmentation (``mask.area``
  of its RLE), and a malformed ``bbox`` is recomputed from it (``mask.toBbox``);
* an annotation with an empty segmentation (an empty list, only empty polygons, an RLE covering
  no pixel) is dropped: it paints nothing; empty polygons (fewer than 3 points) beside real ones
  are removed;
* an image record whose file is absent is dropped with its annotations, when the images folder
  is checked (``check_images``): nothing can be trained on it.

Everything else is left as a problem for a person to decide, e.g. a duplicate image id (which
annotations belong to which image cannot be told from the file), a dangling category or image
id (one wrong id or a whole shifted numbering?), an unreadable image file (damaged, or only a
format this PIL cannot read?), an odd number of polygon coordinates. After repairing, the result
is validated with :func:`segedu.data.coco.validate_data`; it is written (atomically) only when
no problem is left, so a failed repair writes nothing.
"""
from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

from pycocotools import mask as mask_utils

from ..errors import SegeduError
from ..fileio import write_json_atomic
from . import coco
from .coco import _climbs_out, _is_absolute, _is_int, _is_number, _record

#: problems left to a person, and why no automatic fix is safe (said once each in the report)
NOT_REPAIRED = {
    "duplicate image id": "duplicate image ids are not repaired: which annotations belong to which of the two "
                          "images cannot be told from the file",
    "refers to unknown": "dangling image or category ids are not repaired: one wrong id, or a whole numbering "
                         "shifted by one? compare with the dataset's source",
    "is unreadable": "unreadable image files are not dropped: damaged, or a format this PIL cannot open? replace "
                     "the file, or remove its record by hand",
    "duplicate file_name": "duplicate file names are not repaired: the same image listed twice, or two images "
                           "given one name? compare with the dataset's source",
}
#: pycocotools' behaviour behind the renumbering, said once in the report
DUPLICATE_ID_NOTE = ("pycocotools keeps only the last of two annotations sharing an id when it indexes "
                     "them by id (COCO.anns), so one of them was invisible to it")


@dataclasses.dataclass
class RepairReport:
    """What :func:`repair` changed and, when it wrote nothing, the problems left."""

    ann_file: Path
    out: Path
    images_dir: Path
    #: one line per change, ``FILE: RECORD: CHANGE`` (records as numbered in ``ann_file``)
    changes: list[str]
    #: problems left after repairing, records as numbered in ``ann_file``; empty when written
    problems: list[str]
    notes: list[str]
    written: bool

    def render(self) -> str:
        lines = [f"{self.ann_file}: {len(self.changes)} change(s)" if self.changes
                 else f"{self.ann_file}: nothing to repair", *[f"  {c}" for c in self.changes]]
        lines += [f"  note: {note}" for note in self.notes]
        if self.problems:
            lines += [f"{self.ann_file}: {len(self.problems)} problem(s) left that repair-coco does not fix "
                      f"(they need a decision the file cannot make); nothing written to {self.out}:",
                      *[f"  {p}" for p in self.problems]]
            lines += [f"  why: {why}" for key, why in NOT_REPAIRED.items() if any(key in p for p in self.problems)]
        else:
            images = "" if self.images_dir.resolve() == self.out.parent.resolve() else (
                f" (file names relative to {self.images_dir}: pass --images {self.images_dir} or that folder as "
                "the data folder)")
            lines.append(f"wrote {self.out}, which passes validation{images}")
        return "\n".join(lines)


def repair(ann_file, out, images_dir=None, check_images: bool = True, overwrite: bool = False) -> RepairReport:
    """Repair ``ann_file`` into ``out`` (see the module docstring); return the :class:`RepairReport`.

    ``images_dir`` is the folder ``file_name`` is relative to (default: ``ann_file``'s folder);
    with ``check_images`` image records whose file is absent are dropped, and the result is
    validated with its image files. ``out`` may be ``ann_file`` or another existing file only
    with ``overwrite``. Raises SegeduError when the file cannot be read or is not a COCO object
    with its sections; returns a report with ``written=False`` when problems are left.
    """
    ann_file, out = Path(ann_file), Path(out)
    images_dir = Path(images_dir) if images_dir is not None else ann_file.parent
    if out.exists() and not overwrite:
        same = out.resolve() == ann_file.resolve()
        raise SegeduError(f"{out} {'is the input file' if same else 'exists'}; pass --overwrite to replace it "
                          "or choose another --out.")
    if out.is_dir():
        raise SegeduError(f"{out} is a folder; --out names the repaired JSON file to write.")
    data = coco.parse(ann_file)
    structure = coco.structure_problems(data, ann_file)
    if structure:  # the records cannot be told apart: nothing to repair safely
        raise coco.ValidationReport(ann_file, images_dir, structure, None).error()

    changes: list[str] = []

    def change(record: str, what: str) -> None:
        changes.append(f"{ann_file}: {record}: {what}")

    image_index = list(range(len(data["images"])))  # input index of each record kept
    ann_index = list(range(len(data.get("annotations", []))))
    if check_images:
        image_index, ann_index = _drop_missing_images(data, images_dir, change)
    ann_index = _repair_annotations(data, ann_index, change)
    renumbered = _renumber(data, ann_index, change)
    notes = [DUPLICATE_ID_NOTE] if renumbered else []

    report = coco.validate_data(data, ann_file, images_dir, check_images)
    notes += report.notes
    problems = [_original_record(p, ann_file, image_index, ann_index) for p in report.problems]
    if not problems:
        write_json_atomic(out, data)
    return RepairReport(ann_file, out, images_dir, changes, problems, notes, written=not problems)


def _drop_missing_images(data: dict, images_dir: Path, change) -> tuple[list[int], list[int]]:
    """Drop image records whose file is absent, with their annotations; return the input index of
    each image and of each annotation kept."""
    images, annotations = data["images"], data.get("annotations", [])
    missing: dict[int, str] = {}  # index -> record
    for i, img in enumerate(images):
        name = img.get("file_name") if isinstance(img, dict) else None
        if not isinstance(name, str) or not name or _is_absolute(name) or _climbs_out(name):
            continue  # a problem of its own, left to the validator
        if not (images_dir / name).is_file():
            missing[i] = _record("images", i, img)
    kept = [i for i in range(len(images)) if i not in missing]
    # a shared id keeps its annotations; a record without an integer id owns none
    ids = [img.get("id") if isinstance(img, dict) and _is_int(img.get("id")) else None for img in images]
    dropped_ids = {ids[i] for i in missing} - {ids[i] for i in kept} - {None}
    orphan = [isinstance(a, dict) and _is_int(a.get("image_id")) and a["image_id"] in dropped_ids
              for a in annotations]
    per_image = Counter(a["image_id"] for a, o in zip(annotations, orphan) if o)
    for i, record in missing.items():
        change(record, f"image file {images_dir / images[i]['file_name']} not found: dropped, with its "
                       f"{per_image[ids[i]] if ids[i] in dropped_ids else 0} annotation(s)")
    data["images"] = [images[i] for i in kept]
    ann_kept = [i for i, o in enumerate(orphan) if not o]
    if "annotations" in data:
        data["annotations"] = [annotations[i] for i in ann_kept]
    return kept, ann_kept


def _repair_annotations(data: dict, ann_index: list[int], change) -> list[int]:
    """Drop empty segmentations, remove empty polygons, compute missing or invalid areas and
    malformed boxes. ``ann_index`` is the input index of each annotation; returns it for those kept."""
    sizes = {}
    for img in data["images"]:
        if isinstance(img, dict) and _is_int(img.get("id")) and img["id"] not in sizes:
            w, h = img.get("width"), img.get("height")
            sizes[img["id"]] = (h, w) if _is_int(w) and _is_int(h) and w > 0 and h > 0 else None
    kept, kept_index = [], []
    for i, ann in zip(ann_index, data.get("annotations", [])):
        if not isinstance(ann, dict):
            kept.append(ann)
            kept_index.append(i)
            continue
        record = _record("annotations", i, ann)
        image_id = ann.get("image_id")
        size = sizes.get(image_id) if _is_int(image_id) else None
        if _drop_empty(ann, size, record, change):
            continue
        kept.append(ann)
        kept_index.append(i)
        seg = ann.get("segmentation")
        if size is None or seg is None or coco.segmentation_problems(seg, size):
            continue  # nothing can be computed from it; the validator names the problem
        missing, area = "area" not in ann, ann.get("area")
        if missing or not _is_number(area) or area < 0:
            ann["area"] = coco.segmentation_area(seg, size)
            what = "no 'area'" if missing else f"'area' {area!r} invalid"
            change(record, f"{what}: computed with pycocotools ({ann['area']:g})")
        box = ann.get("bbox")
        if "bbox" in ann and not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)
                                  and box[2] >= 0 and box[3] >= 0):
            ann["bbox"] = [float(v) for v in mask_utils.toBbox(coco.segmentation_rle(seg, size))]
            change(record, f"'bbox' {box!r} malformed: recomputed from the segmentation ({ann['bbox']})")
    if "annotations" in data:
        data["annotations"] = kept
    return kept_index


def _drop_empty(ann: dict, size, record: str, change) -> bool:
    """Whether ``ann`` paints nothing and is dropped; removes empty polygons beside real ones."""
    seg = ann.get("segmentation")
    if isinstance(seg, list):
        if not seg:
            change(record, "empty segmentation (no polygon): dropped")
            return True
        empty = [k for k, poly in enumerate(seg) if isinstance(poly, list) and len(poly) < 6
                 and len(poly) % 2 == 0 and all(_is_number(v) for v in poly)]
        if len(empty) == len(seg):
            change(record, "segmentation has only empty polygons (fewer than 3 points): dropped")
            return True
        if empty:
            ann["segmentation"] = [poly for k, poly in enumerate(seg) if k not in empty]
            change(record, f"removed {len(empty)} empty polygon(s) (fewer than 3 points): polygon(s) "
                           f"{', '.join(map(str, empty))}")
        return False
    if isinstance(seg, dict) and size is not None and not coco.segmentation_problems(seg, size):
        if coco.segmentation_area(seg, size) == 0:
            change(record, "RLE segmentation covers no pixel: dropped")
            return True
    return False


def _renumber(data: dict, ann_index: list[int], change) -> int:
    """Give annotations with a repeated or missing id new ids after the largest; return how many
    repeated ids were renumbered."""
    annotations = [a for a in data.get("annotations", []) if isinstance(a, dict)]
    next_id = max((a["id"] for a in annotations if _is_int(a.get("id"))), default=0) + 1
    first: dict[int, str] = {}
    repeated = 0
    for i, ann in zip(ann_index, data.get("annotations", [])):
        if not isinstance(ann, dict):
            continue
        record = _record("annotations", i, ann)
        if not _is_int(ann.get("id")):
            change(record, f"no integer 'id' ({ann.get('id')!r}): given id {next_id}")
        elif ann["id"] in first:
            change(record, f"duplicate annotation id {ann['id']} (also {first[ann['id']]}): renumbered to {next_id}")
            repeated += 1
        else:
            first[ann["id"]] = record
            continue
        ann["id"] = next_id
        first[next_id] = _record("annotations", i, ann)
        next_id += 1
    return repeated


def _original_record(problem: str, ann_file: Path, image_index: list[int], ann_index: list[int]) -> str:
    """A problem of the repaired data with its leading record numbered as in the input file."""
    prefix = f"{ann_file}: "
    match = re.match(r"(images|annotations)\[(\d+)\]", problem[len(prefix):]) if problem.startswith(prefix) else None
    if not match:
        return problem
    index = (image_index if match.group(1) == "images" else ann_index)[int(match.group(2))]
    return f"{prefix}{match.group(1)}[{index}]{problem[len(prefix) + match.end():]}"
