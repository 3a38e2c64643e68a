"""Can a model learn the default dataset at the cpu budget? Train one reference model and print
its per-class IoU.

The book's chapters only teach when their models have learned the task: Background everywhere
already scores about 0.06 mIoU, and a comparison of two models that both sit near that floor says
nothing. This script measures what one training run learns in a fixed number of optimiser steps
(or minutes) on the profile's generated dataset, so that the dataset, the resolution and the
budget can be chosen from a measurement:

    python benchmarks/synth_learnability.py                        # the cpu profile's defaults
    python benchmarks/synth_learnability.py --image-size 256 --steps 600
    python benchmarks/synth_learnability.py --minutes 20 --model unet --width 0.25
    python benchmarks/synth_learnability.py --steps 240 --option pretrained_backbone='"course"' --freeze-encoder

It prints, for the validation and the labelled test split, the IoU of every class, the number of
the 10 object classes at IoU >= 0.10 (the book's bar for "learned"), mIoU, the all-background floor
of the same split, and the seconds it took on this machine. Nothing is asserted: this is a
measurement, read by a person.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from segedu import env, models, profiles
from segedu.data import dataset, synth
from segedu.data.classes import CLASSES
from segedu.engine import TrainConfig, evaluate, train
from segedu.inference.evaluate import background_floor

LEARNED = 0.10  # IoU at which an object class counts as learned


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--data-dir", help="default: the profile's generated dataset (made if missing)")
    parser.add_argument("--model", default="deeplabv3plus_resnet50")
    parser.add_argument("--width", type=float, help="model width (default: the profile's)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=JSON", help="a model option")
    parser.add_argument("--image-size", type=int, help="training short side (default: the profile's)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--steps", type=int, default=400, help="optimiser steps")
    parser.add_argument("--minutes", type=float, help="instead of --steps: time one epoch, then fit this budget")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--augment", default="flip", help="comma-separated segedu.data.transforms names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--freeze-encoder", action="store_true",
                        help="train the decoder only: every parameter of model.encoder keeps its loaded value and "
                             "its batch norm its statistics (no gradient flows into it, so a step costs less); "
                             "meant for a fully pretrained encoder, as the ResNet-50 DeepLabs have (DeepLab v1's "
                             "fresh fc6/fc7 sit outside its encoder and train with the head)")
    parser.add_argument("--out", help="run directory (default: a temporary one)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)

    prof = profiles.get(args.profile)
    if args.freeze_encoder:
        models.create = _frozen(models.create)
    data_dir = Path(args.data_dir) if args.data_dir else synth.ensure_default_dataset(prof)
    options = {"width": args.width if args.width is not None else prof.width}
    for item in args.option:
        key, _, value = item.partition("=")
        options[key] = json.loads(value)
    train_images = len(dataset.CocoSegmentation(data_dir, "train"))
    batch = args.batch_size or prof.batch_size
    steps_per_epoch = train_images // batch
    steps = args.steps
    if args.minutes:
        probe = _run(args, prof, data_dir, options, batch, max_steps=min(20, steps_per_epoch), epochs=1, out=None)
        per_step = probe["seconds"] / probe["steps"]
        steps = max(1, int(args.minutes * 60 / per_step))
        print(f"{per_step:.2f} s per step: {steps} steps fit {args.minutes} min")
    epochs = -(-steps // steps_per_epoch)
    result = _run(args, prof, data_dir, options, batch, max_steps=steps, epochs=epochs, out=args.out, report=True)
    for split in ("val", "test"):
        part = result[split]
        print(f"\n{split}: mIoU {part['miou']:.4f} (all-background floor {part['floor']:.4f}); "
              f"object classes at IoU >= {LEARNED}: {part['learned']}/10")
        for name, value in zip(CLASSES, part["iou"]):
            print(f"  {name:<14}{'-' if value is None else f'{value:.3f}':>7}")
    print(f"\n{result['steps']} steps of {batch} images at {result['image_size']} px, "
          f"{result['seconds']:.0f} s on {result['machine']} (torch {torch.__version__})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


def _frozen(create):
    """``models.create`` that returns the model with its encoder frozen: parameters without gradient
    (the optimiser skips them) and batch norm kept in eval mode whatever ``model.train()`` asks."""
    def frozen_create(*args, **kwargs):
        model = create(*args, **kwargs)
        encoder = model.encoder
        if encoder is None:
            raise SystemExit(f"--freeze-encoder: {type(model).__name__} has no single encoder module")
        encoder.requires_grad_(False)
        base_train = type(encoder).train
        encoder.train = lambda mode=True: base_train(encoder, False)
        return model.train()
    return frozen_create


def _run(args, prof, data_dir, options, batch, *, max_steps, epochs, out, report=False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(out) if out else Path(tmp) / "run"
        config = TrainConfig(model=args.model, model_options=options, data_dir=str(data_dir), profile=prof.name,
                             image_size=args.image_size, batch_size=batch, epochs=epochs, max_steps=max_steps,
                             lr=args.lr, augment=[a for a in args.augment.split(",") if a], seed=args.seed,
                             device="cpu", out=str(run_dir), num_workers=0, val_split="val" if report else None)
        started = time.perf_counter()
        trainer = train(config)
        seconds = time.perf_counter() - started
        result = {"model": args.model, "options": options, "frozen_encoder": args.freeze_encoder,
                  "batch_size": batch, "image_size": trainer.config.image_size,
                  "steps": trainer.step, "seconds": seconds, "machine": env.machine_description()}
        if report:
            for split, ann in (("val", "val"), ("test", str(data_dir / "test_labels.json"))):
                scores = evaluate(run_dir, split=ann, data_dir=data_dir, device="cpu")
                iou = [None if np.isnan(v) else float(v) for v in np.asarray(scores["iou"], dtype=float)]
                result[split] = {"miou": float(scores["miou"]), "iou": iou,
                                 "learned": sum(1 for v in iou[1:] if v is not None and v >= LEARNED),
                                 "floor": float(background_floor(data_dir, ann)["miou"])}
        return result


if __name__ == "__main__":
    main()
