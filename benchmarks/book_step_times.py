"""What one training step of each of the book's architectures costs on this machine, and what a
plan of runs would cost: the measurement the cpu profile's budget is designed from.

The book has to execute in one `make book` on a 2-core CPU within its budget, and its models
have to learn there (a pretrained encoder and 192 px crops, `benchmarks/RESULTS.md`). The only
free variable is how many optimiser steps the chapters spend and on which models. This script
times one training step (forward, cross-entropy, backward, SGD update on a random batch;
`segedu.models.measure.training_speed`) of every architecture the chapters train, with the
options the book builds them with (`segedu.experiments.compare.ARCHITECTURES`), and prints
seconds per step and the cost of `--steps` steps:

    .venv/bin/python benchmarks/book_step_times.py                     # 192 px, batch 8, width 0.25
    .venv/bin/python benchmarks/book_step_times.py --image-size 128 --steps 300
    .venv/bin/python benchmarks/book_step_times.py --fast      # also bf16 autocast + channels-last

With ``--fast`` every architecture is timed twice in the same run: in fp32 (the reference) and
with the CPU fast path (bf16 autocast and channels-last memory, what the engine's ``amp`` and
``channels_last`` switch on), and the ratio fp32 / fast is printed. bf16 is fast only on CPUs
with native bf16 arithmetic (AMX or AVX512-BF16); elsewhere PyTorch emulates it and it is slower.

Nothing is asserted: it is a measurement, read by whoever sets the budget. Run it with the CPU
to itself (another torch process on the same cores doubles or worse every number).
"""
from __future__ import annotations

import argparse
import copy

import torch

from segedu import env, models
from segedu.experiments.compare import ARCHITECTURES
from segedu.models import measure


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=300, help="steps of one run, for the cost column")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="a subset of the architectures")
    parser.add_argument("--fast", action="store_true", help="also time bf16 autocast + channels-last, print the ratio")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    names = args.only or list(ARCHITECTURES)
    print(f"{env.machine_description()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"batch {args.batch_size}, {args.image_size} px, width {args.width}\n")
    if args.fast:
        print(f"bf16 instructions on this CPU: AMX {torch.cpu._is_amx_tile_supported()}, "
              f"AVX512-BF16 {torch.cpu._is_avx512_bf16_supported()}")
        print(f"{'architecture':<24}{'fp32 s/step':>12}{'fast s/step':>12}{'ratio':>7}"
              f"{f'{args.steps} steps fp32, s':>22}{'fast, s':>9}")
    else:
        print(f"{'architecture':<24}{'s/step':>8}{f'{args.steps} steps, s':>16}")
    total = fast_total = 0.0
    for name in names:
        net = models.create(name, width=args.width, **ARCHITECTURES.get(name, {}))
        # the fast path is timed on a copy made before the fp32 steps change the weights
        fast_net = copy.deepcopy(net) if args.fast else None
        speed = measure.training_speed(net, args.batch_size, args.image_size, "cpu", repeats=args.repeats)
        per_step = args.batch_size / speed["images_per_s"]
        total += per_step
        if not args.fast:
            print(f"{name:<24}{per_step:>8.3f}{per_step * args.steps:>16.0f}", flush=True)
            continue
        fast = measure.training_speed(fast_net, args.batch_size, args.image_size, "cpu", dtype=torch.bfloat16,
                                      channels_last=True, repeats=args.repeats)
        fast_step = args.batch_size / fast["images_per_s"]
        fast_total += fast_step
        print(f"{name:<24}{per_step:>12.3f}{fast_step:>12.3f}{per_step / fast_step:>6.2f}x"
              f"{per_step * args.steps:>22.0f}{fast_step * args.steps:>9.0f}", flush=True)
    if args.fast:
        print(f"{'one step of each':<24}{total:>12.3f}{fast_total:>12.3f}{total / fast_total:>6.2f}x"
              f"{total * args.steps:>22.0f}{fast_total * args.steps:>9.0f}")
    else:
        print(f"{'one step of each':<24}{total:>8.3f}{total * args.steps:>16.0f}")

if __name__ == "__main__":
    main()
