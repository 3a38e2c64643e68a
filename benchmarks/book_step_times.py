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

Nothing is asserted: it is a measurement, read by whoever sets the budget. Run it with the CPU
to itself (another torch process on the same cores doubles or worse every number).
"""
from __future__ import annotations

import argparse

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
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    names = args.only or list(ARCHITECTURES)
    print(f"{env.machine_description()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"batch {args.batch_size}, {args.image_size} px, width {args.width}\n")
    print(f"{'architecture':<24}{'s/step':>8}{f'{args.steps} steps, s':>16}")
    total = 0.0
    for name in names:
        net = models.create(name, width=args.width, **ARCHITECTURES.get(name, {}))
        speed = measure.training_speed(net, args.batch_size, args.image_size, "cpu", repeats=args.repeats)
        per_step = args.batch_size / speed["images_per_s"]
        total += per_step
        print(f"{name:<24}{per_step:>8.3f}{per_step * args.steps:>16.0f}", flush=True)
    print(f"{'one step of each':<24}{total:>8.3f}{total * args.steps:>16.0f}")


if __name__ == "__main__":
    main()
