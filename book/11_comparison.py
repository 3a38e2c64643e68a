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

from segedu import models, significance
from segedu.experiments import compare
from segedu.inference.evaluate import background_floor
from segedu.models import measure
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
prof = session.profile
test_labels = str(session.data_dir / "test_labels.json")  # the labelled test split: used once, at the end
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
CONTESTANTS = {name: options for name, options in compare.ARCHITECTURES.items() if name not in ("fcn32s", "fcn16s")}
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
# Each model trains for the book's one budget: the same epochs over the same training images at
# the same crop size, batch size, optimiser (AdamW, learning rate 1e-3, cosine schedule) and
# augmentation. The encoder-based models start from the course's pretrained encoders, as their
# papers start from ImageNet; U-Net and FC-DenseNet start from scratch, as theirs do. Each chapter
# before this one trained its models with the session's seed, so this chapter reads those runs
# back and trains nothing new for the first round.

# %%
print(f"crop {prof.image_size}x{prof.image_size}, {prof.epochs} epochs, batch {prof.batch_size}, width {prof.width}, "
      f"encoders: {prof.encoder_weights or 'none (from scratch)'}")
floor = {split: float(background_floor(session.data_dir, split)["miou"]) for split in ("val", test_labels)}
first = compare.train_architectures(session, CONTESTANTS)
print(compare.describe_runs(first))
scores = compare.score_runs({name: first[f"{name}-seed{seed}"].run_dir for name in CONTESTANTS}, session.data_dir,
                            device=session.device, batch_size=prof.batch_size)
train_speed = {name: first[f"{name}-seed{seed}"].train_images_per_s for name in CONTESTANTS}
infer_speed = {name: scores[name]["images_per_s"] for name in CONTESTANTS}

# %% [markdown]
# ## The table
#
# Sorted by mIoU on the validation images (scored at their own resolution), one run each. Speeds
# are images per second on this machine (training: forward, backward and update on the crops;
# inference: the validation images resized to the crop, one batch at a time).

# %%
order = sorted(CONTESTANTS, key=lambda name: -scores[name]["overall"]["miou"])
print(f"floor (Background everywhere): val mIoU {floor['val']:.4f}\n")
print(f"{'model':<24}{'mIoU':>8}{'boundary':>10}{'classes':>9}{'params':>9}{'GFLOPs':>8}{'train img/s':>13}"
      f"{'infer img/s':>13}")
for name in order:
    iou = np.asarray(scores[name]["overall"]["iou"], dtype=float)
    learned = int(np.sum(np.nan_to_num(iou[1:]) >= 0.10))  # object classes at IoU >= 0.10
    print(f"{name:<24}{float(scores[name]['overall']['miou']):>8.4f}{float(scores[name]['boundary']['miou']):>10.4f}"
          f"{learned:>6}/10{trained_scale[name][0] / 1e6:>8.2f}M{trained_scale[name][1] / 1e9:>8.2f}"
          f"{train_speed[name]:>13.1f}{infer_speed[name]:>13.1f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
axes[0].barh(range(len(order)), [float(scores[n]["overall"]["miou"]) for n in order], color="tab:blue", alpha=0.8)
axes[0].axvline(floor["val"], color="k", linestyle="--", linewidth=1, label="all Background")
axes[0].set_yticks(range(len(order)), order, fontsize=8)
axes[0].invert_yaxis()
axes[0].set_xlabel("validation mIoU, one run each")
axes[0].legend(fontsize=8)
axes[0].set_title("same budget")
for name in order:
    axes[1].scatter(infer_speed[name], float(scores[name]["overall"]["miou"]),
                    s=20 + 400 * trained_scale[name][0] / max(p for p, _ in trained_scale.values()))
    axes[1].annotate(name, (infer_speed[name], float(scores[name]["overall"]["miou"])), fontsize=7, xytext=(3, 3),
                     textcoords="offset points")
axes[1].set_xscale("log")
axes[1].set_xlabel("inference images/s on this machine (log)")
axes[1].set_ylabel("validation mIoU")
axes[1].set_title("accuracy against speed (marker area: parameters)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The finalists, over three seeds, on the test images
#
# One run per model ranks them, but a single run can be lucky, and the ranking above was read on
# the validation images, which therefore no longer measure the winners fairly. The three best
# train with every seed of the profile, and the verdict is read on the labelled test images, which
# no choice has touched: each finalist against the best, by a paired t-test over the seeds (the
# same seed gives two models the same data order and augmentation), Holm-corrected for the two
# comparisons.

# %%
finalists = order[:3]
final = compare.train_architectures(session, finalists, seeds=prof.seeds)
print(compare.describe_runs(final))
test_scores = compare.score_runs({label: run.run_dir for label, run in final.items()}, session.data_dir,
                                 split=test_labels, device=session.device, batch_size=prof.batch_size)
groups = {name: [f"{name}-seed{s}" for s in prof.seeds] for name in finalists}
summary = compare.seed_summary(test_scores, groups)
print(f"floor (Background everywhere): test mIoU {floor[test_labels]:.4f}\n")
for name in finalists:
    mean, sd, n = summary[name]
    print(f"{name:<24} test mIoU {mean:.4f} ± {sd:.4f} (n = {n})")
best = max(finalists, key=lambda name: summary[name][0])
tests = {name: compare.paired_seeds(test_scores, [final[label] for label in groups[name]],
                                    [final[label] for label in groups[best]]) for name in finalists if name != best}
adjusted = dict(zip(tests, significance.holm([t.p for t in tests.values()])))
for name, test in tests.items():
    print(f"{name} - {best}: {test.mean_delta:+.4f} (95% CI {test.ci95[0]:+.4f} to {test.ci95[1]:+.4f}), "
          f"p (Holm) = {adjusted[name]:.3f}: {significance.verdict(adjusted[name], test.mean_delta)}")
print()
print(compare.per_class_table({groups[best][0]: test_scores[groups[best][0]]}))

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
# <!-- results summary: written from the cpu run -->
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
