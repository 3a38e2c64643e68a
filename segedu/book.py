"""The book's runner: execute chapters with papermill, keep the outputs, build the HTML.

``make book`` calls :func:`run_book` then :func:`build_html`. Each chapter's jupytext ``.py`` is the
source; papermill executes it with the chapter parameters (``profile``, ``data_dir``, ``seed``,
``device``) and the executed notebook replaces the paired ``.ipynb`` only when every cell ran:
a failed chapter leaves the previous ``.ipynb`` untouched and stops the run with the
notebook's name, the failing cell and the error.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import env, profiles
from .errors import SegeduError
from .fileio import write_text_atomic

KERNEL = "python3"
RUN_LOG_JSON = "book/run_log.json"
RUN_LOG_MD = "book/run_log.md"


def root() -> Path:
    """The book's checkout (the folder holding ``_toc.yml``)."""
    r = profiles.project_root()
    if r is None:
        raise SegeduError("the book runner needs the segedu checkout (with _toc.yml); "
                          "run it from a clone of the repository, installed with `make`.")
    return r


def toc_files(book_root: Path | None = None) -> list[str]:
    """Every ``file:`` entry of ``_toc.yml`` in reading order (root first)."""
    import yaml

    book_root = book_root or root()
    toc = yaml.safe_load((book_root / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            for part in e.get("parts", []) or []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return files


def notebooks(book_root: Path | None = None) -> list[Path]:
    """The chapters' jupytext sources (``.py``) in ``_toc.yml`` order."""
    book_root = book_root or root()
    return [book_root / f"{f}.py" for f in toc_files(book_root) if (book_root / f"{f}.py").is_file()]


def select(names: list[str] | None, book_root: Path | None = None) -> list[Path]:
    """Chapters by name (``00_how_to_use``), number prefix (``00``) or path; all when empty."""
    every = notebooks(book_root)
    if not names:
        return every
    chosen = []
    for name in names:
        stem = Path(name).stem
        hits = [p for p in every if p.stem == stem or p.stem.split("_", 1)[0] == stem]
        if len(hits) != 1:
            listing = ", ".join(p.stem for p in every)
            what = "matches several" if hits else "is not a chapter in _toc.yml"
            raise SegeduError(f"notebook {name!r} {what}; the chapters are: {listing}")
        chosen.append(hits[0])
    return chosen


def _kernel_env() -> None:
    # The "python3" kernel must be this environment's interpreter, whether or not the venv is active.
    bindir = str(Path(sys.executable).parent)
    if not os.environ.get("PATH", "").startswith(bindir + os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars inside notebooks


def _failure(nb_path: Path, source_cells: list, exc: Exception) -> SegeduError:
    """Name the failing cell as the reader of the ``.py`` sees it: its code-cell number and first line."""
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    where = "a cell"
    index = getattr(exc, "cell_index", None)
    if index is not None:
        params = next(i for i, c in enumerate(source_cells) if "parameters" in c.metadata.get("tags", []))
        index = index - 1 if index > params else index  # papermill inserted one cell after the parameters
        if 0 <= index < len(source_cells):
            number = sum(c.cell_type == "code" for c in source_cells[: index + 1])
            first = source_cells[index].source.strip().splitlines()[0][:60]
            where = f"code cell {number} ({first!r})"
    return SegeduError(f"{nb_path.name}: {where} failed with {ename}: {evalue}")


def execute(py_path: Path, out_path: Path | None = None, *, profile: str = "smoke",
            data_dir: str | None = None, seed: int = 0, device: str = "auto",
            timeout: int | None = None) -> Path:
    """Execute one chapter from its ``.py``; write the executed notebook atomically to ``out_path``.

    ``out_path`` defaults to the paired ``.ipynb`` beside the ``.py``.
    """
    import jupytext
    import papermill

    py_path = Path(py_path).resolve()
    out_path = Path(out_path) if out_path else py_path.with_suffix(".ipynb")
    nb = jupytext.read(py_path)
    if not any("parameters" in c.metadata.get("tags", []) for c in nb.cells):
        raise SegeduError(f"{py_path.name}: no cell tagged 'parameters'; papermill needs one "
                          "holding profile, data_dir, seed and device.")
    nb.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3 (segedu)", "language": "python"}
    _kernel_env()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".run-") as tmp:
        src = Path(tmp) / "input.ipynb"
        done = Path(tmp) / "output.ipynb"
        jupytext.write(nb, src)
        try:
            papermill.execute_notebook(
                str(src), str(done), kernel_name=KERNEL, cwd=str(py_path.parent),
                parameters={"profile": profile, "data_dir": data_dir, "seed": seed, "device": device},
                progress_bar=False, log_output=False, execution_timeout=timeout,
            )
        except papermill.PapermillExecutionError as exc:
            raise _failure(py_path, nb.cells, exc) from None
        # the executed notebook replaces the committed one whole, or not at all
        write_text_atomic(out_path, _hide_injected_parameters(done))
    return out_path


def _hide_injected_parameters(path: Path) -> str:
    """The notebook at ``path`` with papermill's injected-parameters cell tagged ``remove-cell``: the
    HTML book shows the chapter's own parameters cell (the defaults a reader edits) and the setup line
    that prints what ran, not both."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"  # as nbformat.write ends a file


#: run folders not named after one chapter (``compare.train_plan(session, folder, ...)``): the
#: architecture chapters' shared ``architectures``, the competition-craft chapters' shared ``craft``,
#: chapter 19's ``libraries`` and chapter 20's ``noise``;
#: a run is credited to the chapter whose execution wrote it
SHARED_RUN_FOLDERS = ("architectures", "craft", "libraries", "noise")


def chapter_results(runs_root: Path, profile: str, chapter: str, since: float | None = None) -> list[dict]:
    """The training runs a chapter wrote under ``runs_root/<profile>/<chapter>/``: per run its model,
    seed, best validation mIoU, epochs and training seconds, read from the run directory's
    ``config.json`` and ``metrics.jsonl``. ``since`` (a ``time.time()``) keeps only runs whose
    metrics were written after it, i.e. by the execution that just finished."""
    rows = []
    folders = [Path(runs_root) / profile / chapter]
    if since is not None:  # a shared folder's runs belong to the execution that wrote them
        folders += [Path(runs_root) / profile / folder for folder in SHARED_RUN_FOLDERS]
    for metrics_file in sorted(f for folder in folders for f in folder.glob("*/metrics.jsonl")):
        if since is not None and metrics_file.stat().st_mtime < since:
            continue
        records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
        scored = [r["val_miou"] for r in records if r.get("val_miou") is not None]
        config_file = metrics_file.with_name("config.json")
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        if config.get("debug"):  # a two-step check of the code paths, not a training run
            continue
        # an averaged model's evaluation (SWA) is one more record of the last epoch, not an epoch
        epochs = max((r["epoch"] for r in records if "epoch" in r), default=len(records))
        rows.append({"run": metrics_file.parent.name, "folder": metrics_file.parent.parent.name,
                     "model": config.get("model", metrics_file.parent.name),
                     "seed": config.get("seed"), "best_val_miou": round(max(scored), 4) if scored else None,
                     "epochs": epochs, "train_seconds": round(sum(r.get("seconds", 0) for r in records), 1)})
    return rows


#: the run log's dates: minutes, UTC (written with a " UTC" suffix)
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M"


def _utc_now() -> str:
    """Now, as the run log writes dates."""
    return _dt.datetime.now(_dt.timezone.utc).strftime(LOG_DATE_FORMAT) + " UTC"


def _write_log(log: dict, book_root: Path) -> dict:
    """``book/run_log.json`` and its rendering ``book/run_log.md``, each written atomically."""
    write_text_atomic(book_root / RUN_LOG_JSON, json.dumps(log, indent=2) + "\n")
    write_text_atomic(book_root / RUN_LOG_MD, render_run_log(log))
    return log


def parse_utc(text: str) -> float:
    """``"YYYY-MM-DD HH:MM"`` (UTC, as the run log writes dates) as a ``time.time()``."""
    try:
        moment = _dt.datetime.strptime(text.removesuffix(" UTC").strip(), LOG_DATE_FORMAT)
    except ValueError:
        raise SegeduError(f"{text!r} is not a UTC time of the form 'YYYY-MM-DD HH:MM' "
                          "(the run log's dates, e.g. '2026-12-06 22:08')") from None
    return moment.replace(tzinfo=_dt.timezone.utc).timestamp()


def record_run(profile: str, device_text: str, times: dict[str, float], book_root: Path,
               results: dict[str, list[dict]] | None = None, reused_since: str | None = None,
               timed: bool = False) -> dict:
    """Merge the measured wall times (and the chapters' training results, see
    :func:`chapter_results`) into ``book/run_log.json`` and render ``book/run_log.md``.

    With ``reused_since`` the chapters were re-executed reading back runs an earlier execution
    trained (:func:`run_book`): their times and runs stay those of the execution that trained
    them, the runs this one trained again replace theirs by name, and the re-execution is listed
    under ``reexecuted`` (its date, seconds and the runs it trained). With ``timed`` as well, the
    chapters are recorded as executed now (times and runs), and ``read_back`` notes the time since
    which they read back the runs of earlier chapters."""
    path = book_root / RUN_LOG_JSON
    log = json.loads(path.read_text()) if path.is_file() else {"profiles": {}}
    entry = log["profiles"].setdefault(profile, {"notebooks": {}})
    if reused_since is not None and not timed:
        return _record_reexecution(log, entry, profile, times, book_root, results or {}, reused_since)
    read_back = entry.setdefault("read_back", {})
    for chapter in times:  # timed now: not a re-execution, and reading back earlier runs only if said
        entry.get("reexecuted", {}).pop(chapter, None)
        read_back.pop(chapter, None)
        if reused_since is not None:
            read_back[chapter] = reused_since
    # each chapter keeps the machine it was timed on: a partial run (make book NB=...) on another
    # machine must not relabel the times of the chapters it did not run
    # and the execution (the date of its run): times of two executions are not one run's, even on
    # one machine, since a chapter's code, data or plan may have changed in between
    machines, dates = entry.setdefault("machines", {}), entry.setdefault("dates", {})
    for chapter in entry["notebooks"]:
        machines.setdefault(chapter, entry.get("machine"))
        dates.setdefault(chapter, entry.get("date"))
    now = _utc_now()
    machines.update({chapter: env.machine_description() for chapter in times})
    dates.update({chapter: now for chapter in times})
    entry.update({"machine": env.machine_description(), "device": device_text, "date": now,
                  "torch": env.package_version("torch")})
    entry["notebooks"].update({k: round(v, 1) for k, v in times.items()})
    order = [p.stem for p in notebooks(book_root)]
    entry["notebooks"] = {k: entry["notebooks"][k] for k in order if k in entry["notebooks"]}
    entry["machines"] = {k: machines[k] for k in entry["notebooks"]}
    entry["dates"] = {k: dates[k] for k in entry["notebooks"]}
    entry["total_seconds"] = round(sum(entry["notebooks"].values()), 1)
    stored = entry.setdefault("results", {})
    for chapter, rows in (results or {}).items():
        if rows:
            stored[chapter] = rows
        else:  # executed now and trained nothing: runs an earlier execution listed are not this one's
            stored.pop(chapter, None)
    entry["results"] = {k: stored[k] for k in order if k in stored}
    entry["read_back"] = {k: read_back[k] for k in order if k in read_back}
    if not entry["read_back"]:
        del entry["read_back"]
    return _write_log(log, book_root)


def _record_reexecution(log: dict, entry: dict, profile: str, times: dict[str, float], book_root: Path,
                        results: dict[str, list[dict]], reused_since: str) -> dict:
    """:func:`record_run` for a re-execution that read back the runs written since ``reused_since``."""
    now = _utc_now()
    again = entry.setdefault("reexecuted", {})
    stored = entry.setdefault("results", {})
    for chapter, seconds in times.items():
        fresh = results.get(chapter, [])
        again[chapter] = {"date": now, "seconds": round(seconds, 1), "machine": env.machine_description(),
                          "runs_since": reused_since, "runs_trained": len(fresh)}
        names = {row["run"] for row in fresh}
        if fresh:
            stored[chapter] = [row for row in stored.get(chapter, []) if row["run"] not in names] + fresh
    order = [p.stem for p in notebooks(book_root)]
    entry["reexecuted"] = {k: again[k] for k in order if k in again}
    entry["results"] = {k: stored[k] for k in order if k in stored}
    return _write_log(log, book_root)


def render_run_log(log: dict) -> str:
    lines = [
        "# Run log",
        "",
        "Wall time of each chapter in the last `make book` run of each profile, written by the",
        "book's runner (`segedu/book.py`). The outputs you read in the chapters come from the",
        "profile whose run is newest.",
        "",
    ]
    for name in ("gpu", "cpu", "smoke"):
        entry = log["profiles"].get(name)
        if not entry:
            continue
        machines = entry.get("machines") or {nb: entry["machine"] for nb in entry["notebooks"]}
        dates = entry.get("dates") or {nb: entry["date"] for nb in entry["notebooks"]}
        # one execution = one run on one machine; a chapter timed by another is labelled with both
        timed = {nb: f"{machines.get(nb)}, run of {dates.get(nb)}" for nb in entry["notebooks"]}
        lines += [f"## Profile `{name}`", "",
                  f"Last run {entry['date']} on {entry['machine']}; device {entry['device']}; torch {entry['torch']}.", ""]
        if len(set(timed.values())) > 1:
            lines += ["The chapters were last timed by different executions of the book (column *timed*:",
                      "the machine and the run), so their total is a sum over executions, not the time of",
                      "one run.", "",
                      "| chapter | seconds | timed |", "|---|---:|---|"]
            lines += [f"| {nb} | {sec:.1f} | {timed[nb]} |" for nb, sec in entry["notebooks"].items()]
            for execution in dict.fromkeys(timed.values()):
                part = sum(sec for nb, sec in entry["notebooks"].items() if timed[nb] == execution)
                lines.append(f"| total of {execution} | {part:.1f} | |")
            lines += [f"| **total** | **{entry['total_seconds']:.1f}** | |", ""]
        else:
            lines += ["| chapter | seconds |", "|---|---:|"]
            lines += [f"| {nb} | {sec:.1f} |" for nb, sec in entry["notebooks"].items()]
            lines += [f"| **total** | **{entry['total_seconds']:.1f}** |", ""]
        if entry.get("read_back"):
            lines += ["Timed while reading back the runs of earlier chapters, written by the book's execution",
                      "since the time given, instead of training them again (each chapter's own runs were",
                      "trained in the time above):", "",
                      "| chapter | runs of earlier chapters read back since |", "|---|---|"]
            lines += [f"| {nb} | {since} UTC |" for nb, since in entry["read_back"].items()]
            lines.append("")
        if entry.get("reexecuted"):
            lines += ["Re-executed without retraining: these chapters ran again later, reading back the",
                      "training runs of the same configuration written since the time given (their times",
                      "above and their runs below are those of the execution that trained them, except",
                      "the runs trained again).", "",
                      "| chapter | re-executed | seconds | runs read back since | runs trained again |",
                      "|---|---|---:|---|---:|"]
            lines += [f"| {nb} | {r['date']} on {r['machine']} | {r['seconds']:.1f} | {r['runs_since']} UTC "
                      f"| {r['runs_trained']} |" for nb, r in entry["reexecuted"].items()]
            lines.append("")
        if entry.get("results"):
            lines += [f"### Training runs, profile `{name}`", "",
                      "Best validation mIoU of each configuration during training (mean ± sd over its seeds:",
                      "the runs of one run folder whose label differs only in its `-seed<N>` suffix, whichever",
                      "chapter trained them), its epochs and its mean training seconds per run, from the",
                      "chapters' run directories. *Trained by* names the chapter whose execution trained",
                      "each seed; a later chapter reads a run back instead of training it again.", "",
                      "| run | model | seeds | best val mIoU | epochs | training s | trained by |",
                      "|---|---|---:|---:|---:|---:|---|"]
            rows = [{**r, "chapter": chapter} for chapter, chapter_rows in entry["results"].items() for r in chapter_rows]
            for (folder, run), group in _by_run(rows).items():
                values = [r["best_val_miou"] for r in group if r["best_val_miou"] is not None]
                if not values:
                    continue
                # sample std (ddof=1), as ablation.summarise and segedu.significance
                mean = statistics.fmean(values)
                score = f"{mean:.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{mean:.4f}"
                seconds = sum(r["train_seconds"] for r in group) / len(group)
                model = ", ".join(dict.fromkeys(str(r["model"]) for r in group))
                epochs = ", ".join(dict.fromkeys(str(r["epochs"]) for r in group))
                label = f"{folder}/{run}" if folder else run
                lines.append(f"| {label} | {model} | {len(group)} | {score} | {epochs} | {seconds:.0f} "
                             f"| {_trained_by(group)} |")
            lines.append("")
    return "\n".join(lines)


def _by_run(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """The rows grouped by (run folder, run label without its ``-seed<N>`` suffix): ``cutmix-seed2``
    -> ``("craft", "cutmix")``, so each configuration is one group whichever chapters trained its
    seeds, and chapter 20's ``noise/label_smoothing`` is not the craft chapters' one. A label without
    the suffix is its own group; a row without a folder (written before folders were recorded) has
    ``""``."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        label = str(row.get("run", row["model"]))
        head, sep, tail = label.rpartition("-seed")
        groups.setdefault((row.get("folder", ""), head if sep and head and tail.isdigit() else label), []).append(row)
    return groups


def _trained_by(group: list[dict]) -> str:
    """``12_experiment_discipline (seed 0), 14_optimisation (seeds 1, 2)``; a chapter's name alone
    where the group's rows carry no seed."""
    seeds: dict[str, list] = {}
    for row in group:
        seeds.setdefault(row.get("chapter", "?"), []).append(row.get("seed"))
    parts = []
    for chapter, chapter_seeds in seeds.items():
        known = sorted(s for s in chapter_seeds if s is not None)
        if not known:
            parts.append(chapter)
        else:
            parts.append(f"{chapter} (seed{'s' if len(known) > 1 else ''} {', '.join(map(str, known))})")
    return ", ".join(parts)


def sync_markdown(py_path: Path) -> int:
    """Copy the prose of a chapter's ``.py`` into its executed ``.ipynb``; returns the cells changed.

    For a summary written after a long run: the numbers it quotes come from that run, and re-running
    a ten-minute chapter to change only its prose would re-measure every timing it quotes. Only the
    text of markdown cells changes; code cells, outputs and the run's metadata stay as the runner
    wrote them. Refused (SegeduError, nothing written) when any code cell differs or the cells do not
    line up: then the chapter must be executed again.
    """
    import jupytext
    import nbformat

    py_path = Path(py_path)
    ipynb = py_path.with_suffix(".ipynb")
    if not ipynb.is_file():
        raise SegeduError(f"{ipynb} does not exist; execute the chapter first (segedu book run {py_path.stem}).")
    source = [c for c in jupytext.read(py_path).cells]
    executed = nbformat.read(ipynb, as_version=4)
    cells = [c for c in executed.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    if len(cells) != len(source):
        raise SegeduError(f"{py_path.name} has {len(source)} cells but {ipynb.name} has {len(cells)}; "
                          f"execute the chapter again (segedu book run {py_path.stem}).")
    changed = 0
    for index, (new, old) in enumerate(zip(source, cells)):
        if new.cell_type != old.cell_type or (new.cell_type == "code" and new.source.strip() != old.source.strip()):
            raise SegeduError(f"{py_path.name}: cell {index} ({new.cell_type}) differs from the executed one in "
                              f"{ipynb.name}; only prose can be synced; execute the chapter again.")
        if new.cell_type == "markdown" and new.source != old.source:
            old.source = new.source
            changed += 1
    if changed:
        text = nbformat.writes(executed)  # what nbformat.write puts in a file: this text and a final newline
        write_text_atomic(ipynb, text if text.endswith("\n") else text + "\n")
    return changed


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def _stop_on_sigterm():
    """Make SIGTERM (``kill``, a job scheduler's stop) stop the runner as Ctrl-C does, so that the
    chapters finished so far are still recorded in the run log; without this, SIGTERM ends the
    process at once and an hour of timed chapters goes unrecorded. Returns the handler it replaced
    (None where one cannot be set: outside the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupted)


def run_book(profile: str = "auto", names: list[str] | None = None, data_dir: str | None = None,
             seed: int = 0, device: str = "auto", echo=print, reuse_since: str | None = None,
             timed: bool = False) -> dict[str, float]:
    """Execute the chosen chapters (all by default) in ``_toc.yml`` order; return their wall times.

    Chapters read back only the training runs of this execution. ``reuse_since`` (``"YYYY-MM-DD
    HH:MM"``, UTC) widens that to every run of the same configuration written since then, for
    re-executing chapters whose training code did not change (a plot, a table, an inference
    option): the run log then keeps the times and runs of the execution that trained them and
    lists this one as a re-execution (:func:`record_run`). With ``timed`` the chapters are timed by
    this execution instead: chapters new or rewritten since the book's execution, which train
    their own runs now and read back only the runs of the chapters before them."""
    if timed and reuse_since is None:
        raise SegeduError("--timed records chapters that read back earlier chapters' runs; it needs "
                          "--reuse-runs-since.")
    book_root = root()
    name = profiles.resolve_name(profile)
    dev = env.resolve_device(device)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise SegeduError(f"data_dir {data_dir!r} does not exist; point it at a COCO dataset folder "
                          "or leave it out to use the generated default dataset.")
    chosen = select(names, book_root)
    echo(f"segedu book: profile {name}, device {dev}, {len(chosen)} chapter(s)")
    if data_dir is None:
        from .data import synth

        echo(f"  default dataset: {synth.ensure_default_dataset(profiles.PROFILES[name])}")
    times: dict[str, float] = {}
    results: dict[str, list[dict]] = {}
    runs_root = profiles.data_root().parent / "runs"
    from .experiments.reuse import REUSE_SINCE_ENV

    since = time.time() if reuse_since is None else parse_utc(reuse_since)
    if reuse_since is not None:
        echo(f"  reading back the runs of the same configuration written since {reuse_since} UTC")
    os.environ[REUSE_SINCE_ENV] = str(since)  # by default chapters share only this execution's runs
    previous = _stop_on_sigterm()
    try:
        for py in chosen:
            t0, started = time.perf_counter(), time.time()
            execute(py, profile=name, data_dir=data_dir, seed=seed, device=device)
            times[py.stem] = time.perf_counter() - t0
            results[py.stem] = chapter_results(runs_root, name, py.stem, since=started)
            echo(f"  {py.stem:<40s} {times[py.stem]:7.1f} s")
    except KeyboardInterrupt:
        echo(f"segedu book: stopped; the {len(times)} chapter(s) finished before are recorded in {RUN_LOG_MD}")
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if times:
            record_run(name, f"{dev} - {env.device_name(dev)}", times, book_root, results,
                       reused_since=reuse_since, timed=timed)
    echo(f"segedu book: done in {sum(times.values()):.1f} s; times in {RUN_LOG_MD}")
    return times


def build_html(strict: bool = True, output: Path | None = None, quiet: bool = False) -> Path:
    """Build the HTML book from the committed outputs (jupyter-book 1.x, no execution).

    ``strict`` turns Sphinx warnings (broken links, missing files) into errors. The site goes to
    ``output/_build/html`` (default: the checkout's ``_build/html``).
    """
    book_root = root()
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe), "build", str(book_root), "--builder", "html"]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    if output is not None:
        cmd += ["--path-output", str(output)]
    proc = subprocess.run(cmd, cwd=book_root, capture_output=quiet, text=True)
    if proc.returncode != 0:
        detail = f"\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}" if quiet else " see the messages above."
        raise SegeduError(f"jupyter-book build failed (exit {proc.returncode});{detail}")
    index = Path(output or book_root) / "_build" / "html" / "index.html"
    if not index.is_file():
        raise SegeduError(f"jupyter-book reported success but {index} is missing.")
    return index
