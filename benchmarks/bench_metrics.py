"""Update speed of segedu.metrics.SegMetrics vs torchmetrics' MulticlassJaccardIndex.

Both get the same batches: 16 x 512 x 512 int64 predicted labels and targets with 11 classes and
about 5 % void pixels (255). Each ``update`` is timed over ``--repeats`` calls after one warm-up
call; the median is reported. torchmetrics is timed as constructed by default (``validate_args=True``,
which checks the label values on every update) and, for reference, with ``validate_args=False``
(no checks; segedu always checks the label ranges). All accumulate the same confusion matrix, and the mIoUs are
checked equal after timing, so the comparison is of equal work. On CPU always, on the GPU too when
CUDA is available (timed with ``torch.cuda.synchronize`` around each call).

    .venv/bin/python benchmarks/bench_metrics.py [--repeats 10]
"""
from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import torch
from torchmetrics.classification import MulticlassJaccardIndex

from segedu.data.classes import IGNORE_INDEX, NUM_CLASSES
from segedu.metrics import SegMetrics

BATCH, SIZE = 16, 512


def make_batch(device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets in blocks (like objects), void borders, and predictions right on ~70 % of pixels."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, NUM_CLASSES, (BATCH, SIZE // 32, SIZE // 32), generator=g)
    target = coarse.repeat_interleave(32, 1).repeat_interleave(32, 2)
    target[torch.rand(target.shape, generator=g) < 0.05] = IGNORE_INDEX
    noise = torch.randint(0, NUM_CLASSES, target.shape, generator=g)
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.7, target.clamp(max=NUM_CLASSES - 1), noise)
    return pred.to(device), target.to(device)


def time_updates(update, pred, target, repeats: int, device: torch.device) -> float:
    """Median seconds per update call after one warm-up call."""
    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    update(pred, target)
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        update(pred, target)
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(device: torch.device, repeats: int) -> None:
    pred, target = make_batch(device)
    ours = SegMetrics(NUM_CLASSES, ignore_index=IGNORE_INDEX)
    ours_s = time_updates(ours.update, pred, target, repeats, device)
    ours_miou = ours.compute()["miou"]
    mpix = pred.numel() / 1e6
    print(f"{device.type:4s} segedu SegMetrics.update                 {ours_s * 1e3:8.1f} ms  "
          f"({mpix / ours_s:7.1f} Mpx/s)")
    for validate in (True, False):
        reference = MulticlassJaccardIndex(NUM_CLASSES, average="macro", ignore_index=IGNORE_INDEX,
                                           validate_args=validate).to(device)
        reference_s = time_updates(reference.update, pred, target, repeats, device)
        reference_miou = float(reference.compute())
        assert math.isclose(ours_miou, reference_miou, rel_tol=1e-6), (ours_miou, reference_miou)
        print(f"{device.type:4s} torchmetrics update, validate_args={validate!s:5s} {reference_s * 1e3:8.1f} ms  "
              f"({mpix / reference_s:7.1f} Mpx/s)  segedu {reference_s / ours_s:.1f}x faster")
    print(f"{device.type:4s} mIoU {ours_miou:.6f} from all three")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"batch {BATCH} x {SIZE} x {SIZE}, {NUM_CLASSES} classes, int64 labels, median of {args.repeats} "
          f"updates after a warm-up")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    run(torch.device("cpu"), args.repeats)
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()}")
        run(torch.device("cuda"), args.repeats)


if __name__ == "__main__":
    main()
