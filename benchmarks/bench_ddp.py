"""Data-parallel training speed: `torchrun` processes against one process, same global batch.

Trains the same configuration twice on a generated dataset and compares the training seconds
the runs recorded (`metrics.jsonl`, epochs only: no start-up, no validation):

* reference: one `segedu train` process at batch `2b` (and, on the CPU, all `--threads` threads);
* segedu distributed: `torchrun --nproc_per_node N -m segedu train` at batch `2b / N` per process
  (gloo on the CPU, NCCL on GPUs; on the CPU each process gets `threads / N` threads).

Both take the same optimiser steps on the same number of images per step, so the ratio of their
seconds is the speed-up of data parallelism on this machine.

    .venv/bin/python benchmarks/bench_ddp.py                  # CPU: 2 processes x 1 thread vs 1 x 2
    .venv/bin/python benchmarks/bench_ddp.py --device cuda --nproc 4 --batch 64 --size 512 --model deeplabv3_resnet50
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from segedu.engine.runlog import read_metrics


def train(nproc: int, threads: int, batch: int, args, data: Path, out: Path) -> float:
    command = ["-m", "segedu", "train", "--data-dir", str(data), "--out", str(out), "--model", args.model,
               "--width", str(args.width), "--profile", "cpu", "--image-size", str(args.size), "--epochs",
               str(args.epochs), "--batch-size", str(batch), "--num-workers", "0", "--device", args.device,
               "--val-split", "", "--seed", "0", "--max-steps", "0"]
    if nproc > 1:
        command = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *command]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, *command], check=True, env=env, capture_output=True, text=True)
    return sum(r["seconds"] for r in read_metrics(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads in all (CPU only)")
    parser.add_argument("--batch", type=int, default=8, help="global batch (images per optimiser step)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--model", default="fcn8s")
    parser.add_argument("--width", type=float, default=0.25)
    args = parser.parse_args()
    if args.batch % args.nproc:
        parser.error("--batch must be a multiple of --nproc")

    from segedu.data import synth

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        synth.generate(data, n_images=args.images, size=args.size, seed=0)
        per_process = max(1, args.threads // args.nproc)
        one = train(1, args.threads, args.batch, args, data, Path(tmp) / "one")
        many = train(args.nproc, per_process, args.batch // args.nproc, args, data, Path(tmp) / "many")
        steps = len(read_metrics(Path(tmp) / "one")) and read_metrics(Path(tmp) / "one")[-1]["step"]
    print(json.dumps({"device": args.device, "model": args.model, "width": args.width, "size": args.size,
                      "global_batch": args.batch, "steps": steps, "cpu_threads": os.cpu_count()}))
    print(f"1 process  x batch {args.batch:3d}{f' x {args.threads} threads' if args.device == 'cpu' else ''}: "
          f"{one:7.2f} s")
    print(f"{args.nproc} processes x batch {args.batch // args.nproc:3d}"
          f"{f' x {per_process} threads' if args.device == 'cpu' else ''}: {many:7.2f} s")
    print(f"speed-up of {args.nproc} processes: {one / many:.2f}x")


if __name__ == "__main__":
    main()
