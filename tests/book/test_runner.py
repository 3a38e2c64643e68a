"""The runner writes outputs atomically, reports failures by notebook and cell, and logs times."""
import json
import shutil
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


def test_run_log_records_times_per_profile(tmp_path):
    root = Path(__file__).resolve().parents[2]
    fake = tmp_path / "book_root"
    (fake / "book").mkdir(parents=True)
    shutil.copy(root / "_toc.yml", fake / "_toc.yml")
    for py in book.notebooks(root):
        (fake / "book" / py.name).write_text("")
    first = book.notebooks(root)[0].stem
    book.record_run("smoke", "cpu - test", {first: 1.23}, fake)
    log = book.record_run("cpu", "cpu - test", {first: 4.56}, fake)
    assert log["profiles"]["smoke"]["notebooks"][first] == 1.2
    assert log["profiles"]["cpu"]["total_seconds"] == 4.6
    md = (fake / book.RUN_LOG_MD).read_text()
    assert "## Profile `cpu`" in md and f"| {first} | 4.6 |" in md
