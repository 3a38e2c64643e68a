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


# --- a tiny generated dataset shared by the engine and experiments tests (made once per session)
@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from segedu.data import synth

    out = tmp_path_factory.mktemp("engine") / "data"
    synth.generate(out, n_images=24, size=64, seed=3)
    return out


@pytest.fixture()
def config(tiny_data, tmp_path):
    """A small, fast TrainConfig on the tiny dataset (no augmentation beyond the crop, CPU)."""
    from segedu.engine import TrainConfig

    return TrainConfig(model="fcn32s", model_options={"width": 0.125}, data_dir=str(tiny_data), profile="smoke",
                       image_size=32, epochs=2, max_steps=0, batch_size=4, num_workers=0, device="cpu",
                       out=str(tmp_path / "run"), lr=1e-3)
