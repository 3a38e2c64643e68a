"""SWA's snapshots looked at: where the weights went, and how each point scores.

A run trained with ``save_snapshots=True`` keeps every weight vector SWA averaged as
``snapshots/step{N}.pt`` (:func:`segedu.engine.trainer.snapshot_path`) beside ``swa.pt``, the
average with its batch-norm statistics recomputed. This module gives the two pictures of
Izmailov et al. 2018 ("Averaging Weights Leads to Wider Optima and Better Generalization"):

* :func:`weight_plane`: the snapshots and the SWA point projected onto a plane of weight space.
  The default plane is the paper's (Sec. 3 and Fig. 1, after Garipov et al. 2018, "Loss Surfaces,
  Mode Connectivity, and Fast Ensembling of DNNs", whose loss-surface planes of Fig. 1 are built
  the same way): through three weight vectors
  ``w1, w2, w3`` -- here the first snapshot, the last one and the SWA point -- with the
  orthonormal basis that Gram-Schmidt makes of ``w2 - w1`` and ``w3 - w1``, a point ``(x, y)``
  of the plane being ``w1 + x u + y v``. ``method="pca"`` takes instead the plane of the
  snapshots' two largest principal components (the trajectory plots of Li et al. 2018, "Visualizing
  the Loss Landscape of Neural Nets", Sec. 7, which centre at the last point; here at the
  snapshots' mean, which is SWA's point).
* :func:`score_snapshots`: the validation mIoU of every snapshot and of the SWA model.

Only parameters are projected: batch norm's running statistics are not weights that SGD moves
(they are recomputed for the average), and a plane through them would mix two kinds of numbers.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import SegeduError
from ..inference.checkpoints import load
from ..inference.evaluate import evaluate

__all__ = ["METHODS", "Plane", "load_plane", "parameter_names", "score_snapshots", "snapshot_paths", "weight_plane"]

#: how :func:`weight_plane` chooses its plane
METHODS = ("gram-schmidt", "pca")
#: the ends of state-dict keys that are batch norm's buffers, not parameters
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
_STEP = re.compile(r"step(\d+)\.pt")


def snapshot_paths(run_dir: str | Path) -> list[Path]:
    """The run's SWA snapshot files (``snapshots/step{N}.pt``), in the order of their step."""
    folder = Path(run_dir) / "snapshots"
    found = [(int(m.group(1)), p) for p in folder.glob("step*.pt") if (m := _STEP.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def _step_of(path: Path) -> int:
    return int(_STEP.fullmatch(path.name).group(1))


def parameter_names(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """The keys of ``state_dict`` that hold floating-point parameters: batch norm's buffers (and any
    integer tensor) left out."""
    return [k for k, v in state_dict.items()
            if torch.is_floating_point(v) and k.rsplit(".", 1)[-1] not in BN_BUFFERS]


@dataclasses.dataclass(frozen=True)
class Plane:
    """A plane of weight space and the points drawn on it.

    A weight vector ``w`` (the parameters ``names``, flattened in that order) has the coordinates
    ``basis @ (w - origin)``; ``basis`` (2, D) has orthonormal rows. ``snapshots`` (N, 2) and ``swa``
    (2,) are the points' coordinates, ``off_plane`` (N,) each snapshot's distance from the plane (what
    the picture does not show), ``steps`` the snapshots' optimiser steps when known.
    """

    method: str
    origin: torch.Tensor
    basis: torch.Tensor
    snapshots: np.ndarray
    swa: np.ndarray
    off_plane: np.ndarray
    names: tuple[str, ...]
    steps: tuple[int, ...] | None = None

    def project(self, weights: Mapping[str, torch.Tensor] | torch.Tensor) -> np.ndarray:
        """The (x, y) of a state dict (or of a flat vector in ``names``' order) on this plane."""
        w = weights if isinstance(weights, torch.Tensor) else _flatten(weights, self.names, "the weights")
        return (self.basis @ (w.to(torch.float64) - self.origin)).numpy()


def _flatten(state_dict: Mapping[str, torch.Tensor], names: Sequence[str], what: str) -> torch.Tensor:
    missing = [n for n in names if n not in state_dict]
    if missing:
        raise SegeduError(f"{what} has no parameter {missing[0]!r}: every state dict of a plane must be of the "
                          "same model.")
    return torch.cat([state_dict[n].detach().reshape(-1).cpu().to(torch.float64) for n in names])


#: a direction shorter than this fraction of the vector it was made from is rounding noise: the
#: weights are float32 (relative precision 6e-8), so a "direction" of that size would be arbitrary
FLAT = 1e-6


def _unit(vector: torch.Tensor, reference: float, why: str) -> torch.Tensor:
    norm = float(vector.norm())
    if norm <= FLAT * reference:
        raise SegeduError(why)
    return vector / norm


def weight_plane(state_dicts: Sequence[Mapping[str, torch.Tensor]], swa_state_dict: Mapping[str, torch.Tensor],
                 method: str = "gram-schmidt", steps: Sequence[int] | None = None,
                 names: Sequence[str] | None = None) -> Plane:
    """The snapshots ``state_dicts`` (in order) and the SWA weights on one plane: a :class:`Plane`.

    ``method="gram-schmidt"`` (Izmailov et al. 2018, Sec. 3 and Fig. 1; Garipov et al. 2018): the
    origin is the first snapshot ``w1``; with ``w2`` the last snapshot and ``w3`` the SWA weights,
    ``u = (w2 - w1) / |w2 - w1|`` and ``v`` is ``w3 - w1`` less its component along ``u``,
    normalised. The first snapshot is at (0, 0), the last at (|w2 - w1|, 0), the SWA point at
    ``y >= 0``; snapshots in between are projected orthogonally onto the plane.

    ``method="pca"``: the origin is the snapshots' mean and the basis their first two principal
    directions (the right singular vectors of the centred snapshots), each signed so that the last
    snapshot has a coordinate >= 0 on it; with SWA the mean of the snapshots, the SWA point is at (0, 0).

    ``names``: the parameters to use (default: :func:`parameter_names` of the first snapshot, batch
    norm's buffers left out). ``steps``: the snapshots' optimiser steps, kept for the plot.
    """
    if method not in METHODS:
        raise SegeduError(f"unknown plane method {method!r}; choose one of {', '.join(METHODS)}.")
    state_dicts = list(state_dicts)
    fewest = 2 if method == "gram-schmidt" else 3
    if len(state_dicts) < fewest:
        raise SegeduError(f"a {method} plane needs at least {fewest} snapshots, got {len(state_dicts)}.")
    if steps is not None and len(steps) != len(state_dicts):
        raise SegeduError(f"{len(steps)} steps given for {len(state_dicts)} snapshots; give one step per snapshot.")
    names = tuple(parameter_names(state_dicts[0]) if names is None else names)
    if not names:
        raise SegeduError("the snapshots hold no floating-point parameters to project.")
    points = torch.stack([_flatten(s, names, f"snapshot {i}") for i, s in enumerate(state_dicts)])
    swa = _flatten(swa_state_dict, names, "the SWA state dict")
    if method == "gram-schmidt":
        origin = points[0]
        u = _unit(points[-1] - origin, max(float(origin.norm()), float(points[-1].norm())),
                  "the first and last snapshots are the same weights: they span no plane; use method='pca' or "
                  "a longer SWA phase.")
        d = swa - origin
        v = _unit(d - (d @ u) * u, float(d.norm()),
                  "the SWA weights lie on the line through the first and last snapshots, so these three points "
                  "span no plane; use method='pca'.")
        basis = torch.stack([u, v])
    else:
        origin = points.mean(0)
        _, singular, vh = torch.linalg.svd(points - origin, full_matrices=False)
        if singular[1] <= FLAT * singular[0]:
            raise SegeduError("the snapshots lie on one line (a single principal direction): they span no plane.")
        basis = vh[:2].clone()
        # why: a singular vector's sign is arbitrary; fix it so that the path reads the same way every run
        signs = torch.where(basis @ (points[-1] - origin) < 0, -1.0, 1.0).to(basis.dtype)
        basis *= signs[:, None]
    centred = points - origin
    coords = centred @ basis.T
    off = (centred.pow(2).sum(1) - coords.pow(2).sum(1)).clamp_min(0).sqrt()
    return Plane(method=method, origin=origin, basis=basis, snapshots=coords.numpy(),
                 swa=(basis @ (swa - origin)).numpy(), off_plane=off.numpy(), names=names,
                 steps=None if steps is None else tuple(int(s) for s in steps))


def load_plane(run_dir: str | Path, method: str = "gram-schmidt") -> Plane:
    """:func:`weight_plane` of a run directory's snapshots and its ``swa.pt``, with their steps."""
    paths = _require_snapshots(run_dir)
    states = [load(p)["model"] for p in paths]
    return weight_plane(states, load(Path(run_dir) / "swa.pt")["model"], method,
                        steps=[_step_of(p) for p in paths])


def _require_snapshots(run_dir: str | Path) -> list[Path]:
    run_dir = Path(run_dir)
    paths = snapshot_paths(run_dir)
    if not paths:
        raise SegeduError(f"{run_dir / 'snapshots'}: no SWA snapshots; train with swa_start (or swa_start_step) "
                          "and save_snapshots=True (segedu train --save-snapshots).")
    if not (run_dir / "swa.pt").is_file():
        raise SegeduError(f"{run_dir / 'swa.pt'} does not exist: the run has snapshots but no SWA model "
                          "(did it stop before the end?); resume it to finish.")
    return paths


def score_snapshots(run_dir: str | Path, split: str = "val", data_dir: str | None = None, device: str = "auto",
                    batch_size: int = 4) -> list[dict]:
    """The scores of each SWA snapshot of ``run_dir``, in step order, then of its SWA model (last).

    Each row: ``name`` (``step{N}`` or ``swa``), ``step`` (None for SWA), ``swa``, ``path``, ``miou``
    and ``pixel_accuracy``, from :func:`segedu.inference.evaluate.evaluate` on ``split``. A snapshot
    runs with the batch-norm statistics the live model had when it was taken; the SWA model with
    those recomputed for the averaged weights (``swa.pt``, Izmailov et al. 2018, Sec. 3.2).
    """
    paths = _require_snapshots(run_dir)
    rows = []
    for path, is_swa in [(p, False) for p in paths] + [(Path(run_dir) / "swa.pt", True)]:
        scores = evaluate(path, data_dir=data_dir, split=split, device=device, batch_size=batch_size)
        rows.append({"name": "swa" if is_swa else path.stem, "step": None if is_swa else _step_of(path),
                     "swa": is_swa, "path": str(path), "miou": float(scores["miou"]),
                     "pixel_accuracy": float(scores["pixel_accuracy"])})
    return rows
