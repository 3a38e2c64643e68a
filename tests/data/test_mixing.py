"""Batch mixes: hand-computed 2x1x4x4 cases for the deterministic cores, invariants and seeds for the
random fronts."""
import numpy as np
import pytest
import torch

from segedu.data import mixing
from segedu.data.classes import IGNORE_INDEX
from segedu.errors import SegeduError

I = IGNORE_INDEX
SWAP = torch.tensor([1, 0])  # in a batch of two, each sample's partner is the other one


def two_samples():
    """Image 0 is all 0, image 1 all 1 (one channel, 4x4); masks use classes 0-2 and the ignore label."""
    images = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
    masks = torch.tensor([
        [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, I, I], [2, 2, I, I]],
        [[2, 2, 2, 2], [1, 1, 1, 1], [0, 0, 0, 0], [I, 0, 0, 0]],
    ])
    return images, masks


def random_batch(seed, batch=4, size=16, classes=5):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=g)
    masks = torch.randint(0, classes, (batch, size, size), generator=g)
    masks[:, :2, :3] = I
    return images, masks


def test_soft_targets_of_a_hand_made_mask():
    soft = mixing.to_soft_targets(torch.tensor([[[0, 1], [I, 2]]]), num_classes=3)
    expected = torch.tensor([[[1, 0], [0, 0]], [[0, 1], [0, 0]], [[0, 0], [0, 1]]], dtype=torch.float32)
    torch.testing.assert_close(soft[0], expected)


def test_soft_targets_reject_labels_outside_the_classes():
    with pytest.raises(SegeduError, match="label 7"):
        mixing.to_soft_targets(torch.tensor([[[0, 7]]]), num_classes=3)


def test_blend_by_hand():
    images, masks = two_samples()
    out = mixing.blend(images, masks, SWAP, torch.tensor([0.25, 0.75]), num_classes=3)
    torch.testing.assert_close(out.images[0], torch.full((1, 4, 4), 0.75))  # 0.25*0 + 0.75*1
    torch.testing.assert_close(out.images[1], torch.full((1, 4, 4), 0.75))  # 0.75*1 + 0.25*0
    target = out.targets[0]  # sample 0 with weight 0.25, sample 1 with 0.75
    torch.testing.assert_close(target[:, 0, 0], torch.tensor([0.25, 0.0, 0.75]))  # 0 vs 2
    torch.testing.assert_close(target[:, 0, 2], torch.tensor([0.0, 0.25, 0.75]))  # 1 vs 2
    torch.testing.assert_close(target[:, 1, 0], torch.tensor([0.25, 0.75, 0.0]))  # 0 vs 1
    torch.testing.assert_close(target[:, 2, 1], torch.tensor([0.75, 0.0, 0.25]))  # 2 vs 0
    torch.testing.assert_close(target[:, 2, 2], torch.zeros(3))  # ignored in sample 0
    torch.testing.assert_close(out.targets[1][:, 3, 0], torch.zeros(3))  # ignored in sample 1
    torch.testing.assert_close(out.targets[1][:, 1, 2], torch.tensor([0.0, 1.0, 0.0]))  # 1 vs 1


def test_blend_with_weight_one_keeps_the_own_labels():
    images, masks = two_samples()
    out = mixing.blend(images, masks, SWAP, torch.tensor([1.0, 0.0]), num_classes=3)
    torch.testing.assert_close(out.targets[0], mixing.to_soft_targets(masks[:1], 3)[0])  # sample 1's ignore is moot
    torch.testing.assert_close(out.targets[1], mixing.to_soft_targets(masks[:1], 3)[0])  # all weight on sample 0
    torch.testing.assert_close(out.images, images[[0, 0]])


def test_mixup_soft_targets_sum_to_one_exactly_where_both_sources_are_labelled():
    images, masks = random_batch(0)
    out = mixing.mixup(images, masks, torch.Generator().manual_seed(0), num_classes=5)
    both = (masks != I) & (masks.roll(1, dims=0) != I)
    sums = out.targets.sum(1)
    torch.testing.assert_close(sums[both], torch.ones(int(both.sum())))
    assert torch.all(sums[~both] == 0)
    assert out.targets.shape == (4, 5, 16, 16)


def test_paste_boxes_by_hand():
    images, masks = two_samples()
    out = mixing.paste_boxes(images, masks, SWAP, [(1, 1, 3, 3), (0, 0, 0, 0)])
    expected_image = torch.zeros(1, 4, 4)
    expected_image[0, 1:3, 1:3] = 1
    torch.testing.assert_close(out.images[0], expected_image)
    assert out.targets[0].tolist() == [[0, 0, 1, 1], [0, 1, 1, 1], [2, 0, 0, I], [2, 2, I, I]]
    torch.testing.assert_close(out.images[1], images[1])  # empty box: unchanged
    assert torch.equal(out.targets[1], masks[1])


def test_cutmix_replaces_exactly_one_box_with_the_previous_sample():
    images, masks = random_batch(1)
    out = mixing.cutmix(images, masks, torch.Generator().manual_seed(3))
    assert out.targets.dtype == torch.int64
    for i in range(4):
        changed = (out.images[i] != images[i]).any(0)
        ys, xs = torch.nonzero(changed, as_tuple=True)
        assert len(ys) > 0
        box = (slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
        assert changed[box].all()  # the changed pixels form a full rectangle
        torch.testing.assert_close(out.images[i][:, box[0], box[1]], images[i - 1][:, box[0], box[1]])
        assert torch.equal(out.targets[i][box], masks[i - 1][box])
        assert torch.equal(out.targets[i][~changed], masks[i][~changed])


def test_paste_resized_by_hand():
    images, masks = two_samples()
    # the top-left 2x2 of sample 1 (labels 2,2 / 1,1) stretched over all of sample 0
    out = mixing.paste_resized(images, masks, SWAP, [(0, 0, 2, 2), (0, 0, 0, 0)], [(0, 0, 4, 4), (0, 0, 0, 0)],
                               num_classes=3)
    torch.testing.assert_close(out.images[0], torch.ones(1, 4, 4))
    assert out.targets[0].tolist() == [[2, 2, 2, 2], [2, 2, 2, 2], [1, 1, 1, 1], [1, 1, 1, 1]]
    torch.testing.assert_close(out.image_labels[0], torch.tensor([0.0, 0.5, 0.5]))
    # unmixed sample 1: 4 pixels of class 2, 4 of class 1, 7 of class 0 among 15 labelled
    torch.testing.assert_close(out.image_labels[1], torch.tensor([7, 4, 4]) / 15)


def test_paste_resized_shrinks_labels_with_nearest_neighbour():
    images, masks = two_samples()
    out = mixing.paste_resized(images, masks, SWAP, [(0, 0, 4, 4), (0, 0, 0, 0)], [(0, 0, 2, 2), (0, 0, 0, 0)],
                               num_classes=3)
    # 4x4 -> 2x2 nearest takes source rows/columns 1 and 3 (centres of 2-pixel cells, rounded)
    assert out.targets[0, :2, :2].tolist() == [[1, 1], [0, 0]]


def test_snapmix_image_labels_are_the_class_shares_of_the_mixed_masks():
    images, masks = random_batch(2)
    out = mixing.snapmix(images, masks, torch.Generator().manual_seed(5), num_classes=5)
    for i in range(4):
        labels = out.targets[i][out.targets[i] != I].numpy()
        shares = np.bincount(labels, minlength=5) / labels.size
        np.testing.assert_allclose(out.image_labels[i].numpy(), shares, rtol=1e-6)
    assert not torch.equal(out.targets, masks)


def copypaste_batch():
    """Sample 0 has two battery (9) objects and a clothing (10) object; sample 1 has none."""
    masks = torch.zeros(2, 12, 12, dtype=torch.int64)
    masks[0, 1:3, 1:4] = 9
    masks[0, 7:10, 6:8] = 9
    masks[0, 5:7, 9:11] = 10
    masks[1, 4:6, :] = 2
    images = torch.stack([torch.full((3, 12, 12), 0.9), torch.full((3, 12, 12), 0.1)])
    images[0, :, 7:10, 6:8] = 0.5
    return images, masks


def test_copypaste_puts_the_class_where_the_source_had_it():
    images, masks = copypaste_batch()
    pasted_any = False
    for seed in range(6):
        out = mixing.copypaste(images, masks, torch.Generator().manual_seed(seed), classes=[9], p=1.0,
                               flip=False, scale_range=(1.0, 1.0))
        assert torch.equal(out.targets[0], masks[0])  # sample 1 has no battery to give
        now_battery = out.targets[1] == 9
        assert now_battery.any()
        assert torch.all(masks[0][now_battery] == 9)  # only where the source had a battery
        for component in (masks[0] == 9).logical_and(torch.arange(12)[:, None] < 5), \
                (masks[0] == 9).logical_and(torch.arange(12)[:, None] >= 5):
            assert now_battery[component].all() or not now_battery[component].any()  # whole objects
        torch.testing.assert_close(out.images[1][:, now_battery], images[0][:, now_battery])
        assert torch.equal(out.targets[1][~now_battery], masks[1][~now_battery])
        assert not (out.targets[1] == 10).any()  # clothing was not asked for
        pasted_any |= bool(now_battery.sum() < (masks[0] == 9).sum())
    assert pasted_any  # some seed pasted a strict subset of the objects


def test_copypaste_flips_and_scales_the_source_consistently():
    images, masks = copypaste_batch()
    for seed in range(6):
        out = mixing.copypaste(images, masks, torch.Generator().manual_seed(seed), classes=[9], p=1.0)
        pasted = (out.targets[1] == 9)
        assert pasted.any()
        # the source's battery pixels are 0.9 or 0.5: a pasted pixel of class 9 shows the source, not 0.1
        assert torch.all(out.images[1][0][pasted] > 0.4)


@pytest.mark.parametrize("name, params", [
    ("mixup", {"num_classes": 5}), ("cutmix", {}), ("snapmix", {"num_classes": 5}),
    ("copypaste", {"classes": [3, 4], "p": 1.0}),
])
def test_mixes_are_deterministic_for_a_generator_seed(name, params):
    images, masks = random_batch(4)
    mix = mixing.BatchMix(name, **params)
    first = mix(images, masks, torch.Generator().manual_seed(11))
    again = mixing.apply(name, images, masks, torch.Generator().manual_seed(11), **params)
    other = mix(images, masks, torch.Generator().manual_seed(12))
    assert torch.equal(first.images, again.images) and torch.equal(first.targets, again.targets)
    assert not torch.equal(first.images, other.images)


def test_p_zero_leaves_the_batch_alone():
    images, masks = random_batch(5)
    g = torch.Generator().manual_seed(0)
    for name, params in [("cutmix", {}), ("snapmix", {"num_classes": 5}), ("copypaste", {"classes": [1]})]:
        out = mixing.apply(name, images, masks, g, p=0.0, **params)
        assert torch.equal(out.images, images) and torch.equal(out.targets, masks)
    out = mixing.mixup(images, masks, g, p=0.0, num_classes=5)
    torch.testing.assert_close(out.images, images)
    torch.testing.assert_close(out.targets, mixing.to_soft_targets(masks, 5))  # the partner's ignore does not count


def test_wrong_names_and_shapes_are_explained():
    images, masks = random_batch(6)
    with pytest.raises(SegeduError, match="unknown batch mix"):
        mixing.BatchMix("mosaic")
    with pytest.raises(SegeduError, match="same B, H, W"):
        mixing.cutmix(images, masks[:, :8], torch.Generator())
