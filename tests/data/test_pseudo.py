"""Pseudo-labelling: the masking rules, and the COCO file that carries the labels into training."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from segedu.data import IGNORE_INDEX
from segedu.data.pseudo import pseudo_label_masks
from segedu.inference import pseudo
from segedu.inference.pseudo import write_pseudo_labels
from segedu.errors import SegeduError

SIZE = 32  # image side of the tiny dataset, also the models' training size


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread only waits on a busy machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from segedu.data import synth

    out = tmp_path_factory.mktemp("pseudo") / "data"
    synth.generate(out, n_images=20, size=SIZE, seed=5, workers=1)  # 16 train, 4 val, 4 test images
    return out


def make_checkpoint(path, data_dir, seed: int):
    """An FCN-8s checkpoint as the trainer writes it, with random class-score layers so that its
    predictions vary from pixel to pixel and from confident to unsure (trained ones would, too)."""
    from segedu import models
    from segedu.data import CLASSES
    from segedu.engine import TrainConfig, checkpoint

    config = TrainConfig(model="fcn8s", model_options={"width": 0.125}, data_dir=str(data_dir), profile="smoke",
                         image_size=SIZE, device="cpu", amp="off").resolved()
    torch.manual_seed(seed)
    model = models.create("fcn8s", num_classes=len(CLASSES), width=0.125)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and module.out_channels == len(CLASSES):
            torch.nn.init.normal_(module.weight, std=2.0)
    checkpoint.save(path, {"model_name": "fcn8s", "num_classes": len(CLASSES), "class_names": list(CLASSES),
                           "config": dataclasses.asdict(config), "model": model.state_dict()})
    return path


@pytest.fixture(scope="module")
def checkpoints(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    return [make_checkpoint(folder / f"run{seed}" / "best.pt", data, seed) for seed in (0, 1)]


def test_pixel_mode_ignores_pixels_below_the_threshold():
    # one 2x2 image, 3 classes; pixel (row, col): probabilities
    probabilities = torch.tensor([[0.95, 0.03, 0.02], [0.50, 0.40, 0.10],
                                  [0.05, 0.91, 0.04], [0.10, 0.10, 0.80]]).T.reshape(1, 3, 2, 2)
    masks = pseudo_label_masks(probabilities, threshold=0.9)
    assert masks.dtype == torch.int64
    assert masks.tolist() == [[[0, IGNORE_INDEX], [1, IGNORE_INDEX]]]
    # a confidence equal to the threshold is kept; 0.8 is kept at 0.8 and lost just above it
    assert pseudo_label_masks(probabilities, threshold=0.91).tolist() == [[[0, IGNORE_INDEX], [1, IGNORE_INDEX]]]
    assert pseudo_label_masks(probabilities, threshold=0.8).tolist() == [[[0, IGNORE_INDEX], [1, 2]]]
    assert pseudo_label_masks(probabilities, threshold=0.81).tolist()[0][1] == [1, IGNORE_INDEX]
    # one number however it is typed (e.g. a quantile from numpy or torch), not one per class
    for one in (np.float32(0.8), np.float64(0.8), torch.tensor(0.8), 1):
        expected = [[[0, IGNORE_INDEX], [1, 2]]] if one != 1 else [[[IGNORE_INDEX] * 2] * 2]
        assert pseudo_label_masks(probabilities, threshold=one).tolist() == expected, type(one)


def test_pixel_mode_with_a_threshold_per_class_uses_the_argmax_classs():
    # the same 2x2 image: argmax classes 0 (0.95), 0 (0.50), 1 (0.91), 2 (0.80)
    probabilities = torch.tensor([[0.95, 0.03, 0.02], [0.50, 0.40, 0.10],
                                  [0.05, 0.91, 0.04], [0.10, 0.10, 0.80]]).T.reshape(1, 3, 2, 2)
    # class 0 needs 0.96 (both of its pixels lost), class 1 0.9 (kept), class 2 0.5 (kept)
    assert pseudo_label_masks(probabilities, threshold=[0.96, 0.9, 0.5]).tolist() == \
        [[[IGNORE_INDEX, IGNORE_INDEX], [1, 2]]]
    assert pseudo_label_masks(probabilities, threshold=[0.5, 0.95, 0.5]).tolist() == [[[0, 0], [IGNORE_INDEX, 2]]]
    with pytest.raises(SegeduError, match="one threshold per class"):
        pseudo_label_masks(probabilities, threshold=[0.5, 0.5])
    with pytest.raises(SegeduError, match="mode='pixel'"):
        pseudo_label_masks(probabilities, threshold=[0.5, 0.5, 0.5], mode="image")


def test_image_mode_keeps_or_drops_whole_images():
    # image 0: confidences 0.95, 0.85 -> mean 0.90; image 1: 0.95, 0.55 -> mean 0.75 (1x2 images, 2 classes)
    first = torch.tensor([[0.95, 0.15], [0.05, 0.85]])
    second = torch.tensor([[0.95, 0.45], [0.05, 0.55]])
    probabilities = torch.stack([first, second])[:, :, None, :]  # (2, 2, 1, 2)
    masks = pseudo_label_masks(probabilities, threshold=0.9, mode="image")
    assert masks.tolist() == [[[0, 1]], [[IGNORE_INDEX, IGNORE_INDEX]]]
    # the same probabilities in pixel mode keep the single confident pixel of each image
    assert pseudo_label_masks(probabilities, threshold=0.9).tolist() == [[[0, IGNORE_INDEX]], [[0, IGNORE_INDEX]]]
    assert pseudo_label_masks(probabilities, threshold=0.7, mode="image").tolist() == [[[0, 1]], [[0, 1]]]
    with pytest.raises(SegeduError, match="unknown pseudo-label mode"):
        pseudo_label_masks(probabilities, mode="images")


def predicted_probabilities(checkpoint_paths, data_dir):
    """Test images' file names and the mean softmax of the checkpoints, computed here step by step."""
    from segedu.data.dataset import CocoSegmentation
    from segedu.engine import load_model
    from segedu.inference.predict import predict_logits

    test = CocoSegmentation(data_dir, "test")
    images = torch.stack([test[i][0] for i in range(len(test))])
    total = 0
    for path in checkpoint_paths:
        model, config, _ = load_model(path, "cpu")
        total = total + predict_logits(model, images, config.image_size).softmax(1)
    return [test[i][1] for i in range(len(test))], total / len(checkpoint_paths)


@pytest.mark.parametrize("mode", ["pixel", "image"])
def test_written_file_reads_back_as_the_pseudo_labels(data, checkpoints, tmp_path, mode):
    from segedu.data.dataset import CocoSegmentation

    names, probabilities = predicted_probabilities(checkpoints, data)
    confidence = probabilities.max(1).values
    # a threshold that keeps part of the pixels (pixel mode) or half the images (image mode)
    threshold = float(confidence.median() if mode == "pixel" else confidence.flatten(1).mean(1).median())
    expected = pseudo_label_masks(probabilities, threshold, mode)

    out = tmp_path / "pseudo.json"
    summary = write_pseudo_labels([str(p) for p in checkpoints], data, out, threshold=threshold, mode=mode,
                                  device="cpu")
    written = CocoSegmentation(data, str(out))
    train = CocoSegmentation(data, "train")
    assert summary.train_images == len(train) == 16 and summary.predicted_images == len(names) == 4
    pseudo_index = {written.coco.images[i]["file_name"]: i for i in range(len(train), len(written))}
    kept = [i for i in range(len(names)) if (expected[i] != IGNORE_INDEX).any()]
    assert sorted(pseudo_index) == sorted(names[i] for i in kept)  # images without a kept pixel are left out
    assert summary.images == len(kept) and 0 < len(kept)
    for i in kept:
        assert torch.equal(written[pseudo_index[names[i]]][1], expected[i])
    decoded = torch.stack([expected[i] for i in kept])
    assert ((decoded != IGNORE_INDEX) & (decoded > 0)).any()  # objects were labelled, not only background
    if mode == "pixel":
        assert (decoded == IGNORE_INDEX).any()
    else:  # kept images are labelled everywhere, the others left out
        assert not (decoded == IGNORE_INDEX).any() and len(kept) < len(names)
    valid = expected[expected != IGNORE_INDEX]
    assert summary.kept_fraction == pytest.approx(valid.numel() / expected.numel())
    assert list(summary.class_pixels.values()) == torch.bincount(valid, minlength=11).tolist()

    # the training split is copied unchanged, in front
    train_json = json.loads((data / "train.json").read_text())
    out_json = json.loads(out.read_text())
    assert out_json["images"][:len(train)] == train_json["images"]
    assert out_json["annotations"][:len(train_json["annotations"])] == train_json["annotations"]
    for i in (0, len(train) - 1):
        assert torch.equal(written[i][1], train[i][1])


def test_pycocotools_reads_the_file_and_its_void_regions(data, checkpoints, tmp_path):
    from pycocotools.coco import COCO

    names, probabilities = predicted_probabilities(checkpoints[:1], data)
    threshold = float(probabilities.max(1).values.median())
    out = tmp_path / "pseudo.json"
    write_pseudo_labels(checkpoints[0], data, out, threshold=threshold, device="cpu")
    api = COCO(str(out))
    expected = pseudo_label_masks(probabilities, threshold)
    void = [c["id"] for c in api.loadCats(api.getCatIds()) if c["name"] == "__ignore__"]
    assert len(void) == 1
    pseudo_images = {img["file_name"]: img["id"] for img in api.loadImgs(api.getImgIds()) if img["id"] >= 16}
    checked = 0
    for i, name in enumerate(names):
        if name not in pseudo_images:
            continue
        anns = api.loadAnns(api.getAnnIds(imgIds=[pseudo_images[name]]))
        crowd = [a for a in anns if a["iscrowd"]]
        assert len(crowd) == 1 and crowd[0]["category_id"] == void[0]
        assert np.array_equal(api.annToMask(crowd[0]).astype(bool), (expected[i] == IGNORE_INDEX).numpy())
        checked += 1
    assert checked > 0


def test_a_threshold_above_one_keeps_no_pixel(data, checkpoints, tmp_path):
    out = tmp_path / "pseudo.json"
    summary = write_pseudo_labels(checkpoints[0], data, out, threshold=1.01, device="cpu")
    assert summary.images == 0 and summary.kept_fraction == 0.0 and sum(summary.class_pixels.values()) == 0
    train_json = json.loads((data / "train.json").read_text())
    out_json = json.loads(out.read_text())
    assert out_json["images"] == train_json["images"] and out_json["annotations"] == train_json["annotations"]


def test_training_runs_on_the_pseudo_labels(data, checkpoints, tmp_path):
    from segedu.engine import TrainConfig, train

    out = tmp_path / "pseudo.json"
    summary = write_pseudo_labels(checkpoints[0], data, out, threshold=0.3, device="cpu", train_split=None)
    assert summary.train_images == 0 and summary.images >= 2
    config = TrainConfig(model="fcn32s", model_options={"width": 0.125}, data_dir=str(data), train_split=str(out),
                         val_split=None, profile="smoke", image_size=SIZE, epochs=1, max_steps=1, batch_size=2,
                         num_workers=0, device="cpu", out=str(tmp_path / "run"))
    trainer = train(config)
    assert len(trainer.train_set) == summary.images
    assert trainer.step == 1 and np.isfinite(trainer.history[0]["train_loss"])
    assert (tmp_path / "run" / "best.pt").is_file()


def test_refuses_images_that_are_also_training_images(data, checkpoints, tmp_path):
    with pytest.raises(SegeduError, match="in both 'train' and 'train'"):
        write_pseudo_labels(checkpoints[0], data, tmp_path / "p.json", split="train", threshold=0.0, device="cpu")
    assert not (tmp_path / "p.json").exists()


def test_cli_writes_the_same_file(data, checkpoints, tmp_path, capsys):
    from segedu.cli import main

    run_dir = checkpoints[0].parent  # a run directory: its best.pt
    out = tmp_path / "cli.json"
    assert main(["pseudo-label", str(run_dir), "--data-dir", str(data), "--out", str(out), "--threshold", "0.3",
                 "--mode", "pixel", "--device", "cpu"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    reference = tmp_path / "api.json"
    write_pseudo_labels(str(run_dir), data, reference, threshold=0.3, device="cpu")
    assert json.loads(out.read_text()) == json.loads(reference.read_text())
    assert main(["pseudo-label", str(run_dir), "--data-dir", str(tmp_path / "nowhere"), "--out", str(out)]) == 2


def test_confidence_threshold_keeps_the_asked_share_of_pixels(data, checkpoints, tmp_path):
    _, probabilities = predicted_probabilities(checkpoints, data)
    confidence = probabilities.max(dim=1).values.flatten()
    for fraction in (0.1, 0.5, 1.0):
        t = pseudo.confidence_threshold(checkpoints, data, fraction, device="cpu")
        kept = (confidence >= t).float().mean().item()
        assert kept >= fraction - 1e-9  # at least the share asked for (ties at t are all kept) ...
        assert (confidence > t).float().mean().item() < fraction  # ... and the threshold cannot be raised
    assert pseudo.confidence_threshold(checkpoints, data, 1.0, device="cpu") == pytest.approx(confidence.min().item())
    with pytest.raises(SegeduError, match=r"keep_fraction is the share of pixels to keep, in \(0, 1\]"):
        pseudo.confidence_threshold(checkpoints, data, 0.0, device="cpu")


def test_class_balanced_thresholds_keep_the_share_of_each_predicted_class(data, checkpoints, tmp_path):
    _, probabilities = predicted_probabilities(checkpoints, data)
    confidence, label = probabilities.max(dim=1)
    confidence, label = confidence.flatten(), label.flatten()
    thresholds = pseudo.confidence_threshold(checkpoints, data, 0.3, device="cpu", class_balanced=True)
    assert len(thresholds) == probabilities.shape[1]
    predicted = [c for c in range(probabilities.shape[1]) if (label == c).any()]
    assert len(predicted) >= 2  # the check below compares classes, so there must be more than one
    for c in range(probabilities.shape[1]):
        own = confidence[label == c]
        if own.numel() == 0:
            assert thresholds[c] == 1.0
            continue
        # numpy's reference: the share of the class's own pixels kept is the asked one, and no higher
        # threshold keeps it
        assert (own >= thresholds[c]).float().mean().item() >= 0.3 - 1e-9
        assert (own > thresholds[c]).float().mean().item() < 0.3
    # written with them, every predicted class keeps pixels
    summary = write_pseudo_labels(checkpoints, data, tmp_path / "cb.json", threshold=thresholds, device="cpu")
    kept = [name for name, n in summary.class_pixels.items() if n > 0]
    assert len(kept) == len(predicted)
    assert summary.threshold == [pytest.approx(t) for t in thresholds] and "a threshold per class" in str(summary)


def test_cli_keep_fraction_uses_the_confidence_threshold(data, checkpoints, tmp_path, capsys):
    from segedu.cli import main

    run_dir = checkpoints[0].parent
    out = tmp_path / "kept.json"
    assert main(["pseudo-label", str(run_dir), "--data-dir", str(data), "--out", str(out), "--keep-fraction", "0.3",
                 "--device", "cpu"]) == 0
    threshold = pseudo.confidence_threshold(str(run_dir), data, 0.3, device="cpu")
    assert f"threshold {threshold:.4f} keeps the 30% most confident pixels" in capsys.readouterr().out
    reference = tmp_path / "api.json"
    write_pseudo_labels(str(run_dir), data, reference, threshold=threshold, device="cpu")
    assert json.loads(out.read_text()) == json.loads(reference.read_text())
    assert main(["pseudo-label", str(run_dir), "--out", str(out), "--keep-fraction", "0.3"]) == 2
    assert "--keep-fraction needs --data-dir" in capsys.readouterr().err
