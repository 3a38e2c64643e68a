"""The benchmark scripts run and print their comparison (their timings are never asserted)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(*args, timeout=300):
    done = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("path", ["plain", "fast"])
def test_bench_models_prints_both_libraries_and_their_ratio(path):
    out = _run(BENCH / "bench_models.py", "--path", path, "--batch-size", "1", "--size", "32", "--steps", "1",
               "--warmup", "0", "--models", "fcn_resnet50")
    line = next(line for line in out.splitlines() if line.startswith("fcn_resnet50"))
    assert re.search(r"torchvision +[\d.]+ img/s \( *[\d.]+ TFLOP/s\) \| segedu +[\d.]+ img/s .*\| "
                     r"segedu / torchvision [\d.]+x$", line), line


def test_bench_ddp_times_one_process_against_torchrun():
    out = _run(BENCH / "bench_ddp.py", "--images", "24", "--size", "32", "--epochs", "1", "--batch", "4",
               "--threads", "2", "--model", "fcn32s", "--width", "0.125")
    assert re.search(r"^1 process +x batch +4 x 2 threads: +[\d.]+ s$", out, re.M), out
    assert re.search(r"^2 processes x batch +2 x 1 threads: +[\d.]+ s$", out, re.M), out
    assert re.search(r"^speed-up of 2 processes: [\d.]+x$", out, re.M), out


def test_book_step_times_prints_fp32_the_fast_path_and_their_ratio():
    out = _run(BENCH / "book_step_times.py", "--fast", "--image-size", "32", "--batch-size", "2", "--repeats", "1",
               "--width", "0.125", "--steps", "10", "--only", "fcn32s", "deeplabv3plus_resnet50")
    for name in ("fcn32s", "deeplabv3plus_resnet50", "one step of each"):
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert re.search(r" [\d.]+ +[\d.]+ +[\d.]+x +\d+ +\d+$", line), line
    assert re.search(r"^bf16 instructions on this CPU: AMX (True|False), AVX512-BF16 (True|False)$", out, re.M), out
