"""segedu.experiments.compare: a plan of runs, their scores, the tables the chapters print."""
import math

import numpy as np
import pytest
import torch

from segedu import notebook
from segedu.data import dataset
from segedu.engine import evaluate
from segedu.experiments import compare
from segedu.inference import ensemble
from segedu.inference.pipeline import InferenceOptions
from segedu.inference.predictor import Predictor
from segedu.inference.tta import TTA


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
    assert summary["fcn32s"] == pytest.approx((np.mean(values), np.std(values, ddof=1), 2))  # sample std
    assert summary["fcn8s"][2] == 1 and math.isnan(summary["fcn8s"][1])


def test_predictions_are_class_maps_at_the_image_size(results, tiny_data):
    image, _ = dataset.CocoSegmentation(tiny_data, "val")[0]
    preds = compare.predictions({"eight": results["eight"].run_dir}, image)
    assert preds["eight"].shape == image.shape[1:] and preds["eight"].dtype == torch.int64
    assert 0 <= int(preds["eight"].min()) and int(preds["eight"].max()) < 11


def test_score_runs_scores_each_run_under_the_options_given(results, tiny_data, monkeypatch):
    """``options`` reach the Predictor that scores each run, and its scores are what that Predictor
    scores (the tiny model's flip may change no prediction, so the options are checked where they go)."""
    runs = {"eight": results["eight"].run_dir}
    tta = InferenceOptions(tta=TTA())  # the image and its left-right flip
    data = dataset.CocoSegmentation(tiny_data, "val")
    member = ensemble.load_member(results["eight"].run_dir, "cpu")
    given = []

    def spy(member, options=None, **kwargs):
        given.append(options)
        return Predictor(member, options, **kwargs)

    monkeypatch.setattr(compare, "Predictor", spy)
    for options in (None, tta):
        scored = compare.score_runs(runs, tiny_data, "val", "cpu", options=options)["eight"]["overall"]
        expected = Predictor(member, options).score(dataset.make_eval_loader(data, 4))
        assert scored["confusion"].tolist() == expected["confusion"].cpu().tolist()
    assert given == [None, tta]


def test_object_recalls_follow_the_annotations(results, tiny_data):
    """Every visible annotated object of the split gets one row, in the same order for every run; a
    run's recalls equal those of metrics.object_recall on its own predictions."""
    from segedu import metrics
    from segedu.data import masks

    runs = {label: r.run_dir for label, r in results.items()}
    records = compare.object_recalls(runs, tiny_data, "val", "cpu")
    data = dataset.CocoSegmentation(tiny_data, "val")
    visible = sum(len(np.setdiff1d(np.unique(masks.instance_mask(data.coco, im)), [0])) for im in data.coco.images)
    for label, rows in records.items():
        assert rows.shape == (visible, 3)
        assert torch.equal(rows[:, :2], records["eight"][:, :2])
        assert ((rows[:, 2] >= 0) & (rows[:, 2] <= 1)).all()
    # the first image's objects, recomputed by hand from the predicted map
    image = data.coco.images[0]
    instances = torch.from_numpy(masks.instance_mask(data.coco, image)).long()
    classes = masks.instance_classes(data.coco, image)
    pred = compare.predictions({"eight": runs["eight"]}, data[0][0])["eight"]
    expected = metrics.object_recall(pred, instances, classes)
    first = records["eight"][records["eight"][:, 0] == 0]
    assert torch.allclose(first[:, 1:], expected[:, 1:])


def test_recall_by_size_bins():
    records = torch.tensor([[0, 5, 1.0], [0, 15, 0.5], [1, 25, 0.0], [1, 12, 0.25]], dtype=torch.float64)
    rows = compare.recall_by_size(records, [0, 10, 20, 100, 200])
    assert rows[0] == (0.0, 10.0, 1, 1.0)
    assert rows[1] == (10.0, 20.0, 2, 0.375)
    assert rows[2] == (20.0, 100.0, 1, 0.0)
    assert rows[3][2] == 0 and math.isnan(rows[3][3])


def test_train_images_per_s_from_the_history(results):
    run = results["eight"]
    seconds = sum(r["seconds"] for r in run.trainer.history)
    assert run.trainer.step == 2 and run.trainer.config.batch_size == 4
    assert run.train_images_per_s == pytest.approx(2 * 4 / seconds)


def test_score_inference_plain_equals_score_runs_and_a_self_ensemble_equals_the_run(results, tiny_data):
    from segedu.inference.pipeline import InferenceOptions
    from segedu.inference.tta import TTA

    run = results["fcn32s-seed0"].run_dir
    plain = compare.score_runs({"a": run}, tiny_data, "val", "cpu")["a"]
    scored = compare.score_inference({"a": [run], "twice": [run, run]}, tiny_data, "val", None, "cpu")
    for label in ("a", "twice"):
        assert torch.equal(scored[label]["overall"]["confusion"], plain["overall"]["confusion"])
        assert torch.equal(scored[label]["boundary"]["confusion"], plain["boundary"]["confusion"])
    flipped = compare.score_inference({"a": [run]}, tiny_data, "val", InferenceOptions(tta=TTA(flips=("none", "hflip"))), "cpu")
    # by hand: mean of the softmax of the image and of the flipped-back prediction of the flipped image
    from segedu import metrics
    from segedu.inference.predict import predict_logits

    from segedu.engine.evaluate import load_model

    model, config, payload = load_model(run, "cpu")
    expected = metrics.SegMetrics(payload["num_classes"], ignore_index=255)
    for images, targets in torch.utils.data.DataLoader(dataset.CocoSegmentation(tiny_data, "val"), batch_size=4,
                                                       collate_fn=dataset.collate):
        p = predict_logits(model, images, config.image_size).softmax(1)
        q = predict_logits(model, images.flip(-1), config.image_size).softmax(1).flip(-1)
        expected.update(((p + q) / 2).argmax(1), targets)
    assert torch.equal(flipped["a"]["overall"]["confusion"], expected.confusion.cpu())


def test_the_books_architectures_build_with_their_options():
    """Every entry of ARCHITECTURES is a registered model that takes its options (built on the meta
    device: nothing allocated)."""
    import torch

    from segedu import models

    assert set(compare.ARCHITECTURES) <= set(models.available())
    for name, options in compare.ARCHITECTURES.items():
        assert set(options) <= set(models.options_of(name)), name
        with torch.device("meta"):
            models.create(name, width=0.25, **options)


def test_paired_seeds_matches_runs_by_their_seed():
    """The per-seed differences pair seed with seed, whatever the order of the runs."""
    import types

    from segedu import significance

    def run(label, seed):
        return types.SimpleNamespace(label=label, seed=seed)

    scores = {f"{m}-seed{s}": {"overall": {"miou": value}, "boundary": {"miou": value / 2}}
              for m, s, value in [("a", 0, 0.50), ("a", 1, 0.60), ("a", 2, 0.55),
                                  ("b", 0, 0.40), ("b", 1, 0.52), ("b", 2, 0.50)]}
    a = [run("a-seed2", 2), run("a-seed0", 0), run("a-seed1", 1)]
    b = [run("b-seed0", 0), run("b-seed1", 1), run("b-seed2", 2)]
    test = compare.paired_seeds(scores, a, b)
    expected = significance.paired_test([0.50, 0.60, 0.55], [0.40, 0.52, 0.50])
    assert test == expected
    assert compare.paired_seeds(scores, a, b, key="boundary").mean_delta == pytest.approx(expected.mean_delta / 2)


def test_train_architectures_shares_runs_between_chapters(session, monkeypatch):
    """Two chapters asking for the same architecture and seed get one run: the second reads it back."""
    from segedu.experiments import reuse

    monkeypatch.delenv(reuse.REUSE_SINCE_ENV, raising=False)  # outside the book's runner: any finished run
    small = dict(image_size=32, epochs=1, max_steps=2, batch_size=4, num_workers=0)
    first = compare.train_architectures(session, ["fcn32s", "deeplabv1"], seeds=[0, 1], **small)
    assert list(first) == ["fcn32s-seed0", "fcn32s-seed1", "deeplabv1-seed0", "deeplabv1-seed1"]
    assert first["deeplabv1-seed0"].trainer.config.model_options == {"width": session.profile.width,
                                                                     **compare.ARCHITECTURES["deeplabv1"]}
    assert not any(r.reused for r in first.values())
    again = compare.train_architectures(session, ["deeplabv1"], **small)  # the session's seed, 0
    assert list(again) == ["deeplabv1-seed0"] and again["deeplabv1-seed0"].reused
    assert again["deeplabv1-seed0"].run_dir == first["deeplabv1-seed0"].run_dir == session.run_dir(
        compare.ARCHITECTURE_RUNS, "deeplabv1-seed0")
