"""The book's reuse policy: a chapter reads back only what the runner's execution wrote."""
from __future__ import annotations

import os

from segedu.experiments import reuse


def test_written_since_reads_the_book_runners_start(tmp_path, monkeypatch):
    path = tmp_path / "scores.pt"
    monkeypatch.delenv(reuse.REUSE_SINCE_ENV, raising=False)
    assert not reuse.written_since(path)  # no file
    path.write_bytes(b"x")
    os.utime(path, (1000.0, 1000.0))
    assert reuse.written_since(path) and reuse.reuse_since() is None  # outside the runner: any time
    assert reuse.written_since(path, 1000.0) and not reuse.written_since(path, 1000.5)
    monkeypatch.setenv(reuse.REUSE_SINCE_ENV, "999.0")
    assert reuse.reuse_since() == 999.0 and reuse.written_since(path)
    monkeypatch.setenv(reuse.REUSE_SINCE_ENV, "2000.0")
    assert not reuse.written_since(path)  # written before this execution started
