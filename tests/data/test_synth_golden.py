"""segedu.data.synth's output, pinned by checksum: the book's every number depends on these bytes.

The generator is deterministic (same seed, same bytes), but its bytes also depend on numpy's
random streams, OpenCV's drawing, resizing and JPEG encoding, and pycocotools' rasterisation. An
upgrade of any of them could silently change the book's data; these checksums make it a test
failure instead. An intended change adds a version to :mod:`segedu.data.synth.versions` and makes
it ``synth.GENERATOR_VERSION`` (which also regenerates the default datasets, see
:func:`segedu.data.synth.ensure_default_dataset`), and records the new checksums here under the new
version. Every older version is checked too: it must still draw what it drew (the course
encoders' pretraining corpus is version "2").

Three checksums tell where a change is: the rendered arrays before JPEG encoding (if only the
written files changed, the JPEG encoder did), the written clean dataset, and the dataset with
label noise (if only that one changed, :mod:`segedu.data.noise` did).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from segedu.data import noise, synth
from segedu.data.synth.scene import _render, plan_classes

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools + numpy 2

#: version -> sha256 of every file of ``generate(n_images=12, size=64, seed=0, version=version)``
GOLDEN = {"2": "7424783b40470638a6c0d0d53b8931ba48b3b6e637fc268462e95a2b1034e120",
          "3": "0342cef5b2e7b827bd954fd51a98cfeb4e0d569fa5324673616c4d0f4e897904"}
#: version -> sha256 of every file of the same dataset with ``NOISE`` (train_noisy*.json too)
GOLDEN_NOISY = {"2": "9c4208a1ecabe075b91d4f677f0922ab03ca11accc9725b8411f0f46ee5df97a",
                "3": "f48d2c8d612400cd6baca053f25d0515dde96df3ac176c3320af1ec61021d21a"}
#: version -> sha256 of ``_render``'s arrays and annotations for ``RENDERED``, before JPEG
GOLDEN_RENDER = {"2": "ff11d2ba2e21025709d0ba953cf2b8a79ee35f7c68965a64f42169f6d0b8061e",
                 "3": "2102f050def576bc77c5ffeb805be32908b38dd72b4f665ea0c56ec9fac8a0fa"}

NOISE = noise.NoiseSpec(rate=0.5, seed=1)
#: (index, batch, flat) drawn at 64 px with seed 0: every batch's look, and the flat control
RENDERED = ((0, 0, False), (1, 1, False), (2, 2, False), (3, 0, True))


def _feed(digest, name: str, data: bytes) -> None:
    """Name and length first, so that no two different inputs feed the same byte stream."""
    digest.update(f"{name}\0{len(data)}\0".encode())
    digest.update(data)


def _canonical_json(path: Path) -> bytes:
    """The JSON parsed and dumped with sorted keys: what it says, not how its dict happened to be ordered."""
    return json.dumps(json.loads(path.read_text(encoding="utf-8")), sort_keys=True).encode()


def files_checksum(folder: Path) -> str:
    """sha256 over every file under ``folder``, by relative path: JPEGs as bytes, JSON canonicalised."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert files, f"{folder} holds no files"
    for path in files:
        name = path.relative_to(folder).as_posix()
        _feed(digest, name, _canonical_json(path) if path.suffix == ".json" else path.read_bytes())
    return digest.hexdigest()


def render_checksum(version: str) -> str:
    """sha256 over ``_render``'s uint8 image, annotations and visible pixels per class for ``RENDERED``."""
    digest = hashlib.sha256()
    plan = plan_classes(len(RENDERED), seed=0, version=version)
    for (index, batch, flat), classes in zip(RENDERED, plan):
        image, annotations, pixels = _render(0, index, 64, classes, batch, flat, version)
        assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
        _feed(digest, f"{index}/image", np.ascontiguousarray(image).tobytes())
        _feed(digest, f"{index}/annotations", json.dumps(annotations, sort_keys=True).encode())
        _feed(digest, f"{index}/pixels", np.asarray(pixels, np.int64).tobytes())
    return digest.hexdigest()


def _check(golden: dict[str, str], actual: str, what: str, version: str) -> None:
    assert version in golden, (
        f"no golden checksum of {what} for generator version {version!r}; record {actual!r} "
        f"in tests/data/test_synth_golden.py")
    assert actual == golden[version], (
        f"the generator's output changed ({what}): sha256 {actual}, expected {golden[version]} for "
        f"version {version!r}. A version never changes: if intended, add a version to "
        f"segedu/data/synth/versions.py and record its checksum here; if not (a numpy, OpenCV or pycocotools "
        f"upgrade?), the book's data would silently change.")


def test_every_version_the_generator_draws_is_pinned():
    assert synth.GENERATOR_VERSION in synth.VERSIONS
    assert set(synth.VERSIONS) == set(GOLDEN) == set(GOLDEN_NOISY) == set(GOLDEN_RENDER)


@pytest.mark.parametrize("version", synth.VERSIONS)
def test_rendered_arrays_match_the_golden_checksum(version):
    _check(GOLDEN_RENDER, render_checksum(version), "rendered images and annotations, before JPEG encoding",
           version)


@pytest.mark.parametrize("version", synth.VERSIONS)
def test_written_dataset_matches_the_golden_checksum(tmp_path, version):
    synth.generate(tmp_path / "data", n_images=12, size=64, seed=0, version=version)
    _check(GOLDEN, files_checksum(tmp_path / "data"), "the written JPEGs and JSON files", version)


@pytest.mark.parametrize("version", synth.VERSIONS)
def test_noisy_dataset_matches_the_golden_checksum(tmp_path, version):
    synth.generate(tmp_path / "data", n_images=12, size=64, seed=0, noise=NOISE, version=version)
    assert (tmp_path / "data" / "train_noisy.json").is_file()
    _check(GOLDEN_NOISY, files_checksum(tmp_path / "data"),
           "the files written with label noise; if only this one fails, segedu.data.noise changed", version)


def test_checksums_see_a_one_byte_change(tmp_path):
    """The checksum is not blind: flipping one pixel of one JPEG, or one JSON value, changes it."""
    synth.generate(tmp_path / "data", n_images=5, size=32, seed=0)
    before = files_checksum(tmp_path / "data")
    jpeg = next((tmp_path / "data").rglob("*.jpg"))
    data = bytearray(jpeg.read_bytes())
    data[-3] ^= 1
    jpeg.write_bytes(bytes(data))
    after_jpeg = files_checksum(tmp_path / "data")
    coco = json.loads((tmp_path / "data" / "val.json").read_text())
    coco["images"][0]["width"] += 1
    (tmp_path / "data" / "val.json").write_text(json.dumps(coco))
    assert len({before, after_jpeg, files_checksum(tmp_path / "data")}) == 3


def test_json_checksum_ignores_key_order_and_spacing(tmp_path):
    """Canonical JSON: the same content written another way hashes the same."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.json").write_text('{"b":1,"a":[1.5,null]}')
    (tmp_path / "b" / "x.json").write_text('{"a": [1.5, null], "b": 1}\n')
    assert files_checksum(tmp_path / "a") == files_checksum(tmp_path / "b")
