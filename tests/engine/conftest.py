"""Fixtures of the engine tests (the tiny dataset and TrainConfig they share with the experiments
tests are in tests/conftest.py)."""
import pytest


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
