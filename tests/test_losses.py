"""segedu.losses against hand-computed values, torch, and segmentation_models_pytorch (smp)."""
import math

import pytest
import torch
import torch.nn.functional as F
from segmentation_models_pytorch import losses as smp_losses
from segmentation_models_pytorch.losses._functional import softmax_focal_loss_with_logits
from segmentation_models_pytorch.losses.lovasz import _lovasz_softmax

from segedu.errors import SegeduError
from segedu.losses import (LOSSES, CompoundLoss, CrossEntropyLoss, DiceLoss, FocalLoss,
                           GeneralizedCrossEntropyLoss, LovaszSoftmaxLoss, SmallLossCrossEntropy, TverskyLoss,
                           build_loss)
from segedu.metrics import confusion_matrix, scores_from_confusion

VOID = 255
C = 4


def assert_close(actual, expected):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64),
                               torch.as_tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-7)


def batch(seed=0, shape=(2, 5, 6), void=True, dtype=torch.float64, absent=()):
    """Random logits (B, C, H, W) and labels with a void row; classes in ``absent`` never occur."""
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(shape[0], C, *shape[1:], generator=g, dtype=dtype)
    target = torch.randint(0, C, shape, generator=g)
    for label in absent:
        target[target == label] = next(c for c in range(C) if c not in absent)
    if void:
        target[0, 0] = VOID
    return logits, target


def one_hot(target):
    """Independent soft-target encoding: F.one_hot, zero vectors at void pixels."""
    valid = target != VOID
    return F.one_hot(torch.where(valid, target, 0), C).permute(0, 3, 1, 2).double() * valid.unsqueeze(1)


# --- cross-entropy --------------------------------------------------------------------------------

WEIGHTS = [1.0, 2.0, 0.5, 3.0]


@pytest.mark.parametrize("weights", [None, WEIGHTS])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_ce_equals_torch_and_one_hot_soft_targets_equal_hard_labels(weights, smoothing):
    logits, target = batch()
    loss = CrossEntropyLoss(class_weights=weights, label_smoothing=smoothing)
    reference = F.cross_entropy(logits, target, ignore_index=VOID, label_smoothing=smoothing,
                                weight=None if weights is None else torch.tensor(weights, dtype=torch.float64))
    assert_close(loss(logits, target), reference)
    assert_close(loss(logits, one_hot(target)), reference)


def test_ce_hand_computed():
    # equal logits: p = 1/C everywhere, so every pixel (and any weighted mean) costs log C
    assert_close(CrossEntropyLoss(class_weights=WEIGHTS)(torch.zeros(1, C, 2, 2), torch.tensor([[[0, 1], [3, VOID]]])),
                 math.log(C))
    # one MixUp pixel, target (0.7, 0.3), logits (0, ln 3) -> p = (1/4, 3/4); the second pixel is void
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(3), 5.0]]]])
    soft = torch.tensor([[[[0.7, 0.0]], [[0.3, 0.0]]]])
    assert_close(CrossEntropyLoss()(logits, soft), -(0.7 * math.log(1 / 4) + 0.3 * math.log(3 / 4)))


# --- focal ----------------------------------------------------------------------------------------

def test_focal_hand_computed():
    # one pixel, two classes, equal logits: p_t = 1/2, FL = -(1 - 1/2)^2 log(1/2)
    assert_close(FocalLoss(gamma=2.0)(torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 1, dtype=torch.long)),
                 0.25 * math.log(2))


@pytest.mark.parametrize("weights", [None, WEIGHTS])
def test_focal_with_gamma_zero_is_cross_entropy(weights):
    logits, target = batch(1)
    assert_close(FocalLoss(gamma=0.0, class_weights=weights)(logits, target),
                 CrossEntropyLoss(class_weights=weights)(logits, target))


def test_softmax_focal_matches_smp_and_soft_targets():
    logits, target = batch(2)
    valid = target != VOID
    # smp's softmax focal has no void handling: give it the valid pixels as (N, C) rows
    reference = softmax_focal_loss_with_logits(logits.permute(0, 2, 3, 1)[valid], target[valid], gamma=2.0)
    assert_close(FocalLoss(gamma=2.0)(logits, target), reference)
    assert_close(FocalLoss(gamma=2.0, class_weights=WEIGHTS)(logits, one_hot(target)),
                 FocalLoss(gamma=2.0, class_weights=WEIGHTS)(logits, target))


@pytest.mark.parametrize("alpha, weights", [(None, None), (0.25, None), (0.25, WEIGHTS)])
def test_sigmoid_focal_matches_smp_multiclass_focal(alpha, weights):
    logits, target = batch(3)
    reference = smp_losses.FocalLoss("multiclass", alpha=alpha, gamma=2.0, ignore_index=VOID, class_weights=weights)
    loss = FocalLoss(gamma=2.0, alpha=alpha, class_weights=weights, mode="sigmoid")
    assert_close(loss(logits, target), reference(logits, target))
    assert_close(loss(logits, one_hot(target)), reference(logits, target))


# --- Dice and Tversky -----------------------------------------------------------------------------

def test_dice_and_tversky_hand_computed():
    # two pixels, labels (0, 1), equal logits: p = 1/2 everywhere, so per class TP = 1/2, P = T = 1
    logits, target = torch.zeros(1, 2, 1, 2), torch.tensor([[[0, 1]]])
    assert_close(DiceLoss(smooth=0.0)(logits, target), 1 - (2 * 0.5) / (1 + 1))
    assert_close(DiceLoss(smooth=1.0)(logits, target), 1 - (2 * 0.5 + 1) / (1 + 1 + 1))
    # FP = FN = 1/2: TI = 1/2 / (1/2 + 0.3 / 2 + 0.7 / 2) for any alpha + beta = 1
    assert_close(TverskyLoss(alpha=0.3, beta=0.7, smooth=0.0)(logits, target), 1 - 0.5 / (0.5 + 0.15 + 0.35))
    # FP weighed 1, FN 0: TI = 1/2 / (1/2 + 1/2)
    assert_close(TverskyLoss(alpha=1.0, beta=0.0, smooth=0.0)(logits, target), 1 - 0.5 / 1.0)
    # a third class absent from the target: skipped, or (kept) 1 - s / (P + s) with P = 0 there
    three = torch.zeros(1, 3, 1, 2)  # p = 1/3: per present class TP = 1/3, P = 2/3, T = 1
    present = 1 - (2 / 3 + 1) / (2 / 3 + 1 + 1)
    assert_close(DiceLoss(smooth=1.0)(three, target), present)
    assert_close(DiceLoss(smooth=1.0, skip_absent=False)(three, target), (2 * present + 1 - 1 / (2 / 3 + 1)) / 3)


def test_dice_matches_smp():
    # smp: (TP + s') / ((P + T) / 2 + s'), i.e. ours with s = 2 s'; all classes present -> same mean
    logits, target = batch(4)
    assert_close(DiceLoss(smooth=1.0)(logits, target),
                 smp_losses.DiceLoss("multiclass", ignore_index=VOID, from_logits=True, smooth=0.5)(logits, target))
    assert_close(DiceLoss(smooth=0.0, class_weights=WEIGHTS)(logits, target),
                 smp_losses.DiceLoss("multiclass", ignore_index=VOID, class_weights=WEIGHTS)(logits, target))


def test_dice_with_absent_class_matches_smp_rescaled():
    # smp zeroes an absent class's loss but divides by all C; skip_absent divides by the present ones
    logits, target = batch(5, absent=(2,))
    smp_value = smp_losses.DiceLoss("multiclass", ignore_index=VOID, smooth=0.5)(logits, target)
    assert_close(DiceLoss(smooth=1.0, skip_absent=True)(logits, target), smp_value * C / (C - 1))


@pytest.mark.parametrize("alpha, beta", [(0.5, 0.5), (0.3, 0.7), (0.8, 0.2)])
def test_tversky_matches_smp(alpha, beta):
    logits, target = batch(6)
    reference = smp_losses.TverskyLoss("multiclass", ignore_index=VOID, smooth=1.0, alpha=alpha, beta=beta)
    assert_close(TverskyLoss(alpha=alpha, beta=beta, smooth=1.0)(logits, target), reference(logits, target))


def test_tversky_half_half_is_dice_with_double_smoothing_and_soft_targets_agree():
    logits, target = batch(7)
    assert_close(TverskyLoss(alpha=0.5, beta=0.5, smooth=1.0)(logits, target), DiceLoss(smooth=2.0)(logits, target))
    for loss in (DiceLoss(class_weights=WEIGHTS), TverskyLoss(), DiceLoss(skip_absent=False)):
        assert_close(loss(logits, one_hot(target)), loss(logits, target))


# --- Lovasz-Softmax -------------------------------------------------------------------------------

def test_lovasz_hand_computed():
    # two pixels labelled (1, 0) with p_1 = (0.8, 0.3).
    # class 1: errors (0.2, 0.3), sorted 0.3 (bg), 0.2 (fg): Jaccard losses of the prefixes 1/2, 1 -> g = (1/2, 1/2)
    # class 0: errors (0.2, 0.3), sorted 0.3 (fg), 0.2 (bg): Jaccard losses 1, 1 -> g = (1, 0)
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(0.8 / 0.2), math.log(0.3 / 0.7)]]]])
    loss = LovaszSoftmaxLoss()(logits, torch.tensor([[[1, 0]]]))
    assert_close(loss, ((0.3 + 0.2) / 2 + 0.3) / 2)


def test_lovasz_of_hard_predictions_is_one_minus_iou():
    # errors in {0, 1}: the Lovasz extension is the Jaccard loss itself, 1 - IoU per class present in the target
    _, target = batch(8, dtype=torch.float32)
    pred = torch.randint(0, C, target.shape, generator=torch.Generator().manual_seed(8))
    logits = 40.0 * F.one_hot(pred, C).permute(0, 3, 1, 2).double()
    iou = scores_from_confusion(confusion_matrix(pred, target, C))["iou"]
    present = torch.bincount(target[target != VOID], minlength=C) > 0
    assert_close(LovaszSoftmaxLoss()(logits, target), (1 - iou[present]).mean())


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("absent", [(), (1, 3)])
def test_lovasz_matches_smp(per_image, absent):
    logits, target = batch(9, shape=(3, 6, 5), dtype=torch.float32, absent=absent)  # smp's Lovasz is float32-only
    assert_close(LovaszSoftmaxLoss(per_image=per_image)(logits, target),
                 smp_losses.LovaszLoss("multiclass", per_image=per_image, ignore_index=VOID)(logits, target))
    assert_close(LovaszSoftmaxLoss(per_image=per_image, classes="all")(logits, target),
                 _lovasz_softmax(logits.softmax(1), target, classes="all", per_image=per_image, ignore=VOID))


def test_lovasz_refuses_soft_targets():
    logits, target = batch(10)
    with pytest.raises(SegeduError, match="hard labels"):
        LovaszSoftmaxLoss()(logits, one_hot(target))


# --- losses for noisy labels ----------------------------------------------------------------------

def test_gce_hand_computed_pixel():
    # two classes, logits (0, ln 3): p = (1/4, 3/4); label 1, q = 0.5 -> (1 - sqrt(3/4)) / 0.5
    logits = torch.tensor([0.0, math.log(3.0)], dtype=torch.float64).view(1, 2, 1, 1)
    target = torch.tensor([[[1]]])
    assert_close(GeneralizedCrossEntropyLoss(q=0.5)(logits, target), (1 - math.sqrt(0.75)) / 0.5)


def test_gce_between_ce_and_mae():
    logits, target = batch(40)
    valid = target != VOID
    p = F.softmax(logits, 1).gather(1, torch.where(valid, target, 0).unsqueeze(1)).squeeze(1)[valid]
    assert_close(GeneralizedCrossEntropyLoss(q=1.0)(logits, target), (1 - p).mean())  # q = 1: the MAE
    ce = F.cross_entropy(logits, target, ignore_index=VOID)
    torch.testing.assert_close(GeneralizedCrossEntropyLoss(q=1e-6)(logits, target), ce, rtol=1e-4, atol=0)
    gce = GeneralizedCrossEntropyLoss(q=0.7, class_weights=WEIGHTS)(logits, target)
    w = torch.tensor(WEIGHTS, dtype=torch.float64)[target[valid]]
    assert_close(gce, (w * (1 - p ** 0.7) / 0.7).sum() / w.sum())


def test_gce_pulls_less_on_an_unlikely_label():
    # CE's gradient on the logit of a label the model finds unlikely is larger than GCE's
    logits = torch.tensor([3.0, 0.0], dtype=torch.float64).view(1, 2, 1, 1).requires_grad_(True)
    target = torch.tensor([[[1]]])
    F.cross_entropy(logits, target).backward()
    ce_grad = logits.grad.abs().sum().item()
    logits.grad = None
    GeneralizedCrossEntropyLoss(q=0.7)(logits, target).backward()
    assert logits.grad.abs().sum().item() < 0.2 * ce_grad


def test_small_loss_keeps_the_smallest_losses():
    logits, target = batch(41)
    assert_close(SmallLossCrossEntropy(keep=1.0, class_weights=WEIGHTS, label_smoothing=0.1)(logits, target),
                 CrossEntropyLoss(class_weights=WEIGHTS, label_smoothing=0.1)(logits, target))
    per_pixel = F.cross_entropy(logits, target, ignore_index=VOID, reduction="none")
    valid = target != VOID
    kept = math.ceil(0.3 * int(valid.sum()))
    expected = per_pixel[valid].sort().values[:kept].mean()
    assert_close(SmallLossCrossEntropy(keep=0.3)(logits, target), expected)
    logits.requires_grad_(True)
    SmallLossCrossEntropy(keep=0.3)(logits, target).backward()
    touched = (logits.grad != 0).any(1)
    assert int(touched.sum()) == kept  # only the selected pixels send a gradient
    assert per_pixel[touched].max() <= per_pixel[valid & ~touched].min()


def test_small_loss_ramps_the_dropped_share_as_co_teaching():
    # one image, two classes, four valid pixels of class 0 and a void one: pixel loss log(1 + e^a)
    a = [-2.0, 0.0, 1.0, 3.0, 0.0]
    logits = torch.tensor([[[[0.0] * 5], [a]]], dtype=torch.float64)
    target = torch.tensor([[[0, 0, 0, 0, VOID]]])
    losses = [math.log1p(math.exp(x)) for x in a[:4]]  # ascending
    loss = SmallLossCrossEntropy(keep=0.5, ramp_steps=4)
    # R(T) = 1 - min(T / 4 * 0.5, 0.5): all 4 pixels at T = 0, ceil(0.75 * 4) = 3 at T = 2, 2 from T = 4
    assert_close(loss(logits, target), CrossEntropyLoss()(logits, target))
    assert_close(loss(logits, target), sum(losses) / 4)
    for step, kept in ((1, 4), (2, 3), (3, 3), (4, 2), (100, 2)):
        loss.set_step(step)
        assert_close(loss(logits, target), sum(losses[:kept]) / kept)
    loss.set_step(2)
    logits.requires_grad_(True)
    loss(logits, target).backward()
    assert (logits.grad != 0).any(1).flatten().tolist() == [True, True, True, False, False]
    # without a ramp the final share from step 0, as before
    assert_close(SmallLossCrossEntropy(keep=0.5)(logits, target), sum(losses[:2]) / 2)


def test_noisy_label_losses_refuse_bad_parameters():
    with pytest.raises(SegeduError, match="0 < q <= 1"):
        GeneralizedCrossEntropyLoss(q=0.0)
    with pytest.raises(SegeduError, match="keep=1.5"):
        SmallLossCrossEntropy(keep=1.5)
    assert isinstance(build_loss("gce").losses[0], GeneralizedCrossEntropyLoss)
    assert build_loss({"small_loss": {"keep": 0.6}}).losses[0].keep == 0.6
    ramped = build_loss({"small_loss": {"keep": 0.6, "ramp_steps": 100}}).losses[0]
    assert (ramped.keep, ramped.ramp_steps, ramped.kept_share()) == (0.6, 100, 1.0)
    with pytest.raises(SegeduError, match="ramp_steps"):
        SmallLossCrossEntropy(ramp_steps=-1)
    with pytest.raises(SegeduError, match="step must be >= 0"):
        SmallLossCrossEntropy().set_step(-1)


# --- every loss: gradients, void pixels, empty batches ------------------------------------------

ALL_LOSSES = [CrossEntropyLoss(class_weights=WEIGHTS, label_smoothing=0.1), FocalLoss(), FocalLoss(mode="sigmoid"),
              DiceLoss(), DiceLoss(skip_absent=False), TverskyLoss(), LovaszSoftmaxLoss(),
              LovaszSoftmaxLoss(per_image=True, classes="all"), GeneralizedCrossEntropyLoss(class_weights=WEIGHTS),
              SmallLossCrossEntropy(keep=0.5, class_weights=WEIGHTS, label_smoothing=0.1)]


@pytest.mark.parametrize("loss, soft", [(loss, soft) for loss in ALL_LOSSES for soft in (False, True)
                                        if not (soft and isinstance(loss, LovaszSoftmaxLoss))],  # needs hard labels
                         ids=repr)
def test_gradients_finite_and_zero_at_void_pixels(loss, soft):
    logits, target = batch(11)
    target[1, :, 2] = VOID
    logits.requires_grad_(True)
    value = loss(logits, one_hot(target) if soft else target)
    value.backward()
    void = (target == VOID).unsqueeze(1).expand_as(logits)
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    assert (logits.grad[void] == 0).all()
    assert (logits.grad[~void] != 0).any()


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda loss: repr(loss))
def test_all_void_batch_gives_zero_loss_and_gradient(loss):
    logits, target = batch(12)
    logits.requires_grad_(True)
    value = loss(logits, torch.full_like(target, VOID))
    value.backward()
    assert value.item() == 0.0
    assert (logits.grad == 0).all()


def test_bad_targets_raise_segedu_error():
    logits, target = batch(13)
    with pytest.raises(SegeduError, match="mask label 7"):
        CrossEntropyLoss()(logits, torch.where(target == 0, 7, target))
    with pytest.raises(SegeduError, match="target must be"):
        DiceLoss()(logits, target[:, :-1])
    with pytest.raises(SegeduError, match="integer class ids"):
        FocalLoss()(logits, target.double())
    with pytest.raises(SegeduError, match="class weights"):
        CrossEntropyLoss(class_weights=[1.0, 2.0])(logits, target)


# --- build_loss -------------------------------------------------------------------------------

def test_build_loss_string_dict_and_list_specs_agree():
    logits, target = batch(14)
    ce, dice = CrossEntropyLoss(class_weights=WEIGHTS)(logits, target), DiceLoss(class_weights=WEIGHTS)(logits, target)
    for spec in ("ce+0.5*dice", " ce + 0.5 * dice ", {"ce": 1.0, "dice": 0.5}, ["ce", "0.5*dice"],
                 [{"name": "ce"}, {"name": "dice", "weight": 0.5}], {"ce": {}, "dice": {"weight": 0.5}}):
        loss = build_loss(spec, num_classes=C, class_weights=WEIGHTS)
        assert isinstance(loss, CompoundLoss)
        assert_close(loss(logits, target), ce + 0.5 * dice)
    terms = build_loss("0.7*focal+0.3*lovasz", num_classes=C).terms(logits, target)
    assert list(terms) == ["focal", "lovasz"]
    assert_close(terms["lovasz"], LovaszSoftmaxLoss()(logits, target))


def test_build_loss_passes_shared_and_per_term_settings():
    loss = build_loss([{"name": "focal", "gamma": 3.0}, "ce", "lovasz"], num_classes=C, ignore_index=0,
                      class_weights=WEIGHTS, label_smoothing=0.2)
    focal, ce, lovasz = loss.losses
    assert focal.gamma == 3.0 and focal.ignore_index == 0 and focal.class_weights.tolist() == WEIGHTS
    assert ce.label_smoothing == 0.2 and ce.class_weights.tolist() == WEIGHTS
    assert lovasz.ignore_index == 0


@pytest.mark.parametrize("spec, fragment", [
    ("ce+0.5*dcie", "unknown loss 'dcie'; known losses: " + ", ".join(LOSSES)),
    ("ce+*dice", "cannot read the term"),
    ("ce+ce", "twice"),
    ("", "cannot read the term"),
    ([], "names no loss"),
    ([{"name": "focal", "gama": 2}], "takes no parameter"),
    (3, "must be a string"),
])
def test_build_loss_errors_name_the_problem(spec, fragment):
    with pytest.raises(SegeduError, match=fragment.replace("*", r"\*")):
        build_loss(spec, num_classes=C)


def test_compound_loss_with_lovasz_refuses_soft_targets():
    logits, target = batch(15)
    with pytest.raises(SegeduError, match="hard labels"):
        build_loss("ce+lovasz", num_classes=C)(logits, one_hot(target))


# --- the string grammar NAME(KEY=VALUE, ...) ---------------------------------------------------------

def test_string_terms_carry_their_losses_parameters():
    logits, target = batch(16)
    (small,) = build_loss("small_loss(keep=0.5, ramp_steps=4)", num_classes=C, class_weights=WEIGHTS).losses
    assert isinstance(small, SmallLossCrossEntropy)
    assert (small.keep, small.ramp_steps, type(small.ramp_steps)) == (0.5, 4, int)
    assert small.ce.class_weights.tolist() == WEIGHTS  # the shared settings still reach it
    reference = SmallLossCrossEntropy(keep=0.5, ramp_steps=4, class_weights=WEIGHTS)
    for loss in (small, reference):
        loss.set_step(2)
    assert_close(small(logits, target), reference(logits, target))

    compound = build_loss(" ce + 0.5 * focal( gamma = 3 ) ", num_classes=C)
    ce, focal = compound.losses
    assert compound.names == ["ce", "focal"] and compound.weights == [1.0, 0.5] and focal.gamma == 3
    assert_close(compound(logits, target),
                 CrossEntropyLoss()(logits, target) + 0.5 * FocalLoss(gamma=3)(logits, target))
    # the same loss written as a string, a dict and a list; a value that is not JSON (sigmoid) stays text
    string = build_loss("0.5*focal(gamma=3, alpha=0.25, mode=sigmoid)", num_classes=C)
    assert (string.losses[0].alpha, string.losses[0].mode) == (0.25, "sigmoid")
    params = {"gamma": 3, "alpha": 0.25, "mode": "sigmoid"}
    for spec in ({"focal": {"weight": 0.5, **params}}, [{"name": "focal", "weight": 0.5, **params}]):
        assert_close(build_loss(spec, num_classes=C)(logits, target), string(logits, target))
    assert_close(string(logits, target), 0.5 * FocalLoss(**params)(logits, target))
    # empty parentheses are the defaults
    assert build_loss("focal()").losses[0].gamma == FocalLoss().gamma == 2.0


@pytest.mark.parametrize("spec, message", [
    ("small_loss(keep)", "loss spec 'small_loss(keep)': cannot read the parameter 'keep'; write NAME(KEY=VALUE, ...), "
                         "e.g. 'small_loss(keep=0.8, ramp_steps=24)'."),
    ("ce+small_loss(=0.5)", "loss spec 'ce+small_loss(=0.5)': cannot read the parameter '=0.5'"),
    ("small_loss(keep=0.5", "loss spec 'small_loss(keep=0.5': cannot read the term 'small_loss(keep=0.5'"),
    ("focal(gamma=3)(alpha=1)", "loss spec 'focal(gamma=3)(alpha=1)': cannot read the term 'focal(gamma=3)(alpha=1)'"),
    ("small_loss(nope=1)", "loss spec 'small_loss(nope=1)': small_loss takes no parameter ['nope']; its parameters "
                           "are ['class_weights', 'ignore_index', 'keep', 'label_smoothing', 'ramp_steps']."),
    ("small_loss(ramp_steps=2.5)", "small-loss selection needs ramp_steps, an int >= 0 (0: no ramp), got 2.5."),
    ("small_loss(keep=2)", "small-loss selection keeps a share of the pixels in (0, 1], got keep=2."),
])
def test_bad_parameters_in_a_string_are_one_line(spec, message):
    with pytest.raises(SegeduError) as caught:
        build_loss(spec, num_classes=C)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_train_config_takes_a_parameterised_loss_and_refuses_a_bad_one():
    from segedu.engine import TrainConfig

    assert TrainConfig(loss="small_loss(ramp_steps=4)").loss == "small_loss(ramp_steps=4)"
    with pytest.raises(SegeduError) as caught:
        TrainConfig(loss="small_loss(nope=1)")
    assert str(caught.value).startswith("loss: loss spec 'small_loss(nope=1)': small_loss takes no parameter ['nope']")
    assert "\n" not in str(caught.value)
