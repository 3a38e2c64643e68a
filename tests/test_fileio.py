"""segedu.fileio: written whole or not at all, with the mode the umask gives, and a full disk explained."""
from __future__ import annotations

import errno
import json
import os
import stat

import numpy as np
import pytest
from PIL import Image

from segedu import cli, fileio
from segedu.engine import checkpoint
from segedu.errors import SegeduError


@pytest.fixture(params=[0o022, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _coco(n_images: int) -> dict:
    images = [{"id": i, "file_name": f"b/{i}.png", "width": 8, "height": 8} for i in range(1, n_images + 1)]
    annotations = [{"id": i, "image_id": i, "category_id": 1, "segmentation": [[0, 0, 4, 0, 4, 4]], "area": 8.0,
                    "bbox": [0, 0, 4, 4], "iscrowd": 0} for i in range(1, n_images + 1)]
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}


def test_umask_is_read_without_changing_it(umask):
    assert fileio.umask() == umask
    assert os.umask(umask) == umask  # still in force


def test_coco_from_masks_output_has_the_umask_mode(tmp_path, umask):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.png")
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 1
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    out = tmp_path / "coco.json"
    assert cli.main(["coco-from-masks", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
                     "--classes", "bg,box", "--out", str(out)]) == 0
    assert _mode(out) == 0o666 & ~umask


def test_split_outputs_have_the_umask_mode(tmp_path, umask):
    source = tmp_path / "train_all.json"
    source.write_text(json.dumps(_coco(10)))
    assert cli.main(["split", str(source), "--out", str(tmp_path / "folds"), "--method", "kfold", "--folds", "2"]) == 0
    written = sorted((tmp_path / "folds").iterdir())
    assert [p.name for p in written] == ["fold0_train.json", "fold0_val.json", "fold1_train.json", "fold1_val.json"]
    assert {_mode(p) for p in written} == {0o666 & ~umask}


def test_checkpoint_has_the_umask_mode(tmp_path, umask):
    checkpoint.save(tmp_path / "run" / "last.pt", {"model": {}, "model_name": "x"})
    assert _mode(tmp_path / "run" / "last.pt") == 0o666 & ~umask


def test_a_failing_writer_leaves_neither_target_nor_temp_file(tmp_path):
    def fail(f):
        f.write(b"half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fileio.write_atomic(tmp_path / "new.json", fail)
    assert list(tmp_path.iterdir()) == []
    fileio.write_text_atomic(tmp_path / "old.json", "old")
    with pytest.raises(RuntimeError, match="boom"):
        fileio.write_atomic(tmp_path / "old.json", fail)
    assert [p.name for p in tmp_path.iterdir()] == ["old.json"] and (tmp_path / "old.json").read_text() == "old"


def test_a_failing_check_renames_nothing(tmp_path):
    def check(tmp):
        assert tmp.read_bytes() == b"data" and tmp.parent == tmp_path
        raise SegeduError("bad file")

    with pytest.raises(SegeduError, match="bad file"):
        fileio.write_atomic(tmp_path / "x.csv", lambda f: f.write(b"data"), check=check)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_a_segedu_error_naming_the_path(tmp_path):
    def full(f):
        f.write(b"some")
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "runs" / "metrics.json"
    with pytest.raises(SegeduError) as err:
        fileio.write_atomic(target, full)
    assert str(err.value) == f"disk full while writing {target}; free space or choose another folder"
    assert isinstance(err.value.__cause__, OSError) and err.value.__cause__.errno == errno.ENOSPC
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_full_disk_in_a_checkpoint_save_is_explained(tmp_path, monkeypatch):
    def full(payload, f):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(SegeduError, match="disk full while writing .*last.pt"):
        checkpoint.save(tmp_path / "last.pt", {})
    assert list(tmp_path.iterdir()) == []


def test_json_text_and_bytes_writers(tmp_path):
    fileio.write_json_atomic(tmp_path / "a.json", {"x": [1, 2]})
    assert (tmp_path / "a.json").read_text() == '{"x":[1,2]}'
    fileio.write_json_atomic(tmp_path / "b.json", {"x": 1}, indent=2)
    assert (tmp_path / "b.json").read_text() == '{\n  "x": 1\n}\n'
    fileio.write_text_atomic(tmp_path / "c.txt", "é")
    assert (tmp_path / "c.txt").read_bytes() == "é".encode()
    with pytest.raises(TypeError):
        fileio.write_bytes_atomic(tmp_path / "d.bin", "not bytes")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json", "c.txt"]


def test_a_full_disk_wrapped_by_the_writer_is_still_explained(tmp_path):
    def wrapped(f):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise RuntimeError("[enforce fail at inline_container.cc] PytorchStreamWriter failed writing file") from exc

    with pytest.raises(SegeduError, match="disk full while writing"):
        fileio.write_atomic(tmp_path / "best.pt", wrapped)
    assert list(tmp_path.iterdir()) == []


def test_no_permission_names_the_target_but_a_checks_own_error_stays(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".x.json.abc.tmp"))

    monkeypatch.setattr(fileio.tempfile, "mkstemp", denied)  # root may write anywhere: simulate the refusal
    with pytest.raises(SegeduError, match=f"no permission to write {tmp_path / 'x.json'}; choose another folder"):
        fileio.write_text_atomic(tmp_path / "x.json", "{}")
    monkeypatch.undo()

    def check(tmp):
        raise PermissionError(errno.EACCES, "Permission denied", "/elsewhere/test.json")

    with pytest.raises(PermissionError):
        fileio.write_atomic(tmp_path / "y.csv", lambda f: f.write(b"x"), check=check)
    assert list(tmp_path.iterdir()) == []


def test_modified_since_compares_the_files_mtime(tmp_path):
    import os

    from segedu.fileio import modified_since

    path = tmp_path / "scores.pt"
    assert not modified_since(path, None) and not modified_since(path, 0.0)  # no file
    path.write_bytes(b"x")
    os.utime(path, (1000.0, 1000.0))
    assert modified_since(path, None) and modified_since(path, 1000.0) and not modified_since(path, 1000.5)
    assert not modified_since(tmp_path, None)  # a folder is not a written file
