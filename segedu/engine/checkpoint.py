"""Checkpoints that survive a kill -9: written to a temporary file, then renamed.

A checkpoint holds everything needed to continue a run exactly: model, optimiser, scheduler,
gradient scaler, EMA/SWA models, the random number generators' states, the epoch and the
optimiser step, plus the run's config and the model's identity (name, class count), so that
``segedu evaluate`` and ``segedu predict`` can rebuild the model and refuse a mismatch. The read
side, :func:`load`, is :func:`segedu.inference.checkpoints.load`.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..errors import SegeduError
from ..fileio import write_atomic
# reading a checkpoint is inference's too, so it lives there (a lower layer); `checkpoint.load` stays
from ..inference.checkpoints import load  # noqa: F401


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, payload: dict) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``
    (:func:`segedu.fileio.write_atomic`: a full disk is a SegeduError, never half a checkpoint)."""
    write_atomic(path, lambda f: torch.save(payload, f))


def check_compatible(payload: dict, path, model_name: str | None = None, num_classes: int | None = None) -> None:
    """Refuse a checkpoint of another model or class count, naming both."""
    if model_name is not None and payload["model_name"] != model_name:
        raise SegeduError(f"{path}: checkpoint of model {payload['model_name']!r}, but {model_name!r} was asked for.")
    if num_classes is not None and payload["num_classes"] != num_classes:
        raise SegeduError(f"{path}: checkpoint has {payload['num_classes']} classes, but the data has {num_classes}.")
