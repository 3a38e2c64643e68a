"""``segedu pretrain`` (segedu.engine.pretrain) at smoke scale: the corpus, the same bytes from the
same recipe (also after an interruption), the model card, and the command line.

Everything is written under tmp_path: the corpus under SEGEDU_DATA_ROOT, the weights in a
``weights_dir``; the package's own folder is replaced by a temporary one that must stay empty.
"""
import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from segedu import cli, models
from segedu.data import synth
from segedu.engine import pretrain, trainer
from segedu.errors import SegeduError
from segedu.models import course, pretext

SMOKE = pretrain.Recipe("resnet50", **pretrain.SMOKE)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """The corpus under tmp_path/data; the package's weights folder a temporary one, checked unused."""
    monkeypatch.setenv("SEGEDU_DATA_ROOT", str(tmp_path / "data"))
    package = tmp_path / "package-weights"
    monkeypatch.setattr(course, "WEIGHTS_DIR", package)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors on a shared machine
    yield
    torch.set_num_threads(threads)
    assert not package.exists(), "a run with weights_dir wrote into the package's weights folder"


def _images(folder, split="train.json") -> list[np.ndarray]:
    info = json.loads((folder / split).read_text())
    return [np.asarray(Image.open(folder / image["file_name"])) for image in info["images"]]


def test_the_corpus_is_the_generator_at_its_own_seed_not_the_books(tmp_path):
    folder = pretrain.corpus(SMOKE)
    assert folder == tmp_path / "data" / "pretext-40x64-seed9001-v2" and pretrain.CORPUS_SEED == 9001
    corpus = _images(folder)
    # drawn by the pinned version the shipped weights were pretrained on, not by the book's current one
    assert json.loads((folder / "train.json").read_text())["info"]["version"] == pretrain.CORPUS_VERSION == "2"
    reference = synth.generate(tmp_path / "reference", n_images=40, size=64, seed=pretrain.CORPUS_SEED,
                               version=pretrain.CORPUS_VERSION).path
    assert all(np.array_equal(a, b) for a, b in zip(corpus, _images(reference), strict=True))
    book = _images(synth.generate(tmp_path / "book", n_images=40, size=64, seed=0).path)
    assert corpus[0].shape == book[0].shape and not np.array_equal(corpus[0], book[0])
    assert not {a.tobytes() for a in corpus} & {b.tobytes() for b in book}  # no image of one is in the other
    assert pretrain.corpus(SMOKE) == folder  # generated once, reused


@pytest.mark.parametrize("encoder", ["resnet50", "vgg16_bn"])
def test_the_same_recipe_twice_gives_the_same_bytes_and_a_complete_card(tmp_path, encoder):
    recipe = dataclasses.replace(SMOKE, encoder=encoder)
    cards = [pretrain.pretrain(recipe, tmp_path / f"run{i}", device="cpu", weights_dir=tmp_path / f"weights{i}")
             for i in (1, 2)]
    name = f"{encoder}-w0.25.pt"
    files = [(tmp_path / f"weights{i}" / name).read_bytes() for i in (1, 2)]
    assert files[0] == files[1] and cards[0]["sha256"] == cards[1]["sha256"]
    card = cards[0]
    assert card["sha256"] == hashlib.sha256(files[0]).hexdigest()
    assert json.loads((tmp_path / "weights1" / "cards.json").read_text()) == {name: card}
    assert (card["encoder"], card["width"], card["file"], card["steps"]) == (encoder, 0.25, name, SMOKE.steps)
    assert card["corpus"] == {"generator_version": pretrain.CORPUS_VERSION, "seed": pretrain.CORPUS_SEED,
                              "images": 40, "size": 64}
    assert card["recipe"] == dataclasses.asdict(recipe) and card["torch"] == torch.__version__
    assert card["device"] == "cpu" and 0.0 <= card["pretext_val_miou"] <= 1.0

    # the file is the trained pretext's final encoder: the run's last checkpoint, after all its steps
    state = torch.load(tmp_path / "run1" / "last.pt", weights_only=False)
    trained = models.create(pretext.MODEL, encoder=encoder, width=0.25)
    trained.load_state_dict(state["model"])
    assert state["step"] == SMOKE.steps
    exported = torch.load(tmp_path / "weights1" / name, weights_only=True)
    expected = trained.encoder_state_dict()
    assert exported.keys() == expected.keys()
    assert all(torch.equal(exported[k], v.half() if v.is_floating_point() else v) for k, v in expected.items())


def test_a_model_loads_what_pretrain_wrote(tmp_path, monkeypatch):
    card = pretrain.pretrain(SMOKE, tmp_path / "run", device="cpu", weights_dir=tmp_path / "weights")
    monkeypatch.setattr(course, "WEIGHTS_DIR", tmp_path / "weights")
    model = models.create("deeplabv3_resnet50", width=0.25, pretrained="course")
    exported = torch.load(tmp_path / "weights" / card["file"], weights_only=True)
    assert torch.equal(model.backbone.conv1.weight, exported["conv1.weight"].float())
    assert torch.equal(model.backbone.layer4[2].bn3.running_var, exported["layer4.2.bn3.running_var"].float())


def test_an_interrupted_pretrain_resumed_gives_the_same_bytes(tmp_path, monkeypatch):
    """Batches of 16 of the corpus's 32 training images: 2 steps an epoch, the last checkpoint after
    step 2; a run stopped there and resumed writes the file an uninterrupted run writes."""
    recipe = dataclasses.replace(SMOKE, batch_size=16)
    whole = pretrain.pretrain(recipe, tmp_path / "whole", device="cpu", weights_dir=tmp_path / "w-whole")

    class Stop(Exception):
        pass

    real_save = trainer.Trainer._save_last

    def save_then_stop(self):
        real_save(self)
        if self.step == 2:
            raise Stop

    with monkeypatch.context() as patch:
        patch.setattr(trainer.Trainer, "_save_last", save_then_stop)
        with pytest.raises(Stop):
            pretrain.pretrain(recipe, tmp_path / "cut", device="cpu", weights_dir=tmp_path / "w-cut")
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=False)["step"] == 2
    assert not (tmp_path / "w-cut").exists()  # nothing exported from an unfinished run
    steps, real_step = [], trainer.Trainer._optimiser_step
    monkeypatch.setattr(trainer.Trainer, "_optimiser_step", lambda self: (real_step(self), steps.append(self.step)))
    resumed = pretrain.pretrain(recipe, tmp_path / "cut", resume=True, device="cpu", weights_dir=tmp_path / "w-cut")
    assert steps == [3]  # it continued from the checkpoint: step 3 only, not a fresh run of 3 steps
    assert resumed["steps"] == whole["steps"] == 3
    name = "resnet50-w0.25.pt"
    assert (tmp_path / "w-cut" / name).read_bytes() == (tmp_path / "w-whole" / name).read_bytes()
    assert resumed["sha256"] == whole["sha256"]


def test_the_cli_pretrains_and_refuses_to_overwrite_a_run(tmp_path, capsys):
    out, weights = tmp_path / "run", tmp_path / "weights"
    argv = ["pretrain", "--encoder", "resnet50", "--smoke", "--width", "0.125", "--out", str(out),
            "--weights-dir", str(weights), "--device", "cpu"]
    assert cli.main(argv) == 0
    card = course.cards(weights)["resnet50-w0.125.pt"]
    assert (card["width"], card["steps"], card["recipe"]["images"]) == (0.125, SMOKE.steps, SMOKE.images)
    printed = capsys.readouterr().out
    assert printed.startswith("segedu pretrain: resnet50-w0.125.pt (") and card["sha256"][:16] in printed

    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert error == (f"segedu: error: --out {out} holds a run already; continue it with --resume, or choose "
                     "another --out.\n")
    assert course.cards(weights)["resnet50-w0.125.pt"] == card

    assert cli.main([*argv, "--resume"]) == 0  # a finished run resumed: nothing to train, the same file
    assert course.cards(weights)["resnet50-w0.125.pt"]["sha256"] == card["sha256"]

    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a run")
    assert cli.main([*argv[:-6], "--out", str(a_file), *argv[-4:]]) == 2
    assert capsys.readouterr().err == (f"segedu: error: --out {a_file} is a file; choose a folder for the "
                                       "pretraining run.\n")


def test_the_cli_refuses_an_encoder_the_course_does_not_pretrain(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["pretrain", "--encoder", "vgg19", "--smoke"])
    assert caught.value.code == 2 and "invalid choice: 'vgg19'" in capsys.readouterr().err


def test_pretrain_refuses_an_unknown_encoder_before_writing(tmp_path):
    with pytest.raises(SegeduError, match=r"^segedu pretrain: no encoder 'resnet18'; choose one of vgg16_bn, "
                                          r"resnet50, resnet101, hrnetv2_w18\.$"):
        pretrain.pretrain(pretrain.Recipe("resnet18", **pretrain.SMOKE), tmp_path / "run",
                          weights_dir=tmp_path / "weights")
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()
