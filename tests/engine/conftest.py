"""A tiny generated dataset shared by the engine tests (made once per test session)."""
import pytest


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


@pytest.fixture()
def interrupt(monkeypatch):
    """``interrupt(trainer, method, step)``: fit ``trainer`` until its ``method`` (e.g. "_save_last")
    has run at optimiser step ``step``, then stop it there, as a kill right after that write would."""

    class Stop(Exception):
        pass

    def run(trainer, method: str, step: int) -> None:
        real = getattr(trainer, method)

        def then_stop():
            real()
            if trainer.step == step:
                raise Stop

        monkeypatch.setattr(trainer, method, then_stop)
        with pytest.raises(Stop):
            trainer.fit()

    return run
