"""Data-parallel training on PyTorch's own engine: ``torchrun`` + ``DistributedDataParallel``.

``torchrun --nproc_per_node N -m segedu train ...`` starts N copies of ``segedu train``. Each
reads torchrun's environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``), joins one process group -- NCCL between GPUs, gloo on the CPU -- and trains
its share of every batch; DistributedDataParallel all-reduces (averages) the gradients, so every
process takes the same optimiser step. Several machines use torchrun's usual rendezvous options
(``--nnodes 2 --node_rank 0 --rdzv_endpoint HOST:PORT``); nothing here depends on the count.

What the :class:`~segedu.engine.trainer.Trainer` does differently in a distributed run:

* **Data.** A ``DistributedSampler`` (or the class-aware sampler's shard) gives each process
  a disjoint ``1 / N`` of every epoch; ``batch_size`` is per process, so the effective batch is
  ``batch_size x N x accumulate``. Each image's augmentation is drawn from ``(seed, epoch, image
  index)`` (:class:`~segedu.data.dataset.PerImageSeeds`), so an image looks the same whichever
  process loads it: two processes at batch ``b`` take the same step as one at ``2b`` (tested,
  for a model without batch norm and images with equal numbers of labelled pixels, because
  DDP averages each process's mean loss).
* **Metrics.** Validation is split between processes without padding, and the confusion matrix
  is all-reduced (:meth:`~segedu.metrics.SegMetrics.all_reduce`), so the mIoU equals the
  single-process value on the same predictions.
* **Files.** Only rank 0 writes the run directory, logs and checkpoints; ``--resume`` reloads
  them on every rank (with the same number of processes: the data shards depend on it).
* **Batch norm.** ``sync_bn=True`` converts the model's BatchNorm layers to ``SyncBatchNorm``
  (statistics over the whole batch instead of each process's share: useful when the share is
  only a few images).
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from ..errors import SegeduError

#: torchrun's environment variables
_LAUNCH_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """True inside a process started by ``torchrun`` (its environment variables are set)."""
    return all(name in os.environ for name in _LAUNCH_VARS)


def is_distributed() -> bool:
    """True once this process is in a process group (of any size, one included)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0, or a plain single-process run: the process that writes files and prints."""
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group if launched by it; return this process's device.

    ``device`` is the one the config asked for, already resolved: on CUDA, process ``LOCAL_RANK``
    of a machine takes GPU ``LOCAL_RANK`` (NCCL); on the CPU every process uses the CPU (gloo).
    Outside torchrun nothing happens and ``device`` is returned unchanged.
    """
    if not launched():
        return device
    if not dist.is_available():
        raise SegeduError("this PyTorch build has no torch.distributed; a torchrun launch cannot train here.")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise SegeduError(f"process with LOCAL_RANK {local_rank} has no GPU: this machine has "
                              f"{torch.cuda.device_count()}; use --nproc_per_node <= the GPU count.")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not is_distributed():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return device


def cleanup(wait: bool = True) -> None:
    """Leave the process group (at the end of ``segedu train``); ``wait``: for the others first."""
    if is_distributed():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over every process, in place (a no-op in a single process)."""
    if is_distributed() and world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_finite(value: torch.Tensor) -> bool:
    """Whether ``value`` is finite in *every* process: all of them stop together on a NaN loss
    instead of the others waiting forever for the gradients of the one that stopped."""
    flag = torch.tensor([0.0 if torch.isfinite(value).all() else 1.0], device=value.device)
    return all_reduce_sum_(flag).item() == 0


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + N, rank + 2N, ...`` in order, no padding: every image is evaluated by
    exactly one process (``DistributedSampler`` pads with repeats, which would count some twice)."""

    def __init__(self, length: int, rank: int | None = None, num_replicas: int | None = None):
        self.length = length
        self.rank = globals()["rank"]() if rank is None else rank
        self.num_replicas = world_size() if num_replicas is None else num_replicas

    def __iter__(self):
        return iter(range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))
