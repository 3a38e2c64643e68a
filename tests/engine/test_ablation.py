"""segedu.engine.ablation: the one-change plan and the ablation table's arithmetic (hand-computed)."""
import dataclasses
import math

import pytest

from segedu import profiles
from segedu.engine import TrainConfig, ablation
from segedu.engine.runs import PLACE_FIELDS, config_diff

CPU = profiles.PROFILES["cpu"]


def test_every_trick_is_a_valid_config_that_differs_from_the_baseline_in_its_own_fields(monkeypatch):
    monkeypatch.delenv(profiles.PROFILE_ENV, raising=False)  # the suite forces smoke; this is the cpu plan
    entries = ablation.plan(CPU, list(ablation.TRICKS), seeds=[0], train_images=8 * 48)
    configs = {e["label"].removesuffix("-seed0"): TrainConfig(profile="cpu", **{k: v for k, v in e.items() if k != "label"})
               for e in entries}
    base = configs.pop("baseline").resolved()
    assert base.model == "deeplabv3plus_resnet50" and base.image_size == CPU.compare_image_size
    for trick, config in configs.items():
        changed = set(config_diff(config.resolved(), base)) - {"seed"}
        expected = set(ablation.TRICKS[trick]) - set(PLACE_FIELDS)  # save_epochs: kept files, not a change
        if trick == "swa":
            expected |= {"epochs"} if CPU.compare_epochs < 2 else set()
        assert changed == expected, trick


def test_relative_values_are_made_concrete():
    entries = {e["label"]: e for e in ablation.plan(CPU, ["warmup", "accumulate2", "swa"], seeds=[3], train_images=8 * 48)}
    assert entries["warmup-seed3"]["warmup_steps"] == round(0.1 * 48 * CPU.compare_epochs)
    assert entries["accumulate2-seed3"]["batch_size"] * entries["accumulate2-seed3"]["accumulate"] == CPU.batch_size
    swa = entries["swa-seed3"]
    assert swa["swa_start"] < swa["epochs"] and swa["seed"] == 3
    with pytest.raises(KeyError, match="unknown trick 'nope'"):
        ablation.plan(CPU, ["nope"], seeds=[0], train_images=8)


def test_table_by_hand():
    mious = {"baseline": [0.10, 0.12, 0.11], "good": [0.15, 0.16, 0.14], "same": [0.11, 0.12, 0.10],
             "bad": [0.05, 0.06, 0.04]}
    seconds = {"baseline": [10, 10, 10], "good": [12, 12, 12], "same": [10, 11, 12], "bad": [9, 9, 9]}
    rows = {r.trick: r for r in ablation.table(mious, seconds)}
    std = math.sqrt(2 / 3) * 0.01  # population std of three values 0.01 apart
    assert rows["baseline"].mean == pytest.approx(0.11) and rows["baseline"].std == pytest.approx(std)
    assert rows["good"].delta == pytest.approx(0.04) and rows["good"].noise == pytest.approx(std)
    assert rows["good"].verdict == "helps" and rows["bad"].verdict == "hurts" and rows["same"].verdict == "within noise"
    assert rows["good"].extra_seconds == pytest.approx(2.0) and rows["same"].seconds == pytest.approx(11.0)
    order = [r.trick for r in ablation.table(mious, seconds)]
    assert order == ["baseline", "good", "same", "bad"]
    text = ablation.render(list(rows.values()), time_columns=False)
    assert "+0.0400" in text and "helps" in text and "train s" not in text


def test_a_single_seed_has_no_noise_floor_and_no_verdict():
    rows = ablation.table({"baseline": [0.1], "x": [0.5]}, {"baseline": [1.0], "x": [1.0]})
    assert math.isnan(rows[1].noise) and rows[1].verdict == "within noise"
    assert "  -   " in ablation.render(rows)


def test_a_single_run_row_is_held_to_the_baseline_noise():
    rows = {r.trick: r for r in ablation.table({"baseline": [0.10, 0.12], "ensemble": [0.135], "close": [0.125]},
                                                {"baseline": [1, 1], "ensemble": [2], "close": [2]})}
    assert rows["ensemble"].noise == pytest.approx(0.01) and rows["ensemble"].verdict == "helps"  # 0.025 > 2 * 0.01
    assert rows["close"].verdict == "within noise"


def test_cpu_measures_a_subset_and_the_other_profiles_everything():
    assert set(ablation.tricks_for(CPU)) < set(ablation.TRICKS)
    assert ablation.tricks_for(profiles.PROFILES["smoke"]) == list(ablation.TRICKS) == ablation.tricks_for(profiles.PROFILES["gpu"])


def test_craft_width_is_what_the_baseline_uses():
    for prof in profiles.PROFILES.values():
        assert ablation.baseline(prof)["model_options"] == {"width": prof.craft_width}
        assert dataclasses.asdict(prof)["craft_width"] > 0
