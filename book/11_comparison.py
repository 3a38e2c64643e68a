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
# # All architectures under one budget
#
# **What you will learn.** Papers compare architectures on different datasets, backbones,
# pre-training, crop sizes and schedules, so their tables cannot tell you which model to pick for
# *your* data and *your* machine. Here every architecture of the course trains on the same data,
# the same crops, the same optimiser and schedule and the same number of steps, from scratch, with
# several seeds each; we then put mIoU (mean ± standard deviation over the seeds) next to the
# parameters, the FLOPs, and the training and inference speed measured on the machine that ran
# the notebook. The verdict at the end is read off these numbers, including where they cannot
# tell two models apart.
#
# **What it builds on.** Every architecture chapter: [FCN](06_fcn), [decoder models](07_decoder_models),
# [skip connections](08_skip_connections), [receptive field](09_receptive_field) and [HRNet](10_hrnet);
# the seed spread measured in the FCN chapter.

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from segedu import models
from segedu.experiments import compare
from segedu.models import measure
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
prof = session.profile
print(session.describe())

# %% [markdown]
# ## The contestants
#
# One model per architecture, at the profile's width, with the options each needs to learn from
# scratch in a short run, as in the earlier chapters: batch norm after every convolution for the
# VGG-based FCN-8s, DeepLab v1 and DilatedNet and for U-Net (the papers start from ImageNet
# weights or train for long; DeconvNet, SegNet and the rest have batch norm already), DeconvNet
# with `pad_fc6=True` so that it computes at the crop's size instead of padding every image to
# 224×224 (see [decoder models](07_decoder_models)), PSPNet with its auxiliary head, DeepLab v3 at
# output stride 8 and v3+ at 16 (their defaults). Parameters and FLOPs at the papers' scale are
# for a 512×512 image and 11 classes; "trained" is the model at the profile's width, its FLOPs at
# the comparison's crop size.

# %% tags=["nbval-check-output"]
CONTESTANTS = {
    "fcn8s": {"batch_norm": True},
    "deconvnet": {"pad_fc6": True},
    "segnet": {},
    "fcdensenet56": {},
    "unet": {"padding": "same", "batch_norm": True},
    "deeplabv1": {"batch_norm": True},
    "dilatednet": {"batch_norm": True},
    "deeplabv2": {},
    "pspnet_resnet50": {"aux": True},
    "deeplabv3_resnet50": {},
    "deeplabv3plus_resnet50": {},
    "hrnetv2_w18": {},
}
paper_scale = {}
for name, options in CONTESTANTS.items():
    with torch.device("meta"):
        net = models.create(name, **options)
    paper_scale[name] = (measure.parameter_count(net), measure.flop_count(net, 512))
    print(f"{name:<24}{paper_scale[name][0] / 1e6:>7.1f}M{paper_scale[name][1] / 1e9:>8.0f} GFLOPs at 512x512")

# %%
size = prof.image_size
trained_scale = {}
for name, options in CONTESTANTS.items():
    with torch.device("meta"):
        net = models.create(name, width=prof.width, **options)
    trained_scale[name] = (measure.parameter_count(net), measure.flop_count(net, size))
    print(f"{name:<24}{trained_scale[name][0] / 1e6:>7.3f}M{trained_scale[name][1] / 1e9:>8.2f} GFLOPs at "
          f"{size}x{size}, width {prof.width}")

# %% [markdown]
# ## The budget
#
# Each model trains for the profile's comparison budget: the same epochs over the same training
# images at the same crop size, batch size, optimiser (AdamW, learning rate 1e-3, cosine schedule)
# and augmentation, once per seed. The seed changes the initial weights, the data order and the
# augmentation. Everything else is held fixed, so the spread over seeds is the noise any
# difference between two models has to exceed.

# %%
print(f"crop {size}x{size}, {prof.epochs} epoch(s), batch {prof.batch_size}, seeds {list(prof.seeds)}, "
      f"width {prof.width}")
plan = [{"model": name, "model_options": options, "seed": s}
        for name, options in CONTESTANTS.items() for s in prof.seeds]
runs = compare.train_plan(session, "11_comparison", plan)
total = sum(run.seconds for run in runs.values())
print(f"{len(runs)} runs trained in {total / 60:.1f} min on {session.device_name}")

# %%
scores = compare.score_runs({label: run.run_dir for label, run in runs.items()}, session.data_dir,
                            device=session.device, batch_size=prof.batch_size)
groups = {name: [f"{name}-seed{s}" for s in prof.seeds] for name in CONTESTANTS}
overall = compare.seed_summary(scores, groups)
boundary = compare.seed_summary(scores, groups, key="boundary")
train_speed = {name: float(np.mean([runs[label].train_images_per_s for label in labels])) for name, labels in groups.items()}
infer_speed = {name: float(np.mean([scores[label]["images_per_s"] for label in labels])) for name, labels in groups.items()}

# %% [markdown]
# ## The table
#
# Sorted by mean mIoU on the validation images (scored at their own resolution). Speeds are
# images per second on this machine (training: forward, backward and update on the comparison's
# crops; inference: the validation images resized to the crop, one batch at a time), averaged over
# the seeds.

# %%
order = sorted(CONTESTANTS, key=lambda name: -overall[name][0])
print(f"{'model':<24}{'mIoU':>16}{'boundary mIoU':>18}{'params':>9}{'GFLOPs':>8}{'train img/s':>13}{'infer img/s':>13}")
for name in order:
    (m, sd, n), (bm, bsd, _) = overall[name], boundary[name]
    print(f"{name:<24}{m:>9.4f} ± {sd:.4f}{bm:>11.4f} ± {bsd:.4f}{trained_scale[name][0] / 1e6:>8.2f}M"
          f"{trained_scale[name][1] / 1e9:>8.2f}{train_speed[name]:>13.1f}{infer_speed[name]:>13.1f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
means = [overall[name][0] for name in order]
stds = [overall[name][1] for name in order]
axes[0].barh(range(len(order)), means, xerr=stds, color="tab:blue", alpha=0.8, capsize=3)
for i, name in enumerate(order):
    values = [scores[label]["overall"]["miou"] for label in groups[name]]
    axes[0].plot(values, [i] * len(values), "k.", markersize=4)
axes[0].set_yticks(range(len(order)), order, fontsize=8)
axes[0].invert_yaxis()
axes[0].set_xlabel("validation mIoU (bar: mean, line: ± std, dots: seeds)")
axes[0].set_title(f"same budget, {len(prof.seeds)} seeds")
for name in order:
    axes[1].scatter(infer_speed[name], overall[name][0], s=20 + 400 * trained_scale[name][0] / max(p for p, _ in trained_scale.values()))
    axes[1].annotate(name, (infer_speed[name], overall[name][0]), fontsize=7, xytext=(3, 3), textcoords="offset points")
axes[1].set_xscale("log")
axes[1].set_xlabel("inference images/s on this machine (log)")
axes[1].set_ylabel("mean validation mIoU")
axes[1].set_title("accuracy against speed (marker area: parameters)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The verdict
#
# Two models are told apart here only when their mean mIoU differ by more than twice the larger
# of their two seed standard deviations; otherwise this budget cannot rank them. The lines below
# apply that rule to the best model, and name the fastest models within that margin.

# %%
best = order[0]
margin = lambda a, b: 2 * max(overall[a][1], overall[b][1])  # noqa: E731
tied = [name for name in order[1:] if overall[best][0] - overall[name][0] <= margin(best, name)]
print(f"highest mean mIoU: {best} {overall[best][0]:.4f} ± {overall[best][1]:.4f}")
print(f"not separable from it at this budget: {', '.join(tied) if tied else 'none'}")
contenders = [best, *tied]
print(f"fastest at inference among those: {max(contenders, key=infer_speed.get)} "
      f"({max(infer_speed[n] for n in contenders):.1f} images/s); "
      f"fastest to train: {max(contenders, key=train_speed.get)}")
print(f"lowest mean mIoU: {order[-1]} {overall[order[-1]][0]:.4f} ± {overall[order[-1]][1]:.4f}")
best_boundary = max(CONTESTANTS, key=lambda name: boundary[name][0])
print(f"highest boundary mIoU: {best_boundary} {boundary[best_boundary][0]:.4f} ± {boundary[best_boundary][1]:.4f}")
largest_spread = max(CONTESTANTS, key=lambda name: overall[name][1])
print(f"largest seed spread: {largest_spread} (std {overall[largest_spread][1]:.4f})")
print("Spearman correlation of mIoU rank with parameter rank (at trained width): "
      f"{np.corrcoef(np.arange(len(order)), np.argsort(np.argsort([-trained_scale[n][0] for n in order])))[0, 1]:+.2f}")

# %% [markdown]
# ## What this does and does not say
#
# * The ranking is for *this* budget: from scratch, a few epochs, small crops and reduced widths
#   on the profile's data. A model that needs a long schedule or ImageNet weights may rank
#   differently under another budget. In a competition you would start from pretrained
#   encoders; the gpu profile (see [how to use this book](00_how_to_use)) runs the same comparison
#   at a larger size and budget.
# * The seed spread is part of the result: where the verdict says two models cannot be separated,
#   a single run of each (what most blog posts compare) would have named a winner by chance.
# * Speed is measured on the machine named at the top of the chapter. It depends on the hardware
#   as much as on the architecture, so measure on your own machine before choosing by it.
#
# ## Summary
#
# The cpu profile's numbers (one epoch at 64×64 crops, width 0.25, seeds 0, 1 and 2; the 36 runs
# trained in 8.5 min on 2 CPU cores). Every trained model had a quarter of its paper's channels, so
# "DeepLab v3+ (ResNet-50)" below means the paper's architecture on a ResNet-50 at width 0.25:
#
# * **Verdict: DeepLab v3+ (ResNet-50 at width 0.25).** It had the highest mean mIoU,
#   0.0912 ± 0.0032, and the highest boundary mIoU, 0.0569 ± 0.0008. Every model whose seeds agree (std below 0.01) is
#   separated from it by the two-spread rule; the next, DeepLab v3, scored 0.0783 ± 0.0023.
# * U-Net (0.0858 ± 0.0339) and DeconvNet (0.0500 ± 0.0320) cannot be separated from v3+ only
#   because their seeds disagree so much: one epoch from scratch is not enough for them to train
#   reliably, and a single run of either could have put it first or last.
# * Size does not predict accuracy here: the rank correlation between mIoU and trained parameters
#   is −0.10. FC-DenseNet56 at width 0.25 (0.09M parameters) scored 0.0693, DeconvNet at width
#   0.25 (15.75M) 0.0500.
# * Speed on 2 CPU cores: DeepLab v1 was the fastest to train (64.8 images/s) and to run (167.2),
#   at 0.0649 mIoU; v3+ trained at 54.2 and ran at 160.6 images/s. The four fastest models at
#   inference (DeepLab v1, SegNet, U-Net, v3+) lie between 160.6 and 167.2 images/s, too close to rank on
#   one measurement. At the papers' scale v3+ is one of the cheapest models, 138 GFLOPs for a
#   512×512 image against 222 to 1184 for all the others except HRNetV2-W18 (37) and
#   FC-DenseNet56 (93).
# * v3+'s saving over v3 (138 against 327 GFLOPs at the papers' scale) comes mostly from the
#   output stride, not from the architecture: here v3 runs its last stages and its ASPP at output
#   stride 8 and v3+ at 16, so v3's ASPP works on four times as many positions. At the same output
#   stride v3+ would cost more than v3, since its decoder adds work. The same stride is
#   the likely reason v3 also trained slower (38.7 against 54.2 images/s).
# * The ranking is for this budget only: short, from scratch and small. It is the question to
#   ask again with pre-trained encoders and the full schedule (exercises 1 and 4).
#
# ## Exercises
#
# 1. Double the epochs (pass `epochs=2 * prof.epochs` to `train_plan`). Which models
#    gain the most? Does the verdict change?
# 2. Add `deeplabv3plus_xception`, `fcdensenet103` and `hrnetv2_w48`. Does a larger member of a
#    family beat the smaller one at this budget?
# 3. Give every model the same *time* budget instead of the same number of steps (use each model's
#    measured training speed to set its epochs). How does the ranking change?
# 4. With ImageNet weights (`pretrained_backbone=True`, online), repeat the comparison for the
#    models that support them. Which gain the most from pre-training?
