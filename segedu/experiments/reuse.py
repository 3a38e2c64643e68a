"""Which earlier runs and score caches a chapter may read back: the book's reuse policy.

The engine says whether a run directory holds a finished run of a configuration
(:func:`segedu.engine.runs.finished`). The book adds *when*: a chapter executed by the book's
runner reads back only what the runner's execution wrote -- its start time is in
:data:`REUSE_SINCE_ENV` -- so a chapter never mixes its numbers with runs or caches left by an
older checkout of the code. Outside the runner (a reader executing one notebook) anything
finished may be read back.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..fileio import modified_since

__all__ = ["REUSE_SINCE_ENV", "reuse_since", "written_since"]

#: set by the book's runner to the time its execution started (or to the ``--reuse-runs-since``
#: time it was given)
REUSE_SINCE_ENV = "SEGEDU_REUSE_SINCE"


def reuse_since() -> float | None:
    """The book runner's start time (:data:`REUSE_SINCE_ENV`), or None outside the runner."""
    since = os.environ.get(REUSE_SINCE_ENV)
    return float(since) if since else None


def written_since(path: str | Path, since: float | None = None) -> bool:
    """Whether ``path`` exists and was written at or after ``since`` (default :func:`reuse_since`;
    None: any time): the test for "this file belongs to the current book execution"."""
    return modified_since(path, reuse_since() if since is None else since)
