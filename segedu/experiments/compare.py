"""Comparing trained models: train a plan of runs, score them overall and at boundaries, tabulate.

The architecture chapters all do the same three things: train several models under one budget,
score each best checkpoint on the validation images (over all pixels and in the band around class
boundaries, where coarse outputs fail first), and show per-class IoU and predictions side by side.
This module does them once, so a chapter only states its plan.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from .. import metrics, models, significance
from ..data import dataset, masks
from ..inference import ensemble, pipeline, pseudo
from ..inference.evaluate import background_floor
from ..inference.predictor import Predictor
from ..engine import checkpoint, runs
from ..engine.config import TrainConfig
from ..engine.runs import RunRecord
from ..engine.trainer import train
from . import ablation
from .encoders import encoder_weights
from .reuse import reuse_since, written_since


#: The architectures the book trains, with the options it builds each with: batch norm for the VGG
#: nets, DeconvNet's fc6 padded so that small crops keep a map, U-Net with "same" padding and batch
#: norm, DeepLab v2 on ResNet-50, PSPNet with its auxiliary loss (chapters 6-11, the budget
#: benchmark).
ARCHITECTURES: dict[str, dict] = {
    "fcn32s": {"batch_norm": True},
    "fcn16s": {"batch_norm": True},
    "fcn8s": {"batch_norm": True},
    "deconvnet": {"pad_fc6": True},
    "segnet": {},
    "fcdensenet56": {},
    "unet": {"padding": "same", "batch_norm": True},
    "deeplabv1": {"batch_norm": True},
    "dilatednet": {"batch_norm": True},
    # the paper's ResNet-101 at depth 50: the course ships a ResNet-50 encoder (the book's DeepLab
    # v3/v3+ and PSPNet use it too), so the family compares on one encoder
    "deeplabv2": {"depth": 50},
    "pspnet_resnet50": {"aux": True},
    "deeplabv3_resnet50": {},
    "deeplabv3plus_resnet50": {},
    "hrnetv2_w18": {},
}


@dataclasses.dataclass
class RunResult:
    """One trained run: its label, run directory, record (``trainer``: config, history, step,
    best_miou, as a Trainer has them) and seconds: wall time of the training, or for a reused run
    the training seconds it recorded."""

    label: str
    run_dir: Path
    trainer: RunRecord  # what the run recorded: config, history, step, best_miou (read back from run_dir)
    seconds: float
    reused: bool = False

    @property
    def train_seconds(self) -> float:
        """Seconds of the training epochs as the run recorded them (the same for a reused run)."""
        return self.trainer.train_seconds

    @property
    def model(self) -> str:
        return self.trainer.config.model

    @property
    def seed(self) -> int:
        return self.trainer.config.seed

    @property
    def train_images_per_s(self) -> float:
        """Training throughput: images of all optimiser steps over the epochs' training seconds
        (data loading, forward, backward and update; validation excluded). The loader drops the last
        incomplete batch, so every step saw ``batch_size * accumulate`` images."""
        c = self.trainer.config
        return self.trainer.step * c.batch_size * c.accumulate / max(self.train_seconds, 1e-9)


def train_plan(session, chapter: str, plan: list[dict], reuse: bool = False, share: bool = True,
               **common) -> dict[str, RunResult]:
    """Train each entry of ``plan`` (TrainConfig fields; ``label`` names the run) with ``common`` fields.

    Data, profile, device and run directory come from the chapter's ``session``; the run lands in
    ``runs/<profile>/<chapter>/<label>``. Returns the results in plan order, keyed by label. A model
    starts from the profile's pretrained encoder where its paper starts from ImageNet
    (:func:`segedu.experiments.encoders.encoder_weights`); an entry's own ``model_options``
    (e.g. ``{"pretrained_backbone": False}`` for a from-scratch control) override that.

    With ``reuse=True`` a run directory that already holds a finished run of exactly the same
    configuration (:func:`segedu.engine.runs.finished`) is read back instead of trained again: the
    competition-craft chapters share one folder of runs, so a run one of them trained is not
    repeated by the next. A finished run of the same training in another chapter's folder (apart
    from its directory, and with split files of the same content: :func:`segedu.engine.runs.find_twin`)
    is copied in and read back too, unless ``share=False`` (a run that must be trained in its own
    directory, such as a repeat that shows training is deterministic). Same seed, same
    configuration, same machine: the same numbers. Under the book's runner only runs of the current
    execution are reused (``SEGEDU_REUSE_SINCE``).
    """
    since = reuse_since()
    results = {}
    for entry in plan:
        entry = {**common, **entry}
        label = entry.pop("label", None) or f"{entry['model']}-seed{entry.get('seed', session.seed)}"
        own = entry.pop("model_options", {})
        options = {**encoder_weights(entry["model"], session.profile, own), **own}
        if "width" in models.options_of(entry["model"]):  # smp models have no width
            options = {"width": session.profile.width, **options}
        fields = {"data_dir": str(session.data_dir), "profile": session.profile.name, "seed": session.seed,
                  "device": str(session.device), "out": str(session.run_dir(chapter, label)),
                  "model_options": options, **entry}
        config = TrainConfig(**fields)
        done = runs.finished(config.out, config, since=since) if reuse else None
        if done is None and reuse and share:  # another chapter's folder may hold the very same training
            twin = runs.find_twin(Path(config.out).parent.parent, config, since=since)
            done = runs.adopt(twin, config) if twin is not None else None
        if done is not None:
            results[label] = RunResult(label, Path(config.out), done, done.train_seconds, reused=True)
            continue
        start = time.perf_counter()
        run_dir = Path(train(config).run_dir)
        # Keep what the run recorded, not the Trainer: a chapter trains dozens of runs in one kernel,
        # and live trainers (models, optimisers, datasets) would make every later run slower.
        results[label] = RunResult(label, run_dir, runs.load(run_dir), time.perf_counter() - start)
    return results


#: The run folder the architecture chapters (6-11) share: a model trained by one chapter is read
#: back by the next that needs it (same configuration, same seed), not trained again.
ARCHITECTURE_RUNS = "architectures"


def train_architectures(session, names, seeds=None, **common) -> dict[str, RunResult]:
    """Each architecture of ``names`` trained once per seed (default: the session's seed) at the
    book's one budget, with its :data:`ARCHITECTURES` options and the profile's pretrained encoder,
    in the shared :data:`ARCHITECTURE_RUNS` folder: a run an earlier chapter of the same book
    execution trained is read back (:func:`train_plan`'s ``reuse``). ``common``: TrainConfig fields
    for every run (they change the configuration, so such runs are not shared). Returns what
    :func:`train_plan` does, labelled ``<name>-seed<s>``, names in the order given."""
    seeds = [session.seed] if seeds is None else list(seeds)
    plan = [{"model": name, "seed": s, "model_options": dict(ARCHITECTURES.get(name, {}))}
            for name in names for s in seeds]
    return train_plan(session, ARCHITECTURE_RUNS, plan, reuse=True, **common)


def craft_setup(session) -> dict:
    """What every competition-craft chapter starts from: the baseline's fields
    (:func:`segedu.experiments.ablation.baseline`), the profile's seeds, the number of training images
    (it sets the warm-up length) and optimiser steps, the labelled test file of the generated
    dataset, the shared folder of inference scores, ``floor``: the mIoU of predicting Background
    everywhere on val and on test (:func:`segedu.inference.evaluate.background_floor`), and
    ``describe``: the baseline in one line."""
    data_dir, prof = Path(session.data_dir), session.profile
    base, seeds = ablation.baseline(prof), list(prof.seeds)
    train_images = len(json.loads((data_dir / "train.json").read_text())["images"])
    steps = ablation.optimiser_steps(prof, train_images)
    size = base["image_size"]
    test_labels = str(data_dir / "test_labels.json")
    floor = {"val": float(background_floor(data_dir, "val")["miou"]),
             "test": float(background_floor(data_dir, test_labels)["miou"])}
    return {"base": base, "seeds": seeds, "train_images": train_images, "steps": steps, "floor": floor,
            "test_labels": test_labels, "scores": session.run_dir("craft", "scores"),
            "describe": f"baseline: {base['model']} at width {prof.width}, {size}x{size} crops, "
                        f"{base['epochs']} epoch(s) of {train_images} images = {steps} optimiser steps of batch "
                        f"{prof.batch_size}; seeds {seeds}"}


def train_tricks(session, tricks, seeds=None, reuse: bool = True) -> dict[str, RunResult]:
    """The baseline and each of ``tricks`` (names of :data:`segedu.experiments.ablation.TRICKS`), once per
    seed (default: the profile's), trained in the shared ``craft`` folder: a run an earlier chapter
    of the same book execution trained is read back, not trained again. Labels ``<trick>-seed<s>``."""
    setup = craft_setup(session)
    seeds = setup["seeds"] if seeds is None else list(seeds)
    return train_plan(session, "craft", ablation.plan(session.profile, tricks, seeds, setup["train_images"]),
                      reuse=reuse)


def trick_rows(trained: dict[str, RunResult], tricks, seeds) -> list:
    """:func:`segedu.experiments.ablation.table` rows of the baseline and ``tricks`` from their runs'
    best validation mIoU and training seconds (labels ``<trick>-seed<s>``)."""
    groups = {trick: [trained[f"{trick}-seed{s}"] for s in seeds] for trick in ["baseline", *tricks]}
    return ablation.table({t: [r.trainer.best_miou for r in runs_] for t, runs_ in groups.items()},
                          {t: [r.train_seconds for r in runs_] for t, runs_ in groups.items()})


def pseudo_label_runs(session, base_runs, keep_fraction: float = 0.3, class_balanced: bool = False) -> tuple:
    """The pseudo-labelling pipeline of the competition-craft chapters, from the baseline's runs
    (``base_runs``: one :class:`RunResult` per seed).

    The runs' averaged probabilities label the test images' most confident pixels: the threshold
    keeps ``keep_fraction`` of them (:func:`segedu.inference.pseudo.confidence_threshold`; with
    ``class_balanced``, that share of each class's pixels), the rest are ignored. The baseline then
    trains again, once per seed, on train + pseudo-labelled images, for as many optimiser steps as
    the baseline took (the extra images must not buy extra steps).
    Returns ``(summary, runs)``: the :class:`~segedu.data.pseudo.PseudoLabelSummary` and the runs
    labelled ``pseudo_label-seed<s>``. The labels and runs of an earlier chapter of the same book
    execution are read back (labels newer than every baseline checkpoint).
    """
    setup = craft_setup(session)
    base_dirs = [r.run_dir for r in base_runs]
    # one file per rule, so labels written by one rule are never read back for the other
    name = f"train+pseudo{'-class_balanced' if class_balanced else ''}-keep{keep_fraction:g}.json"
    out = session.run_dir("craft", "pseudo_labels") / name
    summary_file = out.with_name(out.stem + ".summary.pt")
    newest = max((Path(d) / "best.pt").stat().st_mtime for d in base_dirs)
    if out.is_file() and written_since(summary_file) and written_since(summary_file, newest):
        summary = torch.load(summary_file, weights_only=False)
    else:
        threshold = pseudo.confidence_threshold(base_dirs, session.data_dir, keep_fraction=keep_fraction,
                                                device=session.device, class_balanced=class_balanced)
        summary = pseudo.write_pseudo_labels(base_dirs, session.data_dir, out, threshold=threshold,
                                             device=session.device)
        checkpoint.save(summary_file, summary)
    steps = base_runs[0].trainer.step
    plan = [{**setup["base"], "train_split": str(out), "max_steps": steps, "seed": r.seed,
             "label": f"pseudo_label-seed{r.seed}"} for r in base_runs]
    return summary, train_plan(session, "craft", plan, reuse=True)


def score_runs(run_dirs: dict[str, str | Path], data_dir: str | Path, split: str = "val", device="cpu",
               boundary_px: int = 3, batch_size: int = 4,
               options: pipeline.InferenceOptions | None = None) -> dict[str, dict]:
    """Per run label: ``{"overall": scores, "boundary": scores, "images_per_s": ...}`` on ``split``
    (each scores dict as :meth:`SegMetrics.compute` gives it, plus its ``confusion`` matrix).

    Scores come from each run's best checkpoint at the images' own resolution, as the competition
    scores. ``boundary`` counts only the pixels within ``boundary_px`` of a boundary between two
    classes (:func:`segedu.metrics.boundary_band`). ``images_per_s`` is inference speed on this split.

    ``options``: how each run predicts (:class:`~segedu.inference.pipeline.InferenceOptions`; e.g.
    ``InferenceOptions(crf=True)`` scores the DenseCRF's refinement of its softmax); their time
    counts in ``images_per_s``.
    """
    data = dataset.CocoSegmentation(data_dir, split)
    loader = dataset.make_eval_loader(data, batch_size)  # batches of one size: any image shape
    out = {}
    for label, run_dir in run_dirs.items():
        member = ensemble.load_member(run_dir, device)  # at its training size and autocast setting
        out[label] = {**_score(Predictor(member, options), loader, boundary_px),
                      "class_names": list(member.class_names or ())}
    return out


def _score(predictor: Predictor, loader, boundary_px: int) -> dict:
    """``overall`` and ``boundary`` scores of ``predictor`` over ``loader`` (each with its confusion
    matrix, on the CPU) and ``images_per_s``, the time of the prediction alone."""
    overall = predictor.score(loader, boundary_px=boundary_px)
    band = overall.pop("boundary")
    return {"overall": {**overall, "confusion": overall["confusion"].cpu()},
            "boundary": {**band, "confusion": band["confusion"].cpu()}, "images_per_s": predictor.images_per_s}


def score_inference(groups: dict[str, list], data_dir: str | Path, split: str = "val", options=None,
                    device="cpu", boundary_px: int = 3, batch_size: int = 4,
                    cache: str | Path | None = None) -> dict[str, dict]:
    """Like :func:`score_runs`, with the inference tricks: per label, the members of ``groups`` (run
    directories or checkpoint files, or :class:`~segedu.inference.ensemble.Member` objects, e.g. one
    model at another input size; one member, or several averaged as an ensemble) predicted through
    :func:`segedu.inference.pipeline.predict_classes` with ``options`` (an
    :class:`~segedu.inference.pipeline.InferenceOptions`: TTA, sliding window, DenseCRF; None = plain).
    ``images_per_s`` counts every member, view and window, so it is the trick's real inference cost.

    ``cache``: a folder where each label's scores are kept, keyed by its checkpoints (path, size and
    modification time), input sizes, options, split and batch size. A later call with the same key
    reads them back instead of predicting again, so a chapter can report what an earlier one
    measured in the same book execution (under the book's runner only entries written since it
    started count, as with :func:`train_plan`'s ``reuse``).
    """
    options = options or pipeline.InferenceOptions()
    data = dataset.CocoSegmentation(data_dir, split)
    loader = dataset.make_eval_loader(data, batch_size)  # batches of one size: any image shape
    out = {}
    for label, items in groups.items():
        key_file = None
        if cache is not None:
            key = _inference_key(items, split, options, batch_size, boundary_px, device)
            key_file = Path(cache) / f"{key}.pt"
            if written_since(key_file):
                out[label] = torch.load(key_file, weights_only=False)
                continue
        members = ensemble.load_members(items, device)
        scored = _score(Predictor(members, options), loader, boundary_px)
        out[label] = {**scored, "class_names": list(members[0].class_names or data.class_names)}
        if key_file is not None:
            checkpoint.save(key_file, out[label])
    return out


def _inference_key(items, split, options, batch_size: int, boundary_px: int, device) -> str:
    """A digest naming one scoring: each member's checkpoint (or model object) and input size, the rest."""
    import hashlib

    parts = []
    for item in items:
        is_member = hasattr(item, "model")  # a Member names its checkpoint and has its own input size
        path = Path(item.name if is_member else item)
        path = path / "best.pt" if path.is_dir() else path
        source = f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}" if path.is_file() else str(path)
        if is_member:  # and may run differently from its checkpoint: another size, no class suppression
            source += f":size={item.size}:suppress={getattr(item.model, 'suppress_threshold', None)}"
        parts.append(source)
    parts += [f"split={split}", f"options={options.describe()}", f"batch={batch_size}", f"band={boundary_px}",
              f"device={device}"]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:20]


def per_class_table(scores: dict[str, dict], digits: int = 3) -> str:
    """A text table: one row per run with mIoU, boundary mIoU, pixel accuracy and per-class IoU."""
    names = next(iter(scores.values()))["class_names"]
    width = max(12, *(len(label) + 2 for label in scores))
    head = f"{'run':<{width}}{'mIoU':>8}{'boundary':>10}{'pix acc':>9}  " + " ".join(f"{n[:7]:>7}" for n in names)
    rows = [head]
    for label, s in scores.items():
        o, b = s["overall"], s["boundary"]
        iou = np.nan_to_num(torch.as_tensor(o["iou"]).numpy(), nan=0.0)
        rows.append(f"{label:<{width}}{o['miou']:>8.{digits + 1}f}{b['miou']:>10.{digits + 1}f}"
                    f"{o['pixel_accuracy']:>9.{digits}f}  " + " ".join(f"{v:>7.{digits}f}" for v in iou))
    return "\n".join(rows)


def seed_summary(scores: dict[str, dict], groups: dict[str, list[str]], key: str = "overall") -> dict[str, tuple]:
    """Per group (e.g. a model name -> its runs' labels): (mean mIoU, std over seeds or nan, n)."""
    out = {}
    for group, labels in groups.items():
        values = [float(scores[label][key]["miou"]) for label in labels]
        out[group] = (*ablation.summarise(values), len(values))
    return out


def paired_seeds(scores: dict[str, dict], treatment: list[RunResult], baseline: list[RunResult],
                 key: str = "overall") -> significance.Paired:
    """Paired t-test over seeds of the ``key`` mIoU ("overall" or "boundary", :func:`score_runs`) of the
    ``treatment`` runs against the ``baseline`` runs, matched by their training seed
    (:func:`segedu.significance.paired`, on the seeds both arms ran)."""
    def by_seed(group):
        return {run.seed: float(scores[run.label][key]["miou"]) for run in group}
    return significance.paired(by_seed(treatment), by_seed(baseline))


@torch.no_grad()
def object_recalls(run_dirs: dict[str, str | Path], data_dir: str | Path, split: str = "val",
                   device="cpu") -> dict[str, torch.Tensor]:
    """Per run label, one row per annotated object of ``split``: (image index, visible area in
    pixels, recall), recall being the share of the object's pixels predicted as its class
    (:func:`segedu.metrics.object_recall`), from each run's best checkpoint at the images' size.
    The rows are in the same order for every run."""
    data = dataset.CocoSegmentation(data_dir, split)
    objects = []
    for index, image in enumerate(data.coco.images):
        objects.append((torch.from_numpy(masks.instance_mask(data.coco, image)).long(),
                        masks.instance_classes(data.coco, image)))
    out = {}
    for label, run_dir in run_dirs.items():
        # one image per batch, in the file's order
        predicted = dataset.in_order(_full_precision(run_dir, device).predict(dataset.make_eval_loader(data, 1)))
        rows = []
        for (index, pred), (instances, classes) in zip(predicted, objects):
            records = metrics.object_recall(pred.cpu(), instances, classes)
            rows.append(torch.cat([torch.full((len(records), 1), float(index), dtype=torch.float64),
                                   records[:, 1:]], 1))
        out[label] = torch.cat(rows) if rows else torch.zeros(0, 3, dtype=torch.float64)
    return out


def recall_by_size(records: torch.Tensor, edges) -> list[tuple[float, float, int, float]]:
    """Mean object recall per area bin: ``edges`` [e0, e1, ..., en] give bins [e_k, e_k+1) of visible
    area in pixels. Returns (low, high, number of objects, mean recall or nan) per bin."""
    area, recall = records[:, 1], records[:, 2]
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (area >= low) & (area < high)
        count = int(inside.sum())
        rows.append((float(low), float(high), count, float(recall[inside].mean()) if count else float("nan")))
    return rows


@torch.no_grad()
def predictions(run_dirs: dict[str, str | Path], image: torch.Tensor, device="cpu") -> dict[str, torch.Tensor]:
    """Per run label, the predicted class map (H, W) of one [0, 1] image (3, H, W)."""
    out = {}
    for label, run_dir in run_dirs.items():
        predictor = _full_precision(run_dir, device)
        out[label] = predictor.labels(image[None].to(predictor.device))[0].cpu()
    return out


def _full_precision(run_dir, device) -> Predictor:
    """The run's best checkpoint at its training size, in full precision: the class maps that
    :func:`object_recalls` and :func:`predictions` show have always been predicted without autocast
    (unlike :func:`score_runs`, which runs the training precision), and keep their numbers."""
    return Predictor(dataclasses.replace(ensemble.load_member(run_dir, device), amp_dtype=None))
