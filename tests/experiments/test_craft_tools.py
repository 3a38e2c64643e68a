"""The segedu pieces of the competition-craft chapters 13-18: trick families, the rare-class table,
schedules as curves, epoch snapshots, the per-class record, the inference-score cache, the
training-speed probe, and the trick table from runs."""
import dataclasses
import math
import os

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from segedu import models, notebook, profiles
from segedu.engine import TrainConfig, Trainer, checkpoint, runs, schedule
from segedu.experiments import ablation, compare, reuse
from segedu.inference import ensemble
from segedu.models import measure


# ----------------------------------------------------------------------------- families
def test_every_trick_is_in_exactly_one_family_and_profiles_take_their_share():
    members = [t for family in ablation.FAMILIES.values() for t in family]
    assert sorted(members) == sorted(ablation.TRICKS) and len(members) == len(set(members))
    cpu, gpu = profiles.PROFILES["cpu"], profiles.PROFILES["gpu"]
    for family, tricks in ablation.FAMILIES.items():
        assert ablation.tricks_for(gpu, family) == list(tricks)
        assert ablation.tricks_for(cpu, family) == [t for t in tricks if t in ablation.CPU_TRICKS]
    assert ablation.tricks_for(cpu, "averaging") == ["ema", "swa"]
    with pytest.raises(KeyError, match="unknown family"):
        ablation.tricks_for(cpu, "magic")


def test_class_table_by_hand():
    per_class = {"baseline": [[0.5, 0.1, 0.0], [0.7, 0.3, math.nan]],  # NaN: class 2 never seen by seed 1
                 "trick": [[0.6, 0.2, 0.4], [0.6, 0.2, 0.2]]}
    text = ablation.class_table(per_class, ["bg", "paper", "metal"], [1, 2])
    lines = text.splitlines()
    assert lines[0].split() == ["trick", "paper", "metal"]
    assert lines[1].split() == ["baseline", "0.2000", "0.0000"]
    assert lines[2].split() == ["trick", "0.2000", "(+0.0000)", "0.3000", "(+0.3000)"]


# ----------------------------------------------------------------------------- schedules
def test_learning_rates_by_hand():
    rates = schedule.learning_rates(TrainConfig(scheduler="cosine", warmup_steps=5, lr=1e-3), 48)
    assert len(rates) == 48
    assert rates[0] == pytest.approx(1e-5)  # warm-up starts at 1% of the peak
    assert rates[5] == pytest.approx(1e-3)  # and reaches it after the warm-up steps
    assert max(rates[:5]) < 1e-3
    eta_min, t_max = 1e-5, 43
    for t in (10, 30, 47):
        expected = eta_min + (1e-3 - eta_min) * (1 + math.cos(math.pi * (t - 5) / t_max)) / 2
        assert rates[t] == pytest.approx(expected, rel=1e-6)
    poly = schedule.learning_rates(TrainConfig(scheduler="poly", lr=1.0), 10)
    assert poly[4] == pytest.approx((1 - 4 / 10) ** 0.9)
    with pytest.raises(ValueError, match="plateau"):
        schedule.learning_rates(TrainConfig(scheduler="plateau"), 10)


def test_learning_rates_are_the_trainers(config):
    c = dataclasses.replace(config, scheduler="cosine", warmup_steps=2, lr=0.01, epochs=2, val_split=None)
    trainer = Trainer(c)
    seen = []
    for _ in range(trainer.total_steps):
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        trainer._optimiser_step()
    assert seen == pytest.approx(schedule.learning_rates(trainer.config, trainer.total_steps), rel=1e-12)


# ----------------------------------------------------------------------------- epoch snapshots and records
def test_save_epochs_keeps_every_epoch_and_the_record_has_the_best_epochs_iou(config):
    trainer = Trainer(dataclasses.replace(config, save_epochs=True, epochs=2))
    trainer.fit()
    run_dir = trainer.run_dir
    files = sorted((run_dir / "epochs").glob("epoch*.pt"))
    assert [f.name for f in files] == ["epoch1.pt", "epoch2.pt"]
    last = checkpoint.load(run_dir / "last.pt")
    second = checkpoint.load(files[1])
    for key, value in last["model"].items():
        assert torch.equal(value, second["model"][key])  # epoch 2's snapshot = the final weights
    member = ensemble.load_member(files[0], "cpu")  # loadable as an ensemble member
    assert member.num_classes == trainer.num_classes
    record = runs.load(run_dir)
    best = checkpoint.load(run_dir / "best.pt")
    np.testing.assert_allclose(record.best_iou, np.asarray(best["scores"]["iou"], dtype=float), equal_nan=True)
    assert "save_epochs" not in runs.config_diff(record.config, dataclasses.replace(record.config, save_epochs=False))


# ----------------------------------------------------------------------------- the inference-score cache
@pytest.fixture()
def session(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGEDU_DATA_ROOT", str(tmp_path / "data"))
    return notebook.setup(profile="smoke", data_dir=tiny_data, seed=0, device="cpu")


@pytest.fixture()
def two_seeds(session):
    return compare.train_plan(session, "cache", [{"model": "fcn32s", "seed": 0}, {"model": "fcn32s", "seed": 1}],
                              image_size=32, epochs=1, max_steps=2, batch_size=4, num_workers=0)


def test_score_cache_reads_back_and_keys_on_checkpoints_sizes_and_options(two_seeds, tiny_data, tmp_path, monkeypatch):
    dirs = [r.run_dir for r in two_seeds.values()]
    cache = tmp_path / "scores"
    first = compare.score_inference({"a": [dirs[0]]}, tiny_data, cache=cache)
    calls = []
    real = compare._score
    monkeypatch.setattr(compare, "_score", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = compare.score_inference({"a": [dirs[0]]}, tiny_data, cache=cache)
    assert calls == [] and torch.equal(again["a"]["overall"]["confusion"], first["a"]["overall"]["confusion"])
    assert again["a"]["images_per_s"] == first["a"]["images_per_s"]  # the measurement itself, read back
    compare.score_inference({"b": [dirs[1]]}, tiny_data, cache=cache)  # another checkpoint
    assert len(calls) == 1
    member = ensemble.load_member(dirs[0], "cpu")
    compare.score_inference({"c": [dataclasses.replace(member, size=24)]}, tiny_data, cache=cache)  # another size
    assert len(calls) == 2
    from segedu.inference.pipeline import InferenceOptions
    from segedu.inference.tta import TTA

    compare.score_inference({"d": [dirs[0]]}, tiny_data, cache=cache,
                            options=InferenceOptions(tta=TTA(flips=("none", "hflip"))))  # other options
    assert len(calls) == 3
    best = dirs[0] / "best.pt"
    os.utime(best, ns=(best.stat().st_atime_ns, best.stat().st_mtime_ns + 10**9))  # a retrained checkpoint
    compare.score_inference({"a": [dirs[0]]}, tiny_data, cache=cache)
    assert len(calls) == 4
    monkeypatch.setenv(reuse.REUSE_SINCE_ENV, str(10**12))  # a book execution that started later
    compare.score_inference({"b": [dirs[1]]}, tiny_data, cache=cache)
    assert len(calls) == 5


def test_trick_rows_are_the_ablation_table_of_the_runs(two_seeds):
    fake = {"baseline-seed0": two_seeds["fcn32s-seed0"], "baseline-seed1": two_seeds["fcn32s-seed1"],
            "x-seed0": two_seeds["fcn32s-seed1"], "x-seed1": two_seeds["fcn32s-seed0"]}
    rows = compare.trick_rows(fake, ["x"], [0, 1])
    assert [r.trick for r in rows] == ["baseline", "x"]
    values = [two_seeds[k].trainer.best_miou for k in ("fcn32s-seed0", "fcn32s-seed1")]
    assert rows[0].mean == pytest.approx(np.mean(values)) and rows[1].delta == pytest.approx(0.0)


def test_craft_setup_counts_the_steps_the_trainer_takes(session, tiny_data):
    craft = compare.craft_setup(session)
    prof = session.profile
    assert craft["base"] == ablation.baseline(prof) and craft["seeds"] == list(prof.seeds)
    assert craft["train_images"] == len(COCO(str(tiny_data / "train.json")).getImgIds())
    assert craft["scores"] == session.run_dir("craft", "scores")
    # the steps a run of the baseline's epochs and batch really takes (a small model, same loader)
    run = compare.train_plan(session, "steps", [{**craft["base"], "model": "fcn32s", "model_options": {}, "image_size": 32,
                                                 "num_workers": 0, "label": "count"}])["count"]
    assert run.trainer.step == craft["steps"] > 0
    assert f"{craft['train_images']} images = {craft['steps']} optimiser steps of batch {prof.batch_size}" in craft["describe"]
    plan = ablation.plan(prof, ["warmup"], [0], craft["train_images"])
    assert plan[1]["warmup_steps"] == max(1, round(0.1 * craft["steps"]))


def test_train_plan_reads_back_only_the_finished_run_of_the_same_config(two_seeds, session):
    assert [r.reused for r in two_seeds.values()] == [False, False]
    again = compare.train_plan(session, "cache", [{"model": "fcn32s", "seed": 0}, {"model": "fcn32s", "seed": 2}],
                               image_size=32, epochs=1, max_steps=2, batch_size=4, num_workers=0, reuse=True)
    assert [r.reused for r in again.values()] == [True, False]
    assert again["fcn32s-seed0"].trainer.best_miou == two_seeds["fcn32s-seed0"].trainer.best_miou


# ----------------------------------------------------------------------------- training speed
def test_training_speed_trains_the_model_and_reports_cpu_memory_as_unknown():
    torch.manual_seed(0)
    model = models.create("fcn32s", width=0.125)
    before = [p.detach().clone() for p in model.parameters()]
    fp32 = measure.training_speed(model, 2, 32, "cpu", repeats=1, warmup=0)
    assert fp32["images_per_s"] > 0 and fp32["peak_mib"] is None
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    bf16 = measure.training_speed(models.create("fcn32s", width=0.125), 2, 32, "cpu", dtype=torch.bfloat16,
                                  repeats=1, warmup=0)
    assert bf16["images_per_s"] > 0


def test_inference_options_are_the_chapters_inference_tricks():
    from segedu.inference import crf

    options = ablation.inference_options(48, 64)
    assert list(options)[:5] == ["baseline", "flip_tta", "multiscale_tta", "full_resolution", "sliding_window"]
    assert ("densecrf" in options) == crf.is_available()
    assert options["baseline"].plain and not options["flip_tta"].plain
    assert options["multiscale_tta"].tta.scales == (0.75, 1.0, 1.25)
    # the sliding window and its control both see the image at its own resolution (64 px, not 48)
    assert options["full_resolution"].tta.scales == (64 / 48,) and options["full_resolution"].sliding_window is None
    assert options["sliding_window"].sliding_window == 48 and options["sliding_window"].tta is None


def test_full_resolution_is_one_pass_at_the_images_size_and_the_window_covers_it():
    """What the two options compute, on a model that records its input sizes: the control runs the
    64 px image once at 64 px; the sliding window runs 48 px windows over the 64 px image."""
    from segedu.inference import pipeline

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 1)
            self.seen = []

        def forward(self, x):
            self.seen.append(tuple(x.shape[-2:]))
            self.inputs = getattr(self, "inputs", 0) + x.shape[0]  # images or windows run
            return self.conv(x)

    options = ablation.inference_options(48, 64)
    images = torch.rand(1, 3, 64, 64)
    for name, expected in (("baseline", {(48, 48)}), ("full_resolution", {(64, 64)}), ("sliding_window", {(48, 48)})):
        model = Recorder().eval()
        pipeline.member_scores((model, 48), images, options[name])
        assert set(model.seen) == expected, name
    windows = Recorder().eval()
    pipeline.member_scores((windows, 48), images, options["sliding_window"])
    assert windows.inputs >= 4  # 48 px windows, overlap 0.5, over 64 x 64: a 2 x 2 grid at least
