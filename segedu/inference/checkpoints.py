"""Checkpoints read back for inference: the file, the model it rebuilds, the settings it runs with.

A checkpoint (written by :mod:`segedu.engine.checkpoint`) holds the model's state and identity
(name, class count, class names), a small **model spec** (:func:`model_spec`: how to build the model,
at which size and precision to run it, where its data is) and, for training to resume, the run's
whole training config as a plain dict. Inference reads the spec (:class:`SavedConfig`; a
checkpoint older than the spec, the same fields of its config), so it needs no training code and no
:class:`~segedu.engine.config.TrainConfig`. :func:`segedu.engine.load_model` returns the full
TrainConfig instead, through this module's :func:`load_model`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .. import env, models
from ..errors import SegeduError
from ..models.class_head import ClassPresenceModel

__all__ = ["SavedConfig", "build_model", "load", "load_model", "model_spec"]


def load(path: str | Path, map_location="cpu") -> dict:
    """Read a segedu checkpoint; a clear error for a missing, damaged or foreign file.

    ``path`` is a checkpoint file or a run directory (its ``best.pt``, else its ``last.pt``)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
    if not path.is_file():
        raise SegeduError(f"{path}: no checkpoint there (a run directory holds best.pt and last.pt).")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise SegeduError(f"{path}: cannot be read as a checkpoint ({type(exc).__name__}: {exc}).") from None
    if not isinstance(payload, dict) or "model" not in payload or "model_name" not in payload:
        raise SegeduError(f"{path}: not a segedu checkpoint (no model name and state); "
                          "use a best.pt or last.pt written by `segedu train`.")
    return payload


@dataclasses.dataclass(frozen=True)
class SavedConfig:
    """The fields of a checkpoint's training config that inference reads; a field the saved dict
    lacks (a checkpoint older than the field) takes TrainConfig's default, as rebuilding a
    TrainConfig from the dict would."""

    model_options: dict = dataclasses.field(default_factory=dict)
    #: the input size the model was trained at (an int: the short side; an (H, W) pair; None: own size)
    image_size: int | tuple[int, int] | None = None
    amp: str | None = None
    class_head: float = 0.0
    suppress_threshold: float | None = None
    data_dir: str | None = None
    profile: str = "auto"

    @classmethod
    def of(cls, payload: dict) -> SavedConfig:
        """The model spec of a checkpoint ``payload`` (:func:`load`'s dict); for a checkpoint written
        before specs, the same fields of its training config."""
        saved = payload.get("spec") or payload.get("config") or {}
        return cls(**{f.name: saved[f.name] for f in dataclasses.fields(cls) if f.name in saved})


def model_spec(config: dict) -> dict:
    """The checkpoint's model spec from a run's training config (a dict): the :class:`SavedConfig`
    fields, all that inference needs beside the model's name and class count."""
    return {f.name: config[f.name] for f in dataclasses.fields(SavedConfig) if f.name in config}


def build_model(payload: dict, config, device) -> torch.nn.Module:
    """The checkpoint's model with its weights, in eval mode on ``device``.

    ``config`` gives ``model_options``, ``class_head`` and ``suppress_threshold`` (a
    :class:`SavedConfig` or a TrainConfig). A run trained with ``class_head > 0`` comes back wrapped
    in its :class:`~segedu.models.class_head.ClassPresenceModel`, suppressing classes with the
    config's ``suppress_threshold`` (set ``model.suppress_threshold`` to change it).
    """
    model = models.create(payload["model_name"], num_classes=payload["num_classes"], **config.model_options)
    if config.class_head > 0:
        model = ClassPresenceModel(model, payload["num_classes"], config.suppress_threshold)
    model.load_state_dict(payload["model"])
    return model.to(device).eval()


def load_model(path: str | Path, device="auto") -> tuple[torch.nn.Module, SavedConfig, dict]:
    """(model in eval mode on ``device``, :class:`SavedConfig`, checkpoint payload) from a checkpoint
    or run directory; see :func:`build_model`."""
    dev = env.resolve_device(device) if isinstance(device, str) else device
    payload = load(path, map_location=dev)
    config = SavedConfig.of(payload)
    return build_model(payload, config, dev), config, payload
