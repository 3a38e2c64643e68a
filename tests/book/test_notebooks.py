"""The book's notebooks: paired, executed, runnable in the smoke profile, and regression-checked.

`make test` also runs `pytest --nbval-lax book/`, which re-executes the committed notebooks and
compares the outputs of cells tagged `nbval-check-output`; the last test here makes sure there
are such cells, so nbval compares something.
"""
import ast
import json
from pathlib import Path

import jupytext
import pytest

from segedu import book

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = book.notebooks(ROOT)
IDS = [p.stem for p in CHAPTERS]


def _code_and_markdown(nb):
    """Cells as (type, source) without papermill's injected-parameters cell."""
    return [
        (c.cell_type, c.source.strip())
        for c in nb.cells
        if "injected-parameters" not in c.metadata.get("tags", [])
    ]


def test_toc_lists_chapters_in_reading_order():
    assert IDS, "no chapters found through _toc.yml"
    assert IDS == sorted(IDS), "chapter numbers must follow the reading order of _toc.yml"
    for entry in book.toc_files(ROOT):
        assert (ROOT / f"{entry}.md").is_file() or (ROOT / f"{entry}.ipynb").is_file(), entry


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_py_and_ipynb_hold_the_same_cells(py):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{ipynb.name} missing: run `make book NB={py.stem}`"
    assert _code_and_markdown(jupytext.read(py)) == _code_and_markdown(jupytext.read(ipynb))


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_every_code_cell_was_executed_without_error(py):
    nb = json.loads(py.with_suffix(".ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert code
    for i, cell in enumerate(code):
        assert cell["execution_count"] is not None, f"code cell {i} never executed"
        errors = [o for o in cell.get("outputs", []) if o["output_type"] == "error"]
        assert not errors, f"code cell {i} holds an error: {errors[0]['ename']}"
        streams = [o for o in cell.get("outputs", []) if o.get("name") == "stderr"]
        assert not any("%|" in "".join(o["text"]) for o in streams), f"cell {i}: progress bar in output"


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_parameters_cell_holds_the_four_parameters(py):
    nb = jupytext.read(py)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    names = {line.split("=")[0].strip() for line in params[0].source.splitlines() if "=" in line}
    assert names == {"profile", "data_dir", "seed", "device"}


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_figures_are_png(py):
    nb = json.loads(py.with_suffix(".ipynb").read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            assert "image/svg+xml" not in data and "application/pdf" not in data


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_nbval_compares_cells(py):
    nb = jupytext.read(py)
    checked = [c for c in nb.cells if "nbval-check-output" in c.metadata.get("tags", [])]
    assert checked, f"{py.name}: no cell tagged nbval-check-output, so nbval would compare nothing"


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_chapter_runs_in_the_smoke_profile(py, tmp_path):
    out = book.execute(py, tmp_path / py.with_suffix(".ipynb").name, profile="smoke", seed=0, device="cpu")
    nb = json.loads(out.read_text())
    assert all(c["execution_count"] for c in nb["cells"] if c["cell_type"] == "code" and c["source"])


def _calls(py: Path):
    """Every call in a chapter's code, with the name it is called by (``viz.plot_learning_curves``,
    ``ax.set_title``, ...): the chapter's .py is plain Python, its markdown comments."""
    for node in ast.walk(ast.parse(py.read_text())):
        if isinstance(node, ast.Call):
            yield ast.unparse(node.func), node


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_learning_curves_show_the_all_background_floor(py):
    """A curve of mIoU reads against the score of predicting Background everywhere: every learning
    curve a chapter draws passes ``floor``."""
    for name, call in _calls(py):
        if name.endswith("plot_learning_curves"):
            assert "floor" in {k.arg for k in call.keywords}, f"{py.name}:{call.lineno}: learning curves without floor="


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_figure_titles_speak_of_segmentation_not_of_profiles(py):
    """The book's machinery (profiles) stays out of what students see in a figure."""
    for name, call in _calls(py):
        if name.split(".")[-1] in {"set_title", "suptitle", "title", "plot_ablation", "plot_learning_curves"}:
            texts = [ast.unparse(arg) for arg in [*call.args, *(k.value for k in call.keywords)]]
            assert not any("profile" in text for text in texts), f"{py.name}:{call.lineno}: {texts}"
