"""The submission file: format, order, downsampling, and a validator that names the bad row."""
import json

import numpy as np
import pytest
import torch

from segedu.errors import SegeduError
from segedu.inference import submission


@pytest.fixture()
def test_json(tmp_path):
    path = tmp_path / "test.json"
    path.write_text(json.dumps({"images": [{"id": 3, "file_name": "batch_01_vt/0002.jpg"},
                                           {"id": 1, "file_name": "batch_03/0001.jpg"}],
                                "categories": []}))
    return path


def _rows(seed=0):
    rng = np.random.default_rng(seed)
    return {"batch_03/0001.jpg": rng.integers(0, 11, (256, 256), dtype=np.uint8),
            "batch_01_vt/0002.jpg": rng.integers(0, 11, (256, 256), dtype=np.uint8)}


def test_rows_follow_the_test_json_order_and_round_trip(tmp_path, test_json):
    rows = _rows()
    out = submission.write(tmp_path / "sub.csv", rows, test_json)
    lines = out.read_text().splitlines()
    assert lines[0] == "image_id,PredictionString"
    assert [line.split(",")[0] for line in lines[1:]] == ["batch_01_vt/0002.jpg", "batch_03/0001.jpg"]
    values = np.array(lines[1].split(",")[1].split(), dtype=np.uint8).reshape(256, 256)
    assert np.array_equal(values, rows["batch_01_vt/0002.jpg"])  # row-major flattening
    assert submission.validate(out, test_json) == 2


def test_downsample_is_nearest_neighbour():
    pred = torch.arange(4).repeat_interleave(128).view(1, 512).repeat(512, 1)  # 4 vertical stripes
    small = submission.downsample(pred)
    assert small.shape == (256, 256) and small.dtype == np.uint8
    assert set(np.unique(small)) == {0, 1, 2, 3}
    assert (small[:, :64] == 0).all() and (small[:, 192:] == 3).all()


def test_missing_prediction_writes_nothing(tmp_path, test_json):
    rows = _rows()
    del rows["batch_03/0001.jpg"]
    with pytest.raises(SegeduError, match="no prediction for 1 test image"):
        submission.write(tmp_path / "sub.csv", rows, test_json)
    assert list(tmp_path.glob("sub.csv*")) == [] and list(tmp_path.glob(".sub.csv*")) == []


@pytest.mark.parametrize("mutate, message", [
    (lambda ls: ["id,Pred"] + ls[1:], "header is 'id,Pred'"),
    (lambda ls: [ls[0], ls[2], ls[1]], r"row 1: image_id 'batch_03/0001.jpg'; expected 'batch_01_vt/0002.jpg'"),
    (lambda ls: ls[:2], "1 rows; .* lists 2 test images"),
    (lambda ls: [ls[0], ls[1] + " 3", ls[2]], r"row 1 \(batch_01_vt/0002.jpg\): 65537 values"),
    (lambda ls: [ls[0], ls[1].replace(" 1 ", " 11 ", 1), ls[2]], "values must be class ids 0..10"),
])
def test_validator_names_the_problem(tmp_path, test_json, mutate, message):
    good = submission.write(tmp_path / "sub.csv", _rows(), test_json)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(mutate(good.read_text().splitlines())) + "\n")
    with pytest.raises(SegeduError, match=message):
        submission.validate(bad, test_json)
