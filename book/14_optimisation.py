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
# With 1024 labelled pixels in each micro-batch the two gradients agree: each micro-batch mean
# weighs its pixels by one over its count, and halving the two means gives every pixel the weight
# it has in the mean over the batch of 8. With the second micro-batch three-quarters void it holds
# 256 labelled pixels against 1024, and the check fails. The batch of 8 weighs all its labelled
# pixels alike; the accumulated step gives each micro-batch half the weight, so a labelled pixel of
# the sparse micro-batch weighs 4 times one of the full micro-batch. The few labelled pixels of the
# sparse micro-batch steer half the step: a different step, not a noisier copy of the large-batch
# one. The trainer accumulates as most libraries do,
# mean per micro-batch; the difference is largest for crops that are mostly void or mostly one
# image's border.
#
# Batch norm breaks the equivalence a second way: each micro-batch normalises with its own
# statistics, so a batch of 4 accumulated twice is *not* a batch of 8 even with every pixel
# labelled. The `accumulate2` trick (half the batch, twice the accumulation) would measure both
# effects together on our baseline, whose encoder and decoder are full of batch norm layers; it is
# not trained in this chapter, so what it does to the score is left open (exercise 3).
#
# ## Mixed precision: what it buys where
#
# Autocast runs convolutions and matrix products in 16-bit floats and keeps reductions such as the
# loss in 32 bits. FP16 needs a gradient scaler (small gradients underflow to zero in FP16's narrow
# range); bf16 has FP32's range and needs none. The engine's `amp="auto"` uses bf16 on GPUs that
# have it, FP16 with a `GradScaler` on older ones, and on a CPU bf16 only where the processor has
# bf16 instructions (Intel AMX or AVX512-BF16). Why only there? Here is one training step of the
# baseline model, timed in each precision this machine can run:

# %%
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
# gain anything; on the others PyTorch emulates bf16, more slowly than fp32, which is why
# `amp='auto'` checks for the instructions. This AMD EPYC has them (`amp='auto'` printed bfloat16
# above): one training step of the baseline ran at 19.6 images/s in fp32 and 27.8 with bf16
# autocast, 1.42×. So the runs of this chapter, like those of every other chapter, trained with
# `amp='auto'`: in bf16 autocast, with the model and its images also stored channels-last (each
# pixel's channels side by side in memory, the layout the CPU's convolution kernels prefer). The
# timing above keeps the default layout, so it measures the precision alone, not the whole speed-up
# of the runs. Since every chapter trained the same way, their numbers compare with each other;
# whether bf16's rounding moves a score against fp32 is for you to measure (exercise 4).
#
# ## Warm-up and label smoothing on the baseline
#
# Two tricks of this family change the baseline's training: a warm-up over the first 10% of the
# steps, and label smoothing 0.1 (each pixel's target puts $1 - 0.1$ on its class and spreads 0.1 over
# all classes). Only these two are trained here, three seeds each, against the baseline's same
# three seeds. The poly and plateau schedules and accumulation are listed but not trained, so this
# chapter says nothing about what they do to the score.

# %% tags=["nbval-check-output"]
for trick in ablation.FAMILIES["optimisation"]:
    print(f"{trick:<16}{ablation.TRICKS[trick]}")

# %%
tricks = ablation.tricks_for(prof, "optimisation")
trained = compare.train_tricks(session, tricks)
print(f"tricks: {', '.join(tricks)}; seeds {SEEDS} each")
rows = compare.trick_rows(trained, tricks, SEEDS)
print(ablation.render(rows, floor=craft["floor"]["val"]))

# %%
viz.plot_ablation(rows, f"optimisation, {len(SEEDS)} seeds each")
plt.show()

# %% [markdown]
# Every run learned: the baseline scores 0.4349 ± 0.0225 val mIoU over three seeds, far above the
# all-Background floor of 0.0643 (no ceiling is measured here, so how close that is to the best
# these images allow stays open). There is no evidence that either trick moved it. Label
# smoothing scores 0.4462 ± 0.0100, a difference of +0.0113 whose 95% interval runs from −0.0237 to
# +0.0463, p (Holm) 0.598; warm-up scores 0.4322 ± 0.0348, −0.0027, interval −0.1034 to +0.0981,
# p (Holm) 0.920. Both intervals contain zero and both differences are inside the noise floor of
# 0.0450. The seeds scatter widely (warm-up's sd of 0.0348 is the largest in the table), so the
# intervals are wide: with three seeds, even a sizeable effect in either direction cannot be ruled
# out.
#
# The *train s* column cannot be read as a cost. Neither trick adds or removes computation in a
# step: warm-up changes only the learning rate, label smoothing only the target of the same
# cross-entropy. Their 74.1 s (label smoothing) and 68.6 s (warm-up) per run against the
# baseline's 84.2 s (−10.2 s and −15.7 s) therefore show how much the speed of this 2-core machine
# varies from one run to the next, not a saving the tricks bring.
#
# The table below shows where each run of the first seed ended after its 5 epochs: the training
# loss of the last epoch (the mean over its batches), the best validation mIoU over the epochs and
# the final learning rate.

# %%
first = {t: trained[f"{t}-seed{SEEDS[0]}"].trainer for t in ["baseline", *tricks]}
print(f"{'run':<18}{'train loss':>11}{'val mIoU':>10}{'final lr':>11}")
for t, record in first.items():
    last = record.history[-1]
    print(f"{t:<18}{last['train_loss']:>11.4f}{record.best_miou:>10.4f}{last['lr']:>11.2e}")

# %% [markdown]
# ## Summary
#
# In this run: DeepLab v2 on a ResNet-50 at width 0.25, fine-tuned from the course's pretrained
# encoder, 192×192 crops, batch 8, 5 epochs of 384 training images (240 optimiser steps), AdamW with
# a cosine schedule, seeds 0, 1 and 2, trained in bf16 autocast (mixed precision) with channels-last
# on 2 CPU cores of an AMD EPYC. The all-Background floor is 0.0643 val mIoU; no ceiling is measured.
#
# * **Schedules.** Over 100 steps the cosine rate is at half its peak at step 50 (0.000505) and
#   ends at 1% of it; poly ends at 0.000016; a 10-step warm-up starts at 0.00001 and reaches the
#   peak at step 10. The three seed-0 runs all ended at 1% of the peak, 1.00e-05.
# * **Gradient accumulation** equals a larger batch only when every micro-batch has the same number
#   of labelled pixels (1024 and 1024: equal; 1024 and 256: not, a sparse pixel weighs 4 times).
# * **Mixed precision on this CPU.** In one timing, a training step in bf16 autocast ran at
#   27.8 images/s against 19.6 in fp32, 1.42×: a gain on this AMD EPYC, which has bf16
#   instructions, smaller than the GPU speed-ups quoted above. That is why this chapter's runs, like
#   every other chapter's, trained with `amp='auto'`, in bf16 autocast with channels-last.
# * **Warm-up: no evidence.** 0.4322 ± 0.0348 against 0.4349 ± 0.0225, −0.0027, interval −0.1034 to
#   +0.0981, p (Holm) 0.920: a slightly lower mean, inside the noise floor of 0.0450. That fits where
#   warm-up comes from: Goyal et al. (2017) introduced it for large-batch SGD at large learning
#   rates, where the first steps can throw training off. Fine-tuning a pretrained encoder with AdamW
#   at 1e-3 and batch 8 is far from that setting, and nothing here shows it needs the protection.
#   Its seed-0 run ended at a training loss of 0.3581 against 0.3639 and a val mIoU of 0.4380
#   against 0.4094: on that single run warm-up scored higher, yet over three seeds its mean is the
#   lower one. One seed alone would have suggested a gain that the paired test does not support.
# * **Label smoothing: no evidence.** 0.4462 ± 0.0100 against 0.4349 ± 0.0225, +0.0113, interval
#   −0.0237 to +0.0463, p (Holm) 0.598: the highest mean of the three, but inside the noise floor.
#   Szegedy et al. (2016) introduced label smoothing with the same 0.1 as a regulariser for ImageNet
#   classification and reported a small improvement in error; this chapter can neither confirm nor
#   contradict a small gain on segmentation, because its interval is too wide to tell. Its training
#   loss is much higher (0.7985 against 0.3639 on seed 0) because a smoothed target cannot be fitted
#   to zero loss, not because it learned less: its seed-0 val mIoU is 0.4368 against 0.4094, and its
#   mean 0.4462 against 0.4349.
# * **What this does not say.** Warm-up's runs took 15.7 s less than the baseline's and label
#   smoothing's 10.2 s less, although neither trick changes the computation, so nothing here
#   measures a cost or a saving. Poly, plateau and accumulation were not trained, so nothing here
#   says whether they help.
#
# ## Exercises
#
# 1. A run of 240 optimiser steps with 10% warm-up: at which step does the learning rate first reach
#    its peak, and what is it at step 0 with peak 0.001? Check with `schedule.learning_rates`.
# 2. Label smoothing raises the training loss even for a perfect model. What is the smallest
#    cross-entropy a model can reach with 11 classes and smoothing 0.1? Compare it with the gap
#    between the label-smoothing and baseline training losses above.
# 3. Train `accumulate2` with the baseline's three seeds and run the paired test. Does it find
#    evidence? Which layers make a batch of 4 accumulated twice differ from a batch of 8?
# 4. The book's runs trained in bf16 autocast with channels-last. Train the baseline's three seeds
#    in fp32 (`amp="off"` and `channels_last=False`) and compare them with the book's bf16 runs in a
#    paired test. How much longer was each fp32 run, and did the score move?
