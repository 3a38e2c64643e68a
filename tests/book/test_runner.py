"""The runner writes outputs atomically, reports failures by notebook and cell, and logs times."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from segedu import book
from segedu.errors import SegeduError

GOOD = """# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
print("ran", profile, seed)
"""

BAD = GOOD + """
# %%
x = 1

# %%
raise ValueError("boom in the last cell")
"""


def test_execute_writes_the_executed_notebook(tmp_path):
    py = tmp_path / "01_good.py"
    py.write_text(GOOD)
    out = book.execute(py, profile="smoke", seed=7)
    nb = json.loads(out.read_text())
    printed = "".join(o.get("text", "") if isinstance(o.get("text"), str) else "".join(o.get("text", []))
                      for c in nb["cells"] for o in c.get("outputs", []))
    assert "ran smoke 7" in printed
    assert out == py.with_suffix(".ipynb")
    # the HTML shows the chapter's own parameters cell, not papermill's injected copy as well
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0]["metadata"]["tags"]
    own = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(own) == 1 and "remove-cell" not in own[0]["metadata"]["tags"]


def test_failed_run_names_the_cell_and_keeps_the_previous_ipynb(tmp_path):
    py = tmp_path / "02_bad.py"
    py.write_text(BAD)
    previous = py.with_suffix(".ipynb")
    previous.write_text("previous outputs")
    with pytest.raises(SegeduError, match=r"02_bad.py: code cell 4 \('raise ValueError\(\"boom in the last cell\"\)'\) "
                       r"failed with ValueError: boom in the last cell"):
        book.execute(py, profile="smoke")
    assert previous.read_text() == "previous outputs"
    assert not any(p.name.startswith(".run-") for p in tmp_path.iterdir()), "temporary folder left behind"


def test_notebook_without_parameters_cell_is_refused(tmp_path):
    py = tmp_path / "03_noparams.py"
    py.write_text("# %%\nprint(1)\n")
    with pytest.raises(SegeduError, match="no cell tagged 'parameters'"):
        book.execute(py)


ROOT = Path(__file__).resolve().parents[2]


def _fake_book(tmp_path: Path) -> Path:
    """A book root with the real _toc.yml and an empty .py for each chapter: where record_run writes."""
    fake = tmp_path / "book_root"
    (fake / "book").mkdir(parents=True)
    shutil.copy(ROOT / "_toc.yml", fake / "_toc.yml")
    for py in book.notebooks(ROOT):
        (fake / "book" / py.name).write_text("")
    return fake


def test_run_log_records_times_per_profile(tmp_path):
    fake = _fake_book(tmp_path)
    first = book.notebooks(ROOT)[0].stem
    book.record_run("smoke", "cpu - test", {first: 1.23}, fake)
    log = book.record_run("cpu", "cpu - test", {first: 4.56}, fake)
    assert log["profiles"]["smoke"]["notebooks"][first] == 1.2
    assert log["profiles"]["cpu"]["total_seconds"] == 4.6
    md = (fake / book.RUN_LOG_MD).read_text()
    assert "## Profile `cpu`" in md and f"| {first} | 4.6 |" in md


def test_a_partial_run_on_another_machine_keeps_each_chapters_machine(tmp_path, monkeypatch):
    fake = _fake_book(tmp_path)
    first, second = [p.stem for p in book.notebooks(ROOT)[:2]]
    monkeypatch.setattr(book.env, "machine_description", lambda: "machine A")
    book.record_run("cpu", "cpu - test", {first: 10.0, second: 20.0}, fake)
    assert "| machine |" not in (fake / book.RUN_LOG_MD).read_text()  # one machine: no column
    monkeypatch.setattr(book.env, "machine_description", lambda: "machine B")
    log = book.record_run("cpu", "cpu - test", {second: 5.0}, fake)
    assert log["profiles"]["cpu"]["machines"] == {first: "machine A", second: "machine B"}
    md = (fake / book.RUN_LOG_MD).read_text()
    dates = log["profiles"]["cpu"]["dates"]
    assert f"| {first} | 10.0 | machine A, run of {dates[first]} |" in md
    assert f"| {second} | 5.0 | machine B, run of {dates[second]} |" in md
    assert f"| total of machine A, run of {dates[first]} | 10.0 | |" in md
    assert f"| total of machine B, run of {dates[second]} | 5.0 | |" in md


def test_two_executions_on_one_machine_are_not_one_runs_total(tmp_path, monkeypatch):
    """A later partial run on the same machine (make book NB=...) keeps the other chapters' times,
    but the log must not present their sum as the time of one execution."""
    fake = _fake_book(tmp_path)
    first, second = [p.stem for p in book.notebooks(ROOT)[:2]]
    monkeypatch.setattr(book.env, "machine_description", lambda: "machine A")

    real = book._dt.datetime

    class Clock:  # two executions, an hour apart
        hour = 10

        @classmethod
        def now(cls, tz=None):
            return real(2026, 12, 6, cls.hour, 0, tzinfo=tz)

    monkeypatch.setattr(book._dt, "datetime", Clock)
    book.record_run("cpu", "cpu - test", {first: 10.0, second: 20.0}, fake)
    assert "| timed |" not in (fake / book.RUN_LOG_MD).read_text()  # one execution: no column
    Clock.hour = 11
    log = book.record_run("cpu", "cpu - test", {second: 5.0}, fake)
    assert log["profiles"]["cpu"]["dates"] == {first: "2026-12-06 10:00 UTC", second: "2026-12-06 11:00 UTC"}
    md = (fake / book.RUN_LOG_MD).read_text()
    assert "sum over executions" in md
    assert "| total of machine A, run of 2026-12-06 10:00 UTC | 10.0 | |" in md
    assert "| total of machine A, run of 2026-12-06 11:00 UTC | 5.0 | |" in md


def test_run_log_records_the_chapters_training_results(tmp_path):
    """Runs written by a chapter are read back from their run directories (best val mIoU, epochs,
    seconds), grouped by run label without its -seed<N> suffix (two tricks of one model are two rows) with
    mean ± sample sd over seeds; runs older than the execution are left out."""
    import json
    import os
    import time

    fake = _fake_book(tmp_path)
    chapter = book.notebooks(ROOT)[-1].stem
    runs = tmp_path / "runs"
    for label, model, seed, mious in [("a-seed0", "a", 0, [0.1, 0.3]), ("a-seed1", "a", 1, [0.2, 0.1]),
                                      ("b", "b", 0, [0.5]), ("old", "old", 0, [0.9]),
                                      ("cutmix-seed0", "a", 0, [0.4]), ("cutmix-seed1", "a", 1, [0.6]),
                                      ("debug", "a", 0, [0.01])]:
        run = runs / "cpu" / chapter / label
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"model": model, "seed": seed, "debug": label == "debug"}))
        (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "seconds": 2.0, "val_miou": m}) + "\n"
                                                   for i, m in enumerate(mious)))
    long_ago = time.time() - 3600
    os.utime(runs / "cpu" / chapter / "old" / "metrics.jsonl", (long_ago, long_ago))
    rows = book.chapter_results(runs, "cpu", chapter, since=time.time() - 60)
    assert [r["run"] for r in rows] == ["a-seed0", "a-seed1", "b", "cutmix-seed0", "cutmix-seed1"]
    assert rows[0] == {"run": "a-seed0", "folder": chapter, "model": "a", "seed": 0, "best_val_miou": 0.3,
                       "epochs": 2, "train_seconds": 4.0}
    book.record_run("cpu", "cpu - test", {chapter: 9.0}, fake, {chapter: rows})
    md = (fake / book.RUN_LOG_MD).read_text()
    # run a: best 0.3 and 0.2 -> mean 0.25, sample sd 0.05 * sqrt(2) = 0.0707; cutmix (also model a)
    # is its own row: 0.4 and 0.6 -> 0.5 ± 0.1414
    assert f"| {chapter}/a | a | 2 | 0.2500 ± 0.0707 | 2 | 4 | {chapter} (seeds 0, 1) |" in md
    assert f"| {chapter}/cutmix | a | 2 | 0.5000 ± 0.1414 | 1 | 2 | {chapter} (seeds 0, 1) |" in md
    assert f"| {chapter}/b | b | 1 | 0.5000 | 1 | 2 | {chapter} (seed 0) |" in md
    assert "/old |" not in md and "/debug |" not in md  # a debug run checks code paths, it is no result
    # executed again and training nothing (every run read back): the older rows are not this run's
    log = book.record_run("cpu", "cpu - test", {chapter: 3.0}, fake, {chapter: []})
    assert chapter not in log["profiles"]["cpu"]["results"]


def test_run_log_groups_a_configurations_seeds_across_the_chapters_that_trained_them(tmp_path):
    """One configuration (run folder and label without -seed<N>) is one row with all its seeds, and
    names the chapter that trained each; the same label in another folder is another row; an SWA
    run's extra evaluation record of its last epoch is no extra epoch."""
    fake = _fake_book(tmp_path)
    first, second = [p.stem for p in book.notebooks(ROOT)][-2:]

    def row(folder, run, seed, miou, epochs=5):
        return {"run": run, "folder": folder, "model": "m", "seed": seed, "best_val_miou": miou, "epochs": epochs,
                "train_seconds": 10.0}

    results = {first: [row("craft", "smooth-seed0", 0, 0.40)],
               second: [row("craft", "smooth-seed1", 1, 0.42), row("craft", "smooth-seed2", 2, 0.44),
                        row("noise", "smooth-seed0", 0, 0.30)]}
    book.record_run("cpu", "cpu - test", {first: 1.0, second: 2.0}, fake, results)
    md = (fake / book.RUN_LOG_MD).read_text()
    # 0.40, 0.42, 0.44: mean 0.42, sample sd 0.02
    assert f"| craft/smooth | m | 3 | 0.4200 ± 0.0200 | 5 | 10 | {first} (seed 0), {second} (seeds 1, 2) |" in md
    assert f"| noise/smooth | m | 1 | 0.3000 | 5 | 10 | {second} (seed 0) |" in md

    import json

    run = tmp_path / "runs" / "cpu" / "craft" / "swa-seed0"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": "m", "seed": 0}))
    records = [{"epoch": 1, "seconds": 2.0, "val_miou": 0.3}, {"epoch": 2, "seconds": 2.0, "val_miou": 0.4},
               {"epoch": 2, "swa": True, "snapshots": 4, "val_miou": 0.45}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    [swa] = book.chapter_results(tmp_path / "runs", "cpu", "craft")
    assert (swa["epochs"], swa["best_val_miou"], swa["folder"]) == (2, 0.45, "craft")


@pytest.mark.parametrize("folder", ["craft", "libraries", "noise"])
def test_runs_of_a_shared_folder_belong_to_the_execution_that_wrote_them(tmp_path, folder):
    """The competition-craft chapters train into runs/<profile>/craft, chapter 19 into libraries and
    chapter 20 into noise; a run is credited to the chapter whose execution wrote it (newer than its
    start), and not listed for a plain look-up (since=None)."""
    import json
    import os
    import time

    runs = tmp_path / "runs"
    for label, age in (("fresh", 0), ("reused", 3600)):
        run = runs / "cpu" / folder / label
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"model": "m", "seed": 0}))
        (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "seconds": 1.0, "val_miou": 0.5}) + "\n")
        os.utime(run / "metrics.jsonl", (time.time() - age, time.time() - age))
    assert [r["run"] for r in book.chapter_results(runs, "cpu", "13_x", since=time.time() - 60)] == ["fresh"]
    assert book.chapter_results(runs, "cpu", "13_x") == []


def test_sync_markdown_copies_prose_only_and_refuses_code_changes(tmp_path):
    """A summary edited after a run reaches the executed notebook; outputs, the injected parameters and
    the run's metadata stay; a changed code cell is refused and nothing is written."""
    import jupytext
    import nbformat

    py = tmp_path / "99_x.py"
    py.write_text('# %% [markdown]\n# # Title\n# old prose\n\n# %% tags=["parameters"]\nprofile = "auto"\n\n'
                  '# %%\nprint(6 * 7)\n')
    nb = jupytext.read(py)
    injected = nbformat.v4.new_code_cell('profile = "cpu"', metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(2, injected)
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    nb.cells[3].execution_count = 1
    nb.metadata["papermill"] = {"duration": 1.0}
    nbformat.write(nb, py.with_suffix(".ipynb"))

    py.write_text(py.read_text().replace("old prose", "new prose, with the measured 42"))
    assert book.sync_markdown(py) == 1
    synced = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
    assert "new prose, with the measured 42" in synced.cells[0].source
    assert synced.cells[2].source == 'profile = "cpu"' and synced.cells[3].outputs[0]["text"] == "42\n"
    assert synced.metadata["papermill"] == {"duration": 1.0}
    assert book.sync_markdown(py) == 0  # nothing left to copy

    before = py.with_suffix(".ipynb").read_text()
    py.write_text(py.read_text().replace("6 * 7", "6 * 9"))
    with pytest.raises(SegeduError, match="cell 2 \\(code\\) differs from the executed one"):
        book.sync_markdown(py)
    assert py.with_suffix(".ipynb").read_text() == before


def test_a_reexecution_keeps_the_times_and_runs_of_the_execution_that_trained_them(tmp_path, monkeypatch):
    """``run_book(reuse_since=...)``: a chapter executed again, reading back earlier runs, must not
    replace the times of the execution that trained them by its own few seconds."""
    fake = _fake_book(tmp_path)
    first, second = [p.stem for p in book.notebooks(ROOT)[:2]]
    monkeypatch.setattr(book.env, "machine_description", lambda: "machine A")
    row = {"model": "fcn8s", "seed": 0, "best_val_miou": 0.3, "epochs": 5, "train_seconds": 80.0}
    book.record_run("cpu", "cpu - test", {first: 10.0, second: 900.0}, fake,
                    {second: [{**row, "run": "fcn8s-seed0"}, {**row, "run": "fcn8s-scratch-seed0"}]})
    again = {**row, "run": "fcn8s-scratch-seed0", "best_val_miou": 0.15}
    log = book.record_run("cpu", "cpu - test", {second: 60.0}, fake, {second: [again]},
                          reused_since="2026-12-06 22:05")
    entry = log["profiles"]["cpu"]
    assert entry["notebooks"] == {first: 10.0, second: 900.0}
    assert entry["reexecuted"][second]["seconds"] == 60.0 and entry["reexecuted"][second]["runs_trained"] == 1
    assert sorted((r["run"], r["best_val_miou"]) for r in entry["results"][second]) == [
        ("fcn8s-scratch-seed0", 0.15), ("fcn8s-seed0", 0.3)]
    md = (fake / book.RUN_LOG_MD).read_text()
    assert f"| {second} | {entry['reexecuted'][second]['date']} on machine A | 60.0 | 2026-12-06 22:05 UTC | 1 |" in md


def test_a_timed_chapter_reading_back_earlier_runs_is_recorded_as_executed_now(tmp_path, monkeypatch):
    """``run_book(reuse_since=..., timed=True)``: a chapter new since the book's execution trains its
    own runs now and reads back earlier chapters'; its time and runs are this execution's, and the
    log says since when it read back the others'."""
    fake = _fake_book(tmp_path)
    first, second = [p.stem for p in book.notebooks(ROOT)[:2]]
    monkeypatch.setattr(book.env, "machine_description", lambda: "machine A")
    row = {"model": "m", "seed": 0, "best_val_miou": 0.3, "epochs": 5, "train_seconds": 80.0}
    book.record_run("cpu", "cpu - test", {first: 10.0, second: 20.0}, fake, {second: [{**row, "run": "old-seed0"}]})
    book.record_run("cpu", "cpu - test", {second: 5.0}, fake, {}, reused_since="2026-12-06 22:05")
    assert second in book.json.loads((fake / book.RUN_LOG_JSON).read_text())["profiles"]["cpu"]["reexecuted"]
    log = book.record_run("cpu", "cpu - test", {second: 700.0}, fake, {second: [{**row, "run": "new-seed0"}]},
                          reused_since="2026-12-06 22:05", timed=True)
    entry = log["profiles"]["cpu"]
    assert entry["notebooks"] == {first: 10.0, second: 700.0}
    assert [r["run"] for r in entry["results"][second]] == ["new-seed0"]
    assert entry["read_back"] == {second: "2026-12-06 22:05"} and second not in entry.get("reexecuted", {})
    md = (fake / book.RUN_LOG_MD).read_text()
    assert f"| {second} | 2026-12-06 22:05 UTC |" in md and "runs of earlier chapters read back since" in md
    # executed again later without reading back anything: no longer listed as reading back
    log = book.record_run("cpu", "cpu - test", {second: 650.0}, fake, {second: [{**row, "run": "new-seed0"}]})
    assert "read_back" not in log["profiles"]["cpu"]


def test_reuse_since_must_be_a_utc_time():
    assert book.parse_utc("2026-12-06 22:05") == 1796594700.0
    assert book.parse_utc("2026-12-06 22:05 UTC") == 1796594700.0
    with pytest.raises(SegeduError, match="'yesterday' is not a UTC time"):
        book.parse_utc("yesterday")


def test_timed_needs_reuse_runs_since(capsys):
    from segedu.cli import main

    assert main(["book", "run", "99", "--profile", "smoke", "--timed"]) == 2
    assert "--timed records chapters that read back earlier chapters' runs" in capsys.readouterr().err


def test_sigterm_stops_the_runner_and_the_finished_chapters_are_recorded(tmp_path):
    """``kill`` (SIGTERM) while a chapter runs stops the runner as Ctrl-C does: the chapters that
    finished before it are in the run log. Run in a child process, which SIGTERM would otherwise end
    at once with nothing recorded."""
    fake = _fake_book(tmp_path)
    first, second = [p.stem for p in book.notebooks(ROOT)[:2]]
    data = tmp_path / "data"
    data.mkdir()
    script = f"""
import os, signal, time
from pathlib import Path
from segedu import book
book.root = lambda: Path({str(fake)!r})
calls = []
def execute(py, **kwargs):  # the first chapter finishes; SIGTERM arrives during the second
    calls.append(py)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
book.execute = execute
book.run_book("smoke", [{first!r}, {second!r}], data_dir={str(data)!r}, device="cpu")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SEGEDU_DATA_ROOT": str(tmp_path / "datasets")})
    assert proc.returncode != 0 and "KeyboardInterrupt: stopped by signal 15" in proc.stderr, proc.stderr[-2000:]
    assert "segedu book: stopped; the 1 chapter(s) finished before are recorded" in proc.stdout
    entry = json.loads((fake / book.RUN_LOG_JSON).read_text())["profiles"]["smoke"]
    assert list(entry["notebooks"]) == [first]
