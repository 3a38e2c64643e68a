"""Failures from below segedu (memory, workers, disk, network) reach a shell user as one line of advice."""
from __future__ import annotations

import argparse
import errno
import os

import pytest
import torch
import torchvision

from segedu import cli, failures
from segedu.errors import SegeduError
from segedu.models.backbones import ResNet, load_imagenet


def _train_args(**values):
    return argparse.Namespace(command="train", batch_size=values.get("batch_size"),
                              image_size=values.get("image_size"))


@pytest.mark.parametrize("error", [
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total capacity)"),
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"),
    MemoryError(),
])
def test_out_of_memory_names_the_sizes_to_lower(error):
    message = failures.explain(_train_args(batch_size=16, image_size=512), error)
    assert message.startswith("out of memory")
    assert "--batch-size (now 16)" in message and "--image-size (now 512)" in message
    assert "\n" not in message


def test_out_of_memory_while_predicting_points_at_the_inference_options():
    args = argparse.Namespace(command="predict")
    message = failures.explain(args, RuntimeError("CUDA out of memory."))
    assert "--sliding-window" in message and "--ensemble" in message


def test_a_crashed_worker_suggests_loading_in_the_main_process():
    error = RuntimeError("DataLoader worker (pid 4242) is killed by signal: Bus error. It is possible that "
                         "dataloader's workers are out of shared memory.")
    message = failures.explain(_train_args(), error)
    assert "--num-workers 0" in message and "pid 4242" in message


def test_a_full_disk_names_the_path():
    error = OSError(errno.ENOSPC, "No space left on device", "/data/runs/r1/last.pt")
    assert failures.explain(_train_args(), error) == (
        "disk full while writing /data/runs/r1/last.pt; free space or choose another folder.")


def test_other_errors_are_bugs_and_keep_their_traceback():
    assert failures.explain(_train_args(), KeyError("x")) is None
    assert failures.explain(_train_args(), OSError(errno.EACCES, "Permission denied")) is None


@pytest.fixture
def failing_info(monkeypatch):
    """`segedu info` made to fail with a given exception (the parser binds cli._info when it is built)."""
    def make(error):
        def boom(args):
            raise error
        monkeypatch.setattr(cli, "_info", boom)
    monkeypatch.delenv(failures.DEBUG_ENV, raising=False)
    return make


def test_the_cli_prints_one_line_and_exits_2(failing_info, capsys):
    failing_info(RuntimeError("DataLoader worker (pid 7) exited unexpectedly"))
    assert cli.main(["info"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("segedu: error: a data-loader worker process crashed")
    assert "Traceback" not in err


def test_debug_keeps_the_traceback(failing_info, monkeypatch):
    failing_info(SegeduError("a user's mistake"))
    with pytest.raises(SegeduError):
        cli.main(["--debug", "info"])
    monkeypatch.setenv(failures.DEBUG_ENV, "1")
    with pytest.raises(SegeduError):
        cli.main(["info"])


def test_a_bug_is_not_hidden(failing_info):
    failing_info(ZeroDivisionError("a bug"))
    with pytest.raises(ZeroDivisionError):
        cli.main(["info"])


def test_offline_imagenet_weights_say_which_file_and_where_to_put_it(offline):
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    with pytest.raises(SegeduError) as caught:
        load_imagenet(ResNet(50), True)
    message = str(caught.value)
    cached = offline / os.path.basename(weights.url)
    assert weights.url in message and str(cached) in message and "Network is unreachable" in message


def test_the_file_put_there_loads_through_the_same_call(offline):
    """Offline, a state dict saved where the message says is what `pretrained_backbone=True` loads."""
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    torch.manual_seed(0)
    state = torchvision.models.resnet50().state_dict()
    cached = offline / os.path.basename(weights.url)
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    backbone = ResNet(50)
    load_imagenet(backbone, True)
    assert torch.equal(backbone.state_dict()["conv1.weight"], state["conv1.weight"])
    assert torch.equal(backbone.state_dict()["layer4.2.conv3.weight"], state["layer4.2.conv3.weight"])
