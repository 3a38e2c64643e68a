"""SWA's snapshots kept on disk (save_snapshots), projected onto a plane and scored; their picture."""
import dataclasses
import io
import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from segedu import cli, models, viz  # noqa: E402
from segedu.engine import TrainConfig, Trainer, averaging, checkpoint  # noqa: E402
from segedu.engine import load_model as engine_load_model  # noqa: E402
from segedu.errors import SegeduError  # noqa: E402
from segedu.inference import ensemble  # noqa: E402
from segedu.inference.checkpoints import load_model as inference_load_model  # noqa: E402


# the trainer tests' net with batch norm: parameters and the buffers a plane must leave out
from distributed_worker import BNNet as SnapNet  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def snapnet_registered():
    """SnapNet under a registry name for this module's tests only: the registry's other users
    (every-model tests) must not meet it."""
    models.register("test_snapnet")(SnapNet)
    yield
    models._BUILDERS.pop("test_snapnet")

#: 19 training images in batches of 2: 9 steps an epoch, 18 in all; SWA after step 6, every 3 steps
SNAPSHOT_STEPS = [9, 12, 15, 18]


def _snap_config(base: TrainConfig, **changes) -> TrainConfig:
    return dataclasses.replace(base, model="test_snapnet", model_options={}, batch_size=2, epochs=2,
                               scheduler="constant", lr=1e-2, swa_lr=2e-3, swa_start_step=6, swa_every=3,
                               save_snapshots=True, **changes)


@pytest.fixture(scope="module")
def swa_run(tiny_data, tmp_path_factory):
    """One SWA run with save_snapshots, and the live weights SWA averaged, recorded as it took them."""
    base = TrainConfig(data_dir=str(tiny_data), profile="smoke", image_size=32, max_steps=0, num_workers=0,
                       device="cpu", out=str(tmp_path_factory.mktemp("averaging") / "run"))
    trainer = Trainer(_snap_config(base))
    taken, real_update = {}, trainer.swa.update_parameters

    def recording_update(model):
        taken[trainer.step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        real_update(model)

    trainer.swa.update_parameters = recording_update
    trainer.fit()
    return trainer, taken


# ----------------------------------------------------------------------------- the files
def test_each_snapshot_is_saved_at_its_step_as_the_weights_swa_averaged(swa_run):
    trainer, taken = swa_run
    paths = averaging.snapshot_paths(trainer.run_dir)
    assert [p.name for p in paths] == [f"step{s}.pt" for s in SNAPSHOT_STEPS] and sorted(taken) == SNAPSHOT_STEPS
    for step, path in zip(SNAPSHOT_STEPS, paths):
        payload = checkpoint.load(path)
        assert (payload["step"], payload["weights"], payload["model_name"]) == (step, "snapshot", "test_snapnet")
        assert payload["model"].keys() == taken[step].keys()
        assert all(torch.equal(payload["model"][k], taken[step][k]) for k in taken[step])
    assert not list((trainer.run_dir / "snapshots").glob(".*"))  # no temporary file left behind


def test_a_fresh_run_in_an_old_runs_folder_keeps_only_its_own_snapshots(tiny_data, tmp_path):
    """A run trained again into a folder an older run used must not inherit that run's snapshots:
    the averaging plane and the snapshot ensemble read every file of ``snapshots/``."""
    out = tmp_path / "run"
    stale = out / "snapshots" / "step3.pt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an older run's snapshot")
    base = TrainConfig(data_dir=str(tiny_data), profile="smoke", image_size=32, max_steps=0, num_workers=0,
                       device="cpu", out=str(out))
    trainer = Trainer(_snap_config(base))
    assert not stale.exists()
    trainer.fit()
    assert [p.name for p in averaging.snapshot_paths(out)] == [f"step{s}.pt" for s in SNAPSHOT_STEPS]


def test_snapshots_sort_by_step_not_by_name(tmp_path):
    for step in (100, 9, 12):
        (tmp_path / "snapshots").mkdir(exist_ok=True)
        (tmp_path / "snapshots" / f"step{step}.pt").write_bytes(b"")
    (tmp_path / "snapshots" / "notes.pt").write_bytes(b"")
    assert [p.name for p in averaging.snapshot_paths(tmp_path)] == ["step9.pt", "step12.pt", "step100.pt"]


def test_the_mean_of_the_snapshots_is_swas_parameters_and_its_batch_norm_is_recomputed(swa_run):
    trainer, _ = swa_run
    states = [checkpoint.load(p)["model"] for p in averaging.snapshot_paths(trainer.run_dir)]
    swa = checkpoint.load(trainer.run_dir / "swa.pt")["model"]
    names = averaging.parameter_names(swa)
    assert names == [n for n, _ in SnapNet().named_parameters()]  # the buffers are not parameters
    for name in names:
        torch.testing.assert_close(swa[name], torch.stack([s[name] for s in states]).mean(0))
    mean_of_snapshots = torch.stack([s["body.1.running_mean"] for s in states]).mean(0)
    assert not torch.allclose(swa["body.1.running_mean"], mean_of_snapshots)  # recomputed, not averaged


def test_a_snapshot_loads_as_a_model_and_as_an_ensemble_member(swa_run):
    trainer, _ = swa_run
    path = averaging.snapshot_paths(trainer.run_dir)[1]
    saved = checkpoint.load(path)["model"]
    for load in (engine_load_model, inference_load_model):
        model, _, payload = load(path, "cpu")
        assert payload["num_classes"] == trainer.num_classes
        assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert ensemble.load_member(path, "cpu").num_classes == trainer.num_classes


def test_resume_writes_the_same_snapshots_as_an_uninterrupted_run(swa_run, monkeypatch, interrupt):
    """Killed right after the snapshot of step 12, with last.pt from the end of epoch 1 (step 9): the
    resumed run replays steps 10-12, writes step12.pt again, then 15 and 18, all as the whole run did."""
    whole, _ = swa_run
    cut = dataclasses.replace(whole.config, out=str(whole.run_dir.parent / "cut"))

    interrupt(Trainer(cut), "_save_snapshot", 12)
    assert [p.name for p in averaging.snapshot_paths(cut.out)] == ["step9.pt", "step12.pt"]
    resumed = Trainer(cut, resume=True)
    assert resumed.step == 9
    written, real_resumed_save = [], resumed._save_snapshot
    monkeypatch.setattr(resumed, "_save_snapshot", lambda: (written.append(resumed.step), real_resumed_save()))
    resumed.fit()
    assert written == [12, 15, 18]
    ours, theirs = averaging.snapshot_paths(cut.out), averaging.snapshot_paths(whole.run_dir)
    assert [p.name for p in ours] == [p.name for p in theirs]
    for a_path, b_path in zip(ours, theirs):
        a, b = checkpoint.load(a_path), checkpoint.load(b_path)
        assert {k: a[k] for k in ("step", "epoch", "weights")} == {k: b[k] for k in ("step", "epoch", "weights")}
        assert a["model"].keys() == b["model"].keys()
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), a_path.name


# ----------------------------------------------------------------------------- the plane
#: an orthonormal basis of R^3: u, v span the plane and n is its normal (u x v), all by hand
U, V, N = np.array([1, 2, 2]) / 3, np.array([2, 1, -2]) / 3, np.array([-2, 2, -1]) / 3
W1 = np.array([1.0, 0.0, -1.0])


def _state(point, running_mean=0.0) -> dict:
    """R^3 as a state dict of two parameters (2 + 1 numbers) and batch-norm buffers that must not count."""
    point = torch.as_tensor(point, dtype=torch.float64)
    return {"conv.weight": point[:2].reshape(1, 2).float(), "bn.running_mean": torch.full((2,), running_mean),
            "bn.num_batches_tracked": torch.tensor(7), "head.bias": point[2:].float()}


def test_gram_schmidt_plane_of_three_hand_made_points_in_r3():
    # first snapshot w1; a middle one 2u + v off the plane by 4n; the last w1 + 6u; SWA w1 + 1.5u + 3v
    snapshots = [W1, W1 + 2 * U + V + 4 * N, W1 + 6 * U]
    swa = W1 + 1.5 * U + 3 * V
    plane = averaging.weight_plane([_state(p, running_mean=100.0 * i) for i, p in enumerate(snapshots)],
                                   _state(swa, running_mean=-50.0), steps=[3, 6, 9])
    assert plane.names == ("conv.weight", "head.bias")
    np.testing.assert_allclose(plane.basis.numpy(), np.stack([U, V]), atol=1e-6)
    np.testing.assert_allclose(plane.origin.numpy(), W1, atol=1e-6)
    np.testing.assert_allclose(plane.snapshots, [[0, 0], [2, 1], [6, 0]], atol=1e-6)
    np.testing.assert_allclose(plane.swa, [1.5, 3], atol=1e-6)
    np.testing.assert_allclose(plane.off_plane, [0, 4, 0], atol=1e-5)
    np.testing.assert_allclose(plane.project(_state(W1 + 7 * U - 2 * V + N)), [7, -2], atol=1e-6)
    assert plane.steps == (3, 6, 9) and plane.method == "gram-schmidt"


def test_pca_plane_is_the_two_leading_eigenvectors_of_the_snapshots_covariance():
    rng = np.random.default_rng(0)
    snapshots = rng.normal(size=(6, 3)) * [5.0, 2.0, 0.5]
    plane = averaging.weight_plane([_state(p) for p in snapshots], _state(snapshots.mean(0)), method="pca")
    points = snapshots.astype(np.float32).astype(np.float64)  # the state dicts hold float32
    values, vectors = np.linalg.eigh(np.cov(points.T))
    leading = vectors[:, np.argsort(values)[::-1][:2]].T
    leading *= np.sign(leading @ (points[-1] - points.mean(0)))[:, None]  # the sign the docstring promises
    np.testing.assert_allclose(plane.basis.numpy(), leading, atol=1e-8)
    np.testing.assert_allclose(plane.snapshots, (points - points.mean(0)) @ leading.T, atol=1e-8)
    np.testing.assert_allclose(plane.swa, [0, 0], atol=1e-6)  # SWA = the mean = the origin


@pytest.mark.parametrize("method", averaging.METHODS)
def test_the_swa_point_is_the_projected_mean_of_the_snapshots_when_swa_is_their_mean(method):
    # the projection w -> B (w - o) is affine, so it maps the mean of the snapshots to the mean of their points
    generator = torch.Generator().manual_seed(1)
    states = [{"a": torch.randn(5, 4, generator=generator, dtype=torch.float64),
               "b": torch.randn(7, generator=generator, dtype=torch.float64)} for _ in range(5)]
    swa = {k: torch.stack([s[k] for s in states]).mean(0) for k in states[0]}
    plane = averaging.weight_plane(states, swa, method=method)
    np.testing.assert_allclose(plane.swa, plane.snapshots.mean(0), atol=1e-12)
    np.testing.assert_allclose(plane.basis @ plane.basis.T, np.eye(2), atol=1e-12)  # orthonormal


def test_the_planes_of_a_trained_run(swa_run):
    trainer, _ = swa_run
    for method in averaging.METHODS:
        plane = averaging.load_plane(trainer.run_dir, method)
        assert plane.snapshots.shape == (4, 2) and plane.steps == tuple(SNAPSHOT_STEPS)
        # swa.pt's average was accumulated in float32: its point is the snapshots' mean to rounding
        np.testing.assert_allclose(plane.swa, plane.snapshots.mean(0), atol=1e-5)
    gram = averaging.load_plane(trainer.run_dir)
    assert gram.snapshots[0] == pytest.approx([0, 0]) and gram.snapshots[-1][1] == pytest.approx(0, abs=1e-9)


def test_plane_refuses_what_spans_no_plane():
    line = [_state(W1 + t * U) for t in (0, 1, 2)]
    with pytest.raises(SegeduError, match="lie on the line through the first and last snapshots"):
        averaging.weight_plane(line, _state(W1 + U))
    with pytest.raises(SegeduError, match="same weights"):
        averaging.weight_plane([_state(W1), _state(W1)], _state(W1 + V))
    with pytest.raises(SegeduError, match="the snapshots lie on one line"):
        averaging.weight_plane(line, _state(W1 + U), method="pca")
    with pytest.raises(SegeduError, match="a pca plane needs at least 3 snapshots, got 2"):
        averaging.weight_plane(line[:2], _state(W1 + V), method="pca")
    with pytest.raises(SegeduError, match="unknown plane method 'tsne'; choose one of gram-schmidt, pca"):
        averaging.weight_plane(line, _state(W1 + V), method="tsne")
    with pytest.raises(SegeduError, match="snapshot 1 has no parameter 'head.bias'"):
        averaging.weight_plane([line[0], {"conv.weight": torch.zeros(1, 2)}], _state(W1 + V))


# ----------------------------------------------------------------------------- scores and the picture
def test_scores_of_the_snapshots_and_of_swa_are_the_trainers_own(swa_run):
    trainer, _ = swa_run
    rows = averaging.score_snapshots(trainer.run_dir, device="cpu")
    assert [r["name"] for r in rows] == [f"step{s}" for s in SNAPSHOT_STEPS] + ["swa"]
    assert [r["step"] for r in rows] == SNAPSHOT_STEPS + [None] and [r["swa"] for r in rows] == [False] * 4 + [True]
    # the last snapshot is the live model of epoch 2's record; the SWA model that of the SWA record,
    # each scored there by the training loop's own evaluation
    assert rows[-2]["miou"] == pytest.approx(trainer.history[1]["val_miou"], abs=1e-9)
    assert trainer.history[-1]["swa"] and rows[-1]["miou"] == pytest.approx(trainer.history[-1]["val_miou"], abs=1e-9)
    assert all(0.0 <= r["miou"] <= 1.0 for r in rows)


def test_score_snapshots_says_how_to_get_snapshots(tmp_path):
    with pytest.raises(SegeduError, match="no SWA snapshots; train with swa_start .* save_snapshots=True"):
        averaging.score_snapshots(tmp_path)


def test_plot_weight_path_draws_the_path_the_swa_point_and_their_scores(swa_run):
    trainer, _ = swa_run
    plane = averaging.load_plane(trainer.run_dir)
    scores = [0.11, 0.22, 0.33, 0.44]
    ax = viz.plot_weight_path(plane, scores, 0.5)
    path = ax.get_lines()[0]
    np.testing.assert_allclose(np.column_stack([path.get_xdata(), path.get_ydata()]), plane.snapshots)
    snapshots, swa = ax.collections[:2]
    np.testing.assert_allclose(snapshots.get_offsets(), plane.snapshots)
    np.testing.assert_allclose(snapshots.get_array(), SNAPSHOT_STEPS)  # coloured by step
    np.testing.assert_allclose(swa.get_offsets(), [plane.swa])
    assert [t.get_text() for t in ax.texts] == ["0.110", "0.220", "0.330", "0.440", "SWA 0.500"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("direction 1 (weights)", "direction 2 (weights)")
    assert "SWA" in ax.get_title() and "Izmailov" in ax.get_title()
    png = io.BytesIO()
    ax.figure.savefig(png, format="png")
    assert png.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SegeduError, match="3 scores for 4 snapshots"):
        viz.plot_weight_path(plane, scores[:3], 0.5)


# ----------------------------------------------------------------------------- the flag
def test_save_snapshots_round_trips_through_the_config_and_the_flag():
    config = TrainConfig(save_snapshots=True, swa_start=1)
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config
    assert TrainConfig().save_snapshots is False
    args = cli.build_parser().parse_args(["train", "--save-snapshots", "--swa-start", "1"])
    assert cli._train_config(args).save_snapshots is True
    assert "| `--save-snapshots` | on | off |" in cli.train_flags_markdown()
    with pytest.raises(SegeduError, match="save_snapshots keeps SWA's snapshots and needs swa_start or swa_start_step"):
        TrainConfig(save_snapshots=True, profile="smoke").resolved()
