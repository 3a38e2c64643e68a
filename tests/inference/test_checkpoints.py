"""Checkpoints read for inference without the training code: the same model and settings as the
engine's load_model, TrainConfig's defaults for fields an older checkpoint lacks, the same errors;
and the names that moved down a layer still importable from their old homes."""
import dataclasses

import pytest
import torch

from segedu import models
from segedu.engine import checkpoint
from segedu.engine.config import TrainConfig
from segedu.errors import SegeduError
from segedu.inference import checkpoints
from segedu.inference.ensemble import trained_precision
from segedu.inference.predict import amp_dtype, autocast
from segedu.models.class_head import ClassPresenceModel


def _checkpoint(path, config: TrainConfig, num_classes=3, drop=()):
    base = models.create(config.model, num_classes=num_classes, **config.model_options)
    model = ClassPresenceModel(base, num_classes, config.suppress_threshold) if config.class_head > 0 else base
    saved = {k: v for k, v in dataclasses.asdict(config).items() if k not in drop}
    checkpoint.save(path, {"model": model.state_dict(), "model_name": config.model, "num_classes": num_classes,
                           "class_names": [f"c{i}" for i in range(num_classes)], "config": saved})
    return path, model


def test_saved_config_defaults_are_train_configs():
    defaults = TrainConfig()
    for field in dataclasses.fields(checkpoints.SavedConfig):
        assert getattr(checkpoints.SavedConfig(), field.name) == getattr(defaults, field.name), field.name


@pytest.mark.parametrize("changes", [
    {},
    {"class_head": 0.4, "suppress_threshold": 0.3, "image_size": (20, 28), "amp": "bf16", "data_dir": "somewhere"},
])
def test_inference_load_model_matches_the_engines(tmp_path, changes):
    from segedu.engine import load_model

    config = TrainConfig(**{"model": "fcn32s", "model_options": {"width": 0.125}, "image_size": 24, "device": "cpu",
                            **changes})
    path, written = _checkpoint(tmp_path / "m.pt", config)
    model, saved, payload = checkpoints.load_model(path, "cpu")
    engine_model, engine_config, engine_payload = load_model(path, "cpu")
    assert type(model) is type(engine_model) is type(written) and not model.training
    for (name, a), (_, b), (_, c) in zip(model.state_dict().items(), engine_model.state_dict().items(),
                                         written.state_dict().items()):
        assert torch.equal(a, b) and torch.equal(a, c), name
    for field in dataclasses.fields(saved):
        assert getattr(saved, field.name) == getattr(engine_config, field.name), field.name
    assert payload["model_name"] == engine_payload["model_name"] == "fcn32s"
    if changes:
        assert model.suppress_threshold == 0.3 and saved.image_size == (20, 28) and saved.data_dir == "somewhere"


def test_a_config_without_the_newer_fields_takes_their_defaults(tmp_path):
    config = TrainConfig(model="fcn32s", model_options={"width": 0.125}, image_size=24, device="cpu")
    path, _ = _checkpoint(tmp_path / "old.pt", config, drop=("class_head", "suppress_threshold", "amp"))
    model, saved, _ = checkpoints.load_model(path, "cpu")
    assert (saved.class_head, saved.suppress_threshold, saved.amp) == (0.0, None, None)
    # a checkpoint older than the field trained under amp="auto", which then meant fp32 on a CPU
    assert trained_precision(saved.amp, torch.device("cpu")) == "off"
    assert not isinstance(model, ClassPresenceModel) and saved.image_size == 24


def test_missing_and_foreign_files_are_refused_naming_them(tmp_path):
    with pytest.raises(SegeduError, match=f"{tmp_path / 'nothing.pt'}: no checkpoint there"):
        checkpoints.load_model(tmp_path / "nothing.pt", "cpu")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(SegeduError, match="not a segedu checkpoint"):
        checkpoints.load_model(foreign, "cpu")
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a zip file")
    with pytest.raises(SegeduError, match="cannot be read as a checkpoint"):
        checkpoint.load(damaged)


def test_moved_names_are_the_same_objects_where_they_were_imported_from():
    from segedu import fileio
    from segedu.data import location, pseudo as data_pseudo
    from segedu.engine import evaluate, load_model, predict, runlog, trainer
    from segedu.inference import evaluate as inference_evaluate, pseudo

    assert trainer.amp_dtype is amp_dtype and trainer.resolve_data_dir is location.resolve_data_dir
    assert checkpoint.load is checkpoints.load and runlog.jsonable is fileio.jsonable
    assert evaluate is inference_evaluate.evaluate and predict is inference_evaluate.predict
    assert load_model.__module__ == "segedu.engine.evaluate"  # the one that returns a TrainConfig
    assert pseudo.pseudo_label_masks is data_pseudo.pseudo_label_masks


def test_amp_dtype_by_mode_and_device(monkeypatch):
    from segedu import env

    cpu = torch.device("cpu")
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: False)
    assert amp_dtype("off", cpu) is None and amp_dtype("auto", cpu) is None
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: True)
    assert amp_dtype("auto", cpu) is torch.bfloat16  # a CPU with bf16 instructions
    assert amp_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(SegeduError, match="amp='fp16' needs a CUDA device"):
        amp_dtype("fp16", cpu)


def test_one_autocast_serves_training_inference_and_measurement():
    from segedu import env
    from segedu.models import measure

    assert autocast is env.autocast and measure.autocast is env.autocast
    a, b = torch.rand(4, 4), torch.rand(4, 4)
    for dtype, expected in ((None, torch.float32), (torch.bfloat16, torch.bfloat16)):
        with autocast(torch.device("cpu"), dtype):
            assert (a @ b).dtype == expected


def test_a_trained_checkpoint_carries_its_model_spec_and_loads_from_it_alone(tmp_path):
    """best.pt holds the small model spec; with the training config deleted, the same model loads."""
    from segedu.data import synth
    from segedu.engine import train

    data = synth.generate(tmp_path / "data", n_images=12, size=64, seed=0).path
    config = TrainConfig(model="fcn32s", model_options={"width": 0.125}, data_dir=str(data), image_size=32,
                         epochs=1, max_steps=2, batch_size=4, num_workers=0, device="cpu",
                         class_head=0.4, suppress_threshold=0.3, out=str(tmp_path / "run"))
    train(config)
    payload = checkpoints.load(tmp_path / "run", "cpu")
    assert payload["spec"] == {"model_options": {"width": 0.125}, "image_size": 32, "amp": payload["config"]["amp"],
                               "class_head": 0.4, "suppress_threshold": 0.3, "data_dir": str(data),
                               "profile": payload["config"]["profile"]}  # as resolved when it trained
    assert payload["spec"]["amp"] in ("off", "bf16", "fp16")  # the precision it trained in, not "auto"
    full, full_saved, _ = checkpoints.load_model(tmp_path / "run", "cpu")
    del payload["config"]  # no training config left: the spec alone builds the model
    checkpoint.save(tmp_path / "spec_only.pt", payload)
    alone, saved, _ = checkpoints.load_model(tmp_path / "spec_only.pt", "cpu")
    assert saved == full_saved and isinstance(alone, ClassPresenceModel) and alone.suppress_threshold == 0.3
    for (name, a), (_, b) in zip(alone.state_dict().items(), full.state_dict().items()):
        assert torch.equal(a, b), name
