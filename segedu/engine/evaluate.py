"""Checkpoints in use, as the book and the CLI import them: :func:`load_model` with the run's full
:class:`~segedu.engine.config.TrainConfig`; :func:`evaluate` and :func:`predict` are
:mod:`segedu.inference.evaluate`'s (inference needs no training code, so they live there)."""
from __future__ import annotations

from pathlib import Path

from .. import env
from ..inference import checkpoints
from ..inference.evaluate import evaluate, predict
from .config import TrainConfig

__all__ = ["evaluate", "load_model", "predict"]


def load_model(path: str | Path, device="auto"):
    """(model in eval mode on ``device``, resolved config, checkpoint payload) from a checkpoint or run dir.

    A run trained with ``class_head > 0`` comes back wrapped in its
    :class:`~segedu.models.class_head.ClassPresenceModel`, suppressing classes with the config's
    ``suppress_threshold`` (set ``model.suppress_threshold`` to change it). The config is the saved
    one rebuilt as a TrainConfig (checked field by field); :func:`segedu.inference.checkpoints.load_model`
    reads the same checkpoint without the training code.
    """
    dev = env.resolve_device(device) if isinstance(device, str) else device
    payload = checkpoints.load(path, map_location=dev)
    config = TrainConfig(**payload["config"])
    return checkpoints.build_model(payload, config, dev), config, payload
