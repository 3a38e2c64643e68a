"""The landing page's chapter map follows _toc.yml, and `make lab` opens a chapter's .py as its notebook."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
from pathlib import Path

from PIL import Image

from segedu import book

ROOT = Path(__file__).resolve().parents[2]
FIGURE = ROOT / "book" / "figures" / "chapter_map.png"
LAB_CONFIG = ROOT / ".jupyter"


def _chapter_map_module():
    spec = importlib.util.spec_from_file_location("make_chapter_map", ROOT / "book" / "figures" / "make_chapter_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chapter_map_lists_every_chapter_of_the_toc():
    drawn = json.loads(Image.open(FIGURE).text["Chapters"])
    toc_chapters = [Path(f).name for f in book.toc_files(ROOT) if re.search(r"(^|/)\d\d_", f)]
    assert [name for name, _ in drawn] == toc_chapters, (
        "book/figures/chapter_map.png is out of date with _toc.yml; run "
        "`.venv/bin/python book/figures/make_chapter_map.py`")
    current = [[c["name"], c["title"]] for c in _chapter_map_module().chapters(ROOT)]
    assert drawn == current, ("a chapter title changed since book/figures/chapter_map.png was drawn; run "
                              "`.venv/bin/python book/figures/make_chapter_map.py`")


def test_chapter_map_reads_what_each_chapter_builds_on(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/index\nchapters:\n"
                                       "  - file: book/00_a\n  - file: book/01_b\n  - file: book/run_log\n")
    (tmp_path / "book" / "00_a.py").write_text("# %% [markdown]\n# # First\n#\n# **What it builds on.** Nothing.\n")
    (tmp_path / "book" / "01_b.md").write_text("# Second: more\n\n**What it builds on.** [the first](00_a)\nand"
                                               " [a missing one](07_zzz).\n\n[not this](00_a)\n")
    chapters = _chapter_map_module().chapters(tmp_path)
    assert chapters == [
        {"name": "00_a", "number": "00", "title": "First", "builds_on": []},
        {"name": "01_b", "number": "01", "title": "Second: more", "builds_on": ["00_a"]},
    ]


def test_landing_page_shows_the_map_the_run_log_and_the_solutions():
    index = (ROOT / "book" / "index.md").read_text()
    assert "figures/chapter_map.png" in index
    assert re.search(r"```\{include\} run_log\.md", index), "the latest runs' table comes from book/run_log.md"
    assert "solutions/index" in index
    assert book.toc_files(ROOT)[-1] == "book/solutions/index"


def test_lab_opens_python_files_as_jupytext_notebooks(monkeypatch):
    overrides = json.loads((LAB_CONFIG / "labconfig" / "default_setting_overrides.json").read_text())
    viewers = overrides["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers["python"] == "Jupytext Notebook"
    lab = re.search(r"^lab:.*?(?=^\S|\Z)", (ROOT / "Makefile").read_text(), re.M | re.S).group(0)
    assert 'JUPYTER_CONFIG_PATH="$(CURDIR)/.jupyter' in lab and "jupyter lab" in lab
    # what JupyterLab's settings API serves with that environment variable (as `make lab` sets it)
    from jupyterlab_server.settings_utils import _get_overrides

    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(LAB_CONFIG))
    served, error = _get_overrides(str(ROOT / "no-app-settings-here"))
    assert not error
    assert served["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]["python"] == "Jupytext Notebook"
    # the "Jupytext Notebook" viewer and jupytext's contents manager are installed and enabled
    assert (Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "jupyterlab-jupytext" / "package.json").is_file()
    enabled = {}
    for conf in (Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d").glob("*.json"):
        enabled.update(json.loads(conf.read_text()).get("ServerApp", {}).get("jpserver_extensions", {}))
    assert enabled.get("jupyterlab_jupytext") is True


def test_a_chapter_py_opens_as_its_notebook_even_when_the_ipynb_is_newer(tmp_path):
    """`make book` writes the .ipynb after the .py; jupytext must still open the pair (book/jupytext.toml)."""
    from jupytext import TextFileContentsManager

    chapter = book.notebooks(ROOT)[0]
    (tmp_path / "book").mkdir()
    for path in (chapter, chapter.with_suffix(".ipynb"), ROOT / "book" / "jupytext.toml"):
        shutil.copy(path, tmp_path / "book" / path.name)
    py, ipynb = tmp_path / "book" / chapter.name, tmp_path / "book" / chapter.with_suffix(".ipynb").name
    os.utime(py, (1_000_000_000, 1_000_000_000))
    os.utime(ipynb, (1_000_100_000, 1_000_100_000))  # papermill's output, a day newer
    manager = TextFileContentsManager(root_dir=str(tmp_path))
    model = manager.get(f"book/{chapter.name}")
    assert model["type"] == "notebook"
    assert model["content"]["metadata"]["jupytext"]["formats"] == "ipynb,py:percent"
    stored = json.loads(ipynb.read_text())
    with_outputs = sum(bool(c.get("outputs")) for c in stored["cells"] if c["cell_type"] == "code"
                       and "injected-parameters" not in c["metadata"].get("tags", []))
    assert with_outputs and sum(bool(c.get("outputs")) for c in model["content"]["cells"]
                                if c["cell_type"] == "code") == with_outputs
    assert not any("injected-parameters" in c["metadata"].get("tags", []) for c in model["content"]["cells"])

