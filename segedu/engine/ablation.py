"""One change at a time: the competition-craft baseline, the tricks, and the ablation table.

Every trick of the course is a change to one or two :class:`~segedu.engine.config.TrainConfig`
fields of the same baseline run (:data:`TRICKS`), so an ablation is a list of configs that differ
from the baseline in exactly what the trick names (``segedu runs`` shows that diff). Each is
trained with several seeds; :func:`table` sets the mean change in mIoU against the seed-to-seed
noise of the baseline and the extra cost in time, and says in words whether the trick helped.

The baseline is the verdict of the architecture comparison (DeepLab v3+ with a ResNet-50 encoder)
at the profile's comparison budget (:attr:`~segedu.profiles.Profile.compare_image_size`,
:attr:`~segedu.profiles.Profile.compare_epochs`) and its craft width
(:attr:`~segedu.profiles.Profile.craft_width`): small enough that a CPU trains dozens of runs.
"""
from __future__ import annotations

import dataclasses
import math
import statistics

from .. import profiles

BASELINE_MODEL = "deeplabv3plus_resnet50"

#: Each trick: label -> the TrainConfig fields it changes (everything else is the baseline's).
#: Fields depending on the run length (warm-up steps, the SWA start) are filled in by :func:`plan`.
TRICKS: dict[str, dict] = {
    # augmentation (segedu.data.transforms, segedu.data.mixing)
    "cutout": {"augment": ["cutout"]},
    "gridmask": {"augment": ["gridmask"]},
    "elastic": {"augment": ["elastic"]},
    "crop_non_empty": {"crop": "crop_non_empty"},
    "mixup": {"mix": "mixup"},
    "cutmix": {"mix": "cutmix"},
    "snapmix": {"mix": "snapmix"},
    "copypaste": {"mix": "copypaste"},
    # optimisation (segedu.engine.schedule)
    "warmup": {"warmup_steps": "10%"},
    "poly": {"scheduler": "poly"},
    "plateau": {"scheduler": "plateau"},
    "accumulate2": {"accumulate": 2, "batch_size": "half"},
    "label_smoothing": {"label_smoothing": 0.1},
    # imbalance (segedu.losses, segedu.data.sampler)
    "weighted_ce": {"class_weights": "sqrt_inverse"},
    "focal": {"loss": "focal"},
    "dice": {"loss": "dice"},
    "lovasz": {"loss": "lovasz"},
    "ce+dice": {"loss": "ce+dice"},
    "class_aware": {"sampler": "class_aware"},
    # averaging weights (torch.optim.swa_utils)
    "ema": {"ema_decay": 0.99},
    "swa": {"swa_start": "last", "save_epochs": True},  # each epoch's weights kept: the epoch ensemble
    # an image-level class-presence head (segedu.models.class_head), used at inference to drop
    # the classes it judges absent
    "class_head": {"class_head": 0.4, "suppress_threshold": 0.5},
}

#: The chapter of the book that measures each family of tricks (every trick is in exactly one).
FAMILIES: dict[str, tuple[str, ...]] = {
    "augmentation": ("cutout", "gridmask", "elastic", "crop_non_empty", "mixup", "cutmix", "snapmix", "copypaste"),
    "optimisation": ("warmup", "poly", "plateau", "accumulate2", "label_smoothing"),
    "imbalance": ("weighted_ce", "focal", "dice", "lovasz", "ce+dice", "class_aware"),
    "averaging": ("ema", "swa"),
    "inference": ("class_head",),
}

#: The tricks the cpu profile can afford (three seeds each inside the book's hour on 2 cores): one
#: or two per family. smoke and gpu run every trick.
CPU_TRICKS = ("cutmix", "copypaste", "warmup", "label_smoothing", "ce+dice", "class_aware", "ema", "swa",
              "class_head")


def tricks_for(profile: profiles.Profile, family: str | None = None) -> list[str]:
    """The tricks a profile's ablation trains: :data:`CPU_TRICKS` on cpu, all of :data:`TRICKS`
    otherwise; with ``family`` (a key of :data:`FAMILIES`), only that family's."""
    chosen = list(CPU_TRICKS) if profile.name == "cpu" else list(TRICKS)
    if family is None:
        return chosen
    if family not in FAMILIES:
        raise KeyError(f"unknown family {family!r}; the families: {', '.join(FAMILIES)}")
    return [t for t in chosen if t in FAMILIES[family]]


def baseline(profile: profiles.Profile) -> dict:
    """The baseline's TrainConfig fields for ``profile`` (train_plan adds data, device and seed)."""
    return {"model": BASELINE_MODEL, "image_size": profile.compare_image_size, "epochs": profile.compare_epochs,
            "model_options": {"width": profile.craft_width}}


def optimiser_steps(profile: profiles.Profile, train_images: int) -> int:
    """The baseline's optimiser steps on ``train_images`` images: whole batches per epoch (the
    training loader drops a last incomplete batch) times its epochs."""
    return train_images // profile.batch_size * baseline(profile)["epochs"]


def plan(profile: profiles.Profile, tricks, seeds, train_images: int) -> list[dict]:
    """``train_plan`` entries for ``train_images`` training images: the baseline and each named trick,
    once per seed, labelled
    ``<trick>-seed<s>`` (the baseline is ``baseline-seed<s>``). Relative values are made concrete:
    warm-up over 10% of the steps, half the batch size with twice the accumulation, SWA over the
    last epoch (from the run's last epoch when it has several; otherwise the trick needs 2 epochs and
    the run gets one more, which :func:`table` charges as cost)."""
    base = baseline(profile)
    total_steps = optimiser_steps(profile, train_images)
    entries = []
    for trick in ["baseline", *tricks]:
        if trick != "baseline" and trick not in TRICKS:
            raise KeyError(f"unknown trick {trick!r}; the tricks: {', '.join(TRICKS)}")
        change = dict(TRICKS.get(trick, {}))
        if change.get("warmup_steps") == "10%":
            change["warmup_steps"] = max(1, round(0.1 * total_steps))
        if change.get("batch_size") == "half":
            change["batch_size"] = max(1, profile.batch_size // 2)
        if change.get("swa_start") == "last":
            change["swa_start"] = max(base["epochs"] - 1, 1)
            change["epochs"] = max(base["epochs"], 2)
        for s in seeds:
            entries.append({**base, **change, "seed": s, "label": f"{trick}-seed{s}"})
    return entries


@dataclasses.dataclass
class Row:
    """One line of the ablation table."""

    trick: str
    mean: float
    std: float
    n: int
    delta: float          # mean minus the baseline's mean
    noise: float          # the larger of the two seed standard deviations
    seconds: float        # mean training seconds per run
    extra_seconds: float  # mean seconds minus the baseline's

    @property
    def verdict(self) -> str:
        """``helps`` / ``hurts`` when |delta| exceeds twice the noise (the rule of the comparison
        chapter), ``within noise`` otherwise."""
        if self.trick == "baseline":
            return "baseline"
        if math.isnan(self.noise) or abs(self.delta) <= 2 * self.noise:
            return "within noise"
        return "helps" if self.delta > 0 else "hurts"


def summarise(values: list[float]) -> tuple[float, float]:
    """(mean, population std over the seeds; nan for a single value)."""
    return statistics.fmean(values), (statistics.pstdev(values) if len(values) > 1 else float("nan"))


def table(mious: dict[str, list[float]], seconds: dict[str, list[float]], baseline_label: str = "baseline") -> list[Row]:
    """Rows for every trick (label -> its seeds' mIoU and training seconds), baseline first, then by
    decreasing mean change."""
    base_mean, base_std = summarise(mious[baseline_label])
    base_seconds = statistics.fmean(seconds[baseline_label])
    rows = []
    for trick, values in mious.items():
        mean, std = summarise(values)
        known = [v for v in (base_std, std) if not math.isnan(v)]
        noise = max(known) if known else float("nan")  # a one-run row (an ensemble) is held to the baseline's noise
        mean_seconds = statistics.fmean(seconds[trick])
        rows.append(Row(trick, mean, std, len(values), mean - base_mean, noise, mean_seconds,
                        mean_seconds - base_seconds))
    first = [r for r in rows if r.trick == baseline_label]
    return first + sorted((r for r in rows if r.trick != baseline_label), key=lambda r: -r.delta)


def render(rows: list[Row], time_columns: bool = True, cost_label: str = "train s") -> str:
    """The table as text: mean ± std, Δ mIoU, noise floor (2 × std), verdict, and the cost (the
    seconds given to :func:`table`, whatever their unit: ``cost_label`` names it)."""
    width = max(10, *(len(r.trick) for r in rows)) + 2
    head = (f"{'trick':<{width}}{'mIoU (mean ± std)':>20}{'n':>3}{'Δ mIoU':>9}{'2×noise':>9}  {'verdict':<13}"
            + (f"{cost_label:>8}{'Δ':>7}" if time_columns else ""))
    lines = [head]
    for r in rows:
        std = "  -   " if math.isnan(r.std) else f"{r.std:.4f}"
        noise = "-" if math.isnan(r.noise) else f"{2 * r.noise:.4f}"
        delta = "-" if r.trick == "baseline" else f"{r.delta:+.4f}"
        lines.append(f"{r.trick:<{width}}{r.mean:>11.4f} ± {std}{r.n:>3}{delta:>9}{noise:>9}  {r.verdict:<13}"
                     + (f"{r.seconds:>8.1f}{r.extra_seconds:>+7.1f}" if time_columns else ""))
    return "\n".join(lines)


def class_table(per_class: dict[str, list], class_names, classes, baseline_label: str = "baseline") -> str:
    """Mean IoU over seeds of the chosen ``classes`` (indices), one row per trick, with each
    value's change against the baseline's: how a trick moves the classes the mean hides.

    ``per_class`` maps a trick to its seeds' per-class IoU lists (NaN where a class never appeared).
    """
    import numpy as np

    means = {t: np.nanmean(np.array(v, dtype=float), axis=0) if len(v) else None for t, v in per_class.items()}
    base = means[baseline_label]
    width = max(10, *(len(t) for t in per_class)) + 2
    head = f"{'trick':<{width}}" + "".join(f"{class_names[c][:12]:>20}" for c in classes)
    lines = [head]
    for trick, mean in means.items():
        cells = []
        for c in classes:
            delta = "" if trick == baseline_label else f" ({mean[c] - base[c]:+.4f})"
            cells.append(f"{mean[c]:.4f}{delta}".rjust(20))
        lines.append(f"{trick:<{width}}" + "".join(cells))
    return "\n".join(lines)
