"""Project a profile's full book time from a capped execution of its training chapters.

``benchmarks/gpu_book_check.sh`` executes every training chapter with each training run capped
at a few optimiser steps (``SEGEDU_MAX_STEPS``), its output lines prefixed with the time they were
printed. This script reads what that execution left and projects what the uncapped profile costs:

* the runs: every run directory under ``RUNS/<profile>/`` (``config.json`` and ``env.json``, written
  when a run starts) that started during the execution. A run belongs to the chapter executing when
  it started: between the runner's "chapter done" lines before and after its ``config.json``'s
  time, so the folders several chapters share (``craft``, ``noise``, ``libraries``) need no mapping;
* seconds per optimiser step: the training seconds of its ``metrics.jsonl`` epoch records over its
  steps. Over a few capped steps this includes the loader's start and the first steps' warm-up, so
  the projection is an upper bound (a larger cap tightens it);
* the full steps, as the trainer counts them: epochs x (training images // batch_size //
  accumulate), capped by the run's own ``max_steps``: the config's where it is below the cap, else the
  profile table's (an explicit cap at or above ``SEGEDU_MAX_STEPS`` is not in the config: the
  projection then overestimates);
* the cost per metrics record beside training (validation, checkpoints): the run's wall time (from
  ``config.json`` to the last ``metrics.jsonl`` write) minus its training seconds, paid once per
  epoch of the full run;
* per chapter: its wall time in the capped execution (``book/run_log.json``), minus its capped runs'
  wall times, plus their projected full times; with ``--memory``, the most GPU memory in use while
  it executed (the script samples ``nvidia-smi`` each second: PyTorch's reserved memory, an upper
  bound of what the chapter's largest run needed).

Usage: ``gpu_book_check.py --log LOG [--runs DIR] [--run-log FILE] [--profile gpu] [--cap N]
[--status RC] [--csv FILE] [--memory FILE] CHAPTER...`` (chapters in the order they were executed). Exit status 1
when the projected total exceeds the profile's ``book_budget_min``, a run failed (out of memory
included) or the execution stopped before every chapter finished; 2 for bad input.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import re
import statistics
import sys
from pathlib import Path

from segedu import profiles
from segedu.errors import SegeduError

#: the runner's line for a finished chapter (segedu.book.run_book): "  06_fcn   123.4 s"
DONE_LINE = re.compile(r"^\s+(\d+_\S+)\s+([\d.]+) s$")
ERROR_PREFIX = "segedu: error: "
#: exit statuses of `timeout` (124, or 137 after its KILL) and of segedu after SIGINT (130)
CUT_STATUSES = (124, 130, 137)
OOM = re.compile(r"out of memory|OutOfMemoryError", re.I)


@dataclasses.dataclass
class BookLog:
    """What the timestamped runner output says: when it started and ended, when each chapter
    finished (and its seconds), the error it stopped with, and whether it was interrupted."""

    start: float
    end: float
    done: dict[str, tuple[float, float]]
    error: str | None
    interrupted: bool


def read_log(path: Path) -> BookLog:
    """Parse ``<unix time> <runner line>`` lines (gpu_book_check.sh writes them)."""
    stamped = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        stamp, _, text = line.partition(" ")
        try:
            stamped.append((float(stamp), text))
        except ValueError:
            raise SegeduError(f"{path}: line {number} does not start with a unix time: {line[:60]!r}.") from None
    if not stamped:
        raise SegeduError(f"{path}: empty; the book's execution printed nothing.")
    done, error = {}, None
    for stamp, text in stamped:
        found = DONE_LINE.match(text)
        if found:
            done[found.group(1)] = (stamp, float(found.group(2)))
        elif text.startswith(ERROR_PREFIX) and error is None:
            error = text[len(ERROR_PREFIX):]
    interrupted = any(text.startswith("segedu: interrupted") for _, text in stamped)
    return BookLog(stamped[0][0], stamped[-1][0], done, error, interrupted)


@dataclasses.dataclass
class Run:
    """One run directory of the capped execution, measured and projected."""

    name: str                # <folder>/<label> under runs/<profile>
    chapter: str | None
    started: float           # config.json's time
    steps: int = 0           # optimiser steps the capped run took
    train_seconds: float = 0.0
    wall: float = 0.0        # config.json to the last metrics.jsonl write
    records: int = 0         # metrics.jsonl records (epochs, and SWA's)
    full_steps: int | None = None
    full_records: int = 0
    problem: str | None = None

    @property
    def seconds_per_step(self) -> float | None:
        return self.train_seconds / self.steps if self.steps else None

    @property
    def overhead_per_record(self) -> float:
        return max(0.0, self.wall - self.train_seconds) / self.records if self.records else 0.0

    @property
    def projected_train(self) -> float | None:
        if self.seconds_per_step is None or self.full_steps is None:
            return None
        return self.full_steps * self.seconds_per_step

    @property
    def projected(self) -> float | None:
        """Seconds of the uncapped run: its training steps and its records' validation."""
        train = self.projected_train
        return None if train is None else train + self.full_records * self.overhead_per_record


def uncapped_max_steps(config: dict, cap: int | None) -> int | None:
    """The run's ``max_steps`` without the cap (None or 0: none). A config value below the cap was
    the run's own; one equal to it replaced the profile's (``TrainConfig.resolved``)."""
    own = config.get("max_steps")
    if cap is None or not own or own < cap:
        return own
    table = profiles.PROFILES[config["profile"]].max_steps
    return min(table or 2, 2) if config.get("debug") else table  # resolved(): a debug run takes <= 2


def full_steps(config: dict, cap: int | None) -> tuple[int, int]:
    """(optimiser steps, steps per epoch) of the uncapped run, counted as the trainer counts them
    (one process: a torchrun launch divides the images among its processes)."""
    from segedu.data.dataset import annotation_file

    data_dir = config.get("data_dir") or profiles.default_data_dir(profiles.PROFILES[config["profile"]])
    split = annotation_file(data_dir, config["train_split"])
    images = len(json.loads(split.read_text())["images"])
    if config.get("debug"):
        from segedu.engine.trainer import DEBUG_IMAGES

        images = min(images, DEBUG_IMAGES)
    per_epoch = images // config["batch_size"] // config["accumulate"]
    steps = config["epochs"] * per_epoch
    limit = uncapped_max_steps(config, cap)
    return (min(steps, limit) if limit else steps), per_epoch


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def measure(run_dir: Path, name: str, chapter: str | None, cap: int | None) -> Run:
    """The capped run in ``run_dir`` and its projection (``problem`` says why there is none)."""
    config_file, metrics_file = run_dir / "config.json", run_dir / "metrics.jsonl"
    run = Run(name, chapter, _mtime(config_file))
    records = []
    if metrics_file.is_file():
        records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    epochs = [r for r in records if not r.get("swa")]
    if not epochs:
        run.problem = "no metrics: the run stopped before its first epoch ended"
        return run
    run.steps, run.records = int(epochs[-1]["step"]), len(records)
    run.train_seconds = float(sum(r.get("seconds", 0.0) for r in epochs))
    run.wall = _mtime(metrics_file) - run.started
    try:
        run.full_steps, per_epoch = full_steps(json.loads(config_file.read_text()), cap)
    except (SegeduError, KeyError, ValueError) as exc:
        run.problem = f"cannot count its full steps: {exc}"
        return run
    run.full_records = (math.ceil(run.full_steps / per_epoch) if per_epoch else 0) + (len(records) - len(epochs))
    return run


@dataclasses.dataclass
class Chapter:
    name: str
    state: str                       # done | failed | cut | not reached
    wall: float | None = None        # seconds in the capped execution
    runs: list[Run] = dataclasses.field(default_factory=list)
    memory_mib: float | None = None  # the most GPU memory in use while it executed

    @property
    def measured(self) -> list[Run]:
        return [r for r in self.runs if r.projected is not None]

    @property
    def median_seconds_per_step(self) -> float | None:
        values = [r.seconds_per_step for r in self.measured]
        return statistics.median(values) if values else None

    @property
    def projected_train(self) -> float:
        return sum(r.projected_train for r in self.measured)

    @property
    def projected(self) -> float | None:
        """The chapter's projected seconds: what it did beside its runs, plus its runs uncapped."""
        if self.wall is None:
            return None
        return self.wall - sum(r.wall for r in self.measured) + sum(r.projected for r in self.measured)


@dataclasses.dataclass
class Report:
    profile: str
    cap: int | None
    chapters: list[Chapter]
    error: str | None
    budget_min: float
    memory_total_mib: float | None = None

    @property
    def total_min(self) -> float:
        return sum(c.projected or 0.0 for c in self.chapters) / 60

    @property
    def failed(self) -> list[Run]:
        return [r for c in self.chapters for r in c.runs if r.problem and c.state != "cut"]

    @property
    def complete(self) -> bool:
        return all(c.state == "done" for c in self.chapters)

    @property
    def passed(self) -> bool:
        return self.complete and not self.failed and self.error is None and self.total_min <= self.budget_min


def run_dirs(runs_root: Path, profile: str) -> dict[str, Path]:
    """``<folder>/<label>`` -> run directory, for every run under ``runs_root/<profile>``."""
    base = Path(runs_root) / profile
    found = sorted(p.parent for p in base.rglob("config.json") if (p.parent / "env.json").is_file())
    return {p.relative_to(base).as_posix(): p for p in found}


def read_memory(path: Path) -> list[tuple[float, float, float]]:
    """``<unix time> <used MiB>, <total MiB>`` lines (nvidia-smi's csv, noheader, nounits) as tuples;
    lines that are not (a sample cut short, an nvidia-smi error) are skipped."""
    samples = []
    for line in Path(path).read_text().splitlines():
        stamp, _, rest = line.partition(" ")
        try:
            used, total = (float(v) for v in rest.split(","))
            samples.append((float(stamp), used, total))
        except ValueError:
            continue
    return samples


def project(chapters: list[str], log: BookLog, runs_root: Path, profile: str, cap: int | None,
            walls: dict[str, float], status: int = 0,
            memory: list[tuple[float, float, float]] | None = None) -> Report:
    """The report of a capped execution of ``chapters`` (in execution order)."""
    if profile not in profiles.PROFILES:
        raise SegeduError(f"unknown profile {profile!r}; choose one of {', '.join(profiles.PROFILES)}.")
    unknown = sorted(set(log.done) - set(chapters))
    if unknown:
        raise SegeduError(f"the log shows chapter(s) {', '.join(unknown)} finishing, which were not named; "
                          "name every chapter the execution ran, in its order.")
    rows, begin, running = [], log.start, True
    windows = []  # (chapter, from, to)
    cut = status in CUT_STATUSES or log.interrupted
    for name in chapters:
        if name in log.done:
            end, seconds = log.done[name]
            rows.append(Chapter(name, "done", walls.get(name, seconds)))
            windows.append((rows[-1], begin, end))
            begin = end
        elif running:  # the chapter executing when the book stopped
            state = "cut" if cut and log.error is None else "failed"
            rows.append(Chapter(name, state, log.end - begin))
            windows.append((rows[-1], begin, math.inf))
            running = False
        else:
            rows.append(Chapter(name, "not reached"))
    for name, path in run_dirs(runs_root, profile).items():
        started = _mtime(path / "config.json")
        owner = next((c for c, lo, hi in windows if lo <= started <= hi), None)
        if owner is None:
            continue  # older than this execution
        owner.runs.append(measure(path, name, owner.name, cap))
    for chapter, lo, hi in windows:
        used = [u for t, u, _ in memory or () if lo <= t <= hi]
        chapter.memory_mib = max(used) if used else None
    error = log.error
    if error is None and not running and not cut:
        error = f"the book stopped (exit status {status}) without an error line"
    total = max((t for _, _, t in memory), default=None) if memory else None
    return Report(profile, cap, rows, error, profiles.PROFILES[profile].book_budget_min, total)


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render(report: Report) -> str:
    cap = f"capped at {report.cap} optimiser steps per run" if report.cap else "uncapped"
    lines = [f"profile {report.profile}, {cap}; budget {report.budget_min:g} min for the whole book",
             f"{'chapter':<32}{'state':>12}{'runs':>6}{'s/step':>8}{'capped wall':>13}{'proj. train':>13}"
             f"{'proj. chapter':>15}{'GPU memory':>12}",
             f"{'':<32}{'':>12}{'':>6}{'median':>8}{'min':>13}{'min':>13}{'min':>15}{'max MiB':>12}"]
    for c in report.chapters:
        lines.append(f"{c.name:<32}{c.state:>12}{len(c.runs):>6}{_num(c.median_seconds_per_step, '.3f'):>8}"
                     f"{_num(c.wall and c.wall / 60, '.2f'):>13}{c.projected_train / 60:>13.2f}"
                     f"{_num(c.projected and c.projected / 60, '.2f'):>15}{_num(c.memory_mib, '.0f'):>12}")
    verdict = "within" if report.total_min <= report.budget_min else "OVER"
    lines.append(f"{'total':<32}{'':>12}{sum(len(c.runs) for c in report.chapters):>6}{'':>8}"
                 f"{sum(c.wall or 0 for c in report.chapters) / 60:>13.2f}"
                 f"{sum(c.projected_train for c in report.chapters) / 60:>13.2f}{report.total_min:>15.2f}")
    if report.memory_total_mib:
        peak = max((c.memory_mib or 0 for c in report.chapters), default=0)
        lines.append(f"GPU memory: at most {peak:.0f} of {report.memory_total_mib:.0f} MiB in use")
    lines.append(f"projected {report.total_min:.1f} min of these chapters against the budget of "
                 f"{report.budget_min:g} min for the whole book: {verdict}")
    if report.error:
        oom = " (out of memory)" if OOM.search(report.error) else ""
        lines.append(f"the book stopped{oom}: {report.error}")
    if report.failed:
        lines.append("failed runs:")
        stopped = next((c.name for c in report.chapters if c.state == "failed"), None)
        for run in report.failed:
            # the run that was training when the book stopped on that error
            oom = "out of memory; " if run.chapter == stopped and OOM.search(report.error or "") else ""
            lines.append(f"  {run.name} ({run.chapter}): {oom}{run.problem}")
    for state in ("cut", "not reached"):
        names = [c.name for c in report.chapters if c.state == state]
        if names:
            what = "cut by the time limit" if state == "cut" else "not reached"
            lines.append(f"{what}: {', '.join(names)} (their projection is missing or partial)")
    lines.append("check " + ("passed" if report.passed else "FAILED"))
    return "\n".join(lines)


def write_csv(report: Report, path: Path) -> None:
    """One row per run: what was measured and projected (seconds)."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["chapter", "run", "steps", "train_s", "wall_s", "s_per_step", "full_steps",
                      "projected_train_s", "projected_s", "problem"])
        for c in report.chapters:
            for r in c.runs:
                out.writerow([c.name, r.name, r.steps, round(r.train_seconds, 3), round(r.wall, 3),
                              _num(r.seconds_per_step, ".4f"), _num(r.full_steps, "d"),
                              _num(r.projected_train, ".1f"), _num(r.projected, ".1f"), r.problem or ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="+", help="the chapters executed, in order (e.g. 06_fcn 07_decoder_models)")
    parser.add_argument("--log", type=Path, required=True, help="the runner's output, each line after a unix time")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the runs folder (default: runs)")
    parser.add_argument("--run-log", type=Path, default=Path("book/run_log.json"),
                        help="the run log with the chapters' wall times (default: book/run_log.json)")
    parser.add_argument("--profile", default="gpu", help="the profile executed (default: gpu)")
    parser.add_argument("--cap", type=int, default=None,
                        help=f"the step cap of the execution (default: ${profiles.MAX_STEPS_ENV})")
    parser.add_argument("--status", type=int, default=0, help="the execution's exit status (124: timed out)")
    parser.add_argument("--csv", type=Path, help="also write one row per run to this file")
    parser.add_argument("--memory", type=Path, help="GPU memory samples: lines '<unix time> <used MiB>, <total MiB>'")
    args = parser.parse_args(argv)
    try:
        cap = args.cap if args.cap is not None else profiles.step_cap()
        walls = {}
        if args.run_log.is_file():
            entry = json.loads(args.run_log.read_text()).get("profiles", {}).get(args.profile, {})
            walls = {k: float(v) for k, v in entry.get("notebooks", {}).items()}
        memory = read_memory(args.memory) if args.memory else None
        report = project([Path(c).stem for c in args.chapters], read_log(args.log), args.runs, args.profile,
                         cap, walls, args.status, memory)
    except (SegeduError, OSError, json.JSONDecodeError) as exc:
        print(f"gpu_book_check: error: {exc}", file=sys.stderr)
        return 2
    print(render(report))
    if args.csv:
        write_csv(report, args.csv)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
