"""`segedu train && segedu evaluate && segedu predict` from a shell, and their errors."""
import json
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
