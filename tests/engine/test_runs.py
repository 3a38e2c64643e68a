"""segedu.engine.runs: run directories read back, config diffs, the runs table, reuse of finished runs."""
import dataclasses
import json
import math
import shutil

import pytest

from segedu import cli, notebook
from segedu.engine import TrainConfig, runs, train
from segedu.experiments import compare
from segedu.errors import SegeduError


@pytest.fixture(scope="module")
def two_runs(tiny_data, tmp_path_factory):
    """A baseline and the same run with one change (the learning rate), 2 optimiser steps each."""
    root = tmp_path_factory.mktemp("runs")
    base = TrainConfig(model="fcn32s", model_options={"width": 0.125}, data_dir=str(tiny_data), profile="smoke",
                       image_size=32, epochs=1, max_steps=2, batch_size=4, num_workers=0, device="cpu",
                       out=str(root / "base"))
    changed = dataclasses.replace(base, lr=3e-3, out=str(root / "lr3e-3"))
    return root, train(base), train(changed)


def test_a_record_reads_back_what_the_trainer_had(two_runs):
    _, trainer, _ = two_runs
    record = runs.load(trainer.run_dir)
    assert record.step == trainer.step == 2
    assert record.best_miou == pytest.approx(trainer.best_miou)
    assert record.history == trainer.history
    assert record.train_seconds == pytest.approx(sum(r["seconds"] for r in trainer.history))
    assert record.config.to_json() == trainer.config.to_json()


def test_config_diff_names_exactly_the_one_change(two_runs):
    _, base, changed = two_runs
    diff = runs.config_diff(changed.config, base.config)
    assert diff == {"lr": (1e-3, 3e-3)}  # `out` differs too, but says where, not what
    options = dataclasses.replace(base.config, model_options={"width": 0.25})
    assert runs.config_diff(options, base.config) == {"model_options.width": (0.125, 0.25)}
    # where a run executed is not a change; its number of loader workers is (each draws its own crops)
    moved = dataclasses.replace(base.config, device="cuda", out="elsewhere", num_workers=2)
    assert runs.config_diff(moved, base.config) == {"num_workers": (0, 2)}


def test_compare_table_rows_and_rendering(two_runs):
    root, base, changed = two_runs
    rows = runs.compare({"base": base.run_dir, "lr": changed.run_dir})
    assert [r["label"] for r in rows] == ["base", "lr"]
    assert rows[0]["changes"] == "(baseline)" and rows[1]["changes"] == "lr 0.001->0.003"
    assert rows[1]["best_miou"] == pytest.approx(changed.best_miou) and rows[1]["step"] == 2
    text = runs.render(rows, seconds=False)
    assert text.splitlines()[2].split()[:3] == ["lr", f"{changed.best_miou:.4f}", "2"]
    assert "train s" not in text and "train s" in runs.render(rows)
    # the baseline can be any run; a missing one is named
    assert runs.compare({"base": base.run_dir, "lr": changed.run_dir}, baseline="lr")[0]["changes"] == "lr 0.003->0.001"
    with pytest.raises(SegeduError, match="baseline 'nope' is not one of the runs: base, lr"):
        runs.compare({"base": base.run_dir, "lr": changed.run_dir}, baseline="nope")


def test_discover_a_folder_of_runs_and_bad_paths(two_runs, tmp_path):
    root, _, _ = two_runs
    assert list(runs.discover([root])) == ["base", "lr3e-3"]
    with pytest.raises(SegeduError, match="no such run directory"):
        runs.discover([tmp_path / "missing"])
    with pytest.raises(SegeduError, match="neither a run directory nor a folder of run directories"):
        runs.discover([tmp_path])
    with pytest.raises(SegeduError, match="not a run directory"):
        runs.load(tmp_path)


def test_broken_metrics_file_is_named(two_runs, tmp_path):
    _, base, _ = two_runs
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((base.run_dir / "config.json").read_text())
    (broken / "metrics.jsonl").write_text('{"epoch": 1}\n{oops\n')
    with pytest.raises(SegeduError, match=r"metrics.jsonl: line 1 is not valid JSON"):
        runs.load(broken)


def test_finished_needs_the_same_config_and_every_epoch(two_runs):
    _, base, _ = two_runs
    config = TrainConfig.load(base.run_dir)
    assert runs.finished(base.run_dir, config) is not None
    assert runs.finished(base.run_dir, dataclasses.replace(config, seed=1)) is None
    assert runs.finished(base.run_dir, dataclasses.replace(config, max_steps=3)) is None  # would train further


def test_finished_since_keeps_only_runs_written_after_it(two_runs, tmp_path):
    _, base, _ = two_runs
    config = TrainConfig.load(base.run_dir)
    written = (base.run_dir / "metrics.jsonl").stat().st_mtime
    assert runs.finished(base.run_dir, config, since=written) is not None
    assert runs.finished(base.run_dir, config, since=written + 1) is None  # an older execution's run
    copy = tmp_path / "no-metrics"
    shutil.copytree(base.run_dir, copy)
    (copy / "metrics.jsonl").unlink()
    assert runs.finished(copy, config, since=written) is None  # no record of its epochs: not finished


def test_train_plan_reuses_a_finished_run_and_retrains_a_changed_one(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGEDU_DATA_ROOT", str(tmp_path / "data"))
    session = notebook.setup(profile="smoke", data_dir=tiny_data, seed=0, device="cpu")
    common = dict(model="fcn32s", image_size=32, epochs=1, max_steps=2, batch_size=4, num_workers=0)
    first = compare.train_plan(session, "craft", [{"label": "a"}], reuse=True, **common)["a"]
    assert not first.reused
    mtime = (first.run_dir / "best.pt").stat().st_mtime_ns
    again = compare.train_plan(session, "craft", [{"label": "a"}], reuse=True, **common)["a"]
    assert again.reused and (again.run_dir / "best.pt").stat().st_mtime_ns == mtime
    assert again.trainer.best_miou == pytest.approx(first.trainer.best_miou)
    assert again.train_seconds == pytest.approx(first.train_seconds)
    assert again.train_images_per_s == pytest.approx(first.train_images_per_s)
    changed = compare.train_plan(session, "craft", [{"label": "a", "lr": 2e-3}], reuse=True, **common)["a"]
    assert not changed.reused and json.loads((changed.run_dir / "config.json").read_text())["lr"] == 2e-3
    without = compare.train_plan(session, "craft", [{"label": "a", "lr": 2e-3}], **common)["a"]
    assert not without.reused  # reuse is opt-in


def test_cli_runs_prints_the_table(two_runs, capsys):
    root, _, changed = two_runs
    assert cli.main(["runs", str(root), "--no-seconds"]) == 0
    out = capsys.readouterr().out
    assert "lr 0.001->0.003" in out and "(baseline)" in out and f"{changed.best_miou:.4f}" in out
    assert cli.main(["runs", str(root), "--baseline", "missing"]) == 2
    assert "baseline 'missing' is not one of the runs" in capsys.readouterr().err
    assert math.isfinite(changed.best_miou)


def test_a_run_in_one_precision_is_never_read_back_as_another(two_runs):
    _, base, _ = two_runs
    config = TrainConfig.load(base.run_dir)
    assert config.amp in ("off", "bf16") and runs.finished(base.run_dir, config) is not None  # recorded, not "auto"
    other = "bf16" if config.amp == "off" else "off"
    assert runs.finished(base.run_dir, dataclasses.replace(config, amp=other)) is None


def test_the_same_training_in_another_folder_is_adopted_not_retrained(tiny_data, tmp_path, monkeypatch):
    """One chapter's run is another's when only the directory differs, or when a split file is a
    byte-for-byte copy of the dataset's (a K-fold fold 0 that repeats the book's split)."""
    monkeypatch.setenv("SEGEDU_DATA_ROOT", str(tmp_path / "data"))
    session = notebook.setup(profile="smoke", data_dir=tiny_data, seed=0, device="cpu")
    common = dict(model="fcn32s", image_size=32, epochs=1, max_steps=2, batch_size=4, num_workers=0)
    first = compare.train_plan(session, "architectures", [{"label": "fcn32s"}], reuse=True, **common)["fcn32s"]
    assert not first.reused
    copy = tmp_path / "splits" / "fold0_train.json"
    copy.parent.mkdir()
    shutil.copyfile(tiny_data / "train.json", copy)
    plan = [{"label": "baseline"}, {"label": "fold0", "train_split": str(copy)}]
    twins = compare.train_plan(session, "craft", plan, reuse=True, **common)
    for label, result in twins.items():
        assert result.reused, label
        assert result.run_dir == session.run_dir("craft", label) and result.run_dir != first.run_dir
        assert result.trainer.history == first.trainer.history
        assert TrainConfig.load(result.run_dir).out == str(result.run_dir)  # its own config, not the twin's
        assert (result.run_dir / "best.pt").read_bytes() == (first.run_dir / "best.pt").read_bytes()
    assert TrainConfig.load(twins["fold0"].run_dir).train_split == str(copy)
    # read back from its own folder next time
    again = compare.train_plan(session, "craft", plan[:1], reuse=True, **common)["baseline"]
    assert again.reused and again.run_dir == twins["baseline"].run_dir
    # a split with other content, or another seed, is a different training: trained
    other = tmp_path / "splits" / "other.json"
    data = json.loads((tiny_data / "train.json").read_text())
    dropped = data["images"].pop()["id"]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != dropped]
    other.write_text(json.dumps(data))
    different = compare.train_plan(session, "craft", [{"label": "other", "train_split": str(other)},
                                                       {"label": "seed1", "seed": 1}], reuse=True, **common)
    assert not any(r.reused for r in different.values())
    # without reuse, or with share=False (a repeat that must train), nothing is adopted
    assert not compare.train_plan(session, "craft", [{"label": "fresh"}], **common)["fresh"].reused
    repeat = compare.train_plan(session, "craft", [{"label": "repeat"}], reuse=True, share=False, **common)["repeat"]
    assert not repeat.reused and repeat.trainer.history[-1]["val_miou"] == first.trainer.history[-1]["val_miou"]
    assert compare.train_plan(session, "craft", [{"label": "repeat"}], reuse=True, share=False,
                              **common)["repeat"].reused  # its own directory is still read back


def test_twins_are_only_runs_of_the_current_execution(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGEDU_DATA_ROOT", str(tmp_path / "data"))
    session = notebook.setup(profile="smoke", data_dir=tiny_data, seed=0, device="cpu")
    common = dict(model="fcn32s", image_size=32, epochs=1, max_steps=2, batch_size=4, num_workers=0)
    first = compare.train_plan(session, "architectures", [{"label": "a"}], reuse=True, **common)["a"]
    written = (first.run_dir / "metrics.jsonl").stat().st_mtime
    config = TrainConfig.load(first.run_dir)
    elsewhere = dataclasses.replace(config, out=str(session.run_dir("craft", "b")))
    root = first.run_dir.parent.parent
    assert runs.find_twin(root, elsewhere, since=written).run_dir == first.run_dir
    assert runs.find_twin(root, elsewhere, since=written + 1) is None
    assert runs.find_twin(root, config) is None  # a run is not its own twin


def test_the_number_of_loader_workers_changes_a_runs_numbers_so_diffs_show_it(two_runs, tmp_path):
    _, base, _ = two_runs
    again = train(dataclasses.replace(base.config, num_workers=2, augment=["flip"], out=str(tmp_path / "w2")))
    once = train(dataclasses.replace(base.config, num_workers=0, augment=["flip"], out=str(tmp_path / "w0")))
    assert again.history[-1]["train_loss"] != once.history[-1]["train_loss"]
    assert "num_workers" not in runs.PLACE_FIELDS
