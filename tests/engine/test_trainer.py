"""The training loop: run directory, reproducibility, accumulation, schedules, averaging, failures."""
import dataclasses
import json
import math

import pytest
import torch

from segedu import models
from segedu.engine import Trainer, TrainConfig, train
from segedu.engine.runlog import read_metrics
from segedu.errors import SegeduError

# the same model the torchrun tests train (that file runs as a script, so it holds the definition)
from distributed_worker import NoNormNet  # noqa: E402


@pytest.fixture(autouse=True)
def nonorm_registered():
    if "test_nonorm" not in models.available():
        models.register("test_nonorm")(NoNormNet)
    yield


def test_run_directory_holds_config_env_metrics_and_checkpoints(config):
    trainer = train(config)
    run = trainer.run_dir
    for name in ("config.json", "env.json", "metrics.jsonl", "best.pt", "last.pt"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"] == "fcn32s" and saved["image_size"] == 32 and saved["seed"] == 0
    env = json.loads((run / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["seed"] == 0
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(0.0 <= r["val_miou"] <= 1.0 and len(r["val_iou"]) == 11 for r in records)
    assert trainer.best_miou == max(r["val_miou"] for r in records)


def test_same_config_twice_gives_the_same_numbers(config, tmp_path):
    first = train(config).history
    second = train(dataclasses.replace(config, out=str(tmp_path / "again"))).history
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(first) == strip(second)


def test_accumulation_equals_one_larger_batch(config, tmp_path):
    base = dataclasses.replace(config, model="test_nonorm", model_options={}, optimizer="adamw", scheduler="constant",
                               epochs=1, max_steps=1, val_split=None)
    big = Trainer(dataclasses.replace(base, batch_size=4, accumulate=1, out=str(tmp_path / "big")))
    small = Trainer(dataclasses.replace(base, batch_size=2, accumulate=2, out=str(tmp_path / "small")))
    small.model.load_state_dict(big.model.state_dict())
    big.fit()
    small.fit()
    assert big.step == small.step == 1
    for a, b in zip(big.model.parameters(), small.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_accumulation_differs_from_a_smaller_batch(config, tmp_path):
    """The equality above is not vacuous: one micro-batch of 2 gives another update."""
    base = dataclasses.replace(config, model="test_nonorm", model_options={}, scheduler="constant",
                               epochs=1, max_steps=1, val_split=None)
    big = Trainer(dataclasses.replace(base, batch_size=4, out=str(tmp_path / "big")))
    half = Trainer(dataclasses.replace(base, batch_size=2, out=str(tmp_path / "half")))
    half.model.load_state_dict(big.model.state_dict())
    big.fit()
    half.fit()
    assert any(not torch.allclose(a, b) for a, b in zip(big.model.parameters(), half.model.parameters()))


def test_warmup_then_cosine_learning_rates(config):
    c = dataclasses.replace(config, scheduler="cosine", warmup_steps=3, lr=0.1, epochs=2, val_split=None)
    trainer = Trainer(c)
    lrs = []
    for _ in range(trainer.total_steps):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.scheduler.step()
    # LinearLR from 1% to 100% over 3 steps, then cosine from 0.1 to 0.001 over the rest
    assert lrs[:3] == pytest.approx([0.001, 0.034, 0.067])
    rest = trainer.total_steps - 3
    cosine = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * t / rest)) / 2 for t in range(rest)]
    assert lrs[3:] == pytest.approx(cosine)


def test_poly_and_plateau_schedules_run(config):
    for scheduler in ("poly", "plateau"):
        trainer = train(dataclasses.replace(config, scheduler=scheduler, out=config.out + scheduler))
        assert len(trainer.history) == 2


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(config, monkeypatch):
    trainer = Trainer(dataclasses.replace(config, checkpoint_every=1))
    real = trainer.loss_fn
    calls = {"n": 0}

    def flaky(logits, target):
        calls["n"] += 1
        loss = real(logits, target)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(trainer, "loss_fn", flaky)
    with pytest.raises(SegeduError, match=r"loss \(nan\) became NaN or infinite at optimiser step 3 \(epoch 1, micro-batch 3\)"):
        trainer.fit()
    saved = torch.load(trainer.run_dir / "last.pt", weights_only=False)
    assert saved["step"] == 2 and all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_ema_and_swa_paths(config):
    trainer = train(dataclasses.replace(config, model="fcn8s", ema_decay=0.9, swa_start=1, epochs=2))
    assert (trainer.run_dir / "swa.pt").is_file()
    assert trainer.history[-1].get("swa") is True and "val_miou" in trainer.history[-1]
    best = torch.load(trainer.run_dir / "best.pt", weights_only=False)
    assert best["weights"] in ("ema", "swa")


def test_debug_mode_is_one_short_epoch(config):
    trainer = train(dataclasses.replace(config, debug=True, epochs=5))
    assert len(trainer.history) == 1 and trainer.step <= 2


def test_mixing_and_class_aware_sampler_paths(config):
    for mix in ("mixup", "cutmix", "copypaste"):
        c = dataclasses.replace(config, mix=mix, mix_p=1.0, sampler="class_aware", class_weights="median_frequency",
                                epochs=1, out=config.out + mix)
        assert train(c).history[0]["train_loss"] > 0


def test_bad_options_are_clear_errors(config):
    with pytest.raises(SegeduError, match="unknown scheduler 'step'"):
        Trainer(dataclasses.replace(config, scheduler="step"))
    with pytest.raises(SegeduError, match="fewer than accumulate=100"):
        Trainer(dataclasses.replace(config, accumulate=100))
    with pytest.raises(SegeduError, match="unknown training option"):
        TrainConfig.from_dict({"modle": "fcn8s"})
    with pytest.raises(SegeduError, match="cannot resume"):
        Trainer(dataclasses.replace(config, out=config.out + "-never"), resume=True)


def test_checkpoint_of_another_model_or_class_count_is_refused(config):
    from segedu.engine import checkpoint

    trainer = train(dataclasses.replace(config, epochs=1))
    state = checkpoint.load(trainer.run_dir)
    with pytest.raises(SegeduError, match="checkpoint of model 'fcn32s', but 'fcn8s' was asked for"):
        checkpoint.check_compatible(state, trainer.run_dir, "fcn8s", 11)
    with pytest.raises(SegeduError, match="checkpoint has 11 classes, but the data has 5"):
        checkpoint.check_compatible(state, trainer.run_dir, "fcn32s", 5)
    bad = trainer.run_dir / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SegeduError, match="cannot be read as a checkpoint"):
        checkpoint.load(bad)
