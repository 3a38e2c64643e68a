"""What a command-line user is told when a run fails for a reason outside segedu's control.

segedu's own checks raise :class:`~segedu.errors.SegeduError` with a message that already says
what to do. Some failures come from below -- the GPU runs out of memory, a DataLoader worker is
killed, the disk fills up, a download has no network -- and arrive as torch or OS exceptions
whose tracebacks bury the one fact a user needs. :func:`explain` turns those into one sentence
with the advice that usually fixes them; anything it does not recognise is a bug, and the CLI
keeps its traceback.
"""
from __future__ import annotations

import errno

from . import fileio
from .errors import SegeduError

#: the environment variable that, like ``segedu --debug``, keeps Python tracebacks for bug reports
DEBUG_ENV = "SEGEDU_DEBUG"


def _flag_value(args, name: str):
    value = getattr(args, name, None)
    return f" (now {value})" if value is not None else ""


def out_of_memory(args, error: BaseException) -> str:
    """Which sizes to lower, for the command that ran out of memory."""
    command = getattr(args, "command", None)
    if command == "train":
        advice = (f"lower --batch-size{_flag_value(args, 'batch_size')} or --image-size"
                  f"{_flag_value(args, 'image_size')}, or keep the batch and add --accumulate 2 "
                  "(gradient accumulation), or --amp bf16")
    elif command in ("evaluate", "predict", "pseudo-label", "cleanse"):
        advice = ("lower --sliding-window (smaller windows) or drop --tta-scales above 1; ensembles hold "
                  "every member in memory, so score fewer --ensemble runs at once")
    else:
        advice = "use smaller inputs or --device cpu"
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"out of memory ({first[:160]}): {advice}."


def is_out_of_memory(error: BaseException) -> bool:
    import torch  # imported here: the CLI's start-up does not need it

    return isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def is_worker_crash(error: BaseException) -> bool:
    text = str(error)
    return isinstance(error, RuntimeError) and "DataLoader worker" in text and (
        "killed by signal" in text or "exited unexpectedly" in text or "Bus error" in text)


def explain(args, error: BaseException) -> str | None:
    """One line for a failure a user can act on; None for anything else (a bug: keep the traceback)."""
    if isinstance(error, SegeduError):
        return str(error)
    if is_out_of_memory(error):
        return out_of_memory(args, error)
    if is_worker_crash(error):
        reason = str(error).strip().splitlines()[0]
        return (f"a data-loader worker process crashed ({reason}); this is usually too little shared "
                "memory (/dev/shm, e.g. in a container) or RAM for the workers: run again with "
                "--num-workers 0 (data loaded in the main process).")
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:  # a write that did not go through segedu.fileio
        return fileio.DISK_FULL.format(path=error.filename or "a file") + "."
    return None
