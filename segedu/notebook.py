"""What every chapter does first: resolve its papermill parameters into a :class:`Session`.

A chapter's parameters cell holds ``profile``, ``data_dir``, ``seed`` and ``device``; its next cell
calls :func:`setup` with them. Bad values stop the notebook right there with one clear message.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from . import env, profiles
from .errors import SegeduError


@dataclasses.dataclass(frozen=True)
class Session:
    """The resolved settings of one chapter run."""

    profile: profiles.Profile
    data_dir: Path
    seed: int
    device: object  # torch.device
    device_name: str

    def run_dir(self, chapter: str, name: str) -> Path:
        """Where a chapter's training run ``name`` writes: ``<checkout>/runs/<profile>/<chapter>/<name>``."""
        return profiles.data_root().parent / "runs" / self.profile.name / chapter / name

    def describe(self) -> str:
        return (
            f"profile={self.profile.name} ({self.profile.description}); device={self.device} "
            f"[{self.device_name}]; seed={self.seed}; data_dir={self.data_dir}"
        )


def _configure_plots() -> None:
    """PNG figures at a fixed size and resolution, so outputs are stable and render anywhere."""
    import matplotlib

    matplotlib.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80, "figure.max_open_warning": 0})
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with the book's environment
        return
    ip = get_ipython()
    if ip is not None:
        ip.run_line_magic("config", "InlineBackend.figure_formats = ['png']")


def setup(profile: str = "auto", data_dir: str | Path | None = None, seed: int = 0,
          device: str = "auto", need_data: bool = False) -> Session:
    """Check and resolve a chapter's parameters, seed everything, configure plots.

    ``data_dir=None`` means the profile's generated default dataset. An explicit ``data_dir``
    must exist. With ``need_data=True`` a missing default dataset is generated first.
    """
    prof = profiles.get(profile)
    dev = env.resolve_device(device)
    env.seed_everything(seed)
    if data_dir is None or str(data_dir) == "":
        path = profiles.default_data_dir(prof)
        if need_data and not path.is_dir():
            from .data import synth  # generated on demand, the way `make book` does

            synth.ensure_default_dataset(prof)
    else:
        path = Path(data_dir).expanduser().resolve()
        if not path.is_dir():
            raise SegeduError(
                f"data_dir {str(data_dir)!r} does not exist. Point it at a COCO dataset folder "
                "(images plus train.json/val.json/test.json), or leave data_dir=None to use the "
                "generated default dataset of the profile."
            )
    _configure_plots()
    return Session(prof, path, seed, dev, env.device_name(dev))


def shape_text(tensor, size: int, symbol: str = "S") -> str:
    """A tensor's shape with each spatial side equal to ``size`` written as ``symbol``: "(4, 3, S, S)".

    A chapter prints shapes that depend on the profile's image size this way, so the printed text is
    the same in every profile and nbval can compare it.
    """
    dims = [symbol if i >= len(tensor.shape) - 2 and d == size else str(d) for i, d in enumerate(tensor.shape)]
    return "(" + ", ".join(dims) + ")"
