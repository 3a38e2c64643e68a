"""``segedu pretrain``: make the course's pretrained encoders (:mod:`segedu.models.course`).

The recipe, for one encoder at one width:

1. **A corpus no split of the book has seen.** :func:`segedu.data.synth.generate` with
   :data:`CORPUS_SEED`: every image is drawn from ``default_rng([seed, index])``, so a seed the
   book never uses gives images disjoint from its train, val and test splits and from every fold
   made of them. The corpus is drawn by generator version :data:`CORPUS_VERSION`, the one the
   shipped weights were pretrained on, whatever version the book's datasets are drawn with now.
2. **The pretext.** :class:`~segedu.models.pretext.PretextNet` (the encoder and a light
   FCN-8s-style head) is trained by the ordinary :class:`~segedu.engine.trainer.Trainer`, so a run
   that takes CPU hours can stop and continue with ``--resume`` (exactly: the same weights as an
   uninterrupted run), across sessions, or run in minutes on a GPU.
3. **The export.** The encoder's final weights, in torchvision's keys and fp16, go to
   ``segedu/weights/<encoder>-w<width>.pt``, and its model card (pretext, corpus, steps, seconds,
   machine, torch version, the pretext's validation mIoU, sha256) to ``cards.json``.

Same command, same machine: the same bytes (the data, the initialisation and the data order are
all seeded; tested at smoke scale).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from .. import env, fileio, profiles
from ..data import synth
from ..errors import SegeduError
from ..models import course, pretext
from . import checkpoint
from .runlog import read_metrics
from .config import TrainConfig
from .trainer import train

#: the corpus's generator seed: the book's datasets use seed 0 (and small noise seeds), never this
CORPUS_SEED = 9001
#: the generator version the corpus is drawn by, pinned: the shipped weights were pretrained on it,
#: and this command must regenerate them byte for byte after the book's data moved on (like
#: ImageNet, the corpus need not match the target data's version)
CORPUS_VERSION = "2"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What one pretraining run does (every field is on the model card)."""

    encoder: str
    width: float = 0.25
    images: int = 4000        # corpus images (train + val; the generator's test share is unused)
    size: int = 256           # their side in pixels
    image_size: int = 192     # training crops
    batch_size: int = 16
    steps: int = 2000
    lr: float = 2e-3
    seed: int = 0

    @property
    def corpus_name(self) -> str:
        return f"pretext-{self.images}x{self.size}-seed{CORPUS_SEED}-v{CORPUS_VERSION}"


#: the smoke-scale recipe the tests run (seconds on a CPU)
SMOKE = dict(images=40, size=64, image_size=32, batch_size=4, steps=3)

#: What the shipped weights were trained with, where it differs from :class:`Recipe`'s defaults: the
#: corpus of 8,000 images and each encoder's step count (the pretext's validation mIoU still rose at
#: the end of shorter runs; ``benchmarks/RESULTS.md`` has the curves). ``segedu pretrain --encoder E``
#: with no other option runs exactly this, so it regenerates the shipped file byte for byte.
SHIPPED: dict[str, dict] = {
    "resnet50": dict(images=8000, steps=12000),
    "vgg16_bn": dict(images=8000, steps=6000),
    "hrnetv2_w18": dict(images=8000, steps=6000),
}


def recipe_for(encoder: str, **changes) -> Recipe:
    """The recipe ``segedu pretrain --encoder encoder`` runs: :data:`SHIPPED`'s for an encoder that
    ships, the :class:`Recipe` defaults otherwise, with ``changes`` (recipe fields) on top."""
    return dataclasses.replace(Recipe(encoder, **SHIPPED.get(encoder, {})), **changes)


def corpus(recipe: Recipe) -> Path:
    """The pretext corpus of ``recipe``, generated on first use under the data root."""
    folder = profiles.data_root() / recipe.corpus_name
    if not (folder / "train.json").is_file():
        synth.generate(folder, n_images=recipe.images, size=recipe.size, seed=CORPUS_SEED, version=CORPUS_VERSION)
    return folder


def config(recipe: Recipe, out: Path, device: str = "auto") -> TrainConfig:
    """The pretext's TrainConfig: the ordinary trainer, flips and colour jitter, cosine schedule."""
    data = corpus(recipe)
    train_images = len(json.loads((data / "train.json").read_text())["images"])
    per_epoch = max(train_images // recipe.batch_size, 1)
    return TrainConfig(model=pretext.MODEL, model_options={"encoder": recipe.encoder, "width": recipe.width},
                       data_dir=str(data), profile="cpu", image_size=recipe.image_size,
                       batch_size=recipe.batch_size, epochs=-(-recipe.steps // per_epoch), max_steps=recipe.steps,
                       lr=recipe.lr, augment=["flip", "colour"], seed=recipe.seed, device=device,
                       out=str(out), num_workers=0, checkpoint_every=50,  # a killed run loses <= 50 steps
                       # fp32 in NCHW whatever the cpu profile's precision: the shipped weights were
                       # trained so, and this command must reproduce them
                       amp="off", channels_last=False)


def pretrain(recipe: Recipe, out: Path, *, resume: bool = False, device: str = "auto",
             weights_dir: Path | None = None) -> dict:
    """Train ``recipe``'s pretext in ``out`` (continuing it with ``resume``) and export its encoder
    into ``weights_dir`` (the package's weights folder by default); returns the model card."""
    if recipe.encoder not in course.ENCODERS:
        raise SegeduError(f"segedu pretrain: no encoder {recipe.encoder!r}; choose one of {', '.join(course.ENCODERS)}.")
    trainer = train(config(recipe, out, device), resume=resume)
    return export(recipe, trainer, weights_dir or course.WEIGHTS_DIR)


def export(recipe: Recipe, trainer, weights_dir: Path) -> dict:
    """Write the trained encoder (fp16, torchvision's keys) and its card; returns the card."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    encoder = trainer.model.encoder_state_dict()
    half = {k: v.half() if v.is_floating_point() else v for k, v in encoder.items()}
    name = course.file_name(recipe.encoder, recipe.width)
    path = weights_dir / name
    checkpoint.save(path, half)
    # the run directory's log, not trainer.history: after a --resume that holds only the new epochs
    logged = read_metrics(trainer.run_dir)
    history = [r for r in logged if r.get("val_miou") is not None]
    card = {
        "encoder": recipe.encoder, "width": recipe.width, "file": name,
        "pretext": f"segmentation of the synthetic corpus (11 classes) through {trainer.model.head}",
        "corpus": {"generator_version": CORPUS_VERSION, "seed": CORPUS_SEED, "images": recipe.images,
                   "size": recipe.size},
        "recipe": dataclasses.asdict(recipe),
        "steps": trainer.step,
        "seconds": round(sum(r.get("seconds", 0.0) for r in logged if not r.get("swa")), 1),
        "machine": env.machine_description(),
        "device": str(trainer.device),
        "torch": torch.__version__,
        "pretext_val_miou": round(history[-1]["val_miou"], 4) if history else None,
        "parameters": sum(v.numel() for v in encoder.values() if v.is_floating_point()),
        "sha256": course.sha256(path),
    }
    cards = course.cards(weights_dir)
    cards[name] = card
    fileio.write_json_atomic(weights_dir / course.CARDS, cards, indent=2)
    return card
