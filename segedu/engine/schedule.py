"""Optimisers and learning-rate schedules, all from torch.

Warm-up is a ``LinearLR`` from 1% of the learning rate, chained before the main schedule with
``SequentialLR``; the main schedule is cosine annealing (``CosineAnnealingLR``), the polynomial
decay of DeepLab (``PolynomialLR``, power 0.9), a constant rate, or ``ReduceLROnPlateau`` on the
validation mIoU (stepped once per epoch with the metric instead of once per optimiser step).
"""
from __future__ import annotations

import torch

from .config import TrainConfig


def build_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(optimizer, config: TrainConfig, total_steps: int):
    """A per-step scheduler, or ``ReduceLROnPlateau`` (per epoch, ``mode='max'`` on val mIoU)."""
    sched = torch.optim.lr_scheduler
    if config.scheduler == "plateau":
        return sched.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=1)
    warmup = min(config.warmup_steps, max(total_steps - 1, 0))
    main_steps = max(total_steps - warmup, 1)
    if config.scheduler == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=main_steps, eta_min=config.lr * 1e-2)
    elif config.scheduler == "poly":
        main = sched.PolynomialLR(optimizer, total_iters=main_steps, power=config.poly_power)
    else:
        main = sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup == 0:
        return main
    ramp = sched.LinearLR(optimizer, start_factor=0.01, end_factor=1.0, total_iters=warmup)
    return sched.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def learning_rates(config: TrainConfig, total_steps: int) -> list[float]:
    """The learning rate of each of ``total_steps`` optimiser steps under ``config``'s scheduler and
    warm-up, as the trainer steps it (not for ``plateau``, which follows the validation score)."""
    if config.scheduler == "plateau":
        raise ValueError("the plateau scheduler's rates depend on the validation scores; there is no fixed curve.")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = build_scheduler(optimizer, config, total_steps)
    rates = []
    for _ in range(total_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates
