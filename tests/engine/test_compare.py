"""segedu.engine.compare: a plan of runs, their scores, the tables the chapters print."""
import math

import numpy as np
import pytest
import torch

from segedu import notebook
from segedu.data import dataset
from segedu.engine import compare, evaluate


@pytest.fixture()
def session(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGEDU_DATA_ROOT", str(tmp_path / "data"))
    return notebook.setup(profile="smoke", data_dir=tiny_data, seed=0, device="cpu")


@pytest.fixture()
def results(session):
    plan = [{"model": "fcn32s", "seed": 0}, {"model": "fcn32s", "seed": 1}, {"model": "fcn8s", "seed": 0, "label": "eight"}]
    return compare.train_plan(session, "test_chapter", plan, image_size=32, epochs=1, max_steps=2, batch_size=4,
                              num_workers=0)


def test_train_plan_writes_each_run_under_the_chapter(results, session):
    assert list(results) == ["fcn32s-seed0", "fcn32s-seed1", "eight"]
    for label, result in results.items():
        assert result.run_dir == session.run_dir("test_chapter", label)
        assert (result.run_dir / "best.pt").is_file()
    assert results["eight"].model == "fcn8s" and results["fcn32s-seed1"].seed == 1
    assert results["eight"].trainer.config.model_options["width"] == session.profile.width


def test_scores_equal_segedu_evaluate_and_the_band_is_a_subset(results, tiny_data):
    runs = {label: r.run_dir for label, r in results.items()}
    scores = compare.score_runs(runs, tiny_data, "val", "cpu", boundary_px=2)
    for label, run_dir in runs.items():
        reference = evaluate(run_dir, data_dir=str(tiny_data), split="val", device="cpu")
        assert scores[label]["overall"]["miou"] == pytest.approx(reference["miou"], abs=1e-6)
        assert scores[label]["images_per_s"] > 0
        # the band holds fewer labelled pixels than the whole image
        assert 0 < scores[label]["boundary"]["confusion"].sum() < scores[label]["overall"]["confusion"].sum()


def test_per_class_table_and_seed_summary(results, tiny_data):
    runs = {label: r.run_dir for label, r in results.items()}
    scores = compare.score_runs(runs, tiny_data, "val", "cpu")
    table = compare.per_class_table(scores).splitlines()
    assert len(table) == 1 + len(runs) and table[1].startswith("fcn32s-seed0")
    assert f"{scores['eight']['overall']['miou']:.4f}" in table[3]
    summary = compare.seed_summary(scores, {"fcn32s": ["fcn32s-seed0", "fcn32s-seed1"], "fcn8s": ["eight"]})
    values = [scores[k]["overall"]["miou"] for k in ("fcn32s-seed0", "fcn32s-seed1")]
    assert summary["fcn32s"] == pytest.approx((np.mean(values), np.std(values), 2))
    assert summary["fcn8s"][2] == 1 and math.isnan(summary["fcn8s"][1])


def test_predictions_are_class_maps_at_the_image_size(results, tiny_data):
    image, _ = dataset.CocoSegmentation(tiny_data, "val")[0]
    preds = compare.predictions({"eight": results["eight"].run_dir}, image)
    assert preds["eight"].shape == image.shape[1:] and preds["eight"].dtype == torch.int64
    assert 0 <= int(preds["eight"].min()) and int(preds["eight"].max()) < 11
