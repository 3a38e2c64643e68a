"""The training loop: one :class:`Trainer` for every segedu model and dataset.

What it guarantees:

* **Reproducible.** Every random draw of epoch ``e`` -- the data order, the augmentations, MixUp's
  draws, dropout -- is derived from ``(seed, e)`` and the micro-batch index, not from what came
  before. The same config gives the same metrics twice on the same machine, and a run resumed
  from a checkpoint (``resume=True``), even one written in the middle of an epoch after a
  ``kill -9``, ends with exactly the metrics of an uninterrupted run: the resumed epoch is
  replayed up to the checkpoint's micro-batch without training on it.
* **Gradient accumulation.** ``accumulate=k`` sums the gradients of ``k`` micro-batches, each
  loss divided by ``k``, before one optimiser step: for a model without batch norm this is the
  update of one batch ``k`` times larger (tested).
* **Mixed precision.** ``amp='auto'``: bf16 autocast on a GPU that supports it, else fp16 with a
  ``GradScaler``; on a CPU bf16 only where the processor has bf16 instructions (elsewhere it is
  emulated, slower than fp32), else off (:func:`segedu.env.resolve_amp`). The resolved config
  records the precision actually used.
* **Averaging.** ``ema_decay``: an exponential moving average of the weights *and* of batch norm's
  running statistics (``AveragedModel(use_buffers=True)``: the statistics belong to the averaged
  weights, not to the live ones) is updated after every optimiser step, and evaluated and saved
  instead of the raw weights. The decay warms up as in TensorFlow's ``ExponentialMovingAverage``
  and timm's ``ModelEmaV2``: after ``t`` updates the next one uses
  ``min(ema_decay, (1 + t) / (10 + t))`` (``ema_warmup=False``: ``ema_decay`` throughout), so a
  short run's average is not dominated by its first, untrained weights: without it, 0.99 leaves
  0.99 ** 47 = 62% of a 48-step average on step 1's weights; with it, step ``s`` of a run of
  ``T << 900`` steps weighs about ``9 s**8 / T**9``, an average centred at 90% of the run.
  The integer ``num_batches_tracked`` is a count: copied, not averaged.
* **SWA** (Izmailov et al. 2018, "Averaging Weights Leads to Wider Optima and Better
  Generalization", Sec. 3). The SWA phase starts after epoch ``swa_start`` or optimiser step
  ``swa_start_step``; in it the schedule stops and ``SWALR`` sets the learning rate, stepped once
  per optimiser step: a cosine anneal from the schedule's last rate to ``swa_lr`` over the first
  ``swa_every`` steps (one epoch of steps when ``swa_every`` is unset), constant after. The
  weights are averaged every ``swa_every`` optimiser steps of the phase (once per epoch when
  unset), and batch-norm statistics are recomputed for the average at the end
  (``swa_utils.update_bn``); the SWA record of the history holds the number of ``snapshots``.
  ``save_snapshots`` also keeps each snapshot's weights as ``snapshots/step{N}.pt`` (in best.pt's
  format, written at the step it is taken), for :mod:`segedu.engine.averaging`'s plane and scores.
  A run whose phase holds fewer than :data:`MIN_SWA_SNAPSHOTS` snapshots is refused (except in
  debug mode): an "average" of one or two points is not what the paper measures.
* **Failing loudly.** A NaN or infinite loss stops the run with the step that produced it; the
  last checkpoint written before it is kept.
* **Distributed.** Under ``torchrun`` the same loop trains with DistributedDataParallel (NCCL on
  GPUs, gloo on the CPU): see :mod:`segedu.engine.distributed` for what changes.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim import swa_utils
from torch.utils.data import DataLoader, DistributedSampler, Subset

from .. import env, losses, models, profiles
from ..data import IGNORE_INDEX, dataset, mixing, sampler, stats, transforms
from ..data.location import resolve_data_dir
from ..errors import SegeduError
from ..inference import checkpoints
from ..inference.ensemble import Member
from ..inference.pipeline import InferenceOptions
from ..inference.predict import amp_dtype, autocast, normalize
from ..inference.predictor import Predictor
from ..models.class_head import ClassPresenceModel, presence_loss
from . import checkpoint, distributed
from .config import TrainConfig
from .runlog import RunLog, jsonable
from .schedule import build_optimizer, build_scheduler

#: images used by debug mode
DEBUG_IMAGES = 8
#: the fewest weight snapshots an SWA run may average
MIN_SWA_SNAPSHOTS = 4


def snapshot_path(run_dir: str | Path, step: int) -> Path:
    """Where ``save_snapshots`` keeps the SWA snapshot taken after optimiser step ``step``."""
    return Path(run_dir) / "snapshots" / f"step{step}.pt"


def _mix_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % 2**31


def _progress(iterable, total: int, desc: str):
    """tqdm on a terminal, nothing in notebooks or logs (TQDM_DISABLE=1 also silences it)."""
    if not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


@torch.no_grad()
def evaluate_model(model, loader, num_classes: int, device, size: int | tuple[int, int] | None, dtype=None,
                   channels_last: bool = False, per_image: bool = False) -> dict:
    """Scores of ``model`` on ``loader``'s labelled images, at the images' own resolution.

    In a distributed run each process scores its shard of the images and the confusion matrices
    are summed over processes before scoring (every process returns the same scores)."""
    model.eval()
    predictor = Predictor(Member(model, size, dtype), InferenceOptions(channels_last=channels_last), device=device)
    scores = predictor.score(loader, num_classes, per_image=per_image, distributed=True)
    del scores["confusion"]  # the run's records keep the scores only
    return scores


def effective_ema_decay(decay: float, updates: int, warmup: bool = True) -> float:
    """The decay of an EMA update that follows ``updates`` earlier ones: ``min(decay, (1 + updates) /
    (10 + updates))`` with ``warmup`` (TensorFlow's ``ExponentialMovingAverage(num_updates=...)``,
    timm's ``ModelEmaV2`` warm-up), else ``decay``."""
    return min(decay, (1 + updates) / (10 + updates)) if warmup else decay


def ema_multi_avg_fn(decay: float, warmup: bool = True):
    """A ``multi_avg_fn`` for ``swa_utils.AveragedModel``: ``ema = d * ema + (1 - d) * current`` with
    ``d = effective_ema_decay(decay, n_averaged, warmup)``. ``AveragedModel`` copies the first
    update and groups tensors by dtype; an integer group (batch norm's ``num_batches_tracked``, a
    count that a float lerp cannot hold) is copied from the live model."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        if not (torch.is_floating_point(averaged[0]) or torch.is_complex(averaged[0])):
            for a, c in zip(averaged, current):
                a.copy_(c)
            return
        torch._foreach_lerp_(averaged, current, 1.0 - effective_ema_decay(decay, int(n_averaged), warmup))

    return update


class _NoLog:
    """What the processes other than rank 0 log: nothing (rank 0 writes the run directory)."""

    def log_epoch(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


class Trainer:
    """Builds the data, model, loss and optimiser of a :class:`TrainConfig`; :meth:`fit` trains."""

    def __init__(self, config: TrainConfig, resume: bool = False):
        self.config = c = config.resolved()
        self.device = distributed.setup(env.resolve_device(c.device))  # joins torchrun's group, if any
        self.distributed = distributed.is_distributed()
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        env.seed_everything(c.seed)  # the model's initial weights (the same in every process)
        self.run_dir = Path(c.out)
        self.data_dir = resolve_data_dir(c)
        prof = dataclasses.replace(profiles.get(c.profile), image_size=c.image_size)
        self.train_set = dataset.CocoSegmentation(
            self.data_dir, c.train_split, transforms.train_transform(prof, extra=c.augment, crop=c.crop, seed=c.seed))
        self.num_classes = self.train_set.coco.num_classes
        self.val_set = dataset.CocoSegmentation(self.data_dir, c.val_split) if c.val_split else None
        self.train_data = Subset(self.train_set, range(min(DEBUG_IMAGES, len(self.train_set)))) if c.debug else self.train_set
        self.val_data = self.val_set
        if c.debug and self.val_set is not None:
            self.val_data = Subset(self.val_set, range(min(DEBUG_IMAGES, len(self.val_set))))
        if self.distributed:  # an image's augmentation must not depend on which process loads it
            self.train_data = dataset.PerImageSeeds(self.train_data, c.seed)

        self._presence = None
        weights = None
        if c.class_weights or c.sampler == "class_aware":
            table = stats.pixel_table(self.train_set.coco, self.train_set.masks)
            self._presence = table > 0
            if c.class_weights:
                weights = stats.class_weights(table.sum(0), c.class_weights, image_pixels=stats.image_pixels(table))
                weights = torch.tensor(weights, dtype=torch.float32)
        self.loss_fn = losses.build_loss(c.loss, num_classes=self.num_classes, ignore_index=IGNORE_INDEX,
                                         class_weights=weights, label_smoothing=c.label_smoothing).to(self.device)

        self.model = models.create(c.model, num_classes=self.num_classes, **c.model_options)
        if c.class_head > 0:  # image-level class-presence head on the encoder (segedu.models.class_head)
            self.model = ClassPresenceModel(self.model, self.num_classes, c.suppress_threshold)
        if c.sync_bn and self.distributed:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model = self.model.to(self.device)
        if c.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ddp = None
        if self.distributed:  # gradients averaged over processes; self.model stays the plain module
            self.ddp = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        trained = self.ddp or self.model
        self.forward = torch.compile(trained) if c.compile else trained
        self.dtype = amp_dtype(c.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

        images_per_process = len(self.train_data) // self.world_size
        micro_batches = images_per_process // c.batch_size
        if micro_batches < c.accumulate:
            share = f" ({images_per_process} per process of {self.world_size})" if self.distributed else ""
            raise SegeduError(f"{len(self.train_data)} training images{share} give {micro_batches} batch(es) of "
                              f"{c.batch_size}, fewer than accumulate={c.accumulate}; lower batch_size or accumulate.")
        self.steps_per_epoch = micro_batches // c.accumulate
        self.total_steps = c.epochs * self.steps_per_epoch
        if c.max_steps:
            self.total_steps = min(self.total_steps, c.max_steps)
        self.optimizer = build_optimizer(self.model.parameters(), c)
        self.scheduler = build_scheduler(self.optimizer, c, self.total_steps)
        self.ema = None
        if c.ema_decay:
            self.ema = swa_utils.AveragedModel(self.model, multi_avg_fn=ema_multi_avg_fn(c.ema_decay, c.ema_warmup),
                                               use_buffers=True)
        self.swa = self.swa_scheduler = None
        #: optimiser steps before the SWA phase, and steps between two SWA snapshots (None: no SWA)
        self.swa_start_step = self.swa_every = None
        if c.swa_start is not None or c.swa_start_step is not None:
            self.swa_start_step = c.swa_start_step if c.swa_start is None else c.swa_start * self.steps_per_epoch
            self.swa_every = c.swa_every or self.steps_per_epoch
            snapshots = max(0, (self.total_steps - self.swa_start_step) // self.swa_every)
            if snapshots < MIN_SWA_SNAPSHOTS and not c.debug:  # debug runs check code paths, not results
                plural = "" if snapshots == 1 else "s"
                raise SegeduError(
                    f"swa averages {snapshots} snapshot{plural} (one every {self.swa_every} optimiser steps after "
                    f"step {self.swa_start_step} of {self.total_steps}); use at least {MIN_SWA_SNAPSHOTS}: lower "
                    "swa_every or start earlier.")
            self.swa = swa_utils.AveragedModel(self.model)
            # anneal_epochs counts SWALR's steps, here optimiser steps: the anneal ends with the first
            # snapshot, and every later one is taken at the constant swa_lr (building SWALR leaves
            # the learning rate as it is: its anneal starts from the rate the schedule left)
            self.swa_scheduler = swa_utils.SWALR(self.optimizer, swa_lr=c.swa_lr or c.lr * 0.1,
                                                 anneal_epochs=self.swa_every)

        self.epoch = 0           # epochs finished
        self.step = 0            # optimiser steps taken
        self.batch_in_epoch = 0  # micro-batches of the current epoch already trained (mid-epoch resume)
        self.epoch_loss = [0.0, 0]  # sum and count of the current epoch's micro-batch losses
        # training seconds of the current epoch before the last resume (a resumed epoch's record
        # counts the time trained before the checkpoint too, so run times add up across resumes)
        self.epoch_seconds_before = 0.0
        self._epoch_started = time.perf_counter()
        self.best_miou = -math.inf
        self.history: list[dict] = []
        if resume:
            self._restore()
        elif distributed.is_main():
            # a fresh run in a folder an older run used: its SWA snapshots would otherwise be read
            # as this run's (the averaging plane and the snapshot ensemble read every file there)
            for stale in sorted((self.run_dir / "snapshots").glob("step*.pt")):
                stale.unlink()
        self.log = (RunLog(self.run_dir, c, self.device, resume_epoch=self.epoch if resume else None,
                           world_size=self.world_size) if distributed.is_main() else _NoLog())

    # ----------------------------------------------------------------------- checkpoints
    def _state(self) -> dict:
        return {
            "model_name": self.config.model, "num_classes": self.num_classes,
            "class_names": list(self.train_set.class_names), "config": dataclasses.asdict(self.config),
            "spec": checkpoints.model_spec(dataclasses.asdict(self.config)),
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "swa": self.swa.state_dict() if self.swa else None,
            "swa_scheduler": self.swa_scheduler.state_dict() if self.swa_scheduler else None,
            "rng": checkpoint.rng_state(), "epoch": self.epoch, "step": self.step, "world_size": self.world_size,
            "batch_in_epoch": self.batch_in_epoch, "epoch_loss": self.epoch_loss, "best_miou": self.best_miou,
            "epoch_seconds": self._epoch_seconds() if self.batch_in_epoch else 0.0,
        }

    def _restore(self) -> None:
        path = self.run_dir / "last.pt"
        if not path.is_file():
            raise SegeduError(f"cannot resume: {path} does not exist (was the run started with this --out?).")
        state = checkpoint.load(path, map_location=self.device)
        checkpoint.check_compatible(state, path, self.config.model, self.num_classes)
        saved = TrainConfig(**state["config"])
        if dataclasses.replace(saved, out=self.config.out) != dataclasses.replace(self.config, out=self.config.out):
            raise SegeduError(f"cannot resume {self.run_dir}: its config differs from the one given; "
                              "resume with the run's own config (segedu train --resume RUN_DIR).")
        if state.get("world_size", 1) != self.world_size:
            raise SegeduError(f"cannot resume {self.run_dir}: it was trained by {state.get('world_size', 1)} "
                              f"process(es) and this launch has {self.world_size}; the data shards depend on the "
                              f"count, so resume with --nproc_per_node {state.get('world_size', 1)} (or without "
                              "torchrun for a single-process run).")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema:
            self.ema.load_state_dict(state["ema"])
        if self.swa:
            self.swa.load_state_dict(state["swa"])
            self.swa_scheduler.load_state_dict(state["swa_scheduler"])
        checkpoint.set_rng_state(state["rng"])
        self.epoch, self.step, self.batch_in_epoch = state["epoch"], state["step"], state["batch_in_epoch"]
        self.epoch_loss = list(state["epoch_loss"])
        self.epoch_seconds_before = float(state.get("epoch_seconds", 0.0))  # older checkpoints: not kept
        self.best_miou = state["best_miou"]
        self._tell_loss_the_step()

    def _save_last(self) -> None:
        if distributed.is_main():
            checkpoint.save(self.run_dir / "last.pt", self._state())

    def _save_best(self, model, scores: dict, tag: str, path: Path | None = None) -> None:
        if not distributed.is_main():
            return
        kept = ("model_name", "num_classes", "class_names", "spec", "config", "epoch", "step")
        payload = {k: v for k, v in self._state().items() if k in kept}
        payload.update({"model": model.state_dict(), "scores": scores, "weights": tag})
        checkpoint.save(path or self.run_dir / "best.pt", payload)

    def _save_snapshot(self) -> None:
        """The weights SWA has just averaged, as ``snapshots/step{N}.pt`` in best.pt's format (loadable
        by ``load_model`` and as an ensemble member). Written now, atomically, not at the next
        checkpoint: a run resumed from an earlier last.pt replays this step and writes the same file."""
        self._save_best(self.model, {}, "snapshot", path=snapshot_path(self.run_dir, self.step))

    # ----------------------------------------------------------------------- data
    def _train_loader(self, epoch: int) -> DataLoader:
        c = self.config
        seed = _mix_seed(c.seed, epoch)
        transforms.reseed(self.train_set.transform, seed)  # the main process's draws (num_workers=0)
        order = None
        if c.sampler == "class_aware":
            presence = self._presence[: len(self.train_data)]
            order = sampler.ClassAwareSampler(presence, num_samples=len(self.train_data), seed=c.seed,
                                              rank=self.rank, num_replicas=self.world_size)
            order.set_epoch(epoch)
        elif self.distributed:  # this process's 1/N of a shuffle that every process draws alike
            order = DistributedSampler(self.train_data, num_replicas=self.world_size, rank=self.rank,
                                       shuffle=True, seed=c.seed, drop_last=True)
            order.set_epoch(epoch)
        if self.distributed:
            self.train_data.set_epoch(epoch)
        return DataLoader(self.train_data, batch_size=c.batch_size, shuffle=order is None, sampler=order,
                          num_workers=c.num_workers, collate_fn=dataset.collate, drop_last=True,
                          generator=torch.Generator().manual_seed(seed), worker_init_fn=dataset.seed_worker)

    def _val_loader(self) -> DataLoader:
        """This process's validation images (its shard, in a distributed run) in batches of one size:
        each image is predicted at its own aspect ratio and scored against its original mask.

        On a CPU they load in this process, whatever ``num_workers`` says: the forward pass already
        keeps every core busy, and a validation item is one read of its cached decoded pixels
        (validation has no augmentation), so worker processes would add only their start-up, every
        epoch: 1.37 s against 0.80 s per validation pass of the cpu profile on 2 cores, the same scores.
        """
        shard = distributed.ShardSampler(len(self.val_data)) if self.distributed else None
        workers = 0 if self.device.type == "cpu" else self.config.num_workers
        return dataset.make_eval_loader(self.val_data, self.config.batch_size, workers, indices=shard)

    # ----------------------------------------------------------------------- one micro-batch
    def _loss(self, output, target) -> torch.Tensor:
        if not isinstance(output, dict):
            return self.loss_fn(output.float(), target)
        loss = self.loss_fn(output["out"].float(), target)
        if "aux" in output:  # a model with an auxiliary head, in training mode
            loss = loss + self.config.aux_weight * self.loss_fn(output["aux"].float(), target)
        if "presence" in output:  # the class-presence head (class_head > 0)
            loss = loss + self.config.class_head * presence_loss(output["presence"], target, IGNORE_INDEX)
        return loss

    def _micro_batch(self, images, masks, epoch: int, index: int) -> float:
        c = self.config
        # other processes draw other dropout masks and mixing pairs (rank 0 draws the single-process ones)
        seed = _mix_seed(c.seed, epoch) * 4_096 + index + self.rank * 1_000_003
        torch.manual_seed(seed)  # dropout etc.: a function of (seed, epoch, micro-batch), so resume is exact
        images, target = images.to(self.device), masks.to(self.device)
        if c.mix:
            generator = torch.Generator().manual_seed(seed)
            if torch.rand((), generator=generator).item() < c.mix_p:
                params = {"classes": [int(i) for i in self._rare_classes()]} if c.mix == "copypaste" else {}
                mixed = mixing.apply(c.mix, images.cpu(), target.cpu(), generator, **params)
                images, target = mixed.images.to(self.device), mixed.targets.to(self.device)
        x = normalize(images)
        if c.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # DDP all-reduces gradients in backward; only the last micro-batch of a step needs it
        sync = self.ddp is None or (index + 1) % c.accumulate == 0
        with nullcontext() if sync else self.ddp.no_sync():
            return self._forward_backward(x, target, epoch, index)

    def _forward_backward(self, x, target, epoch: int, index: int) -> float:
        c = self.config
        with autocast(self.device, self.dtype):
            output = self.forward(x)
        loss = self._loss(output, target)
        finite = distributed.all_finite(loss) if self.distributed else bool(torch.isfinite(loss))
        if not finite:
            where = f"the loss of at least one of {self.world_size} processes (this one: {loss.item()})" \
                if self.distributed else f"the loss ({loss.item()})"
            raise SegeduError(
                f"{where} became NaN or infinite at optimiser step {self.step + 1} (epoch {epoch + 1}, micro-batch "
                f"{index + 1}); the run stopped. {self.run_dir / 'last.pt'} holds the last good checkpoint. "
                "Lower the learning rate, add grad_clip, or check the data.")
        self.scaler.scale(loss / c.accumulate).backward()
        return loss.item()

    def _rare_classes(self):
        if self._presence is None:
            _, self._presence = stats.pixel_counts_and_presence(self.train_set.coco, self.train_set.masks)
        share = self._presence.mean(axis=0)
        return [c for c in share.argsort() if c != 0 and share[c] > 0][:3]

    def _optimiser_step(self) -> None:
        c = self.config
        if c.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.ema:
            self.ema.update_parameters(self.model)
        if self._in_swa():  # SWALR, not the schedule, sets the rate from here on (Izmailov et al. Sec. 3)
            # a function of the step alone, so a resumed run averages at the same steps
            if (self.step - self.swa_start_step) % self.swa_every == 0:
                self.swa.update_parameters(self.model)
                if c.save_snapshots:
                    self._save_snapshot()
            self.swa_scheduler.step()
        elif c.scheduler != "plateau":
            self.scheduler.step()
        self._tell_loss_the_step()

    def _tell_loss_the_step(self) -> None:
        """Losses that change over training (small-loss selection's ramp, Han et al. 2018 Alg. 1)
        read the optimiser step from ``set_step``; called after every step and after a resume."""
        for module in self.loss_fn.modules() if isinstance(self.loss_fn, torch.nn.Module) else ():
            if hasattr(module, "set_step"):
                module.set_step(self.step)

    def _epoch_seconds(self) -> float:
        """Training seconds of the current epoch so far, those before a resume included."""
        return self.epoch_seconds_before + time.perf_counter() - self._epoch_started

    def _in_swa(self) -> bool:
        """Whether the last optimiser step was one of the SWA phase."""
        return self.swa is not None and self.step > self.swa_start_step

    # ----------------------------------------------------------------------- the loop
    def fit(self) -> list[dict]:
        """Train until ``epochs`` or ``max_steps``; returns the per-epoch records."""
        c = self.config
        try:
            while self.epoch < c.epochs and self.step < self.total_steps:
                self._train_epoch(self.epoch)
            if self.swa is not None and int(self.swa.n_averaged) > 0:
                self._finish_swa()
        finally:
            self.log.close()
        return self.history

    def _train_epoch(self, epoch: int) -> None:
        c = self.config
        self._epoch_started = time.perf_counter()
        self.model.train()
        loader = self._train_loader(epoch)
        limit = (self.total_steps - self.step) * c.accumulate + self.batch_in_epoch
        for index, (images, masks) in enumerate(_progress(loader, len(loader), f"epoch {epoch + 1}")):
            if index >= min(limit, self.steps_per_epoch * c.accumulate):
                break
            if index < self.batch_in_epoch:
                continue  # trained before the checkpoint we resumed from: replay the data only
            self.epoch_loss[0] += self._micro_batch(images, masks, epoch, index)
            self.epoch_loss[1] += 1
            if (index + 1) % c.accumulate == 0:
                self._optimiser_step()
                self.batch_in_epoch = index + 1
                if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                    self._save_last()
        self.optimizer.zero_grad(set_to_none=True)
        record = {"epoch": epoch + 1, "step": self.step, "train_loss": self.epoch_loss[0] / max(self.epoch_loss[1], 1),
                  "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(self._epoch_seconds(), 2)}
        evaluated = self.ema.module if self.ema else self.model
        if self.val_data is not None:
            scores = evaluate_model(evaluated, self._val_loader(), self.num_classes, self.device, c.image_size,
                                    self.dtype, c.channels_last)
            record.update({"val_miou": float(scores["miou"]), "val_pixel_accuracy": float(scores["pixel_accuracy"]),
                           "val_iou": scores["iou"]})
            if c.scheduler == "plateau" and not self._in_swa():
                self.scheduler.step(record["val_miou"])
            if record["val_miou"] > self.best_miou:
                self.best_miou = record["val_miou"]
                self._save_best(evaluated, scores, "ema" if self.ema else "model")
        elif epoch + 1 == c.epochs:
            self._save_best(evaluated, {}, "ema" if self.ema else "model")
        if c.save_epochs:  # a snapshot per epoch, loadable like best.pt (an epoch ensemble's members)
            self._save_best(evaluated, scores if self.val_data is not None else {}, "ema" if self.ema else "model",
                            path=self.run_dir / "epochs" / f"epoch{epoch + 1}.pt")
        self.epoch, self.batch_in_epoch, self.epoch_loss = epoch + 1, 0, [0.0, 0]
        self.epoch_seconds_before = 0.0
        self._save_last()
        self.log.log_epoch(record)
        self.history.append(jsonable(record))

    def _finish_swa(self) -> None:
        """Recompute batch-norm statistics for the averaged weights, evaluate them, keep them if best."""
        c = self.config
        bn_loader = DataLoader(self.train_data, batch_size=c.batch_size, shuffle=False, collate_fn=dataset.collate)
        with torch.no_grad():
            swa_utils.update_bn(([normalize(x)] for x, _ in bn_loader), self.swa, device=self.device)
        record = {"epoch": self.epoch, "step": self.step, "swa": True, "snapshots": int(self.swa.n_averaged)}
        if self.val_data is not None:
            scores = evaluate_model(self.swa.module, self._val_loader(), self.num_classes, self.device,
                                    c.image_size, self.dtype, c.channels_last)
            record.update({"val_miou": float(scores["miou"]), "val_pixel_accuracy": float(scores["pixel_accuracy"]),
                           "val_iou": scores["iou"]})
            if record["val_miou"] > self.best_miou:
                self.best_miou = record["val_miou"]
                self._save_best(self.swa.module, scores, "swa")
        if distributed.is_main():
            checkpoint.save(self.run_dir / "swa.pt", {**self._state(), "model": self.swa.module.state_dict()})
        self.log.log_epoch(record)
        self.history.append(jsonable(record))


def train(config: TrainConfig, resume: bool = False) -> Trainer:
    """Build a :class:`Trainer` for ``config`` and train it; the run directory is ``config.out``."""
    trainer = Trainer(config, resume=resume)
    trainer.fit()
    return trainer
