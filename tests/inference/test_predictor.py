"""segedu.inference.predictor: the one predict-and-score loop, checked against hand computations
(softmax of 1x1 convolutions, numpy confusion matrices), and the check that the loop exists once."""
from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segedu import significance
from segedu.data import IGNORE_INDEX
from segedu.errors import SegeduError
from segedu.inference.ensemble import Member
from segedu.inference.predictor import Predictor

from toy_models import Counting

C = 3
SIZES = [(12, 16), (16, 12), (12, 16), (10, 10), (16, 12)]  # three sizes, interleaved
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class Images(torch.utils.data.Dataset):
    """Random [0, 1] images and masks (first row void) of the given sizes, with the COCO-like records
    that make_eval_loader groups by size."""

    def __init__(self, sizes, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for h, w in sizes:
            mask = torch.randint(0, C, (h, w), generator=g)
            mask[0] = IGNORE_INDEX
            self.items.append((torch.rand(3, h, w, generator=g), mask))
        self.coco = SimpleNamespace(images=[{"height": h, "width": w} for h, w in sizes])

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def conv(seed):
    torch.manual_seed(seed)
    return torch.nn.Conv2d(3, C, 1).eval()


def by_hand(models, image):
    """Mean softmax (C, H, W) of 1x1 convolutions of the ImageNet-normalised image, at its own size."""
    x = (image[None] - MEAN) / STD
    return torch.stack([F.conv2d(x, m.weight, m.bias).softmax(1)[0] for m in models]).mean(0)


def numpy_confusion(pred, mask):
    pred, mask = np.asarray(pred).ravel(), np.asarray(mask).ravel()
    keep = mask != IGNORE_INDEX
    return np.bincount(C * mask[keep] + pred[keep], minlength=C * C).reshape(C, C)


@pytest.fixture(scope="module")
def data():
    return Images(SIZES)


@pytest.fixture(scope="module")
def models():
    return [conv(0), conv(1)]


def members(models):
    return [Member(m, None, name=f"m{i}", num_classes=C) for i, m in enumerate(models)]


def test_probabilities_are_the_mean_softmax_at_the_images_size(data, models):
    image = data[0][0]
    got = Predictor(members(models)).probabilities(image[None])
    assert got.shape == (1, C, *image.shape[1:])
    assert torch.allclose(got[0], by_hand(models, image), atol=1e-6)


def test_predict_yields_every_image_once_at_its_own_size(data, models):
    counted = Counting(models[0])
    out = dict(Predictor([Member(counted, None, num_classes=C), Member(models[1], None, num_classes=C)],
                         batch_size=2).predict(data, probabilities=True))
    assert sorted(out) == list(range(len(SIZES)))
    for index, (image, _) in enumerate(data):
        assert out[index].shape == (C, *image.shape[1:])
        assert torch.allclose(out[index], by_hand(models, image), atol=1e-6)
    # batches of one size: (12,16) x2, (16,12) x2, (10,10); each model input at the images' own size
    assert counted.calls == [(2, 3, 12, 16), (2, 3, 16, 12), (1, 3, 10, 10)]
    labels = dict(Predictor(members(models)).predict(data))
    assert all(torch.equal(labels[i], out[i].argmax(0)) for i in out)


def test_score_and_per_image_confusions_match_numpy(data, models):
    predictor = Predictor(members(models), batch_size=2)
    expected = [numpy_confusion(by_hand(models, image).argmax(0), mask) for image, mask in data]
    scores = predictor.score(data)
    assert scores["confusion"].tolist() == sum(expected).tolist()
    cm = sum(expected).astype(float)
    iou = np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm))
    assert scores["iou"].numpy() == pytest.approx(iou, abs=1e-12)
    assert scores["miou"] == pytest.approx(iou.mean(), abs=1e-12)
    assert scores["pixel_accuracy"] == pytest.approx(np.diag(cm).sum() / cm.sum(), abs=1e-12)
    assert predictor.images_per_s > 0
    per_image = predictor.per_image_confusions(data)
    assert per_image.shape == (len(SIZES), C, C) and per_image.dtype == torch.int64
    assert per_image.numpy().tolist() == np.stack(expected).tolist()  # dataset order, whatever the batching
    assert significance.bootstrap_miou_difference(per_image, per_image, n_boot=20).delta == 0.0


def test_score_per_image_averages_the_images_scores(data, models):
    predictor = Predictor(members(models)[:1])
    per_image = predictor.per_image_confusions(data).double()
    tp = per_image.diagonal(dim1=-2, dim2=-1)
    union = per_image.sum(-1) + per_image.sum(-2) - tp
    image_miou = [float((t[u > 0] / u[u > 0]).mean()) for t, u in zip(tp, union)]
    assert predictor.score(data, per_image=True)["miou"] == pytest.approx(np.mean(image_miou), abs=1e-12)


def test_the_crf_option_is_crf_refine_of_one_models_scores(data, models):
    """``options.crf`` on one model gives, image by image, what :func:`segedu.inference.crf.refine`
    (softmax, DenseCRF, argmax) makes of that model's logits: the hook it replaced."""
    pytest.importorskip("pydensecrf.densecrf")
    from segedu.inference import crf
    from segedu.inference.pipeline import InferenceOptions

    member = members(models)[:1]
    images = torch.stack([data[0][0], data[2][0]])  # two images of one size (SIZES)
    refined = Predictor(member, InferenceOptions(crf=True)).labels(images)
    logits = Predictor(member).probabilities(images).log()  # the softmax's log: refine's softmax undoes it
    expected = torch.stack([crf.refine(image, l) for image, l in zip(images, logits)])
    assert refined.shape == expected.shape and torch.equal(refined, expected)


def test_bad_uses_are_refused_with_one_clear_line(data, models):
    with pytest.raises(SegeduError, match="must not shuffle"):
        Predictor(members(models)).score(torch.utils.data.DataLoader(data, batch_size=1, shuffle=True))
    with pytest.raises(SegeduError, match="needs num_classes"):
        Predictor(models[0]).score(data)
    with pytest.raises(SegeduError, match="at least one model"):
        Predictor([])


# ---------------------------------------------------------------- the loop exists once
PACKAGE = Path(__file__).resolve().parents[2] / "segedu"
#: where the predict-and-score loop lives, and the module that defines its accumulator
HOME = {"inference/predictor.py", "metrics.py"}
#: calls that accumulate scores of predictions
SCORING = {"SegMetrics", "confusion_matrix"}
#: calls that run models on a batch; inside a ``for`` loop they are a prediction loop of their own
PREDICTING = {"predict_logits", "predict_classes", "class_probabilities", "ensemble_probabilities", "member_scores",
              "member_presence", "presence"}
#: (module, called name): prediction calls in a loop that are not a loop over a dataset, and why
ALLOWED_IN_LOOPS: set[tuple[str, str]] = set()  # none today: TTA's and the ensemble's loops call a logits_fn


def _called(node: ast.Call) -> str | None:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def test_the_predict_and_score_loop_exists_once():
    """Scores are accumulated only in predictor.py (SegMetrics is defined in metrics.py), and no
    module but predictor.py calls a model-running function inside a loop."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module in HOME:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        in_loop = {id(n) for loop in ast.walk(tree) if isinstance(loop, (ast.For, ast.While, ast.comprehension,
                                                                          ast.ListComp, ast.GeneratorExp))
                   for n in ast.walk(loop)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _called(node)
            if name in SCORING:
                found.append(f"{module}:{node.lineno} calls {name}")
            elif name in PREDICTING and id(node) in in_loop and (module, name) not in ALLOWED_IN_LOOPS:
                found.append(f"{module}:{node.lineno} calls {name} in a loop")
    assert found == [], "use segedu.inference.predictor.Predictor instead:\n" + "\n".join(found)
