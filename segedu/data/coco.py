"""Load and validate a COCO annotation file, and map its categories onto segedu's class ids.

The checks follow the COCO data format (https://cocodataset.org/#format-data, "Object
Detection"): ``images`` with ``id``/``file_name``/``width``/``height``, ``categories`` with
``id``/``name``, ``annotations`` whose ``segmentation`` is a list of polygons
``[[x1, y1, x2, y2, ...], ...]`` or a run-length encoding ``{"size": [h, w], "counts": ...}``,
with ``area``, ``bbox`` ``[x, y, w, h]`` and ``iscrowd`` 0/1.

``area`` may be missing (public datasets converted by hand often lack it): it is then computed
with pycocotools from the segmentation, as the COCO tools themselves compute it, and the report
says so in a note. Images are painted largest area first (:mod:`segedu.data.masks`), so an area
is needed, but a missing one is no reason to refuse the file.

Every problem becomes one line ``FILE: RECORD: PROBLEM`` (the record is e.g.
``annotations[12] (id 45)``), so a broken file is fixed in one pass instead of one traceback
at a time from deep inside pycocotools. Malformed data is rejected here, before pycocotools
sees it: its C code trusts its input (an RLE whose counts overrun the image writes past the
buffer).

A competition test file (``test.json``) has no ``annotations`` section; that one section may
be missing and is then treated as empty.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from ..errors import SegeduError
from .classes import CLASSES, IGNORE_INDEX

#: how many problem lines the error from :func:`load` lists before "... and N more"
MAX_LISTED = 20
#: polygon vertices may lie this far (pixels) outside the image: annotation tools round outwards
COORD_TOLERANCE = 1.0
#: category names (after :func:`normalize_name`) whose pixels are void and get IGNORE_INDEX
VOID_NAMES = frozenset({"void", "ignore", "ignored", "unlabeled", "unlabelled"})
_BACKGROUND = "background"


def normalize_name(name: str) -> str:
    """Category name compared case-, space-, underscore- and hyphen-insensitively."""
    return re.sub(r"[\s_\-]+", "", name).lower()


def is_void_name(name: str) -> bool:
    """True for a category meaning 'do not count these pixels' (``void``, ``__ignore__``, ...)."""
    return normalize_name(name) in VOID_NAMES


@dataclasses.dataclass
class CocoSummary:
    """What a valid file holds, for the one-screen summary."""

    images: int
    annotations: int
    #: category name -> number of annotations, in category-id order
    annotations_per_category: dict[str, int]
    #: images without any annotation
    empty_images: int
    #: False for a file without an ``annotations`` section (a test file)
    has_annotations: bool


@dataclasses.dataclass
class ValidationReport:
    """Result of :func:`validate`: every problem found, and a summary when the file was readable."""

    ann_file: Path
    images_dir: Path
    problems: list[str]
    summary: CocoSummary | None
    #: what was assumed or computed, not wrong (e.g. areas computed with pycocotools)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        """All problems, one a line; or, for a valid file, a summary that fits one screen."""
        notes = [f"note: {note}" for note in self.notes]
        if self.problems:
            head = f"{self.ann_file}: {len(self.problems)} problem(s)"
            return "\n".join([head, *self.problems, *notes])
        s = self.summary
        lines = [
            f"{self.ann_file}: OK",
            f"  images:       {s.images} (from {self.images_dir})",
            f"  annotations:  {s.annotations}"
            + ("" if s.has_annotations else " (no annotations section: an unlabelled/test file)"),
            f"  empty images: {s.empty_images}",
        ]
        if s.annotations_per_category:
            width = max(map(len, s.annotations_per_category))
            lines.append("  annotations per category:")
            lines += [f"    {name:<{width}}  {n}" for name, n in s.annotations_per_category.items()]
        return "\n".join(lines + [f"  {note}" for note in notes])

    def error(self) -> SegeduError:
        """The error a loader raises for this report: one line for one problem, else a head line
        and the first :data:`MAX_LISTED` problems, each time with the command that lists them all."""
        images_option = "" if self.images_dir == self.ann_file.parent else f" --images {self.images_dir}"
        command = f"`segedu validate-coco {self.ann_file}{images_option}`"
        if len(self.problems) == 1:
            return SegeduError(f"{self.problems[0]}; fix it and check the file with {command}")
        listed = self.problems[:MAX_LISTED]
        more = len(self.problems) - len(listed)
        tail = [f"... and {more} more"] if more else []
        return SegeduError("\n".join([f"{self.ann_file} is not a usable COCO annotation file "
                                      f"({len(self.problems)} problem(s)); fix these and run {command} "
                                      "to list them all:", *listed, *tail]))


@dataclasses.dataclass
class CocoData:
    """A validated COCO file, indexed for segmentation.

    ``category_to_class`` maps the file's category ids to segedu class ids: by name onto the
    competition's :data:`~segedu.data.classes.CLASSES` when every (non-void) name is a
    competition name, otherwise to 1..K in category-id order; void categories map to
    IGNORE_INDEX. ``class_names[i]`` names class ``i`` (0 is the background).
    """

    ann_file: Path
    images_dir: Path
    #: sha256 of the annotation file's bytes: the key of everything cached from this file
    sha256: str
    #: image records in file order
    images: list[dict]
    categories: list[dict]
    #: image id -> its annotations in file order
    annotations_by_image: dict[int, list[dict]]
    category_to_class: dict[int, int]
    class_names: tuple[str, ...]
    #: False for a file without an ``annotations`` section (a test file)
    has_annotations: bool

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def image_path(self, image: dict) -> Path:
        return self.images_dir / image["file_name"]

    def annotations(self, image: dict) -> list[dict]:
        return self.annotations_by_image.get(image["id"], [])


def validate(ann_file, images_dir=None, check_images: bool = True) -> ValidationReport:
    """Check ``ann_file`` (and, with ``check_images``, its image files) and list every problem.

    ``images_dir`` is the folder ``file_name`` is relative to (default: the JSON's folder).
    Images are checked from their headers (``PIL.Image.open(...).size`` and ``verify()``),
    so a few thousand take seconds.
    """
    return _check(Path(ann_file), images_dir, check_images)[0]


def validate_data(data, ann_file, images_dir=None, check_images: bool = True) -> ValidationReport:
    """:func:`validate` for a file already parsed into ``data`` (problems still name ``ann_file``).

    Fills in a missing ``area`` of an annotation in ``data`` itself, like :func:`load`.
    """
    ann_file = Path(ann_file)
    images_dir = Path(images_dir) if images_dir is not None else ann_file.parent
    return _check_data(data, ann_file, images_dir, check_images)


def load(ann_file, images_dir=None, check_images: bool = True) -> CocoData:
    """Validate ``ann_file`` and return it indexed; raise SegeduError listing the problems."""
    ann_file = Path(ann_file)
    report, data, raw = _check(ann_file, images_dir, check_images)
    if not report.ok:
        raise report.error()
    by_image: dict[int, list[dict]] = defaultdict(list)
    for ann in data.get("annotations", []):
        by_image[ann["image_id"]].append(ann)
    category_to_class, class_names = class_mapping(data["categories"])
    return CocoData(
        ann_file=ann_file,
        images_dir=report.images_dir,
        sha256=hashlib.sha256(raw).hexdigest(),
        images=data["images"],
        categories=data["categories"],
        annotations_by_image=dict(by_image),
        category_to_class=category_to_class,
        class_names=class_names,
        has_annotations="annotations" in data,
    )


def class_mapping(categories: list[dict]) -> tuple[dict[int, int], tuple[str, ...]]:
    """Category id -> segedu class id, and the class names (index = class id).

    Names are compared with :func:`normalize_name`. Void categories map to IGNORE_INDEX and a
    category named "background" to 0. When every other name is a competition class name the
    competition ids are used (so any subset or order of the 10 categories gives the same ids);
    otherwise the remaining categories become classes 1..K in category-id order.
    """
    competition = {normalize_name(name): i for i, name in enumerate(CLASSES)}
    mapping: dict[int, int] = {}
    named = []
    for cat in sorted(categories, key=lambda c: c["id"]):
        key = normalize_name(cat["name"])
        if key in VOID_NAMES:
            mapping[cat["id"]] = IGNORE_INDEX
        elif key == _BACKGROUND:
            mapping[cat["id"]] = 0
        else:
            named.append(cat)
    if all(normalize_name(cat["name"]) in competition for cat in named):
        mapping.update({cat["id"]: competition[normalize_name(cat["name"])] for cat in named})
        return mapping, CLASSES
    mapping.update({cat["id"]: k for k, cat in enumerate(named, start=1)})
    return mapping, ("Background", *(cat["name"] for cat in named))


# --- the checks ---------------------------------------------------------------------------

def _check(ann_file: Path, images_dir, check_images: bool):
    """(report, parsed JSON or None, raw bytes or None)."""
    images_dir = Path(images_dir) if images_dir is not None else ann_file.parent
    data, raw, problem = _parse(ann_file)
    if problem is not None:
        return ValidationReport(ann_file, images_dir, [problem], None), None, None
    return _check_data(data, ann_file, images_dir, check_images), data, raw


def parse(ann_file) -> dict:
    """The JSON of ``ann_file``, not validated; SegeduError naming the file when it is missing,
    unreadable, not UTF-8 or not JSON (for code that repairs a file before validating it)."""
    data, _, problem = _parse(Path(ann_file))
    if problem is not None:
        raise SegeduError(problem)
    return data


def _parse(ann_file: Path):
    """(parsed JSON, raw bytes, None), or (None, None, the problem line)."""
    def failed(problem: str):
        return None, None, f"{ann_file}: {problem}"

    if not ann_file.is_file():
        return failed("is a folder, not a JSON file" if ann_file.is_dir() else "does not exist")
    try:
        raw = ann_file.read_bytes()
    except OSError as exc:  # permission denied, an I/O error: a line, not a traceback
        return failed(f"cannot be read ({exc.strerror or type(exc).__name__}); check the file and its permissions")
    try:
        return json.loads(raw.decode("utf-8-sig")), raw, None
    except UnicodeDecodeError as exc:
        return failed(f"byte {exc.start}: not UTF-8 text; a COCO file is UTF-8 JSON")
    except json.JSONDecodeError as exc:
        return failed(f"line {exc.lineno}, column {exc.colno}: broken JSON: {exc.msg}")
    except RecursionError:
        return failed("nested too deeply to be JSON a COCO file holds")


def structure_problems(data, ann_file: Path) -> list[str]:
    """What keeps the records from being read at all: the top level not an object, a section
    missing (``annotations`` may be: a test file has none) or not a list."""
    if not isinstance(data, dict):
        return [f"{ann_file}: top level is a JSON {_json_type(data)}; a COCO file is an "
                "object with 'images', 'annotations' and 'categories'"]
    problems = []
    for section in ("images", "annotations", "categories"):
        if section not in data:
            if section != "annotations":  # a test file legitimately has none
                problems.append(f"{ann_file}: {section}: section missing")
        elif not isinstance(data[section], list):
            problems.append(f"{ann_file}: {section}: must be a list, got a JSON {_json_type(data[section])}")
    return problems


def _check_data(data, ann_file: Path, images_dir: Path, check_images: bool) -> ValidationReport:
    problems: list[str] = []
    notes: list[str] = []

    def report(summary=None):
        return ValidationReport(ann_file, images_dir, problems, summary, notes)

    def add(record: str, problem: str) -> None:
        problems.append(f"{ann_file}: {record}: {problem}")

    problems += structure_problems(data, ann_file)
    if problems:  # records cannot be checked against a broken structure
        return report()

    categories = _check_categories(data["categories"], add)
    images = _check_images(data["images"], add)
    annotations = data.get("annotations", [])
    computed = _check_annotations(annotations, images, categories, add)
    if computed:
        notes.append(f"{computed} annotation(s) had no area; computed with pycocotools")
    if check_images:
        _check_image_files(data["images"], images_dir, add)
    if problems:
        return report()

    per_category = Counter(ann["category_id"] for ann in annotations)
    annotated = {ann["image_id"] for ann in annotations}
    summary = CocoSummary(
        images=len(data["images"]),
        annotations=len(annotations),
        annotations_per_category={cat["name"]: per_category[cat["id"]]
                                  for cat in sorted(data["categories"], key=lambda c: c["id"])},
        empty_images=sum(img["id"] not in annotated for img in data["images"]),
        has_annotations="annotations" in data,
    )
    return report(summary)


def _check_categories(categories: list, add) -> set:
    """Valid category ids; problems go to ``add``."""
    if not categories:
        add("categories", "the list is empty; at least one category is needed")
    ids: set = set()
    names: dict[str, str] = {}  # normalised name -> the record that has it
    for i, cat in enumerate(categories):
        record = _record("categories", i, cat)
        if not isinstance(cat, dict):
            add(record, f"must be an object, got a JSON {_json_type(cat)}")
            continue
        if _new_id(record, cat, ids, "category", add):
            ids.add(cat["id"])
        name = cat.get("name")
        if not isinstance(name, str) or not name.strip():
            add(record, "has no 'name' (a non-empty string)")
        elif normalize_name(name) in names:
            # classes are matched by name: two categories of one name would become one class, or two
            add(record, f"duplicate category name {name!r}: {names[normalize_name(name)]} has the same name "
                        "(ignoring case, spaces, '_' and '-'); merge the two categories or rename one")
        else:
            names[normalize_name(name)] = f"{record} {name!r}"
    return ids


def _new_id(record: str, item: dict, seen, kind: str, add) -> bool:
    """Whether ``item`` has an integer id not in ``seen`` (ids of its section so far); a missing,
    non-integer or repeated id goes to ``add`` instead."""
    if not _is_int(item.get("id")):
        add(record, "has no integer 'id'")
        return False
    if item["id"] in seen:
        add(record, f"duplicate {kind} id {item['id']}")
        return False
    return True


def _check_images(images: list, add) -> dict:
    """Image id -> (height, width), None where the size is unusable; problems go to ``add``."""
    sizes: dict = {}
    file_names: dict[str, int] = {}
    for i, img in enumerate(images):
        record = _record("images", i, img)
        if not isinstance(img, dict):
            add(record, f"must be an object, got a JSON {_json_type(img)}")
            continue
        size = None
        w, h = img.get("width"), img.get("height")
        for key, value in (("width", w), ("height", h)):
            if key not in img:
                add(record, f"has no '{key}'")
            elif not _is_int(value) or value <= 0:
                add(record, f"'{key}' must be a positive integer, got {value!r}")
        if _is_int(w) and _is_int(h) and w > 0 and h > 0:
            size = (h, w)
        if _new_id(record, img, sizes, "image", add):
            sizes[img["id"]] = size
        name = img.get("file_name")
        if not isinstance(name, str) or not name:
            add(record, "has no 'file_name' (a non-empty string)")
        elif _is_absolute(name):
            add(record, f"file_name {name!r} is an absolute path; file names are relative to the images "
                        "folder (--images), so that a dataset can move")
        elif _climbs_out(name):
            add(record, f"file_name {name!r} has a '..' component; file names must stay inside the images "
                        "folder (--images): point --images at a folder above every image instead")
        elif name in file_names:
            add(record, f"duplicate file_name {name!r} (also images[{file_names[name]}])")
        else:
            file_names[name] = i
    return sizes


def _check_annotations(annotations: list, image_sizes: dict, category_ids: set, add) -> int:
    """Problems go to ``add``; a missing ``area`` of a valid segmentation is computed in place.
    Returns how many areas were computed."""
    ids: set = set()
    computed = 0
    for i, ann in enumerate(annotations):
        record = _record("annotations", i, ann)
        if not isinstance(ann, dict):
            add(record, f"must be an object, got a JSON {_json_type(ann)}")
            continue
        if _new_id(record, ann, ids, "annotation", add):
            ids.add(ann["id"])
        size = None
        if "image_id" not in ann:
            add(record, "has no 'image_id'")
        elif not _is_int(ann["image_id"]) or ann["image_id"] not in image_sizes:
            add(record, f"refers to unknown image id {ann['image_id']!r}")
        else:
            size = image_sizes[ann["image_id"]]
        if "category_id" not in ann:
            add(record, "has no 'category_id'")
        elif not _is_int(ann["category_id"]) or ann["category_id"] not in category_ids:
            add(record, f"refers to unknown category id {ann['category_id']!r}")
        segmentation_ok = False
        if "segmentation" not in ann:
            add(record, "has no 'segmentation'")
        else:
            seg_problems = segmentation_problems(ann["segmentation"], size)
            for problem in seg_problems:
                add(record, problem)
            segmentation_ok = not seg_problems and size is not None
        if "area" not in ann and segmentation_ok:
            ann["area"] = segmentation_area(ann["segmentation"], size)
            computed += 1
        for problem in _box_area_crowd_problems(ann):
            add(record, problem)
    return computed


def segmentation_area(seg, size: tuple[int, int]) -> float:
    """Pixels a valid segmentation covers in an image of ``size`` (h, w), as pycocotools counts them:
    ``mask.area`` of its RLE, polygons rasterised with ``frPyObjects`` and merged. Check the
    segmentation with :func:`segmentation_problems` first: pycocotools' C code trusts its input."""
    return float(mask_utils.area(segmentation_rle(seg, size)))


def segmentation_rle(seg, size: tuple[int, int]) -> dict:
    """The compressed RLE of a valid segmentation (polygons merged into one), for pycocotools."""
    h, w = size
    if isinstance(seg, list):
        return mask_utils.merge(mask_utils.frPyObjects([[float(v) for v in poly] for poly in seg], h, w))
    if isinstance(seg["counts"], list):
        return mask_utils.frPyObjects(seg, h, w)
    return {"size": [h, w], "counts": seg["counts"].encode("ascii")}


def segmentation_problems(seg, size: tuple[int, int] | None) -> list[str]:
    """What is wrong with one annotation's ``segmentation`` for an image of ``size`` (h, w)."""
    if isinstance(seg, dict):
        return _rle_problems(seg, size)
    if not isinstance(seg, list):
        return [f"'segmentation' must be a list of polygons or an RLE object, got a JSON {_json_type(seg)}"]
    if not seg:
        return ["'segmentation' is an empty list (no polygon)"]
    problems = []
    for k, poly in enumerate(seg):
        where = f"segmentation polygon {k}"
        if not isinstance(poly, list):
            problems.append(f"{where} must be a list of numbers [x1, y1, x2, y2, ...], "
                            f"got a JSON {_json_type(poly)}")
            continue
        try:
            coords = np.asarray(poly)
        except ValueError:  # ragged nesting
            coords = np.asarray([None])
        if coords.ndim != 1 or coords.dtype.kind not in "iuf":
            problems.append(f"{where} has non-numeric coordinates (expected numbers only)")
            continue
        coords = coords.astype(np.float64)
        if not np.isfinite(coords).all():
            problems.append(f"{where} has NaN or infinite coordinates")
            continue
        if len(coords) % 2:
            problems.append(f"{where} has an odd number of coordinates ({len(coords)}); "
                            "expected x, y pairs")
            continue
        if len(coords) < 6:
            problems.append(f"{where} has {len(coords) // 2} point(s); a polygon needs at least 3")
            continue
        if size is not None:
            h, w = size
            xs, ys = coords[0::2], coords[1::2]
            if (xs.min() < -COORD_TOLERANCE or xs.max() > w + COORD_TOLERANCE
                    or ys.min() < -COORD_TOLERANCE or ys.max() > h + COORD_TOLERANCE):
                problems.append(
                    f"{where} has points outside the {w}x{h} image (x from {xs.min():g} to "
                    f"{xs.max():g}, y from {ys.min():g} to {ys.max():g}; tolerance {COORD_TOLERANCE:g} px)"
                )
    return problems


def _rle_problems(rle: dict, size: tuple[int, int] | None) -> list[str]:
    rle_size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(rle_size, list) and len(rle_size) == 2 and all(_is_int(v) and v >= 0 for v in rle_size)):
        return [f"RLE 'size' must be [height, width], got {rle_size!r}"]
    if size is not None and tuple(rle_size) != size:
        return [f"RLE size {rle_size} differs from the image size [{size[0]}, {size[1]}] ([height, width])"]
    if isinstance(counts, str):
        decoded = rle_string_counts(counts)
        if decoded is None:
            return ["RLE 'counts' is not a valid compressed COCO RLE string"]
        counts = decoded
    elif not (isinstance(counts, list) and all(_is_int(c) for c in counts)):
        return ["RLE 'counts' must be a list of integers or a compressed RLE string"]
    if any(c < 0 for c in counts):
        return ["RLE 'counts' has negative run lengths"]
    total, expected = sum(counts), rle_size[0] * rle_size[1]
    if total != expected:
        return [f"RLE 'counts' cover {total} pixels; size {rle_size} has {expected}"]
    return []


def rle_string_counts(text: str) -> list[int] | None:
    """Run lengths of a compressed COCO RLE string, or None when it is malformed.

    Mirrors ``rleFrString`` in pycocotools' ``maskApi.c``: 6-bit characters offset by 48
    (5 data bits + a continuation bit, the last one sign-extended), each count after the
    second stored as a difference to the count two places back.
    """
    counts: list[int] = []
    p = 0
    while p < len(text):
        value, shift, more = 0, 0, True
        while more:
            if p >= len(text):
                return None  # the last character announced a continuation
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                return None
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            p += 1
            shift += 5
            if not more and c & 0x10:
                value -= 1 << shift  # sign-extend
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def _box_area_crowd_problems(ann: dict) -> list[str]:
    problems = []
    if "bbox" in ann:
        box = ann["bbox"]
        if not (isinstance(box, list) and len(box) == 4):
            problems.append(f"'bbox' must be [x, y, width, height], got {box!r}")
        elif not all(_is_number(v) for v in box):
            problems.append(f"'bbox' has non-numeric or non-finite values {box!r}")
        elif box[2] < 0 or box[3] < 0:
            problems.append(f"'bbox' has a negative width or height {box!r}")
    # a missing area was computed from a valid segmentation (a broken one is reported already)
    if "area" in ann and not _is_number(ann["area"]):
        problems.append(f"'area' must be a finite number, got {ann['area']!r}")
    elif "area" in ann and ann["area"] < 0:
        problems.append(f"'area' is negative ({ann['area']})")
    crowd = ann.get("iscrowd", 0)
    if not (_is_int(crowd) and crowd in (0, 1)):
        problems.append(f"'iscrowd' must be 0 or 1, got {crowd!r}")
    return problems


def _check_image_files(images: list, images_dir: Path, add) -> None:
    """Existence, readability and size of each image file, from its header only."""
    from PIL import Image

    for i, img in enumerate(images):
        name = img.get("file_name") if isinstance(img, dict) else None
        if not isinstance(name, str) or not name or _is_absolute(name) or _climbs_out(name):
            continue  # already reported
        record = _record("images", i, img)
        path = images_dir / name
        if not path.is_file():
            add(record, f"image file {path} not found")
            continue
        try:
            with Image.open(path) as im:
                width, height = im.size
                im.verify()
        except Exception as exc:  # noqa: BLE001 -- whatever PIL raises, the file cannot be read
            add(record, f"image file {path} is unreadable ({type(exc).__name__}: {exc})")
            continue
        claimed = (img.get("width"), img.get("height"))
        if all(_is_int(v) for v in claimed) and claimed != (width, height):
            add(record, f"image file {path} is {width}x{height} but the JSON says "
                        f"{claimed[0]}x{claimed[1]} (width x height)")


# --- small helpers ------------------------------------------------------------------------

def _record(section: str, index: int, item) -> str:
    if isinstance(item, dict) and _is_int(item.get("id")):
        return f"{section}[{index}] (id {item['id']})"
    return f"{section}[{index}]"


def _is_absolute(name: str) -> bool:
    """An absolute path on POSIX or Windows (``/x``, ``\\server\\x``, ``C:\\x``, ``C:/x``)."""
    return name.startswith(("/", "\\")) or bool(re.match(r"[A-Za-z]:[/\\]", name))


def _climbs_out(name: str) -> bool:
    """Whether a relative path has a ``..`` component (``/`` or ``\\`` separated)."""
    return ".." in re.split(r"[/\\]", name)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _json_type(value) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
             int: "number", float: "number"}
    return names.get(type(value), type(value).__name__)
