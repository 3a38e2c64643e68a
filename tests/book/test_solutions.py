"""The solutions page (book/solutions/index.md) states what segedu computes.

Each test computes an exercise's answer with segedu (or torch / pycocotools where the chapter
does) on small tensors and checks both the answer and the sentence of the solutions page that
states it, so the page fails here when the code or the chapter changes under it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import jupytext
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segedu import env, metrics, models
from segedu.data import IGNORE_INDEX, coco, masks, sampler, transforms
from segedu.errors import SegeduError

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "book" / "solutions" / "index.md"


def section(number: str) -> str:
    """The page's text for chapter ``number``, with line breaks and indentation folded to spaces."""
    text = PAGE.read_text()
    match = re.search(rf"^## {number} .*?(?=^## |\Z)", text, re.M | re.S)
    assert match, f"the solutions page has no section for chapter {number}"
    return re.sub(r"\s+", " ", match.group(0))


def says(number: str, *phrases: str) -> None:
    body = section(number)
    for phrase in phrases:
        assert re.sub(r"\s+", " ", phrase) in body, f"chapter {number} solution should say {phrase!r}"


def test_sections_name_the_chapters_by_their_titles():
    """Chapters 00-06 are covered (later chapters may add sections); each heading is the chapter's title."""
    from segedu import book

    titles = {py.stem[:2]: jupytext.read(py).cells[0].source.splitlines()[0].lstrip("# ") for py in book.notebooks(ROOT)}
    headings = re.findall(r"^## (\d\d) (.+)$", PAGE.read_text(), re.M)
    assert [n for n, _ in headings] == sorted(n for n, _ in headings)
    assert {f"{n:02d}" for n in range(7)} <= {n for n, _ in headings}
    for number, heading in headings:
        assert titles.get(number) == heading, f"solutions heading '## {number} {heading}' vs chapter title {titles.get(number)!r}"
        assert "## Exercises" in (ROOT / "book" / f"{[p.stem for p in book.notebooks(ROOT) if p.stem[:2] == number][0]}.py").read_text()


# --- 00 How to use this book -------------------------------------------------------------------

def _tiny_batch():
    """The chapter's own ``tiny_batch``, taken from its source so the answer follows the chapter."""
    cells = jupytext.read(ROOT / "book" / "00_how_to_use.py").cells
    source = next(c.source for c in cells if "def tiny_batch" in c.source)
    namespace = {"torch": torch, "IGNORE_INDEX": IGNORE_INDEX}
    exec(source.split("\nimages, labels = tiny_batch")[0], namespace)
    return namespace["tiny_batch"](generator=torch.Generator().manual_seed(0))


def test_00_smoke_profile_and_cuda_without_gpu(monkeypatch):
    from segedu.notebook import setup

    described = setup(profile="smoke", device="cpu").describe()
    prefix = described.split("[")[0] + "["
    assert prefix == "profile=smoke (every code path on tiny data (CI)); device=cpu ["
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SegeduError) as err:
        setup(profile="smoke", device="cuda")
    message = str(err.value).split("(")[0]
    says("00", prefix, f"SegeduError: {message}(...)")


def test_00_constant_background_accuracy():
    images, labels = _tiny_batch()
    valid = labels != IGNORE_INDEX
    background, labelled = int((labels[valid] == 0).sum()), int(valid.sum())
    accuracy = background / labelled
    says("00", f"{background} of {labelled}, {accuracy:.3f}")
    # ... and the chapter's untrained 1x1 conv (seeded as the chapter's setup seeds it) is far below
    env.seed_everything(0)
    model = torch.nn.Conv2d(3, 11, kernel_size=1)
    with torch.no_grad():
        prediction = model(images).argmax(1)
    assert (prediction[valid] == labels[valid]).float().mean().item() < accuracy / 2


def _one_image_coco(tmp_path, annotations, categories):
    raw = {"images": [{"id": 1, "file_name": "a.jpg", "height": 20, "width": 20}],
           "categories": categories, "annotations": annotations}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(raw))
    return path


def test_00_painting_order_largest_first(tmp_path):
    can = {"id": 1, "image_id": 1, "category_id": 4, "segmentation": [[2, 2, 16, 2, 16, 18, 2, 18]],
           "area": 224.0, "bbox": [2, 2, 14, 16], "iscrowd": 0}
    battery = {"id": 2, "image_id": 1, "category_id": 9, "segmentation": [[6, 6, 10, 6, 10, 12, 6, 12]],
               "area": 24.0, "bbox": [6, 6, 4, 6], "iscrowd": 0}
    cats = [{"id": 4, "name": "Metal"}, {"id": 9, "name": "Battery"}]
    for order in ([can, battery], [battery, can]):
        data = coco.load(_one_image_coco(tmp_path, order, cats), check_images=False)
        mask = masks.semantic_mask(data, data.images[0])
        assert mask[8, 8] == 9 and mask[4, 4] == 4  # the battery on the can keeps its class
    # painting in a given order, the last object wins (what the exercise's reordering does)
    label = np.zeros((20, 20), np.uint8)
    label[6:12, 6:10] = 9
    label[2:18, 2:16] = 4
    assert label[8, 8] == 4
    says("00", "get **Metal**", "paints the **largest object first**")


# --- 01 The COCO format ------------------------------------------------------------------------

def test_01_rle_needs_fortran_order():
    from pycocotools import mask as mask_utils

    m = np.zeros((5, 7), dtype=np.uint8)
    r, c = 3, 4
    m[r, c] = 1
    with pytest.raises(ValueError, match="ndarray is not Fortran contiguous"):
        mask_utils.encode(np.ascontiguousarray(m))
    rle = mask_utils.encode(np.asfortranarray(m))
    assert np.array_equal(mask_utils.decode(rle), m)
    uncompressed = _rle_counts(m)
    assert uncompressed[0] == c * m.shape[0] + r
    says("01", "`ValueError: ndarray is not Fortran contiguous`", "starts after `c * h + r` zeros")


def _rle_counts(m: np.ndarray) -> list[int]:
    """COCO's uncompressed counts: runs of 0s and 1s, column by column, starting with 0s."""
    flat = m.flatten(order="F")
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return counts


def test_01_nan_polygon_message(tmp_path):
    ann = {"id": 7, "image_id": 1, "category_id": 9, "segmentation": [[1, 1, 8, 1, 8, float("nan")]],
           "area": 24.5, "bbox": [1, 1, 7, 7], "iscrowd": 0}
    path = _one_image_coco(tmp_path, [ann], [{"id": 9, "name": "Battery"}])
    report = coco.validate(path, check_images=False).render()
    line = "annotations[0] (id 7): segmentation polygon 0 has NaN or infinite coordinates"
    assert line in report
    says("01", f"`{line}`")


# --- 02 Exploratory data analysis --------------------------------------------------------------

def test_02_power_one_draws_the_rarest_class_in_n_over_sum_w():
    rng = np.random.default_rng(0)
    presence = rng.random((200, 6)) < np.array([1.0, 0.5, 0.3, 0.2, 0.1, 0.03])
    presence[:, 0] = True  # background everywhere
    presence[:6, 5] = True  # a rare class in a few images
    w = sampler.image_weights(presence, power=1.0)
    rarest = presence[:, 1:].mean(0).argmin() + 1
    share = w[presence[:, rarest]].sum() / w.sum()
    assert np.isclose(share, len(w) / w.sum())
    # one class per image besides the background: every class drawn 1/K of the time
    K = 4
    one = np.zeros((120, K + 1), bool)
    one[:, 0] = True
    one[np.arange(120), 1 + np.repeat(np.arange(K), [60, 30, 20, 10])] = True
    w1 = sampler.image_weights(one, power=1.0)
    assert np.allclose([(w1[one[:, c]]).sum() / w1.sum() for c in range(1, K + 1)], 1 / K)
    says("02", "**`N / Σᵢ wᵢ`**", "**`1 / K`**")


def test_02_training_size_for_fewer_than_10_percent_small_objects():
    rng = np.random.default_rng(1)
    sides, width = rng.lognormal(3.5, 0.8, 5000), 256
    q10 = np.quantile(sides, 0.1)
    size = 32 * width / q10
    assert np.mean(sides * size / width < 32) <= 0.1
    assert np.mean(sides * (0.98 * size) / width < 32) > 0.1
    says("02", "**`S ≥ 32 · W / q₁₀`**")


# --- 03 Dataset, dataloader and augmentation ---------------------------------------------------

def test_03_cutout_with_ignore_fill():
    aug = transforms.reseed(transforms.A.Compose(
        [transforms.augmentation("cutout", "cpu", p=1.0, fill_mask=IGNORE_INDEX)]), 0)
    size = 128
    image, mask = np.full((size, size, 3), 200, np.uint8), np.ones((size, size), np.uint8)
    shares = []
    for _ in range(200):
        out = aug(image=image, mask=mask)
        dropped = out["mask"] == IGNORE_INDEX
        assert np.array_equal(dropped, (out["image"] == 0).all(-1))  # exactly the blanked pixels
        shares.append(dropped.mean())
    shares = np.array(shares)
    assert 0.06 < shares.mean() < 0.08 and shares.min() >= 0.008 and shares.max() <= 0.25
    assert 1000 < shares.mean() * size * size < 1200
    says("03", "**about 7% of the pixels on average**", "(about 1,100 of 16,384)", "at most 25%")


def test_03_expected_battery_factor():
    rng = np.random.default_rng(2)
    presence = rng.random((300, 11)) < np.linspace(1.0, 0.15, 11)
    presence[:, 0] = True
    presence[:, 9] = False
    presence[rng.choice(300, 5, replace=False), 9] = True  # Battery: the rarest class
    w = sampler.image_weights(presence, power=0.5)
    battery_weight = presence[:, 9].mean() ** -0.5
    assert np.allclose(w[presence[:, 9]], battery_weight)
    expected = (w[presence[:, 9]].sum() / w.sum()) / presence[:, 9].mean()  # draw share / uniform share
    assert np.isclose(expected, battery_weight * len(w) / w.sum())
    draws = np.fromiter(sampler.ClassAwareSampler(presence, num_samples=200_000, seed=0), int)
    measured = presence[draws, 9].mean() / presence[:, 9].mean()
    assert abs(measured / expected - 1) < 0.05
    says("03", "**`w_B · N / Σᵢ wᵢ`**")


# --- 04 Metrics --------------------------------------------------------------------------------

def test_04_dice_by_hand_and_the_iou_identity():
    target = np.zeros((6, 6), dtype=np.int64)
    target[1:4, 1:5] = 1
    target[4:6, 4:6] = 2
    rough = np.zeros_like(target)
    rough[1:4, 2:5] = 1
    rough[3:6, 4:6] = 2
    cm = metrics.confusion_matrix(torch.from_numpy(rough)[None], torch.from_numpy(target)[None], num_classes=3)
    scores = metrics.scores_from_confusion(cm)
    inter, pred, true = cm.diag(), cm.sum(0), cm.sum(1)
    by_hand = (2 * inter / (pred + true)).double()
    assert torch.allclose(by_hand, scores["dice"])
    iou = scores["iou"]
    assert torch.allclose(scores["dice"], 2 * iou / (1 + iou))
    assert (scores["dice"] >= iou).all()
    parts = [f"{2}\\cdot{int(i)}/({int(p)}+{int(t)}) = {d:.3f}" for i, p, t, d in zip(inter, pred, true, by_hand)]
    says("04", f"background ${parts[0]}$", f"large object ${parts[1]}$", f"small object ${parts[2]}$",
         f"(background: IoU ${iou[0]:.3f}$, Dice ${scores['dice'][0]:.3f}$)")


def test_04_fwiou_of_all_background_is_accuracy_squared():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (3, 16, 16), generator=gen)
    target[:, :8] = 0
    target[0, 0, :4] = IGNORE_INDEX
    m = metrics.SegMetrics(num_classes=5)
    m.update(torch.zeros_like(target), target)
    s = m.compute()
    assert np.isclose(float(s["fwiou"]), float(s["pixel_accuracy"]) ** 2)
    says("04", "**fwIoU $= b^2 =$ (pixel accuracy)$^2$**")


# --- 05 Transposed convolution -----------------------------------------------------------------

def _conv_matrix(weight, in_size, **conv_args):
    units = torch.eye(in_size * in_size).view(-1, 1, in_size, in_size)
    return F.conv2d(units, weight, **conv_args).flatten(1).T


def test_05_matrix_of_a_strided_padded_conv():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 1, 3, 3, generator=g)
    C = _conv_matrix(w, 6, stride=2, padding=1)
    assert C.shape == (9, 36)
    z = torch.randn(1, 1, 3, 3, generator=g)
    full = F.conv_transpose2d(z, w, stride=2, padding=1, output_padding=1)
    assert full.shape[-2:] == (6, 6)
    assert torch.allclose((C.T @ z.flatten()).view(6, 6), full[0, 0], atol=1e-5)
    short = F.conv_transpose2d(z, w, stride=2, padding=1)
    assert short.shape[-2:] == (5, 5)
    assert torch.allclose(short[0, 0], full[0, 0, :5, :5], atol=1e-5)
    says("05", "$C$ is 9×36", "`conv_transpose2d(z, w, stride=2, padding=1, output_padding=1)`", "returns 5×5")


def test_05_output_padding_that_undoes_a_strided_conv():
    for n in range(5, 14):
        for k, p, s, d in [(3, 1, 2, 1), (4, 1, 2, 1), (3, 0, 2, 1), (5, 2, 3, 1), (3, 2, 2, 2)]:
            a = (n + 2 * p - d * (k - 1) - 1) % s
            conv = torch.nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
            back = torch.nn.ConvTranspose2d(1, 1, k, stride=s, padding=p, dilation=d, output_padding=a)
            with torch.no_grad():
                assert back(conv(torch.zeros(1, 1, n, n))).shape[-1] == n, (n, k, p, s, d)
    assert (9 + 2 - 2 - 1) % 2 == 0 and (8 + 2 - 2 - 1) % 2 == 1
    says("05", r"**$a = (n + 2p - d(k-1) - 1) \bmod s$**", r"$a = 8 \bmod 2 = 0$", "would need $a = 1$")


def test_05_resize_then_conv_has_no_checkerboard():
    g = torch.Generator().manual_seed(0)
    flat = torch.full((1, 1, 8, 8), 0.7)
    for _ in range(5):
        w = torch.randn(1, 1, 3, 3, generator=g)
        up = F.conv2d(F.interpolate(flat, scale_factor=2, mode="nearest"), w, padding=1)[0, 0, 1:-1, 1:-1]
        assert torch.allclose(up, 0.7 * w.sum() * torch.ones_like(up), atol=1e-5)
        transposed = F.conv_transpose2d(flat, w, stride=2)[0, 0, 3:-3, 3:-3]
        assert transposed.max() - transposed.min() > 1e-3  # k=3, s=2: uneven overlaps, a checkerboard
    says("05", r"$c \sum w$ at every pixel")


# --- 06 FCN ------------------------------------------------------------------------------------

def test_06_fcn16s_from_fcn32s():
    torch.manual_seed(0)
    fcn32 = models.create("fcn32s", width=0.125).eval()
    torch.nn.init.normal_(fcn32.score_fr.weight)  # a trained-looking score layer (it starts at zero)
    fcn16 = models.create("fcn16s", width=0.125).eval()
    result = fcn16.load_state_dict(fcn32.state_dict(), strict=False)
    assert sorted(result.missing_keys) == ["score_pool4.bias", "score_pool4.weight", "upscore16.weight", "upscore2.weight"]
    assert result.unexpected_keys == ["upscore.weight"]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        score = fcn16.score_fr(fcn16._features(x)["fc7"])
        two_steps = fcn16.upscore16(fcn16.upscore2(score))[..., :64, :64]
        out16, out32 = fcn16(x), fcn32(x)
    assert torch.allclose(out16, two_steps, atol=1e-5)  # score_pool4 adds nothing yet
    assert not torch.allclose(out16, out32, atol=1e-3)  # but 2x then 16x is not one 32x step
    says("06", "`upscore2`, `score_pool4` and `upscore16`", "`upscore` as unexpected",
         "almost the same prediction, not an identical one")


def test_06_pad100_sizes():
    sizes = {}
    with torch.device("meta"):
        for pad100 in (True, False):
            net = models.create("fcn8s", width=0.125, pad100=pad100)
            for n in (128, 512):
                feats = net._features(torch.empty(1, 3, n, n))
                sizes[pad100, n] = {k: feats[k].shape[-1] for k in ("pool1", "pool5")}
    assert sizes[True, 128] == {"pool1": 163, "pool5": 11} and sizes[False, 128] == {"pool1": 64, "pool5": 4}
    ratio_128 = (sizes[True, 128]["pool1"] / sizes[False, 128]["pool1"]) ** 2
    ratio_512 = (sizes[True, 512]["pool1"] / sizes[False, 512]["pool1"]) ** 2
    assert round(ratio_128, 1) == 6.5 and round(ratio_512, 1) == 1.9
    assert round((712 / 512) ** 2, 1) == 1.9
    says("06", "pool1 is 163×163 instead of 64×64 (6.5 times the pixels)", "pool5 11×11 instead of 4×4",
         r"$(712/512)^2 \approx 1.9$")


# --- 07 Decoder models -----------------------------------------------------------------------

def test_07_pad_fc6_pixel_ratio_and_pool5_cells():
    from segedu.models import deconvnet

    assert deconvnet.MIN_SIZE == 224
    ratio = (deconvnet.MIN_SIZE / 128) ** 2
    assert ratio == 3.0625
    # n pool5 cells per side see 212 + 32 (n - 1) pixels
    cells = {field: (field - 212) / 32 + 1 for field in (372, 404)}
    assert cells == {372: 6, 404: 7}
    says("07", "$(224/128)^2 = 3.0625$", "372 pixels are 6 pool5 cells per side and 404 pixels are 7")


# --- 08 Skip connections ---------------------------------------------------------------------

def test_08_fcdensenet_parameter_scaling():
    counts = {}
    for depth in (56, 67, 103):
        with torch.device("meta"):
            model = models.create(f"fcdensenet{depth}", num_classes=11)
        counts[depth] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert [round(counts[d] / 1e6, 2) for d in (56, 67, 103)] == [1.38, 3.46, 9.32]
    assert round(counts[67] / counts[56], 1) == 2.5 and round(counts[103] / counts[67], 1) == 2.7
    says("08", "1.38M, 3.46M and 9.32M", "about 2.5 and 2.7")


def test_08_valid_unet_input_for_a_128_crop():
    model = models.create("unet", num_classes=2, width=0.0625, padding="valid").eval()
    seen = []
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[-1]) and None)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 128, 128)).shape[-1] == 128
    assert 300 <= seen[0] <= 320 and 5.5 <= (seen[0] / 128) ** 2 <= 6.3, seen
    says("08", "about 316 pixels per side", "about 6 times the pixels")


# --- 09 Receptive field ------------------------------------------------------------------------

def test_09_output_stride_flops_and_multi_grid():
    from segedu.models import measure

    flops = {}
    for stride in (16, 8):
        with torch.device("meta"):
            flops[stride] = measure.flop_count(models.create("deeplabv3_resnet101", num_classes=21,
                                                             output_stride=stride), 512)
    says("09", f"output stride 16 costs {flops[8] / flops[16]:.1f} times fewer FLOPs than 8")
    with torch.device("meta"):
        plain = models.create("deeplabv3_resnet50")
        grid = models.create("deeplabv3_resnet50", multi_grid=True)
    plain_rates = [b.conv2.dilation[0] for b in plain.backbone.layer4]
    grid_rates = [b.conv2.dilation[0] for b in grid.backbone.layer4]
    says("09", f"rates {grid_rates[0]}, {grid_rates[1]} and {grid_rates[2]} at output stride 8 (instead of "
               f"{plain_rates[0]}, {plain_rates[1]} and {plain_rates[2]})")
    # the image-pooling branch connects every pixel: a change of a far corner changes the centre output
    net = models.create("deeplabv3_resnet50", width=0.125, multi_grid=True).eval()
    x = torch.rand(1, 3, 96, 96)
    y = x.clone()
    y[..., :4, :4] += 1.0
    with torch.no_grad():
        assert not torch.equal(net(x)[..., 48, 48], net(y)[..., 48, 48])


def test_09_largest_rate_with_all_taps_inside_half_the_positions():
    n = 32

    def all_inside(rate):
        per_axis = max(n - 2 * rate, 0)
        return per_axis ** 2 / n ** 2

    best = max(r for r in range(1, n) if all_inside(r) >= 0.5)
    says("09", f"Rate {best}: $(32 - 2 \\cdot {best})^2 / 32^2 = {all_inside(best):.0%}\\%$".replace("%\\%", "\\%"),
         f"at rate {best + 1} only ${all_inside(best + 1):.0%}\\%$".replace("%\\%", "\\%"))
    # the same count by brute force over positions and taps
    positions = torch.arange(n)
    inside = [((positions + o * best >= 0) & (positions + o * best < n)) for o in (-1, 0, 1)]
    axis = inside[0] & inside[1] & inside[2]
    assert float(axis.float().mean() ** 2) == pytest.approx(all_inside(best))


def test_09_decimated_fc6_keeps_a_small_share_of_vgg16s_fc6():
    shares = set()
    for width in (0.125, 1.0):
        with torch.device("meta"):
            largefov = models.create("deeplabv1", width=width).fc6[0].weight
            vgg = models.create("fcn32s", width=width).backbone.fc6[0].weight
        assert tuple(largefov.shape[2:]) == (3, 3) and tuple(vgg.shape[2:]) == (7, 7)
        assert vgg.shape[0] == 4 * largefov.shape[0] and vgg.shape[1] == largefov.shape[1]
        shares.add(round(100 * largefov.numel() / vgg.numel(), 1))
    assert shares == {round(100 * 9 / 49 / 4, 1)}
    says("09", "keeps 9 of the 49 taps of each kernel and a quarter of the filters", f"{shares.pop()}% of VGG16's fc6 weights, at any width")


# --- 10 HRNet and 11 comparison: model sizes at width 0.25 ----------------------------------------

def _millions(name):
    with torch.device("meta"):
        return sum(p.numel() for p in models.create(name, width=0.25).parameters()) / 1e6


def test_10_and_11_parameter_counts_at_width_quarter():
    w18, w48 = _millions("hrnetv2_w18"), _millions("hrnetv2_w48")
    says("10", f"HRNetV2-W48 has {w48:.2f}M parameters against {w18:.2f}M for W18 ({w48 / w18:.1f} times more)")
    says("11", f"`deeplabv3plus_xception` has {_millions('deeplabv3plus_xception'):.2f}M parameters "
               f"({_millions('deeplabv3plus_resnet50'):.2f}M for v3+ on ResNet-50)",
         f"`fcdensenet103` {_millions('fcdensenet103'):.2f}M ({_millions('fcdensenet56'):.2f}M for FC-DenseNet56)",
         f"`hrnetv2_w48` {w48:.2f}M ({w18:.2f}M for W18)")


# --- 12 Experiment discipline ------------------------------------------------------------------------

def test_12_relative_error_of_a_standard_deviation():
    """The std of n normal values has a relative standard error of about 1/sqrt(2(n-1)); checked by
    simulation and against the page's rounded numbers."""
    rng = np.random.default_rng(0)
    for n, percent in ((3, 50), (5, 35)):
        assert round(100 / np.sqrt(2 * (n - 1))) == percent
        spread = rng.normal(size=(200_000, n)).std(axis=1, ddof=1)
        assert spread.std() / spread.mean() == pytest.approx(1 / np.sqrt(2 * (n - 1)), rel=0.12)
    says("12", "50% for three seeds and 35% for five")


def test_12_the_worker_count_changes_the_augmentation_stream(tmp_path):
    from segedu import profiles
    from segedu.data import dataset, synth

    synth.generate(tmp_path / "d", n_images=24, size=64, seed=3)
    prof = profiles.PROFILES["smoke"]

    def first_batch(workers):
        data = dataset.CocoSegmentation(tmp_path / "d", "train", transforms.train_transform(prof, seed=0))
        loader = dataset.make_loader(data, batch_size=4, shuffle=True, num_workers=workers, seed=0)
        return next(iter(loader))[0]

    two = first_batch(2)
    assert torch.equal(two, first_batch(2))  # repeatable for one worker count ...
    assert not torch.equal(two, first_batch(0))  # ... but not across worker counts
    says("12", "the worker count changes which crops, flips and colour jitters each image gets")


# --- 13-17 Competition craft ------------------------------------------------------------------------

def test_13_cutout_blanks_at_most_a_quarter_of_a_crop():
    from segedu import profiles

    cutout = transforms.augmentation("cutout", profiles.get("smoke"))
    holes = cutout.num_holes_range[1]
    side = cutout.hole_height_range[1] * cutout.hole_width_range[1]
    assert holes * side == pytest.approx(0.25)
    crop = np.zeros((64, 64, 3), np.uint8) + 200
    blanked = []
    for s in range(200):  # empirically never more than a quarter
        out = transforms.reseed(transforms.A.Compose([transforms.augmentation("cutout", "smoke", p=1.0)]), s)(image=crop)
        blanked.append((out["image"][..., 0] == 0).mean())
    assert 0 < max(blanked) <= 0.25
    says("13", "at most 4 × 1/16 of the crop")


def test_14_warmup_steps_and_rates():
    from segedu import profiles
    from segedu.engine import TrainConfig, schedule
    from segedu.experiments import ablation

    cpu = profiles.PROFILES["cpu"]
    steps = ablation.optimiser_steps(cpu, 384)  # the exercise's run: the baseline's 240 steps
    warmup = ablation.plan(cpu, ["warmup"], [0], 384)[-1]["warmup_steps"]
    assert steps == 240 and warmup == 24
    rates = schedule.learning_rates(TrainConfig(scheduler="cosine", warmup_steps=warmup, lr=1e-3), steps)
    assert rates[0] == pytest.approx(1e-5) and rates[24] == pytest.approx(1e-3) and max(rates[:24]) < 1e-3
    says("14", "10% of 240 steps is 24 warm-up steps",
         "the rate at step 0 is 0.00001, and it first reaches the peak, 0.001, at step 24")


def test_14_smallest_cross_entropy_with_label_smoothing():
    eps, k = 0.1, 11
    target = torch.full((k,), eps / k)
    target[0] += 1 - eps
    best = F.cross_entropy(target.log()[None], torch.tensor([0]), label_smoothing=eps).item()
    other = F.cross_entropy(torch.tensor([[9.0] + [0.0] * (k - 1)]), torch.tensor([0]), label_smoothing=eps).item()
    assert best == pytest.approx(-(target * target.log()).sum().item()) and other > best
    assert round(best, 3) == 0.514
    says("14", "About 0.514 nats")


def test_15_weighted_loss_ratio_is_the_square_root_of_the_count_ratio():
    from segedu.data import stats

    counts = np.array([90_000, 9_000, 100])
    w = stats.class_weights(counts, "sqrt_inverse")
    assert counts[0] * w[0] / (counts[2] * w[2]) == pytest.approx(np.sqrt(counts[0] / counts[2]))
    says("15", "the ratio becomes the square root of the pixel-count ratio")


def test_16_and_17_multi_scale_cost_and_the_ema_warmup():
    from segedu import profiles
    from segedu.engine.trainer import effective_ema_decay
    from segedu.experiments import ablation
    from segedu.models import measure

    model = models.create("deeplabv3plus_resnet50", width=0.125)
    flops = {s: measure.flop_count(model, s) for s in (48, 64, 80)}
    assert sum(flops.values()) / flops[64] == pytest.approx(3.125, rel=0.03)  # cost follows the pixels
    says("17", "6.25 single passes")
    # the trainer's warm-up: the decay first reaches 0.99 after 890 updates
    reached = next(t for t in range(5000) if effective_ema_decay(0.99, t) >= 0.99)
    assert reached == 890 and effective_ema_decay(0.99, 889) < 0.99
    cpu = profiles.PROFILES["cpu"]
    steps = ablation.optimiser_steps(cpu, 384)
    assert steps == 240 and round(100 * 0.99 ** (steps - 1)) == 9
    says("16", "After 890 updates", "The baseline takes 240 optimiser steps in the cpu profile",
         "$0.99^{239} \\approx 9\\%$")


def test_19_library_parameter_counts_padding_and_efficientnet_levels():
    pytest.importorskip("segmentation_models_pytorch")
    pytest.importorskip("timm")
    from segedu.models import measure

    ours = models.create("deeplabv3plus_timm", encoder="resnet18", separable=True)
    smp = models.create("smp:DeepLabV3Plus", encoder="resnet18")
    assert measure.parameter_count(ours) == 12_336_059 and measure.parameter_count(smp) == 12_331_867
    assert measure.parameter_count(ours.backbone) == 11_176_512
    says("19", "12,336,059 parameters against 12,331,867", "4,192 more", "(11,176,512 each)")
    padded = (-375 % 32 + 375) * (-500 % 32 + 500)
    assert (padded, padded - 500 * 375) == (512 * 384, 9108) and round(100 * 9108 / padded, 1) == 4.6
    says("19", "adding 9,108 pixels: 4.6% of the padded input")
    eff = models.create("deeplabv3plus_timm", encoder="efficientnet_b0")
    assert (eff.low_level, eff.high_level) == ("blocks.1", "blocks.6")
    assert eff.backbone.channels["blocks.1"] == 24 and eff.backbone.channels["blocks.6"] == 320
    assert measure.parameter_count(eff) == 7_597_159 and measure.parameter_count(eff.backbone) == 3_595_388
    says("19", "`blocks.1` (24 channels, stride 4)", "`blocks.6` (320", "7,597,159 parameters",
         "encoder has 3,595,388")


def test_20_gce_gradient_at_q_one():
    from segedu.losses import GeneralizedCrossEntropyLoss

    for p_logit in (-6.0, 0.0, 3.0):
        z = torch.tensor([p_logit, 0.0, 0.5], dtype=torch.float64).view(1, 3, 1, 1).requires_grad_(True)
        GeneralizedCrossEntropyLoss(q=1.0)(z, torch.zeros(1, 1, 1, dtype=torch.long)).backward()
        p = torch.softmax(z.detach(), 1)[0, 0, 0, 0]
        assert z.grad[0, 0, 0, 0].item() == pytest.approx(-(p * (1 - p)).item())
    assert 40 * 0.5 == 20
    says("20", "the gradient of $1 - p_y$ is $-p_y (1 - p_y)$", "On average 20")
