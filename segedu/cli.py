"""The ``segedu`` command: parse arguments, call the package, print. No logic of its own.

Problems a user can fix (a wrong profile, a missing folder, bad COCO, and the failures of
:mod:`segedu.failures`: out of memory, a crashed data-loader worker, a full disk) end with one
line ``segedu: error: ...`` and exit status 2 (1 for a dataset that failed validation).
``segedu --debug COMMAND`` or ``SEGEDU_DEBUG=1`` keeps the traceback instead, for bug reports.
"""
from __future__ import annotations

import argparse
import sys

from . import __version__, profiles
from .errors import SegeduError


def _info(args) -> int:
    from . import env

    rows = env.info(args.device)
    width = max(map(len, rows))
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}")
    return 0


def _book_run(args) -> int:
    from . import book

    book.run_book(args.profile, args.notebooks, args.data_dir, args.seed, args.device,
                  reuse_since=args.reuse_runs_since, timed=args.timed)
    return 0


def _book_html(args) -> int:
    from . import book

    index = book.build_html(strict=not args.no_strict)
    print(f"segedu book: HTML written to {index}")
    return 0


def _book_sync(args) -> int:
    from . import book

    for path in book.select(args.notebooks, book.root()):
        print(f"segedu book: {path.stem}: {book.sync_markdown(path)} markdown cell(s) updated")
    return 0


def _book_list(args) -> int:
    from . import book

    for path in book.notebooks():
        print(path.stem)
    return 0


def _noise_spec(args):
    from .data import noise

    kinds = tuple(k.strip() for k in args.noise_kinds.split(",") if k.strip())
    return noise.NoiseSpec(args.noise_rate, kinds, objects=args.noise_objects, boundary_px=args.noise_boundary_px,
                           jitter_px=args.noise_jitter_px, seed=args.noise_seed)


def _synth(args) -> int:
    from pathlib import Path

    from .data import noise, synth

    spec = _noise_spec(args) if args.noise_rate is not None else None
    summary = synth.generate(args.out, n_images=args.images, size=args.size, seed=args.seed, noise=spec,
                             version=args.generator_version or synth.GENERATOR_VERSION)
    print(summary)
    if spec is not None:
        print(noise.read_report(Path(summary.path) / "train_noisy.json"))
    return 0


def _pretrain(args) -> int:
    import dataclasses
    from pathlib import Path

    from .engine import pretrain

    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(pretrain.Recipe)
               if f.name != "encoder" and getattr(args, f.name, None) is not None}
    recipe = (dataclasses.replace(pretrain.Recipe(args.encoder, **pretrain.SMOKE), **changes) if args.smoke
              else pretrain.recipe_for(args.encoder, **changes))
    out = Path(args.out or f"runs/pretrain/{recipe.encoder}-w{recipe.width:g}")
    if out.exists() and not out.is_dir():
        raise SegeduError(f"--out {out} is a file; choose a folder for the pretraining run.")
    if _holds_files(out) and not args.resume:  # the same test as segedu train's
        raise SegeduError(f"--out {out} holds a run already; continue it with --resume, or choose another --out.")
    card = pretrain.pretrain(recipe, out, resume=args.resume, device=args.device,
                             weights_dir=Path(args.weights_dir) if args.weights_dir else None)
    print(f"segedu pretrain: {card['file']} ({card['parameters'] / 1e6:.2f}M parameters), {card['steps']} steps in "
          f"{card['seconds']:.0f} s on {card['machine']}; pretext val mIoU {card['pretext_val_miou']}; "
          f"sha256 {card['sha256'][:16]}...")
    return 0


def _course_encoders():
    from .models.course import ENCODERS

    return ENCODERS


def _add_noise(args) -> int:
    from pathlib import Path

    from .data import noise

    clean = Path(args.clean) if args.clean else Path(args.data) / "train.json"
    out = Path(args.out) if args.out else clean.with_name(clean.stem + "_noisy.json")
    if out.exists() and not args.overwrite:
        from .errors import SegeduError

        raise SegeduError(f"{out} exists; pass --overwrite to replace it or choose another --out.")
    print(noise.write_noisy(clean, out, _noise_spec(args)))
    return 0


def _noise_arguments(parser, required: bool) -> None:
    from .data import noise

    parser.add_argument("--noise-rate", type=float, default=None, required=required,
                        help="share of the training images an annotator corrupts (segedu.data.noise)")
    parser.add_argument("--noise-kinds", default=",".join(noise.KINDS),
                        help=f"comma-separated kinds, from {','.join(noise.KINDS)} (default: all)")
    parser.add_argument("--noise-objects", type=float, default=0.5,
                        help="share of a corrupted image's annotations that are corrupted (at least one)")
    parser.add_argument("--noise-boundary-px", type=int, default=None, help="erosion/dilation in pixels "
                        "(default: 1/64 of the image side)")
    parser.add_argument("--noise-jitter-px", type=float, default=None, help="vertex noise std in pixels "
                        "(default: 1/64 of the image side)")
    parser.add_argument("--noise-seed", type=int, default=0)


def _validate_coco(args) -> int:
    from .data import coco

    report = coco.validate(args.file, images_dir=args.images)
    print(report.render())
    return 0 if report.ok else 1


def _repair_coco(args) -> int:
    from .data import repair

    report = repair.repair(args.file, args.out, images_dir=args.images, check_images=not args.skip_images,
                           overwrite=args.overwrite)
    print(report.render())
    return 0 if report.written else 1


def _coco_from_masks(args) -> int:
    from .data import convert

    out = convert.coco_from_masks(args.images, args.masks, args.classes, args.out, ignore=args.ignore)
    print(f"segedu: wrote {out}")
    return 0


def _split(args) -> int:
    from .data import splits

    written = splits.write_splits(args.annotation, args.out, method=args.method, folds=args.folds,
                                  val_fraction=args.val_fraction, seed=args.seed)
    print(splits.render_report(written))
    return 0


def _flag(name: str) -> str:
    """The flag of a TrainConfig field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def _lenient(kind: type):
    """An argparse type: ``kind(text)``, or the text itself when it does not convert, so that TrainConfig
    refuses it in one line naming the flag and what it takes (argparse's own error is a usage dump)."""
    def convert(text: str):
        try:
            return kind(text)
        except ValueError:
            return text

    convert.__name__ = kind.__name__
    return convert


def _image_size(text: str):
    """``--image-size 256`` (the short side) or ``240,320`` (H,W); anything else goes on as text, for
    TrainConfig to refuse."""
    try:
        numbers = [int(part) for part in text.replace("x", ",").split(",")]
    except ValueError:
        return text
    return numbers[0] if len(numbers) == 1 else tuple(numbers)


def _config_field_help() -> dict[str, str]:
    """Each TrainConfig field's comment in its source, as that flag's help (one place to edit)."""
    import dataclasses
    import inspect
    import re

    from .engine.config import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    lines = inspect.getsource(TrainConfig).splitlines()
    found = (re.match(r"\s+(\w+):[^#]*#\s*(.+)$", line) for line in lines)
    return {m.group(1): m.group(2) for m in found if m and m.group(1) in fields}


def train_flags() -> list[tuple[str, tuple[str, ...], dict]]:
    """``(field, flags, argparse keywords)`` for every TrainConfig field, made from its type and default:
    the one definition behind `segedu train`'s flags, their help and README's flag table.

    Every flag defaults to None (not given: the config file's or TrainConfig's value stays). Numbers
    and choices are checked by TrainConfig, so a bad value is one line naming the flag. An on/off
    field whose default is None (the profile decides) is ``--x/--no-x``; one that is off by default
    is ``--x``. ``model_options`` is ``--option KEY=VALUE`` (and ``--width``), ``augment`` takes names.
    """
    from .engine.config import field_specs

    comments = _config_field_help()
    flags = []
    for name, spec in field_specs().items():
        strings = (_flag(name),)
        keywords = {"dest": name, "default": None, "help": comments.get(name, "").replace("%", "%%")}
        if spec.kind is bool:
            keywords["action"] = "store_true" if spec.default is False else argparse.BooleanOptionalAction
        elif spec.kind is dict:
            strings = ("--option",)
            keywords.update(action="append", metavar="KEY=VALUE",
                            help="a model option, repeatable; VALUE is read as JSON (0.5, true, [1, 2]) or else "
                                 "as text, e.g. --option pad100=true or --option encoder=resnet50")
        elif spec.kind is list:
            keywords.update(nargs="*", metavar="NAME")
        elif spec.kind is tuple:
            keywords.update(type=_image_size, metavar="PX|H,W")
        elif spec.choices:
            keywords.update(metavar="{" + ",".join(spec.choices) + "}")
        else:
            keywords.update(type=_lenient(spec.kind) if spec.kind in (int, float) else spec.kind,
                            metavar={int: "N", float: "X"}.get(spec.kind, name.upper()))
        flags.append((name, strings, keywords))
    return flags


def _add_train_arguments(parser) -> None:
    parser.add_argument("--config", metavar="FILE", help="an experiment file (JSON of TrainConfig fields); flags override it")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its last checkpoint, as it was configured "
                             "(no other flag)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in --out (its files are deleted first); without it, an --out "
                             "that holds files is refused")
    for _, strings, keywords in train_flags():
        parser.add_argument(*strings, **keywords)
    parser.add_argument("--width", type=_lenient(float), default=None, metavar="X",
                        help="model width multiplier (1.0 = the paper's); short for --option width=X")


def train_flags_markdown() -> str:
    """README's table of the `segedu train` flags, made from the parser (so from TrainConfig): a test
    fails when README.md's copy between its ``train-flags`` markers differs from this."""
    import json

    from .engine.config import field_specs

    def cell(text) -> str:
        return str(text).replace("%%", "%").replace("|", "\\|")

    def default(value) -> str:
        if value is None:
            return "unset"
        if isinstance(value, bool):
            return "on" if value else "off"
        if value in ([], {}):
            return "none"
        return f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"

    parser = argparse.ArgumentParser(prog="segedu train", add_help=False)
    _add_train_arguments(parser)
    specs = field_specs()
    rows = ["| Flag | Takes | Default | What it sets |", "|---|---|---|---|"]
    for action in parser._actions:
        flags = " ".join(f"`{s}`" for s in action.option_strings)
        spec = specs.get(action.dest)
        if spec is not None and spec.kind is not bool:
            takes = spec.allowed + ("; repeatable" if spec.kind is dict else "")
        elif spec is not None or action.nargs == 0:
            takes = "on/off" if isinstance(action, argparse.BooleanOptionalAction) else "on"
        else:
            takes = action.metavar or action.dest.upper()
        rows.append(f"| {flags} | {cell(takes)} | {default(spec.default) if spec else ''} | {cell(action.help)} |")
    return "\n".join(rows) + "\n"


def _given_train_flags(args) -> list[str]:
    """The flags of a new run's configuration that the command line gave."""
    given = [("--no-" + strings[0][2:] if getattr(args, name) is False and keywords.get("action")
              is argparse.BooleanOptionalAction else strings[0])
             for name, strings, keywords in train_flags() if getattr(args, name) is not None]
    return given + [flag for flag, value in (("--width", args.width), ("--config", args.config),
                                             ("--overwrite", args.overwrite)) if value]


def _train_config(args):
    """The new run's TrainConfig: the --config file (or the defaults), then the flags. A bad value is one
    SegeduError naming the flag (or the file and field) it came from."""
    import dataclasses
    import json

    from .engine.config import ConfigError, TrainConfig

    base = TrainConfig.load(args.config) if args.config else TrainConfig()
    changes, flag_of = {}, {}
    for name, strings, _ in train_flags():
        if getattr(args, name) is not None and name != "model_options":
            changes[name], flag_of[name] = getattr(args, name), strings[0]
    options, option_flag = dict(base.model_options), {}
    if args.width is not None:
        options["width"], option_flag["width"] = args.width, "--width"
    for item in args.model_options or []:
        key, equals, raw = item.partition("=")
        if not equals or not key.strip():
            raise SegeduError(f"--option {item}: write KEY=VALUE, e.g. --option width=0.5 or --option encoder=resnet50.")
        try:
            options[key.strip()] = json.loads(raw)  # numbers, true/false, lists
        except ValueError:
            options[key.strip()] = raw  # a plain string
        option_flag[key.strip()] = "--option"
    if option_flag:
        changes["model_options"] = options
    try:
        return dataclasses.replace(base, **changes)
    except ConfigError as exc:
        if exc.field == "model_options" and exc.option in option_flag:
            subject = option_flag[exc.option]
        elif exc.field in flag_of:
            subject = flag_of[exc.field]
        else:  # a value of the file that no longer fits, e.g. the options of another --model
            subject = f"{args.config}: {exc.field}" if args.config else str(exc.field)
        raise SegeduError(exc.naming(subject)) from None


def _holds_files(path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _run_dir(args, config):
    """Where a new run goes, refused before anything is built or written when that would lose a run.

    --out (or the config file's ``out``): a missing or empty folder, or one holding a run that
    --overwrite replaces. Neither given: the first free of runs/run, runs/run-2, runs/run-3, ...
    """
    import dataclasses
    import os
    from pathlib import Path

    from .engine.config import TrainConfig

    default = TrainConfig.__dataclass_fields__["out"].default
    out = Path(config.out)
    if os.environ.get("RANK", "0") != "0":
        return config  # under torchrun rank 0 decides (and writes the run directory); see below
    if args.out is None and config.out == default:
        number = 1
        while out.exists() and not (out.is_dir() and not _holds_files(out)):
            number += 1
            out = Path(f"{default}-{number}")
        return dataclasses.replace(config, out=str(out))
    where = "--out" if args.out is not None else f"{args.config}: out"
    if out.exists() and not out.is_dir():
        raise SegeduError(f"{where} {out} is a file; choose a folder for the run.")
    if _holds_files(out):
        if not args.overwrite:
            raise SegeduError(f"{where} {out} already holds files (an earlier run?); nothing was changed. "
                              f"Continue that run with --resume {out}, replace it with --overwrite, or choose "
                              "another --out.")
        if not (out / "config.json").is_file():
            raise SegeduError(f"--overwrite replaces a run directory, and {out} holds files but no config.json "
                              "(it is not a run); nothing was changed. Choose another --out.")
    return config


def _clear_run_dir(out) -> None:
    """Delete an earlier run's files (--overwrite), so that none of them (best.pt, epochs/, tensorboard/)
    passes for the new run's."""
    import os
    import shutil
    from pathlib import Path

    out = Path(out)
    if os.environ.get("RANK", "0") != "0" or not _holds_files(out):
        return
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    print(f"segedu train: --overwrite: deleted the earlier run's files in {out}")


def _with_profile_encoder(args, config):
    """A new run of an encoder-based model starts from the profile's pretrained encoder (the course's
    on the cpu profile, ImageNet's on the gpu profile), as the book's runs of the same model do
    (:func:`segedu.experiments.encoders.encoder_weights`): without this, ``segedu train --model
    deeplabv2`` trained from scratch where chapter 09 fine-tunes. Not where the options name
    ``pretrained_backbone`` (``--option pretrained_backbone=false`` trains from scratch), nor for a
    ``--config`` file, whose options are the run's as recorded."""
    import dataclasses
    import os

    from . import models
    from .experiments.encoders import encoder_weights
    from .models import course

    if args.config or "pretrained_backbone" in config.model_options:
        return config
    profile = profiles.get(config.profile)
    start = encoder_weights(config.model, profile, config.model_options)
    speak = os.environ.get("RANK", "0") == "0"
    if not start:
        if speak and profile.encoder_weights and "pretrained_backbone" in models.options_of(config.model):
            shipped = ", ".join(f"{name} at width {width:g}" for name, width in course.available())
            print(f"segedu train: {config.model} trains from scratch: the {profile.name} profile's "
                  f"{profile.encoder_weights} weights hold no encoder for it with these options"
                  + (f" (the course's: {shipped})" if profile.encoder_weights == "course" else ""))
        return config
    if speak:
        print(f"segedu train: {config.model} starts from the {start['pretrained_backbone']} pretrained encoder, as "
              f"the {profile.name} profile's runs do (--option pretrained_backbone=false: from scratch)")
    return dataclasses.replace(config, model_options={**config.model_options, **start})


def _train(args) -> int:
    import dataclasses
    import os

    from .engine import TrainConfig, train

    if args.resume:
        given = _given_train_flags(args)
        if given:
            raise SegeduError(f"--resume continues {args.resume} with the configuration it was started with; "
                              f"leave out {', '.join(given)} (to change them, start a new run: --config "
                              f"{args.resume}/config.json --out NEW_DIR and the flags).")
        config = dataclasses.replace(TrainConfig.load(args.resume), out=str(args.resume))
    else:
        config = _run_dir(args, _train_config(args))
        config.resolved()  # the checks across fields and the model's name, before a file is deleted
        config = _with_profile_encoder(args, config)
        if args.overwrite:
            _clear_run_dir(config.out)
        elif args.out is None and os.environ.get("RANK", "0") == "0":
            print(f"segedu train: run directory {config.out} (choose one with --out)")
    from .engine import distributed

    try:
        trainer = train(config, resume=bool(args.resume))
    except BaseException:
        distributed.cleanup(wait=False)  # the other processes may never reach a barrier
        raise
    distributed.cleanup()  # under torchrun: leave the process group (a no-op otherwise)
    if trainer.rank != 0:
        return 0  # rank 0 reports for all processes
    last = trainer.history[-1] if trainer.history else {}
    processes = f" ({trainer.world_size} processes)" if trainer.distributed else ""
    print(f"segedu train: {trainer.run_dir} - {trainer.step} steps{processes}; "
          + (f"best val mIoU {trainer.best_miou:.4f}" if trainer.best_miou > -1 else "no validation"))
    if "val_miou" in last:
        print(f"  last epoch: val mIoU {last['val_miou']:.4f}, pixel accuracy {last['val_pixel_accuracy']:.4f}")
    return 0


def _add_inference_flags(parser) -> None:
    """The inference tricks of segedu.inference.pipeline, shared by `evaluate` and `predict`."""
    g = parser.add_argument_group("inference tricks (segedu.inference.pipeline)")
    g.add_argument("--tta", default=None, metavar="FLIPS",
                   help="test-time augmentation: comma-separated flips from hflip, vflip, hvflip "
                        "(the unflipped view is always included), e.g. hflip,vflip")
    g.add_argument("--tta-scales", default=None, metavar="SCALES",
                   help="TTA input-size scales, comma-separated, e.g. 0.75,1,1.25 (default: 1)")
    g.add_argument("--tta-merge", default=None, choices=("prob", "logit"),
                   help="average the views' softmax probabilities (prob, default) or their logits")
    g.add_argument("--sliding-window", type=int, default=None, metavar="PIXELS",
                   help="predict windows of this side at the image's own resolution, blended (nnU-Net)")
    g.add_argument("--overlap", type=float, default=None,
                   help="least fraction of a window that neighbours share, in [0, 1) (default: 0.5)")
    g.add_argument("--weighting", default=None, choices=("gaussian", "uniform"),
                   help="window blending weights (default: gaussian, sigma = window / 8)")
    g.add_argument("--crf", action="store_true", help="refine with the DenseCRF (needs the pydensecrf2 extra)")
    g.add_argument("--ensemble", nargs="+", default=(), metavar="RUN",
                   help="more run directories or .pt files whose probabilities are averaged with the checkpoint's")


def _inference_kwargs(args) -> dict:
    """evaluate()/predict() keyword arguments from the inference flags; SegeduError for bad values."""
    from .inference.tta import TTA

    tta = None
    if args.tta is not None or args.tta_scales is not None or args.tta_merge is not None:
        flips = [f.strip() for f in (args.tta or "").split(",") if f.strip()]
        if args.tta is not None and not flips:
            raise SegeduError("--tta needs flip names, e.g. --tta hflip or --tta hflip,vflip.")
        flips = flips if "none" in flips else ["none", *flips]
        scales = (1.0,)
        if args.tta_scales is not None:
            try:
                scales = tuple(float(x) for x in args.tta_scales.split(","))
            except ValueError:
                raise SegeduError(f"--tta-scales takes comma-separated numbers, e.g. 0.75,1,1.25; "
                                  f"got {args.tta_scales!r}.") from None
        tta = TTA(flips=tuple(flips), scales=scales, merge=args.tta_merge or "prob")
    if args.sliding_window is None:
        for flag, value in (("--overlap", args.overlap), ("--weighting", args.weighting)):
            if value is not None:
                raise SegeduError(f"{flag} applies to sliding windows; add --sliding-window PIXELS.")
    return {"tta": tta, "sliding_window": args.sliding_window,
            "overlap": 0.5 if args.overlap is None else args.overlap, "weighting": args.weighting or "gaussian",
            "crf": args.crf, "ensemble": tuple(args.ensemble)}


def _print_inference(options: dict) -> None:
    """Print one line naming the inference tricks in use; nothing for the plain prediction."""
    parts = []
    if options["tta"] is not None:
        t = options["tta"]
        parts.append(f"TTA {','.join(t.flips)} x scales {','.join(f'{s:g}' for s in t.scales)} ({t.merge} mean)")
    if options["sliding_window"] is not None:
        parts.append(f"sliding window {options['sliding_window']} px (overlap {options['overlap']:g}, "
                     f"{options['weighting']})")
    if options["ensemble"]:
        parts.append(f"ensemble of {1 + len(options['ensemble'])} models")
    if options["crf"]:
        parts.append("DenseCRF")
    if parts:
        print(f"inference: {'; '.join(parts)}")


def _evaluate(args) -> int:
    from .engine import evaluate

    options = _inference_kwargs(args)
    result = evaluate(args.checkpoint, data_dir=args.data_dir, split=args.split, device=args.device, out=args.out,
                      **options)
    _print_inference(options)
    print(f"{args.checkpoint} on {args.split}: mIoU {result['miou']:.4f}  pixel accuracy "
          f"{result['pixel_accuracy']:.4f}  mean accuracy {result['mean_accuracy']:.4f}  fwIoU {result['fwiou']:.4f}")
    for name, iou in zip(result["class_names"], result["iou"].tolist()):
        print(f"  {name:<14} IoU {iou:.4f}")
    print("confusion matrix (rows: truth, columns: prediction):")
    for row in result["confusion"].tolist():
        print("  " + " ".join(f"{v:>8}" for v in row))
    if args.out:
        print(f"segedu evaluate: wrote {args.out}")
    return 0


def _predict(args) -> int:
    from .engine import predict

    options = _inference_kwargs(args)
    path = predict(args.checkpoint, args.out, data_dir=args.data_dir, split=args.split, device=args.device, **options)
    _print_inference(options)
    print(f"segedu predict: wrote and validated {path}")
    return 0


def _runs(args) -> int:
    from .engine import runs

    found = runs.discover(args.runs)
    print(runs.render(runs.compare(found, baseline=args.baseline), seconds=not args.no_seconds))
    return 0


def _pseudo_label(args) -> int:
    from .inference import pseudo

    threshold = args.threshold
    if args.keep_fraction is not None:
        if args.data_dir is None:
            raise SegeduError("--keep-fraction needs --data-dir (the images whose confidence sets the threshold).")
        threshold = pseudo.confidence_threshold(args.runs, args.data_dir, args.keep_fraction, args.split, args.device,
                                                class_balanced=args.class_balanced)
        if args.class_balanced:
            print(f"segedu pseudo-label: one threshold per class keeps the {100 * args.keep_fraction:g}% most "
                  "confident of each class's pixels")
        else:
            print(f"segedu pseudo-label: threshold {threshold:.4f} keeps the {100 * args.keep_fraction:g}% most "
                  "confident pixels")
    elif args.class_balanced:
        raise SegeduError("--class-balanced sets one threshold per class from --keep-fraction; give --keep-fraction.")
    summary = pseudo.write_pseudo_labels(args.runs, args.data_dir, args.out, split=args.split,
                                         threshold=threshold, mode=args.mode, device=args.device,
                                         train_split=None if args.no_train else args.train_split)
    print(summary)
    return 0


def _cleanse(args) -> int:
    import csv
    import io
    from pathlib import Path

    from .data import noise
    from .inference import cleansing
    from .fileio import write_text_atomic
    from .data.location import resolve_data_dir

    data_dir = args.data_dir
    if data_dir is None:
        from .engine.evaluate import load_model

        data_dir = resolve_data_dir(load_model(args.runs[0], "cpu")[1])
    report = noise.read_report(args.noise_report) if args.noise_report else None  # a bad file fails before the work
    scores = cleansing.image_scores(args.runs, data_dir, args.split, device=args.device)
    by_id = {s.image_id: s for s in scores}
    ranking = cleansing.rank(scores, args.by)
    top = ranking[:args.top] if args.top else ranking
    print(f"segedu cleanse: {len(scores)} images of {args.split} ranked by {args.by}, most suspicious first")
    print(f"  {'rank':>4}  {'loss':>7}  {'disagree':>8}  file")
    for place, image_id in enumerate(top[:20], 1):
        s = by_id[image_id]
        print(f"  {place:>4}  {s.loss:>7.3f}  {s.disagreement:>8.3f}  {s.file_name}")
    if len(top) > 20:
        print(f"  ... {len(top) - 20} more")
    if args.noise_report:
        corrupted = [i for i in report.corrupted_images if report.changed.get(i, 0) > 0]
        k = len(top)
        print(f"  precision at {k}: {cleansing.precision_at_k(ranking, corrupted, k):.3f} of the top {k} were "
              f"corrupted ({len(corrupted)} of {len(scores)} images are: {len(corrupted) / len(scores):.3f} by chance)")
    if args.out:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["rank", "image_id", "file_name", "loss", "disagreement", "pixels"])
        for place, image_id in enumerate(top, 1):
            s = by_id[image_id]
            writer.writerow([place, s.image_id, s.file_name, f"{s.loss:.6f}", f"{s.disagreement:.6f}", s.pixels])
        write_text_atomic(Path(args.out), text.getvalue())
        print(f"segedu cleanse: wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="segedu",
        description="Semantic segmentation for the recycling-trash competition, and its course book.",
    )
    p.add_argument("--version", action="version", version=f"segedu {__version__}")
    p.add_argument("--debug", dest="traceback", action="store_true",
                   help="keep the Python traceback of a failure, for a bug report (also SEGEDU_DEBUG=1); "
                        "given before the command. `segedu train --debug` is the course's debug mode")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("info", help="versions of torch/torchvision and key packages, device, default profile")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    s.set_defaults(func=_info)

    b = sub.add_parser("book", help="execute the chapters with papermill, build the HTML book")
    bsub = b.add_subparsers(dest="book_command", metavar="ACTION", required=True)
    r = bsub.add_parser("run", help="execute chapters (all, in _toc.yml order) and keep their outputs")
    r.add_argument("notebooks", nargs="*", help="chapter names or number prefixes (default: all)")
    r.add_argument("--profile", default="auto", choices=profiles.CHOICES)
    r.add_argument("--data-dir", default=None, help="a COCO dataset folder (default: the generated one)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    r.add_argument("--reuse-runs-since", default=None, metavar="'YYYY-MM-DD HH:MM'",
                   help="read back the training runs of the same configuration written since this UTC time "
                        "(default: only this execution's); for re-executing chapters whose training code "
                        "is unchanged")
    r.add_argument("--timed", action="store_true",
                   help="with --reuse-runs-since: record these chapters' times as their execution, for chapters "
                        "new or rewritten since the book's execution that train their own runs now and read back "
                        "only the runs of the chapters before them")
    r.set_defaults(func=_book_run)
    h = bsub.add_parser("html", help="build the HTML book from the committed outputs (no execution)")
    h.add_argument("--no-strict", action="store_true", help="do not treat Sphinx warnings as errors")
    h.set_defaults(func=_book_html)
    sy = bsub.add_parser("sync-markdown", help="copy a chapter's prose into its executed notebook (outputs kept)")
    sy.add_argument("notebooks", nargs="+", help="chapter names or number prefixes")
    sy.set_defaults(func=_book_sync)
    ls = bsub.add_parser("list", help="list the chapters in reading order")
    ls.set_defaults(func=_book_list)

    t = sub.add_parser("train", help="train a model; writes a run directory (config, metrics, checkpoints)")
    _add_train_arguments(t)
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="score a checkpoint on a labelled split; per-class IoU, confusion matrix")
    e.add_argument("checkpoint", help="a run directory (uses best.pt) or a .pt file")
    e.add_argument("--split", default="val", help="val | train | an annotation file")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--device", default="auto")
    e.add_argument("--out", default=None, help="write the scores as JSON here")
    _add_inference_flags(e)
    e.set_defaults(func=_evaluate)

    pr = sub.add_parser("predict", help="write the competition submission CSV for the test images")
    pr.add_argument("checkpoint", help="a run directory (uses best.pt) or a .pt file")
    pr.add_argument("--out", required=True, help="the CSV to write")
    pr.add_argument("--split", default="test", help="test | an unannotated annotation file")
    pr.add_argument("--data-dir", default=None)
    pr.add_argument("--device", default="auto")
    _add_inference_flags(pr)
    pr.set_defaults(func=_predict)

    rs = sub.add_parser("runs", help="compare run directories: each run's config changes against a baseline, its metrics")
    rs.add_argument("runs", nargs="+", help="run directories, or folders holding run directories")
    rs.add_argument("--baseline", default=None, help="the label (folder name) of the baseline run (default: the first)")
    rs.add_argument("--no-seconds", action="store_true", help="leave out the training time column")
    rs.set_defaults(func=_runs)

    pl = sub.add_parser("pseudo-label", help="label the test images with a model's confident pixels; "
                                             "write them with the training split as a COCO file")
    pl.add_argument("runs", nargs="+", metavar="RUN", help="run directories or .pt files (several: softmax averaged)")
    pl.add_argument("--data-dir", default=None, help="the dataset folder (default: the first run's)")
    pl.add_argument("--out", required=True, help="the COCO JSON to write; train on it with --train-split FILE")
    pl.add_argument("--threshold", type=float, default=0.9,
                    help="least max-probability of a kept pixel (pixel mode) or image mean (image mode)")
    pl.add_argument("--keep-fraction", type=float, default=None,
                    help="instead of --threshold: keep this share of the pixels, the most confident (pixel mode)")
    pl.add_argument("--class-balanced", action="store_true",
                    help="with --keep-fraction: keep that share of each class's pixels (class-balanced self-training)")
    pl.add_argument("--mode", default="pixel", choices=("pixel", "image"))
    pl.add_argument("--split", default="test", help="the images to label: test | an annotation file")
    pl.add_argument("--train-split", default="train", help="labelled images copied in front: train | val | a file")
    pl.add_argument("--no-train", action="store_true", help="write the pseudo-labelled images alone")
    pl.add_argument("--device", default="auto")
    pl.set_defaults(func=_pseudo_label)

    syn = sub.add_parser("synth", help="write the deterministic competition-like dataset")
    syn.add_argument("--out", required=True, help="folder to create (must not hold a dataset already)")
    syn.add_argument("--images", type=int, default=profiles.PROFILES["cpu"].synth_images)
    syn.add_argument("--size", type=int, default=profiles.PROFILES["cpu"].synth_size)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--generator-version", default=None, metavar="V",
                     help="draw what an older version of the generator drew (default: the current one); "
                          "segedu.data.synth.versions says what each draws differently")
    _noise_arguments(syn, required=False)
    syn.set_defaults(func=_synth)

    pt = sub.add_parser("pretrain", help="pretrain a course encoder on a synthetic corpus no book split uses "
                                         "(segedu.engine.pretrain); writes segedu/weights/ and its model card")
    pt.add_argument("--encoder", required=True, choices=list(_course_encoders()))
    for name, kind in (("width", float), ("images", int), ("size", int), ("image_size", int), ("batch_size", int),
                       ("steps", int), ("lr", float), ("seed", int)):
        pt.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
                        help=f"the recipe's {name} (default: the shipped weights' recipe, segedu.engine.pretrain.recipe_for)")
    pt.add_argument("--out", default=None, help="run directory (default: runs/pretrain/ENCODER-wWIDTH)")
    pt.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    pt.add_argument("--smoke", action="store_true", help="the tests' seconds-long recipe")
    pt.add_argument("--weights-dir", default=None, help="where to export (default: the package's segedu/weights)")
    pt.add_argument("--device", default="auto")
    pt.set_defaults(func=_pretrain)

    an = sub.add_parser("add-noise", help="write a noisy copy of a dataset's training labels (clean ones kept)")
    an.add_argument("data", help="dataset folder (its train.json is the clean file)")
    an.add_argument("--clean", default=None, help="another clean annotation file (default: DATA/train.json)")
    an.add_argument("--out", default=None, help="noisy file to write (default: <clean>_noisy.json beside it)")
    an.add_argument("--overwrite", action="store_true")
    _noise_arguments(an, required=True)
    an.set_defaults(func=_add_noise)

    cl = sub.add_parser("cleanse", help="rank training images by how much the model disagrees with their labels")
    cl.add_argument("runs", nargs="+", help="run directories or checkpoints (probabilities averaged); best: "
                    "models that did not train on the ranked images (out of fold)")
    cl.add_argument("--split", default="train", help="the labelled images to rank: train | val | a file")
    cl.add_argument("--data-dir", default=None, help="dataset folder (default: the first run's training data)")
    cl.add_argument("--by", default="loss", choices=("loss", "disagreement"))
    cl.add_argument("--top", type=int, default=0, help="keep the top N (default: all)")
    cl.add_argument("--out", default=None, help="CSV of the ranking (rank, image_id, file_name, loss, ...)")
    cl.add_argument("--noise-report", default=None, help="a noisy file's .noise.json: print precision at --top")
    cl.add_argument("--device", default="auto")
    cl.set_defaults(func=_cleanse)

    v = sub.add_parser("validate-coco", help="check a COCO annotation file; list every problem")
    v.add_argument("file", help="COCO JSON file")
    v.add_argument("--images", default=None, help="image folder (default: the JSON's folder)")
    v.set_defaults(func=_validate_coco)

    rc = sub.add_parser("repair-coco", help="write a repaired copy of a COCO file: duplicate annotation ids, "
                                            "missing areas, empty segmentations, absent images; each change listed")
    rc.add_argument("file", help="COCO JSON file to repair (unchanged unless it is also --out, with --overwrite)")
    rc.add_argument("--out", required=True, help="repaired JSON to write (written only if it then passes validation)")
    rc.add_argument("--images", default=None, help="image folder (default: the JSON's folder)")
    rc.add_argument("--skip-images", action="store_true",
                    help="do not look at the image files (records of absent images are then kept)")
    rc.add_argument("--overwrite", action="store_true", help="replace an existing --out, even the input file")
    rc.set_defaults(func=_repair_coco)

    c = sub.add_parser("coco-from-masks", help="turn images + index-colour masks into COCO")
    c.add_argument("--images", required=True, help="folder of images")
    c.add_argument("--masks", required=True, help="folder of masks with the images' file stems")
    c.add_argument("--classes", required=True, help="a file with one class name a line, or a,b,c")
    c.add_argument("--out", required=True, help="COCO JSON to write")
    c.add_argument("--ignore", type=int, default=None, help="mask value meaning void (e.g. 255)")
    c.set_defaults(func=_coco_from_masks)

    sp = sub.add_parser("split", help="hold-out / K-fold / stratified / group K-fold splits")
    sp.add_argument("annotation", help="COCO JSON holding every training image (train_all.json)")
    sp.add_argument("--out", required=True, help="folder for the train/val JSON pairs")
    sp.add_argument("--method", default="holdout", choices=("holdout", "kfold", "stratified", "group"))
    sp.add_argument("--folds", type=int, default=5)
    sp.add_argument("--val-fraction", type=float, default=0.2)
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=_split)

    return p


def main(argv: list[str] | None = None) -> int:
    import os

    from . import failures

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    keep_traceback = args.traceback or os.environ.get(failures.DEBUG_ENV, "") not in ("", "0")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("segedu: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = failures.explain(args, exc)
        if message is None or keep_traceback:
            raise  # a bug (or --debug): the traceback is what a bug report needs
        print(f"segedu: error: {message}", file=sys.stderr)
        return 2
