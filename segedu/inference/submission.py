"""The competition's submission file, written and checked.

Format (the course's ``sample_submission.csv``): a header ``image_id,PredictionString`` and one row
per test image, in the order of ``test.json``'s ``images``; ``image_id`` is the image's
``file_name`` and ``PredictionString`` its predicted class map downsampled to 256 x 256 with
nearest-neighbour sampling (class ids cannot be averaged) and flattened row by row into
space-separated integers. The file is validated before it is reported written, and written to a
temporary file and renamed, so a failed run never leaves half a submission.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SegeduError
from ..fileio import write_atomic

SUBMISSION_SIZE = 256
HEADER = ("image_id", "PredictionString")


def downsample(prediction: torch.Tensor, size: int = SUBMISSION_SIZE) -> np.ndarray:
    """(H, W) class map -> (size, size) uint8 by nearest-neighbour sampling.

    The competition's format is a square 256 x 256 grid per image, so a non-square image's class
    map is resampled to it here, and only here: the model has already predicted it at the image's
    own aspect ratio (:func:`segedu.inference.predict.model_input_size`), and only the finished
    class map is squeezed into the format's grid.
    """
    pred = prediction.to(torch.float32)[None, None]
    return F.interpolate(pred, size=(size, size), mode="nearest")[0, 0].to(torch.uint8).cpu().numpy()


def test_file_names(test_json: str | Path) -> list[str]:
    images = json.loads(Path(test_json).read_text())["images"]
    return [im["file_name"] for im in images]


def write(path: str | Path, rows: dict[str, np.ndarray], test_json: str | Path, num_classes: int = 11) -> Path:
    """Write ``rows`` (file name -> (256, 256) class map) in ``test_json``'s order, then validate."""
    path = Path(path)
    order = test_file_names(test_json)
    missing = [name for name in order if name not in rows]
    if missing:
        raise SegeduError(f"no prediction for {len(missing)} test image(s) of {test_json}, e.g. {missing[0]}.")

    def write_rows(f) -> None:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        out = csv.writer(text)
        out.writerow(HEADER)
        for name in order:
            out.writerow((name, " ".join(map(str, rows[name].reshape(-1).tolist()))))
        text.flush()
        text.detach()  # leave the binary file to write_atomic

    # validated before the rename: a failed check leaves no file, and an old submission untouched
    return write_atomic(path, write_rows, check=lambda tmp: validate(tmp, test_json, num_classes))


def validate(path: str | Path, test_json: str | Path, num_classes: int = 11) -> int:
    """Check a submission file against ``test_json``; returns the number of rows or raises naming the row."""
    path = Path(path)
    order = test_file_names(test_json)
    expected = SUBMISSION_SIZE * SUBMISSION_SIZE
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))  # a row holds 65,536 numbers (~130 kB)
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        if header != HEADER:
            raise SegeduError(f"{path}: header is {','.join(header)!r}; expected {','.join(HEADER)!r}.")
        n = 0
        for n, row in enumerate(reader, start=1):
            where = f"{path}: row {n}"
            if len(row) != 2:
                raise SegeduError(f"{where}: {len(row)} fields; expected image_id,PredictionString.")
            if n > len(order) or row[0] != order[n - 1]:
                want = order[n - 1] if n <= len(order) else "no more rows"
                raise SegeduError(f"{where}: image_id {row[0]!r}; expected {want!r} (the order of {test_json}).")
            values = row[1].split()
            if len(values) != expected:
                raise SegeduError(f"{where} ({row[0]}): {len(values)} values; expected {expected} (256 x 256).")
            ids = np.array(values, dtype=np.int64) if all(v.isdigit() for v in values) else None
            if ids is None or ids.max() >= num_classes:
                raise SegeduError(f"{where} ({row[0]}): values must be class ids 0..{num_classes - 1}.")
    if n != len(order):
        raise SegeduError(f"{path}: {n} rows; {test_json} lists {len(order)} test images.")
    return n
