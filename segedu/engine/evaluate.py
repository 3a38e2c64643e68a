"""Checkpoints in use, as the book and the CLI import them: :func:`load_model` with the run's full
:class:`~segedu.engine.config.TrainConfig`; :func:`evaluate` and :func:`predict` are
:mod:`segedu.inference.evaluate`'s (inference needs no training code, so they live there)."""
from __future__ import annotations

from pathlib import Path

from ..inference import checkpoints
from ..inference.evaluate import evaluate, predict
from .config import TrainConfig

__all__ = ["evaluate", "load_model", "predict"]


def load_model(path: str | Path, device="auto"):
    """(model in eval mode on ``device``, resolved config, checkpoint payload) from a checkpoint or run dir.

    The model is :func:`segedu.inference.checkpoints.load_model`'s, the one loader (a run trained with
    ``class_head > 0`` comes back wrapped in its
    :class:`~segedu.models.class_head.ClassPresenceModel`); the config is the saved one rebuilt as a
    TrainConfig (checked field by field) instead of the few fields inference reads.
    """
    model, _, payload = checkpoints.load_model(path, device)
    return model, TrainConfig(**payload["config"]), payload
