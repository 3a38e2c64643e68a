"""Run profiles: every size, step count and resolution the book uses, in one table.

A notebook asks for a profile by name (its papermill parameter ``profile``) and reads its
numbers from here; nothing in a chapter hard-codes an image size or an epoch count.

* ``smoke``: every code path on tiny data, so CI can execute the whole book in minutes.
* ``cpu``:   models that learn the task on a 2-core laptop, in bf16 where the CPU has bf16
  instructions; 90 minutes is the book's target there, not met (154 minutes on an AMD EPYC with 2
  cores in bf16; the chapters' measured times are in ``book/run_log.md``).
* ``gpu``:   the competition's full 512x512 resolution on one datacentre GPU.
* ``auto``:  ``gpu`` when CUDA is available, ``cpu`` otherwise.

The environment variable ``SEGEDU_PROFILE`` overrides whatever a notebook asked for. The test
suite sets it to ``smoke`` so that ``pytest --nbval-lax`` can re-execute notebooks whose stored
outputs came from a longer run; only profile-independent outputs are compared there.
``SEGEDU_MAX_STEPS`` caps every run's optimiser steps, to time a profile in minutes
(``benchmarks/gpu_book_check.sh``).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from .errors import SegeduError

#: Environment variable that overrides the profile a notebook or command asked for.
PROFILE_ENV = "SEGEDU_PROFILE"
#: Environment variable that moves the folder holding generated datasets.
DATA_ROOT_ENV = "SEGEDU_DATA_ROOT"
#: Environment variable that caps every training run at this many optimiser steps (a timing check
#: of a profile, benchmarks/gpu_book_check.sh): the smaller of it and the run's own cap wins.
MAX_STEPS_ENV = "SEGEDU_MAX_STEPS"


@dataclasses.dataclass(frozen=True)
class Profile:
    """The numbers one profile fixes for every chapter."""

    name: str
    description: str
    #: images in the generated default dataset, and their side in pixels
    synth_images: int
    synth_size: int
    #: side of the square crops/resizes that models train on (and that validation resizes to)
    image_size: int
    batch_size: int
    #: epochs of every training run of the book: one budget, so that any two runs compare
    epochs: int
    #: cap on optimiser steps of one training run (None: run all epochs)
    max_steps: int | None
    num_workers: int
    #: width multiplier for models (1.0 = the paper's channel counts), the same in every chapter
    width: float
    #: the pretrained weights an encoder-based model starts from, as its paper starts from ImageNet's:
    #: "course" (the course's encoders, shipped with segedu, :mod:`segedu.models.course`), "imagenet"
    #: (torchvision's, downloaded) or None (from scratch). U-Net and FC-DenseNet always train from
    #: scratch, as in their papers (:func:`segedu.experiments.encoders.encoder_weights`).
    encoder_weights: str | None
    #: seeds of multi-seed experiments (mean +- std is taken over these)
    seeds: tuple[int, ...]
    #: the engine's fast path (with ``amp="auto"``, bf16 autocast on a GPU): channels-last
    #: memory layout, and ``torch.compile`` (off in every profile: the book trains dozens of short
    #: runs, and compiling each model costs more than it saves; turn it on for long runs)
    channels_last: bool
    compile: bool
    #: mixed precision of every run (a TrainConfig ``amp``): ``auto`` is bf16 autocast on a GPU and on
    #: a CPU with bf16 instructions (:func:`segedu.env.resolve_amp`), ``off`` is fp32
    amp: str
    #: wall-time budget for executing the whole book, minutes
    book_budget_min: float

    @property
    def dataset_name(self) -> str:
        return f"synth-{self.synth_images}x{self.synth_size}"


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="every code path on tiny data (CI)",
        synth_images=40, synth_size=128, image_size=64, batch_size=4, epochs=1,
        max_steps=4, num_workers=0, width=0.125, encoder_weights=None, seeds=(0, 1), channels_last=False,
        compile=False, amp="off", book_budget_min=10,
    ),
    # 192 px: the resolution the course's encoders were pretrained at; at 128 px the same fine-tune
    # learns 4 object classes instead of 7 (benchmarks/RESULTS.md). 5 epochs of 48 steps. bf16
    # autocast and channels-last where the CPU has bf16 instructions (amp="auto"): 1.9x per step on
    # the book's 2-core Xeon, the same mIoU over three seeds (benchmarks/RESULTS.md); fp32 elsewhere.
    "cpu": Profile(
        name="cpu",
        description="models that learn, on 2 CPU cores",
        synth_images=480, synth_size=256, image_size=192, batch_size=8, epochs=5,
        max_steps=None, num_workers=2, width=0.25, encoder_weights="course", seeds=(0, 1, 2), channels_last=True,
        compile=False, amp="auto", book_budget_min=90,
    ),
    "gpu": Profile(
        name="gpu",
        description="full 512x512 resolution on one datacentre GPU",
        synth_images=1600, synth_size=512, image_size=512, batch_size=16, epochs=8,
        max_steps=None, num_workers=8, width=1.0, encoder_weights="imagenet", seeds=(0, 1, 2), channels_last=True,
        compile=False, amp="auto", book_budget_min=20,
    ),
}

CHOICES = (*PROFILES, "auto")


def resolve_name(name: str | None) -> str:
    """Turn a requested profile name (or ``auto``/None) into one of ``smoke``, ``cpu``, ``gpu``.

    ``SEGEDU_PROFILE`` in the environment takes precedence over ``name``.
    """
    forced = os.environ.get(PROFILE_ENV)
    if forced:
        if forced not in CHOICES:
            raise SegeduError(
                f"{PROFILE_ENV}={forced!r} is not a profile; use one of {', '.join(CHOICES)} "
                f"or unset {PROFILE_ENV}."
            )
        name = forced
    name = name or "auto"
    if name == "auto":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise SegeduError(
            f"unknown profile {name!r}; choose one of {', '.join(CHOICES)} "
            "(smoke: seconds, for CI; cpu: a 2-core laptop; gpu: one CUDA GPU; auto: gpu if CUDA is there)."
        )
    return name


def get(name: str | None = "auto") -> Profile:
    """The :class:`Profile` for ``name`` after resolving ``auto`` and the environment override, with
    its ``max_steps`` lowered to ``SEGEDU_MAX_STEPS`` where that is set (:func:`cap_steps`): what a
    chapter sizes by the profile's cap (the SWA phase of :func:`segedu.experiments.ablation.plan`) then
    fits inside the capped runs, as it does in the smoke profile."""
    prof = PROFILES[resolve_name(name)]
    capped = cap_steps(prof.max_steps)
    return prof if capped == prof.max_steps else dataclasses.replace(prof, max_steps=capped)


def step_cap() -> int | None:
    """The optimiser-step cap ``SEGEDU_MAX_STEPS`` (an int >= 1), or None when it is unset or empty."""
    text = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise SegeduError(f"{MAX_STEPS_ENV}={text!r} is not a whole number >= 1; set it to an optimiser step "
                          f"count such as 10, or unset {MAX_STEPS_ENV}.")
    return value


def cap_steps(max_steps: int | None) -> int | None:
    """``max_steps`` (None or 0: no cap) lowered to :func:`step_cap` where that is set and smaller."""
    cap = step_cap()
    if cap is None:
        return max_steps
    return min(max_steps, cap) if max_steps else cap


def project_root() -> Path | None:
    """The checkout this package lives in (holding ``_toc.yml``), or None for an installed wheel."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "_toc.yml").is_file() else None


def data_root() -> Path:
    """Folder holding the generated datasets: ``$SEGEDU_DATA_ROOT``, else ``<checkout>/data``."""
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    root = project_root()
    return root / "data" if root else Path.home() / ".cache" / "segedu" / "data"


def default_data_dir(profile: Profile | str | None = "auto") -> Path:
    """Where the profile's generated default dataset lives."""
    prof = profile if isinstance(profile, Profile) else get(profile)
    return data_root() / prof.dataset_name
