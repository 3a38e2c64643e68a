"""The environment files agree with each other, and torch + torchvision really work together."""
import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return _norm(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0])


def _pyproject_names() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    # requirements whose environment marker excludes this interpreter (tomli on 3.11+) are not expected
    return {_norm(r.name) for r in map(Requirement, reqs) if r.marker is None or r.marker.evaluate()}


def _conda_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {_req_name(r): r.split("==", 1)[1] for r in pip}


def _lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_norm(name)] = version.split(";", 1)[0].strip()
    return pins


def test_environment_yml_names_the_same_packages_as_pyproject():
    assert set(_conda_pins()) == _pyproject_names()


def test_environment_yml_versions_match_the_lock():
    lock = _lock_pins()
    conda = _conda_pins()
    assert {n: lock.get(n) for n in conda} == conda


def test_every_pyproject_package_is_pinned_in_the_lock():
    assert _pyproject_names() - set(_lock_pins()) == set()


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="requirements.lock pins CPython 3.11's environment")
def test_installed_versions_are_the_locked_ones():
    from importlib.metadata import version

    lock = _lock_pins()
    for name in ("torch", "torchvision", "numpy", "pycocotools", "albumentations", "papermill", "jupyter-book"):
        assert version(name).split("+")[0] == lock[name], name


def test_torch_and_torchvision_run_a_conv_on_cpu():
    import torch
    import torchvision

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    w = torch.ones(4, 3, 3, 3)
    y = torch.nn.functional.conv2d(x, w, padding=1)
    # centre pixel of a 3x3 all-ones kernel = sum of the 27 inputs around it
    assert torch.isclose(y[0, 0, 4, 4], x[0, :, 3:6, 3:6].sum())
    # a torchvision operator compiled against this torch build
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]


def test_torch_pair_constraints_match_the_lock():
    lock = _lock_pins()
    pins = dict(
        line.split("==") for line in (ROOT / "constraints-torch.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert pins == {"torch": lock["torch"], "torchvision": lock["torchvision"]}
