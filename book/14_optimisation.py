# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3 (segedu)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Competition craft: optimisation
#
# **What you will learn.** How the learning-rate schedules of the course (cosine, polynomial,
# reduce-on-plateau) and a linear warm-up shape training; what gradient accumulation is and when it
# equals a larger batch; what mixed precision (FP16, bf16) buys on a GPU and what it does on a
# CPU; and what warm-up and label smoothing change in our baseline's score, one change at a time.
#
# **What it builds on.** The training engine of the [FCN chapter](06_fcn) (its optimiser, schedule
# and AMP options) and the baseline, seeds and noise rule of
# [experiment discipline](12_experiment_discipline). Its runs are reused by the
# [ablation table](18_ablation).

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from segedu import models, viz
from segedu.data import IGNORE_INDEX
from segedu.engine import TrainConfig, schedule
from segedu.experiments import ablation, compare
from segedu.engine.trainer import amp_dtype
from segedu.models import measure
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
prof = session.profile
print(session.describe())
craft = compare.craft_setup(session)
BASE, SEEDS = craft["base"], craft["seeds"]
print(craft["describe"])

# %% [markdown]
# ## Schedules and warm-up
#
# The engine steps its scheduler once per optimiser step. *Cosine* annealing falls from the peak
# rate to 1% of it along half a cosine; DeepLab's *poly* decay multiplies the peak by
# $(1 - t/T)^{0.9}$; *plateau* halves the rate when the validation mIoU stops rising (it follows
# the scores, so it has no fixed curve). A *warm-up* first ramps the rate linearly from 1% of the
# peak: Adam's early updates, made from few gradient samples, are large and noisy, and a small
# rate keeps them from throwing the freshly initialised decoder far off. The curves below are the
# rates `schedule.learning_rates` reads from the same schedulers the trainer builds, for a run of
# 100 steps at peak rate 0.001 with 10 warm-up steps.

# %% tags=["nbval-check-output"]
curves = {f"{name}{' + warm-up' if warm else ''}": schedule.learning_rates(
              TrainConfig(scheduler=name, warmup_steps=10 if warm else 0, lr=1e-3), 100)
          for name in ("cosine", "poly", "constant") for warm in (False, True)}
for label, rates in curves.items():
    print(f"{label:<20} step 0: {rates[0]:.6f}  step 10: {rates[10]:.6f}  step 50: {rates[50]:.6f}  "
          f"step 99: {rates[99]:.6f}")

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.2))
for label, rates in curves.items():
    ax.plot(rates, label=label, ls="--" if "warm" in label else "-")
ax.set_xlabel("optimiser step")
ax.set_ylabel("learning rate")
ax.set_title("the engine's schedules, 100 steps, peak 1e-3")
ax.legend(fontsize=7, ncol=2)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Gradient accumulation
#
# `accumulate=k` adds up the gradients of `k` micro-batches, each loss divided by `k`, and then
# takes one optimiser step. For a model without batch norm this is the step of one batch `k` times
# larger, with one condition that segmentation breaks easily: the loss is a mean over the
# *labelled* pixels (void pixels, 255, are left out). One batch of 8 averages over all its
# labelled pixels; two micro-batches of 4 average within each, then average the two means. The
# two agree only when both micro-batches hold the same number of labelled pixels. Here is a model
# without batch norm (one 1×1 convolution), first with every pixel labelled, then with the second
# micro-batch's images three-quarters void:

# %% tags=["nbval-check-output"]
torch.manual_seed(0)
tiny = torch.nn.Conv2d(3, 4, 1)
images, labels = torch.rand(8, 3, 16, 16), torch.randint(0, 4, (8, 16, 16))


def gradient(masks, micro_batches):
    """The weight gradient of one optimiser step made of ``micro_batches`` accumulated parts."""
    tiny.zero_grad()
    for part, target in zip(images.chunk(micro_batches), masks.chunk(micro_batches)):
        loss = F.cross_entropy(tiny(part), target, ignore_index=IGNORE_INDEX)
        (loss / micro_batches).backward()
    return tiny.weight.grad.clone()


voided = labels.clone()
voided[4:, :12] = IGNORE_INDEX  # images 5-8: the top 12 of 16 rows void
for name, masks in (("every pixel labelled", labels), ("second micro-batch 3/4 void", voided)):
    counts = [int((part != IGNORE_INDEX).sum()) for part in masks.chunk(2)]
    one, two = gradient(masks, 1), gradient(masks, 2)
    print(f"{name:<28} labelled pixels per micro-batch {counts}: 2 x 4 accumulated equals one batch of 8: "
          f"{torch.allclose(one, two, atol=1e-7)}")
print(f"in the second case a labelled pixel of the sparse micro-batch weighs {counts[0] / counts[1]:.0f} times "
      "one of the full micro-batch")

# %% [markdown]
# With unequal counts every labelled pixel of the sparse micro-batch weighs more than one of the
# full micro-batch, so the accumulated step is a different step, not a noisier copy of the
# large-batch one. The trainer accumulates as most libraries do, mean per micro-batch;
# the difference is largest for crops that are mostly void or mostly one image's border.
#
# Batch norm breaks the equivalence a second way: each micro-batch normalises with its own
# statistics, so a batch of 4 accumulated twice is *not* a batch of 8 even with every pixel
# labelled. The `accumulate2` trick (half the batch, twice the accumulation) measures both effects
# together on our baseline, whose encoder and decoder are full of batch norm layers; the smoke and
# gpu profiles train it.
#
# ## Mixed precision: what it buys where
#
# Autocast runs convolutions and matrix products in 16-bit floats and keeps reductions such as the
# loss in 32 bits. FP16 needs a gradient scaler (small gradients underflow to zero in FP16's narrow
# range); bf16 has FP32's range and needs none. The engine's `amp="auto"` uses bf16 on GPUs that
# have it, FP16 with a `GradScaler` on older ones, and nothing on a CPU. Why nothing on a CPU? Here
# is one training step of the baseline model, timed in each precision this machine can run:

# %% tags=["nbval-check-output"]
cuda = session.device.type == "cuda"
modes = {"fp32": None, "bf16 autocast": torch.bfloat16, **({"fp16 autocast": torch.float16} if cuda else {})}
print(f"precisions timed on this device: {', '.join(modes)}; engine's amp='auto' here: "
      f"{amp_dtype('auto', session.device) or 'fp32 (no autocast)'}")

# %%
speed = {}
for label, dtype in modes.items():
    torch.manual_seed(0)
    model = models.create(BASE["model"], **BASE["model_options"])
    speed[label] = measure.training_speed(model, prof.batch_size, BASE["image_size"], session.device, dtype=dtype,
                                          repeats=3, warmup=1)
print(f"{'precision':<16}{'images/s':>10}{'vs fp32':>9}{'peak MiB':>10}")
for label, s in speed.items():
    peak = "-" if s["peak_mib"] is None else f"{s['peak_mib']:.0f}"
    print(f"{label:<16}{s['images_per_s']:>10.1f}{s['images_per_s'] / speed['fp32']['images_per_s']:>8.2f}x{peak:>10}")

# %% [markdown]
# On a GPU, 16-bit tensor cores roughly double the arithmetic rate and halve the activation
# memory (`benchmarks/RESULTS.md` has the H100 numbers: 1.95× to 2.2× with bf16 and channels-last
# on ResNet-50 models). On a CPU it depends on the processor: only those with bf16 instructions
# gain anything, and the gain is small next to a GPU's. The engine therefore leaves autocast off
# on CPUs by default (`--amp bf16` switches it on); the table above is this machine's answer.
#
# ## Warm-up and label smoothing on the baseline
#
# Two tricks of this family change the baseline's training: a warm-up over the first 10% of the
# steps, and label smoothing 0.1 (each pixel's target puts $1 - 0.1$ on its class and spreads 0.1 over
# all classes). The smoke and gpu profiles also train the poly and plateau schedules and the
# accumulation trick; the cpu profile trains two, to stay inside the book's hour.

# %% tags=["nbval-check-output"]
for trick in ablation.FAMILIES["optimisation"]:
    print(f"{trick:<16}{ablation.TRICKS[trick]}")

# %%
tricks = ablation.tricks_for(prof, "optimisation")
trained = compare.train_tricks(session, tricks)
print(f"trained in the {prof.name} profile: {', '.join(tricks)}; {compare.describe_runs(trained)}")
rows = compare.trick_rows(trained, tricks, SEEDS)
print(ablation.render(rows, floor=craft["floor"]["val"]))

# %%
viz.plot_ablation(rows, f"optimisation, {len(SEEDS)} seeds each ({prof.name} profile)")
plt.show()

# %% [markdown]
# Each run trained a single epoch, so it has one record, not a curve: the table below shows where
# each run of the first seed ended (its training loss, the mean over the epoch's batches, its
# validation mIoU and its final learning rate), not how it got there.

# %%
first = {t: trained[f"{t}-seed{SEEDS[0]}"].trainer for t in ["baseline", *tricks]}
print(f"{'run':<18}{'train loss':>11}{'val mIoU':>10}{'final lr':>11}")
for t, record in first.items():
    last = record.history[-1]
    print(f"{t:<18}{last['train_loss']:>11.4f}{record.best_miou:>10.4f}{last['lr']:>11.2e}")

# %% [markdown]
# ## Summary
#
# The cpu profile's numbers (DeepLab v3+ at width 0.125, one epoch of 48 steps on 64×64 crops,
# seeds 0, 1 and 2, 2 CPU cores of an Intel Xeon):
#
# * **Schedules.** Over 100 steps the cosine rate is at half its peak at step 50 (0.000505) and
#   ends at 1% of it; poly ends at 0.000016; a 10-step warm-up starts at 0.00001 and reaches the
#   peak at step 10.
# * **Mixed precision on this CPU.** One training step of the baseline model ran at 167.3 images/s
#   in fp32 and 186.6 with bf16 autocast, 1.12×: a small gain next to a GPU's 2×, and one that
#   depends on the CPU having bfloat16 instructions. This is why the engine's `amp="auto"` leaves
#   the CPU in fp32: the same numbers on every CPU matter more here than a tenth of the time.
# * **Warm-up hurt**: 0.0827 ± 0.0007 against 0.0869 ± 0.0015, −0.0042, beyond the noise (0.0030).
#   Five of the 48 steps at a reduced rate are a tenth of a training this short; its training loss
#   ended higher (2.18 against 2.09 on seed 0).
# * **Label smoothing** lowered the mean by 0.0048, within its own wide seed spread (2 × 0.0034).
# * **What this does not say.** Warm-up protects long runs with large rates, and label smoothing
#   is a regulariser against over-confidence; neither problem exists after one epoch. The gpu
#   profile also trains the poly and plateau schedules and gradient accumulation.
#
# ## Exercises
#
# 1. A run of 48 optimiser steps with 10% warm-up: at which step does the learning rate first reach
#    its peak, and what is it at step 0 with peak 0.001? Check with `schedule.learning_rates`.
# 2. Label smoothing raises the training loss even for a perfect model. What is the smallest
#    cross-entropy a model can reach with 11 classes and smoothing 0.1?
# 3. Train `accumulate2` on this profile. Is the difference from the baseline within the noise?
#    Which layers make a batch of 4 accumulated twice differ from a batch of 8?
