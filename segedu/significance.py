"""Is a difference real? Paired t-tests over seeds, Holm's correction, a paired bootstrap over images.

Paired, not two-sample. Every trick of an ablation runs with the same seeds as its baseline
(:func:`segedu.experiments.ablation.plan`), and a seed fixes the weight initialisation and the order
and augmentation of the training batches. Seed 1 of the baseline and seed 1 of a trick therefore
share everything the seed decides; the per-seed difference ``d_s = trick_s - baseline_s`` removes
that shared part, and what is left varies less than either arm does on its own. The test asks
whether the mean of the ``d_s`` is zero (Student 1908, "The probable error of a mean"): with ``n``
seeds, ``t = mean(d) / (sd(d) / sqrt(n))`` on ``n - 1`` degrees of freedom, as
``scipy.stats.ttest_rel`` computes it.

ddof = 1. Every standard deviation here is the sample one (divided by ``n - 1``): it estimates the
spread of the seed-to-seed distribution, of which our few seeds are a sample, and makes the
variance estimate unbiased; the population formula (divided by ``n``) is smaller by a factor
sqrt(2/3) = 0.82 at three seeds.

Holm. An ablation table tests ``m`` tricks at once; at alpha = 0.05 each, the chance that at least
one of ``m`` useless tricks "helps" or "hurts" grows to about ``m * 0.05``. Holm's step-down
procedure (Holm 1979, "A simple sequentially rejective multiple test procedure", Scand. J.
Statist. 6) keeps that family-wise error at alpha and is uniformly more powerful than Bonferroni:
the i-th smallest of the ``m`` p-values is multiplied by ``m - i + 1``, and the adjusted values are
made monotone. A verdict reads the adjusted p-value.

What three seeds can and cannot detect. With n = 3 the test has df = 2 and t_{0.975, 2} = 4.30
(for a normal it would be 1.96): a mean difference is "significant" only when it exceeds
4.30 / sqrt(3) = 2.5 times the sd of the per-seed differences, and Holm over ``m`` tricks raises
the bar for the best of them (t_{1 - 0.025/9, 2} = 13.4 at m = 9). So three seeds find large,
consistent effects and nothing subtle; "no evidence" is not evidence of no effect, and the sd
itself, estimated from three numbers, is uncertain (its 95% interval runs from 0.52 to 6.3 times
the estimate). More seeds are the only remedy (the t-quantile falls to 2.78 at five seeds and 2.26
at ten).

Seeds against images. A paired bootstrap over validation images (:func:`bootstrap_miou_difference`,
Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 16; for paired system comparisons
Koehn 2004, "Statistical Significance Tests for Machine Translation Evaluation") asks a different
question: given these two trained models, is one better on images like the validation set's? It
says nothing about another seed, which is why the ablation verdicts come from the seed test.

The noise floor (:func:`noise_floor`, twice the sample sd of the baseline's seeds) is the one
descriptive scale the book prints for "how much do seeds move the score"; verdicts do not use it.

This module is the lowest layer: numpy and scipy only (no torch), so anything may import it.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import SegeduError

NAN = float("nan")


@dataclasses.dataclass(frozen=True)
class Paired:
    """A paired t-test of ``treatment - baseline`` over seeds (:func:`paired_test`)."""

    n: int                      # number of pairs
    mean_delta: float           # mean of the per-seed differences
    sd_delta: float             # their sample standard deviation (ddof=1); nan for n < 2
    se: float                   # sd_delta / sqrt(n)
    t: float                    # mean_delta / se; nan for n < 2
    df: int                     # n - 1
    p: float                    # two-sided p-value of scipy.stats.ttest_rel; nan for n < 2
    ci95: tuple[float, float]   # mean_delta ± t_{0.975, df} * se; (nan, nan) for n < 2


@dataclasses.dataclass(frozen=True)
class Bootstrap:
    """A paired bootstrap of the mIoU difference of two predictors (:func:`bootstrap_miou_difference`)."""

    delta: float                # mIoU(a) - mIoU(b) on all the images
    ci95: tuple[float, float]   # 2.5th and 97.5th percentiles of the resampled differences
    p: float                    # two-sided: 2 x the share of resampled differences across 0, at most 1


def _values(values, name: str) -> np.ndarray:
    array = np.asarray(list(values.values()) if isinstance(values, Mapping) else values, dtype=float)
    if array.ndim != 1:
        raise SegeduError(f"{name} must be a flat sequence of numbers (one per seed), got shape {array.shape}.")
    return array


def paired_test(treatment: Sequence[float], baseline: Sequence[float]) -> Paired:
    """Paired t-test of ``treatment`` against ``baseline``, two sequences aligned by seed (element
    ``i`` of both comes from the same seed). See the module docstring for why paired.

    With fewer than 2 pairs the mean difference is still given, the sd, t and p are nan. When every
    difference is exactly 0 the two arms agree on every seed: t = 0 and p = 1 (scipy would give nan,
    0/0). Differences that are all equal but not zero give t = ±inf and p = 0, as in scipy.
    """
    a, b = _values(treatment, "treatment"), _values(baseline, "baseline")
    if a.shape != b.shape:
        raise SegeduError(f"a paired test needs one value per seed in both arms; got {a.size} treatment values "
                          f"and {b.size} baseline values. Pass the same seeds to both (or use paired() with "
                          "{seed: value} dicts).")
    if a.size == 0:
        raise SegeduError("a paired test needs at least one seed; got 0 treatment and 0 baseline values.")
    if np.isnan(a).any() or np.isnan(b).any():
        raise SegeduError(f"a paired test got NaN among its {a.size} treatment and {b.size} baseline values "
                          f"(treatment {a.tolist()}, baseline {b.tolist()}); drop the failed runs' seeds from both.")
    d = a - b
    n, mean = int(d.size), float(d.mean())
    if n < 2:
        return Paired(n, mean, NAN, NAN, NAN, n - 1, NAN, (NAN, NAN))
    from scipy import stats

    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    if not d.any():
        t, p = 0.0, 1.0
    else:
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # equal differences: sd 0, t = ±inf
            result = stats.ttest_rel(a, b)
        t, p = float(result.statistic), float(result.pvalue)
    half = float(stats.t.ppf(0.975, n - 1)) * se
    return Paired(n, mean, sd, se, t, n - 1, p, (mean - half, mean + half))


def paired(by_seed_a: Mapping, by_seed_b: Mapping) -> Paired:
    """:func:`paired_test` of ``a - b`` from two ``{seed: value}`` dicts, on the seeds both have
    (a seed only one arm ran is left out: it has no partner)."""
    common = [seed for seed in by_seed_a if seed in by_seed_b]
    if len(common) < 2:
        raise SegeduError(f"a paired test needs at least 2 seeds run in both arms; the arms share {len(common)} "
                          f"(seeds {list(by_seed_a)} and {list(by_seed_b)}).")
    return paired_test([by_seed_a[s] for s in common], [by_seed_b[s] for s in common])


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (Holm 1979), in the input order: the i-th smallest of the
    ``m`` p-values times ``m - i + 1``, made non-decreasing in that order and capped at 1.
    NaN (no test) stays NaN and does not count in ``m``."""
    p = np.asarray(list(pvalues), dtype=float)
    if p.ndim != 1:
        raise SegeduError(f"holm() takes a flat sequence of p-values, got shape {p.shape}.")
    tested = np.flatnonzero(~np.isnan(p))
    if ((p[tested] < 0) | (p[tested] > 1)).any():
        raise SegeduError(f"p-values must lie in [0, 1]; got {p.tolist()}.")
    m = tested.size
    adjusted = np.full(p.shape, NAN)
    order = tested[np.argsort(p[tested], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted.tolist()


def _miou(confusion: np.ndarray) -> np.ndarray:
    """mIoU of confusion matrices (..., C, C), rows = target: the mean IoU over the classes present
    (union > 0); nan where none is. The definition of :func:`segedu.metrics.scores_from_confusion`,
    in numpy so that this layer needs no torch."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    union = confusion.sum(-1) + confusion.sum(-2) - tp
    present = union > 0
    iou = np.where(present, tp / np.where(present, union, 1), 0.0)
    count = present.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, iou.sum(-1) / count, NAN)


def bootstrap_miou_difference(conf_a, conf_b, n_boot: int = 2000, seed: int = 0) -> Bootstrap:
    """Paired bootstrap over images of mIoU(a) - mIoU(b).

    ``conf_a`` and ``conf_b`` are (N images, C, C) per-image confusion matrices (rows = target) of
    two predictors on the same N images (e.g. :func:`segedu.metrics.confusion_matrix` with
    ``per_image=True``). Each of ``n_boot`` resamples draws N images with replacement, the same
    images for both predictors (that is the pairing), sums their matrices (the dataset-level mIoU,
    as the competition scores) and takes the difference. ``p`` is two-sided: twice the share of
    resampled differences on the other side of 0 from ``delta`` (0 counts as the other side), at
    most 1; it is 1 when ``delta`` is 0, and 0 means below 1 / ``n_boot``. Fixed ``seed``, fixed
    numbers. It measures image sampling only, not seed-to-seed variation (module docstring).
    """
    a, b = np.asarray(conf_a), np.asarray(conf_b)
    if a.ndim != 3 or a.shape[-1] != a.shape[-2] or a.shape != b.shape:
        raise SegeduError(f"the bootstrap needs two stacks of per-image confusion matrices of one shape "
                          f"(N images, C, C); got {a.shape} and {b.shape}.")
    if a.shape[0] < 1:
        raise SegeduError("the bootstrap needs at least one image; got 0 confusion matrices.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()) or (a < 0).any() or (b < 0).any():
        raise SegeduError("confusion matrices must hold finite pixel counts >= 0; got negative, NaN or inf entries.")
    if int(n_boot) != n_boot or n_boot < 1:
        raise SegeduError(f"n_boot must be a whole number of resamples >= 1, got {n_boot}.")
    n, c = a.shape[0], a.shape[-1]
    a, b = a.astype(float).reshape(n, c * c), b.astype(float).reshape(n, c * c)
    delta = float(_miou(a.sum(0).reshape(c, c)) - _miou(b.sum(0).reshape(c, c)))
    # how often each image is drawn in each resample: a resample's summed matrix is weights @ matrices
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=int(n_boot)).astype(float)
    deltas = _miou((weights @ a).reshape(-1, c, c)) - _miou((weights @ b).reshape(-1, c, c))
    low, high = np.percentile(deltas, [2.5, 97.5])
    if delta > 0:
        p = min(1.0, 2 * float(np.mean(deltas <= 0)))
    elif delta < 0:
        p = min(1.0, 2 * float(np.mean(deltas >= 0)))
    else:
        p = 1.0
    return Bootstrap(delta, (float(low), float(high)), p)


def noise_floor(values: Sequence[float]) -> float:
    """The noise floor of a baseline: 2 x the sample sd (ddof=1) of its seeds' scores; nan for fewer
    than 2 seeds. Descriptive only: verdicts come from :func:`paired_test` (module docstring)."""
    v = _values(values, "values")
    if np.isnan(v).any():
        raise SegeduError(f"the noise floor got NaN among its {v.size} seed scores ({v.tolist()}); "
                          "drop the failed runs.")
    return 2 * float(v.std(ddof=1)) if v.size > 1 else NAN


def verdict(p_adjusted: float, mean_delta: float, alpha: float = 0.05,
            words: tuple[str, str] = ("helps", "hurts")) -> str:
    """``words[0]`` or ``words[1]`` (the sign of ``mean_delta``) when ``p_adjusted < alpha``, else
    ``no evidence`` (also for a nan p-value: no test was possible). The default words suit a trick
    against its baseline; ``("higher", "lower")`` suits two models compared."""
    if p_adjusted is None or math.isnan(p_adjusted) or not p_adjusted < alpha:
        return "no evidence"
    if mean_delta > 0:
        return words[0]
    return words[1] if mean_delta < 0 else "no evidence"


def describe(test: Paired, alpha: float = 0.05) -> str:
    """One line for a single paired comparison (no other test in its family, so no Holm step):
    ``+0.0123 (95% CI +0.0040 to +0.0206), t(2) = 6.39, p = 0.024 over 3 seeds: helps``."""
    if test.n < 2:
        return f"{test.mean_delta:+.4f} over {test.n} seed: no test possible"
    low, high = test.ci95
    return (f"{test.mean_delta:+.4f} (95% CI {low:+.4f} to {high:+.4f}), t({test.df}) = {test.t:.2f}, "
            f"{p_text(test.p)} over {test.n} seeds: {verdict(test.p, test.mean_delta, alpha)}")


def p_text(p: float) -> str:
    """``p = 0.024``, or ``p < 0.001`` where three decimals would print a p-value of zero."""
    return f"p = {p:.3f}" if p >= 0.001 else "p < 0.001"
