"""Is the synthetic dataset hard in the right ways? Train two tiny models on it and compare.

Generates a small dataset (default 240 images of 128 px) into a temp folder, then trains, for a
fixed number of steps and with plain torch, two models that share one small encoder down to
stride 32:

* ``coarse``: a 1x1 classifier on the stride-32 features and one bilinear x32 upsample
  (the FCN-32s idea, Long et al. 2015): it cannot draw thin parts or small objects;
* ``fine``:   the same encoder with U-Net-like skips (Ronneberger et al. 2015) back to stride 1.

Each is trained with a few seeds and scored on val + test images (test labels are known here)
with per-class IoU from a confusion matrix. The dataset is doing its job when

1. ``fine`` beats ``coarse`` by more than the spread between seeds (detail matters), and
2. rare classes (Battery, Clothing) and confusable ones (Paper pack vs Paper, General trash)
   score clearly below common, distinct ones (Paper, Plastic bag, Background).

Masks are rasterised here with pycocotools (largest annotation first, as the loaders do), so the
script depends only on the generator. Run: ``python benchmarks/synth_difficulty.py`` (a few
minutes on 2 CPU cores); ``--flat`` adds the generator's flat-colour control, which any model
should solve almost perfectly.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from torch import nn

from segedu.data import synth
from segedu.data.classes import CLASSES, NUM_CLASSES

RARE_OR_CONFUSABLE = ("Battery", "Clothing", "Paper pack", "General trash")
COMMON_DISTINCT = ("Background", "Paper", "Plastic bag")


# ---------------------------------------------------------------------------- data

def load_split(root: Path, annotation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N,3,H,W uint8) and label maps (N,H,W int64) of one COCO file of the dataset."""
    coco = json.loads((root / annotation).read_text())
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    images, labels = [], []
    for image in coco["images"]:
        h, w = image["height"], image["width"]
        pixels = cv2.imread(str(root / image["file_name"]), cv2.IMREAD_COLOR)[:, :, ::-1]
        label = np.zeros((h, w), np.int64)
        for ann in sorted(by_image.get(image["id"], []), key=lambda a: -a["area"]):
            rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], h, w))
            label[mask_utils.decode(rle) > 0] = ann["category_id"]
        images.append(torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))))
        labels.append(torch.from_numpy(label))
    return torch.stack(images), torch.stack(labels)


# ---------------------------------------------------------------------------- models

def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Encoder(nn.Module):
    """A stem at full resolution, then five stride-2 stages: features at strides 1, 2, ..., 32."""

    def __init__(self, widths=(12, 16, 24, 32, 48, 64)):
        super().__init__()
        self.widths = widths
        self.stem = conv_bn(3, widths[0])
        self.stages = nn.ModuleList(
            nn.Sequential(conv_bn(cin, cout, 2), conv_bn(cout, cout)) for cin, cout in zip(widths, widths[1:]))

    def forward(self, x):
        features = [self.stem(x)]
        for stage in self.stages:
            features.append(stage(features[-1]))
        return features


class Coarse(nn.Module):
    """Classify the stride-32 features and upsample the scores 32x bilinearly (FCN-32s-like)."""

    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.head = nn.Conv2d(self.encoder.widths[-1], NUM_CLASSES, 1)

    def forward(self, x):
        return F.interpolate(self.head(self.encoder(x)[-1]), size=x.shape[-2:], mode="bilinear", align_corners=False)


class Fine(nn.Module):
    """The same encoder with a U-Net-like decoder: upsample x2, concatenate the skip, convolve."""

    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        w = self.encoder.widths
        self.decoders = nn.ModuleList(conv_bn(w[i + 1] + w[i], w[i]) for i in reversed(range(len(w) - 1)))
        self.head = nn.Conv2d(w[0], NUM_CLASSES, 1)

    def forward(self, x):
        features = self.encoder(x)
        y = features[-1]
        for decoder, skip in zip(self.decoders, reversed(features[:-1])):
            y = decoder(torch.cat([F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False),
                                   skip], 1))
        return self.head(y)


# ---------------------------------------------------------------------------- training and scoring

def normalise(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - 0.5) / 0.25


def train(model: nn.Module, images, labels, steps: int, batch: int, seed: int, device: str) -> float:
    """AdamW with a one-cycle schedule for ``steps`` steps of random flips; returns seconds."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(images), (batch,), generator=gen)
        x, y = normalise(images[idx]).to(device), labels[idx].to(device)
        if torch.rand(1, generator=gen) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        if torch.rand(1, generator=gen) < 0.5:
            x, y = x.flip(-2), y.flip(-2)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return time.perf_counter() - start


@torch.no_grad()
def confusion(model: nn.Module, images, labels, device: str, batch: int = 32) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted class."""
    model.eval()
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for i in range(0, len(images), batch):
        pred = model(normalise(images[i:i + batch]).to(device)).argmax(1).cpu().numpy().ravel()
        true = labels[i:i + batch].numpy().ravel()
        matrix += np.bincount(true * NUM_CLASSES + pred, minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)
    return matrix


def iou_per_class(matrix: np.ndarray) -> np.ndarray:
    """IoU = TP / (TP + FP + FN) per class; NaN for a class absent from both truth and prediction."""
    tp = np.diag(matrix).astype(float)
    union = matrix.sum(0) + matrix.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


# ---------------------------------------------------------------------------- the experiment

def run(root: Path, args) -> dict[str, np.ndarray]:
    train_x, train_y = load_split(root, "train.json")
    val_x, val_y = load_split(root, "val.json")
    test_x, test_y = load_split(root, "test_labels.json")
    eval_x, eval_y = torch.cat([val_x, test_x]), torch.cat([val_y, test_y])
    print(f"  {len(train_x)} training images, {len(eval_x)} scored (val + test); "
          f"pixels per class in the scored set: "
          + ", ".join(f"{c}={n}" for c, n in zip(CLASSES, np.bincount(eval_y.numpy().ravel(), minlength=NUM_CLASSES))))
    ious = {}
    for name, cls in (("coarse", Coarse), ("fine", Fine)):
        rows = []
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = cls().to(args.device)
            seconds = train(model, train_x, train_y, args.steps, args.batch, seed, args.device)
            iou = iou_per_class(confusion(model, eval_x, eval_y, args.device))
            rows.append(iou)
            print(f"  {name:<6} seed {seed}: mIoU {np.nanmean(iou):.3f}  ({seconds:.0f} s)", flush=True)
        ious[name] = np.array(rows)
    return ious


def report(ious: dict[str, np.ndarray]) -> None:
    print(f"\n  {'class':<14}" + "".join(f"{name + ' IoU':>20}" for name in ious))
    for c, cname in enumerate(CLASSES):
        cells = []
        for rows in ious.values():
            col = rows[:, c]
            cells.append("-" if np.isnan(col).all() else f"{np.nanmean(col):.3f} +- {np.nanstd(col):.3f}")
        print(f"  {cname:<14}" + "".join(f"{cell:>20}" for cell in cells))
    miou = {name: np.nanmean(rows, axis=1) for name, rows in ious.items()}
    print(f"  {'mIoU':<14}" + "".join(f"{m.mean():.3f} +- {m.std():.3f}".rjust(20) for m in miou.values()))
    if {"coarse", "fine"} <= set(miou):
        gap = miou["fine"].mean() - miou["coarse"].mean()
        spread = max(np.ptp(miou["fine"]), np.ptp(miou["coarse"]))
        print(f"\n  fine - coarse mIoU = {gap:.3f}; largest seed range = {spread:.3f}  ->  "
              f"{'detail matters' if gap > spread else 'NOT separated by more than seed noise'}")
    for name, rows in ious.items():
        hard = np.nanmean(rows[:, [CLASSES.index(c) for c in RARE_OR_CONFUSABLE]])
        easy = np.nanmean(rows[:, [CLASSES.index(c) for c in COMMON_DISTINCT]])
        print(f"  {name}: rare/confusable classes mean IoU {hard:.3f} vs common distinct {easy:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=240)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu | cuda (for a longer run than a laptop allows)")
    p.add_argument("--flat", action="store_true", help="also run the flat-colour control")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for flat in (False, True) if args.flat else (False,):
            summary = synth.generate(Path(tmp) / f"data-{flat}", n_images=args.images, size=args.size, seed=0,
                                     flat=flat)
            print(f"\n== {'flat control' if flat else 'synthetic photos'}: {summary.images} images of "
                  f"{args.size} px, {args.steps} steps of {args.batch}, seeds {args.seeds}")
            report(run(summary.path, args))


if __name__ == "__main__":
    main()
