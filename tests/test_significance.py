"""segedu.significance: the paired t-test against scipy, Holm and the t-interval by hand, the paired
bootstrap against segedu.metrics' mIoU, and the errors."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from segedu import significance
from segedu.errors import SegeduError
from segedu.metrics import scores_from_confusion

T_975_DF2 = 4.302652729749462  # t_{0.975, 2}, the tabulated 4.303


def test_paired_test_matches_scipy_ttest_rel():
    rng = np.random.default_rng(3)
    for n in (2, 3, 5, 10):
        base = rng.normal(0.3, 0.02, n)
        treat = base + rng.normal(0.01, 0.01, n)
        result, reference = significance.paired_test(treat, base), stats.ttest_rel(treat, base)
        assert result.n == n and result.df == n - 1 == reference.df
        assert result.t == pytest.approx(reference.statistic, rel=1e-12)
        assert result.p == pytest.approx(reference.pvalue, rel=1e-12)
        assert result.sd_delta == pytest.approx(np.std(treat - base, ddof=1), rel=1e-12)
        assert result.se == pytest.approx(result.sd_delta / math.sqrt(n), rel=1e-12)


def test_paired_ci95_by_hand():
    # differences 0.05, 0.04, 0.03: mean 0.04, sample sd 0.01, se 0.01 / sqrt(3)
    result = significance.paired_test([0.15, 0.16, 0.14], [0.10, 0.12, 0.11])
    assert result.mean_delta == pytest.approx(0.04) and result.sd_delta == pytest.approx(0.01)
    half = T_975_DF2 * 0.01 / math.sqrt(3)  # 0.02484
    assert result.ci95 == pytest.approx((0.04 - half, 0.04 + half))
    assert result.t == pytest.approx(0.04 / (0.01 / math.sqrt(3)))  # 6.93


def test_fewer_than_two_pairs_and_identical_arms():
    one = significance.paired_test([0.5], [0.4])
    assert one.mean_delta == pytest.approx(0.1) and one.df == 0
    assert all(math.isnan(v) for v in (one.sd_delta, one.t, one.p, *one.ci95))
    same = significance.paired_test([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert (same.mean_delta, same.sd_delta, same.t, same.p, same.ci95) == (0.0, 0.0, 0.0, 1.0, (0.0, 0.0))


def test_paired_aligns_dicts_on_common_seeds():
    a = {2: 0.14, 0: 0.15, 1: 0.16, 7: 0.9}   # seed 7 has no partner, the order differs
    b = {0: 0.10, 1: 0.12, 2: 0.11, 5: 0.0}
    assert significance.paired(a, b) == significance.paired_test([0.15, 0.16, 0.14], [0.10, 0.12, 0.11])
    with pytest.raises(SegeduError, match="share 1"):
        significance.paired({0: 0.1, 1: 0.2}, {1: 0.3, 2: 0.4})


def test_paired_test_errors_name_the_lengths():
    with pytest.raises(SegeduError, match="3 treatment values and 2 baseline values"):
        significance.paired_test([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(SegeduError, match="NaN among its 2 treatment and 2 baseline"):
        significance.paired_test([0.1, float("nan")], [0.1, 0.2])
    with pytest.raises(SegeduError, match="at least one seed"):
        significance.paired_test([], [])


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04 -> monotone 0.03, 0.06, 0.06
    assert significance.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = significance.holm([0.01, float("nan"), 0.04])  # m = 2: nan is not a comparison
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
    assert significance.holm([0.5, 0.6]) == [1.0, 1.0]  # 0.5 * 2 capped at 1
    assert significance.holm([]) == []
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.2, 8)
    adjusted = np.array(significance.holm(p))
    assert (adjusted >= p).all() and (adjusted <= np.minimum(8 * p, 1) + 1e-15).all()  # between raw and Bonferroni
    with pytest.raises(SegeduError, match=r"\[0, 1\]"):
        significance.holm([0.2, 1.5])


def _confusions(n, c, errors, seed):
    """n per-image (c, c) matrices: 100 pixels per present class, ``errors`` of them predicted as
    the next class."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, c, c), dtype=np.int64)
    for i in range(n):
        for k in rng.choice(c, size=2, replace=False):
            wrong = int(rng.integers(errors[0], errors[1] + 1))
            out[i, k, k] += 100 - wrong
            out[i, k, (k + 1) % c] += wrong
    return out


def test_bootstrap_when_a_is_always_better():
    better, worse = _confusions(30, 4, (0, 5), seed=1), _confusions(30, 4, (20, 40), seed=1)
    result = significance.bootstrap_miou_difference(better, worse, n_boot=500, seed=0)
    reference = (scores_from_confusion(torch.from_numpy(better.sum(0)))["miou"]
                 - scores_from_confusion(torch.from_numpy(worse.sum(0)))["miou"])
    assert result.delta == pytest.approx(float(reference), rel=1e-12) and result.delta > 0
    assert result.p < 0.01 and 0 < result.ci95[0] < result.delta < result.ci95[1]
    assert significance.bootstrap_miou_difference(better, worse, n_boot=500, seed=0) == result  # fixed seed
    swapped = significance.bootstrap_miou_difference(worse, better, n_boot=500, seed=0)
    assert swapped.delta == pytest.approx(-result.delta) and swapped.p == result.p


def test_bootstrap_of_identical_predictors_and_absent_classes():
    conf = _confusions(10, 5, (0, 30), seed=2)
    result = significance.bootstrap_miou_difference(conf, conf.copy(), n_boot=200)
    assert result.delta == 0.0 and result.p == 1.0 and result.ci95 == (0.0, 0.0)
    # class 4 never appears in a, so a's mIoU is over the present classes only, as segedu.metrics
    a = conf.copy()
    a[:, 4, :] = 0
    a[:, :, 4] = 0
    b = _confusions(10, 5, (10, 10), seed=3)
    expected = (scores_from_confusion(torch.from_numpy(a.sum(0)))["miou"]
                - scores_from_confusion(torch.from_numpy(b.sum(0)))["miou"])
    assert significance.bootstrap_miou_difference(a, b, n_boot=50).delta == pytest.approx(float(expected), rel=1e-12)


def test_bootstrap_errors():
    conf = np.ones((3, 2, 2))
    with pytest.raises(SegeduError, match=r"\(3, 2, 2\) and \(3, 3, 3\)"):
        significance.bootstrap_miou_difference(conf, np.ones((3, 3, 3)))
    with pytest.raises(SegeduError, match="pixel counts"):
        significance.bootstrap_miou_difference(conf, -conf)
    with pytest.raises(SegeduError, match="n_boot"):
        significance.bootstrap_miou_difference(conf, conf, n_boot=0)


def test_noise_floor_and_verdict():
    assert significance.noise_floor([0.10, 0.12, 0.11]) == pytest.approx(0.02)  # 2 x sample sd 0.01
    assert significance.noise_floor([0.3, 0.5]) == pytest.approx(2 * np.std([0.3, 0.5], ddof=1))
    assert math.isnan(significance.noise_floor([0.4]))
    with pytest.raises(SegeduError, match="NaN"):
        significance.noise_floor([0.1, float("nan")])
    assert significance.verdict(0.01, 0.02) == "helps" and significance.verdict(0.01, -0.02) == "hurts"
    assert significance.verdict(0.05, 0.02) == "no evidence"  # not below alpha
    assert significance.verdict(float("nan"), 0.5) == "no evidence"
    assert significance.verdict(0.04, 0.02, alpha=0.01) == "no evidence"
    models = ("higher", "lower")  # two models compared, not a trick against its baseline
    assert significance.verdict(0.01, -0.02, words=models) == "lower" and significance.verdict(0.01, 0.3, words=models) == "higher"
    assert significance.verdict(0.2, 0.3, words=models) == "no evidence"


def test_the_lowest_layer_imports_only_errors_numpy_and_scipy():
    import ast

    tree = ast.parse(open(significance.__file__).read())
    imported = {("." * node.level) + (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
                for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}
    assert {m for m in imported if m.startswith(".")} == {".errors"}
    assert not {m.split(".")[0] for m in imported} - {"", "__future__", "dataclasses", "math", "warnings",
                                                      "collections", "numpy", "scipy"}


def test_a_tiny_p_value_is_not_printed_as_zero():
    # differences of 0.10, 0.11, 0.12: t(2) = 19.05, p = 0.0027; 1.00, 1.01, 1.02: p = 3e-5
    assert "p = 0.003 over 3 seeds" in significance.describe(significance.paired_test([0.6, 0.61, 0.62], [0.5] * 3))
    tiny = significance.paired_test([1.5, 1.51, 1.52], [0.5] * 3)
    assert tiny.p < 0.001 and "p < 0.001 over 3 seeds: helps" in significance.describe(tiny)
    assert significance.p_text(0.0009999) == "p < 0.001" and significance.p_text(0.001) == "p = 0.001"


def test_describe_one_comparison_by_hand():
    # differences 0.02, 0.03, 0.04: mean 0.03, sd 0.01, se 0.01 / sqrt(3), t = 3 sqrt(3) = 5.196 on 2 df
    test = significance.paired_test([0.52, 0.53, 0.54], [0.50, 0.50, 0.50])
    half = stats.t.ppf(0.975, 2) * 0.01 / math.sqrt(3)
    p = 2 * stats.t.sf(3 * math.sqrt(3), 2)
    assert significance.describe(test) == (f"+0.0300 (95% CI {0.03 - half:+.4f} to {0.03 + half:+.4f}), "
                                           f"t(2) = 5.20, p = {p:.3f} over 3 seeds: helps")
    assert significance.describe(significance.paired_test([0.5], [0.4])) == "+0.1000 over 1 seed: no test possible"
    worse = significance.paired_test([0.49, 0.51, 0.48], [0.50, 0.50, 0.50])
    assert significance.describe(worse).endswith("over 3 seeds: no evidence")
