"""Train/validation splits of a COCO annotation file: hold-out, K-fold, stratified and group K-fold.

Every splitter takes a COCO dict and returns a list of ``(train_image_ids, val_image_ids)``
pairs, one per fold (hold-out gives one pair). All are seeded: the same file, method and seed
give the same folds on every machine.

* ``holdout``: a random ``val_fraction`` of the images is validation.
* ``kfold``: images shuffled and cut into ``folds`` nearly equal parts; each part is validation once.
* ``stratified_kfold``: iterative stratification on each image's *set* of present classes
  (Sechidis, Tsoumakas & Vlahavas, "On the Stratification of Multi-Label Data", ECML PKDD 2011,
  Algorithm 1), so that rare classes such as Battery land in every fold in the right proportion.
  A segmentation image carries several classes at once, which is why single-label stratification
  does not apply.
* ``group_kfold``: whole groups go to one side; a group is the batch folder of ``file_name``
  (``batch_01_vt/0001.jpg`` -> ``batch_01_vt``), i.e. photos taken in one session never sit on both
  sides, which is the honest estimate when the test photos come from other sessions.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import SegeduError
from ..fileio import write_json_atomic
from . import coco as coco_checks

Split = tuple[list[int], list[int]]
METHODS = ("holdout", "kfold", "stratified", "group")


# ---------------------------------------------------------------------------- reading a COCO dict

def _image_ids(coco: dict) -> list[int]:
    return [int(image["id"]) for image in coco.get("images", [])]


def image_labels(coco: dict) -> dict[int, frozenset[int]]:
    """Each image id -> the set of category ids annotated on it (empty for background-only images)."""
    labels: dict[int, set[int]] = {image_id: set() for image_id in _image_ids(coco)}
    for ann in coco.get("annotations", []):
        if ann["image_id"] in labels:
            labels[ann["image_id"]].add(int(ann["category_id"]))
    return {image_id: frozenset(cats) for image_id, cats in labels.items()}


def image_groups(coco: dict) -> dict[int, str]:
    """Each image id -> its batch folder (the directory part of ``file_name``; the file itself if none)."""
    groups = {}
    for image in coco.get("images", []):
        parent = str(PurePosixPath(image["file_name"].replace("\\", "/")).parent)
        groups[int(image["id"])] = parent if parent != "." else image["file_name"]
    return groups


def _check_folds(n_items: int, folds: int, what: str) -> None:
    if folds < 2:
        raise SegeduError(f"K-fold needs at least 2 folds, got folds={folds}; use --method holdout for one split.")
    if n_items < folds:
        raise SegeduError(f"{n_items} {what} cannot make {folds} folds; use --folds {max(n_items, 2)} or fewer.")


def _folds_to_splits(fold_of: dict[int, int], ids: list[int], folds: int) -> list[Split]:
    """Fold assignment -> (train, val) pairs; id lists keep the COCO file's image order."""
    return [([i for i in ids if fold_of[i] != k], [i for i in ids if fold_of[i] == k]) for k in range(folds)]


# ---------------------------------------------------------------------------- the four splitters

def holdout(coco: dict, val_fraction: float = 0.2, seed: int = 0) -> list[Split]:
    """One random split with ``round(n * val_fraction)`` validation images."""
    ids = _image_ids(coco)
    if not 0 < val_fraction < 1:
        raise SegeduError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}.")
    n_val = int(round(len(ids) * val_fraction))
    if n_val == 0 or n_val == len(ids):
        raise SegeduError(f"{len(ids)} images with val_fraction={val_fraction} leave one side empty; "
                          "use more images or another fraction.")
    order = np.random.default_rng(seed).permutation(len(ids))
    val = {ids[i] for i in order[:n_val]}
    return [([i for i in ids if i not in val], [i for i in ids if i in val])]


def kfold(coco: dict, folds: int = 5, seed: int = 0) -> list[Split]:
    """Shuffle, then cut into ``folds`` parts whose sizes differ by at most one."""
    ids = _image_ids(coco)
    _check_folds(len(ids), folds, "images")
    order = np.random.default_rng(seed).permutation(len(ids))
    fold_of = {ids[i]: k for k, part in enumerate(np.array_split(order, folds)) for i in part}
    return _folds_to_splits(fold_of, ids, folds)


def stratified_kfold(coco: dict, folds: int = 5, seed: int = 0) -> list[Split]:
    """Iterative stratification (Sechidis et al. 2011, Algorithm 1) on per-image class sets.

    Each fold wants ``n/k`` images and, per class, ``n_c/k`` of the images showing that class.
    Repeatedly take the class with the fewest images still unassigned (rare classes first, while
    every fold still has room for them); give each of its images to the fold that most wants that
    class, breaking ties by the fold that wants the most images, then at random; and lower that
    fold's wants for every class the image shows. Background-only images go last, to the folds
    that want the most images.
    """
    labels = image_labels(coco)
    ids = list(labels)
    _check_folds(len(ids), folds, "images")
    rng = np.random.default_rng(seed)
    wants_images = np.full(folds, len(ids) / folds)
    classes = sorted({c for cats in labels.values() for c in cats})
    wants_class = {c: np.full(folds, sum(c in cats for cats in labels.values()) / folds) for c in classes}
    # a seeded order of the images, so that which image of a class is placed first is random too
    unassigned = [ids[i] for i in rng.permutation(len(ids))]
    fold_of: dict[int, int] = {}

    def best_fold(primary: np.ndarray) -> int:
        candidates = np.flatnonzero(primary == primary.max())
        secondary = wants_images[candidates]
        candidates = candidates[secondary == secondary.max()]
        return int(rng.choice(candidates))

    def assign(image_id: int, fold: int) -> None:
        fold_of[image_id] = fold
        wants_images[fold] -= 1
        for c in labels[image_id]:
            wants_class[c][fold] -= 1

    while unassigned:
        remaining = {c: 0 for c in classes}
        for image_id in unassigned:
            for c in labels[image_id]:
                remaining[c] += 1
        present = [c for c in classes if remaining[c] > 0]
        if not present:
            break
        fewest = min(remaining[c] for c in present)
        rarest = int(rng.choice([c for c in present if remaining[c] == fewest]))
        for image_id in [i for i in unassigned if rarest in labels[i]]:
            assign(image_id, best_fold(wants_class[rarest]))
        unassigned = [i for i in unassigned if i not in fold_of]
    for image_id in unassigned:  # images without any annotation
        assign(image_id, best_fold(wants_images))
    return _folds_to_splits(fold_of, _image_ids(coco), folds)


def group_kfold(coco: dict, folds: int = 5, seed: int = 0) -> list[Split]:
    """K-fold over groups (batch folders): largest group first, each to the fold with fewest images.

    This greedy balancing is what scikit-learn's ``GroupKFold`` does; the seed only orders
    groups of equal size, so it matters little when groups are few and uneven.
    """
    groups = image_groups(coco)
    members: dict[str, list[int]] = {}
    for image_id, group in groups.items():
        members.setdefault(group, []).append(image_id)
    _check_folds(len(members), folds, "groups (batch folders)")
    rng = np.random.default_rng(seed)
    names = sorted(members)
    shuffled = [names[i] for i in rng.permutation(len(names))]
    by_size = sorted(shuffled, key=lambda g: -len(members[g]))  # stable: the shuffle orders ties
    fold_sizes = np.zeros(folds, dtype=int)
    fold_of: dict[int, int] = {}
    for group in by_size:
        fold = int(np.argmin(fold_sizes))
        fold_sizes[fold] += len(members[group])
        fold_of.update((image_id, fold) for image_id in members[group])
    return _folds_to_splits(fold_of, _image_ids(coco), folds)


# ---------------------------------------------------------------------------- quality of a split

def class_presence_share(coco: dict, image_ids: list[int]) -> dict[int, float]:
    """Per category id: the fraction of ``image_ids`` on which that category appears."""
    labels = image_labels(coco)
    n = max(len(image_ids), 1)
    return {int(cat["id"]): sum(int(cat["id"]) in labels[i] for i in image_ids) / n
            for cat in coco.get("categories", [])}


def presence_deviation(coco: dict, val_ids: list[int]) -> tuple[float, int | None]:
    """Largest |share of val images showing class c - share of all images showing c| and that c."""
    whole = class_presence_share(coco, _image_ids(coco))
    val = class_presence_share(coco, val_ids)
    if not whole:
        return 0.0, None
    worst = max(whole, key=lambda c: abs(val[c] - whole[c]))
    return abs(val[worst] - whole[worst]), worst


# ---------------------------------------------------------------------------- writing the files

@dataclasses.dataclass(frozen=True)
class SplitFiles:
    """One written train/val pair and how well its validation side mirrors the whole set."""

    fold: int | None  # None for a hold-out split
    train: Path
    val: Path
    n_train: int
    n_val: int
    #: max over classes of |val share of images showing the class - whole set's share|
    deviation: float
    worst_class: str | None


def subset(coco: dict, image_ids: list[int]) -> dict:
    """The COCO dict restricted to ``image_ids`` and their annotations; other keys are kept."""
    keep = set(image_ids)
    out = {k: v for k, v in coco.items() if k not in ("images", "annotations")}
    out["images"] = [im for im in coco["images"] if im["id"] in keep]
    if "annotations" in coco:
        out["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
    return out


def _load(annotation: str | os.PathLike) -> dict:
    """The file, validated as every loader does (:func:`segedu.data.coco.validate_data`): a malformed
    record is named here rather than failing later in training. Image files are not opened: a split
    only copies records, and ``file_name`` is relative to the dataset folder, not necessarily to this file's."""
    path = Path(annotation)
    if not path.is_file():
        raise SegeduError(f"{path}: no such annotation file; pass the COCO JSON holding every training "
                          "image (e.g. DATA_DIR/train_all.json).")
    try:
        coco = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SegeduError(f"{path}: not valid JSON ({exc}); check the file with `segedu validate-coco`.") from exc
    except OSError as exc:
        raise SegeduError(f"{path}: cannot read it ({exc.strerror or exc}); check the file's permissions.") from exc
    if not isinstance(coco, dict) or not coco.get("images"):
        raise SegeduError(f"{path}: no 'images' list; a COCO file to split needs images and annotations.")
    report = coco_checks.validate_data(coco, path, check_images=False)
    if not report.ok:
        raise report.error()
    return coco


def make_splits(coco: dict, method: str, folds: int = 5, val_fraction: float = 0.2, seed: int = 0) -> list[Split]:
    """Dispatch on ``method`` (one of :data:`METHODS`)."""
    splitters: dict[str, Callable[[], list[Split]]] = {
        "holdout": lambda: holdout(coco, val_fraction, seed),
        "kfold": lambda: kfold(coco, folds, seed),
        "stratified": lambda: stratified_kfold(coco, folds, seed),
        "group": lambda: group_kfold(coco, folds, seed),
    }
    if method not in splitters:
        raise SegeduError(f"unknown split method {method!r}; choose one of {', '.join(METHODS)}.")
    return splitters[method]()


def write_splits(annotation: str | os.PathLike, out: str | os.PathLike, method: str, folds: int = 5,
                 val_fraction: float = 0.2, seed: int = 0) -> list[SplitFiles]:
    """Split ``annotation`` and write one train/val COCO pair per fold into ``out``.

    Hold-out writes ``train.json``/``val.json``; the K-fold methods ``fold0_train.json``,
    ``fold0_val.json``, ... Each file holds only its side's images and their annotations.
    ``file_name`` entries are copied unchanged, so they stay relative to the dataset folder:
    load the written files with that folder as the image root (or write them into it).
    """
    coco = _load(annotation)
    names = {int(c["id"]): c["name"] for c in coco.get("categories", [])}
    out = Path(out)
    written = []
    for k, (train_ids, val_ids) in enumerate(make_splits(coco, method, folds, val_fraction, seed)):
        prefix = "" if method == "holdout" else f"fold{k}_"
        train_path, val_path = out / f"{prefix}train.json", out / f"{prefix}val.json"
        write_json_atomic(train_path, subset(coco, train_ids))
        write_json_atomic(val_path, subset(coco, val_ids))
        deviation, worst = presence_deviation(coco, val_ids)
        written.append(SplitFiles(None if method == "holdout" else k, train_path, val_path, len(train_ids),
                                  len(val_ids), deviation, names.get(worst) if worst is not None else None))
    return written


def render_report(written: list[SplitFiles]) -> str:
    """A table: per fold the files, image counts and the worst class-presence deviation of val."""
    rows = [("fold", "train imgs", "val imgs", "max |val - all| class share", "files")]
    for s in written:
        rows.append(("-" if s.fold is None else str(s.fold), str(s.n_train), str(s.n_val),
                     f"{100 * s.deviation:.1f} pp ({s.worst_class or '-'})", f"{s.train.name}, {s.val.name}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    folder = written[0].train.parent if written else "-"
    return "\n".join([f"splits written to {folder}", *lines])
