"""Checkpoints in use: score one on a labelled split, or predict the test split's submission."""
from __future__ import annotations

from pathlib import Path

import torch

from ..data import dataset, stats
from ..data.location import resolve_data_dir
from ..errors import SegeduError
from ..fileio import jsonable, write_json_atomic
from ..metrics import scores_from_confusion
from . import submission
from .checkpoints import load_model
from .ensemble import member_from
from .pipeline import InferenceOptions, load_pipeline_members, require_crf
from .predictor import Predictor

__all__ = ["background_floor", "evaluate", "predict"]


def _data(config, data_dir: str | None, split: str, num_classes: int):
    root = Path(data_dir) if data_dir else resolve_data_dir(config)
    if data_dir and not root.is_dir():
        raise SegeduError(f"data_dir {data_dir!r} does not exist.")
    data = dataset.CocoSegmentation(root, split)
    if not data.is_test and data.coco.num_classes != num_classes:
        raise SegeduError(f"the checkpoint predicts {num_classes} classes but {data.coco.ann_file} has "
                          f"{data.coco.num_classes}; use a checkpoint trained on this kind of data.")
    return root, data


def _options(tta, sliding_window, overlap, weighting, crf, ensemble):
    """The :class:`~segedu.inference.pipeline.InferenceOptions` of evaluate/predict's keywords, checked
    (and the DenseCRF's package found) before anything is loaded."""
    options = InferenceOptions.build(tta, sliding_window, overlap, weighting, crf, ensemble)
    if options.crf:
        require_crf()
    return options


def _members(path, options, model, config, payload) -> list:
    """The loaded checkpoint as the first ensemble member, then ``options.ensemble``'s checkpoints.
    Without any trick this is the one model run as ``predict_logits`` runs it."""
    main = member_from(model, config, payload, str(path))
    return load_pipeline_members(path, options, next(model.parameters()).device, main=main)


def evaluate(path: str | Path, data_dir: str | None = None, split: str = "val", device: str = "auto",
             out: str | Path | None = None, batch_size: int = 4, *, tta=None, sliding_window: int | None = None,
             overlap: float = 0.5, weighting: str = "gaussian", crf: bool = False, ensemble=()) -> dict:
    """Score a checkpoint on a labelled split at the images' resolution; write ``out`` (JSON) if given.

    Images of any size and shape are batched by size and predicted at their own aspect ratio
    (the training ``image_size`` is their short side, or an exact (H, W)); every labelled pixel of
    the original masks is scored once.

    Returns the scores with per-class IoU, the confusion matrix (rows: truth, columns: prediction)
    and the class names. The keyword-only options switch on the inference tricks of
    :mod:`segedu.inference.pipeline` (``tta``: a :class:`~segedu.inference.tta.TTA` or flip names;
    ``sliding_window``/``overlap``/``weighting``; ``crf``; ``ensemble``: extra checkpoints averaged
    in probability); left at their defaults, the prediction is the plain one.
    """
    options = _options(tta, sliding_window, overlap, weighting, crf, ensemble)
    model, config, payload = load_model(path, device)
    dev = next(model.parameters()).device
    _, data = _data(config, data_dir, split, payload["num_classes"])
    if data.is_test:
        raise SegeduError(f"{data.coco.ann_file} has no annotations; evaluate needs a labelled split (val, train).")
    loader = dataset.make_eval_loader(data, batch_size)  # batches of one size: any image shape
    predictor = Predictor(_members(path, options, model, config, payload), options, device=dev)
    result = predictor.score(loader, payload["num_classes"])  # the scores and their confusion matrix
    result["class_names"] = list(payload["class_names"])
    result["checkpoint"] = str(path)
    result["split"] = split
    if not options.plain:
        result["inference"] = options.describe()
    if out:
        # NaN becomes null (an IoU of a class absent from prediction and truth), as in a run's JSON files
        write_json_atomic(Path(out), jsonable({k: (v.tolist() if isinstance(v, torch.Tensor) else v)
                                               for k, v in result.items()}), indent=2)
    return result


def background_floor(data_dir: str | Path, split: str = "val") -> dict:
    """The scores of predicting Background everywhere on a labelled split: the floor every mIoU of
    the book is read against (a model that has learned nothing scores about this).

    Scored as :func:`evaluate` scores a model: every labelled pixel of the original masks, void
    pixels (255) left out, classes absent from truth and prediction excluded from the mean. With
    every pixel predicted 0, Background's IoU is its share of the labelled pixels and every other
    class present scores 0, so the floor's mIoU is that share divided by the number of classes
    present. Returns :func:`segedu.metrics.scores_from_confusion`'s dict, the ``confusion`` matrix and
    ``split``, as :func:`evaluate` does."""
    data = dataset.CocoSegmentation(Path(data_dir), split, check_images=False, cache_images=False)
    if data.is_test:
        raise SegeduError(f"{data.coco.ann_file} has no annotations; the floor needs a labelled split (val, train).")
    classes = data.coco.num_classes
    counts = stats.pixel_table(data.coco, data.masks).sum(axis=0)  # labelled pixels per class, no image decoded
    confusion = torch.zeros(classes, classes, dtype=torch.int64)
    confusion[:, 0] = torch.from_numpy(counts)  # every true class predicted as Background
    return {**scores_from_confusion(confusion), "confusion": confusion, "split": split}


def predict(path: str | Path, out: str | Path, data_dir: str | None = None, split: str = "test",
            device: str = "auto", batch_size: int = 4, *, tta=None, sliding_window: int | None = None,
            overlap: float = 0.5, weighting: str = "gaussian", crf: bool = False, ensemble=()) -> Path:
    """Write the submission CSV for ``split`` (default: test.json) from a checkpoint.

    Each image is predicted at its own aspect ratio (images batched by size); only its class map
    is resampled to the submission's 256 x 256 grid (:func:`segedu.inference.submission.downsample`).

    The keyword-only options are :func:`evaluate`'s (TTA, sliding window, CRF, ensemble).
    """
    options = _options(tta, sliding_window, overlap, weighting, crf, ensemble)
    model, config, payload = load_model(path, device)
    dev = next(model.parameters()).device
    root, data = _data(config, data_dir, split, payload["num_classes"])
    if not data.is_test:
        raise SegeduError(f"{data.coco.ann_file} is annotated; predict writes a submission for unlabelled test "
                          "images (test.json). To score a labelled split use `segedu evaluate`.")
    rows = {}
    predictor = Predictor(_members(path, options, model, config, payload), options, device=dev)
    for _, preds, names in predictor.batches(dataset.make_eval_loader(data, batch_size)):
        rows.update({name: submission.downsample(p) for name, p in zip(names, preds)})
    return submission.write(out, rows, data.coco.ann_file, payload["num_classes"])
