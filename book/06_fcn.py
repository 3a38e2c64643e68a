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
# # FCN: fully convolutional networks
#
# **What you will learn.** How Long, Shelhamer and Darrell (CVPR 2015) turned an image
# classifier into a segmentation network: the fully connected layers of VGG16 *are*
# convolutions, so the network takes any input size and outputs a coarse map of class scores;
# transposed convolutions bring that map back to full resolution; and skip connections from
# earlier layers (FCN-16s, FCN-8s) put back the detail that 32× downsampling lost. We write one
# training step out by hand, measure what a pretrained encoder buys against training from
# scratch, then train the three variants with segedu's engine and measure what the skips buy,
# overall and at the boundaries.
#
# **What it builds on.** [Transposed convolution](05_transposed_convolution) for the
# upsampling, [metrics](04_metrics) for mIoU, and [the dataloader](03_dataloader_and_augmentation).

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import torchvision

from segedu import models, significance, viz
from segedu.data import IGNORE_INDEX, dataset, transforms
from segedu.experiments import compare, encoders
from segedu.inference.evaluate import background_floor
from segedu.inference.predict import normalize
from segedu.models import course, fcn, measure
from segedu.models.backbones import vgg
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
print(session.describe())

# %% [markdown]
# ## A classifier's fully connected layers are convolutions
#
# VGG16 ends with three fully connected layers: fc6 takes the 512×7×7 output of the last pooling
# layer, fc7 and fc8 follow. A fully connected layer on a 7×7 map is a 7×7 convolution with no
# padding: the same weights, reshaped from (4096, 25088) to (4096, 512, 7, 7). fc7 and fc8
# become 1×1 convolutions. segedu's `ConvolutionalizedVGG16.from_torchvision` does exactly that
# reshaping; on a 224×224 image both give the same 1000 scores (here with torchvision's VGG16
# at random initialisation: no download is needed to check an identity).

# %% tags=["nbval-check-output"]
torch.manual_seed(seed)
classifier = torchvision.models.vgg16(weights=None).eval()
convolutional = fcn.ConvolutionalizedVGG16.from_torchvision(classifier).eval()
print("fc6 weight:", tuple(classifier.classifier[0].weight.shape), "->",
      tuple(vgg.linear_to_conv_weight(classifier.classifier[0].weight, 512, 7).shape))
image = torch.rand(1, 3, 224, 224)
with torch.no_grad():
    scores_fc = classifier(image)
    scores_conv = convolutional(image)
print("FC output:", tuple(scores_fc.shape), "| conv output:", tuple(scores_conv.shape))
print("same scores:", torch.allclose(scores_fc, scores_conv.flatten(1), atol=1e-5))

# %% [markdown]
# The convolutional version takes a larger image and returns a *map* of scores, one per 32-pixel
# step: the classifier applied to every 224×224 window at once, sharing all computation. This is
# the coarse output FCN starts from.

# %% tags=["nbval-check-output"]
with torch.no_grad():
    for size in (224, 320, 512):
        print(f"input {size}x{size} -> score map {tuple(convolutional(torch.rand(1, 3, size, size)).shape)}")
del classifier, convolutional  # 138M parameters each

# %% [markdown]
# ## The fc6 7×7 problem, and padding by 100
#
# The 7×7 fc6 convolution needs a pool5 map of at least 7×7, i.e. an input of at least 224
# pixels (every 2×2 pooling halves it; VGG's five poolings give a stride of 32), and its output
# is 6 cells smaller than its input. The authors' Caffe model solves both by padding the *first*
# convolution by 100 pixels, so any input of at least one pixel survives to fc7, and then
# *cropping* each upsampled map back into register with the input (offsets 5, 9, 19, 27, 31,
# derived from the layers' strides and paddings). Its transposed convolutions have no padding:
# FCN-32s's final one has kernel 64 and stride 32 with $p=0$, and the crop at offset 19 puts its
# output in register. The modern alternative, segedu's default and that of most
# reimplementations, pads the image to a multiple of 32, gives fc6 a padding of 3 and each
# upsampling a padding of half its stride ($k=64, s=32, p=16$ for FCN-32s, exactly 32× larger),
# and crops back at the end.
# Shapes through FCN-8s for a 100×75 image, both ways:

# %% tags=["nbval-check-output"]
x = torch.rand(1, 3, 100, 75)
for pad100 in (True, False):
    net = models.create("fcn8s", width=0.125, pad100=pad100).eval()
    with torch.no_grad():
        feats = net._features(x)
        out = net(x)
    shapes = "  ".join(f"{k} {tuple(v.shape[-2:])}" for k, v in feats.items())
    print(f"pad100={pad100!s:<5} {shapes}  -> logits {tuple(out.shape[-2:])}")
print("Caffe crop offsets:", fcn.CAFFE_OFFSETS)

# %% [markdown]
# ## FCN-32s, FCN-16s, FCN-8s
#
# FCN-32s upsamples fc7's class scores 32× in one step (a transposed convolution fixed to
# bilinear interpolation). FCN-16s first upsamples 2×, adds class scores computed from pool4
# (stride 16), then upsamples 16×; FCN-8s does the same once more with pool3 (stride 8).
#
# The new score layers start at zero, as in the paper, where that mattered because training
# was staged: FCN-32s was trained first, FCN-16s was initialised from it, so it started out
# predicting almost what FCN-32s did (almost: two bilinear upsamplings in a row are not one
# bilinear upsampling), and FCN-8s was initialised from FCN-16s in the same way. The paper's
# mean IU on a subset of VOC2011 val for FCN-32s, FCN-16s and FCN-8s is
# 59.4 / 62.4 / 62.7 (Long et al. 2015, Table 2). This chapter does not stage: each variant is
# trained on its own, from the same pretrained encoder and under the same budget (below), so a
# zero start only means that a skip contributes nothing until training gives it weight
# (exercise 1 tries the staged way).
#
# Parameter counts at the paper's scale (21 PASCAL classes; the paper reports 134M for
# FCN-VGG16), built on the `meta` device so nothing is allocated. `measure.parameter_counts`
# separates what training changes from the frozen 32× bilinear kernel of FCN-32s, which some
# sources count and others do not:

# %% tags=["nbval-check-output"]
for name in ("fcn32s", "fcn16s", "fcn8s"):
    with torch.device("meta"):
        net = models.create(name, num_classes=21)
    print(f"{name}: {measure.parameter_counts(net)}")

# %% [markdown]
# ## One training step, written out
#
# Everything the book trains goes through segedu's `Trainer`, but a training step is a few lines
# of PyTorch. Here are five of them for FCN-32s: a batch of crops and masks, the forward pass, the
# per-pixel cross-entropy (void pixels, 255, left out), the backward pass and one optimiser
# update. The images arrive in [0, 1] and are normalised with ImageNet's mean and standard
# deviation, as the pretrained encoder expects.

# %%
prof = session.profile
torch.manual_seed(seed)
net = models.create("fcn32s", width=prof.width, batch_norm=True,
                    **encoders.encoder_weights("fcn32s", prof, {"batch_norm": True})).to(session.device).train()
train_data = dataset.CocoSegmentation(session.data_dir, "train", transform=transforms.train_transform(prof, seed=seed))
loader = dataset.make_loader(train_data, prof.batch_size, shuffle=True, seed=seed, drop_last=True)
optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
for step, (images, masks) in zip(range(5), loader):
    images, masks = images.to(session.device), masks.to(session.device)
    logits = net(normalize(images))                                   # (B, 11, H, W)
    loss = F.cross_entropy(logits, masks, ignore_index=IGNORE_INDEX)  # mean over labelled pixels
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"step {step + 1}: batch {tuple(images.shape)}, loss {loss.item():.3f}")
del net, optimizer

# %% [markdown]
# The `Trainer` adds what a real run needs around that loop: the learning-rate schedule,
# validation after every epoch, checkpoints it can resume from, seeds that make a run repeatable,
# and a log of everything.
#
# ## What a pretrained encoder buys
#
# Every FCN of the paper starts from VGG16 trained on ImageNet; only the score layers start
# fresh. This machine downloads nothing, so the course ships its own stand-in: a VGG16 with batch
# norm trained by `segedu pretrain` to segment a large synthetic corpus that none of the book's
# splits share (its model card is printed below). FCN-8s trains twice under one budget, once
# from that encoder and once from scratch, with seeds 0, 1 and 2. The budget is small: crops of
# 192×192 pixels, batches of 8, 5 epochs of 48 steps (240 optimiser steps), AdamW at a learning
# rate of $10^{-3}$ with a cosine schedule, and a network at a quarter of the paper's channels
# (`width=0.25`):

# %%
card = course.cards().get(course.file_name("vgg16_bn", prof.width)) if prof.encoder_weights == "course" else None
if card:
    print(f"course encoder vgg16_bn at width {prof.width}: {card['steps']} steps on {card['corpus']['images']} "
          f"synthetic images, pretext val mIoU {card['pretext_val_miou']}, {card['seconds'] / 60:.0f} min on "
          f"{card['machine']}")
floor = background_floor(session.data_dir, "val")["miou"]
print(f"floor: predicting Background everywhere scores val mIoU {float(floor):.4f}")
trained = compare.train_architectures(session, ("fcn32s", "fcn16s", "fcn8s"), seeds=prof.seeds)
variants = {name: [trained[f"{name}-seed{s}"] for s in prof.seeds] for name in ("fcn32s", "fcn16s", "fcn8s")}
scratch_plan = [{"model": "fcn8s", "seed": s, "label": f"fcn8s-scratch-seed{s}",
                 "model_options": {"batch_norm": True, "pretrained_backbone": False}} for s in prof.seeds]
scratch = list(compare.train_plan(session, "06_fcn", scratch_plan, reuse=True).values())
pretrained = variants["fcn8s"]
for label, group in ((f"fcn8s from {prof.encoder_weights or 'no'} weights", pretrained), ("fcn8s from scratch", scratch)):
    print(f"{label:<32} best val mIoU " + "  ".join(f"{r.trainer.best_miou:.4f}" for r in group))
test = significance.paired({r.seed: r.trainer.best_miou for r in pretrained},
                           {r.seed: r.trainer.best_miou for r in scratch})
print(f"pretrained - scratch: {significance.describe(test)}")

# %%
curves = {f"{'course encoder' if run in pretrained else 'scratch'}, seed {run.seed}": run.trainer.history
          for run in pretrained + scratch}
viz.plot_learning_curves(curves, title="FCN-8s, same budget", floor=floor)
plt.show()

# %% [markdown]
# With the course encoder, FCN-8s reached a best validation mIoU of 0.3208, 0.3140 and 0.3102 on
# seeds 0, 1 and 2; from scratch, under the same 240 steps, it reached 0.1520, 0.1570 and 0.1554.
# Predicting Background everywhere scores 0.0643, so the scratch runs learned something, but not
# much. Paired seed by seed, the difference is +0.1602 (95% CI +0.1416 to +0.1788), t(2) = 37.04,
# $p < 0.001$ (a single test, so there is nothing to correct for): the pretrained encoder helps, by
# far more than the seeds vary.
#
# The reason is the one the paper gives for starting from ImageNet. In 240 steps a randomly
# initialised VGG16 has to learn edges, textures and object parts before it can learn classes; the
# pretrained encoder arrives with features that already separate objects from their
# surroundings, so the steps go to the score layers and to adapting those features. Here the
# encoder was pretrained on a synthetic corpus, not on ImageNet, and the effect agrees with the
# paper all the same.
#
# ## FCN-32s, FCN-16s and FCN-8s from the pretrained encoder
#
# The three variants train from the course's encoder under the same budget (data, augmentation,
# schedule, steps), once per seed. The seed changes the score layers' initial weights, the data
# order and the augmentation; the same seed is shared by the three variants, so their
# differences are compared seed by seed.

# %%
for name, group in variants.items():
    print(f"{name}: best val mIoU " + "  ".join(f"{r.trainer.best_miou:.4f}" for r in group)
          + f"   (floor {float(floor):.4f})")
viz.plot_learning_curves({f"{name}, seed {group[0].seed}": group[0].trainer.history for name, group in variants.items()},
                         title="FCN variants, same budget", floor=floor)
plt.show()

# %% [markdown]
# ## Per class, and at the boundaries
#
# Each model's best checkpoint is scored on the validation images at their own resolution
# (`compare.score_runs`): over all pixels, and only on the pixels within 3 pixels of a boundary
# between two classes (the "trimap" band, `segedu.metrics.boundary_band`), where a coarse output
# must fail first. The table shows seed 0. Then paired t-tests over the seeds compare each pair
# of variants, overall and in the band, with Holm's correction over the six tests.

# %%
every_run = {run.label: run for group in variants.values() for run in group}
scores = compare.score_runs({label: run.run_dir for label, run in every_run.items()}, session.data_dir,
                            device=session.device, batch_size=prof.batch_size)
print(f"floor (all Background): val mIoU {float(floor):.4f}\n")
print(compare.per_class_table({group[0].label: scores[group[0].label] for group in variants.values()}))

# %%
pairs = [(key, what, a, b) for key, what in (("overall", "mIoU"), ("boundary", "boundary mIoU"))
         for a, b in (("fcn16s", "fcn32s"), ("fcn8s", "fcn32s"), ("fcn8s", "fcn16s"))]
tests = [compare.paired_seeds(scores, variants[a], variants[b], key=key) for key, _, a, b in pairs]
adjusted = significance.holm([t.p for t in tests])  # six tests, one family
for (key, what, a, b), test, p in zip(pairs, tests, adjusted):
    print(f"{what:<14} {a} - {b}: {test.mean_delta:+.4f} (95% CI {test.ci95[0]:+.4f} to {test.ci95[1]:+.4f}), "
          f"p (Holm) = {p:.3f}: {significance.verdict(p, test.mean_delta, words=('higher', 'lower'))}")

# %% [markdown]
# **The skips help; the second one adds too little to tell.** FCN-32s reached 0.1372, 0.1094 and
# 0.1481 on the three seeds, FCN-16s 0.3009, 0.2911 and 0.2987, FCN-8s 0.3208, 0.3140 and 0.3102
# (the floor is 0.0643: FCN-32s ends not far above it, the skip variants well above it). Paired
# over the seeds and Holm-corrected over the six tests, both skip variants score higher than
# FCN-32s: by +0.1654 mIoU for FCN-16s (95% CI +0.1266 to +0.2041) and by +0.1834 for FCN-8s
# (95% CI +0.1306 to +0.2362), p = 0.014 each. Between FCN-8s and FCN-16s there is no evidence of
# a difference: FCN-8s was above FCN-16s on each of the three seeds, by +0.0181 on average, and
# that test's own interval (+0.0033 to +0.0328) leaves out zero, but it is one of six tests, and
# corrected for the six its p is 0.068. Three seeds are too few to settle a step this small. The
# pool3 skip's estimated gain is far below the pool4 skip's, the same ordering as in the paper,
# where FCN-16s to FCN-8s was also the smaller gain. FCN-32s also varies most between seeds: its
# seeds span 0.1094 to 0.1481, those of FCN-8s only 0.3102 to 0.3208.
#
# Per class (seed 0), FCN-32s learned 2 of the 10 object classes, the two most common in the data
# ([chapter 02](02_eda)): Plastic bag (0.585) and, just above the IoU of 0.10 at which this book
# counts a class as learned, Paper (0.107). FCN-16s added Plastic (0.374) and Styrofoam (0.588)
# and raised Paper to 0.624 and Plastic bag to 0.799. FCN-8s raised all four (Paper 0.656, Plastic
# 0.381, Styrofoam 0.675, Plastic bag 0.820) and found a little General trash (0.060, below 0.10):
# still 4 classes. No variant learned Paper pack, Metal, Glass, Battery or Clothing, the five
# rarest classes, likely because 240 steps show them too few examples. Pixel accuracy (0.799,
# 0.905, 0.912) looks high for all three because Background covers most pixels; mIoU weighs every
# class equally.
#
# In the boundary band the skips help against FCN-32s too: by +0.0907 for FCN-16s and +0.1071 for
# FCN-8s (p = 0.006 and 0.014). For FCN-8s over FCN-16s there is no evidence of a
# difference in the band: +0.0164 (95% CI -0.0027 to +0.0356), p = 0.068. The band is where every
# variant does worst (0.0784, 0.1654 and 0.1875 on seed 0, against 0.1372, 0.3009 and 0.3208 over
# all pixels), but in these seed-0 runs the skips did not gain more there than elsewhere: from
# FCN-32s to FCN-8s both scores grow in about the same proportion. At this scale the skips do not
# mainly sharpen edges; they make whole objects appear that FCN-32s misses.
#
# That is far from the paper, where the skips added little: 59.4 → 62.4 → 62.7 mean IU (Long et
# al. 2015, Table 2). The crops are small: a 192-pixel crop gives FCN-32s a 6×6 score map, each
# cell standing for a 32×32 patch, while a PASCAL image is up to 500 pixels across and its objects
# often fill much of it. And the objects are small: many trash items are narrower than one
# 32-pixel cell at training size ([chapter 02](02_eda)), so a cell mixes an object with its
# background, and a single 32× bilinear upsampling can paint only a blob over it, or nothing.
# pool4 (stride 16) and pool3 (stride 8) see these objects at their own scale, which is likely why
# the first skip matters far more here. The second, from pool3, behaves more like the paper's: a
# small step, here too small to separate from the variation between seeds. The paper also trained
# far longer, and staged its variants.
#
# Predictions of the three variants on one validation image (seed 0):

# %%
val = dataset.CocoSegmentation(session.data_dir, "val")
image, mask = val[0]
first_seed = {name: group[0].run_dir for name, group in variants.items()}
viz.show_predictions(image, mask, compare.predictions(first_seed, image, session.device), names=val.class_names)
plt.show()

# %% [markdown]
# ## Summary
#
# * VGG16's fully connected layers, reshaped, are convolutions with the same outputs (`same
#   scores: True`), and the convolutional network maps any input size to a score map.
# * Padding conv1 by 100 and cropping (Caffe) or padding to a multiple of 32 (segedu's default)
#   both return logits at the input size; the shapes table shows both.
# * From the course's pretrained VGG16, FCN-8s reached 0.3102 to 0.3208 validation mIoU in 240
#   steps on 192-pixel crops; from scratch, 0.1520 to 0.1570, against a floor of 0.0643. The
#   pretrained encoder helps: +0.1602, $p < 0.001$ over 3 seeds.
# * The skips help against FCN-32s, far more than in the paper: FCN-16s and FCN-8s score higher
#   than FCN-32s (0.1094 to 0.1481) by +0.1654 and +0.1834 mIoU (Holm-corrected p = 0.014 each),
#   and by +0.0907 and +0.1071 in the boundary band (p = 0.006 and 0.014). Between FCN-8s and FCN-16s
#   there is no evidence of a difference: +0.0181 mIoU and +0.0164 in the band, p = 0.068 each. On
#   seed 0, FCN-32s learned 2 of the 10 object classes (IoU >= 0.10), FCN-16s 4 and FCN-8s 4; none
#   learned Paper pack, Metal, Glass, Battery or Clothing.
#
# ## Exercises
#
# 1. Train FCN-16s starting from the FCN-32s checkpoint (`load_state_dict(..., strict=False)`),
#    as the paper does. Does it reach the same mIoU in fewer epochs?
# 2. Change the boundary band from 3 to 1 and 8 pixels. How does the gap between FCN-32s and
#    FCN-8s change with the band width?
# 3. Train FCN-8s with `pad100=True`. Are the results different? Is it slower, and why?
