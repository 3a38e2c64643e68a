"""benchmarks/gpu_book_check.py projects a capped book execution to its full time: checked on a
fake execution (a timestamped runner log, run directories with hand-set file times, a run log)
whose projection is worked out by hand below. The book itself is never executed here."""
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_book_check.py"
spec = importlib.util.spec_from_file_location("gpu_book_check", SCRIPT)
check = sys.modules.setdefault("gpu_book_check", importlib.util.module_from_spec(spec))  # dataclasses look it up
spec.loader.exec_module(check)

OOM_LINE = ("segedu: error: 13_augmentation.py: code cell 4 ('trained = compare.train_tricks(session, tricks)') "
            "failed with OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")


def _run(root: Path, name: str, config: dict, started: float, seconds: float | None = None, ended=None, step=10):
    """A run directory as the trainer leaves it: config.json and env.json when it starts, one
    metrics record when its (only) epoch ends; without ``seconds``, a run that never finished one."""
    run = root / "runs" / "gpu" / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config))
    (run / "env.json").write_text("{}")
    os.utime(run / "config.json", (started, started))
    if seconds is not None:
        (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "step": step, "seconds": seconds}) + "\n")
        os.utime(run / "metrics.jsonl", (ended, ended))


@pytest.fixture()
def book(tmp_path):
    """Chapter 06 trains two runs in its own folder, chapter 13 two in the shared craft folder, all
    capped at 10 steps; the execution started at t=1000, 06 ended at 1100 and 13 at 1250."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.json").write_text(json.dumps({"images": [{"id": i} for i in range(1280)]}))
    (data / "half.json").write_text(json.dumps({"images": [{"id": i} for i in range(640)]}))
    base = {"profile": "gpu", "data_dir": str(data), "train_split": "train", "epochs": 20, "batch_size": 16,
            "accumulate": 1, "max_steps": 10, "debug": False}

    def make(seed1_seconds=3.0, seed1_end=1034.0):
        _run(tmp_path, "06_fcn/fcn8s-seed0", base, 1010.0, 2.0, 1014.0)
        _run(tmp_path, "06_fcn/fcn8s-seed1", base, 1030.0, seed1_seconds, seed1_end)
        _run(tmp_path, "06_fcn/older", base, 900.0, 50.0, 990.0)  # an earlier execution's: left out
        _run(tmp_path, "craft/baseline-seed0", {**base, "epochs": 4, "accumulate": 2,
                                                "train_split": str(data / "half.json")}, 1120.0, 1.0, 1123.0)
        _run(tmp_path, "craft/debug", {**base, "debug": True, "epochs": 1, "batch_size": 4, "max_steps": 2},
             1130.0, 0.4, 1131.0, step=2)
        (tmp_path / "run_log.json").write_text(json.dumps(
            {"profiles": {"gpu": {"notebooks": {"06_fcn": 98.0, "13_augmentation": 148.0}}}}))
        return tmp_path
    return make


def _log(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _args(root: Path, log: Path, *chapters: str, status: int = 0) -> list[str]:
    return ["--log", str(log), "--runs", str(root / "runs"), "--run-log", str(root / "run_log.json"),
            "--profile", "gpu", "--cap", "10", "--status", str(status), *chapters]


FINISHED = ("1000.0 segedu book: profile gpu, device cuda, 2 chapter(s)",
            "1100.0   06_fcn                                      95.0 s",
            "1250.0   13_augmentation                            140.0 s",
            "1251.0 segedu book: done in 235.0 s; times in book/run_log.md")


def test_the_projection_by_hand(book, tmp_path, capsys):
    root = book()
    log = check.read_log(_log(tmp_path / "book.log", *FINISHED))
    memory = [(1050.0, 30000.0, 81559.0), (1150.0, 52000.0, 81559.0), (1300.0, 70000.0, 81559.0)]
    walls = {"06_fcn": 98.0, "13_augmentation": 148.0}
    report = check.project(["06_fcn", "13_augmentation"], log, root / "runs", "gpu", 10, walls, memory=memory)
    fcn, aug = report.chapters
    assert [r.name for r in fcn.runs] == ["06_fcn/fcn8s-seed0", "06_fcn/fcn8s-seed1"]
    assert [r.name for r in aug.runs] == ["craft/baseline-seed0", "craft/debug"]
    # 06: 1280 images // 16 = 80 steps x 20 epochs = 1600 steps (the profile has no cap); each run
    # took 4 s from config.json to its metrics, of which 2 s (3 s) trained 10 steps: 0.2 (0.3) s/step
    # and 2 s (1 s) of validation per epoch record, paid 20 times uncapped
    seed0, seed1 = fcn.runs
    assert (seed0.full_steps, seed0.full_records) == (1600, 20)
    assert seed0.projected == pytest.approx(1600 * 0.2 + 20 * 2.0)  # 360 s
    assert seed1.projected == pytest.approx(1600 * 0.3 + 20 * 1.0)  # 500 s
    assert fcn.median_seconds_per_step == pytest.approx(0.25)
    assert fcn.projected_train == pytest.approx(800.0)
    assert fcn.projected == pytest.approx(98.0 - (4 + 4) + 360 + 500)  # 950 s: run_log's wall, not the log's 95
    # 13: 640 images // 16 // accumulate 2 = 20 steps x 4 epochs = 80 steps at 0.1 s, 4 records of 2 s;
    # the debug run (max_steps 2, below the cap: its own) takes its 8 images // 4 = 2 steps either way
    baseline, debug = aug.runs
    assert (baseline.full_steps, baseline.projected) == (80, pytest.approx(80 * 0.1 + 4 * 2.0))
    assert (debug.full_steps, debug.projected) == (2, pytest.approx(2 * 0.2 + 1 * 0.6))
    assert aug.projected == pytest.approx(148.0 - (3 + 1) + 16.0 + 1.0)  # 161 s
    assert (fcn.memory_mib, aug.memory_mib) == (30000.0, 52000.0)  # the sample at 1300 is after the book
    assert report.total_min == pytest.approx((950 + 161) / 60)  # 18.5 min
    assert report.passed and not report.failed


def test_within_budget_exits_0_and_prints_the_table(book, tmp_path, capsys):
    root = book()
    assert check.main(_args(root, _log(tmp_path / "book.log", *FINISHED), "06_fcn", "13_augmentation")) == 0
    out = capsys.readouterr().out
    row = next(line.split() for line in out.splitlines() if line.startswith("06_fcn"))
    assert row == ["06_fcn", "done", "2", "0.250", "1.63", "13.33", "15.83", "-"]
    assert "projected 18.5 min of these chapters against the budget of 20 min for the whole book: within" in out
    assert out.rstrip().endswith("check passed")


def test_over_budget_exits_1(book, tmp_path, capsys):
    root = book(seed1_seconds=9.0, seed1_end=1040.0)  # 0.9 s/step: 1600 x 0.9 + 20 x 1 = 1460 s
    assert check.main(_args(root, _log(tmp_path / "book.log", *FINISHED), "06_fcn", "13_augmentation")) == 1
    out = capsys.readouterr().out
    total = (98 - (4 + 10) + 360 + 1460 + 161) / 60  # 34.4 min
    assert f"projected {total:.1f} min of these chapters against the budget of 20 min for the whole book: OVER" in out
    assert out.rstrip().endswith("check FAILED")


def test_a_run_out_of_memory_is_listed_and_exits_1(book, tmp_path, capsys):
    root = book()
    _run(root, "craft/cutmix-seed0", {}, 1150.0)  # started in 13, never finished an epoch
    log = _log(tmp_path / "book.log", *FINISHED[:2], f"1180.0 {OOM_LINE}")
    assert check.main(_args(root, log, "06_fcn", "13_augmentation", "14_optimisation", status=2)) == 1
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:2].isdigit()}
    assert rows["13_augmentation"][1:3] == ["failed", "3"] and rows["14_optimisation"][1:4] == ["not", "reached", "0"]
    assert "failed runs:\n  craft/cutmix-seed0 (13_augmentation): out of memory; no metrics" in out
    assert "the book stopped (out of memory): 13_augmentation.py: code cell 4" in out


def test_a_run_cut_by_the_time_limit_is_not_a_failure_but_the_check_is_incomplete(book, tmp_path, capsys):
    root = book()
    _run(root, "craft/cutmix-seed0", {}, 1150.0)
    log = _log(tmp_path / "book.log", *FINISHED[:2], "1200.0 segedu: interrupted")
    assert check.main(_args(root, log, "06_fcn", "13_augmentation", status=124)) == 1
    out = capsys.readouterr().out
    assert "failed runs" not in out and "the book stopped" not in out
    assert "cut by the time limit: 13_augmentation" in out


def test_bad_input_is_one_line(tmp_path, capsys):
    log = _log(tmp_path / "book.log", "not-a-time segedu book: profile gpu")
    assert check.main(["--log", str(log), "06_fcn"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpu_book_check: error: ") and "line 1 does not start with a unix time" in err
    assert err.count("\n") == 1
