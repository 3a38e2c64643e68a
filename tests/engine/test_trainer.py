"""The training loop: run directory, reproducibility, accumulation, schedules, averaging, failures."""
import copy
import dataclasses
import json
import math

import pytest
import torch
from torch.optim import swa_utils

from segedu import models
from segedu.engine import Trainer, TrainConfig, train
from segedu.engine.runlog import read_metrics
from segedu.errors import SegeduError

# the test nets: NoNormNet is the model the torchrun tests train (that file runs as a script, so it
# holds the definitions)
from distributed_worker import BNNet, NoNormNet  # noqa: E402


@pytest.fixture(autouse=True)
def nonorm_registered():
    """The test models under registry names for each test only: the registry's other users
    (the every-model tests) must not meet them."""
    added = [name for name, net in (("test_nonorm", NoNormNet), ("test_bnnet", BNNet))
             if name not in models.available() and models.register(name)(net)]
    yield
    for name in added:
        models._BUILDERS.pop(name)


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
    trainer = train(dataclasses.replace(config, model="fcn8s", ema_decay=0.9, swa_start=1, swa_every=1, epochs=2))
    assert (trainer.run_dir / "swa.pt").is_file()
    assert trainer.history[-1].get("swa") is True and "val_miou" in trainer.history[-1]
    assert trainer.history[-1]["snapshots"] == 4  # the 4 steps of epoch 2 (19 images in batches of 4)
    best = torch.load(trainer.run_dir / "best.pt", weights_only=False)
    assert best["weights"] in ("ema", "swa")


def test_swa_with_fewer_than_4_snapshots_is_refused(config):
    # 19 images in batches of 4: 4 steps per epoch; from epoch 1 of 2, once per epoch: 1 snapshot
    with pytest.raises(SegeduError, match=r"swa averages 1 snapshot \(one every 4 optimiser steps after step 4 of 8\); "
                                          "use at least 4: lower swa_every or start earlier"):
        Trainer(dataclasses.replace(config, swa_start=1, epochs=2))
    with pytest.raises(SegeduError, match=r"swa averages 3 snapshots \(one every 2 optimiser steps after step 2 of 8\)"):
        Trainer(dataclasses.replace(config, swa_start_step=2, swa_every=2, epochs=2))
    assert Trainer(dataclasses.replace(config, swa_start=1, epochs=2, debug=True)).swa is not None  # debug: paths only


def _swa_config(config, **changes):
    """19 images in batches of 2: 9 steps per epoch, 18 in all; SWA after step 6, every 3 steps:
    snapshots at steps 9, 12, 15 and 18, SWALR annealing 1e-2 -> 2e-3 over 3 steps."""
    return dataclasses.replace(config, model="test_bnnet", model_options={}, batch_size=2, epochs=2, val_split=None,
                               scheduler="constant", lr=1e-2, swa_lr=2e-3, swa_start_step=6, swa_every=3, **changes)


def test_swa_is_the_mean_of_its_snapshots_at_swalr_rates_with_recomputed_batch_norm(config, monkeypatch):
    trainer = Trainer(_swa_config(config))
    snapshots, steps, rates, bn_pass = [], [], [], {}
    real_update = trainer.swa.update_parameters

    def recording_update(model):
        snapshots.append({k: v.detach().clone() for k, v in model.named_parameters()})
        steps.append(trainer.step)
        real_update(model)

    real_update_bn = swa_utils.update_bn

    def recording_update_bn(loader, model, device=None):
        batches = [b[0] if isinstance(b, (list, tuple)) else b for b in loader]
        bn_pass.update(batches=batches, before=copy.deepcopy(model.module))
        real_update_bn(batches, model, device)

    monkeypatch.setattr(trainer.swa, "update_parameters", recording_update)
    monkeypatch.setattr(swa_utils, "update_bn", recording_update_bn)
    trainer.optimizer.register_step_pre_hook(lambda opt, args, kwargs: rates.append(opt.param_groups[0]["lr"]))
    trainer.fit()

    assert steps == [9, 12, 15, 18] and trainer.history[-1]["snapshots"] == 4
    saved = torch.load(trainer.run_dir / "swa.pt", weights_only=False)["model"]
    for name in snapshots[0]:
        torch.testing.assert_close(saved[name], torch.stack([s[name] for s in snapshots]).mean(0))

    # steps 1-7 at the constant 1e-2 (the phase's first step still uses the schedule's last rate);
    # then SWALR's cosine anneal over 3 steps (torch.optim.swa_utils.SWALR), then 2e-3
    anneal = [2e-3 + (1e-2 - 2e-3) * (1 + math.cos(math.pi * min(j / 3, 1))) / 2 for j in range(1, 12)]
    assert rates == pytest.approx([1e-2] * 7 + anneal) and rates[-1] == pytest.approx(2e-3)

    # batch norm's statistics of the saved average: the mean over the pass's batches of each batch's
    # mean and unbiased variance of the normalised layer's input under the averaged weights
    model = bn_pass["before"].train()
    inputs = []
    model.body[1].register_forward_hook(lambda m, args, out: inputs.append(args[0].detach()))
    with torch.no_grad():
        for batch in bn_pass["batches"]:
            model(batch)
    mean = torch.stack([x.mean((0, 2, 3)) for x in inputs]).mean(0)
    var = torch.stack([x.var((0, 2, 3), unbiased=True) for x in inputs]).mean(0)
    torch.testing.assert_close(saved["body.1.running_mean"], mean)
    torch.testing.assert_close(saved["body.1.running_var"], var)
    assert not torch.allclose(bn_pass["before"].body[1].running_mean, mean)  # not the live model's statistics


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_is_the_closed_form_average_of_weights_and_batch_norm_statistics(config, warmup):
    decay = 0.4  # the warm-up (1 + t) / (10 + t) is below it for t < 5 updates, above it after
    trainer = Trainer(dataclasses.replace(config, model="test_bnnet", model_options={}, batch_size=2, epochs=1,
                                          max_steps=8, val_split=None, ema_decay=decay, ema_warmup=warmup))
    live = []
    trainer.optimizer.register_step_post_hook(lambda opt, args, kwargs: live.append(
        {k: v.detach().to(torch.float64).clone() for k, v in trainer.model.state_dict().items()}))
    trainer.fit()
    assert len(live) == trainer.step == 8 and int(trainer.ema.n_averaged) == 8
    expected = dict(live[0])  # the first update copies the weights
    for t, weights in enumerate(live[1:], start=1):  # t: updates before this one
        d = min(decay, (1 + t) / (10 + t)) if warmup else decay
        expected = {k: d * expected[k] + (1 - d) * weights[k] for k in weights}
    averaged = trainer.ema.module.state_dict()
    for name, value in expected.items():
        if name.endswith("num_batches_tracked"):  # a count: the live model's, not an average
            assert averaged[name].dtype == torch.int64 and int(averaged[name]) == int(live[-1][name]) == 8
        else:
            torch.testing.assert_close(averaged[name].double(), value, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(averaged["body.1.running_mean"].double(), live[-1]["body.1.running_mean"])


def test_swa_and_ema_resume_mid_phase_to_the_same_average(config, tmp_path, monkeypatch, interrupt):
    """Killed after step 13 (mid-epoch, between the snapshots of steps 12 and 15), resumed: the same
    snapshots at the same steps, the same averages, the same metrics as an uninterrupted run."""
    whole = train(_swa_config(config, ema_decay=0.9, checkpoint_every=1))

    cut = _swa_config(config, ema_decay=0.9, checkpoint_every=1, out=str(tmp_path / "cut"))
    interrupt(Trainer(cut), "_save_last", 13)
    resumed = Trainer(cut, resume=True)
    assert (resumed.step, resumed.batch_in_epoch, int(resumed.swa.n_averaged)) == (13, 4, 2)  # step 4 of epoch 2
    steps, real_update = [], resumed.swa.update_parameters
    monkeypatch.setattr(resumed.swa, "update_parameters", lambda model: (steps.append(resumed.step), real_update(model)))
    resumed.fit()
    assert steps == [15, 18]
    for tag in ("swa.pt", "best.pt"):
        a = torch.load(whole.run_dir / tag, weights_only=False)["model"]
        b = torch.load(resumed.run_dir / tag, weights_only=False)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), tag
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(read_metrics(resumed.run_dir)) == strip(read_metrics(whole.run_dir))


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


# --- the trainer tells a step-dependent loss the step ------------------------------------------------

def _small_loss_config(config, **changes):
    """19 images in batches of 4: 4 steps an epoch, 8 in all; small-loss selection ramping to keep 0.5
    over 3 steps: R(T) = 1 - 0.5 * min(T / 3, 1)."""
    return dataclasses.replace(config, model="test_bnnet", model_options={}, epochs=2, val_split=None,
                               scheduler="constant", loss="small_loss(keep=0.5, ramp_steps=3)", **changes)


def _record_shares(monkeypatch):
    """(step, kept share) that each forward of the small-loss selection used."""
    from segedu.losses import SmallLossCrossEntropy

    seen, real_forward = [], SmallLossCrossEntropy.forward

    def forward(self, logits, target):
        seen.append((self.step, self.kept_share()))
        return real_forward(self, logits, target)

    monkeypatch.setattr(SmallLossCrossEntropy, "forward", forward)
    return seen


def test_the_loss_learns_the_step_after_every_optimiser_step(config, monkeypatch):
    seen = _record_shares(monkeypatch)
    trainer = train(_small_loss_config(config))
    (selection,) = trainer.loss_fn.losses
    assert selection.step == trainer.step == 8
    # micro-batch k (0-based) runs after k optimiser steps
    assert seen == [(k, pytest.approx(1 - 0.5 * min(k / 3, 1))) for k in range(8)]
    assert [share for _, share in seen[:4]] == pytest.approx([1.0, 5 / 6, 2 / 3, 0.5])


def test_a_resumed_run_tells_the_loss_the_step_before_its_first_micro_batch(config, tmp_path, monkeypatch, interrupt):
    """Stopped after step 2 (mid-epoch 1), resumed: the loss keeps 2/3 of the pixels at once, not all
    of them as at step 0, and the run ends with the weights of an uninterrupted one."""
    whole = train(_small_loss_config(config, checkpoint_every=1, out=str(tmp_path / "whole")))

    cut = _small_loss_config(config, checkpoint_every=1, out=str(tmp_path / "cut"))
    interrupt(Trainer(cut), "_save_last", 2)
    resumed = Trainer(cut, resume=True)
    (selection,) = resumed.loss_fn.losses
    assert (resumed.step, selection.step) == (2, 2)
    assert selection.kept_share() == pytest.approx(2 / 3)
    seen = _record_shares(monkeypatch)
    resumed.fit()
    assert seen[0] == (2, pytest.approx(2 / 3)) and [step for step, _ in seen] == list(range(2, 8))
    a = torch.load(whole.run_dir / "last.pt", weights_only=False)["model"]
    b = torch.load(resumed.run_dir / "last.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_resumed_epoch_counts_the_seconds_trained_before_its_checkpoint(config, tmp_path, interrupt):
    """Run times add up across resumes: the epoch record written after a mid-epoch resume holds the
    seconds of the micro-batches trained before the checkpoint as well as those after it."""
    cut = dataclasses.replace(config, epochs=1, checkpoint_every=1, out=str(tmp_path / "cut"))
    interrupt(Trainer(cut), "_save_last", 2)
    saved = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    assert saved["batch_in_epoch"] > 0 and saved["epoch_seconds"] > 0
    resumed = Trainer(cut, resume=True)
    assert resumed.epoch_seconds_before == saved["epoch_seconds"]
    resumed.fit()
    (record,) = read_metrics(tmp_path / "cut")
    assert record["seconds"] >= round(saved["epoch_seconds"], 2)


def test_validation_on_a_cpu_loads_in_this_process_and_scores_as_worker_processes_do(config):
    from segedu.data import dataset
    from segedu.engine.trainer import evaluate_model

    trainer = Trainer(dataclasses.replace(config, num_workers=2, epochs=1))
    trainer.fit()
    assert trainer._train_loader(0).num_workers == 2  # training still loads in the workers asked for
    assert trainer._val_loader().num_workers == 0
    in_workers = evaluate_model(trainer.model, dataset.make_eval_loader(trainer.val_data, config.batch_size, 2),
                                trainer.num_classes, trainer.device, config.image_size, trainer.dtype,
                                trainer.config.channels_last)
    assert float(in_workers["miou"]) == trainer.history[-1]["val_miou"]
    # the run's record keeps an absent class's NaN IoU as None
    assert [None if math.isnan(v) else float(v) for v in in_workers["iou"]] == trainer.history[-1]["val_iou"]
