"""The machine a run happens on: package versions, the compute device, and seeding.

Every chapter and every run directory records :func:`info` so that a number can always be
traced to the versions and the device that produced it.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import random

import numpy as np

from .errors import SegeduError

#: Distributions whose versions :func:`info` reports, in the order printed.
KEY_PACKAGES = (
    "torch", "torchvision", "numpy", "pycocotools", "albumentations", "matplotlib",
    "papermill", "jupytext", "nbval", "jupyter-book", "jupyterlab",
)


def package_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def resolve_device(device: str | None = "auto"):
    """``auto`` -> CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` are checked.

    Asking for CUDA on a machine without it is an error with advice, not a crash later
    inside the first ``.to(device)``.
    """
    import torch

    name = (device or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise SegeduError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SegeduError(
                f"device={device!r} was asked for, but this machine has no usable CUDA GPU "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda}). "
                "Use device='auto' or 'cpu', or run on a machine with an NVIDIA GPU."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SegeduError(
                f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible."
            )
    elif dev.type != "cpu":
        raise SegeduError(f"device {device!r} is not supported; use auto, cpu, cuda or cuda:N.")
    return dev


def machine_description() -> str:
    """The CPU model and core count, for run logs and benchmark results."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = cpu_from_cpuinfo(f.read()) or cpu
    except OSError:  # not Linux
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def cpu_from_cpuinfo(text: str) -> str | None:
    """The first processor of a ``/proc/cpuinfo`` text: its model name and, on x86, its family,
    model and stepping. A virtual machine may name only "AMD EPYC" whatever the generation, and
    generations differ in the kernels torch runs: the same bf16 DeepLab v2 run (same code, same
    data) scored val mIoU 0.4094 on the AMD EPYC the book ran on and 0.4153 on one of family 26, so
    the name alone cannot say whether two runs' numbers should agree. None when no model is named.
    """
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the end of the first processor's block
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name")
    if not name:
        return None
    generation = [f"{label} {fields[key]}" for key, label in (("cpu family", "family"), ("model", "model"),
                                                               ("stepping", "stepping")) if fields.get(key)]
    return f"{name} ({', '.join(generation)})" if generation else name


def device_name(dev) -> str:
    import torch

    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU: {machine_description()}, torch uses {torch.get_num_threads()} threads"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (Intel AMX or AVX512-BF16, as on recent Xeons).

    Elsewhere PyTorch emulates bf16 on the CPU, which is slower than fp32, so ``amp="auto"`` only
    turns autocast on where this is true.
    """
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(check is not None and check() for check in checks)


def resolve_amp(mode: str, dev) -> str:
    """The concrete precision (``off``, ``bf16`` or ``fp16``) that ``mode`` means on device ``dev``.

    ``auto`` is the fastest precision that trains as well as fp32 there: bf16 on a GPU that has it
    (fp16 with a gradient scaler on older GPUs), bf16 on a CPU with bf16 instructions
    (:func:`cpu_has_native_bf16`; measured in ``benchmarks/RESULTS.md``: 1.9x per step, the same
    mIoU), else ``off``. Run directories record the concrete value, so a run in one precision is
    never read back as a run in another.
    """
    import torch

    if mode != "auto":
        return mode
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if dev.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "off"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU) with one number."""
    import torch

    if not isinstance(seed, int) or seed < 0:
        raise SegeduError(f"seed must be a non-negative integer, got {seed!r}.")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def info(device: str | None = "auto") -> dict:
    """Versions, device and default profile, as a flat dict (printed by ``segedu info``)."""
    import torch

    from . import __version__, profiles

    dev = resolve_device(device)
    out = {"segedu": __version__, "python": platform.python_version(), "platform": platform.platform()}
    out.update({name: package_version(name) for name in KEY_PACKAGES})
    import torchvision

    # the modules' own versions carry the build tag (+cu130, +cpu) that the distribution's lacks
    out["torch"], out["torchvision"] = torch.__version__, torchvision.__version__
    out["CUDA (torch build)"] = str(torch.version.cuda)
    out["device"] = f"{dev} - {device_name(dev)}"
    out["default profile"] = profiles.resolve_name("auto")
    return out


def autocast(device, dtype):
    """``torch.autocast`` for ``dtype`` on ``device`` (a ``torch.device``), or a no-op for full
    precision (``dtype`` None): the one context every forward pass of training, inference and the
    cost measurements runs under."""
    import contextlib

    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
