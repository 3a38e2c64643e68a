"""Files written whole or not at all: every JSON, CSV, checkpoint and cache file segedu writes.

A file is written to a temporary file in the target's own folder, flushed to disk, then renamed
over the target (``os.replace``, atomic on one file system), so a killed run, a crash or a full
disk never leaves half a file where a whole one was expected, nor a stray temporary file.

The finished file gets the permissions an ordinary ``open()`` would have given it,
``0o666 & ~umask``: ``tempfile.mkstemp`` creates its file with mode 0600, which would otherwise
survive the rename and hide shared results from a group or a notebook server.

A full disk (``ENOSPC``, or a quota: ``EDQUOT``) becomes a :class:`~segedu.errors.SegeduError`
naming the file, as does a folder without write permission or on a read-only file system.
"""
from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import SegeduError

#: what a user is told when the disk fills up while ``path`` is written (also by :mod:`segedu.failures`)
DISK_FULL = "disk full while writing {path}; free space or choose another folder"
#: errno -> what a user is told (PATH is the file); others stay OSErrors (a bug or a rarer failure)
_EXPLAINED = {
    errno.ENOSPC: DISK_FULL,
    errno.EACCES: "no permission to write {path}; choose another folder or fix its permissions",
    errno.EPERM: "no permission to write {path}; choose another folder or fix its permissions",
    errno.EROFS: "{path} is on a read-only file system; choose another folder",
}
if hasattr(errno, "EDQUOT"):
    _EXPLAINED[errno.EDQUOT] = "disk quota exceeded while writing {path}; free space or choose another folder"


def umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc/self/status``),
    else by setting and restoring it (the only portable way)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0)
    os.umask(old)
    return old


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None], fsync: bool = True,
                 check: Callable[[Path], None] | None = None) -> Path:
    """Call ``write(f)`` on a temporary binary file beside ``path``, then rename it over ``path``.

    ``check(tmp_path)``, when given, reads the finished temporary file and raises if it is wrong:
    then nothing is renamed. ``fsync=False`` skips flushing to disk (for caches, which are rebuilt
    when damaged). Parent folders are created. On any failure the temporary file is removed and
    ``path`` is untouched.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        if check is not None:
            check(Path(tmp))
        try:
            os.chmod(tmp, 0o666 & ~umask())
        except OSError:
            pass  # a file system without modes (some network and FUSE mounts): keep what it gives
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        cause = _os_error(exc, path)
        if cause is not None:
            raise SegeduError(_EXPLAINED[cause.errno].format(path=path)) from exc
        raise
    return path


def _os_error(exc: BaseException, path: Path) -> OSError | None:
    """The explained OSError behind ``exc``: itself, or one it wraps (a writer such as ``torch.save``
    may re-raise a failed write as its own error). A permission error counts only when it is about
    ``path``'s folder (or a folder above it), not about a file a ``check`` read."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in _EXPLAINED:
            if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) or exc.filename is None:
                return exc
            where = Path(os.fsdecode(exc.filename)).absolute()
            if where.parent == path.absolute().parent or where in path.absolute().parents:
                return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def modified_since(path: str | os.PathLike, since: float | None) -> bool:
    """Whether ``path`` is a file last written at or after ``since`` (a ``time.time()``; None: any time)."""
    path = Path(path)
    return path.is_file() and (since is None or path.stat().st_mtime >= since)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`write_atomic`)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"write_bytes_atomic needs bytes, got {type(data).__name__}")
    return write_atomic(path, lambda f: f.write(data), fsync=fsync)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, encoded as ``encoding`` (UTF-8)."""
    return write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(path: str | os.PathLike, obj, indent: int | None = None) -> Path:
    """Write ``obj`` as UTF-8 JSON to ``path`` atomically: compact, or indented with a final newline."""
    if indent is None:
        text = json.dumps(obj, separators=(",", ":"))
    else:
        text = json.dumps(obj, indent=indent) + "\n"
    return write_text_atomic(path, text)


def jsonable(value):
    """``value`` as JSON-ready values: tensors and arrays as (nested) lists, NaN and infinities as None."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN IoU of a class absent from prediction and target
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value
