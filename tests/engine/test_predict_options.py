"""`segedu evaluate` / `segedu predict` with the inference tricks: every option, valid outputs, clear errors."""
import dataclasses
import json

import pytest
import torch

from segedu import cli, metrics, models
from segedu.data import IGNORE_INDEX, dataset
from segedu.engine import TrainConfig, checkpoint, evaluate, load_model, predict, train
from segedu.inference import submission
from segedu.inference.predict import predict_logits
from segedu.inference.tta import TTA, tta_logits


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    """Two tiny trained runs (two seeds) on the shared tiny dataset."""
    out = tmp_path_factory.mktemp("predict_options")
    dirs = []
    for seed in (0, 1):
        config = TrainConfig(model="fcn8s", model_options={"width": 0.125}, data_dir=str(tiny_data), profile="smoke",
                             image_size=32, epochs=1, max_steps=2, batch_size=4, num_workers=0, device="cpu",
                             out=str(out / f"run{seed}"), lr=1e-3, seed=seed)
        dirs.append(train(config).run_dir)
    return dirs


def _cli(*args):
    return cli.main([str(a) for a in args])


def _test_count(tiny_data):
    return len(json.loads((tiny_data / "test.json").read_text())["images"])


def test_predict_with_every_option_writes_a_valid_submission(runs, tiny_data, tmp_path, capsys):
    pytest.importorskip("pydensecrf.densecrf", reason="--crf needs the optional pydensecrf2 package")
    csv = tmp_path / "all.csv"
    rc = _cli("predict", runs[0], "--data-dir", tiny_data, "--device", "cpu", "--out", csv,
              "--tta", "hflip,vflip", "--tta-scales", "0.75,1,1.25", "--tta-merge", "prob",
              "--sliding-window", 32, "--overlap", 0.5, "--weighting", "gaussian", "--crf", "--ensemble", runs[1])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert submission.validate(csv, tiny_data / "test.json") == _test_count(tiny_data)
    assert "TTA none,hflip,vflip x scales 0.75,1,1.25 (prob mean)" in out
    assert "sliding window 32 px (overlap 0.5, gaussian)" in out and "ensemble of 2" in out and "DenseCRF" in out


@pytest.mark.parametrize("flags", [
    ["--tta", "hflip"],
    ["--tta-scales", "0.5,1", "--tta-merge", "logit"],
    ["--sliding-window", "24", "--overlap", "0.25", "--weighting", "uniform"],
    ["--tta", "hvflip", "--sliding-window", "40"],
])
def test_each_option_alone_writes_a_valid_submission(runs, tiny_data, tmp_path, flags):
    csv = tmp_path / "s.csv"
    assert _cli("predict", runs[0], "--data-dir", tiny_data, "--device", "cpu", "--out", csv, *flags) == 0
    assert submission.validate(csv, tiny_data / "test.json") == _test_count(tiny_data)


def test_an_ensemble_of_a_run_with_itself_is_the_run(runs, tiny_data, tmp_path):
    alone, twice = tmp_path / "alone.csv", tmp_path / "twice.csv"
    assert _cli("predict", runs[0], "--data-dir", tiny_data, "--device", "cpu", "--out", alone) == 0
    assert _cli("predict", runs[0], "--data-dir", tiny_data, "--device", "cpu", "--out", twice,
                "--ensemble", runs[0]) == 0
    assert alone.read_text() == twice.read_text()


def test_evaluate_with_tta_scores_the_tta_prediction(runs, tiny_data, tmp_path, capsys):
    scores = tmp_path / "scores.json"
    rc = _cli("evaluate", runs[0], "--data-dir", tiny_data, "--device", "cpu", "--out", scores,
              "--tta", "hflip", "--tta-merge", "logit")
    assert rc == 0
    assert "inference: TTA none,hflip" in capsys.readouterr().out
    written = json.loads(scores.read_text())
    assert 0 <= written["miou"] <= 1
    assert written["inference"]["tta"] == {"flips": ["none", "hflip"], "scales": [1.0], "merge": "logit"}
    # the same scores from the TTA logits computed here, image batch by image batch
    model, config, payload = load_model(runs[0], "cpu")
    reference = metrics.SegMetrics(payload["num_classes"], ignore_index=IGNORE_INDEX)
    for images, masks in torch.utils.data.DataLoader(dataset.CocoSegmentation(tiny_data, "val"), batch_size=4,
                                                     collate_fn=dataset.collate):
        reference.update(tta_logits(model, images, config.image_size, ("none", "hflip"), merge="logit"), masks)
    assert written["confusion"] == reference.confusion.tolist()


def test_python_api_defaults_are_the_plain_prediction(runs, tiny_data, tmp_path):
    plain = evaluate(runs[0], data_dir=str(tiny_data), device="cpu")
    one_view = evaluate(runs[0], data_dir=str(tiny_data), device="cpu", tta=TTA(flips=("none",)))
    assert torch.equal(plain["confusion"], one_view["confusion"]) and "inference" not in plain
    # one window holding the whole image: the model at the image's own resolution instead of the training size
    window = predict(runs[0], tmp_path / "w.csv", data_dir=str(tiny_data), device="cpu", sliding_window=1000,
                     weighting="uniform")
    model, _, payload = load_model(runs[0], "cpu")
    test = dataset.CocoSegmentation(tiny_data, "test")
    rows = {}
    for images, names in torch.utils.data.DataLoader(test, batch_size=4, collate_fn=dataset.collate):
        preds = predict_logits(model, images, None).argmax(1)
        rows.update({name: submission.downsample(p) for name, p in zip(names, preds)})
    reference = submission.write(tmp_path / "reference.csv", rows, test.coco.ann_file, payload["num_classes"])
    assert window.read_text() == reference.read_text()


@pytest.mark.parametrize("flags,message", [
    (["--tta", "rot90"], "unknown TTA flip 'rot90'"),
    (["--tta", ","], "--tta needs flip names"),
    (["--tta-scales", "0.5,big"], "--tta-scales takes comma-separated numbers"),
    (["--tta-scales", "0,1"], "TTA scales must be positive"),
    (["--sliding-window", "32", "--overlap", "1.5"], "overlap is a fraction of the window in [0, 1)"),
    (["--sliding-window", "0"], "sliding window must be a positive whole number"),
    (["--overlap", "0.3"], "--overlap applies to sliding windows; add --sliding-window"),
    (["--ensemble", "nowhere"], "nowhere: no checkpoint there"),
])
def test_bad_option_values_exit_2_with_a_clear_message(runs, tiny_data, tmp_path, capsys, flags, message):
    for command in (["predict", runs[0], "--out", tmp_path / "bad.csv"], ["evaluate", runs[0]]):
        rc = _cli(*command, "--data-dir", tiny_data, "--device", "cpu", *flags)
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("segedu: error: ") and message in err, err
    assert not (tmp_path / "bad.csv").exists()


def test_argparse_refuses_unknown_choices(runs, capsys):
    for flags in (["--tta-merge", "max"], ["--weighting", "cosine"], ["--sliding-window", "big"]):
        with pytest.raises(SystemExit) as exit_:
            _cli("predict", runs[0], "--out", "x.csv", *flags)
        assert exit_.value.code == 2 and "invalid" in capsys.readouterr().err


def test_an_ensemble_member_with_other_classes_is_refused_naming_both(runs, tiny_data, tmp_path, capsys):
    other = tmp_path / "four.pt"
    config = TrainConfig(model="fcn32s", model_options={"width": 0.125}, image_size=32, device="cpu")
    checkpoint.save(other, {"model": models.create("fcn32s", num_classes=4, width=0.125).state_dict(),
                            "model_name": "fcn32s", "num_classes": 4, "class_names": list("abcd"),
                            "config": dataclasses.asdict(config)})
    rc = _cli("predict", runs[0], "--data-dir", tiny_data, "--device", "cpu", "--out", tmp_path / "e.csv",
              "--ensemble", other)
    err = capsys.readouterr().err
    assert rc == 2 and str(runs[0]) in err and str(other) in err and "4 classes" in err, err


def test_predict_with_every_option_from_a_shell(runs, tiny_data, tmp_path):
    """The installed `segedu` script, as a user types it: every inference option in one command."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("pydensecrf.densecrf", reason="--crf needs the optional pydensecrf2 package")
    script = shutil.which("segedu", path=str(Path(sys.executable).parent))
    assert script, "the segedu console script is not installed next to this Python"
    csv = tmp_path / "shell.csv"
    command = [script, "predict", str(runs[0]), "--data-dir", str(tiny_data), "--device", "cpu", "--out", str(csv),
               "--tta", "hflip", "--tta-scales", "0.75,1", "--sliding-window", "32", "--overlap", "0.5",
               "--weighting", "gaussian", "--crf", "--ensemble", str(runs[1])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"segedu predict: wrote and validated {csv}" in done.stdout
    assert submission.validate(csv, tiny_data / "test.json") == _test_count(tiny_data)
    bad = subprocess.run(command[:-2] + ["--overlap", "1.5"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("segedu: error:") and "overlap" in bad.stderr
