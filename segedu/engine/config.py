"""A training run's full configuration: one dataclass, saved as JSON in every run directory.

Every choice a chapter ablates (loss, scheduler, augmentation, sampler, AMP, EMA, SWA, ...) is a
field here, so "one change at a time" is a diff of two ``config.json`` files. Defaults come from
the profile (image size, batch size, epochs, model width); anything set explicitly wins.

The dataclass is a pydantic dataclass: every value is checked against its field's type and range
when a TrainConfig is made (``TrainConfig(...)``, ``dataclasses.replace``, a config file, the
``segedu train`` flags), so ``epochs=0`` or ``loss="ce+dcie"`` fails in one line before any data or
model is built, not an hour into a run. ``dataclasses.replace``, ``asdict`` and ``fields`` work as
on any dataclass.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import json
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from .. import env, losses, models, profiles
from ..data import sizes
from ..data.mixing import MIXES
from ..data.stats import WEIGHTINGS
from ..data.transforms import AUGMENTATIONS, CROPS
from ..errors import SegeduError

SCHEDULERS = ("cosine", "poly", "plateau", "constant")
OPTIMIZERS = ("adamw", "sgd")
AMP_MODES = ("off", "auto", "fp16", "bf16")
SAMPLERS = ("uniform", "class_aware")


def _described(kind, allowed: str, **bounds):
    """``kind`` within pydantic ``bounds``; ``allowed`` says so in words, for messages and the flag table."""
    return Annotated[kind, Field(description=allowed, **bounds)]


AtLeastOne = _described(int, "a whole number >= 1", ge=1)
Count = _described(int, "a whole number >= 0", ge=0)
Positive = _described(float, "a number > 0", gt=0)
NonNegative = _described(float, "a number >= 0", ge=0)
Fraction = _described(float, "a number in [0, 1)", ge=0, lt=1)
Probability = _described(float, "a probability in [0, 1]", ge=0, le=1)
Decay = _described(float, "a number in (0, 1)", gt=0, lt=1)
Threshold = _described(float, "a probability in (0, 1]", gt=0, le=1)
#: the short side in pixels, or an exact (H, W); segedu.data.sizes says what each means
ImageSize = _described(int | tuple[int, int], "a whole number of pixels >= 1 (the short side) or a pair H,W of them")
LossSpec = _described(str, f"a loss spec: NAME, NAME(KEY=VALUE,...) or WEIGHT*NAME joined by +, NAME one of {', '.join(losses.LOSSES)}")
Augmentations = _described(list[str], "names from " + ", ".join(n for n in AUGMENTATIONS if n not in CROPS))


class ConfigError(SegeduError):
    """A TrainConfig field given a value it cannot take. ``field`` (and, for a model option,
    ``option``) let the CLI name the flag or file the value came from instead of the field."""

    def __init__(self, field: str | None, reason: str, option: str | None = None):
        self.field, self.reason, self.option = field, reason, option
        super().__init__(self.naming(field or "TrainConfig"))

    def naming(self, subject: str) -> str:
        """The one-line message with ``subject`` (a field, ``--flag`` or ``file: field``) in front."""
        return f"{subject}: {self.reason}" + ("" if self.reason.endswith(".") else ".")


class _OptionError(ValueError):
    """A bad model option inside the ``model_options`` check; ``option`` names it."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


def _one_line_errors(cls):
    """pydantic reports a bad value as a ValidationError of many lines; segedu's callers (the CLI,
    the book's runner) print one SegeduError line. Wrap ``__init__`` to turn one into the other."""
    validating_init = cls.__init__

    @functools.wraps(validating_init)
    def __init__(self, *args, **kwargs):
        try:
            validating_init(self, *args, **kwargs)
        except pydantic.ValidationError as error:
            given = {**dict(zip((f.name for f in dataclasses.fields(cls)), args)), **kwargs}
            raise _config_error(error, given) from None

    cls.__init__ = __init__
    return cls


def _device_kind(device: str):
    """The torch device a config's ``device`` names (``auto``: this machine's), without requiring
    it to exist here: a config written on a GPU machine still resolves on a laptop."""
    import torch

    if (device or "auto").strip().lower() == "auto":
        return env.resolve_device("auto")
    try:
        return torch.device(device.strip().lower())
    except RuntimeError:
        return env.resolve_device(device)  # its error names the device and the choices


@_one_line_errors
@pydantic.dataclasses.dataclass(config=ConfigDict(extra="forbid"))
class TrainConfig:
    """Everything that decides a training run's numbers (see the field comments)."""

    model: str = "fcn8s"                 # a name from segedu.models.available()
    model_options: dict = dataclasses.field(default_factory=dict)  # e.g. {"width": 0.25}
    data_dir: str | None = None          # None: the profile's generated dataset
    train_split: str = "train"           # train | val | an annotation file
    val_split: str | None = "val"        # None: no validation
    profile: Literal[profiles.CHOICES] = "auto"  # smoke | cpu | gpu | auto: default sizes and budgets
    image_size: ImageSize | None = None  # short side in pixels, or H,W (None: the profile's)
    epochs: AtLeastOne | None = None     # None: the profile's
    max_steps: Count | None = None       # cap on optimiser steps (None: the profile's; 0: no cap)
    batch_size: AtLeastOne | None = None  # per optimiser micro-step; None: the profile's
    accumulate: AtLeastOne = 1           # gradient accumulation: micro-batches per optimiser step
    optimizer: Literal[OPTIMIZERS] = "adamw"  # adamw | sgd
    lr: Positive = 1e-3                  # peak learning rate
    weight_decay: NonNegative = 1e-4     # decoupled (AdamW) or L2 (SGD)
    momentum: Fraction = 0.9             # SGD only
    scheduler: Literal[SCHEDULERS] = "cosine"  # cosine | poly | plateau | constant
    warmup_steps: Count = 0              # linear warm-up (LinearLR) before the scheduler
    poly_power: Positive = 0.9           # exponent of the poly schedule: lr * (1 - step/steps) ** poly_power
    loss: LossSpec = "ce"                # a segedu.losses spec, e.g. "ce+0.5*dice"
    class_weights: Literal[WEIGHTINGS] | None = None  # None | inverse | sqrt_inverse | median_frequency
    label_smoothing: Fraction = 0.0      # cross-entropy label smoothing epsilon (0: off)
    aux_weight: NonNegative = 0.4        # weight of an auxiliary head's loss, where a model has one
    class_head: NonNegative = 0.0        # weight of the image-level class-presence loss (0: no head)
    suppress_threshold: Threshold | None = None  # at inference, drop classes the head judges absent
    augment: Augmentations = dataclasses.field(default_factory=list)  # names from segedu.data.transforms
    crop: Literal[CROPS] = "scale"       # scale | crop_non_empty
    mix: Literal[tuple(MIXES)] | None = None  # None | mixup | cutmix | snapmix | copypaste
    mix_p: Probability = 0.5             # probability that a batch is mixed
    sampler: Literal[SAMPLERS] = "uniform"  # uniform | class_aware
    amp: Literal[AMP_MODES] | None = None  # off | auto (bf16 on a GPU or a CPU with bf16 instructions, fp16 on older GPUs, else off) | fp16 | bf16 (None: the profile's)
    channels_last: bool | None = None    # NHWC memory layout, faster convolutions on recent GPUs (None: the profile's)
    compile: bool | None = None          # torch.compile the model, GPU fast path (None: the profile's)
    sync_bn: bool = False                # torchrun runs: SyncBatchNorm, batch statistics over all processes
    grad_clip: Positive | None = None    # max gradient norm
    ema_decay: Decay | None = None       # e.g. 0.999: evaluate an exponential moving average
    ema_warmup: bool = True              # EMA decay min(ema_decay, (1+t)/(10+t)) after t updates, as TF and timm
    swa_start: Count | None = None       # epoch from which SWA averages the weights
    swa_start_step: Count | None = None  # or the optimiser step from which SWA averages (not with swa_start)
    swa_every: AtLeastOne | None = None  # SWA averages every N optimiser steps (None: once per epoch)
    swa_lr: Positive | None = None       # SWALR learning rate once SWA starts (None: a tenth of lr)
    seed: Count = 0                      # seeds weights, data order and augmentation
    device: str = "auto"                 # auto | cpu | cuda | cuda:N
    num_workers: Count | None = None     # None: the profile's; each worker draws its own augmentations, so the count changes the numbers
    debug: bool = False                  # a handful of images, one epoch, every code path
    out: str = "runs/run"                # the run directory (segedu train without --out: the first free runs/run, runs/run-2, ...)
    tensorboard: bool = False            # also log to TensorBoard in the run directory
    wandb: str | None = None             # None, or a W&B project name (offline unless WANDB_MODE says otherwise)
    checkpoint_every: Count = 0          # also write last.pt every N optimiser steps (0: per epoch only)
    save_epochs: bool = False            # also keep every epoch's evaluated weights (epochs/epochN.pt): epoch ensembles
    save_snapshots: bool = False         # also keep each SWA snapshot's weights (snapshots/stepN.pt): the weights' path

    @field_validator("data_dir", "train_split", "val_split", "out", mode="before")
    @classmethod
    def _path_as_text(cls, value):
        """A Path is as good as its string; stored as one so that config.json stays plain JSON."""
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("image_size", mode="before")
    @classmethod
    def _image_size(cls, value):
        """An int >= 1, or a pair of them (a JSON list becomes a tuple); not a bool, float or string:
        :func:`segedu.data.sizes.check_size`, the one definition of what an image size is."""
        try:
            return sizes.check_size(value)
        except SegeduError:
            raise ValueError(f"{value!r} is not an image size: give the short side in pixels (e.g. 256) or a pair "
                             "H,W (e.g. 240,320 in a shell, [240, 320] in JSON), each >= 1") from None

    @field_validator("loss")
    @classmethod
    def _loss(cls, spec: str) -> str:
        """Build the loss once, so that an unknown name or a bad term fails now, not after the data."""
        try:
            losses.build_loss(spec)
        except SegeduError as exc:
            raise ValueError(str(exc)) from None
        return spec

    @field_validator("augment")
    @classmethod
    def _augment(cls, names: list[str]) -> list[str]:
        extras = [name for name in AUGMENTATIONS if name not in CROPS]
        for name in names:
            if name in CROPS:
                raise ValueError(f"{name!r} sets the output size, so it is the crop that runs before the "
                                 f"augmentations: choose it with --crop {name} (crop={name!r} in Python), not as "
                                 "an augmentation")
            if name not in AUGMENTATIONS:
                raise ValueError(f"unknown augmentation {name!r}{_closest(name, extras)}; choose from "
                                 f"{', '.join(extras)}")
        return names

    @field_validator("model_options")
    @classmethod
    def _model_options(cls, options: dict, info: ValidationInfo) -> dict:
        if "model" in info.data:  # a bad model name is reported by its own field
            check_model_options(info.data["model"], options)
        return options

    def resolved(self) -> "TrainConfig":
        """A copy with every profile-dependent ``None`` filled in and the choices that depend on
        each other checked (each field's own range is checked when a TrainConfig is made)."""
        prof = profiles.get(self.profile)
        c = dataclasses.replace(self, profile=prof.name, model_options=dict(self.model_options), augment=list(self.augment))
        # `is None`, not `or`: an explicit value is never swapped for the profile's
        c.image_size = prof.image_size if c.image_size is None else c.image_size
        c.epochs = prof.epochs if c.epochs is None else c.epochs
        c.batch_size = prof.batch_size if c.batch_size is None else c.batch_size
        c.num_workers = prof.num_workers if c.num_workers is None else c.num_workers
        c.channels_last = prof.channels_last if c.channels_last is None else c.channels_last
        # the concrete precision lands in the resolved config (auto -> off/bf16/fp16 on this device), so
        # a run trained in one precision is never reused as a run in another (runs.finished)
        c.amp = env.resolve_amp(prof.amp if c.amp is None else c.amp, _device_kind(c.device))
        c.compile = prof.compile if c.compile is None else c.compile
        # SEGEDU_MAX_STEPS (profiles.cap_steps) lowers an explicit cap too; it lands in the resolved
        # config, so a capped run is never reused as the uncapped one (runs.finished compares configs)
        c.max_steps = profiles.cap_steps(prof.max_steps if c.max_steps is None else c.max_steps)
        if "width" in models.options_of(c.model):  # smp models have no width (their encoder sets it)
            c.model_options.setdefault("width", prof.width)
        if c.debug:
            c.epochs, c.max_steps = 1, min(c.max_steps or 2, 2)
        if c.swa_start is not None and c.swa_start_step is not None:
            raise SegeduError(f"give swa_start (an epoch, {c.swa_start}) or swa_start_step (an optimiser step, "
                              f"{c.swa_start_step}), not both.")
        if c.swa_every is not None and c.swa_start is None and c.swa_start_step is None:
            raise SegeduError("swa_every needs swa_start or swa_start_step: SWA is off without a start.")
        if c.save_snapshots and c.swa_start is None and c.swa_start_step is None:
            raise SegeduError("save_snapshots keeps SWA's snapshots and needs swa_start or swa_start_step: "
                              "SWA is off without a start.")
        if c.suppress_threshold is not None and not c.class_head:
            raise SegeduError("suppress_threshold needs the class-presence head; set class_head > 0 "
                              "(e.g. 0.4) or leave suppress_threshold unset.")
        return c

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        if not isinstance(values, dict):
            raise SegeduError(f"a TrainConfig is made from a dict of its fields, not a {type(values).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SegeduError(f"unknown training option(s) {', '.join(unknown)}; "
                              f"the options are: {', '.join(sorted(known))}.")
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """Read a config file (JSON) -- an experiment file or a run directory's ``config.json``.
        Every error names the file (and the field)."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise SegeduError(f"{path}: no such config file.") from None
        except json.JSONDecodeError as exc:
            raise SegeduError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
        if not isinstance(values, dict):
            raise SegeduError(f"{path}: holds a JSON {_json_kind(values)}; a config file is one JSON object of "
                              'TrainConfig fields, e.g. {"model": "fcn8s", "epochs": 4}.')
        try:
            return cls.from_dict(values)
        except ConfigError as exc:
            raise SegeduError(exc.naming(f"{path}: {exc.field}" if exc.field else str(path))) from None
        except SegeduError as exc:
            raise SegeduError(f"{path}: {exc}") from None


# --- the fields, described for messages, flags and the README's flag table ---------------------

@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """What one TrainConfig field takes: ``kind`` is int, float, str, bool, list, dict or tuple (an
    int or an (H, W) pair); ``choices`` the allowed strings of a choice field; ``allowed`` in words."""

    name: str
    kind: type
    optional: bool
    choices: tuple | None
    allowed: str
    default: Any


def _spec(name: str, hint, default) -> FieldSpec:
    optional, allowed, choices = False, "", None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(members) < len(typing.get_args(hint))
        hint = members[0] if len(members) == 1 else typing.Union[tuple(members)]
    if typing.get_origin(hint) is Annotated:
        allowed = next((m.description for m in hint.__metadata__ if getattr(m, "description", None)), "")
        hint = typing.get_args(hint)[0]
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        kind, allowed = str, "one of " + ", ".join(choices)
    elif origin in (typing.Union, types.UnionType):
        kind = tuple  # int | tuple[int, int]
    else:
        kind = origin or hint
        allowed = allowed or {bool: "on or off", str: "text", list: "names", dict: "KEY=VALUE options"}.get(kind, "")
    return FieldSpec(name, kind, optional, choices, allowed, default)


@functools.cache
def field_specs() -> dict[str, FieldSpec]:
    """Each TrainConfig field's :class:`FieldSpec`, in the dataclass's order."""
    hints = typing.get_type_hints(TrainConfig, include_extras=True)
    specs = {}
    for f in dataclasses.fields(TrainConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        specs[f.name] = _spec(f.name, hints[f.name], default)
    return specs


def _json_kind(value) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def _config_error(error: pydantic.ValidationError, given: dict) -> ConfigError:
    """The first problem of ``error`` as one line: the field, the value given and what it may be."""
    problems = error.errors(include_url=False)
    first = problems[0]
    field = str(first["loc"][0]) if first["loc"] else None
    value = given.get(field, first.get("input"))
    cause = (first.get("ctx") or {}).get("error")
    spec = field_specs().get(field)
    if first["type"] in ("unexpected_keyword_argument", "unexpected_positional_argument"):
        known = [f.name for f in dataclasses.fields(TrainConfig)]
        reason = (f"unknown training option{_closest(str(field), known)}; the options are: "
                  f"{', '.join(sorted(known))}")
    elif first["type"] == "value_error" and cause is not None:
        reason = str(cause)
    elif spec is not None and spec.choices:
        reason = f"unknown {field} {value!r}; choose one of {', '.join(map(str, spec.choices))}"
    elif spec is not None and spec.allowed and spec.kind in (int, float):
        reason = f"{value!r} is not {spec.allowed}"
    else:
        reason = f"got {value!r}; " + first["msg"].replace("Input should be", "it must be", 1)
    others = sorted({str(p["loc"][0]) for p in problems[1:] if p["loc"]} - {field})
    if others:
        reason += f" (also wrong: {', '.join(others)})"
    return ConfigError(field, reason, option=getattr(cause, "option", None))


def _closest(word: str, choices) -> str:
    """' (did you mean X?)' for the most similar choice, or ''."""
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


# --- model options -------------------------------------------------------------------------------

def check_model_options(model: str, options: dict) -> None:
    """ValueError (an ``_OptionError`` naming the option) for an option ``model`` does not declare, or
    a value of another type than its declaration. Nothing for a model that cannot be resolved here
    (an unknown name, an smp model without smp installed): building it says what is wrong."""
    declared = _declared_options(model)
    if declared is None:
        return
    accepted, hints, open_ended = declared
    for key, value in options.items():
        if not isinstance(key, str) or key not in accepted:
            if open_ended:
                continue
            raise _OptionError(str(key), f"model {model!r} has no option {key!r}{_closest(str(key), accepted)}; "
                                         f"its options: {', '.join(accepted)}")
        hint = hints.get(key)
        if hint is not None and not _fits(hint, value):
            raise _OptionError(key, f"option {key}={value!r} of model {model!r} must be {_type_words(hint)}")
        if key == "width" and isinstance(value, (int, float)) and not value > 0:
            raise _OptionError(key, f"option width={value!r} of model {model!r} must be > 0 "
                                    "(a channel multiplier, 1.0 = the paper's network)")


def _declared_options(model: str):
    """(option names, their type hints, whether the model takes others too), or None."""
    hints = {}
    try:
        accepted = models.options_of(model)
        if model.lower().startswith("smp:"):
            from ..models import smp_adapter  # segmentation_models_pytorch is optional: only when asked for

            targets = [smp_adapter.build, smp_adapter._architecture(model).__init__]
        elif models._is_import_path(model):
            target = models._imported(model)
            targets = [target.__init__ if inspect.isclass(target) else target]
        else:
            targets = [models._builder(model)]
            hints["pretrained_backbone"] = models.PretrainedSource  # the registry's option, for every model
    except SegeduError:
        return None
    open_ended = False
    for target in targets:
        try:
            parameters = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):
            open_ended = True
            continue
        if target is not targets[0] or len(targets) == 1:  # smp's build passes its **kwargs on to the architecture
            open_ended |= any(p.kind is p.VAR_KEYWORD for p in parameters)
        try:
            found = typing.get_type_hints(target)
        except Exception:  # an annotation that does not resolve here: leave the check to the model
            found = {}
        hints.update({k: v for k, v in found.items() if k in accepted})
    return accepted, hints, open_ended


@functools.lru_cache(maxsize=None)
def _adapter(hint) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(hint)


def _fits(hint, value) -> bool:
    """Whether ``value`` is of type ``hint``, strictly (no "0.5" for a float); a list passes for a
    tuple (JSON has no tuples). True for a hint pydantic cannot check."""
    try:
        adapter = _adapter(hint)
    except Exception:
        return True
    try:
        adapter.validate_python(value, strict=True)
        return True
    except pydantic.ValidationError:
        pass
    if isinstance(value, list):
        try:
            adapter.validate_python(value)
            return True
        except pydantic.ValidationError:
            return False
    return False


def _type_words(hint) -> str:
    """``float | None`` -> "a number or None", for messages."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_type_words(a) for a in typing.get_args(hint)))
    words = {float: "a number", int: "a whole number", bool: "true or false", str: "a string",
             os.PathLike: "a path", type(None): "None"}
    origin = typing.get_origin(hint) or hint
    if origin in words:
        return words[origin]
    if origin in (list, tuple) or (inspect.isclass(origin) and issubclass(origin, typing.Sequence)):
        return "a list"
    return getattr(hint, "__name__", str(hint))
