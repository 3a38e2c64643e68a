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
# # Using libraries: segmentation_models_pytorch, timm and mmsegmentation
#
# **What you will learn.** Competition teams rarely write their segmentation models by hand. They
# take them from libraries: **segmentation_models_pytorch** (smp) for a dozen decoders in one line,
# **timm** for over a thousand ImageNet encoders, **mmsegmentation** for a model zoo of published
# recipes driven by configuration files. This chapter shows how each plugs into what the course
# built, trains the library models next to the book's own under one budget, and ends on when a team
# should use which.
#
# **What it builds on.** The architectures of [FCN](06_fcn), [skip connections](08_skip_connections)
# (U-Net) and [receptive field](09_receptive_field) (DeepLab v3+); the same-budget comparison of
# [all architectures](11_comparison); the seed noise floor of
# [experiment discipline](12_experiment_discipline); the baseline of the competition-craft chapters
# ([ablation](18_ablation)).

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchvision

from segedu import models, significance
from segedu.experiments import ablation, compare
from segedu.models import measure
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
prof = session.profile
print(session.describe())
craft = compare.craft_setup(session)
BASE = craft["base"]
size = BASE["image_size"]

# %% [markdown]
# ## Plugging an outside model in
#
# Everything segedu does with a model -- the trainer, the metrics, test-time augmentation, sliding
# windows, ensembles, the `segedu train` command -- needs only an `nn.Module` that maps images
# (B, 3, H, W) to logits (B, C, H, W). Any library model that does that trains and predicts like
# the book's own. Two routes are built in:
#
# * `models.create("smp:Unet", encoder="resnet18")` builds smp's model (any of its architectures:
#   `smp:FPN`, `smp:DeepLabV3Plus`, ...) inside an `SmpModel`. smp's encoders halve the resolution
#   five times, so its decoders need a side that is a multiple of 32. `SmpModel` pads the input
#   (reflection, bottom and right) up to the next multiple and crops the logits back, so it takes
#   any size, like every segedu model. From a shell: `segedu train --model smp:Unet --option
#   encoder=resnet18`.
# * `models.create("deeplabv3plus_timm", encoder="resnet18")` is the book's DeepLab v3+ (the ASPP
#   and decoder of [receptive field](09_receptive_field)) on a timm encoder. timm's
#   `features_only=True` mode cuts any classifier before its head and returns each stage's
#   features; `TimmEncoder` names them after timm's modules and records their channels and
#   strides. That is the interface segedu's own backbones have, so the decoder takes the stride-4
#   feature as its low level and the last one as its high level. `width` then scales only the ASPP
#   and the decoder; the encoder's size is set by its name.
# * The other way round, `models.create("smp:Unet", encoder="segedu-resnet50", encoder_width=0.25,
#   pretrained_backbone="course")` puts the book's ResNet-50 under smp's decoder. smp documents how
#   to add an encoder: a module that returns the list of its stages' features (the image, then
#   strides 2, 4, 8, 16 and 32) and says their channels, entered in smp's table of encoders.
#   segedu's ResNet is entered there, so any smp decoder can start from the course's pretrained
#   encoder, or from torchvision's ImageNet weights at `encoder_width=1.0`.
#
# Both libraries build without a network connection: encoder weights are loaded only when asked
# for (`encoder_weights="imagenet"` for smp's own encoders, `pretrained_backbone=True` or a saved
# file for the timm encoder). This machine has no network, so smp's own encoders would have to
# train from random weights. **The smp models in this chapter use the course's ResNet-50 instead**,
# the pretrained encoder of the book's DeepLab v2, as a team online would use ImageNet's; the
# book's U-Net trains from scratch as in its paper.
#
# The sizes of the models at full scale (11 classes; on smp's own encoders and timm's the size is
# set by the encoder's name, with no width option) and what each route returns for an input of
# 50×70, which is not a multiple of 32:

# %% tags=["nbval-check-output"]
FULL_SCALE = {
    "smp:Unet": {"encoder": "resnet18"},
    "smp:DeepLabV3Plus": {"encoder": "resnet18"},
    "deeplabv3plus_timm": {"encoder": "resnet18"},
    "deeplabv3plus_resnet50": {},
    "unet": {"padding": "same", "batch_norm": True},
}
for name, options in FULL_SCALE.items():
    with torch.device("meta"):
        net = models.create(name, num_classes=11, **options)
    encoder = options.get("encoder", "")
    print(f"{name:<24}{encoder:<10}{type(net).__name__:<15}{measure.parameter_count(net) / 1e6:>7.2f}M parameters")

torch.manual_seed(0)
for name in ("smp:Unet", "deeplabv3plus_timm"):
    net = models.create(name, num_classes=11, encoder="resnet18").eval()
    with torch.no_grad():
        print(f"{name}: input (1, 3, 50, 70) -> logits {tuple(net(torch.rand(1, 3, 50, 70)).shape)}")
timm_dlv3p = models.create("deeplabv3plus_timm", num_classes=11, encoder="resnet18")
print("timm resnet18 features (name: channels @ stride):",
      ", ".join(f"{n}: {c} @ {timm_dlv3p.backbone.strides[n]}" for n, c in timm_dlv3p.backbone.channels.items()))
print(f"DeepLab v3+ reads low level {timm_dlv3p.low_level!r}, high level {timm_dlv3p.high_level!r}")

# %% [markdown]
# smp's DeepLab v3+ on ResNet-18 and the book's on timm's ResNet-18 share the encoder's
# architecture and differ in the head: smp makes the ASPP branches and the refining
# convolution depthwise separable, with one refining convolution after the concatenation; the book
# follows the paper's ResNet experiments (ordinary convolutions, two refining ones). With
# `separable=True` the book's head shrinks too (exercise 1).
#
# ## One budget: the book's models against the libraries'
#
# Four models train under the budget of the architecture and competition-craft chapters (the
# baseline's crop, epochs, optimiser and schedule, `ablation.baseline`), once per seed:
#
# * **Two decoders of smp on the course's ResNet-50**: smp's U-Net and smp's DeepLab v3+, each on
#   segedu's ResNet-50 at the book's width, starting from the course's pretrained weights.
# * **The book's two models**: the craft baseline (the book's DeepLab v2 on the same pretrained
#   ResNet-50), and the book's U-Net, from scratch as in its paper and in
#   [all architectures](11_comparison).
#
# So three of the four share one pretrained encoder and differ only in the decoder, and the two
# U-Nets differ in the encoder and its start. Reported per model: parameters, best validation mIoU
# (mean ± sample standard deviation over the seeds), training images per second (forward, backward
# and update; the median over the seeds) and inference images per second (one batch of crops, eval
# mode, the median of ten passes). Speeds are timings of this machine; the mIoU does not depend on
# them. The book's two models train exactly as in [all architectures](11_comparison), with the same
# configuration and seeds.

# %%
width = BASE["model_options"]["width"]
SEEDS = craft["seeds"]
BOOK = {"unet": "unet", "deeplabv2_r50": "deeplabv2"}  # label: the architecture chapters' model name
# smp's decoders on segedu's ResNet-50 at the book's width: the encoder, and the course's weights,
# of the baseline DeepLab v2
LIBRARY = {
    "smp_unet_r50": ("smp:Unet", {"encoder": "segedu-resnet50", "encoder_width": width}),
    "smp_dlv3p_r50": ("smp:DeepLabV3Plus", {"encoder": "segedu-resnet50", "encoder_width": width}),
}
print(f"crop {size}x{size}, {BASE['epochs']} epochs = {craft['steps']} optimiser steps of batch {prof.batch_size}, "
      f"seeds {SEEDS}, width {width}")
book_runs = compare.train_architectures(session, list(BOOK.values()), seeds=SEEDS)
library_runs = compare.train_plan(session, "libraries", [
    {**BASE, "model": model, "model_options": options, "seed": s, "label": f"{label}-seed{s}"}
    for label, (model, options) in LIBRARY.items() for s in SEEDS], reuse=True)
seed_runs = {label: [book_runs[f"{name}-seed{s}"] for s in SEEDS] for label, name in BOOK.items()}
seed_runs.update({label: [library_runs[f"{label}-seed{s}"] for s in SEEDS] for label in LIBRARY})
builds = {label: (name, {**compare.ARCHITECTURES[name], "width": width}) for label, name in BOOK.items()} | LIBRARY
for label, runs in seed_runs.items():
    start = runs[0].trainer.config.model_options.get("pretrained_backbone") or "random (from scratch)"
    print(f"{label:<16}encoder weights at the start: {start}")

# %%
results = {}
for label, (model, options) in builds.items():
    net = models.create(model, **options).to(session.device)
    mean, sd = ablation.summarise([r.trainer.best_miou for r in seed_runs[label]])
    results[label] = {
        "params": measure.parameter_count(net), "miou": mean, "sd": sd,
        "by_seed": {r.seed: r.trainer.best_miou for r in seed_runs[label]},
        "train_ips": float(np.median([r.train_images_per_s for r in seed_runs[label]])),
        "infer_ips": measure.forward_speed(net, prof.batch_size, size, session.device, repeats=10),
    }
floor = craft["floor"]["val"]
print(f"{'model':<16}{'params':>9}{'val mIoU (mean ± sd)':>23}{'train img/s':>13}{'infer img/s':>13}")
for label, r in results.items():
    print(f"{label:<16}{r['params'] / 1e6:>8.2f}M{r['miou']:>14.4f} ± {r['sd']:.4f}"
          f"{r['train_ips']:>13.1f}{r['infer_ips']:>13.1f}")
print(f"floor (Background everywhere): val mIoU {floor:.4f}\n")
pairs = [("unet", "smp_unet_r50"), ("deeplabv2_r50", "smp_dlv3p_r50"), ("smp_dlv3p_r50", "smp_unet_r50")]
tests = {(a, b): significance.paired(results[b]["by_seed"], results[a]["by_seed"]) for a, b in pairs}
adjusted = dict(zip(tests, significance.holm([t.p for t in tests.values()])))
print(f"paired t-tests over seeds {SEEDS}, Holm-adjusted for {len(tests)} comparisons:")
for (a, b), test in tests.items():
    low, high = test.ci95
    print(f"{b} - {a}: {test.mean_delta:+.4f} (95% CI {low:+.4f} to {high:+.4f}), p (Holm) = "
          f"{adjusted[a, b]:.3f}: {significance.verdict(adjusted[a, b], test.mean_delta, words=('higher', 'lower'))}; "
          f"{results[b]['params'] / results[a]['params']:.1f}x the parameters, "
          f"{results[a]['train_ips'] / results[b]['train_ips']:.1f}x the training time per image")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
colours = {"unet": "tab:blue", "smp_unet_r50": "tab:cyan", "deeplabv2_r50": "tab:red", "smp_dlv3p_r50": "tab:orange"}
for label, r in results.items():
    yerr = 0 if np.isnan(r["sd"]) else r["sd"]
    axes[0].errorbar(r["params"] / 1e6, r["miou"], yerr=yerr, fmt="o", capsize=3, color=colours[label], label=label)
    axes[1].errorbar(r["train_ips"], r["miou"], yerr=yerr, fmt="o", capsize=3, color=colours[label])
axes[0].set_xscale("log")
axes[0].set_xlabel("parameters (millions, log scale)")
axes[1].set_xscale("log")
axes[1].set_xlabel("training images per second (log scale)")
for ax in axes:
    ax.axhline(floor, color="k", linewidth=0.8, linestyle=":", label="floor (Background everywhere)")
    ax.set_ylabel("best validation mIoU")
axes[0].legend(fontsize=8)
fig.suptitle(f"{craft['steps']} steps of {size}x{size} crops, seeds {SEEDS}: mean ± sd")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## mmsegmentation: a model zoo driven by configuration files
#
# mmsegmentation (OpenMMLab) is not imported here: it needs OpenMMLab's `mmcv` and `mmengine`,
# whose compiled operators are tied to particular torch and CUDA builds, and this book keeps its
# environment to pip-installable wheels. What it offers is worth knowing anyway, because much of the
# field's published code and many competition solutions are written as its configurations.
#
# * **Configuration files with inheritance.** A training run is one Python file that lists
#   `_base_` files and overrides what differs. The file
#   `configs/deeplabv3plus/deeplabv3plus_r50-d8_4xb2-40k_cityscapes-512x1024.py` inherits four:
#   `_base_/models/deeplabv3plus_r50-d8.py` (the model), `_base_/datasets/cityscapes.py` (data and
#   pipelines), `_base_/default_runtime.py` (logging, checkpoints) and
#   `_base_/schedules/schedule_40k.py` (optimiser, iterations), then sets the crop size. The name
#   encodes the recipe: algorithm, backbone (`r50-d8`: ResNet-50 at output stride 8),
#   GPUs × images per GPU (`4xb2`), iterations (`40k`), dataset and crop.
# * **Overrides from the command line.** `tools/train.py <config> --cfg-options key=value` merges
#   dotted keys into the loaded configuration (e.g. `model.decode_head.num_classes=11`), the
#   counterpart of `segedu train --option`.
# * **Components built from registries.** Every part is a dict with a `type` looked up in a registry:
#   the model base file above builds `type='EncoderDecoder'` with a `ResNetV1c` backbone (strides
#   `(1, 2, 1, 1)`, dilations `(1, 1, 2, 4)`), a `DepthwiseSeparableASPPHead` (rates 12, 24, 36) and
#   an auxiliary `FCNHead` on stage 3 with `loss_weight=0.4` -- the deep supervision of PSPNet
#   ([receptive field](09_receptive_field)). A new module registers itself and becomes usable from
#   any configuration.
# * **A model zoo.** Each method's folder under `configs/` has a README whose table links, per
#   configuration, a trained checkpoint and its training log, with the scores it reached. A team can
#   start from a published checkpoint of the exact recipe, not just from ImageNet weights.
#
# How its zoo maps onto the course (config names as in mmsegmentation's `configs/` folders):

# %% tags=["nbval-check-output"]
MMSEG_ZOO = {
    "fcn": ("06_fcn", "FCN head on a dilated ResNet", "fcn_r50-d8_4xb2-40k_cityscapes-512x1024.py"),
    "unet": ("08_skip_connections", "U-Net backbone with an FCN, PSP or ASPP head",
             "unet-s5-d16_fcn_4xb4-40k_hrf-256x256.py"),
    "pspnet": ("09_receptive_field", "pyramid pooling, auxiliary FCN head",
               "pspnet_r101-d8_4xb2-40k_cityscapes-769x769.py"),
    "deeplabv3": ("09_receptive_field", "ASPP", "deeplabv3_r50-d8_4xb2-40k_cityscapes-512x1024.py"),
    "deeplabv3plus": ("09_receptive_field", "ASPP + low-level decoder",
                      "deeplabv3plus_r50-d8_4xb2-40k_cityscapes-512x1024.py"),
    "hrnet": ("10_hrnet", "HRNetV2 with an FCN head", "fcn_hr18_4xb4-160k_ade20k-512x512.py"),
    "segformer": ("not in the book", "transformer encoder, MLP decoder", "segformer_mit-b0_8xb2-160k_ade20k-512x512.py"),
}
print(f"{'configs/ folder':<16}{'chapter':<22}{'what':<46}example config")
for folder, (chapter, what, example) in MMSEG_ZOO.items():
    print(f"{folder:<16}{chapter:<22}{what:<46}{example}")

# %% [markdown]
# Several more of its methods are outside this course: UPerNet, OCRNet, and other transformer
# models besides SegFormer. In the zoo these, too, are configurations with a checkpoint and a log.

# %% [markdown]
# ## Swapping in ImageNet weights, on the competition's photos
#
# Every model of this book that starts from an encoder starts from the course's own, trained on
# synthetic images, because this machine downloads nothing. On the competition's real photos, on
# a machine that is online, ImageNet's weights take their place, and each library has one switch
# for it:
#
# * segedu's models: `models.create("deeplabv3plus_resnet50", pretrained="imagenet")` (at width 1.0:
#   ImageNet weights exist only at the paper's channel counts) downloads torchvision's
#   `ResNet50_Weights.IMAGENET1K_V1` once into the torch hub cache; offline it stops with one line
#   saying which file to put where. From a shell: `segedu train --data-dir /data/trash --model
#   deeplabv3plus_resnet50 --width 1 --option pretrained_backbone=imagenet`.
# * smp: `models.create("smp:Unet", encoder="resnet34", encoder_weights="imagenet")`.
# * timm: `models.create("deeplabv3plus_timm", encoder="convnext_tiny", pretrained_backbone=True)`.
#
# An offline machine loads the same weights from a file, `pretrained_backbone=PATH`, a state dict
# saved from torchvision. Here is that path, with a stand-in file of random weights saved the same
# way (the real one is torchvision's download):

# %% tags=["nbval-check-output"]
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "resnet50-imagenet.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    model = models.create("deeplabv3plus_resnet50", pretrained_backbone=str(path))
    saved = torch.load(path, weights_only=True)
checked = ("conv1.weight", "layer4.2.bn3.running_var")
print("the encoder holds the file's weights:", all(torch.equal(model.backbone.state_dict()[k], saved[k]) for k in checked))
del model, saved

# %% [markdown]
# ## When should a team use which
#
# The measured part: under one budget, the table above puts two of smp's decoders next to the
# book's models. Read it with the paired tests, not with the means alone: two models trained with
# the same seeds differ by chance too, and a difference counts only where the paired test across
# the seeds says so ([experiment discipline](12_experiment_discipline)). The rest follows from what
# the libraries are:
#
# * **The book's models** when you need to change the architecture itself (a new skip, a different
#   head, a width sweep), when the model must stay small (they take a width multiplier down to
#   1/8), or when you need to know every line for a paper-faithful reproduction.
# * **smp** when the decoder is standard and what matters is the encoder and its weights: one line
#   swaps among smp's own and timm's encoders (`encoder="tu-<timm name>"`) and, online, starts from
#   their ImageNet weights; and, as this chapter did with the course's ResNet-50, a team's own
#   pretrained encoder enters smp's table and goes under any of its decoders. What the measurement
#   shows: on the same pretrained encoder, smp's DeepLab v3+ scored lower than the book's
#   DeepLab v2 (−0.0628, Holm-adjusted p = 0.030), so the newer library head lost here; the choice
#   among smp's decoders mattered too (its U-Net scored 0.0746 below its DeepLab v3+ on one
#   encoder, p = 0.030). smp's U-Net on the pretrained encoder scored far above the book's U-Net
#   from scratch (+0.1519, p = 0.005), but that gap mixes encoder, start and decoder. On this evidence a
#   library saves the writing of a decoder, not the choosing of one; all three models on
#   the pretrained encoder ended well above the from-scratch U-Net, though only a from-scratch run of
#   the same smp model would separate the encoder's start from its design (exercise 6).
# * **timm inside the book's decoders** (`deeplabv3plus_timm`) when you want a modern encoder
#   without giving up a decoder you control, e.g. to put the same head on several encoders. This
#   chapter shows how it is built and what it returns; it does not train it.
# * **mmsegmentation** when you want to reproduce a published recipe exactly, start from a
#   checkpoint trained on a segmentation dataset, or run many configured experiments; the cost is
#   a heavier install (mmcv built for your torch and CUDA) and a second framework (its own runner,
#   hooks and data pipeline) next to or instead of segedu's.

# %% [markdown]
# ## Summary
#
# This run's numbers: 5 epochs = 240 optimiser steps of batch 8 on 192×192 crops, seeds 0, 1 and 2,
# on 2 cores of an AMD EPYC, in bf16 autocast (mixed precision) with channels-last layout. The baseline and both smp models started from the course's
# pretrained ResNet-50 at width 0.25; the book's U-Net trained from scratch.
#
# | model | parameters | val mIoU | train img/s | infer img/s |
# |---|---:|---:|---:|---:|
# | `unet`: the book's U-Net (width 0.25, from scratch) | 1.94M | 0.1455 ± 0.0050 | 21.3 | 27.6 |
# | `deeplabv2_r50`: the book's DeepLab v2, pretrained ResNet-50 (the baseline) | 1.68M | 0.4349 ± 0.0225 | 23.5 | 76.7 |
# | `smp_unet_r50`: `smp:Unet` on the same pretrained ResNet-50 | 4.62M | 0.2974 ± 0.0103 | 20.6 | 36.3 |
# | `smp_dlv3p_r50`: `smp:DeepLabV3Plus` on the same pretrained ResNet-50 | 2.64M | 0.3721 ± 0.0077 | 26.6 | 57.5 |
#
# Predicting Background everywhere scores 0.0643; the chapter prints no ceiling. The three models on
# the pretrained encoder all ended far above the floor, the baseline highest at 0.4349; the book's
# U-Net from scratch (0.1455) stayed a little above twice the floor.
#
# * **The two U-Nets**: smp's on the pretrained ResNet-50 scored +0.1519 above the book's from
#   scratch (95% CI +0.1239 to +0.1799, Holm-adjusted p = 0.005): higher, with 2.4 times the
#   parameters and 1.0 times the training time per image. The test separates the two
#   models, not the reasons: the pair differs in the encoder (a ResNet-50 of bottleneck blocks
#   against the U-Net's plain pairs of convolutions), in its start (the course's weights against
#   random ones) and in the decoder. The from-scratch U-Net's low score fits He et al. (2019,
#   *Rethinking ImageNet Pre-training*): training from scratch can catch up with a pretrained
#   start, but only with a schedule many times longer than 240 steps. Exercise 6 isolates the
#   pretraining.
# * **DeepLab v3+ against DeepLab v2, one pretrained encoder**: smp's DeepLab v3+ scored −0.0628
#   against the baseline (95% CI −0.1108 to −0.0148, Holm-adjusted p = 0.030): lower, with 1.6
#   times the parameters and 0.9 times the training time per image. The baseline's seeds spread the
#   most of the four (sd 0.0225), yet the paired interval lies wholly below zero. This contradicts the papers, which
#   report DeepLab v3 and v3+ well above v2 on PASCAL VOC (Chen et al. 2017 and 2018). Two things
#   stand between the papers' setting and this one. The new head is larger (the 1.6 times above, on
#   the same encoder) and has 240 steps to learn from random weights. And smp's default is output stride 16 with ASPP rates 12, 24 and
#   36: a 192×192 crop leaves a 12×12 map, on which every off-centre tap of those atrous kernels
#   falls outside the map, so the three atrous branches act as 1×1 convolutions and the ASPP sees no
#   more context than its image-pooling branch gives; the baseline works at output stride 8
#   (exercise 5).
# * **Two smp decoders on one encoder**: smp's U-Net scored −0.0746 against smp's DeepLab v3+
#   (95% CI −0.1144 to −0.0349, Holm-adjusted p = 0.030): lower, with 1.8 times the parameters and
#   1.3 times the training time per image. Encoder and start were the same, so the
#   decoder made the difference. A likely reason: most of smp's U-Net is its decoder (the whole baseline, encoder
#   included, has 1.68M parameters against the U-Net's 4.62M), which starts from random weights and
#   must be trained in 240 steps, while DeepLab v3+ puts a smaller new head on the pretrained
#   features. It is a verdict for this short schedule and this encoder, not a ranking of the two
#   architectures in general.
# * **Parameters are not speed.** The baseline, with the fewest parameters (1.68M), was the
#   fastest to predict (76.7 images/s), although its encoder's last two stages run at stride 8, on
#   four times as many positions as smp's stride 16. It was not the fastest to train: smp's
#   DeepLab v3+ (2.64M) trained at 26.6 images/s against the baseline's 23.5, and predicted at 57.5.
#   smp's U-Net trained the slowest of the four (20.6 images/s). The two U-Nets were the slowest to
#   predict (27.6 and 36.3 images/s), because their decoders convolve all the way up to full
#   resolution; smp's U-Net, with 2.4 times the book's parameters, trained at about the book's
#   speed (20.6 against 21.3 images/s) and predicted faster. These speeds are timings on a
#   2-core CPU: the training figure is a median over three seeds, the inference one a median of
#   ten passes, with no test of their differences.
# * The mmsegmentation part is description, not measurement: its configuration files, registries
#   and model zoo, and where its methods meet this course.
#
# ## Exercises
#
# 1. Build `deeplabv3plus_timm` with `separable=True` and count its parameters against
#    `smp:DeepLabV3Plus` on the same encoder. Where does the remaining difference come from?
# 2. `SmpModel` pads the input to a multiple of 32. For a 500×375 image, how many pixels does it
#    add, and what fraction of the forward pass is spent on them?
# 3. Put the book's DeepLab v3+ on `efficientnet_b0` (`encoder="efficientnet_b0"`). Which timm
#    features become the low and high level, with how many channels, and how many parameters does
#    the model have at width 1.0?
# 4. Write the mmsegmentation configuration (a `_base_` list and the overrides) that would train
#    `deeplabv3plus_r50-d8` on this course's 11 classes, with this chapter's 192×192 crops.
# 5. smp's DeepLab v3+ ran its encoder at output stride 16, the baseline DeepLab v2 at 8. First, on
#    a 192×192 crop, which taps of a 3×3 kernel at rate 12, 24 or 36 land inside the feature map at
#    stride 16, and at stride 8? Then train `smp:DeepLabV3Plus` with `encoder_output_stride=8` (the
#    same encoder, course weights and seeds) and run the paired tests against its stride-16 runs and
#    against the baseline. Does the head comparison change when both heads see the same resolution,
#    and what does it cost in training images per second?
# 6. Separate pretraining from architecture: train `smp:Unet` on `segedu-resnet50` at width 0.25
#    with `pretrained_backbone=False` and the same seeds, and test it against its pretrained runs
#    (the pretraining effect on one architecture) and against the book's U-Net (encoder and decoder,
#    both from scratch). Which part of the +0.1519 between the two U-Nets does each explain?
