"""Distributed training with torchrun on this machine's CPU (gloo): the same code path as on GPUs.

Each test launches real ``torchrun`` processes (``python -m torch.distributed.run --standalone``),
either of ``segedu train`` or of ``distributed_worker.py`` (which registers a model without batch
norm, for the step equality).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from segedu import metrics
from segedu.data.dataset import PerImageSeeds
from segedu.data.sampler import ClassAwareSampler
from segedu.engine import checkpoint, distributed
from segedu.engine.evaluate import evaluate
from segedu.engine.runlog import read_metrics

WORKER = Path(__file__).with_name("distributed_worker.py")
sys.path.insert(0, str(WORKER.parent))
import distributed_worker  # noqa: E402  (the fixed predictions of the metric task)

TRAIN = ["--profile", "smoke", "--image-size", "32", "--batch-size", "2", "--num-workers", "0", "--device", "cpu",
         "--max-steps", "0", "--seed", "4"]


def torchrun(nproc: int, *args, wait: bool = True, timeout: int = 300):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 processes on 2 cores
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def segedu_train(nproc: int, data, out, *extra, wait: bool = True):
    return torchrun(nproc, "-m", "segedu", "train", "--data-dir", str(data), "--out", str(out), *TRAIN, *extra,
                    wait=wait)


def _processes_naming(path) -> list[int]:
    """Live processes with ``path`` as an argument of their command line (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # not a process, or it ended meanwhile
        if entry.name.isdigit() and str(path).encode() in arguments and state != "Z":
            found.append(int(entry.name))
    return found


def _without_time(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


# ----------------------------------------------------------------------------- (a) metrics
def test_all_reduced_metric_equals_the_single_process_metric(tmp_path):
    torchrun(2, str(WORKER), "metric", str(tmp_path))
    ranks = [torch.load(tmp_path / f"metric-rank{r}.pt", weights_only=False) for r in (0, 1)]
    logits, target = distributed_worker.fixed_predictions()
    shards = [rank[False]["shard"] for rank in ranks]
    assert sorted(shards[0] + shards[1]) == list(range(distributed_worker.IMAGES))  # each image once
    assert len(shards[0]) != len(shards[1])  # unequal shards (7 images): no padding, no repeats
    for per_image in (False, True):
        single = metrics.SegMetrics(distributed_worker.NUM_CLASSES, per_image=per_image)
        for i in range(distributed_worker.IMAGES):
            single.update(logits[i:i + 1], target[i:i + 1])
        reference = single.compute()
        for rank in ranks:
            got = rank[per_image]
            assert torch.equal(got["confusion"], single.confusion)
            for key in ("miou", "pixel_accuracy", "mean_accuracy", "fwiou", "mdice"):
                assert got[key] == pytest.approx(reference[key], rel=1e-12, abs=1e-12), (per_image, key)
            torch.testing.assert_close(got["iou"], reference["iou"], equal_nan=True)
    # and not vacuously: one process's own share scores differently from the whole set
    alone = metrics.SegMetrics(distributed_worker.NUM_CLASSES)
    for i in shards[0]:
        alone.update(logits[i:i + 1], target[i:i + 1])
    assert alone.compute()["miou"] != pytest.approx(ranks[0][False]["miou"])


def test_all_reduce_is_a_no_op_outside_a_process_group():
    logits, target = distributed_worker.fixed_predictions()
    scores = metrics.SegMetrics(distributed_worker.NUM_CLASSES)
    scores.update(logits, target)
    before = scores.confusion.clone()
    assert scores.all_reduce() is scores and torch.equal(scores.confusion, before)


# ----------------------------------------------------------------------------- (b) 2 x b == 1 x 2b
def test_two_processes_at_batch_b_take_the_step_of_one_process_at_batch_2b(tiny_data, tmp_path):
    runs = {}
    for name, nproc, batch in (("2x2", 2, 2), ("1x4", 1, 4), ("1x2", 1, 2)):
        (tmp_path / name).mkdir()
        torchrun(nproc, str(WORKER), "step", str(tmp_path / name), str(tiny_data), str(batch))
        runs[name] = torch.load(tmp_path / name / "weights.pt", weights_only=False)
    assert runs["2x2"]["world_size"] == 2 and runs["1x4"]["world_size"] == 1
    assert runs["2x2"]["step"] == runs["1x4"]["step"] == 1
    for key, value in runs["2x2"]["weights"].items():
        torch.testing.assert_close(value, runs["1x4"]["weights"][key], rtol=1e-5, atol=1e-6)
    # not vacuous: one process at batch 2 (half the images) takes another step
    assert any(not torch.allclose(value, runs["1x2"]["weights"][key]) for key, value in runs["2x2"]["weights"].items())


# ----------------------------------------------------------------------------- the CLI under torchrun
def test_segedu_train_under_torchrun_writes_one_run_directory_from_rank_0(tiny_data, tmp_path):
    out = tmp_path / "run"
    done = segedu_train(2, tiny_data, out, "--model", "unet", "--width", "0.125", "--epochs", "2", "--sync-bn")
    assert done.stdout.count("segedu train:") == 1 and "(2 processes)" in done.stdout  # rank 0 reports
    records = read_metrics(out)
    assert [r["epoch"] for r in records] == [1, 2]  # one line per epoch, not one per process
    assert json.loads((out / "env.json").read_text())["world_size"] == 2
    assert json.loads((out / "config.json").read_text())["sync_bn"] is True
    # the validation mIoU the distributed run recorded (each process scored half of the images,
    # confusion matrices summed) is the one a single process computes from the saved weights
    best = checkpoint.load(out / "best.pt")
    recorded = max(records, key=lambda r: r["val_miou"])
    single = evaluate(out / "best.pt", data_dir=str(tiny_data), device="cpu", batch_size=2)
    assert single["miou"] == pytest.approx(recorded["val_miou"], abs=1e-9)
    assert single["pixel_accuracy"] == pytest.approx(recorded["val_pixel_accuracy"], abs=1e-9)
    np.testing.assert_allclose(np.array(recorded["val_iou"], dtype=float), single["iou"].numpy(), atol=1e-9)
    assert best["scores"]["miou"] == pytest.approx(recorded["val_miou"], abs=1e-9)


def test_killed_distributed_run_resumes_to_the_uninterrupted_metrics(tiny_data, tmp_path):
    args = ("--model", "fcn16s", "--width", "0.125", "--epochs", "4", "--checkpoint-every", "1")
    whole = tmp_path / "whole"
    segedu_train(2, tiny_data, whole, *args)

    killed = tmp_path / "killed"
    launch = segedu_train(2, tiny_data, killed, *args, wait=False)
    deadline = time.time() + 240
    while time.time() < deadline and len(read_metrics(killed)) < 1:
        time.sleep(0.02)
    time.sleep(0.2)
    # SIGKILL torchrun and both workers at once, as a crashed machine would (torchrun starts its
    # workers in sessions of their own, so they are found by their command line, which names the run)
    for pid in _processes_naming(killed):
        os.kill(pid, signal.SIGKILL)
    launch.wait()
    deadline = time.time() + 30
    while _processes_naming(killed):
        assert time.time() < deadline, "a worker survived SIGKILL"
        time.sleep(0.05)
    assert len(read_metrics(killed)) < 4, "the run finished before it was killed"
    state = checkpoint.load(killed / "last.pt")
    assert state["world_size"] == 2 and state["step"] >= 1

    # resuming with another process count is refused, and leaves the run as it was
    wrong = subprocess.run([sys.executable, "-m", "segedu", "train", "--resume", str(killed)],
                           capture_output=True, text=True, timeout=120)
    assert wrong.returncode != 0 and "trained by 2 process(es)" in wrong.stderr
    assert checkpoint.load(killed / "last.pt")["step"] == state["step"]

    torchrun(2, "-m", "segedu", "train", "--resume", str(killed))
    assert _without_time(read_metrics(killed)) == _without_time(read_metrics(whole))


# ----------------------------------------------------------------------------- the data side, in-process
def test_class_aware_sampler_shards_one_draw_between_processes():
    presence = np.random.default_rng(0).random((30, 6)) < 0.3
    whole = list(ClassAwareSampler(presence, num_samples=30, seed=2))
    shards = [ClassAwareSampler(presence, num_samples=30, seed=2, rank=r, num_replicas=4) for r in range(4)]
    for r, shard in enumerate(shards):
        shard.set_epoch(0)
        assert len(shard) == 7 and list(shard) == whole[r::4][:7]
    shards[0].set_epoch(1)
    assert list(shards[0]) != whole[0::4][:7]  # a new draw every epoch


def test_per_image_seeds_give_an_image_the_same_augmentation_in_any_order(tiny_data):
    from segedu import profiles
    from segedu.data import dataset, transforms

    data = dataset.CocoSegmentation(tiny_data, "train", transforms.train_transform(profiles.get("smoke"), seed=0))
    seeded = PerImageSeeds(data, seed=1)
    forward = [seeded[i][0] for i in range(4)]
    backward = [seeded[i][0] for i in reversed(range(4))][::-1]
    for a, b in zip(forward, backward):
        assert torch.equal(a, b)
    seeded.set_epoch(1)
    assert not torch.equal(seeded[0][0], forward[0])  # another epoch, another draw


def test_shard_sampler_splits_without_padding():
    assert [list(distributed.ShardSampler(5, rank=r, num_replicas=2)) for r in (0, 1)] == [[0, 2, 4], [1, 3]]
    assert len(distributed.ShardSampler(5, rank=1, num_replicas=2)) == 2
