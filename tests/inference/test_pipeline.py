"""The composed pipeline: plain path unchanged, TTA around sliding windows, members averaged in probability,
CRF last."""
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segedu.errors import SegeduError
from segedu.inference import crf, pipeline
from segedu.inference.ensemble import Member
from segedu.inference.pipeline import InferenceOptions, class_probabilities, member_scores, predict_classes
from segedu.inference.predict import predict_logits
from segedu.inference.sliding import sliding_window_logits
from segedu.inference.tta import TTA, tta_logits


def _images(b=2, h=20, w=26, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _conv_model(seed=0, classes=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, classes, 3, padding=1)).eval()


def test_no_options_is_the_plain_prediction_exactly():
    model, images = _conv_model(), _images()
    logits = predict_logits(model, images, 16)
    assert InferenceOptions().plain
    assert torch.equal(predict_classes([(model, 16)], images), logits.argmax(1))
    assert torch.equal(predict_classes(Member(model, 16), images, InferenceOptions()), logits.argmax(1))
    assert torch.equal(class_probabilities([(model, 16)], images), logits.softmax(1))


def test_tta_views_wrap_the_sliding_windows():
    """Each flip view is predicted window by window, then flipped back; a scale rescales the view first."""
    model, images = _conv_model(), _images()
    options = InferenceOptions(tta=TTA(flips=("none", "hflip"), scales=(1.0, 0.5), merge="logit"),
                               sliding_window=12, overlap=0.25, weighting="gaussian")
    got = member_scores((model, 16), images, options)
    views = []
    for scale in (1.0, 0.5):
        for flipped in (False, True):
            x = images.flip(-1) if flipped else images
            if scale != 1:
                x = F.interpolate(x, size=(10, 13), mode="bilinear", align_corners=False, antialias=True)
            z = sliding_window_logits(model, x, 12, overlap=0.25, weighting="gaussian")
            z = F.interpolate(z, size=(20, 26), mode="bilinear", align_corners=False) if scale != 1 else z
            views.append(z.flip(-1) if flipped else z)
    torch.testing.assert_close(got, torch.stack(views).mean(0), atol=1e-5, rtol=0)
    # sliding alone: the windows see the image at its own resolution (the member's size is not used)
    alone = member_scores((model, 16), images, InferenceOptions(sliding_window=12, overlap=0.25))
    assert torch.equal(alone, sliding_window_logits(model, images, 12, overlap=0.25))


def test_members_are_averaged_in_probability_after_their_tta():
    a, b, images = _conv_model(0), _conv_model(1), _images()
    options = InferenceOptions(tta=TTA(flips=("none", "vflip"), merge="prob"))
    got = class_probabilities([(a, 16), (b, 24)], images, options)
    pa = tta_logits(a, images, 16, ("none", "vflip"), merge="prob").exp()
    pb = tta_logits(b, images, 24, ("none", "vflip"), merge="prob").exp()
    torch.testing.assert_close(got, (pa + pb) / 2, atol=1e-6, rtol=0)
    assert torch.equal(predict_classes([(a, 16), (b, 24)], images, options), got.argmax(1))


def test_crf_comes_last_on_the_averaged_probabilities():
    pytest.importorskip("pydensecrf.densecrf", reason="the DenseCRF needs the optional pydensecrf2 package")
    a, b, images = _conv_model(0), _conv_model(1), _images(b=2, h=24, w=30)
    options = InferenceOptions(tta=TTA(), crf=True)
    got = predict_classes([(a, 16), (b, 16)], images, options)
    p = class_probabilities([(a, 16), (b, 16)], images, options)
    for i in range(2):
        assert torch.equal(got[i], crf.dense_crf(images[i], p[i]).argmax(0))
    assert got.dtype == torch.int64 and got.device == images.device and got.shape == (2, 24, 30)


def test_crf_without_pydensecrf_raises_the_install_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)  # None makes the import fail, as if not installed
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(SegeduError, match="pip install pydensecrf2"):
        predict_classes([(_conv_model(), 16)], _images(), InferenceOptions(crf=True))


def test_options_are_validated_and_built_from_keywords():
    with pytest.raises(SegeduError, match="overlap"):
        InferenceOptions(sliding_window=16, overlap=1.0)
    with pytest.raises(SegeduError, match="overlap"):
        InferenceOptions(overlap=-1)  # refused even before a window is asked for
    with pytest.raises(SegeduError, match="weighting 'box'"):
        InferenceOptions(sliding_window=16, weighting="box")
    with pytest.raises(SegeduError, match="sliding window must be a positive"):
        InferenceOptions(sliding_window=0)
    with pytest.raises(SegeduError, match="tta must be a segedu.inference.tta.TTA"):
        InferenceOptions(tta=("none", "hflip"))
    built = InferenceOptions.build(tta=["none", "hflip"], sliding_window=32, crf=True, ensemble="run2")
    assert built.tta == TTA(flips=("none", "hflip")) and built.ensemble == ("run2",) and not built.plain
    assert built.describe()["tta"] == {"flips": ["none", "hflip"], "scales": [1.0], "merge": "prob"}
    assert InferenceOptions.build().plain


def _checkpoint(path, num_classes):
    """A minimal segedu checkpoint of a tiny untrained fcn32s."""
    import dataclasses

    from segedu import models
    from segedu.engine import checkpoint
    from segedu.engine.config import TrainConfig

    config = TrainConfig(model="fcn32s", model_options={"width": 0.125}, image_size=16, device="cpu")
    model = models.create("fcn32s", num_classes=num_classes, width=0.125)
    checkpoint.save(path, {"model": model.state_dict(), "model_name": "fcn32s", "num_classes": num_classes,
                           "class_names": [f"c{i}" for i in range(num_classes)], "config": dataclasses.asdict(config)})
    return path


def test_load_pipeline_members_adds_the_ensemble(tmp_path):
    main, other, bad = (_checkpoint(tmp_path / f"{n}.pt", c) for n, c in (("main", 3), ("other", 3), ("bad", 4)))
    members = pipeline.load_pipeline_members(main, InferenceOptions(ensemble=(str(other),)), "cpu")
    assert [m.name for m in members] == [str(main), str(other)]
    with pytest.raises(SegeduError, match="bad.pt"):
        pipeline.load_pipeline_members(main, InferenceOptions(ensemble=(str(bad),)), "cpu")
