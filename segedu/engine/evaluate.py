"""Checkpoints in use: rebuild the model, score it on a split, predict the test split."""
from __future__ import annotations

from pathlib import Path

import torch

from .. import env, metrics, models
from ..data import IGNORE_INDEX, dataset
from ..errors import SegeduError
from ..inference import submission
from . import checkpoint
from .config import TrainConfig
from .runlog import write_json
from .trainer import resolve_data_dir


def load_model(path: str | Path, device="auto"):
    """(model in eval mode on ``device``, resolved config, checkpoint payload) from a checkpoint or run dir.

    A run trained with ``class_head > 0`` comes back wrapped in its
    :class:`~segedu.models.class_head.ClassPresenceModel`, suppressing classes with the config's
    ``suppress_threshold`` (set ``model.suppress_threshold`` to change it).
    """
    from ..models.class_head import ClassPresenceModel

    dev = env.resolve_device(device) if isinstance(device, str) else device
    payload = checkpoint.load(path, map_location=dev)
    config = TrainConfig(**payload["config"])
    model = models.create(payload["model_name"], num_classes=payload["num_classes"], **config.model_options)
    if config.class_head > 0:
        model = ClassPresenceModel(model, payload["num_classes"], config.suppress_threshold)
    model.load_state_dict(payload["model"])
    return model.to(dev).eval(), config, payload


def _data(config: TrainConfig, data_dir: str | None, split: str, num_classes: int):
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
    from ..inference.pipeline import InferenceOptions, require_crf

    options = InferenceOptions.build(tta, sliding_window, overlap, weighting, crf, ensemble)
    if options.crf:
        require_crf()
    return options


def _members(path, options, model, config, payload) -> list:
    """The loaded checkpoint as the first ensemble member, then ``options.ensemble``'s checkpoints.
    Without any trick this is the one model run as ``predict_logits`` runs it."""
    from ..inference.ensemble import member_from
    from ..inference.pipeline import load_pipeline_members

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
    from ..inference.pipeline import predict_classes

    options = _options(tta, sliding_window, overlap, weighting, crf, ensemble)
    model, config, payload = load_model(path, device)
    dev = next(model.parameters()).device
    _, data = _data(config, data_dir, split, payload["num_classes"])
    if data.is_test:
        raise SegeduError(f"{data.coco.ann_file} has no annotations; evaluate needs a labelled split (val, train).")
    scores = metrics.SegMetrics(payload["num_classes"], ignore_index=IGNORE_INDEX)
    loader = dataset.make_eval_loader(data, batch_size)  # batches of one size: any image shape
    members = _members(path, options, model, config, payload)
    for images, masks in loader:
        images, masks = images.to(dev), masks.to(dev)
        scores.update(predict_classes(members, images, options), masks)
    result = scores.compute()
    result["confusion"] = scores.confusion
    result["class_names"] = list(payload["class_names"])
    result["checkpoint"] = str(path)
    result["split"] = split
    if not options.plain:
        result["inference"] = options.describe()
    if out:
        write_json(Path(out), {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in result.items()})
    return result


def predict(path: str | Path, out: str | Path, data_dir: str | None = None, split: str = "test",
            device: str = "auto", batch_size: int = 4, *, tta=None, sliding_window: int | None = None,
            overlap: float = 0.5, weighting: str = "gaussian", crf: bool = False, ensemble=()) -> Path:
    """Write the submission CSV for ``split`` (default: test.json) from a checkpoint.

    Each image is predicted at its own aspect ratio (images batched by size); only its class map
    is resampled to the submission's 256 x 256 grid (:func:`segedu.inference.submission.downsample`).

    The keyword-only options are :func:`evaluate`'s (TTA, sliding window, CRF, ensemble).
    """
    from ..inference.pipeline import predict_classes

    options = _options(tta, sliding_window, overlap, weighting, crf, ensemble)
    model, config, payload = load_model(path, device)
    dev = next(model.parameters()).device
    root, data = _data(config, data_dir, split, payload["num_classes"])
    if not data.is_test:
        raise SegeduError(f"{data.coco.ann_file} is annotated; predict writes a submission for unlabelled test "
                          "images (test.json). To score a labelled split use `segedu evaluate`.")
    rows = {}
    members = _members(path, options, model, config, payload)
    for images, names in dataset.make_eval_loader(data, batch_size):
        preds = predict_classes(members, images.to(dev), options)
        rows.update({name: submission.downsample(p) for name, p in zip(names, preds)})
    return submission.write(out, rows, data.coco.ann_file, payload["num_classes"])
