"""`segedu train && segedu evaluate && segedu predict` from a shell, and their errors."""
import json
import os
import subprocess
import sys

from segedu.inference import submission


def segedu(*args):
    return subprocess.run([sys.executable, "-m", "segedu", *map(str, args)], capture_output=True, text=True, timeout=600)


def test_train_evaluate_predict_from_a_shell(tiny_data, tmp_path):
    run = tmp_path / "run"
    out = segedu("train", "--model", "fcn8s", "--width", "0.125", "--profile", "smoke", "--data-dir", tiny_data,
                 "--image-size", "32", "--num-workers", "0", "--device", "cpu", "--out", run, "--loss", "ce+0.5*dice",
                 "--scheduler", "poly", "--warmup-steps", "1", "--augment", "flip", "cutout")
    assert out.returncode == 0, out.stderr
    assert "best val mIoU" in out.stdout
    assert json.loads((run / "config.json").read_text())["loss"] == "ce+0.5*dice"

    scores = tmp_path / "scores.json"
    out = segedu("evaluate", run, "--data-dir", tiny_data, "--device", "cpu", "--out", scores)
    assert out.returncode == 0, out.stderr
    written = json.loads(scores.read_text())
    assert len(written["iou"]) == 11 and len(written["confusion"]) == 11
    assert "confusion matrix" in out.stdout and "Battery" in out.stdout
    # the confusion matrix counts every labelled validation pixel once
    from segedu.data.dataset import CocoSegmentation

    val = CocoSegmentation(tiny_data, "val")
    labelled = sum(int((m != 255).sum()) for _, m in val)
    assert sum(map(sum, written["confusion"])) == labelled

    csv = tmp_path / "submission.csv"
    out = segedu("predict", run, "--data-dir", tiny_data, "--device", "cpu", "--out", csv)
    assert out.returncode == 0, out.stderr
    assert submission.validate(csv, tiny_data / "test.json") == len(json.loads((tiny_data / "test.json").read_text())["images"])


def test_cli_errors_are_one_line(tiny_data, tmp_path):
    out = segedu("train", "--model", "fcn9s", "--data-dir", tiny_data, "--out", tmp_path / "x", "--profile", "smoke")
    assert out.returncode == 2 and "unknown model 'fcn9s' (did you mean 'fcn8s'?)" in out.stderr
    assert "Traceback" not in out.stderr
    out = segedu("evaluate", tmp_path / "nothing-here")
    assert out.returncode == 2 and "no checkpoint there" in out.stderr
    out = segedu("train", "--data-dir", tmp_path / "missing", "--profile", "smoke", "--out", tmp_path / "y")
    assert out.returncode == 2 and "does not exist" in out.stderr
    out = segedu("predict", tmp_path / "nothing-here", "--out", tmp_path / "s.csv")
    assert out.returncode == 2 and not (tmp_path / "s.csv").exists()
    out = segedu("train", "--profile", "smoke", "--epochs", "0", "--out", tmp_path / "z")
    assert out.returncode == 2 and "--epochs: 0 is not a whole number >= 1" in out.stderr
    assert len(out.stderr.splitlines()) == 1 and not (tmp_path / "z").exists()
    taken = tmp_path / "taken"  # a run is never written over unasked
    taken.mkdir()
    (taken / "config.json").write_text("{}")
    out = segedu("train", "--profile", "smoke", "--data-dir", tiny_data, "--out", taken)
    assert out.returncode == 2 and "already holds files" in out.stderr and "--overwrite" in out.stderr
    assert [p.name for p in taken.iterdir()] == ["config.json"] and (taken / "config.json").read_text() == "{}"


def test_fast_path_flags_default_to_the_profile_and_can_be_switched_off(monkeypatch, tmp_path):
    """`--channels-last/--no-channels-last`, `--compile/--no-compile`, `--sync-bn`: unset, the profile decides."""
    from segedu import cli
    from segedu.engine import TrainConfig

    monkeypatch.delenv("SEGEDU_PROFILE", raising=False)  # the test suite forces smoke otherwise
    assert TrainConfig(profile="gpu").resolved().channels_last is True
    assert TrainConfig(profile="cpu").resolved().channels_last is True  # the CPU fast path, with amp="auto"
    assert TrainConfig(profile="smoke").resolved().channels_last is False
    assert TrainConfig(profile="gpu").resolved().compile is False
    assert TrainConfig(profile="gpu", channels_last=False).resolved().channels_last is False
    seen = {}

    def fake_train(config, resume=False):
        seen["config"] = config.resolved()
        raise SystemExit(0)

    monkeypatch.setattr("segedu.engine.train", fake_train)
    for flags, expected in (([], (True, False, False)), (["--no-channels-last", "--compile", "--sync-bn"],
                                                         (False, True, True))):
        args = cli.build_parser().parse_args(["train", "--profile", "gpu", "--out", str(tmp_path), *flags])
        try:
            args.func(args)
        except SystemExit:
            pass
        c = seen["config"]
        assert (c.channels_last, c.compile, c.sync_bn) == expected, flags


def test_a_new_run_starts_from_the_profiles_pretrained_encoder_as_the_books_runs_do(tiny_data, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SEGEDU_PROFILE"}  # the cpu profile, as a user asks for it

    def train(out, *extra):
        done = subprocess.run([sys.executable, "-m", "segedu", "train", "--profile", "cpu", "--data-dir", str(tiny_data),
                               "--image-size", "32", "--batch-size", "2", "--epochs", "1", "--max-steps", "1",
                               "--num-workers", "0", "--device", "cpu", "--out", str(tmp_path / out), *extra],
                              capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout, json.loads((tmp_path / out / "config.json").read_text())["model_options"]

    # what chapter 09 trains: DeepLab v2 fine-tuned from the course's ResNet-50
    stdout, options = train("v2", "--model", "deeplabv2", "--option", "depth=50")
    assert options["pretrained_backbone"] == "course"
    assert "deeplabv2 starts from the course pretrained encoder" in stdout
    # asked for from scratch: from scratch, and nothing said
    stdout, options = train("scratch", "--model", "deeplabv2", "--option", "depth=50",
                            "--option", "pretrained_backbone=false")
    assert options["pretrained_backbone"] is False and "starts from" not in stdout
    # U-Net trains from scratch, as in its paper, and FCN-8s without batch norm has no course encoder
    # (the course's VGG-16 has batch norm): both say so
    stdout, options = train("unet", "--model", "unet")
    assert "pretrained_backbone" not in options and "unet trains from scratch" in stdout
    stdout, options = train("fcn", "--model", "fcn8s")
    assert "pretrained_backbone" not in options and "vgg16_bn at width 0.25" in stdout
    stdout, options = train("fcn-bn", "--model", "fcn8s", "--option", "batch_norm=true")
    assert options["pretrained_backbone"] == "course"
    # a --config file holds a run's options as they were (one from before this default, say): kept
    recorded = tmp_path / "recorded.json"
    recorded.write_text(json.dumps({"model": "deeplabv2", "model_options": {"depth": 50}}))
    stdout, options = train("again", "--config", str(recorded))
    assert "pretrained_backbone" not in options and "starts from" not in stdout
