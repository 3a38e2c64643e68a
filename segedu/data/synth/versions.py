"""The generator's versions, and what each draws differently, so that an older dataset can be drawn again.

Within a version the same seed draws the same bytes (``tests/data/test_synth_golden.py`` pins
every version by checksum). A change that would draw different data adds a version here rather
than editing an old one in place: the course encoders' pretraining corpus was drawn by version
"2" (:data:`segedu.engine.pretrain.CORPUS_VERSION`), and regenerating the shipped weights needs
that corpus byte for byte.
"""
from __future__ import annotations

from ...errors import SegeduError

#: The version the book's datasets are drawn with; a default dataset drawn by another is
#: regenerated (:func:`segedu.data.synth.ensure_default_dataset`). The book's committed outputs
#: were made with it: it changes together with a full execution of the book.
GENERATOR_VERSION = "3"

#: Per version, Battery's two knobs: ``share``, how many times the competition's share of Battery
#: objects the plan deals (:func:`segedu.data.synth.scene.plan_classes`), and ``length``, the
#: range of its length as a fraction of the image side (log-uniform).
#:
#: Version "3" draws three times the batteries (189 per 26,240 objects, about as many as Clothing's
#: 177) at about twice the length. Under version "2" (the competition's 63 batteries at 4-10% of
#: the side) the book's validation split held two batteries about 11 px across at the training
#: size, and no model or remedy of the book ever predicted one (``benchmarks/RESULTS.md``,
#: "Battery"). Battery and Clothing stay the two rarest classes, and Battery the smallest.
BATTERY = {
    "2": {"share": 1, "length": (0.04, 0.1)},
    "3": {"share": 3, "length": (0.12, 0.25)},
}

#: Every version the generator can still draw.
VERSIONS = tuple(BATTERY)


def check(version: str) -> str:
    """``version`` if the generator can draw it, else a clear error listing the ones it can."""
    if version not in BATTERY:
        raise SegeduError(f"segedu.data.synth has no generator version {version!r}; it draws "
                          f"{', '.join(map(repr, VERSIONS))} (current: {GENERATOR_VERSION!r}).")
    return version
