"""Fixtures shared by the test folders."""
import errno
import urllib.error

import pytest


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, as on the project's machines (every download fails as urllib fails offline), and an
    empty torch hub cache in a temporary TORCH_HOME; returns the hub's checkpoints folder."""
    import torch

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)

    def no_network(url, dst, *args, **kwargs):
        raise urllib.error.URLError(OSError(errno.ENETUNREACH, "Network is unreachable"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints"
