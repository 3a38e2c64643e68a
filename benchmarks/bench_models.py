"""Training-step speed of segedu's FCN-ResNet50 and DeepLabV3-ResNet50 against torchvision's.

One training step is forward, cross-entropy loss (ignore index 255), backward and an AdamW
step, on the same random batch for both libraries. torchvision's models run as a user would
run them out of the box: fp32, eager, NCHW. segedu's run as `segedu train` runs them:

* `--path plain`: fp32 eager, like torchvision's (the CPU comparison: the code itself, no tricks);
* `--path fast`: the engine's GPU fast path: channels_last memory format and bf16 autocast
  (`--amp bf16 --channels-last`), plus `torch.compile` with `--compile`.

Each model is timed for `--steps` steps after `--warmup` steps; the median step time gives
images/s. FLOPs of one step come from `torch.utils.flop_counter.FlopCounterMode` on the fp32
model, so TFLOP/s is the useful work done per second, the same count for both.

    .venv/bin/python benchmarks/bench_models.py                       # CPU, plain, bs 2 at 256 px
    .venv/bin/python benchmarks/bench_models.py --device cuda --path fast --batch-size 16 --size 512
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from segedu import models
from segedu.inference.predict import autocast

NUM_CLASSES = 11
PAIRS = {
    "fcn_resnet50": torchvision.models.segmentation.fcn_resnet50,
    "deeplabv3_resnet50": torchvision.models.segmentation.deeplabv3_resnet50,
}


def batch(size: int, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, size, size, generator=g)
    masks = torch.randint(0, NUM_CLASSES, (batch_size, size, size), generator=g)
    return images.to(device), masks.to(device)


def logits_of(output) -> torch.Tensor:
    return output["out"] if isinstance(output, dict) else output


def step_flops(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(logits_of(model(images)), masks, ignore_index=255).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def time_steps(model, images, masks, *, steps: int, warmup: int, dtype, channels_last: bool,
               compile_model: bool, device: torch.device) -> float:
    """Median seconds of one training step."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def one_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss = F.cross_entropy(logits_of(forward(images)).float(), masks, ignore_index=255)
        loss.backward()
        optimizer.step()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        one_step()
    sync()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        one_step()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--path", choices=("plain", "fast"), default="plain")
    parser.add_argument("--compile", action="store_true", help="also torch.compile segedu's model (fast path)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--models", nargs="*", default=list(PAIRS))
    args = parser.parse_args()

    device = torch.device(args.device)
    fast = args.path == "fast"
    dtype = torch.bfloat16 if fast else None  # the engine's --amp bf16
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads")
    print(f"device: {where}; torch {torch.__version__}, torchvision {torchvision.__version__}")
    print(f"batch {args.batch_size} x 3 x {args.size}^2, {NUM_CLASSES} classes; median of {args.steps} "
          f"steps after {args.warmup}; segedu path: {args.path}"
          f"{' (channels_last + bf16 autocast' + (' + torch.compile' if args.compile else '') + ')' if fast else ' (fp32 eager)'}; "
          f"torchvision: fp32 eager")
    images, masks = batch(args.size, args.batch_size, device)
    for name in args.models:
        torch.manual_seed(0)
        reference = PAIRS[name](weights=None, weights_backbone=None, num_classes=NUM_CLASSES).to(device).train()
        torch.manual_seed(0)
        ours = models.create(name, num_classes=NUM_CLASSES).to(device).train()
        flops = step_flops(reference, images, masks)
        ref_s = time_steps(reference, images, masks, steps=args.steps, warmup=args.warmup, dtype=None,
                           channels_last=False, compile_model=False, device=device)
        our_s = time_steps(ours, images, masks, steps=args.steps, warmup=args.warmup, dtype=dtype,
                           channels_last=fast, compile_model=args.compile, device=device)
        n = args.batch_size
        print(f"{name:20s} torchvision {n / ref_s:8.2f} img/s ({flops / ref_s / 1e12:6.2f} TFLOP/s) | "
              f"segedu {n / our_s:8.2f} img/s ({flops / our_s / 1e12:6.2f} TFLOP/s) | "
              f"segedu / torchvision {ref_s / our_s:.2f}x")
        del reference, ours
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
