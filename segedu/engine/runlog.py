"""The run directory: what a run was (config, environment) and what it measured (metrics).

``RUN_DIR/config.json``   the full resolved :class:`~segedu.engine.config.TrainConfig`
``RUN_DIR/env.json``      versions, device, machine, seed
``RUN_DIR/metrics.jsonl`` one JSON line per epoch (train loss, val scores, learning rate, time)
``RUN_DIR/best.pt``, ``RUN_DIR/last.pt``  checkpoints (see :mod:`segedu.engine.checkpoint`)

TensorBoard and Weights & Biases are optional mirrors of ``metrics.jsonl``, off by default; W&B
runs offline unless the user's own ``WANDB_MODE`` says otherwise, so nothing needs the network.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .. import env
from ..errors import SegeduError
from ..fileio import jsonable, write_json_atomic, write_text_atomic


def write_json(path: Path, obj) -> None:
    """``obj`` as indented JSON, written atomically (:mod:`segedu.fileio`); NaN becomes null."""
    write_json_atomic(path, jsonable(obj), indent=2)


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class RunLog:
    """Writes one run directory; on resume keeps only the epochs the checkpoint had finished."""

    def __init__(self, run_dir: str | Path, config, device, resume_epoch: int | None = None, world_size: int = 1):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.dir / "metrics.jsonl"
        write_json(self.dir / "config.json", json.loads(config.to_json()))
        info = env.info(str(device))
        # world_size: processes of a torchrun launch (1: a plain run); the effective batch is
        # batch_size x world_size x accumulate
        info.update({"machine": env.machine_description(), "seed": config.seed, "world_size": world_size})
        write_json(self.dir / "env.json", info)
        kept = [r for r in read_metrics(self.dir) if resume_epoch is not None and r["epoch"] <= resume_epoch]
        # a resumed run keeps the epochs up to its checkpoint; rewritten whole or not at all
        write_text_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
        self._tb = self._wandb = None
        if config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise SegeduError("tensorboard=True needs the tensorboard package: pip install tensorboard") from None
            self._tb = SummaryWriter(str(self.dir / "tensorboard"))
        if config.wandb:
            try:
                import wandb
            except ImportError:
                raise SegeduError("wandb logging needs the wandb package: pip install wandb") from None
            os.environ.setdefault("WANDB_MODE", "offline")
            self._wandb = wandb.init(project=config.wandb, dir=str(self.dir), config=json.loads(config.to_json()))

    def log_epoch(self, record: dict) -> None:
        record = jsonable(record)
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "epoch"}
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, record["epoch"])
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(scalars, step=record["epoch"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
