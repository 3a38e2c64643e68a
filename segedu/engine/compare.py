"""Comparing trained models: train a plan of runs, score them overall and at boundaries, tabulate.

The architecture chapters all do the same three things: train several models under one budget,
score each best checkpoint on the validation images (over all pixels and in the band around class
boundaries, where coarse outputs fail first), and show per-class IoU and predictions side by side.
This module does them once, so a chapter only states its plan.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import metrics
from ..data import IGNORE_INDEX, dataset
from ..inference.predict import predict_logits
from .config import TrainConfig
from .evaluate import load_model
from .trainer import Trainer, amp_dtype, train


@dataclasses.dataclass
class RunResult:
    """One trained run: its label, run directory, trainer (history) and wall seconds."""

    label: str
    run_dir: Path
    trainer: Trainer
    seconds: float

    @property
    def model(self) -> str:
        return self.trainer.config.model

    @property
    def seed(self) -> int:
        return self.trainer.config.seed


def train_plan(session, chapter: str, plan: list[dict], **common) -> dict[str, RunResult]:
    """Train each entry of ``plan`` (TrainConfig fields; ``label`` names the run) with ``common`` fields.

    Data, profile, device and run directory come from the chapter's ``session``; the run lands in
    ``runs/<profile>/<chapter>/<label>``. Returns the results in plan order, keyed by label.
    """
    results = {}
    for entry in plan:
        entry = {**common, **entry}
        label = entry.pop("label", None) or f"{entry['model']}-seed{entry.get('seed', session.seed)}"
        options = {"width": session.profile.width, **entry.pop("model_options", {})}
        fields = {"data_dir": str(session.data_dir), "profile": session.profile.name, "seed": session.seed,
                  "device": str(session.device), "out": str(session.run_dir(chapter, label)),
                  "model_options": options, **entry}
        config = TrainConfig(**fields)
        start = time.perf_counter()
        trainer = train(config)
        results[label] = RunResult(label, Path(trainer.run_dir), trainer, time.perf_counter() - start)
    return results


def score_runs(run_dirs: dict[str, str | Path], data_dir: str | Path, split: str = "val", device="cpu",
               boundary_px: int = 3, batch_size: int = 4) -> dict[str, dict]:
    """Per run label: ``{"overall": scores, "boundary": scores, "images_per_s": ...}`` on ``split``
    (each scores dict as :meth:`SegMetrics.compute` gives it, plus its ``confusion`` matrix).

    Scores come from each run's best checkpoint at the images' own resolution, as the competition
    scores. ``boundary`` counts only the pixels within ``boundary_px`` of a boundary between two
    classes (:func:`segedu.metrics.boundary_band`). ``images_per_s`` is inference speed on this split.
    """
    data = dataset.CocoSegmentation(data_dir, split)
    loader = DataLoader(data, batch_size=batch_size, collate_fn=dataset.collate)
    out = {}
    for label, run_dir in run_dirs.items():
        model, config, payload = load_model(run_dir, device)
        dev = next(model.parameters()).device
        dtype = amp_dtype(config.amp, dev)
        overall = metrics.SegMetrics(payload["num_classes"], ignore_index=IGNORE_INDEX)
        band = metrics.SegMetrics(payload["num_classes"], ignore_index=IGNORE_INDEX)
        seconds, count = 0.0, 0
        for images, masks in loader:
            images, masks = images.to(dev), masks.to(dev)
            start = time.perf_counter()
            logits = predict_logits(model, images, config.image_size, dtype)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            seconds += time.perf_counter() - start
            count += len(images)
            overall.update(logits, masks)
            band.update(logits, metrics.mask_outside(masks, metrics.boundary_band(masks, boundary_px)))
        scored = {"overall": overall.compute(), "boundary": band.compute()}
        for key, accumulator in (("overall", overall), ("boundary", band)):
            scored[key]["confusion"] = accumulator.confusion.cpu()
        out[label] = {**scored,
                      "images_per_s": count / max(seconds, 1e-9), "class_names": list(payload["class_names"])}
    return out


def per_class_table(scores: dict[str, dict], digits: int = 3) -> str:
    """A text table: one row per run with mIoU, boundary mIoU, pixel accuracy and per-class IoU."""
    names = next(iter(scores.values()))["class_names"]
    width = max(12, *(len(label) + 2 for label in scores))
    head = f"{'run':<{width}}{'mIoU':>8}{'boundary':>10}{'pix acc':>9}  " + " ".join(f"{n[:7]:>7}" for n in names)
    rows = [head]
    for label, s in scores.items():
        o, b = s["overall"], s["boundary"]
        iou = np.nan_to_num(torch.as_tensor(o["iou"]).numpy(), nan=0.0)
        rows.append(f"{label:<{width}}{o['miou']:>8.{digits + 1}f}{b['miou']:>10.{digits + 1}f}"
                    f"{o['pixel_accuracy']:>9.{digits}f}  " + " ".join(f"{v:>7.{digits}f}" for v in iou))
    return "\n".join(rows)


def seed_summary(scores: dict[str, dict], groups: dict[str, list[str]], key: str = "overall") -> dict[str, tuple]:
    """Per group (e.g. a model name -> its runs' labels): (mean mIoU, std over seeds or nan, n)."""
    out = {}
    for group, labels in groups.items():
        values = [scores[label][key]["miou"] for label in labels]
        out[group] = (float(np.mean(values)), float(np.std(values)) if len(values) > 1 else float("nan"), len(values))
    return out


@torch.no_grad()
def predictions(run_dirs: dict[str, str | Path], image: torch.Tensor, device="cpu") -> dict[str, torch.Tensor]:
    """Per run label, the predicted class map (H, W) of one [0, 1] image (3, H, W)."""
    out = {}
    for label, run_dir in run_dirs.items():
        model, config, _ = load_model(run_dir, device)
        dev = next(model.parameters()).device
        out[label] = predict_logits(model, image[None].to(dev), config.image_size).argmax(1)[0].cpu()
    return out
