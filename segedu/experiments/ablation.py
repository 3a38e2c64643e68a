"""One change at a time: the competition-craft baseline, the tricks, and the ablation table.

Every trick of the course is a change to one or two :class:`~segedu.engine.config.TrainConfig`
fields of the same baseline run (:data:`TRICKS`), so an ablation is a list of configs that differ
from the baseline in exactly what the trick names (``segedu runs`` shows that diff). Each is
trained with the baseline's seeds; :func:`table` gives the mean change in mIoU with its 95%
interval, a paired t-test over the shared seeds (Holm-adjusted across the table,
:mod:`segedu.significance`) and the extra cost in time, and says in words whether the trick helped.

The baseline is the verdict of the architecture comparison (DeepLab v2 with a ResNet-50 encoder,
the best of the finalists on the test images) at the book's one budget: the profile's crop size,
epochs and width, from the profile's pretrained encoder.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping

from .. import profiles, significance
from ..errors import SegeduError
from ..inference import crf
from ..inference.pipeline import InferenceOptions
from ..inference.tta import TTA
from .encoders import encoder_weights

BASELINE_MODEL = "deeplabv2"
#: its options: the ResNet-50 of the architecture chapters (the paper's best is ResNet-101, which
#: the course pretrains no encoder for)
BASELINE_OPTIONS = {"depth": 50}

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
    # both at once: the rare classes shown more often and their pixels weighed more (the weights
    # alone did not find a battery, nor the sampler alone: benchmarks/RESULTS.md, "Battery")
    "class_aware+weighted_ce": {"sampler": "class_aware", "class_weights": "sqrt_inverse"},
    # averaging weights (torch.optim.swa_utils)
    # 0.99 with the trainer's decay warm-up (ema_warmup, on by default): the warm-up's cap
    # 1 - 9/(10+t) stays below 0.99 for t < 890 updates, so on these runs of tens to hundreds of
    # steps the average adapts to the run's length by itself -- step s of T weighs about
    # 9 s**8 / T**9: an average centred at 90% of the run, 85% of it on the last fifth -- and no
    # decay has to be derived from the step count (0.99 without the warm-up would keep 62% of a
    # 48-step run's average on its first, untrained weights)
    "ema": {"ema_decay": 0.99},
    # Izmailov et al. 2018: averages over the last ~25% of the baseline's optimiser steps, at least
    # 4 and about 8 snapshots apart (plan() makes "last 25%" concrete), without a longer run
    "swa": {"swa_start_step": "last 25%", "swa_every": "last 25%",
            "save_snapshots": True},  # each averaged snapshot kept: the snapshot ensemble of chapter 16
    # an image-level class-presence head (segedu.models.class_head), used at inference to drop
    # the classes it judges absent
    "class_head": {"class_head": 0.4, "suppress_threshold": 0.5},
}

#: The chapter of the book that measures each family of tricks (every trick is in exactly one).
FAMILIES: dict[str, tuple[str, ...]] = {
    "augmentation": ("cutout", "gridmask", "elastic", "crop_non_empty", "mixup", "cutmix", "snapmix", "copypaste"),
    "optimisation": ("warmup", "poly", "plateau", "accumulate2", "label_smoothing"),
    "imbalance": ("weighted_ce", "focal", "dice", "lovasz", "ce+dice", "class_aware", "class_aware+weighted_ce"),
    "averaging": ("ema", "swa"),
    "inference": ("class_head",),
}

#: The tricks the cpu profile can afford (three seeds each inside the book's hour on 2 cores): one
#: or two per family. smoke and gpu run every trick.
CPU_TRICKS = ("cutmix", "copypaste", "warmup", "label_smoothing", "ce+dice", "class_aware",
              "class_aware+weighted_ce", "ema", "swa", "class_head")


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
    """The baseline's TrainConfig fields for ``profile`` (train_plan adds data, device and seed): the
    book's one budget (the profile's crop size, epochs and width), from the profile's pretrained
    encoder (:func:`segedu.experiments.encoders.encoder_weights`)."""
    return {"model": BASELINE_MODEL, "image_size": profile.image_size, "epochs": profile.epochs,
            "model_options": {"width": profile.width, **BASELINE_OPTIONS,
                              **encoder_weights(BASELINE_MODEL, profile, BASELINE_OPTIONS)}}


def optimiser_steps(profile: profiles.Profile, train_images: int) -> int:
    """The baseline's optimiser steps on ``train_images`` images: whole batches per epoch (the
    training loader drops a last incomplete batch) times its epochs."""
    return train_images // profile.batch_size * baseline(profile)["epochs"]


def plan(profile: profiles.Profile, tricks, seeds, train_images: int) -> list[dict]:
    """``train_plan`` entries for ``train_images`` training images: the baseline and each named trick,
    once per seed, labelled
    ``<trick>-seed<s>`` (the baseline is ``baseline-seed<s>``). Relative values are made concrete:
    warm-up over 10% of the steps, half the batch size with twice the accumulation, SWA over the
    last quarter of the optimiser steps the run takes (the profile's ``max_steps`` cap included):
    ``swa_start_step`` where it begins and ``swa_every`` such that it averages about 8 snapshots
    (at least 4, the trainer's minimum, from the last 4 steps when a quarter is fewer), the last one
    at the run's last step. The SWA run trains exactly as long as the baseline."""
    base = baseline(profile)
    total_steps = optimiser_steps(profile, train_images)
    run_steps = min(total_steps, profile.max_steps) if profile.max_steps else total_steps
    entries = []
    for trick in ["baseline", *tricks]:
        if trick != "baseline" and trick not in TRICKS:
            raise KeyError(f"unknown trick {trick!r}; the tricks: {', '.join(TRICKS)}")
        change = dict(TRICKS.get(trick, {}))
        if change.get("warmup_steps") == "10%":
            change["warmup_steps"] = max(1, round(0.1 * total_steps))
        if change.get("batch_size") == "half":
            change["batch_size"] = max(1, profile.batch_size // 2)
        if change.get("swa_start_step") == "last 25%":
            phase = max(4, round(run_steps / 4))  # the trainer refuses fewer than 4 snapshots
            every = max(1, phase // 8)
            change["swa_every"] = every
            change["swa_start_step"] = max(0, run_steps - phase // every * every)
        for s in seeds:
            entries.append({**base, **change, "seed": s, "label": f"{trick}-seed{s}"})
    return entries


@dataclasses.dataclass
class Row:
    """One line of the ablation table (:func:`table`)."""

    trick: str
    mean: float
    std: float            # sample std over the row's seeds (ddof=1); nan for one run
    n: int                # the row's runs
    delta: float          # paired mean change against the baseline (without a test: mean minus its mean)
    noise: float          # the baseline's noise floor, significance.noise_floor: 2 × its sample std (descriptive)
    seconds: float        # mean training seconds per run
    extra_seconds: float  # mean seconds minus the baseline's
    p: float = math.nan                                  # paired t-test against the baseline; nan: no test
    p_holm: float = math.nan                             # p, Holm-adjusted over the table's tested rows
    ci95: tuple[float, float] = (math.nan, math.nan)     # 95% t-interval of the paired mean change
    pairs: int = 0                                       # seeds paired with the baseline's (0: not paired)
    is_baseline: bool = False

    @property
    def verdict(self) -> str:
        """``helps`` / ``hurts`` when the Holm-adjusted paired p-value is below 0.05, ``no evidence``
        otherwise or without a test (:func:`segedu.significance.verdict`); ``baseline`` for the baseline."""
        if self.is_baseline or self.trick == "baseline":
            return "baseline"
        return significance.verdict(self.p_holm, self.delta)


def summarise(values) -> tuple[float, float]:
    """(mean, sample std (ddof=1) over the seeds; nan for a single value) of a list or of a
    ``{seed: value}`` dict's values."""
    values = list(values.values()) if isinstance(values, Mapping) else list(values)
    unknown = len(values) < 2 or any(math.isnan(v) for v in values)  # statistics.stdev fails on NaN
    return statistics.fmean(values), (float("nan") if unknown else statistics.stdev(values))


def _pairs(values, base) -> tuple[list[float], list[float]]:
    """The (trick, baseline) values of the seeds both have: ``{seed: value}`` dicts pair on their
    common seeds; two lists pair position by position (seed order) only when they have the same
    length (a shorter list, e.g. an ensemble's one value, says nothing about which seeds it used);
    a list and a dict do not pair."""
    if isinstance(values, Mapping) and isinstance(base, Mapping):
        common = [s for s in values if s in base]
        return [values[s] for s in common], [base[s] for s in common]
    if not isinstance(values, Mapping) and not isinstance(base, Mapping) and len(values) == len(base):
        return list(values), list(base)
    return [], []


def table(mious: dict, seconds: dict, baseline_label: str = "baseline") -> list[Row]:
    """Rows for every trick (label -> its seeds' mIoU and training seconds, each a list in seed order
    or a ``{seed: value}`` dict), baseline first, then by decreasing mean change.

    A trick with at least 2 seeds paired with the baseline's (see :func:`_pairs`) gets a paired
    t-test (:func:`segedu.significance.paired_test`); Holm's correction runs over the table's tested
    rows (m = their number), and the verdict reads the adjusted p-value. A row without a test (one
    run, as an ensemble) has the change of its mean and "no evidence".
    """
    base = mious[baseline_label]
    base_mean, _ = summarise(base)
    floor = significance.noise_floor(list(base.values()) if isinstance(base, Mapping) else base)
    base_seconds, _ = summarise(seconds[baseline_label])
    rows = []
    for trick, values in mious.items():
        mean, std = summarise(values)
        mean_seconds, _ = summarise(seconds[trick])
        row = Row(trick, mean, std, len(values), mean - base_mean, floor, mean_seconds, mean_seconds - base_seconds,
                  is_baseline=trick == baseline_label)
        treated, control = _pairs(values, base)
        if not row.is_baseline and len(treated) >= 2:
            try:
                test = significance.paired_test(treated, control)
            except SegeduError as error:
                raise SegeduError(f"ablation row {trick!r}: {error}") from None
            row.delta, row.p, row.ci95, row.pairs = test.mean_delta, test.p, test.ci95, test.n
        rows.append(row)
    others = [r for r in rows if not r.is_baseline]
    for row, adjusted in zip(others, significance.holm([r.p for r in others])):
        row.p_holm = adjusted
    first = [r for r in rows if r.is_baseline]
    return first + sorted(others, key=lambda r: -r.delta)


def _p_text(p: float) -> str:
    return "-" if math.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def render(rows: list[Row], time_columns: bool = True, cost_label: str = "train s", floor: float | None = None) -> str:
    """The table as text: mIoU mean ± sd, n, Δ mIoU, its 95% CI, the Holm-adjusted p-value, the
    verdict and the cost (the seconds given to :func:`table`, whatever their unit: ``cost_label``
    names it), then a line with the number of comparisons and the baseline's noise floor, and
    ``floor`` (the mIoU of predicting Background everywhere on the same images) when given."""
    width = max(10, *(len(r.trick) for r in rows)) + 2
    head = (f"{'trick':<{width}}{'mIoU (mean ± sd)':>20}{'n':>3}{'Δ mIoU':>9}{'95% CI of Δ':>20}{'p (Holm)':>9}"
            f"  {'verdict':<17}" + (f"{cost_label:>8}{'Δ':>7}" if time_columns else ""))
    lines = [head]
    for r in rows:
        base_row = r.is_baseline or r.trick == "baseline"
        std = "  -   " if math.isnan(r.std) else f"{r.std:.4f}"
        delta = "-" if base_row else f"{r.delta:+.4f}"
        ci = "-" if math.isnan(r.ci95[0]) else f"[{r.ci95[0]:+.4f}, {r.ci95[1]:+.4f}]"
        verdict = r.verdict
        if not base_row and math.isnan(r.p_holm):
            verdict = f"n = {r.n}: no test" if r.n < 2 else "unpaired: no test"
        lines.append(f"{r.trick:<{width}}{r.mean:>11.4f} ± {std}{r.n:>3}{delta:>9}{ci:>20}{_p_text(r.p_holm):>9}"
                     f"  {verdict:<17}" + (f"{r.seconds:>8.1f}{r.extra_seconds:>+7.1f}" if time_columns else ""))
    tested = sum(not math.isnan(r.p_holm) for r in rows)
    noise = next((r.noise for r in rows if r.is_baseline or r.trick == "baseline"), rows[0].noise)
    noise_text = "-" if math.isnan(noise) else f"{noise:.4f}"
    lines.append(f"m = {tested} comparison{'' if tested == 1 else 's'}, Holm-adjusted; "
                 f"noise floor (2 × baseline sd) = {noise_text}")
    if floor is not None:
        lines.append(f"floor: Background everywhere scores mIoU {float(floor):.4f} on the same images")
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


def inference_options(train_size: int, image_size: int) -> dict[str, InferenceOptions]:
    """The inference tricks the competition-craft chapters measure, by name, for a model trained on
    ``train_size`` x ``train_size`` crops and images whose short side is ``image_size``:

    * ``baseline``: the plain prediction, the whole image resized to the training size;
    * ``flip_tta``: the image and its mirror;
    * ``multiscale_tta``: both flips at 0.75, 1 and 1.25 times the training size;
    * ``full_resolution``: one pass over the whole image at its own resolution (TTA scale
      ``image_size / train_size``), the control of the sliding window: the same resolution, no
      windows;
    * ``sliding_window``: crop-sized windows (overlap 0.5, Gaussian weights) over the image at its
      own resolution;
    * ``densecrf``: only where pydensecrf2 is installed (:func:`segedu.inference.crf.is_available`).

    So full_resolution - baseline measures what the resolution buys, and sliding_window -
    full_resolution what the windows buy at that resolution."""
    options = {
        "baseline": InferenceOptions(),
        "flip_tta": InferenceOptions(tta=TTA(flips=("none", "hflip"))),
        "multiscale_tta": InferenceOptions(tta=TTA(flips=("none", "hflip"), scales=(0.75, 1.0, 1.25))),
        "full_resolution": InferenceOptions(tta=TTA(flips=("none",), scales=(image_size / train_size,))),
        "sliding_window": InferenceOptions(sliding_window=train_size, overlap=0.5),
    }
    if crf.is_available():
        options["densecrf"] = InferenceOptions(crf=True)
    return options
