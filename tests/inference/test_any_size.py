"""Images of any size and shape: what ``image_size`` means, size-grouped batches, and a user's own
dataset of non-square, mixed-size images through train, evaluate and predict."""
import dataclasses
import json
import types

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from segedu import cli, profiles
from segedu.data import dataset, transforms
from segedu.data.sizes import check_size, model_input_size
from segedu.engine.distributed import ShardSampler
from segedu.errors import SegeduError
from segedu.inference import ensemble, sliding, submission, tta
from segedu.inference.predict import normalize, predict_logits, resized_forward

CLASSES = "background,road,sky,car"
VOID = 255


# ------------------------------------------------------------------ what image_size means
@pytest.mark.parametrize("image_hw, size, expected", [
    ((360, 480), 256, (256, 341)),      # 480 * 256 / 360 = 341.33
    ((480, 360), 256, (341, 256)),
    ((96, 128), 32, (32, 43)),          # 42.67
    ((3, 5), 2, (2, 3)),                # 3.33
    ((2, 3), 3, (3, 5)),                # 4.5 rounds half up
    ((512, 512), 256, (256, 256)),      # square: exactly size x size
    ((77, 77), 77, (77, 77)),
    ((360, 480), (240, 320), (240, 320)),  # a pair is exact, whatever the image
    ((100, 100), [24, 32], (24, 32)),
    ((360, 480), None, (360, 480)),     # None: the image's own
])
def test_model_input_size_hand_computed(image_hw, size, expected):
    assert model_input_size(image_hw, size) == expected


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "256", (1, 2, 3), (0, 4), (24.0, 32)])
def test_bad_sizes_are_refused_with_the_forms_that_work(bad):
    with pytest.raises(SegeduError, match="short side"):
        check_size(bad)


class Recorder(torch.nn.Module):
    """A 1x1 convolution that records the input sizes it was run at and halves its output's resolution."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, classes, 1)
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        return self.conv(x)[..., ::2, ::2]


def test_predict_logits_keeps_the_aspect_ratio_and_returns_the_image_size():
    model = Recorder()
    images = torch.rand(2, 3, 360, 480)
    logits = predict_logits(model, images, 256)
    assert model.seen == [(256, 341)] and logits.shape == (2, 4, 360, 480)
    logits = predict_logits(model, images, (240, 320))
    assert model.seen[-1] == (240, 320) and logits.shape == (2, 4, 360, 480)
    logits = predict_logits(model, torch.rand(1, 3, 128, 96), 32)
    assert model.seen[-1] == (43, 32) and logits.shape == (1, 4, 128, 96)


def test_square_images_run_exactly_as_before():
    """For square images an int size is size x size: the same computation, bit for bit."""
    torch.manual_seed(0)
    model = Recorder()
    images = torch.rand(2, 3, 64, 64)
    assert torch.equal(predict_logits(model, images, 32), resized_forward(model, normalize(images), (32, 32)))
    assert model.seen == [(32, 32), (32, 32)]
    assert tta.input_size((64, 64), 32, 1.25) == (40, 40)


def test_tta_sliding_windows_and_ensembles_use_the_aspect_ratio():
    images = torch.rand(1, 3, 360, 480)
    model = Recorder()
    scores = tta.tta_logits(model, images, 256, flips=("none", "hflip"), scales=(0.5, 1.0))
    assert model.seen == [(128, 170), (256, 341)] and scores.shape == (1, 4, 360, 480)

    model = Recorder()  # a 200 x 300 window at short side 100: 100 x 150 model inputs
    out = sliding.sliding_window_logits(model, images, (200, 300), overlap=0.5, size=100)
    assert set(model.seen) == {(100, 150)} and out.shape == (1, 4, 360, 480)

    a, b = Recorder(), Recorder()  # members trained at different sizes, mixed in one ensemble
    probs = ensemble.ensemble_probabilities([ensemble.Member(a, 64), ensemble.Member(b, (48, 48))], images)
    assert a.seen == [(64, 85)] and b.seen == [(48, 48)]
    assert probs.shape == (1, 4, 360, 480) and torch.allclose(probs.sum(1), torch.ones(1, 360, 480))


# ------------------------------------------------------------------ transforms
def profile(size):
    return dataclasses.replace(profiles.get("smoke"), image_size=size)


def scene(h, w, seed=0):
    rng = np.random.default_rng(seed)
    mask = rng.integers(0, 4, (h, w), dtype=np.uint8)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mask


@pytest.mark.parametrize("shape", [(64, 64), (100, 100), (20, 20)])
def test_val_transform_on_square_images_is_the_old_square_resize(shape):
    image, mask = scene(*shape)
    new = transforms.val_transform(profile(32))(image=image, mask=mask)
    old = A.Compose([A.Resize(32, 32, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                              area_for_downscale="image")])(image=image, mask=mask)
    np.testing.assert_array_equal(new["image"], old["image"])
    np.testing.assert_array_equal(new["mask"], old["mask"])


def test_val_transform_keeps_the_aspect_ratio_or_takes_the_pair():
    image, mask = scene(360, 480)
    out = transforms.val_transform(profile(64))(image=image, mask=mask)
    assert out["image"].shape == (64, 85, 3) and out["mask"].shape == (64, 85)
    assert set(np.unique(out["mask"])) <= set(range(4))  # nearest neighbour: no blended label
    out = transforms.val_transform(profile((24, 32)))(image=image, mask=mask)
    assert out["image"].shape == (24, 32, 3) and out["mask"].shape == (24, 32)


@pytest.mark.parametrize("crop", transforms.CROPS)
def test_training_crops_are_square_for_an_int_and_h_by_w_for_a_pair(crop):
    image, mask = scene(60, 80)
    out = transforms.train_transform(profile(32), crop=crop)(image=image, mask=mask)
    assert out["image"].shape == (32, 32, 3) and out["mask"].shape == (32, 32)
    out = transforms.train_transform(profile((24, 40)), extra=["cutout", "gridmask", "elastic"],
                                     crop=crop)(image=image, mask=mask)
    assert out["image"].shape == (24, 40, 3) and out["mask"].shape == (24, 40)


def test_the_square_crop_keeps_its_ratio_range():
    crop = transforms.augmentation("scale", profile(32))
    assert crop.size == (32, 32) and crop.ratio == (3 / 4, 4 / 3) and crop.scale == (0.25, 1.0)
    assert transforms.image_size(profile(32)) == 32 and transforms.crop_hw(profile((24, 40))) == (24, 40)


# ------------------------------------------------------------------ size-grouped batches
class Records(torch.utils.data.Dataset):
    """Only COCO image records, as SizeGroupedBatches reads them."""

    def __init__(self, shapes):
        self.coco = types.SimpleNamespace(images=[{"height": h, "width": w} for h, w in shapes])

    def __len__(self):
        return len(self.coco.images)

    def __getitem__(self, index):  # an all-zero image of the record's size, a "mask" holding the index
        h, w = self.coco.images[index]["height"], self.coco.images[index]["width"]
        return torch.zeros(3, h, w), torch.full((h, w), index)


def sequential(n, batch_size):
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


def test_one_size_gives_exactly_the_sequential_batches():
    data = Records([(64, 64)] * 10)
    assert list(dataset.SizeGroupedBatches(data, 4)) == sequential(10, 4)
    assert len(dataset.SizeGroupedBatches(data, 4)) == 3
    assert list(dataset.SizeGroupedBatches(data, 1)) == sequential(10, 1)
    plain = torch.utils.data.DataLoader(data, batch_size=3, collate_fn=dataset.collate)
    grouped = dataset.make_eval_loader(data, 3)
    assert [m[:, 0, 0].tolist() for _, m in grouped] == [m[:, 0, 0].tolist() for _, m in plain] == sequential(10, 3)


def test_mixed_sizes_batch_one_size_each_every_index_once_in_dataset_order():
    shapes = [(96, 128), (128, 96), (96, 128), (128, 128), (128, 96), (96, 128), (96, 128), (128, 128), (96, 128)]
    data = Records(shapes)
    batches = list(dataset.SizeGroupedBatches(data, 2))
    assert sorted(i for b in batches for i in b) == list(range(len(shapes)))
    assert all(len({shapes[i] for i in b}) == 1 and 1 <= len(b) <= 2 for b in batches)
    for size in set(shapes):  # the dataset's order within a size
        assert [i for b in batches for i in b if shapes[i] == size] == [i for i, s in enumerate(shapes) if s == size]
    assert batches[0] == [0, 2]  # sizes in the order they first appear
    loader = dataset.make_eval_loader(data, 2)
    for indices, (images, masks) in zip(loader.batch_sampler, loader):
        assert masks[:, 0, 0].tolist() == indices  # collated without a size error, indices reported alongside


def test_subsets_and_shards_are_grouped_after_sharding():
    shapes = [(10, 20), (20, 10)] * 5
    subset = Subset(Records(shapes), [9, 8, 7, 6, 5, 4])  # subset sizes: (20,10), (10,20), ... alternating
    assert list(dataset.SizeGroupedBatches(subset, 2)) == [[0, 2], [4], [1, 3], [5]]
    data = Records(shapes + [(10, 20)])
    seen = []
    for rank in range(3):
        shard = ShardSampler(len(data), rank=rank, num_replicas=3)
        batches = list(dataset.SizeGroupedBatches(data, 2, indices=shard))
        assert all(i % 3 == rank for b in batches for i in b)  # this process's shard only
        assert all(len({shapes[i] if i < 10 else (10, 20) for i in b}) == 1 for b in batches)
        seen += [i for b in batches for i in b]
    assert sorted(seen) == list(range(len(data)))


def test_without_coco_records_the_batches_are_sequential_and_in_order_restores_order():
    assert list(dataset.SizeGroupedBatches(list(range(7)), 3)) == sequential(7, 3)
    assert list(dataset.in_order([(1, "b"), (2, "c"), (0, "a"), (3, "d")])) == [(0, "a"), (1, "b"), (2, "c"),
                                                                                (3, "d")]
    with pytest.raises(SegeduError, match="never came"):
        list(dataset.in_order([(1, "b")]))
    with pytest.raises(SegeduError, match="positive integer"):
        dataset.SizeGroupedBatches(list(range(3)), 0)


# ------------------------------------------------------------------ a user's own dataset
def street_scene(h, w, seed):
    """A street-like image and its index mask: sky above, road below, a car on the road, a void band."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)  # background: buildings
    mask[: int(h * 0.3)] = 2  # sky
    mask[int(h * 0.6):] = 1  # road
    top, left = int(h * rng.uniform(0.5, 0.65)), int(w * rng.uniform(0.1, 0.5))
    mask[top: top + max(2, h // 5), left: left + max(3, w // 4)] = 3  # car
    mask[int(h * 0.45): int(h * 0.45) + max(1, h // 30)] = VOID  # an unlabelled band
    colours = np.array([[120, 100, 90], [70, 70, 70], [140, 190, 240], [200, 30, 30]], np.int16)
    image = colours[np.minimum(mask, 3)] + rng.integers(-20, 21, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_folder(root, shapes, seed=0):
    """``root/images/*.jpg`` and ``root/masks/*.png`` (values 0..3, 255 void), as a user would have them."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k, (h, w) in enumerate(shapes):
        image, mask = street_scene(h, w, seed + k)
        Image.fromarray(image).save(root / "images" / f"frame{k:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"frame{k:03d}.png")


def run_cli(*args):
    assert cli.main([str(a) for a in args]) == 0


def write_test_json(root, source, out="test.json"):
    """The images of ``source`` without annotations: what `segedu predict` reads."""
    coco = json.loads((root / source).read_text())
    (root / out).write_text(json.dumps({"images": coco["images"], "categories": coco["categories"]}))


def hand_split(root, val_count):
    """train.json / val.json from train_all.json: the last ``val_count`` images for validation."""
    coco = json.loads((root / "train_all.json").read_text())
    for name, images in (("train.json", coco["images"][:-val_count]), ("val.json", coco["images"][-val_count:])):
        ids = {im["id"] for im in images}
        (root / name).write_text(json.dumps({**coco, "images": images,
                                             "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}))


def labelled_pixels(root, split):
    """Non-void pixels of a split's masks, read from the user's PNGs (not through segedu)."""
    images = json.loads((root / split).read_text())["images"]
    return sum(int((np.array(Image.open(root / "masks" / (im["file_name"].split("/")[-1]))) != VOID).sum())
               for im in images)


def train_evaluate_predict(root, tmp_path, capsys, model="unet"):
    run = tmp_path / "run"
    run_cli("train", "--model", model, "--width", "0.125", "--profile", "smoke", "--data-dir", root,
            "--image-size", "32", "--epochs", "1", "--batch-size", "2", "--device", "cpu", "--num-workers", "0",
            "--out", run)
    assert "best val mIoU" in capsys.readouterr().out
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "val_miou" in history[-1]  # validated at the images' own aspect ratio, without a collate error

    scores = tmp_path / "scores.json"
    run_cli("evaluate", run, "--data-dir", root, "--device", "cpu", "--out", scores)
    written = json.loads(scores.read_text())
    assert len(written["confusion"]) == 4
    # every labelled pixel of the original masks is scored once, at the image's own size
    assert sum(map(sum, written["confusion"])) == labelled_pixels(root, "val.json")

    csv = tmp_path / "submission.csv"
    run_cli("predict", run, "--data-dir", root, "--device", "cpu", "--out", csv)
    test_images = json.loads((root / "test.json").read_text())["images"]
    assert submission.validate(csv, root / "test.json", num_classes=4) == len(test_images)
    return run


@pytest.mark.parametrize("shapes", [
    [(360, 480)] * 6,                                                     # one non-square size
    [(96, 128), (128, 96), (128, 128), (96, 128), (128, 96), (128, 96), (96, 128), (128, 128)],  # mixed
], ids=["360x480", "mixed"])
def test_train_evaluate_predict_on_non_square_and_mixed_sizes(shapes, tmp_path, capsys):
    root = tmp_path / "data"
    write_folder(root, shapes)
    run_cli("coco-from-masks", "--images", root / "images", "--masks", root / "masks", "--classes", CLASSES,
            "--out", root / "train_all.json", "--ignore", VOID)
    hand_split(root, val_count=3)
    write_test_json(root, "val.json")
    run = train_evaluate_predict(root, tmp_path, capsys)
    if len(set(shapes)) == 1:
        return
    # the other predict-and-score loops take mixed sizes too, and keep the file's order
    from segedu.experiments import compare
    from segedu.inference import cleansing
    from segedu.inference import pseudo

    val_names = [im["file_name"] for im in json.loads((root / "val.json").read_text())["images"]]
    assert [s.file_name for s in cleansing.image_scores(run, root, "val", batch_size=4)] == val_names
    scored = compare.score_runs({"run": run}, root, "val", batch_size=4)["run"]
    assert int(scored["overall"]["confusion"].sum()) == labelled_pixels(root, "val.json")
    summary = pseudo.write_pseudo_labels(run, root, tmp_path / "pseudo.json", threshold=0.0, device="cpu",
                                         train_split=None, batch_size=4)
    written = json.loads((tmp_path / "pseudo.json").read_text())["images"]
    assert summary.predicted_images == 3 and [im["file_name"] for im in written] == val_names


def test_a_users_folder_of_street_scenes_from_masks_to_submission(tmp_path, capsys):
    root = tmp_path / "streets"
    write_folder(root, [(60, 80)] * 6, seed=10)
    run_cli("coco-from-masks", "--images", root / "images", "--masks", root / "masks", "--classes", CLASSES,
            "--out", root / "train_all.json", "--ignore", VOID)
    run_cli("split", root / "train_all.json", "--out", root, "--val-fraction", "0.34", "--seed", "0")
    val = json.loads((root / "val.json").read_text())["images"]
    assert len(val) >= 2 and len(json.loads((root / "train.json").read_text())["images"]) >= 2
    write_test_json(root, "val.json")
    run = train_evaluate_predict(root, tmp_path, capsys, model="fcn8s")
    config = json.loads((run / "config.json").read_text())
    assert config["image_size"] == 32


def test_an_exact_h_by_w_image_size_trains_on_h_by_w_crops_and_scores_every_pixel(tmp_path):
    from segedu.engine import TrainConfig, evaluate, train

    root = tmp_path / "data"
    write_folder(root, [(96, 128), (128, 96), (96, 128), (128, 128), (128, 96), (96, 128)], seed=20)
    run_cli("coco-from-masks", "--images", root / "images", "--masks", root / "masks", "--classes", CLASSES,
            "--out", root / "train_all.json", "--ignore", VOID)
    hand_split(root, val_count=3)
    trainer = train(TrainConfig(model="fcn8s", model_options={"width": 0.125}, data_dir=str(root), profile="smoke",
                                image_size=(24, 32), epochs=1, batch_size=2, num_workers=0, device="cpu",
                                out=str(tmp_path / "run")))
    assert tuple(trainer.train_set[0][0].shape) == (3, 24, 32) and "val_miou" in trainer.history[-1]
    result = evaluate(tmp_path / "run", data_dir=str(root), device="cpu")
    assert int(result["confusion"].sum()) == labelled_pixels(root, "val.json")
