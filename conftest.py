"""Root pytest configuration.

`pytest --nbval-lax book/` re-executes the committed notebooks. Their stored outputs may come from
the long `cpu` or `gpu` profile; re-running them here uses the `smoke` profile instead (segedu reads
SEGEDU_PROFILE before the notebook's own parameter), and only outputs marked profile-independent
(cell tag `nbval-check-output`) are compared.
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("SEGEDU_PROFILE", "smoke")
os.environ.setdefault("TQDM_DISABLE", "1")
# Tests use tiny tensors: a second OpenMP thread only adds synchronisation (10-30x slower when the
# other core is busy) and makes float sums depend on the thread split.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# the notebook kernel must be this environment's python
_bin = str(Path(sys.executable).parent)
if not os.environ.get("PATH", "").startswith(_bin):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")

collect_ignore_glob = ["book/*.py", "book/.run-*", "_build/*", "data/*", ".venv/*"]
