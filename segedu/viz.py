"""Pictures the chapters share: colour masks, overlays, and legends."""
from __future__ import annotations

import numpy as np

from .data.classes import CLASSES, IGNORE_INDEX, PALETTE
from .errors import SegeduError

#: colour drawn for ignored pixels (white)
IGNORE_COLOUR = np.array((255, 255, 255), dtype=np.uint8)


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def colorize(mask, palette: np.ndarray = PALETTE) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 colours; ignore pixels are white."""
    mask = _to_numpy(mask).astype(np.int64)
    if mask.ndim != 2:
        raise ValueError(f"colorize expects a (H, W) mask, got shape {mask.shape}")
    out = np.zeros((*mask.shape, 3), dtype=np.uint8)
    valid = (mask >= 0) & (mask < len(palette))
    out[valid] = palette[mask[valid]]
    out[mask == IGNORE_INDEX] = IGNORE_COLOUR
    return out


def image_to_uint8(image) -> np.ndarray:
    """A (3, H, W) float tensor in [0, 1] or an (H, W, 3) array -> (H, W, 3) uint8."""
    img = _to_numpy(image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.transpose(img, (1, 2, 0))
    if img.dtype != np.uint8:
        img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return img


def overlay(image, mask, alpha: float = 0.5, palette: np.ndarray = PALETTE) -> np.ndarray:
    """Blend the class colours over the image; background pixels keep the photo."""
    img = image_to_uint8(image).astype(np.float32)
    m = _to_numpy(mask)
    colours = colorize(m, palette).astype(np.float32)
    blend = np.where((m != 0)[..., None], (1 - alpha) * img + alpha * colours, img)
    return blend.round().astype(np.uint8)


def legend_handles(class_ids=None, names=CLASSES, palette: np.ndarray = PALETTE):
    """Matplotlib patches for a legend of the given class ids (all classes by default).

    The ignore index, when listed, gets its own white patch.
    """
    from matplotlib.patches import Patch

    ids = range(len(names)) if class_ids is None else class_ids
    return [
        Patch(facecolor=IGNORE_COLOUR / 255.0, edgecolor="grey", label=f"{i} ignored")
        if i == IGNORE_INDEX
        else Patch(facecolor=palette[i] / 255.0, edgecolor="grey", label=f"{i} {names[i]}")
        for i in ids
    ]


def show_batch(images, masks, names=CLASSES, alpha: float = 0.5, titles=None, title=None):
    """One row per sample: image, colour mask, overlay; returns the figure."""
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(9, 3 * n), squeeze=False)
    present: set[int] = set()
    for i in range(n):
        m = _to_numpy(masks[i])
        present |= {int(c) for c in np.unique(m)}
        panels = (image_to_uint8(images[i]), colorize(m), overlay(images[i], m, alpha))
        for ax, panel, label in zip(axes[i], panels, ("image", "mask", "overlay")):
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(label if titles is None else f"{titles[i]}: {label}", fontsize=10)
    fig.legend(handles=legend_handles(sorted(present), names), loc="lower center",
               ncol=min(4, len(present)), fontsize=9, frameon=False)
    if title:
        fig.suptitle(title)
    legend_rows = -(-len(present) // 4)
    fig.tight_layout(rect=(0, 0.05 * legend_rows / n + 0.02, 1, 1))
    return fig


def show_predictions(image, mask, predictions: dict, names=CLASSES, title=None):
    """One row: the image, its ground truth, then each model's prediction (label -> (H, W) map)."""
    import matplotlib.pyplot as plt

    panels = [(image_to_uint8(image), "image"), (colorize(_to_numpy(mask)), "ground truth")]
    panels += [(colorize(_to_numpy(pred)), label) for label, pred in predictions.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0), squeeze=False)
    for ax, (panel, label) in zip(axes[0], panels):
        ax.imshow(panel, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label, fontsize=9)
    present = sorted({int(c) for c in np.unique(_to_numpy(mask))})
    fig.legend(handles=legend_handles(present, names), loc="lower center", ncol=min(6, len(present)),
               fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def plot_learning_curves(histories: dict, key: str = "val_miou", title: str | None = None,
                         ylabel: str = "validation mIoU", floor: float | None = None, ceiling: float | None = None):
    """One line per run (label -> list of per-epoch records, e.g. ``trainer.history``); returns the figure.

    ``floor`` (the score of predicting Background everywhere on the same split,
    :func:`segedu.inference.evaluate.background_floor`) and ``ceiling`` (e.g. the clean-label score
    of a noisy-label run) are drawn as horizontal lines labelled with their values, so that a curve
    reads as "how far above doing nothing", not as a number on its own."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    for label, records in histories.items():
        values = [record[key] for record in records]
        ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    if floor is not None:
        ax.axhline(float(floor), color="k", linestyle="--", linewidth=1,
                   label=f"all Background (floor) {float(floor):.3f}")
    if ceiling is not None:
        ax.axhline(float(ceiling), color="k", linestyle=":", linewidth=1, label=f"ceiling {float(ceiling):.3f}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the curves, not over them
    fig.tight_layout()
    return fig


#: bar colour of each verdict of :class:`segedu.experiments.ablation.Row`
VERDICT_COLOURS = {"helps": "tab:green", "hurts": "tab:red", "no evidence": "tab:gray"}


def plot_ablation(rows, title: str, xlabel: str = "Δ validation mIoU against the baseline"):
    """Horizontal bars of each trick's mean change (``rows`` from :func:`segedu.experiments.ablation.table`,
    baseline first), coloured by verdict, with each trick's seed std as an error bar and the band of
    the baseline's noise floor (± 2 × its seed sd, :func:`segedu.significance.noise_floor`) shaded;
    returns the figure."""
    import matplotlib.pyplot as plt

    others = rows[1:]
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(others) + 1.4))
    ax.barh(range(len(others)), [r.delta for r in others], color=[VERDICT_COLOURS[r.verdict] for r in others])
    ax.errorbar([r.delta for r in others], range(len(others)),
                xerr=[r.std if np.isfinite(r.std) else 0 for r in others], fmt="none", ecolor="k", capsize=2, lw=0.8)
    if np.isfinite(rows[0].noise):
        band = rows[0].noise
        ax.axvspan(-band, band, color="k", alpha=0.08, label="noise floor: ± 2 × baseline seed sd")
        ax.legend(fontsize=8, loc="lower right")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(others)), [r.trick for r in others], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel + " (bar: mean over seeds, line: ± std)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


#: what :func:`plot_weight_path`'s title says each plane of :func:`segedu.engine.averaging.weight_plane` is
PLANE_TITLES = {"gram-schmidt": "plane of the first and last snapshots and the SWA weights",
                "pca": "plane of the snapshots' two principal directions"}


def plot_weight_path(plane, scores, swa_score: float, ax=None):
    """SWA's snapshots on a plane of weight space (a :class:`segedu.engine.averaging.Plane`), as in
    Izmailov et al. 2018, Fig. 1: the snapshots joined in the order they were taken and coloured
    by optimiser step, the SWA point as a star, each labelled with its mIoU (``scores``: one per
    snapshot; ``swa_score``: the SWA model's). The axes are orthonormal, so they are drawn to the
    same scale: a distance on the picture is a distance between weight vectors. Returns the Axes."""
    import matplotlib.pyplot as plt

    xy = np.asarray(plane.snapshots, dtype=float)
    scores = [float(s) for s in scores]
    if len(scores) != len(xy):
        raise SegeduError(f"plot_weight_path: {len(scores)} scores for {len(xy)} snapshots; "
                          "give one mIoU per snapshot.")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 4.6))
    steps = np.arange(1, len(xy) + 1) if plane.steps is None else np.asarray(plane.steps)
    ax.plot(xy[:, 0], xy[:, 1], "-", color="0.6", lw=1, zorder=1)
    points = ax.scatter(xy[:, 0], xy[:, 1], c=steps, cmap="viridis", s=36, edgecolors="k", linewidths=0.5,
                        zorder=2, label="snapshots")
    ax.scatter([plane.swa[0]], [plane.swa[1]], marker="*", s=220, color="tab:red", edgecolors="k",
               linewidths=0.6, zorder=3, label="SWA (their average)")
    for (x, y), score in zip(xy, scores):
        ax.annotate(f"{score:.3f}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=7)
    ax.annotate(f"SWA {float(swa_score):.3f}", tuple(plane.swa), textcoords="offset points", xytext=(7, -11),
                fontsize=8, color="tab:red")
    ax.figure.colorbar(points, ax=ax, label="optimiser step" if plane.steps is not None else "snapshot")
    ax.set_aspect("equal", adjustable="datalim")  # an orthonormal basis: one unit is one unit both ways
    ax.set_xlabel("direction 1 (weights)")
    ax.set_ylabel("direction 2 (weights)")
    ax.set_title(f"SWA (Izmailov et al. 2018): validation mIoU on the\n{PLANE_TITLES.get(plane.method, plane.method)}",
                 fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return ax
