"""segedu's engine trains and evaluates a segmentation_models_pytorch model like its own."""
import pytest

pytest.importorskip("segmentation_models_pytorch", reason="the optional smp extra is not installed "
                    "(make test installs it with the book extra)")


def test_segedu_trains_and_evaluates_an_smp_model(tiny_data, tmp_path):
    from segedu.engine import TrainConfig, evaluate, train

    config = TrainConfig(model="smp:FPN", model_options={"encoder": "resnet18"}, data_dir=str(tiny_data),
                         profile="smoke", image_size=32, epochs=1, max_steps=2, batch_size=4, num_workers=0,
                         device="cpu", out=str(tmp_path / "run"))
    assert "width" not in config.resolved().model_options  # the profile's width is not forced on it
    trainer = train(config)
    assert trainer.step == 2
    scores = evaluate(tmp_path / "run", data_dir=str(tiny_data), device="cpu")
    assert scores["miou"] == pytest.approx(trainer.best_miou, abs=1e-6)
