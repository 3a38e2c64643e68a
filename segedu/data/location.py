"""Where a run's images are: the folder its config names, or the profile's generated dataset."""
from __future__ import annotations

from pathlib import Path

from .. import profiles
from ..errors import SegeduError


def resolve_data_dir(config) -> Path:
    """The dataset folder of ``config``: its ``data_dir`` (which must exist), or, when that is unset,
    the synthetic dataset of its ``profile`` (generated on first use, :mod:`segedu.data.synth`).

    ``config`` is anything with ``data_dir`` and ``profile`` attributes: a
    :class:`~segedu.engine.config.TrainConfig`, or the config a checkpoint saved
    (:class:`~segedu.inference.checkpoints.SavedConfig`).
    """
    if config.data_dir:
        path = Path(config.data_dir).expanduser()
        if not path.is_dir():
            raise SegeduError(f"data_dir {config.data_dir!r} does not exist; point it at a COCO dataset folder.")
        return path
    from . import synth  # generating a dataset is rare: leave its code unloaded until then

    return synth.ensure_default_dataset(profiles.get(config.profile))
