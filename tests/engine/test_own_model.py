"""Any nn.Module that maps (B, 3, H, W) to logits trains, reloads and predicts by its import path."""
from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from segedu import cli, models
from segedu.engine import evaluate, load_model, train
from segedu.errors import SegeduError

MODULE = textwrap.dedent('''
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        """Two convolutions at full resolution: logits at the input size."""

        def __init__(self, num_classes=11, hidden=8):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, num_classes, 1))

        def forward(self, x):
            return self.body(x)


    def build_tiny(num_classes, *, hidden=4):
        return TinyNet(num_classes, hidden)


    def not_a_model(num_classes):
        return "logits"
''')


@pytest.fixture()
def own_module(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_models"
    sys.modules.pop("my_models", None)


def test_create_imports_a_class_or_a_builder(own_module):
    net = models.create("my_models:TinyNet", num_classes=5, hidden=6)
    assert net.body[0].out_channels == 6 and net(torch.rand(2, 3, 17, 23)).shape == (2, 5, 17, 23)
    assert models.options_of("my_models:TinyNet") == ["hidden"]
    assert models.options_of("my_models:build_tiny") == ["hidden"]
    assert models.create("my_models:build_tiny", num_classes=3).body[0].out_channels == 4


def test_bad_import_paths_are_clear_errors(own_module):
    with pytest.raises(SegeduError, match="cannot import the module 'no_such_module'"):
        models.create("no_such_module:Net")
    with pytest.raises(SegeduError, match="has no class or function 'TinyNt' \\(did you mean 'TinyNet'\\?\\)"):
        models.create("my_models:TinyNt")
    with pytest.raises(SegeduError, match="returned a str, not a torch.nn.Module"):
        models.create("my_models:not_a_model")


def test_own_model_trains_reloads_and_runs_from_the_shell(own_module, config, tmp_path, capsys):
    config.model, config.model_options = "my_models:TinyNet", {"hidden": 4}
    config.epochs = 1  # the reloaded checkpoint is the best epoch's: with one epoch, the trainer's last weights
    trainer = train(config)
    model, loaded_config, payload = load_model(trainer.run_dir, "cpu")
    assert payload["model_name"] == "my_models:TinyNet" and model.body[0].out_channels == 4
    for a, b in zip(model.state_dict().values(), trainer.model.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    assert "width" not in loaded_config.model_options  # the profile's width is not forced on it
    scores = evaluate(trainer.run_dir, split="val", device="cpu")
    assert 0.0 <= scores["miou"] <= 1.0
    out = tmp_path / "shell_run"
    assert cli.main(["train", "--model", "my_models:build_tiny", "--option", "hidden=3", "--profile", "smoke",
                     "--data-dir", config.data_dir, "--image-size", "32", "--max-steps", "2", "--num-workers", "0",
                     "--device", "cpu", "--out", str(out)]) == 0
    assert load_model(out, "cpu")[0].body[0].out_channels == 3
