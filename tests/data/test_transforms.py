"""Per-sample pipelines: image and mask stay aligned, masks are never blended, sizes and seeds hold.

Alignment is checked with images whose grey level encodes the class of each pixel: after any
geometric transform, decoding the image must give back the transformed mask wherever the pixel is
not on a class boundary (where bilinear resampling legitimately blends two levels).
"""
import albumentations as A
import cv2
import numpy as np
import pytest

from segedu import profiles
from segedu.data import transforms
from segedu.data.classes import IGNORE_INDEX, NUM_CLASSES
from segedu.data.sizes import model_input_size
from segedu.errors import SegeduError

PROFILE = profiles.PROFILES["smoke"]
SIZE = PROFILE.image_size
#: grey level that encodes each label; 0 is left free to recognise dropped pixels
LEVELS = {label: 20 + 20 * label for label in range(NUM_CLASSES)} | {IGNORE_INDEX: 245}
GEOMETRIC = ("scale", "crop_non_empty", "flip", "elastic")
DROPOUTS = ("cutout", "gridmask")


def labelled_scene(height, width, seed):
    """A mask of random axis-aligned blocks of random classes (and an ignored block), and an
    image whose grey level is LEVELS[label]."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), np.uint8)
    for label in [*rng.integers(1, NUM_CLASSES, 6), IGNORE_INDEX]:
        y, x = rng.integers(0, height - 12), rng.integers(0, width - 12)
        mask[y:y + rng.integers(12, height // 2), x:x + rng.integers(12, width // 2)] = label
    return encode(mask), mask


def encode(mask):
    lut = np.zeros(256, np.uint8)
    for label, level in LEVELS.items():
        lut[label] = level
    return np.repeat(lut[mask][..., None], 3, axis=2)


def decode(image):
    labels = np.array(list(LEVELS))
    levels = np.array(list(LEVELS.values()))
    nearest = np.abs(image[..., 0].astype(int)[..., None] - levels).argmin(-1)
    return labels[nearest]


def away_from_boundaries(mask, radius=2):
    """Pixels whose (2r+1)^2 neighbourhood holds a single label and lies inside the image (at the
    edge, mirrored borders may legitimately blend a label with one just outside the output)."""
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    single = cv2.erode(mask, kernel) == cv2.dilate(mask, kernel)
    inside = np.zeros_like(single)
    inside[radius:-radius, radius:-radius] = True
    return single & inside


def pipeline(*steps, seed=0):
    return transforms.reseed(A.Compose(list(steps)), seed)


@pytest.mark.parametrize("name", GEOMETRIC)
def test_geometric_augmentations_keep_image_and_mask_aligned(name):
    run = pipeline(transforms.augmentation(name, PROFILE, p=1.0))
    for draw in range(8):
        image, mask = labelled_scene(96, 112, seed=draw)
        out = run(image=image, mask=mask)
        interior = away_from_boundaries(out["mask"])
        assert interior.mean() > 0.5
        np.testing.assert_array_equal(decode(out["image"])[interior], out["mask"][interior])


@pytest.mark.parametrize("name", DROPOUTS)
def test_dropouts_keep_the_mask_by_default_and_can_ignore_dropped_pixels(name):
    image, mask = labelled_scene(SIZE, SIZE, seed=1)
    keep = pipeline(transforms.augmentation(name, PROFILE, p=1.0))(image=image, mask=mask)
    ignore = pipeline(transforms.augmentation(name, PROFILE, p=1.0, fill_mask=IGNORE_INDEX))(image=image, mask=mask)
    dropped = keep["image"][..., 0] == 0
    assert 0 < dropped.mean() < 0.9
    np.testing.assert_array_equal(keep["mask"], mask)
    np.testing.assert_array_equal(decode(keep["image"])[~dropped], mask[~dropped])
    # same seed, same holes: the ignored pixels are exactly the dropped ones
    np.testing.assert_array_equal(ignore["image"], keep["image"])
    np.testing.assert_array_equal(ignore["mask"], np.where(dropped, IGNORE_INDEX, mask))


def test_colour_jitter_changes_only_the_image():
    image, mask = labelled_scene(SIZE, SIZE, seed=2)
    run = pipeline(transforms.augmentation("colour", PROFILE, p=1.0))
    outs = [run(image=image, mask=mask) for _ in range(4)]
    for out in outs:
        np.testing.assert_array_equal(out["mask"], mask)
    assert any(not np.array_equal(out["image"], image) for out in outs)


@pytest.mark.parametrize("name", list(transforms.AUGMENTATIONS))
def test_mask_values_stay_within_the_input_labels_and_ignore(name):
    # a noise mask of labels 0, 2, 4, 10: any blending would create values such as 1, 3 or 7
    rng = np.random.default_rng(3)
    mask = rng.choice(np.array([0, 2, 4, 10], np.uint8), size=(80, 72))
    image = encode(mask)
    run = pipeline(transforms.augmentation(name, PROFILE, p=1.0))
    for _ in range(4):
        out = run(image=image, mask=mask)
        assert set(np.unique(out["mask"])) <= {0, 2, 4, 10, IGNORE_INDEX}


@pytest.mark.parametrize("shape", [(37, 53), (150, 130)])
def test_val_resize_uses_nearest_neighbour_for_masks(shape):
    rng = np.random.default_rng(4)
    mask = rng.integers(0, NUM_CLASSES, shape, dtype=np.uint8)
    out = transforms.val_transform(PROFILE)(image=encode(mask), mask=mask)
    height, width = model_input_size(shape, SIZE)  # the short side to SIZE, the aspect ratio kept
    np.testing.assert_array_equal(out["mask"], cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST))


@pytest.mark.parametrize("crop", transforms.CROPS)
@pytest.mark.parametrize("shape", [(40, 50), (100, 120)])
def test_train_pipeline_outputs_image_size(crop, shape):
    image, mask = labelled_scene(*shape, seed=5)
    run = transforms.train_transform(PROFILE, extra=list(DROPOUTS) + ["elastic"], crop=crop)
    out = run(image=image, mask=mask)
    assert out["image"].shape == (SIZE, SIZE, 3) and out["image"].dtype == np.uint8
    assert out["mask"].shape == (SIZE, SIZE)


def test_val_and_test_pipelines_output_image_size():
    image, mask = labelled_scene(120, 120, seed=6)
    out = transforms.val_transform(PROFILE)(image=image, mask=mask)
    assert out["image"].shape == (SIZE, SIZE, 3) and out["mask"].shape == (SIZE, SIZE)
    assert transforms.test_transform(PROFILE)(image=image)["image"].shape == (SIZE, SIZE, 3)
    image, mask = labelled_scene(100, 120, seed=6)  # not square: the short side is SIZE, the aspect kept
    out = transforms.val_transform(PROFILE)(image=image, mask=mask)
    assert out["image"].shape == (SIZE, round(120 * SIZE / 100), 3) and out["mask"].shape == out["image"].shape[:2]
    assert transforms.test_transform(PROFILE)(image=image)["image"].shape == out["image"].shape


def test_crop_non_empty_always_contains_the_object():
    mask = np.zeros((160, 160), np.uint8)
    mask[150:156, 4:10] = 9  # a small battery near a corner
    run = pipeline(transforms.augmentation("crop_non_empty", PROFILE))
    for _ in range(20):
        assert (run(image=encode(mask), mask=mask)["mask"] == 9).any()


def test_train_pipeline_is_deterministic_for_a_seed():
    scenes = [labelled_scene(90, 100, seed=s) for s in range(5)]
    extra = list(DROPOUTS) + ["elastic"]

    def outputs(seed):
        run = transforms.train_transform(PROFILE, extra=extra, seed=seed)
        return [run(image=image, mask=mask) for image, mask in scenes]

    first, again, other = outputs(3), outputs(3), outputs(4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["mask"], b["mask"])
    assert any(not np.array_equal(a["image"], c["image"]) for a, c in zip(first, other))


def test_steps_of_a_seeded_pipeline_decide_independently():
    # albumentations' own Compose(seed=) would make both flips fire together every time
    run = pipeline(A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5))
    corner = np.arange(16, dtype=np.uint8).reshape(4, 4)
    image = np.repeat(corner[..., None], 3, axis=2)
    decisions = set()
    for _ in range(40):
        top_left = run(image=image)["image"][0, 0, 0]
        decisions.add((top_left in (3, 15), top_left in (12, 15)))
    assert decisions == {(False, False), (False, True), (True, False), (True, True)}


def test_elastic_moves_grid_nodes_with_the_papers_standard_deviation():
    # U-Net: Gaussian displacements of the 3x3 grid nodes; the centre of a 65 px image is a node.
    side, std, draws = 65, 8.0, 400
    image = np.zeros((side, side, 3), np.uint8)
    image[..., 0], image[..., 1] = np.arange(side)[None, :], np.arange(side)[:, None]
    run = pipeline(transforms.UNetElastic(displacement_std=std, p=1.0))
    moves = np.array([run(image=image)["image"][32, 32, :2].astype(int) - 32 for _ in range(draws)])
    assert np.all(np.abs(moves.mean(0)) < 4 * std / np.sqrt(draws))
    assert np.all(np.abs(moves.std(0) / std - 1) < 0.15)


def test_elastic_uses_ten_pixels_at_the_papers_resolution():
    assert transforms.augmentation("elastic", profiles.PROFILES["gpu"]).displacement_std == 10.0


def test_unknown_names_and_misplaced_crops_are_explained():
    with pytest.raises(SegeduError, match="unknown augmentation"):
        transforms.augmentation("mosaic", PROFILE)
    with pytest.raises(SegeduError, match="crop='crop_non_empty'"):
        transforms.train_transform(PROFILE, extra=["crop_non_empty"])
