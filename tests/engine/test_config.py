"""TrainConfig checks every value when it is made, and `segedu train` refuses bad input in one line,
before any data or model is built, and never writes over a run unasked."""
import dataclasses
import json
import re
import types
from pathlib import Path

import pytest
import torch

from segedu import cli, profiles
from segedu.engine import TrainConfig
from segedu.experiments import ablation
from segedu.engine.config import ConfigError
from segedu.errors import SegeduError

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("epochs", "x"), ("batch_size", 0), ("image_size", 0), ("image_size", [240, 0]),
    ("image_size", [1, 2, 3]), ("image_size", "256"), ("accumulate", 0), ("max_steps", -1), ("lr", 0),
    ("lr", -1e-3), ("weight_decay", -1), ("num_workers", -1), ("warmup_steps", -1), ("label_smoothing", 1.0),
    ("mix_p", 1.5), ("momentum", 1.0), ("ema_decay", 1.0), ("ema_decay", 0), ("swa_start", -1),
    ("swa_start_step", -1), ("swa_every", 0), ("ema_warmup", "maybe"),
    ("checkpoint_every", -1), ("grad_clip", 0), ("class_head", -1.0), ("suppress_threshold", 0),
    ("scheduler", "step"), ("optimizer", "adam"), ("amp", "fp8"), ("sampler", "random"), ("crop", "centre"),
    ("mix", "mixcut"), ("profile", "fast"), ("class_weights", "inverse_sqrt"), ("loss", "ce+dcie"),
    ("loss", "ce+*dice"), ("augment", ["flip", "blur"]), ("augment", ["scale"]), ("channels_last", "maybe"),
])
def test_a_bad_value_is_refused_when_the_config_is_made(field, value):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**{field: value})
    message = str(caught.value)
    assert caught.value.field == field and message.startswith(f"{field}: ") and "\n" not in message
    shown = repr(value[-1] if field == "augment" else value)
    assert shown in message or "loss spec" in message, message
    with pytest.raises(ConfigError):  # dataclasses.replace makes a TrainConfig too
        dataclasses.replace(TrainConfig(), **{field: value})


def test_swa_takes_one_start_and_swa_every_needs_one():
    with pytest.raises(SegeduError, match=r"give swa_start \(an epoch, 1\) or swa_start_step \(an optimiser step, 5\), not both"):
        TrainConfig(swa_start=1, swa_start_step=5).resolved()
    with pytest.raises(SegeduError, match="swa_every needs swa_start or swa_start_step"):
        TrainConfig(swa_every=2).resolved()
    assert TrainConfig(swa_start_step=0, swa_every=2).resolved().swa_start_step == 0  # step 0: SWA from the start


def test_messages_say_what_is_allowed():
    def message(**values):
        with pytest.raises(SegeduError) as caught:
            TrainConfig(**values)
        return str(caught.value)

    assert message(epochs=0) == "epochs: 0 is not a whole number >= 1."
    assert "a number in [0, 1)" in message(label_smoothing=1)
    assert "unknown scheduler 'step'; choose one of cosine, poly, plateau, constant" in message(scheduler="step")
    assert "unknown loss 'dcie'" in message(loss="ce+dcie")
    crop = message(augment=["crop_non_empty"])
    assert "--crop crop_non_empty" in crop and "crop='crop_non_empty'" in crop  # a shell user and a Python one
    assert "did you mean 'model'" in message(modle="fcn8s")


def test_model_options_are_checked_against_what_the_model_declares():
    with pytest.raises(ConfigError, match=r"option width='abc' of model 'fcn8s' must be a number") as caught:
        TrainConfig(model="fcn8s", model_options={"width": "abc"})
    assert caught.value.option == "width"
    with pytest.raises(ConfigError, match=r"has no option 'widht' \(did you mean 'width'\?\)"):
        TrainConfig(model="fcn8s", model_options={"widht": 0.5})
    with pytest.raises(ConfigError, match="pad100=3 .* must be true or false"):
        TrainConfig(model="fcn8s", model_options={"pad100": 3})
    with pytest.raises(ConfigError, match="width=0 .* must be > 0"):
        TrainConfig(model="fcn8s", model_options={"width": 0})
    ok = TrainConfig(model="fcn8s", model_options={"width": 1, "pad100": True, "pretrained_backbone": "w.pth"})
    assert ok.model_options == {"width": 1, "pad100": True, "pretrained_backbone": "w.pth"}
    # an unknown model is not this check's to report: building it says so, with the closest name
    assert TrainConfig(model="fcn9s", model_options={"x": 1}).model == "fcn9s"
    with pytest.raises(SegeduError, match="unknown model 'fcn9s'"):
        TrainConfig(model="fcn9s").resolved()


def test_an_image_size_is_a_side_or_a_pair_stored_as_a_json_list(tmp_path):
    assert TrainConfig(image_size=256).image_size == 256
    pair = TrainConfig(image_size=[240, 320])
    assert pair.image_size == (240, 320)
    assert json.loads(pair.to_json())["image_size"] == [240, 320]
    (tmp_path / "config.json").write_text(pair.to_json())
    assert TrainConfig.load(tmp_path) == pair
    args = cli.build_parser().parse_args(["train", "--image-size", "240,320"])
    assert args.image_size == (240, 320)
    assert cli.build_parser().parse_args(["train", "--image-size", "256"]).image_size == 256


def test_an_explicit_value_is_never_swapped_for_the_profiles():
    c = TrainConfig(profile="smoke", max_steps=0, num_workers=0, epochs=3, batch_size=2, image_size=16).resolved()
    assert (c.max_steps, c.num_workers, c.epochs, c.batch_size, c.image_size) == (0, 0, 3, 2, 16)
    with pytest.raises(ConfigError, match="epochs: 0 is not"):
        TrainConfig(profile="smoke", epochs=0)


@pytest.fixture()
def step_cap(monkeypatch):
    """Sets SEGEDU_MAX_STEPS; the profile named is the one used (the suite forces SEGEDU_PROFILE=smoke)."""
    monkeypatch.delenv(profiles.PROFILE_ENV, raising=False)
    return lambda value: monkeypatch.setenv(profiles.MAX_STEPS_ENV, value)


def test_the_step_cap_from_the_environment_lowers_every_runs_cap(step_cap):
    assert profiles.MAX_STEPS_ENV == "SEGEDU_MAX_STEPS"
    assert TrainConfig(profile="cpu").resolved().max_steps is None  # no cap set: cpu runs every epoch
    step_cap("10")
    # the smaller of the two wins: the profile's (cpu: none, smoke: 4), or an explicit one (0: none)
    got = [TrainConfig(profile=p, max_steps=m).resolved().max_steps
           for p, m in [("cpu", None), ("smoke", None), ("cpu", 3), ("cpu", 50), ("cpu", 0)]]
    assert got == [10, 4, 3, 10, 10]
    assert TrainConfig(profile="cpu", debug=True).resolved().max_steps == 2
    assert profiles.get("cpu").max_steps == 10 and profiles.PROFILES["cpu"].max_steps is None  # the table stays
    assert profiles.get("smoke") is profiles.PROFILES["smoke"]
    step_cap("")  # empty: unset
    assert TrainConfig(profile="cpu").resolved().max_steps is None


@pytest.mark.parametrize("value", ["abc", "0", "-3", "2.5", "1e3"])
def test_a_bad_step_cap_is_one_line_naming_the_variable(step_cap, value):
    step_cap(value)
    with pytest.raises(SegeduError) as caught:
        TrainConfig(profile="cpu").resolved()
    message = str(caught.value)
    assert message.startswith(f"SEGEDU_MAX_STEPS={value!r} is not a whole number >= 1") and "\n" not in message


def test_a_capped_plan_fits_the_swa_phase_inside_the_cap(step_cap):
    """ablation.plan sizes SWA by the profile's cap; under SEGEDU_MAX_STEPS the profile carries it, so
    the SWA run keeps the trainer's minimum of 4 snapshots instead of failing."""
    def swa(prof):  # cpu: 5 epochs, batch 8: 384 images give 240 optimiser steps
        entry = ablation.plan(prof, ["swa"], [0], train_images=384)[1]
        return entry["swa_start_step"], entry["swa_every"]

    assert swa(profiles.get("cpu")) == (184, 7)  # phase = round(240 / 4) = 60 steps, every 60 // 8 = 7
    step_cap("10")
    start, every = swa(profiles.get("cpu"))  # phase = max(4, round(10 / 4)) = 4 steps, every 1
    assert (start, every) == (6, 1) and (10 - start) // every == 4  # the trainer's count of snapshots


def test_a_capped_run_stops_at_the_cap_and_is_never_reused_as_the_full_run(step_cap, config):
    from segedu.engine import runs, train

    full = dataclasses.replace(config, epochs=3)  # 24 tiny images: more than 3 steps of batch 4
    step_cap("3")
    trainer = train(full)
    assert trainer.step == 3 and [r["step"] for r in trainer.history] == [3]
    assert json.loads((Path(full.out) / "config.json").read_text())["max_steps"] == 3
    assert runs.finished(full.out, full) is not None  # the same capped execution: reused
    step_cap("")
    assert runs.finished(full.out, full) is None  # uncapped, the config differs: trained again


def test_paths_are_stored_as_text():
    c = TrainConfig(data_dir=Path("data/x"), out=Path("runs/y"))
    assert (c.data_dir, c.out) == ("data/x", "runs/y") and json.loads(c.to_json())["out"] == "runs/y"


# ----------------------------------------------------------------------------- the flags
def _train_parser():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return subparsers.choices["train"]


def test_every_field_is_a_flag():
    actions = {a.dest: a for a in _train_parser()._actions}
    for field in dataclasses.fields(TrainConfig):
        assert field.name in actions, f"TrainConfig.{field.name} has no `segedu train` flag"
        expected = "--option" if field.name == "model_options" else "--" + field.name.replace("_", "-")
        assert expected in actions[field.name].option_strings
        assert actions[field.name].default is None  # not given: the config file's value stays
    args = _train_parser().parse_args(["--momentum", "0.8", "--poly-power", "2", "--aux-weight", "0.2",
                                       "--save-epochs", "--no-compile", "--option", "pad100=true"])
    assert (args.momentum, args.poly_power, args.aux_weight, args.save_epochs, args.compile) == (0.8, 2.0, 0.2, True, False)


def test_readme_lists_the_generated_flags():
    text = README.read_text()
    found = re.search(r"<!-- train-flags:start -->\n(.*?)<!-- train-flags:end -->", text, re.S)
    assert found, "README.md lost its <!-- train-flags:start --> / <!-- train-flags:end --> markers"
    assert found.group(1) == cli.train_flags_markdown(), (
        "README.md's table of `segedu train` flags is out of date; replace it with the output of "
        ".venv/bin/python -c 'from segedu.cli import train_flags_markdown as t; print(t(), end=\"\")'")


@pytest.fixture()
def trained(monkeypatch):
    """Replace the training by a record of the config it was given (nothing is built or written)."""
    seen = []

    def fake_train(config, resume=False):
        seen.append((config, resume))
        return types.SimpleNamespace(rank=1)  # a rank other than 0 reports nothing

    monkeypatch.setattr("segedu.engine.train", fake_train)
    return seen


def _error(capsys, *argv) -> str:
    assert cli.main(["train", *map(str, argv)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("segedu: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("argv, expected", [
    (["--epochs", "0"], "--epochs: 0 is not a whole number >= 1"),
    (["--epochs", "x"], "--epochs: 'x' is not a whole number >= 1"),
    (["--lr", "0"], "--lr: 0.0 is not a number > 0"),
    (["--batch-size", "-2"], "--batch-size: -2 is not"),
    (["--image-size", "240,0"], "--image-size: (240, 0) is not an image size"),
    (["--scheduler", "step"], "--scheduler: unknown scheduler 'step'"),
    (["--augment", "scale"], "use --crop scale"),
    (["--loss", "ce+dcie"], "--loss: loss spec 'ce+dcie': unknown loss 'dcie'"),
    (["--option", "width"], "--option width: write KEY=VALUE"),
    (["--option", "width=abc"], "--option: option width='abc' of model 'fcn8s' must be a number"),
    (["--width", "abc"], "--width: option width='abc'"),
])
def test_a_bad_flag_is_one_line_naming_it(argv, expected, capsys, trained, tmp_path):
    if expected == "use --crop scale":
        expected = "choose it with --crop scale"
    assert expected in _error(capsys, *argv, "--out", tmp_path / "run")
    assert not trained and not (tmp_path / "run").exists()


def test_a_config_file_that_is_not_an_object_or_has_a_bad_field_names_both(capsys, trained, tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    assert f"{listed}: holds a JSON list" in _error(capsys, "--config", listed, "--out", tmp_path / "run")
    bad = tmp_path / "bad.json"
    bad.write_text('{"epochs": "x"}')
    assert f"{bad}: epochs: 'x' is not a whole number >= 1" in _error(capsys, "--config", bad)
    # a file value that no longer fits after a flag (its model options, for another --model)
    other = tmp_path / "other.json"
    other.write_text('{"model": "fcn8s", "model_options": {"pad100": true}}')
    assert f"{other}: model_options: model 'unet' has no option 'pad100'" in _error(
        capsys, "--config", other, "--model", "unet", "--out", tmp_path / "run")
    assert not trained


def test_an_out_that_holds_files_is_refused_unless_overwrite(capsys, trained, tmp_path):
    run = tmp_path / "run"
    (run / "epochs").mkdir(parents=True)
    files = {"config.json": "{}", "best.pt": "old weights", "epochs/epoch1.pt": "old"}
    for name, text in files.items():
        (run / name).write_text(text)
    err = _error(capsys, "--profile", "smoke", "--out", run)
    assert f"--out {run} already holds files" in err and "--resume" in err and "--overwrite" in err
    assert {str(p.relative_to(run)): p.read_text() for p in run.rglob("*") if p.is_file()} == files
    assert not trained

    assert cli.main(["train", "--profile", "smoke", "--out", str(run), "--overwrite"]) == 0
    assert trained[-1][0].out == str(run) and not any(run.iterdir())  # the earlier run's files are gone
    assert "--overwrite: deleted" in capsys.readouterr().out

    elsewhere = tmp_path / "not-a-run"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("mine")
    assert "not a run" in _error(capsys, "--out", elsewhere, "--overwrite")
    assert (elsewhere / "notes.txt").read_text() == "mine"
    assert cli.main(["train", "--profile", "smoke", "--out", str(tmp_path / "new")]) == 0  # a new folder is fine


def test_without_out_a_run_goes_to_the_first_free_run_directory(capsys, trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--profile", "smoke"]) == 0
    assert trained[-1][0].out == "runs/run" and "run directory runs/run" in capsys.readouterr().out
    (tmp_path / "runs" / "run").mkdir(parents=True)
    (tmp_path / "runs" / "run" / "config.json").write_text("{}")
    (tmp_path / "runs" / "run-2").mkdir()  # empty: free
    assert cli.main(["train", "--profile", "smoke"]) == 0
    assert trained[-1][0].out == "runs/run-2" and "run directory runs/run-2" in capsys.readouterr().out
    (tmp_path / "runs" / "run-2" / "metrics.jsonl").write_text("")
    assert cli.main(["train", "--profile", "smoke"]) == 0
    assert trained[-1][0].out == "runs/run-3"
    assert (tmp_path / "runs" / "run" / "config.json").read_text() == "{}"


def test_resume_with_other_flags_is_refused_naming_them(capsys, trained, tmp_path):
    err = _error(capsys, "--resume", tmp_path / "run", "--lr", "0.1", "--no-compile", "--device", "cpu")
    assert "--resume" in err and "leave out --lr, --no-compile, --device" in err
    assert not trained and not (tmp_path / "run").exists()
    assert "--overwrite" in _error(capsys, "--resume", tmp_path / "run", "--overwrite")


# --- mixed precision: "auto" resolves to a concrete precision, recorded in the run's config ---

@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "off")])
def test_auto_precision_on_a_cpu_is_bf16_only_with_bf16_instructions(monkeypatch, native, expected):
    from segedu import env

    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert env.resolve_amp("auto", cpu) == expected
    for explicit in ("off", "bf16"):  # an explicit choice is kept whatever the machine
        assert env.resolve_amp(explicit, cpu) == explicit
    assert TrainConfig(model="fcn8s", amp="auto", device="cpu", profile="smoke").resolved().amp == expected


@pytest.mark.parametrize("bf16, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_precision_on_a_gpu_is_bf16_where_it_has_it_else_fp16(monkeypatch, bf16, expected):
    from segedu import env

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert env.resolve_amp("auto", torch.device("cuda")) == expected
    assert TrainConfig(model="fcn8s", amp="auto", device="cuda", profile="smoke").resolved().amp == expected


def test_an_unset_precision_is_the_profiles_and_lands_resolved_in_the_config(monkeypatch):
    from segedu import env

    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setitem(profiles.PROFILES, "smoke", dataclasses.replace(profiles.PROFILES["smoke"], amp="off"))
    assert TrainConfig(model="fcn8s", device="cpu", profile="smoke").resolved().amp == "off"
    assert TrainConfig(model="fcn8s", device="cpu", profile="smoke", amp="bf16").resolved().amp == "bf16"
    monkeypatch.setitem(profiles.PROFILES, "smoke", dataclasses.replace(profiles.PROFILES["smoke"], amp="auto"))
    resolved = TrainConfig(model="fcn8s", device="cpu", profile="smoke").resolved()
    assert resolved.amp == "bf16" and json.loads(resolved.to_json())["amp"] == "bf16"
    assert resolved.resolved().amp == "bf16"  # resolving twice changes nothing


def test_the_cpu_bf16_check_reads_torchs_cpu_capabilities(monkeypatch):
    from segedu import env

    for amx, avx in ((True, False), (False, True), (False, False)):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda avx=avx: avx)
        assert env.cpu_has_native_bf16() is (amx or avx)
