"""Profiles: one table, resolved by name, overridable from the environment, clear errors."""
import pytest

from segedu import profiles
from segedu.errors import SegeduError


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv(profiles.PROFILE_ENV, raising=False)


def test_named_profiles_resolve_to_themselves():
    for name in ("smoke", "cpu", "gpu"):
        assert profiles.get(name).name == name


def test_auto_follows_cuda_availability(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert profiles.resolve_name("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert profiles.resolve_name("auto") == "gpu"
    assert profiles.resolve_name(None) == "gpu"


def test_environment_override_wins(monkeypatch):
    monkeypatch.setenv(profiles.PROFILE_ENV, "smoke")
    assert profiles.get("gpu").name == "smoke"


def test_unknown_profile_is_one_clear_message():
    with pytest.raises(SegeduError, match=r"unknown profile 'fast'; choose one of smoke, cpu, gpu, auto"):
        profiles.get("fast")


def test_bad_override_names_the_variable(monkeypatch):
    monkeypatch.setenv(profiles.PROFILE_ENV, "tiny")
    with pytest.raises(SegeduError, match="SEGEDU_PROFILE='tiny' is not a profile"):
        profiles.get("cpu")


def test_profiles_grow_from_smoke_to_gpu():
    s, c, g = (profiles.PROFILES[n] for n in ("smoke", "cpu", "gpu"))
    for field in ("synth_images", "synth_size", "image_size"):
        assert getattr(s, field) < getattr(c, field) < getattr(g, field), field
    assert g.synth_size == 512  # the competition's resolution
    assert s.book_budget_min <= 10 and c.book_budget_min <= 90 and g.book_budget_min <= 20  # one machine, one run


def test_default_data_dir_is_per_profile(monkeypatch, tmp_path):
    monkeypatch.setenv(profiles.DATA_ROOT_ENV, str(tmp_path))
    smoke, cpu = profiles.default_data_dir("smoke"), profiles.default_data_dir("cpu")
    assert smoke.parent == cpu.parent == tmp_path and smoke != cpu
