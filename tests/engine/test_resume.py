"""A training process killed with SIGKILL resumes to exactly the metrics of an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time
from segedu.engine import checkpoint
from segedu.engine.runlog import read_metrics

ARGS = ["--model", "fcn16s", "--width", "0.125", "--profile", "smoke", "--image-size", "32", "--epochs", "6",
        "--batch-size", "4", "--num-workers", "0", "--device", "cpu", "--checkpoint-every", "1", "--seed", "5",
        "--max-steps", "0"]


def _train(data, out, *extra):
    return [sys.executable, "-m", "segedu", "train", "--data-dir", str(data), "--out", str(out), *ARGS, *extra]


def _without_time(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_kill_9_then_resume_matches_an_uninterrupted_run(tiny_data, tmp_path):
    whole = tmp_path / "whole"
    subprocess.run(_train(tiny_data, whole), check=True, capture_output=True, timeout=300)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train(tiny_data, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill it in the middle of the second epoch, after mid-epoch checkpoints were written
    deadline = time.time() + 240
    while time.time() < deadline and len(read_metrics(killed)) < 1:
        time.sleep(0.02)
    time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(read_metrics(killed)) < 6, "the run finished before it was killed"
    state = checkpoint.load(killed / "last.pt")  # written atomically: never half a file
    assert state["step"] >= 1

    resumed = subprocess.run([sys.executable, "-m", "segedu", "train", "--resume", str(killed)],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert _without_time(read_metrics(killed)) == _without_time(read_metrics(whole))
