"""segedu.experiments.ablation: the one-change plan and the ablation table's arithmetic (hand-computed)."""
import math

import pytest
from scipy import stats

from segedu import profiles
from segedu.errors import SegeduError
from segedu.engine import TrainConfig
from segedu.experiments import ablation
from segedu.engine.runs import PLACE_FIELDS, config_diff

CPU = profiles.PROFILES["cpu"]


def test_every_trick_is_a_valid_config_that_differs_from_the_baseline_in_its_own_fields(monkeypatch):
    monkeypatch.delenv(profiles.PROFILE_ENV, raising=False)  # the suite forces smoke; this is the cpu plan
    entries = ablation.plan(CPU, list(ablation.TRICKS), seeds=[0], train_images=8 * 48)
    configs = {e["label"].removesuffix("-seed0"): TrainConfig(profile="cpu", **{k: v for k, v in e.items() if k != "label"})
               for e in entries}
    base = configs.pop("baseline").resolved()
    # chapter 11's finalist, DeepLab v2, on the ResNet-50 the course pretrains
    assert base.model == "deeplabv2" and base.image_size == CPU.image_size
    assert base.model_options["depth"] == 50 and base.model_options["pretrained_backbone"] == "course"
    for trick, config in configs.items():
        changed = set(config_diff(config.resolved(), base)) - {"seed"}
        expected = set(ablation.TRICKS[trick]) - set(PLACE_FIELDS)  # save_epochs: kept files, not a change
        assert changed == expected, trick


def test_relative_values_are_made_concrete():
    entries = {e["label"]: e for e in ablation.plan(CPU, ["warmup", "accumulate2", "swa"], seeds=[3], train_images=8 * 48)}
    assert CPU.epochs == 5 and entries["warmup-seed3"]["warmup_steps"] == 24  # 10% of 5 epochs of 48 steps
    assert entries["accumulate2-seed3"]["batch_size"] * entries["accumulate2-seed3"]["accumulate"] == CPU.batch_size
    swa = entries["swa-seed3"]  # 240 steps: a quarter is 60 = 8 * 7 + 4, so 8 snapshots 7 apart, no extra epoch
    assert (swa["swa_start_step"], swa["swa_every"], swa["epochs"], swa["seed"]) == (184, 7, CPU.epochs, 3)
    with pytest.raises(KeyError, match="unknown trick 'nope'"):
        ablation.plan(CPU, ["nope"], seeds=[0], train_images=8)


@pytest.mark.parametrize("profile, train_images, start, every", [
    ("cpu", 8 * 48, 184, 7),     # 5 epochs of 48 = 240 steps: a quarter is 60 = 8 * 7 + 4, so 8 snapshots from 184
    ("cpu", 8 * 12, 45, 1),      # 5 epochs of 12 = 60 steps: a quarter is 15, fewer than 16, so every step
    ("gpu", 16 * 62, 376, 15),   # 8 epochs of 62 = 496 steps: a quarter is 124 = 8 * 15 + 4, so 8 snapshots from 376
    ("smoke", 40, 0, 1),         # 10 steps capped at the profile's max_steps=4: 4 snapshots, the minimum
])
def test_swa_averages_the_last_quarter_of_the_steps(profile, train_images, start, every):
    prof = profiles.PROFILES[profile]
    swa = ablation.plan(prof, ["swa"], seeds=[0], train_images=train_images)[-1]
    steps = min(ablation.optimiser_steps(prof, train_images), prof.max_steps or 10**9)
    assert (swa["swa_start_step"], swa["swa_every"]) == (start, every)
    assert swa["epochs"] == ablation.baseline(prof)["epochs"]  # not one epoch longer
    assert (steps - start) % every == 0 and (steps - start) // every >= 4  # the last snapshot is the last step


def test_table_by_hand():
    mious = {"baseline": [0.10, 0.12, 0.11], "good": [0.15, 0.16, 0.14], "same": [0.11, 0.12, 0.10],
             "bad": [0.05, 0.06, 0.04]}
    seconds = {"baseline": [10, 10, 10], "good": [12, 12, 12], "same": [10, 11, 12], "bad": [9, 9, 9]}
    rows = {r.trick: r for r in ablation.table(mious, seconds)}
    # sample std (ddof=1) of three values 0.01 apart is 0.01; the noise floor is twice it
    assert rows["baseline"].mean == pytest.approx(0.11) and rows["baseline"].std == pytest.approx(0.01)
    assert rows["good"].delta == pytest.approx(0.04) and rows["good"].noise == pytest.approx(0.02)
    # per-seed differences: good 0.05, 0.04, 0.03 (t = 6.93); bad -0.05, -0.06, -0.07; same 0.01, 0, -0.01
    p = {t: stats.ttest_rel(mious[t], mious["baseline"]).pvalue for t in ("good", "same", "bad")}
    assert rows["good"].p == pytest.approx(p["good"]) and rows["same"].p == pytest.approx(1.0)
    # Holm over m = 3: bad 3 x 0.0091 = 0.027, good max(0.027, 2 x 0.0202) = 0.040, same 1
    assert rows["bad"].p_holm == pytest.approx(3 * p["bad"]) and rows["good"].p_holm == pytest.approx(2 * p["good"])
    assert rows["same"].p_holm == pytest.approx(1.0) and math.isnan(rows["baseline"].p_holm)
    half = 4.302652729749462 * 0.01 / math.sqrt(3)  # t_{0.975,2} x se
    assert rows["good"].ci95 == pytest.approx((0.04 - half, 0.04 + half))
    assert rows["good"].verdict == "helps" and rows["bad"].verdict == "hurts" and rows["same"].verdict == "no evidence"
    assert rows["baseline"].verdict == "baseline"
    assert rows["good"].extra_seconds == pytest.approx(2.0) and rows["same"].seconds == pytest.approx(11.0)
    order = [r.trick for r in ablation.table(mious, seconds)]
    assert order == ["baseline", "good", "same", "bad"]
    text = ablation.render(list(rows.values()), time_columns=False)
    assert "+0.0400" in text and "helps" in text and "train s" not in text
    assert f"[{0.04 - half:+.4f}, {0.04 + half:+.4f}]" in text and f"{2 * p['good']:.3f}" in text
    assert text.splitlines()[-1] == "m = 3 comparisons, Holm-adjusted; noise floor (2 × baseline sd) = 0.0200"


def test_holm_can_take_back_a_raw_p_below_005():
    # each trick alone: differences 0.05, 0.04, 0.025, p = 0.034; two of them: Holm gives 2 x 0.034
    base = [0.10, 0.12, 0.11]
    a, b = [0.15, 0.16, 0.135], [0.15, 0.16, 0.135]
    p = stats.ttest_rel(a, base).pvalue
    assert 0.025 < p < 0.05
    rows = ablation.table({"baseline": base, "a": a, "b": b}, {"baseline": [1] * 3, "a": [1] * 3, "b": [1] * 3})
    assert [r.p_holm for r in rows[1:]] == pytest.approx([2 * p, 2 * p])
    assert [r.verdict for r in rows[1:]] == ["no evidence", "no evidence"]
    alone = ablation.table({"baseline": base, "a": a}, {"baseline": [1] * 3, "a": [1] * 3})
    assert alone[1].verdict == "helps"


def test_dicts_pair_on_their_common_seeds():
    base = {0: 0.10, 1: 0.12, 2: 0.11}
    trick = {2: 0.14, 1: 0.16, 0: 0.15, 3: 0.99}  # seed 3 has no baseline run: left out of the test
    seconds = {"baseline": {0: 1, 1: 1, 2: 1}, "t": {0: 2, 1: 2, 2: 2, 3: 2}}
    rows = ablation.table({"baseline": base, "t": trick}, seconds)
    reference = stats.ttest_rel([0.15, 0.16, 0.14], [0.10, 0.12, 0.11])
    assert rows[1].pairs == 3 and rows[1].n == 4 and rows[1].p == pytest.approx(reference.pvalue)
    assert rows[1].delta == pytest.approx(0.04)  # the paired mean change, not the means' difference
    assert rows[1].mean == pytest.approx((0.14 + 0.16 + 0.15 + 0.99) / 4)
    assert rows[1].extra_seconds == pytest.approx(1.0)


def test_a_single_seed_has_no_noise_floor_and_no_test():
    rows = ablation.table({"baseline": [0.1], "x": [0.5]}, {"baseline": [1.0], "x": [1.0]})
    assert math.isnan(rows[1].noise) and math.isnan(rows[1].p) and rows[1].verdict == "no evidence"
    text = ablation.render(rows)
    assert "  -   " in text and "n = 1: no test" in text
    assert text.splitlines()[-1] == "m = 0 comparisons, Holm-adjusted; noise floor (2 × baseline sd) = -"


def test_a_single_run_row_gets_no_test_and_an_unequal_list_is_not_paired():
    rows = {r.trick: r for r in ablation.table({"baseline": [0.10, 0.12], "ensemble": [0.135], "two": [0.2, 0.3, 0.4]},
                                                {"baseline": [1, 1], "ensemble": [2], "two": [2, 2, 2]})}
    assert rows["ensemble"].noise == pytest.approx(2 * math.sqrt(2) * 0.01)  # baseline: 2 x sample sd
    assert rows["ensemble"].delta == pytest.approx(0.025) and rows["ensemble"].verdict == "no evidence"
    assert rows["two"].pairs == 0 and math.isnan(rows["two"].p_holm)  # 3 values against 2: which seeds?
    lines = {line.split()[0]: line for line in ablation.render(list(rows.values())).splitlines()}
    assert "n = 1: no test" in lines["ensemble"] and "unpaired: no test" in lines["two"]
    assert lines["ensemble"].split()[6:8] == ["-", "-"]  # CI and p (Holm) after mean ± sd, n, Δ


def test_another_baseline_label_is_the_baseline_row():
    rows = ablation.table({"single": [0.10, 0.12, 0.11], "ens": [0.15, 0.16, 0.14]},
                          {"single": [1, 1, 1], "ens": [3, 3, 3]}, baseline_label="single")
    assert [r.verdict for r in rows] == ["baseline", "helps"]  # m = 1: the raw p 0.020
    assert ablation.render(rows).splitlines()[1].split()[5] == "-"  # no Δ for the baseline


def test_nan_in_a_row_is_named():
    with pytest.raises(SegeduError, match="ablation row 'x'.*NaN"):
        ablation.table({"baseline": [0.1, 0.2], "x": [0.1, float("nan")]}, {"baseline": [1, 1], "x": [1, 1]})


def test_cpu_measures_a_subset_and_the_other_profiles_everything():
    assert set(ablation.tricks_for(CPU)) < set(ablation.TRICKS)
    assert ablation.tricks_for(profiles.PROFILES["smoke"]) == list(ablation.TRICKS) == ablation.tricks_for(profiles.PROFILES["gpu"])


def test_the_baseline_is_the_books_one_budget_from_the_profiles_encoder():
    for prof in profiles.PROFILES.values():
        base = ablation.baseline(prof)
        assert (base["image_size"], base["epochs"], base["model_options"]["width"]) == (prof.image_size, prof.epochs,
                                                                                        prof.width)
    weights = {name: ablation.baseline(prof)["model_options"].get("pretrained_backbone")
               for name, prof in profiles.PROFILES.items()}
    assert weights == {"smoke": None, "cpu": "course", "gpu": "imagenet"}


def test_render_states_the_floor_when_given():
    rows = ablation.table({"baseline": [0.40, 0.42, 0.41], "trick": [0.45, 0.46, 0.44]}, {"baseline": [1, 1, 1],
                                                                                        "trick": [1, 1, 1]})
    text = ablation.render(rows, floor=0.0606)
    assert text.splitlines()[-1] == "floor: Background everywhere scores mIoU 0.0606 on the same images"
    assert "floor:" not in ablation.render(rows)
