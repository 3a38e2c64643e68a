"""Every `segedu` command against the bad inputs a new user types: one line, exit status, nothing half-written.

One table: each row is a command line, the exit status it must end with, and the words its one
line must hold (the flag, file or record at fault). For every row the test also checks that no
traceback is printed and that no file under the working folder was created, changed or deleted.
The malformed-COCO corpus goes through the commands that read COCO files in
``tests/data/test_coco_validation.py``; the failures from below segedu (out of memory, worker crash,
full disk) in ``tests/test_failures.py`` and ``tests/test_fileio.py``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segedu import cli, failures


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny dataset, one finished run, and the bad files the rows point at."""
    from segedu.data import synth

    root = tmp_path_factory.mktemp("bad_input")
    data = root / "data"
    synth.generate(data, n_images=16, size=48, seed=5)
    mp = pytest.MonkeyPatch()
    mp.setenv("SEGEDU_CACHE", str(root / "cache"))  # the mask cache lives outside the checked folder
    run = root / "run"
    assert cli.main(["train", "--model", "fcn32s", "--width", "0.125", "--profile", "smoke", "--data-dir", str(data),
                     "--image-size", "32", "--epochs", "1", "--max-steps", "1", "--batch-size", "4",
                     "--num-workers", "0", "--device", "cpu", "--out", str(run)]) == 0
    bad = root / "bad"
    bad.mkdir()
    (bad / "list.json").write_text("[1, 2]")
    (bad / "types.json").write_text(json.dumps({"epochs": "x"}))
    (bad / "types.noise.json").write_text(json.dumps({"spec": {"rate": 0.5, "kinds": ["flip"]}}))
    coco = json.loads((data / "train.json").read_text())
    del coco["annotations"][1]["category_id"]
    (data / "broken.json").write_text(json.dumps(coco))
    images, masks = bad / "images", bad / "masks"
    images.mkdir()
    masks.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "a.png")
    (images / "b.png").write_bytes(b"not a png at all")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / "a.png")
    Image.fromarray(np.ones((8, 8), np.uint8)).save(masks / "b.png")
    clean = bad / "clean_images"
    clean.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(clean / "a.png")
    bad_masks = bad / "bad_masks"
    bad_masks.mkdir()
    (bad_masks / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    for name, edit in (("absolute", lambda c: c["images"][0].__setitem__("file_name", "/etc/passwd")),
                       ("dotdot", lambda c: c["images"][0].__setitem__("file_name", "../" + c["images"][0]["file_name"])),
                       ("dupnames", lambda c: c["categories"][2].__setitem__("name", c["categories"][1]["name"]))):
        edited = json.loads((data / "train.json").read_text())
        edit(edited)
        (data / f"{name}.json").write_text(json.dumps(edited))
    yield {"root": root, "data": data, "run": run, "bad": bad}
    mp.undo()


def _fingerprint(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (the mask cache aside) with a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "cache" not in p.relative_to(folder).parts}


@dataclass
class Row:
    argv: list            # the command line; "{data}", "{run}", "{bad}", "{root}" are filled in
    words: tuple          # what the one line must name
    status: int = 2
    stream: str = "err"   # validate-coco reports on stdout


TRAIN = ["train", "--profile", "smoke", "--data-dir", "{data}", "--device", "cpu", "--num-workers", "0",
         "--out", "{root}/new-run"]

ROWS = {
    "train --option without =": Row(TRAIN + ["--option", "width"], ("--option width", "KEY=VALUE")),
    "train --option of the wrong type": Row(TRAIN + ["--option", "width=abc"], ("--option", "width", "'abc'")),
    "train --config not an object": Row(TRAIN + ["--config", "{bad}/list.json"], ("list.json", "JSON list")),
    "train --config of wrong types": Row(TRAIN + ["--config", "{bad}/types.json"], ("types.json", "epochs", "'x'")),
    "train --epochs 0": Row(TRAIN + ["--epochs", "0"], ("--epochs", ">= 1")),
    "train --batch-size 0": Row(TRAIN + ["--batch-size", "0"], ("--batch-size", ">= 1")),
    "train --image-size 0": Row(TRAIN + ["--image-size", "0"], ("--image-size",)),
    "train --lr -1": Row(TRAIN + ["--lr", "-1"], ("--lr", "> 0")),
    "train --num-workers -1": Row(TRAIN + ["--num-workers", "-1"], ("--num-workers", ">= 0")),
    "train --warmup-steps -1": Row(TRAIN + ["--warmup-steps", "-1"], ("--warmup-steps", ">= 0")),
    "train --mix foo": Row(TRAIN + ["--mix", "foo"], ("--mix", "'foo'", "cutmix")),
    "train --loss unknown": Row(TRAIN + ["--loss", "ce+dcie"], ("--loss", "dcie")),
    "train --augment scale": Row(TRAIN + ["--augment", "scale"], ("--crop scale",)),
    "train --epochs x": Row(TRAIN + ["--epochs", "x"], ("--epochs", "'x'")),
    "train --resume with other flags": Row(["train", "--resume", "{run}", "--lr", "0.1", "--epochs", "3"],
                                           ("--resume", "--lr", "--epochs")),
    "train into an earlier run": Row(["train", "--profile", "smoke", "--data-dir", "{data}", "--out", "{run}"],
                                     ("{run}", "--overwrite", "--resume")),
    "train offline with pretrained_backbone": Row(
        TRAIN + ["--model", "fcn_resnet50", "--width", "1", "--option", "pretrained_backbone=true"],
        ("could not download", "resnet50", "hub/checkpoints")),
    "evaluate a missing checkpoint": Row(["evaluate", "{root}/nothing", "--device", "cpu"], ("no checkpoint",)),
    "evaluate --tta-scales not numbers": Row(["evaluate", "{run}", "--tta-scales", "big", "--device", "cpu"],
                                             ("--tta-scales", "'big'")),
    "evaluate --overlap without windows": Row(["evaluate", "{run}", "--overlap", "0.3", "--device", "cpu"],
                                              ("--overlap", "--sliding-window")),
    "predict a labelled split": Row(["predict", "{run}", "--split", "val", "--data-dir", "{data}", "--device", "cpu",
                                     "--out", "{root}/sub.csv"], ("annotated", "segedu evaluate")),
    "coco-from-masks with a corrupt image": Row(
        ["coco-from-masks", "--images", "{bad}/images", "--masks", "{bad}/masks", "--classes", "bg,thing",
         "--out", "{bad}/out.json"], ("b.png",)),
    "coco-from-masks with a corrupt mask": Row(
        ["coco-from-masks", "--images", "{bad}/clean_images", "--masks", "{bad}/bad_masks", "--classes", "bg,thing",
         "--out", "{bad}/out.json"], ("bad_masks/a.png",)),
    "add-noise on a malformed file": Row(["add-noise", "{data}", "--clean", "{data}/broken.json", "--noise-rate", "0.5",
                                          "--out", "{root}/noisy.json"], ("broken.json", "annotations[1]", "category_id")),
    "split a malformed file": Row(["split", "{data}/broken.json", "--out", "{root}/folds"],
                                  ("broken.json", "annotations[1]", "category_id")),
    "pseudo-label a malformed split": Row(["pseudo-label", "{run}", "--data-dir", "{data}", "--split",
                                           "{data}/broken.json", "--out", "{root}/pseudo.json", "--device", "cpu"],
                                          ("broken.json", "annotations[1]")),
    "cleanse --noise-report that is not one": Row(["cleanse", "{run}", "--data-dir", "{data}", "--split", "val",
                                                   "--noise-report", "{bad}/types.noise.json", "--device", "cpu"],
                                                  ("types.noise.json", "not a noise report")),
    "cleanse a malformed split": Row(["cleanse", "{run}", "--data-dir", "{data}", "--split", "{data}/broken.json",
                                      "--out", "{root}/rank.csv", "--device", "cpu"], ("broken.json", "annotations[1]")),
    "validate-coco: an absolute file name": Row(["validate-coco", "{data}/absolute.json"],
                                                ("images[0]", "absolute path"), status=1, stream="out"),
    "validate-coco: a .. file name": Row(["validate-coco", "{data}/dotdot.json"], ("images[0]", "'..'"),
                                         status=1, stream="out"),
    "validate-coco: a category name twice": Row(["validate-coco", "{data}/dupnames.json"], ("categories[2]",),
                                                status=1, stream="out"),
    "repair-coco over its own input": Row(["repair-coco", "{data}/train.json", "--out", "{data}/train.json"],
                                          ("--overwrite",)),
    "synth into an existing dataset": Row(["synth", "--out", "{data}", "--images", "8", "--size", "32"], ("{data}",)),
    "synth too few images": Row(["synth", "--out", "{root}/tiny", "--images", "4", "--size", "32"],
                                ("at least 5 images",)),
    "synth an unknown generator version": Row(["synth", "--out", "{root}/v9", "--images", "8", "--size", "32",
                                               "--generator-version", "9"], ("'9'", "'2', '3'")),
}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_bad_input_is_one_line_and_writes_nothing(world, name, capsys, monkeypatch, offline):
    row = ROWS[name]
    monkeypatch.delenv(failures.DEBUG_ENV, raising=False)
    monkeypatch.chdir(world["root"])
    places = {key: str(world[key]) for key in ("data", "run", "bad", "root")}
    argv = [part.format(**places) for part in row.argv]
    before = _fingerprint(world["root"])

    status = cli.main(argv)

    out, err = capsys.readouterr()
    assert status == row.status, f"{name}: exit {status}\nstdout: {out}\nstderr: {err}"
    text = err if row.stream == "err" else out
    if row.stream == "err":
        assert err.startswith("segedu: error: ") and len(err.splitlines()) == 1, f"{name}: not one line:\n{err}"
    assert "Traceback" not in out + err
    for word in row.words:
        assert word.format(**places) in text, f"{name}: {word.format(**places)!r} not in {text!r}"
    assert _fingerprint(world["root"]) == before, f"{name}: files were written, changed or deleted"
