"""segedu.metrics against hand-computed matrices and torchmetrics (an independent implementation)."""
import math

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex
from torchmetrics.functional.classification import multiclass_jaccard_index

from segedu.errors import SegeduError
from segedu.metrics import SegMetrics, confusion_matrix, scores_from_confusion

VOID = 255
NAN = float("nan")


def assert_close(actual, expected):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64),
                               torch.as_tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-6, equal_nan=True)


# --- hand-computed cases ------------------------------------------------------------------------

# 3x3 image, 3 classes, one void pixel. Valid (target, prediction) pairs, row by row:
# (0,0) (0,1) (1,1) | (1,1) (2,2) (2,0) | void (2,2) (0,0)
HAND_TARGET = torch.tensor([[[0, 0, 1], [1, 2, 2], [VOID, 2, 0]]])
HAND_PRED = torch.tensor([[[0, 1, 1], [1, 2, 0], [2, 2, 0]]])
# rows = target, columns = prediction
HAND_CONFUSION = [[2, 1, 0],
                  [0, 2, 0],
                  [1, 0, 2]]
# t = (3, 2, 3) target pixels, p = (3, 3, 2) predicted pixels, diagonal (2, 2, 2), 8 valid pixels
HAND_SCORES = {
    "pixel_accuracy": 6 / 8,
    "accuracy": [2 / 3, 2 / 2, 2 / 3],
    "mean_accuracy": (2 / 3 + 1 + 2 / 3) / 3,
    "iou": [2 / (3 + 3 - 2), 2 / (2 + 3 - 2), 2 / (3 + 2 - 2)],      # 1/2, 2/3, 2/3
    "miou": (1 / 2 + 2 / 3 + 2 / 3) / 3,                               # 11/18
    "fwiou": (3 * 1 / 2 + 2 * 2 / 3 + 3 * 2 / 3) / 8,                  # 29/48
    "dice": [2 * 2 / (3 + 3), 2 * 2 / (2 + 3), 2 * 2 / (3 + 2)],     # 2/3, 4/5, 4/5
    "mdice": (2 / 3 + 4 / 5 + 4 / 5) / 3,                              # 34/45
}


def test_hand_computed_confusion_and_every_score():
    cm = confusion_matrix(HAND_PRED, HAND_TARGET, 3, VOID)
    assert cm.dtype == torch.int64
    assert cm.tolist() == HAND_CONFUSION
    metrics = SegMetrics(3)
    metrics.update(HAND_PRED, HAND_TARGET)
    scores = metrics.compute()
    for key, expected in HAND_SCORES.items():
        assert_close(scores[key], expected)
    assert metrics.confusion.tolist() == HAND_CONFUSION


def test_class_absent_from_both_is_nan_and_left_out_of_the_means():
    # the same pixels scored with a 4th class that never occurs
    scores = scores_from_confusion(confusion_matrix(HAND_PRED, HAND_TARGET, 4, VOID))
    for key in ("iou", "dice", "accuracy"):
        assert_close(scores[key], HAND_SCORES[key] + [NAN])
    for key in ("miou", "mdice", "mean_accuracy", "fwiou", "pixel_accuracy"):
        assert_close(scores[key], HAND_SCORES[key])


def test_class_only_in_prediction_scores_zero():
    # 2x2, target [[0, 0], [0, 1]], prediction [[0, 2], [0, 1]]: class 2 is predicted once, never true
    scores = scores_from_confusion(confusion_matrix(torch.tensor([[[0, 2], [0, 1]]]), torch.tensor([[[0, 0], [0, 1]]]), 3))
    assert_close(scores["iou"], [2 / 3, 1.0, 0.0])          # class 0: 2 / (3 + 2 - 2)
    assert_close(scores["miou"], (2 / 3 + 1) / 3)
    assert_close(scores["accuracy"], [2 / 3, 1.0, 0.0])     # torchmetrics' convention: recall 0, counted
    assert_close(scores["mean_accuracy"], (2 / 3 + 1) / 3)
    assert_close(scores["dice"], [4 / 5, 1.0, 0.0])
    assert_close(scores["mdice"], (4 / 5 + 1) / 3)
    assert_close(scores["fwiou"], (3 * 2 / 3 + 1 * 1) / 4)
    assert_close(scores["pixel_accuracy"], 3 / 4)


def test_nothing_valid_gives_nan_scores():
    scores = SegMetrics(3).compute()
    assert all(math.isnan(scores[key]) for key in ("pixel_accuracy", "mean_accuracy", "miou", "fwiou", "mdice"))
    assert torch.isnan(scores["iou"]).all()


def test_per_image_average_differs_from_dataset_level():
    # image A: all class 0, predicted right. image B: all class 1, one pixel predicted as 0.
    target = torch.tensor([[[0, 0], [0, 0]], [[1, 1], [1, 1]]])
    pred = torch.tensor([[[0, 0], [0, 0]], [[1, 1], [1, 0]]])
    dataset, per_image = SegMetrics(2), SegMetrics(2, per_image=True)
    dataset.update(pred, target)
    per_image.update(pred, target)
    # dataset: confusion [[4, 0], [1, 3]] -> IoU_0 = 4 / (4 + 5 - 4), IoU_1 = 3 / (4 + 3 - 3)
    assert_close(dataset.compute()["iou"], [4 / 5, 3 / 4])
    assert_close(dataset.compute()["miou"], (4 / 5 + 3 / 4) / 2)
    # image A: IoU (1, NaN), mIoU 1. image B: confusion [[0, 0], [1, 3]] -> IoU (0, 3/4), mIoU 3/8
    scores = per_image.compute()
    assert_close(scores["miou"], (1 + 3 / 8) / 2)
    assert_close(scores["iou"], [(1 + 0) / 2, 3 / 4])        # class 1 only occurs in image B
    assert_close(scores["mdice"], (1 + (0 + 6 / 7) / 2) / 2)  # B: Dice_1 = 2*3 / (4 + 3)
    assert_close(scores["pixel_accuracy"], (1 + 3 / 4) / 2)
    assert per_image.confusion.tolist() == dataset.confusion.tolist() == [[4, 0], [1, 3]]


# --- torchmetrics --------------------------------------------------------------------------------

def _random_batch(seed, num_classes=5, shape=(3, 12, 10), void_fraction=0.1):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes, shape, generator=g)
    target[torch.rand(shape, generator=g) < void_fraction] = VOID
    # mostly right predictions, as from a half-trained model
    pred = torch.where(torch.rand(shape, generator=g) < 0.6, target.clamp(max=num_classes - 1),
                       torch.randint(0, num_classes, shape, generator=g))
    return pred, target


def _assert_matches_torchmetrics(batches, num_classes):
    ours = SegMetrics(num_classes)
    references = {
        "miou": MulticlassJaccardIndex(num_classes, average="macro", ignore_index=VOID),
        "iou": MulticlassJaccardIndex(num_classes, average="none", ignore_index=VOID),
        "pixel_accuracy": MulticlassAccuracy(num_classes, average="micro", ignore_index=VOID),
        "mean_accuracy": MulticlassAccuracy(num_classes, average="macro", ignore_index=VOID),
    }
    for pred, target in batches:
        ours.update(pred, target)
        for reference in references.values():
            reference.update(pred, target)
    scores = ours.compute()
    for key, reference in references.items():
        # torchmetrics' average='none' reports 0 where we report NaN (class absent from both)
        actual = scores[key].nan_to_num(0.0) if key == "iou" else scores[key]
        assert_close(actual, reference.compute())


@pytest.mark.parametrize("seed", range(4))
def test_random_batches_match_torchmetrics(seed):
    _assert_matches_torchmetrics([_random_batch(seed * 10 + i) for i in range(3)], num_classes=5)


def test_edge_cases_match_torchmetrics():
    pred, target = _random_batch(0, num_classes=4)
    absent_in_both = (pred.clamp(max=2), torch.where(target == 3, 2, target))            # class 3 never occurs
    only_predicted = (pred, torch.where(target == 3, 2, target))                         # class 3 only predicted
    all_void = (pred, torch.full_like(target, VOID))
    single_class = (torch.zeros_like(pred), torch.zeros_like(target))
    for batches in ([absent_in_both], [only_predicted], [_random_batch(1, 4), all_void, _random_batch(2, 4)],
                    [single_class], [single_class, only_predicted]):
        _assert_matches_torchmetrics(batches, num_classes=4)


def test_logits_give_the_argmax_labels_scores():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 6, 7, generator=g)
    target = torch.randint(0, 4, (2, 6, 7), generator=g)
    from_logits, from_labels = SegMetrics(4), SegMetrics(4)
    from_logits.update(logits, target)
    from_labels.update(logits.argmax(1), target)
    assert torch.equal(from_logits.confusion, from_labels.confusion)
    reference = MulticlassJaccardIndex(4, ignore_index=VOID)
    reference.update(logits, target)
    assert_close(from_logits.compute()["miou"], reference.compute())


def test_per_image_mean_matches_torchmetrics_image_by_image():
    batches = [_random_batch(seed, num_classes=6, shape=(2, 9, 8)) for seed in (5, 6)]
    metrics = SegMetrics(6, per_image=True)
    for pred, target in batches:
        metrics.update(pred, target)
    per_image = [multiclass_jaccard_index(p[None], t[None], 6, average="macro", ignore_index=VOID)
                 for pred, target in batches for p, t in zip(pred, target)]
    assert_close(metrics.compute()["miou"], torch.stack(per_image).mean())


# --- accumulation, merge, input forms ------------------------------------------------------------

@pytest.mark.parametrize("per_image", [False, True])
def test_accumulating_batches_equals_one_big_batch_and_merge(per_image):
    batches = [_random_batch(seed, num_classes=5) for seed in range(4)]
    accumulated, big = SegMetrics(5, per_image=per_image), SegMetrics(5, per_image=per_image)
    first_half, second_half = SegMetrics(5, per_image=per_image), SegMetrics(5, per_image=per_image)
    for i, (pred, target) in enumerate(batches):
        accumulated.update(pred, target)
        (first_half if i < 2 else second_half).update(pred, target)
    big.update(torch.cat([p for p, _ in batches]), torch.cat([t for _, t in batches]))
    merged = first_half.merge(second_half)
    expected = big.compute()
    for metrics in (accumulated, merged):
        assert torch.equal(metrics.confusion, big.confusion)
        for key, value in metrics.compute().items():
            assert_close(value, expected[key])


def test_reset_and_uint8_masks():
    pred, target = _random_batch(7)
    metrics = SegMetrics(5)
    metrics.update(pred, target)
    metrics.reset()
    assert metrics.confusion.sum() == 0
    metrics.update(pred.to(torch.uint8), target.to(torch.uint8))  # 255 * 5 must not wrap around in uint8
    assert torch.equal(metrics.confusion, confusion_matrix(pred, target, 5))


def test_void_label_inside_the_class_range():
    pred, target = _random_batch(8, num_classes=5, void_fraction=0.0)
    reference = MulticlassJaccardIndex(5, average="none", ignore_index=0)
    reference.update(pred, target)
    expected = confusion_matrix(pred, target, 5, ignore_index=None)
    expected[0] = 0  # rows are targets: drop the void class's pixels
    cm = confusion_matrix(pred, target, 5, ignore_index=0)
    assert torch.equal(cm, expected)
    assert_close(scores_from_confusion(cm)["iou"][1:], reference.compute()[1:])


@pytest.mark.parametrize("pred, target, fragment", [
    (torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([[[0, 7], [0, 0]]]), "target label 7"),
    (torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([[[0, 300], [0, 0]]]), "target range"),
    (torch.tensor([[[0, 5], [0, 0]]]), torch.zeros(1, 2, 2, dtype=torch.long), "prediction range 0..5"),
    (torch.zeros(1, 2, 3, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long), "differ in shape"),
    (torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), "3 channels"),
])
def test_bad_inputs_raise_segedu_error(pred, target, fragment):
    with pytest.raises(SegeduError, match=fragment):
        SegMetrics(5).update(pred, target)


def test_merge_refuses_a_different_setup():
    with pytest.raises(SegeduError, match="cannot merge"):
        SegMetrics(5).merge(SegMetrics(6))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_state_stays_on_device_and_matches_cpu():
    batches = [_random_batch(seed, num_classes=5) for seed in range(3)]
    on_gpu, on_cpu = SegMetrics(5, per_image=True), SegMetrics(5, per_image=True)
    for pred, target in batches:
        on_gpu.update(pred.cuda(), target.cuda())
        on_cpu.update(pred, target)
    assert on_gpu.confusion.is_cuda
    assert torch.equal(on_gpu.confusion.cpu(), on_cpu.confusion)
    expected = on_cpu.compute()
    for key, value in on_gpu.compute().items():
        assert_close(value, expected[key])


def test_boundary_band_by_hand():
    from segedu.metrics import boundary_band, mask_outside

    target = torch.zeros(1, 6, 6, dtype=torch.int64)
    target[0, :, 3:] = 1  # a vertical edge between columns 2 and 3
    band = boundary_band(target, width=1)[0]
    assert band[:, 2:4].all() and not band[:, :2].any() and not band[:, 4:].any()
    wide = boundary_band(target, width=2)[0]
    assert wide[:, 1:5].all() and not wide[:, 0].any() and not wide[:, 5].any()
    target[0, 0, 0] = 255
    assert not boundary_band(target, width=1)[0, 0, 0]
    masked = mask_outside(target, band.unsqueeze(0))
    assert (masked[0, :, :2] == 255).all() and torch.equal(masked[0, 1:, 2:4], target[0, 1:, 2:4])


def test_object_recall_by_hand():
    """Two objects: a 2x2 square of class 3 (3 of its 4 pixels predicted 3) and a 1x3 bar of class 5
    (no pixel predicted 5); a third object painted over entirely is left out."""
    from segedu.metrics import object_recall

    instances = torch.zeros(4, 6, dtype=torch.int64)
    instances[0:2, 0:2] = 1
    instances[3, 3:6] = 3  # object 2 was painted over by object 3 entirely
    pred = torch.zeros(4, 6, dtype=torch.int64)
    pred[0:2, 0:2] = 3
    pred[1, 1] = 5
    pred[3, 3:6] = 4
    records = object_recall(pred, instances, [3, 7, 5])
    assert records.tolist() == [[1.0, 4.0, 0.75], [3.0, 3.0, 0.0]]


def test_object_recall_errors():
    from segedu.errors import SegeduError
    from segedu.metrics import object_recall

    with pytest.raises(SegeduError, match=r"\(2, 2\).*\(2, 3\)"):
        object_recall(torch.zeros(2, 2, dtype=torch.int64), torch.zeros(2, 3, dtype=torch.int64), [1])
    with pytest.raises(SegeduError, match="instance id 2 has no class"):
        object_recall(torch.zeros(2, 2, dtype=torch.int64), torch.tensor([[0, 2], [1, 1]]), [1])
    assert object_recall(torch.zeros(2, 2), torch.zeros(2, 2), []).shape == (0, 3)
