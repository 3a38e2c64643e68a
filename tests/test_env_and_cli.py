"""`segedu --help`, `segedu info`, device resolution and the CLI's error handling."""
import os
import subprocess
import sys

import pytest
import torch

from segedu import cli, env, notebook
from segedu.errors import SegeduError


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "segedu", *args], capture_output=True, text=True)


def test_help_lists_the_commands():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("info", "book"):
        assert command in out.stdout


def test_info_prints_versions_device_and_profile():
    out = run_cli("info", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    rows = dict(line.split(None, 1) for line in out.stdout.splitlines() if line and not line.startswith(" "))
    import torchvision

    assert rows["torchvision"].strip() == torchvision.__version__
    assert "device" in out.stdout and "cpu" in out.stdout
    assert "default profile" in out.stdout
    assert rows["torch"].strip() == torch.__version__


def test_console_script_is_installed():
    from pathlib import Path

    script = Path(sys.executable).parent / "segedu"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("segedu ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_a_clear_error():
    with pytest.raises(SegeduError, match="no usable CUDA GPU.*Use device='auto' or 'cpu'"):
        env.resolve_device("cuda")
    out = run_cli("info", "--device", "cuda")
    assert out.returncode == 2
    assert out.stderr.startswith("segedu: error: device='cuda' was asked for")
    assert "Traceback" not in out.stderr


def test_device_names_are_checked():
    assert env.resolve_device("cpu") == torch.device("cpu")
    assert env.resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(SegeduError, match="unknown device 'gpu0'"):
        env.resolve_device("gpu0")


def test_unknown_profile_from_the_shell():
    out = run_cli("book", "run", "--profile", "fast")
    assert out.returncode == 2 and "invalid choice: 'fast'" in out.stderr


def test_unknown_notebook_names_the_chapters(capsys):
    assert cli.main(["book", "run", "--profile", "smoke", "99_nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "notebook '99_nonexistent' is not a chapter in _toc.yml" in err
    assert "00_how_to_use" in err


def test_missing_data_dir_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(SegeduError, match="data_dir .*nope' does not exist"):
        notebook.setup(profile="smoke", data_dir=missing)
    assert cli.main(["book", "run", "--profile", "smoke", "--data-dir", str(missing)]) == 2


def test_seeding_repeats_random_draws():
    env.seed_everything(3)
    a = torch.rand(4), __import__("numpy").random.rand(2)
    env.seed_everything(3)
    b = torch.rand(4), __import__("numpy").random.rand(2)
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all()
    with pytest.raises(SegeduError):
        env.seed_everything(-1)


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu avx512_bf16

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 0
"""


def test_the_machine_is_named_with_its_cpu_generation():
    # two "AMD EPYC" machines of different generations are told apart; the first processor speaks
    assert env.cpu_from_cpuinfo(CPUINFO) == "AMD EPYC (family 26, model 2, stepping 1)"
    assert env.cpu_from_cpuinfo("processor\t: 0\nmodel name\t: Some CPU\n") == "Some CPU"
    assert env.cpu_from_cpuinfo("processor\t: 0\nCPU part\t: 0xd0c\n") is None  # no model name (e.g. ARM)
    assert env.machine_description().endswith(f", {os.cpu_count()} cores")
