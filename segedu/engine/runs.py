"""Comparing run directories: what changed between runs (a config diff) and what it did (metrics).

"One change at a time" is only visible if the runs say what they were. Every run directory holds
its resolved ``config.json`` and one ``metrics.jsonl`` line per epoch (:mod:`segedu.engine.runlog`);
this module reads them back as :class:`RunRecord` objects and lays several side by side: each
run's differences from a baseline run, its best validation mIoU, its steps and training seconds.

The same records tell whether a run directory already holds a finished run of exactly a given
configuration (:func:`finished`), so a training need not be repeated; when the book reuses runs
is its own policy (:mod:`segedu.experiments.reuse`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from ..data.dataset import annotation_file
from ..errors import SegeduError
from ..fileio import modified_since, write_text_atomic
from .config import TrainConfig
from .runlog import read_metrics

#: fields that say where or on what a run executed, not what it was: left out of config diffs.
#: ``num_workers`` is not one of them: each loader worker draws its own augmentation stream, so the
#: same run with another number of workers trains on other crops and flips and ends on other numbers.
PLACE_FIELDS = ("out", "device", "tensorboard", "wandb", "checkpoint_every", "save_epochs", "save_snapshots")


@dataclasses.dataclass
class RunRecord:
    """A finished or interrupted run read from its directory (the attributes a chapter reads from a
    :class:`~segedu.engine.trainer.Trainer`: ``config``, ``history``, ``step``, ``best_miou``)."""

    run_dir: Path
    config: TrainConfig
    history: list[dict]

    @property
    def step(self) -> int:
        return int(self.history[-1]["step"]) if self.history else 0

    @property
    def best_miou(self) -> float:
        values = [r["val_miou"] for r in self.history if r.get("val_miou") is not None]
        return max(values) if values else -math.inf

    @property
    def best_iou(self) -> list[float]:
        """Per-class validation IoU of the epoch with the best mIoU (NaN: a class never seen)."""
        scored = [r for r in self.history if r.get("val_miou") is not None]
        if not scored:
            return []
        best = max(scored, key=lambda r: r["val_miou"])
        return [math.nan if v is None else float(v) for v in best.get("val_iou", [])]

    @property
    def train_seconds(self) -> float:
        """Seconds spent in training epochs (validation and SWA's batch-norm pass excluded)."""
        return float(sum(r.get("seconds", 0.0) for r in self.history))

    @property
    def epochs_done(self) -> int:
        return max((int(r["epoch"]) for r in self.history if not r.get("swa")), default=0)


def load(run_dir: str | Path) -> RunRecord:
    """Read ``run_dir``'s config and metrics; a clear error if it is not a run directory."""
    run_dir = Path(run_dir)
    config_file = run_dir / "config.json"
    if not config_file.is_file():
        raise SegeduError(f"{run_dir}: not a run directory (no config.json); `segedu train --out` writes one.")
    try:
        history = read_metrics(run_dir)
    except json.JSONDecodeError as exc:
        raise SegeduError(f"{run_dir / 'metrics.jsonl'}: line {exc.lineno} is not valid JSON ({exc.msg}).") from None
    return RunRecord(run_dir, TrainConfig.load(config_file), history)


def finished(run_dir: str | Path, config: TrainConfig, since: float | None = None) -> RunRecord | None:
    """The run in ``run_dir`` if it finished with exactly ``config`` (after resolving), else None.

    Finished means: the same resolved configuration, a ``best.pt``, and every planned epoch (or the
    step cap) recorded in ``metrics.jsonl``; with ``since`` (a ``time.time()``), also written after it.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file() or not (run_dir / "best.pt").is_file():
        return None
    if since is not None and not modified_since(run_dir / "metrics.jsonl", since):
        return None
    try:
        record = load(run_dir)
    except SegeduError:
        return None
    wanted = config.resolved()
    if record.config.to_json() != wanted.to_json():
        return None
    capped = bool(wanted.max_steps) and record.step >= wanted.max_steps
    if record.epochs_done < wanted.epochs and not capped:
        return None
    # an SWA run that is not in debug mode averages at least 4 snapshots (else the Trainer refuses
    # it), so it is finished only once its SWA record is written
    swa = wanted.swa_start is not None or wanted.swa_start_step is not None
    if swa and not wanted.debug and not any(r.get("swa") for r in record.history):
        return None
    return record


#: the split fields of a config: two runs whose split files hold the same bytes trained on the same images
SPLIT_FIELDS = ("train_split", "val_split")


def _split_digest(data_dir, split: str | None) -> str | None:
    if not split:
        return None
    try:
        return hashlib.sha256(annotation_file(data_dir, split).read_bytes()).hexdigest()
    except (SegeduError, OSError):
        return f"unreadable:{split}"


def _training(config: TrainConfig) -> dict:
    """What decides a run's numbers: the resolved config without ``out``, its splits as file digests."""
    values = json.loads(config.to_json())
    values.pop("out")
    for field in SPLIT_FIELDS:
        values[field] = _split_digest(config.data_dir, values[field]) if config.data_dir else values[field]
    return values


def find_twin(root: str | Path, config: TrainConfig, since: float | None = None) -> RunRecord | None:
    """A finished run under ``root`` (``root/<folder>/<run>``) that trained exactly as ``config`` would,
    in another directory: the same resolved configuration apart from ``out``, with split files of the
    same content (a K-fold split can repeat the dataset's own). With ``since``, written after it.

    Two chapters that ask for the same training then share one: the second reads the first's numbers
    instead of computing them again (:func:`adopt` copies it to the second's directory).
    """
    wanted = config.resolved()
    key = None
    for config_file in sorted(Path(root).glob("*/*/config.json")):
        run_dir = config_file.parent
        if run_dir.resolve() == Path(wanted.out).resolve() or not (run_dir / "best.pt").is_file():
            continue
        try:
            theirs = TrainConfig.load(config_file)
        except SegeduError:
            continue
        if theirs.model != wanted.model or theirs.seed != wanted.seed:  # cheap filter before hashing splits
            continue
        key = _training(wanted) if key is None else key
        if _training(theirs) != key:
            continue
        as_theirs = dataclasses.replace(wanted, out=theirs.out, train_split=theirs.train_split,
                                        val_split=theirs.val_split)
        record = finished(run_dir, as_theirs, since=since)
        if record is not None:
            return record
    return None


def adopt(twin: RunRecord, config: TrainConfig) -> RunRecord:
    """Copy the finished run ``twin`` to ``config.out`` as the run of ``config`` (its ``config.json``
    rewritten to ``config``, every other file as it was, times included); the copy appears whole or
    not at all, replacing whatever ``config.out`` held."""
    wanted = config.resolved()
    out = Path(wanted.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        copy = staging / "run"
        shutil.copytree(twin.run_dir, copy)
        write_text_atomic(copy / "config.json", wanted.to_json())
        if out.exists():
            shutil.rmtree(out)
        os.replace(copy, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load(out)


def config_diff(run: TrainConfig, baseline: TrainConfig, ignore=PLACE_FIELDS) -> dict[str, tuple]:
    """Fields whose values differ: name -> (baseline value, run value). Model options are compared
    one by one (``model_options.width``)."""
    a, b = dataclasses.asdict(baseline), dataclasses.asdict(run)
    for side in (a, b):
        for key, value in side.pop("model_options").items():
            side[f"model_options.{key}"] = value
    names = sorted((set(a) | set(b)) - set(ignore))
    missing = object()
    return {n: (a.get(n), b.get(n)) for n in names if a.get(n, missing) != b.get(n, missing)}


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def compare(runs: dict[str, str | Path | RunRecord], baseline: str | None = None) -> list[dict]:
    """One row per run (label -> run directory or record): ``label``, ``changes`` (a text like
    ``lr 0.001->0.003; loss ce->focal`` against the baseline run, the first one unless named),
    ``best_miou``, ``step``, ``epochs`` and ``train_seconds``."""
    if not runs:
        raise SegeduError("no runs to compare.")
    records = {label: r if isinstance(r, RunRecord) else load(r) for label, r in runs.items()}
    if baseline is None:
        baseline = next(iter(records))
    if baseline not in records:
        raise SegeduError(f"baseline {baseline!r} is not one of the runs: {', '.join(records)}.")
    base = records[baseline].config
    rows = []
    for label, record in records.items():
        diff = config_diff(record.config, base)
        changes = "; ".join(f"{name} {_show(old)}->{_show(new)}" for name, (old, new) in diff.items())
        rows.append({"label": label, "changes": "(baseline)" if label == baseline else (changes or "(same config)"),
                     "best_miou": record.best_miou, "step": record.step, "epochs": record.epochs_done,
                     "train_seconds": record.train_seconds})
    return rows


def render(rows: list[dict], seconds: bool = True) -> str:
    """``compare``'s rows as a text table; ``seconds=False`` leaves out the machine-dependent time."""
    width = max(5, *(len(r["label"]) for r in rows)) + 2
    head = f"{'run':<{width}}{'best mIoU':>10}{'steps':>7}" + (f"{'train s':>9}" if seconds else "") + "  changes"
    lines = [head]
    for r in rows:
        miou = f"{r['best_miou']:.4f}" if math.isfinite(r["best_miou"]) else "-"
        lines.append(f"{r['label']:<{width}}{miou:>10}{r['step']:>7}"
                     + (f"{r['train_seconds']:>9.1f}" if seconds else "") + f"  {r['changes']}")
    return "\n".join(lines)


def discover(paths) -> dict[str, Path]:
    """Run directories named by ``paths``: each a run directory, or a folder whose sub-folders are
    (labels are the folder names, sorted)."""
    found: dict[str, Path] = {}
    for path in map(Path, paths):
        if (path / "config.json").is_file():
            found[path.name if path.name not in found else str(path)] = path
        elif path.is_dir():
            subs = sorted(p for p in path.iterdir() if (p / "config.json").is_file())
            if not subs:
                raise SegeduError(f"{path}: neither a run directory nor a folder of run directories.")
            for sub in subs:
                found[sub.name if sub.name not in found else str(sub)] = sub
        else:
            raise SegeduError(f"{path}: no such run directory.")
    return found
