"""A training run's full configuration: one dataclass, saved as JSON in every run directory.

Every choice a chapter ablates (loss, scheduler, augmentation, sampler, AMP, EMA, SWA, ...) is a
field here, so "one change at a time" is a diff of two ``config.json`` files. Defaults come from
the profile (image size, batch size, epochs, model width); anything set explicitly wins.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .. import profiles
from ..errors import SegeduError

SCHEDULERS = ("cosine", "poly", "plateau", "constant")
OPTIMIZERS = ("adamw", "sgd")
AMP_MODES = ("off", "auto", "fp16", "bf16")
SAMPLERS = ("uniform", "class_aware")


@dataclasses.dataclass
class TrainConfig:
    """Everything that decides a training run's numbers (see the field comments)."""

    model: str = "fcn8s"                 # a name from segedu.models.available()
    model_options: dict = dataclasses.field(default_factory=dict)  # e.g. {"width": 0.25}
    data_dir: str | None = None          # None: the profile's generated dataset
    train_split: str = "train"           # train | val | an annotation file
    val_split: str | None = "val"        # None: no validation
    profile: str = "auto"                # smoke | cpu | gpu | auto: default sizes and budgets
    image_size: int | None = None        # None: the profile's
    epochs: int | None = None            # None: the profile's
    max_steps: int | None = None         # cap on optimiser steps (None: the profile's; 0: no cap)
    batch_size: int | None = None        # per optimiser micro-step; None: the profile's
    accumulate: int = 1                  # gradient accumulation: micro-batches per optimiser step
    optimizer: str = "adamw"             # adamw | sgd
    lr: float = 1e-3                     # peak learning rate
    weight_decay: float = 1e-4           # decoupled (AdamW) or L2 (SGD)
    momentum: float = 0.9                # SGD only
    scheduler: str = "cosine"            # cosine | poly | plateau | constant
    warmup_steps: int = 0                # linear warm-up (LinearLR) before the scheduler
    poly_power: float = 0.9
    loss: str = "ce"                     # a segedu.losses spec, e.g. "ce+0.5*dice"
    class_weights: str | None = None     # None | inverse | sqrt_inverse | median_frequency
    label_smoothing: float = 0.0         # cross-entropy label smoothing epsilon (0: off)
    aux_weight: float = 0.4              # weight of an auxiliary head's loss, where a model has one
    class_head: float = 0.0              # weight of the image-level class-presence loss (0: no head)
    suppress_threshold: float | None = None  # at inference, drop classes the head judges absent
    augment: list = dataclasses.field(default_factory=list)  # names from segedu.data.transforms
    crop: str = "scale"                  # scale | crop_non_empty
    mix: str | None = None               # None | mixup | cutmix | snapmix | copypaste
    mix_p: float = 0.5                   # probability that a batch is mixed
    sampler: str = "uniform"             # uniform | class_aware
    amp: str = "auto"                    # off | auto (bf16/fp16 on CUDA, off on CPU) | fp16 | bf16
    channels_last: bool | None = None    # NHWC memory layout, faster convolutions on recent GPUs (None: the profile's)
    compile: bool | None = None          # torch.compile the model, GPU fast path (None: the profile's)
    sync_bn: bool = False                # torchrun runs: SyncBatchNorm, batch statistics over all processes
    grad_clip: float | None = None       # max gradient norm
    ema_decay: float | None = None       # e.g. 0.999: evaluate an exponential moving average
    swa_start: int | None = None         # epoch from which SWA averages the weights
    swa_lr: float | None = None          # SWALR learning rate once SWA starts (None: a tenth of lr)
    seed: int = 0                        # seeds weights, data order and augmentation
    device: str = "auto"                 # auto | cpu | cuda | cuda:N
    num_workers: int | None = None       # None: the profile's
    debug: bool = False                  # a handful of images, one epoch, every code path
    out: str = "runs/run"                # the run directory
    tensorboard: bool = False            # also log to TensorBoard in the run directory
    wandb: str | None = None             # None, or a W&B project name (offline unless WANDB_MODE says otherwise)
    checkpoint_every: int = 0            # also write last.pt every N optimiser steps (0: per epoch only)
    save_epochs: bool = False            # also keep every epoch's evaluated weights (epochs/epochN.pt): epoch ensembles

    def resolved(self) -> "TrainConfig":
        """A copy with every profile-dependent ``None`` filled in and every choice checked."""
        prof = profiles.get(self.profile)
        c = dataclasses.replace(self, profile=prof.name, model_options=dict(self.model_options), augment=list(self.augment))
        c.image_size = c.image_size or prof.image_size
        c.epochs = c.epochs or prof.epochs
        c.batch_size = c.batch_size or prof.batch_size
        c.num_workers = prof.num_workers if c.num_workers is None else c.num_workers
        c.channels_last = prof.channels_last if c.channels_last is None else c.channels_last
        c.compile = prof.compile if c.compile is None else c.compile
        if c.max_steps is None:
            c.max_steps = prof.max_steps
        from .. import models

        if "width" in models.options_of(c.model):  # smp models have no width (their encoder sets it)
            c.model_options.setdefault("width", prof.width)
        if c.debug:
            c.epochs, c.max_steps = 1, min(c.max_steps or 2, 2)
        for name, value, allowed in (("scheduler", c.scheduler, SCHEDULERS), ("optimizer", c.optimizer, OPTIMIZERS),
                                     ("amp", c.amp, AMP_MODES), ("sampler", c.sampler, SAMPLERS)):
            if value not in allowed:
                raise SegeduError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}.")
        if c.accumulate < 1 or c.batch_size < 1 or c.epochs < 1:
            raise SegeduError("accumulate, batch_size and epochs must be positive integers.")
        if c.class_head < 0:
            raise SegeduError(f"class_head is a loss weight and must be >= 0 (0: no head), got {c.class_head}.")
        if c.suppress_threshold is not None:
            if not c.class_head:
                raise SegeduError("suppress_threshold needs the class-presence head; set class_head > 0 "
                                  "(e.g. 0.4) or leave suppress_threshold unset.")
            if not 0.0 < c.suppress_threshold <= 1.0:
                raise SegeduError(f"suppress_threshold is a probability in (0, 1], got {c.suppress_threshold}.")
        return c

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SegeduError(f"unknown training option(s) {', '.join(unknown)}; "
                              f"the options are: {', '.join(sorted(known))}.")
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """Read a config file (JSON) -- an experiment file or a run directory's ``config.json``."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise SegeduError(f"{path}: no such config file.") from None
        except json.JSONDecodeError as exc:
            raise SegeduError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
        return cls.from_dict(values)
