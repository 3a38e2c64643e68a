"""The package's layers: every import points down or sideways (segedu/layers.py), and each layer
imports in a fresh interpreter without loading any module of a higher layer."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from segedu.layers import LAYERS, layer_of, module_name, upward_imports, upward_imports_in

PACKAGE = Path(__file__).resolve().parents[1] / "segedu"
MODULES = sorted(module_name(f, PACKAGE) for f in PACKAGE.rglob("*.py"))


def test_no_module_imports_a_higher_layer():
    found = upward_imports(PACKAGE)
    assert not found, "imports of a higher layer (move the code down, or import it from below):\n" + \
        "\n".join(map(str, found))


def test_every_module_is_in_a_layer():
    missing = []
    for name in MODULES:
        try:
            layer_of(name)
        except KeyError:
            missing.append(name)
    assert not missing, f"add these modules to segedu.layers.LAYERS: {missing}"


def test_the_longest_prefix_decides_the_layer():
    # hand-assigned in the table: the experiment helpers live in the engine's folder, one layer up
    assert layer_of("segedu.engine.trainer")[1] == "engine"
    assert layer_of("segedu.experiments.compare")[1] == "experiments"
    assert layer_of("segedu.engine")[1] == "engine"
    assert layer_of("segedu.data.synth.scenes")[1] == "data"  # a module inside a sub-package
    assert layer_of("segedu")[1] == "base"
    ranks = [layer_of(name)[0] for name in ("segedu.errors", "segedu.data.coco", "segedu.models.fcn",
                                              "segedu.metrics", "segedu.inference.predict", "segedu.engine.config",
                                              "segedu.experiments.ablation", "segedu.cli")]
    assert ranks == list(range(len(LAYERS)))


def test_a_planted_deferred_import_is_reported_with_file_line_and_both_layers():
    source = textwrap.dedent("""\
        from __future__ import annotations

        from .classes import IGNORE_INDEX
        from .. import env, profiles


        def helper():
            from ..engine.trainer import amp_dtype  # deferred, still a dependency
            return amp_dtype
        """)
    found = upward_imports_in(source, "segedu.data.planted", "segedu/data/planted.py")
    assert [(v.path, v.line, v.layer, v.target, v.target_layer) for v in found] == [
        ("segedu/data/planted.py", 8, "data", "segedu.engine.trainer", "engine")]
    assert str(found[0]) == ("segedu/data/planted.py:8: segedu.data.planted (layer data) imports "
                             "segedu.engine.trainer (layer engine, higher)")


@pytest.mark.parametrize("line, target", [
    ("import segedu.inference.predict", "segedu.inference.predict"),
    ("from segedu import metrics", "segedu.metrics"),       # a submodule named in the import list
    ("from .. import metrics", "segedu.metrics"),            # relative, two levels up
    ("from ..inference import predict", "segedu.inference.predict"),
    ("from ..engine import load_model", "segedu.engine"),    # a name, not a module: the package is imported
])
def test_each_import_form_of_a_higher_layer_is_caught(line, target):
    known = {"segedu.metrics", "segedu.inference.predict"}
    found = upward_imports_in(line + "\n", "segedu.models.planted", known=known)
    assert [(v.line, v.target) for v in found] == [(1, target)]


@pytest.mark.parametrize("line", [
    "from . import blocks",                 # same layer
    "from ..data.classes import NUM_CLASSES",
    "from .. import env",                   # the package's base modules
    "import segedu",
    "import torch",                         # outside segedu
    "from torch import nn",
])
def test_imports_of_the_same_or_a_lower_layer_pass(line):
    assert upward_imports_in(line + "\n", "segedu.models.planted", known={"segedu.models.blocks", "segedu.env"}) == []


def test_relative_imports_resolve_from_a_package_init_and_from_a_module():
    # "." in a package's __init__.py is the package itself; in a module it is the module's parent. The
    # same line "from . import experiments" is harmless in segedu/inference/__init__.py (it would name
    # segedu.inference.experiments) and an upward import in a module segedu/inference.py (segedu.experiments)
    known = {"segedu.experiments", "segedu.inference.experiments"}
    in_init = upward_imports_in("from . import experiments\n", "segedu.inference", is_package=True, known=known)
    assert in_init == []
    in_module = upward_imports_in("from . import experiments\n", "segedu.inference", is_package=False, known=known)
    assert [(v.layer, v.target, v.target_layer) for v in in_module] == [("inference", "segedu.experiments",
                                                                          "experiments")]
    deeper = upward_imports_in("from ..experiments.compare import train_plan\n", "segedu.engine.trainer",
                               known={"segedu.experiments.compare"})
    assert [v.target for v in deeper] == ["segedu.experiments.compare"]


def test_the_check_fails_on_a_copy_of_the_package_with_an_upward_import(tmp_path):
    copy = tmp_path / "segedu"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "weights"))
    target = copy / "models" / "measure.py"
    lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.append("\n\ndef _planted():\n    from ..engine.trainer import Trainer\n    return Trainer\n")
    target.write_text("".join(lines), encoding="utf-8")
    planted_line = len(lines) + 3  # the appended text's fourth line
    found = upward_imports(copy)
    assert [(Path(v.path), v.line, v.layer, v.target_layer) for v in found] == [
        (target, planted_line, "models", "engine")]


# one fresh interpreter per layer: importing all of its modules loads no module of a higher layer
_PROBE = """
import importlib, sys
from segedu.layers import layer_of
rank = int(sys.argv[1])
for name in sys.argv[2:]:
    importlib.import_module(name)
above = sorted(m for m in sys.modules if (m == "segedu" or m.startswith("segedu.")) and layer_of(m)[0] > rank)
print("\\n".join(above))
"""


@pytest.mark.parametrize("rank", range(len(LAYERS)), ids=[name for name, _ in LAYERS])
def test_each_layer_imports_alone_in_a_fresh_interpreter(rank):
    names = [m for m in MODULES if layer_of(m)[0] == rank and m != "segedu.__main__"]  # __main__ runs the CLI
    result = subprocess.run([sys.executable, "-c", _PROBE, str(rank), *names], capture_output=True, text=True,
                            cwd=PACKAGE.parent, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "", f"importing layer {LAYERS[rank][0]} loaded higher layers:\n{result.stdout}"
