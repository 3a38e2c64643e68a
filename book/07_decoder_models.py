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
# # Decoder models: DeconvNet and SegNet
#
# **What you will learn.** FCN upsamples its coarse score map with a few transposed
# convolutions and borrows detail from the encoder through skip connections. Two networks of
# 2015 built a whole *decoder* instead, a mirror image of the VGG16 encoder that undoes it stage
# by stage: DeconvNet (Noh, Hong and Han, ICCV 2015) and SegNet (Badrinarayanan, Kendall and
# Cipolla, IEEE TPAMI 2017). Both upsample by *unpooling*: each max pooling of the encoder
# remembers where its maxima were (the "switches", or "pooling indices"), and the decoder puts
# values back at exactly those positions. You will see unpooling next to a transposed
# convolution on a 4×4 example, follow the shapes through both networks, count their
# parameters at the papers' scale (252M against 29.5M, and why), measure their speed, memory
# and receptive fields, and train both next to FCN-8s under one budget.
#
# **What it builds on.** [Transposed convolution](05_transposed_convolution) for DeconvNet's
# layers, [FCN](06_fcn) for VGG16's convolutionalised fc6/fc7 and the reference model,
# [metrics](04_metrics) for mIoU and the boundary band.

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import matplotlib.pyplot as plt
import torch
from torch import nn

from segedu import models, viz
from segedu.data import dataset
from segedu.engine import load_model
from segedu.experiments import compare
from segedu.inference.evaluate import background_floor
from segedu.inference.predict import normalize
from segedu.models import deconvnet, measure
from segedu.models.blocks import pad_to_multiple
from segedu.models.receptive_field import (effective_receptive_field, empirical_receptive_field,
                                          theoretical_receptive_field)
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
prof = session.profile
print(session.describe())

# %% [markdown]
# ## Unpooling with switches, and transposed convolution
#
# A 2×2 max pooling of stride 2 keeps one value of each window. Called with
# `return_indices=True`, it also returns *where* that value was: the flat position (row × width
# + column) of the maximum in the input plane. `nn.MaxUnpool2d` takes the pooled values and those
# indices and writes each value back at its maximum's position, zeros everywhere else. A
# transposed convolution with a 2×2 kernel of stride 2 instead *spreads* every value over its
# whole window, with the same learned pattern in every window whatever the input looked like.
# Here on a 4×4 map (the transposed convolution's kernel is set by hand to 1, 2, 3, 4 so its
# pattern is visible):

# %% tags=["nbval-check-output"]
x = torch.tensor([[1., 5., 2., 0.],
                  [3., 2., 8., 1.],
                  [0., 4., 1., 6.],
                  [7., 2., 3., 2.]]).reshape(1, 1, 4, 4)
pooled, indices = nn.MaxPool2d(2, stride=2, return_indices=True)(x)
unpooled = nn.MaxUnpool2d(2, stride=2)(pooled, indices)
transposed = nn.ConvTranspose2d(1, 1, 2, stride=2, bias=False)
with torch.no_grad():
    transposed.weight.copy_(torch.tensor([[1., 2.], [3., 4.]]).reshape(1, 1, 2, 2))
    spread = transposed(pooled)
print("input:\n", x[0, 0].int())
print("max pooled:\n", pooled[0, 0].int())
print("switches (flat positions in the 4x4 input):\n", indices[0, 0])
print("max unpooled (values back at the maxima):\n", unpooled[0, 0].int())
print("transposed convolution, kernel [[1, 2], [3, 4]] (every value spread over its window):\n",
      spread[0, 0].int())

# %% [markdown]
# The unpooled map is *sparse*: three quarters of it are zeros, and where the non-zeros sit is
# information about the input that the pooled values alone have lost (the 8 came from the top
# row of its window, the 7 from the bottom-left corner). It is exactly the gradient of max
# pooling: backpropagating the pooled map through the pooling gives the same map. Both decoders
# follow unpooling with learned layers that "densify" it (Noh et al., Sec. 3.2.2); a 3×3
# convolution of ones shows how one layer fills the zeros:

# %% tags=["nbval-check-output"]
x_grad = x.clone().requires_grad_(True)
pooled_again, _ = nn.MaxPool2d(2, stride=2, return_indices=True)(x_grad)
pooled_again.backward(pooled_again.detach())
print("unpooling == gradient of max pooling:", torch.equal(unpooled, x_grad.grad))
densify = nn.Conv2d(1, 1, 3, padding=1, bias=False)
with torch.no_grad():
    densify.weight.fill_(1.0)
    dense = densify(unpooled)
print("zeros after unpooling:", int((unpooled == 0).sum()), "of 16; after one 3x3 convolution:",
      int((dense == 0).sum()), "of 16")
print(dense[0, 0].int())

# %% [markdown]
# ## Two mirrored networks
#
# Both papers take VGG16's 13 convolutions as the encoder (in segedu with batch normalisation
# after every convolution, as both papers use it), five stages each ending in a max pooling that
# records its switches. They differ in what comes after pool5 and in the decoder's layer:
#
# * **DeconvNet** keeps VGG16's fc6 and fc7 as convolutions (Sec. 3.1): fc6 is a 7×7
#   convolution without padding, so the paper's 224×224 input (a 7×7 pool5) becomes a 1×1 map of
#   4096 channels, a description of the whole input, which in the paper is one object proposal
#   (more on that below). The decoder mirrors all of it: "deconv-fc6",
#   a 7×7 transposed convolution, takes 1×1 back to 7×7; then per stage an unpooling with that
#   stage's switches and 3×3 transposed convolutions ("deconvolution layers", Sec. 3.2.2), each
#   with batch norm and ReLU; a 1×1 convolution gives the class scores.
# * **SegNet** drops the fully connected layers altogether (Sec. 3): pool5 goes straight into the
#   decoder, whose stages unpool with the encoder's indices and apply ordinary 3×3 convolutions
#   with batch norm and ReLU. The last decoder convolution is the classifier.
#
# (A 3×3 transposed convolution of stride 1 and padding 1 computes the same kind of function as a
# 3×3 convolution of padding 1, a flipped kernel; the real differences are fc6/fc7 and
# deconv-fc6.) segedu's models pad the image at the bottom and right to a multiple of 32, so
# that every pooling halves exactly and every unpooling restores the size its pooling saw, and
# crop the logits back. DeconvNet's unpadded fc6 also needs a pool5 of at least 7×7: by default
# segedu pads a smaller image up to 224×224, the paper's input; with `pad_fc6=True` it instead
# pads fc6 and deconv-fc6 by 3 so pool5 keeps its size. Shapes (channels, height, width) through
# both for one 100×75 image, at width 0.125 (an eighth of the paper's channels):

# %% tags=["nbval-check-output"]
def trace_shapes(model, x, layers):
    """(name, output shape) of each named layer in one forward pass, then the logits."""
    seen = []

    def record(name):
        def hook(module, inputs, output):
            tensor = output[0] if isinstance(output, tuple) else output
            seen.append((name, tuple(tensor.shape[1:])))
        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in layers]
    with torch.no_grad():
        seen.append(("logits (cropped)", tuple(model(x).shape[1:])))
    for handle in handles:
        handle.remove()
    return seen


x = torch.rand(1, 3, 100, 75)
segnet_net = models.create("segnet", width=0.125).eval()
segnet_layers = [(f"pool{i + 1}", segnet_net.encoder.features[p])  # each max pooling of VGG16
                 for i, p in enumerate(segnet_net.encoder.pool_indices)]
segnet_layers += [(f"unpool{5 - i} + conv{5 - i}_D", stage) for i, stage in enumerate(segnet_net.decoder)]
segnet_layers += [("conv1_1_D (classifier)", segnet_net.classifier)]
traces = {"segnet": trace_shapes(segnet_net, x, segnet_layers)}
for pad_fc6 in (False, True):
    net = models.create("deconvnet", width=0.125, pad_fc6=pad_fc6).eval()
    layers = [(f"pool{i + 1}", net.encoder.features[p]) for i, p in enumerate(net.encoder.pool_indices)]
    layers += [("fc6", net.encoder.fc6), ("fc7", net.encoder.fc7), ("deconv-fc6", net.decoder.fc6_deconv)]
    layers += [(f"unpool{5 - i} + deconv{5 - i}_x", stage) for i, stage in enumerate(net.decoder.stages)]
    layers += [("seg-score (classifier)", net.classifier)]
    traces[f"deconvnet pad_fc6={pad_fc6}"] = trace_shapes(net, x, layers)
for label, rows in traces.items():
    print(f"{label}  (input {tuple(x.shape[1:])})")
    for name, shape in rows:
        print(f"    {name:<26}{shape}")

# %% [markdown]
# SegNet's image runs padded to 128×96 (pool5 4×3); DeconvNet's paper geometry pads it to
# 224×224 for its 1×1 fc7, about four times the pixels, while `pad_fc6=True` keeps 128×96 and a 4×3
# fc7. Either way every unpooling brings back the exact size its pooling saw, and the logits are
# cropped back to 100×75.
#
# ## Parameters at the papers' scale
#
# Built on the `meta` device (nothing is allocated) with 21 PASCAL VOC classes, the papers'
# setting. Noh et al. report 252M parameters for DeconvNet, Badrinarayanan et al. 29.5M for SegNet;
# FCN-8s (chapter 6) has 134M. As in every chapter, the counts are of the trainable parameters
# (`measure.parameter_count`): a weight kept fixed, such as FCN's bilinear upsampling, is not
# counted. Where DeconvNet's parameters are:

# %% tags=["nbval-check-output"]
paper = {"deconvnet": 252e6, "segnet": 29.5e6, "fcn8s": 134e6}
paper_scale = {}
for name in paper:
    with torch.device("meta"):
        net = models.create(name, num_classes=21)
    paper_scale[name] = measure.parameter_count(net)
    print(f"{name:<10} {paper_scale[name] / 1e6:7.2f}M parameters (paper: {paper[name] / 1e6:.1f}M)")
with torch.device("meta"):
    net = models.create("deconvnet", num_classes=21)
parts = {"13 VGG16 convolutions": net.encoder.features, "fc6 (7x7, 512 -> 4096)": net.encoder.fc6,
         "fc7 (1x1, 4096 -> 4096)": net.encoder.fc7, "deconv-fc6 (7x7, 4096 -> 512)": net.decoder.fc6_deconv,
         "13 deconvolutions (3x3)": net.decoder.stages, "seg-score (1x1)": net.classifier}
total = measure.parameter_count(net)
print("\nDeconvNet by part:")
for part, module in parts.items():
    count = measure.parameter_count(module)
    print(f"    {part:<32}{count / 1e6:8.2f}M  {100 * count / total:5.1f}%")
big = sum(measure.parameter_count(m) for m in (net.encoder.fc6, net.encoder.fc7, net.decoder.fc6_deconv))
print(f"fc6 + fc7 + deconv-fc6: {100 * big / total:.1f}% of DeconvNet")

# %% [markdown]
# Nearly nine tenths of DeconvNet are three layers: fc6 and deconv-fc6 each hold a 7×7 kernel
# between 512 and 4096 channels (7 · 7 · 512 · 4096 ≈ 103M weights each), fc7 another 4096².
# The convolutions of both networks are small: VGG16's 13 convolutions are 14.7M, and a mirrored
# decoder about as many again, which is all SegNet is. FCN-8s sits in between: it keeps fc6 and
# fc7 (about nine tenths of its 134M) but has no learned decoder.
#
# ## How the paper ran DeconvNet
#
# Noh et al. did not run DeconvNet on whole images. They trained and evaluated it
# *instance-wise*, on object proposals. Training examples are crops around one object: first
# centred on ground-truth objects, then object proposals that overlap them. At test time edge-box
# proposals are ranked by objectness, the top ones are each cropped, resized to 224×224 and
# segmented, and their score maps are put back into the image and combined pixel by pixel.
# On VOC2012 test, DeconvNet alone reaches a mean IU of 69.6 (Noh et al. 2015). The paper's best
# result is an ensemble with FCN-8s (EDeconvNet) followed by a fully connected CRF
# (EDeconvNet+CRF), at 72.5 (Noh et al. 2015).
#
# That setting changes what fc7 means. In the paper, fc7's single cell summarises one object
# proposal resized to 224×224: one object at a roughly fixed scale, whose shape the decoder then
# draws. This book runs DeconvNet on whole images, like FCN-8s and SegNet. With the paper's
# geometry a small image is padded to 224×224 and its one fc7 cell summarises the whole scene,
# several objects and background together; a larger image gets a coarse grid of such summaries
# (the table below). So this chapter compares the architectures in one whole-image setting, not
# the paper's pipeline, and its DeconvNet scores say nothing about the paper's.
#
# ## DeconvNet on small images: `pad_fc6`
#
# The paper's fc6 needs a 7×7 pool5, so segedu pads smaller images up to 224×224. At small
# training sizes that costs a lot of padded pixels, and fc7 collapses to
# a single cell, whose batch norm then normalises each channel over just one value per image
# (training needs two or more images per batch). With `pad_fc6=True` pool5 keeps the image's own
# size:

# %% tags=["nbval-check-output"]
print(f"{'image':>7}{'padded (paper fc6)':>20}{'fc7':>7}{'pixel ratio':>13}{'padded (pad_fc6)':>18}{'fc7':>7}")
for size in (64, 128, 256, 512):
    paper_side = max(-(-size // 32) * 32, deconvnet.MIN_SIZE)
    padded_side = -(-size // 32) * 32
    print(f"{size:>7}{paper_side:>20}{paper_side // 32 - 6:>7}{(paper_side / padded_side) ** 2:>13.2f}"
          f"{padded_side:>18}{padded_side // 32:>7}")

# %% [markdown]
# So this chapter trains DeconvNet with `pad_fc6=True` whenever the training crops are below 224
# pixels, as the 192-pixel crops here are, and with the paper's geometry otherwise (512-pixel
# crops would give a 16×16 pool5 and a 10×10 fc7). The price of `pad_fc6` is that fc6 sees zero
# padding at the border of pool5, which the paper's network never does; the benefit is a network
# that costs what its image costs, and a batch norm after fc6/fc7 with 36 values per channel and
# image (a 6×6 map at 192 pixels) instead of one.

# %%
pad_fc6 = prof.image_size < deconvnet.MIN_SIZE
print(f"training crops of {prof.image_size} pixels -> DeconvNet with pad_fc6={pad_fc6}")

# %% [markdown]
# ## Speed and memory
#
# SegNet was designed for road scenes on modest hardware: "efficient both in terms of memory and
# computational time during inference" (abstract). We measure, at the width and crop size this
# chapter trains with (a quarter of the paper's channels, 192×192 pixels), on this machine (a
# 2-core CPU): the parameters; images per second of an inference forward pass on a batch of 8
# images (eval mode, no gradients, in float32; the median of 5 timed
# passes, `segedu.models.measure.forward_speed`); and the activations one training forward pass
# keeps for its backward pass, per image (`measure.saved_activation_bytes`: what grows with batch
# and image size; the weights, gradients and optimiser state come on top). DeconvNet runs both
# ways: the paper's fc6 geometry and `pad_fc6=True`. The timings depend on the machine and its
# load; rerun the cell to see how much they move.

# %%
contenders = {"fcn8s": ("fcn8s", {"batch_norm": True}), "segnet": ("segnet", {}),
              "deconvnet (paper fc6)": ("deconvnet", {"pad_fc6": False}),
              "deconvnet pad_fc6": ("deconvnet", {"pad_fc6": True})}
cost = {}
probe_images = torch.rand(2, 3, prof.image_size, prof.image_size, device=session.device)
for label, (name, options) in contenders.items():
    torch.manual_seed(seed)
    net = models.create(name, width=prof.width, **options).to(session.device)
    cost[label] = {"params": measure.parameter_count(net),
                   "images_per_s": measure.forward_speed(net, prof.batch_size, prof.image_size, session.device),
                   "saved_mb": measure.saved_activation_bytes(net, probe_images) / 2 / 2**20}
    del net
print(f"width {prof.width}, {prof.image_size}x{prof.image_size} images, forward batch {prof.batch_size}, "
      f"device {session.device}")
print(f"{'model':<24}{'parameters':>12}{'images/s':>10}{'saved for backward, MB/image':>30}")
for label, c in cost.items():
    print(f"{label:<24}{c['params'] / 1e6:>11.2f}M{c['images_per_s']:>10.1f}{c['saved_mb']:>30.1f}")

trained_deconvnet = "deconvnet pad_fc6" if pad_fc6 else "deconvnet (paper fc6)"
seg, dec = cost["segnet"], cost[trained_deconvnet]
print(f"\nSegNet vs {trained_deconvnet}: {dec['params'] / seg['params']:.1f}x fewer parameters, "
      f"{seg['images_per_s'] / dec['images_per_s']:.2f}x the images/s, "
      f"{dec['saved_mb'] / seg['saved_mb']:.2f}x less activation memory")
print("SegNet faster than the trained DeconvNet:", seg["images_per_s"] > dec["images_per_s"])
print("SegNet faster than FCN-8s:", seg["images_per_s"] > cost["fcn8s"]["images_per_s"])

# %% [markdown]
# What makes DeconvNet slower is fc6 and deconv-fc6, huge kernels where the maps are small.
# Which of its two geometries costs more depends on the image size: `pad_fc6=True` runs them at
# every cell of pool5's map, the paper's geometry runs them once but pads every image to
# 224×224 first. On these 192-pixel crops the padding costs more: the paper's geometry ran at
# 22.6 images/s and kept 59.9 MB per image for the backward pass, `pad_fc6=True` 31.6 images/s
# and 44.6 MB. SegNet, with 1.85M parameters (8.5x fewer than DeconvNet's 15.75M), ran at
# 35.0 images/s, 1.11x the speed of the trained DeconvNet, and kept 39.4 MB per image, 1.13x less
# activation memory.
#
# FCN-8s was the fastest of the three, at 60.1 images/s, and kept the least, 23.5 MB per image,
# although it has 8.41M parameters. SegNet and DeconvNet run 3×3 convolutions on wide feature
# maps at every resolution up to the full image, and keep those maps for the backward pass;
# FCN-8s has no decoder convolutions, only upsamplings of 11-channel score maps. So in this run
# SegNet's efficiency holds against DeconvNet but not against FCN-8s. These are single timings
# on a shared machine; rerunning the cell shows how much they move.
#
# Unpooling is also cheap to *remember*. A decoder that reuses the encoder's features (FCN's
# skips, U-Net) must keep those feature maps until the decoder needs them;
# SegNet keeps only the switches, one index per pooled value. PyTorch stores each index as a
# 64-bit integer, but an index within a 2×2 window needs only 2 bits, which is what SegNet's
# authors point out (Sec. 3). For one image at the paper's CamVid resolution (360×480) and full
# width:

# %% tags=["nbval-check-output"]
with torch.device("meta"):
    net = models.create("segnet")
    _, switches = net.encoder(pad_to_multiple(torch.empty(1, 3, 360, 480), 32))
values = sum(s.indices.numel() for s in switches)
feature_values = sum(s.indices.shape[1] * s.size[0] * s.size[1] for s in switches)
print(f"pooled values (one switch each): {values:,}")
print(f"switches as int64:               {8 * values / 2**20:6.1f} MiB")
print(f"switches at 2 bits each:         {values / 4 / 2**20:6.1f} MiB")
print(f"encoder maps before pooling, float32: {4 * feature_values / 2**20:6.1f} MiB")

# %% [markdown]
# ## Receptive fields
#
# How much of the image does one output pixel see? For a chain of convolutions and poolings, the
# arithmetic of `segedu.models.receptive_field` gives it: pool5 of VGG16 sees 212 pixels, and
# DeconvNet's (and FCN's) fc6, a 7×7 kernel at stride 32, adds 6 · 32 = 192, for 404 at fc7.
# At the paper's 224×224 input, every fc7 cell of DeconvNet sees the whole input, which in the
# paper is one object proposal.
#
# The decoder enlarges the field further, but an unpooled pixel depends on the input through
# the *switches*, which the gradient cannot follow. `measure.dense_unpooling` makes a copy of a
# model in which every switch pooling averages and every unpooling copies its value to all four
# cells of the window: the largest region any switch configuration can connect. On that copy,
# `empirical_receptive_field` measures the field of the centre output pixel from the gradient.
# The field is a property of the layer geometry, not of the channel count, so a 1/32-width copy
# is measured. An output pixel's field also depends on where it sits relative to the 32-pixel
# grid of pool5, so two positions are measured: at a multiple of 32 and 16 pixels further.

# %% tags=["nbval-check-output"]
deconv_small = models.create("deconvnet", width=1 / 32)
segnet_small = models.create("segnet", width=1 / 32)
print("theoretical field of SegNet's pool5:  ", theoretical_receptive_field(segnet_small.encoder))
print("theoretical field of DeconvNet's fc7: ", theoretical_receptive_field(deconv_small.encoder))
fields = {}
for name, net, sizes in (("fcn8s", models.create("fcn8s", width=1 / 32, batch_norm=True), (512, 544)),
                         ("segnet", segnet_small, (448, 480)), ("deconvnet", deconv_small, (832, 864))):
    probe = measure.dense_unpooling(net)
    fields[name] = [empirical_receptive_field(probe, (3, size, size))[0] for size in sizes]
    print(f"output pixel of {name:<10} sees {fields[name][0]} px (on the pool5 grid), "
          f"{fields[name][1]} px (16 px off it)")

# %% [markdown]
# DeconvNet's output pixels see about twice as far as SegNet's: fc6 and deconv-fc6 each add 192
# pixels. SegNet's field (372 to 404 pixels) is already larger than the 192-pixel training crops,
# so at this size neither network lacks context; what differs is how much DeconvNet's fc layers
# cost to get more of it.
#
# ## Training FCN-8s, SegNet and DeconvNet under one budget
#
# The three models train on the same data under the same budget: crops of 192×192 pixels,
# batches of 8, 5 epochs of 48 steps (240 optimiser steps), AdamW at a learning rate of $10^{-3}$
# with a cosine schedule, a quarter of the paper's channels, seed 0, in bf16 mixed precision
# (autocast) with the channels-last memory layout on this CPU. All three fine-tune from
# the course's pretrained VGG16 with batch norm (chapter 6), as both papers start from ImageNet's
# VGG16; the layers the encoder does not cover, SegNet's and DeconvNet's decoders among them,
# start from random weights. FCN-8s (with `batch_norm=True`) is the same run as chapter 6's
# seed 0. One seed each: chapter 6 showed how far seeds of one model can differ, so read the
# gaps below against that spread.

# %%
floor = background_floor(session.data_dir, "val")["miou"]
print(f"floor: predicting Background everywhere scores val mIoU {float(floor):.4f}")
trained = compare.train_architectures(session, ("fcn8s", "segnet", "deconvnet"))
runs = {name: trained[f"{name}-seed{seed}"] for name in ("fcn8s", "segnet", "deconvnet")}
for label, run in runs.items():
    print(f"{label:<10} best val mIoU {run.trainer.best_miou:.4f} after {run.trainer.step} steps, {run.seconds:.0f} s")

# %%
viz.plot_learning_curves({label: run.trainer.history for label, run in runs.items()}, title="same data, budget and seed",
                         floor=floor)
plt.show()

# %% [markdown]
# ## Per class, and at the boundaries
#
# Each best checkpoint is scored on the validation images at their own resolution
# (`compare.score_runs`): over all pixels, and only within 3 pixels of a boundary between two
# classes ("boundary" column), where a decoder that restores detail should help.

# %%
scores = compare.score_runs({label: run.run_dir for label, run in runs.items()}, session.data_dir,
                            device=session.device, batch_size=prof.batch_size)
print(compare.per_class_table(scores))

# %%
ranked = sorted(scores, key=lambda label: scores[label]["overall"]["miou"], reverse=True)
print("ranking by mIoU:", " > ".join(f"{label} ({scores[label]['overall']['miou']:.4f})" for label in ranked))
for label in ("segnet", "deconvnet"):
    for key, name in (("overall", "mIoU"), ("boundary", "boundary mIoU")):
        diff = scores[label][key]["miou"] - scores["fcn8s"][key]["miou"]
        print(f"{label} vs fcn8s, {name}: {diff:+.4f}")
print("best decoder model beats FCN-8s by more than 0.02 mIoU:",
      max(scores["segnet"]["overall"]["miou"], scores["deconvnet"]["overall"]["miou"])
      > scores["fcn8s"]["overall"]["miou"] + 0.02)

# %% [markdown]
# **Neither decoder model scored above FCN-8s in this run.** FCN-8s reached 0.3208 mIoU, SegNet
# 0.2015 and DeconvNet 0.1244. All three are above the floor of predicting Background everywhere,
# 0.0643, but not by the same margin: FCN-8s and SegNet are well clear of it, while DeconvNet's
# 0.1244 is the closest of the three to it.
# The ranking is fcn8s > segnet > deconvnet: SegNet trails FCN-8s by
# 0.1193, DeconvNet by 0.1963. The boundary band keeps the same order (0.1875, 0.1312, 0.0708),
# with gaps of 0.0563 and 0.1167.
#
# How much of that is the seed? Chapter 6 trained FCN-8s on three seeds, and their scores lay much
# closer together than either gap (`book/06_fcn.ipynb`). But SegNet and DeconvNet ran one seed
# each, their own spread is unknown, and a model can be much less stable than FCN-8s: FCN-32s's
# seeds in chapter 6 lay far further apart. This chapter runs no paired test across seeds, so it
# gives no evidence of a difference either way: the ranking is what one run shows, not a verdict
# that the decoders are worse.
#
# Per class, FCN-8s learned 4 of the 10 object classes to an IoU of at least a tenth: Paper (0.656),
# Plastic (0.381), Styrofoam (0.675) and Plastic bag (0.820), with a little General trash (0.060).
# SegNet and DeconvNet learned only 2, the two most common: Paper (0.518 and 0.121) and Plastic bag
# (0.761 and 0.443); DeconvNet's Paper only just clears a tenth. Neither found any Plastic or
# Styrofoam, and no model learned Paper pack, Metal, Glass, Battery or Clothing: the rare classes,
# Battery the rarest of them, score zero in all three runs. DeconvNet also lost ground on Background
# (0.805, against 0.936 for FCN-8s and 0.938 for SegNet), which gives it the lowest pixel accuracy,
# 0.745.
#
# The switches should help most at boundaries, and SegNet shows a hint of it: its gap to FCN-8s
# is smaller in the band (−0.0563) than over all pixels (−0.1193), and it keeps a larger share of
# its overall score there (0.1312 of 0.2015, against 0.1875 of 0.3208 for FCN-8s). But every
# model scores lower in the band, so smaller gaps there are partly a matter of scale, and with
# one seed the difference in share cannot be called. DeconvNet, which unpools with the same
# switches, shows no such hint: it keeps a smaller share of its score in the band (0.0708 of
# 0.1244) than FCN-8s. What the band does not show is a decoder that beats FCN-8s's skips at the
# edges.
#
# A likely reason, in segmentation terms: all three share the pretrained encoder, and what
# differs is what sits on top of it. FCN-8s reaches the output from pool3, pool4 and fc7 through
# 1×1 score layers and upsamplings, few new weights between pretrained features and the classes.
# SegNet and DeconvNet put a whole mirrored decoder of randomly initialised layers between the
# encoder and the classifier, and 240 steps are likely too few to train it; DeconvNet adds the 7×7
# deconv-fc6 and took the longest to train (99 s, against 70 s for SegNet and 61 s for FCN-8s). This
# disagrees with the paper, where on VOC2012 test, without ensemble or CRF, FCN-8s reached 62.2
# and DeconvNet 69.6 (Noh et al. 2015); but the paper trained far longer, at full width, on object
# proposals rather than whole images, so this one run neither confirms nor refutes it.
#
# Predictions on one validation image:

# %%
val = dataset.CocoSegmentation(session.data_dir, "val")
image, mask = val[0]
predicted = compare.predictions({label: run.run_dir for label, run in runs.items()}, image, session.device)
viz.show_predictions(image, mask, predicted, names=val.class_names)
plt.show()

# %% [markdown]
# ## The field the trained networks use
#
# The fields above are theoretical: with dense unpooling, the largest region any setting of the
# switches can connect to an output pixel. Luo et al. (NeurIPS 2016) showed that a trained network
# does not use its field evenly: the gradient of a centre output pixel with respect to the input,
# the *effective* receptive field, is concentrated near the centre. Measured on the trained
# checkpoints, with the switches each real validation image sets: the radius around the centre
# holding half and 95% of the gradient's mass ([receptive field](09_receptive_field) measures the
# DeepLab family the same way).

# %%
probe = torch.stack([val[k][0] for k in range(min(8, len(val)))])
print(f"{'model':<12}{'r50 (px)':>10}{'r95 (px)':>10}   on {len(probe)} validation images of "
      f"{probe.shape[-1]}x{probe.shape[-2]}")
for label, run in runs.items():
    model, _, _ = load_model(run.run_dir, session.device)
    erf = effective_receptive_field(model, tuple(probe.shape[-2:]), images=normalize(probe))
    print(f"{label:<12}{erf.radius_50:>10.1f}{erf.radius(0.95):>10.1f}")
    del model

# %% [markdown]
# Each trained network uses a small part of the field it has, as Luo et al. found. The fields
# measured through dense unpooling (372–404 px for SegNet, 436–468 for FCN-8s, 756–788 for
# DeconvNet) are all wider than these 256×256 validation images, so here the architecture does not
# limit what the centre pixel can see; training decides what it uses. (r50 and r95 are radii: set
# them against half a field's side.)
#
# * **SegNet** (r50 45.0 px, r95 97.3 px): the disc holding 95% of the gradient is narrower than
#   even the 212-pixel field of its pool5, far from the 372–404 pixels the decoder could connect,
#   and its r95 is the smallest of the three.
#   With real switches every unpooling passes the gradient back through one cell of each window
#   only, which cuts most of the paths dense unpooling counts, and the mass stays near the centre.
# * **DeconvNet** (r50 56.8 px, r95 147.9 px): fc6 and fc7 do widen the field it uses. Its r50 and
#   r95 are the largest of the three, and its r95 is more than half the image's side, so the centre
#   pixel draws on most of the scene. That is what its geometry allows: with `pad_fc6=True` a
#   256-pixel image gives an 8×8 pool5, and each fc7 cell's theoretical field of 404 pixels covers
#   the whole image, a summary of the scene rather than of one object as in the paper's proposals.
# * **FCN-8s** (r50 32.4 px, r95 126.1 px) has the tightest core of the three but not the narrowest
#   reach: half its gradient lies within the smallest radius, yet 95% of it needs a wider one than
#   SegNet's. Its output adds the scores of pool3 and pool4 to the upsampled fc7 scores; a plausible
#   reading is that the finer layers keep the core of the gradient near the centre while fc7, whose
#   field spans 404 pixels, spreads the rest of it wide.
#
# In this run the widest used field, DeconvNet's, went with the lowest mIoU (0.1244). Between FCN-8s
# and SegNet the order depends on the radius one reads: FCN-8s, with the highest mIoU (0.3208), has
# the smaller r50 but the larger r95. So the used fields and the scores do not line up in one simple
# order. With one seed per model and no paired test that is an observation, not evidence that a wide
# field hurts; it does suggest that a larger used field is not what these decoders were missing on
# 256-pixel images. [Receptive field](09_receptive_field) measures the same for the DeepLab
# family, which enlarges its field with dilated convolutions instead of fully connected layers.
#
# ## Summary
#
# * Max unpooling puts each value back where its pooling window's maximum was (the switches),
#   zeros elsewhere, and equals the gradient of max pooling (`True` above); a transposed
#   convolution spreads every value over its window with one learned pattern. The layers after
#   each unpooling densify the map: 12 of 16 cells are zero after unpooling in the example, none
#   after one 3×3 convolution.
# * At the papers' scale segedu's DeconvNet has 251.80M parameters and SegNet 29.45M, matching
#   the reported 252M and 29.5M. fc6, fc7 and the 7×7 deconv-fc6 are 88.3% of DeconvNet; SegNet
#   has neither, which is the whole difference in size.
# * On small images the paper's fc6 geometry pads every image to 224×224 (12.25 times the pixels
#   of a 64-pixel image, 3.06 times at 128) and reduces fc7 to one cell, so this chapter trains
#   DeconvNet with `pad_fc6=True` below 224 pixels, as on the 192-pixel crops here.
# * The paper segments object proposals one at a time and reports its best result for an
#   ensemble with FCN-8s plus a CRF; here all three networks run on whole images, so this
#   chapter's DeconvNet is the paper's architecture, not its pipeline.
# * At a quarter width on 192-pixel crops, on a 2-core CPU, SegNet ran at 35.0 images/s against
#   31.6 for DeconvNet with `pad_fc6=True` (1.11x), with 8.5x fewer parameters and 1.13x less
#   activation memory; FCN-8s was faster than both, at 60.1 images/s and 23.5 MB per image.
#   Remembering switches instead of feature maps is what SegNet's design saves: at 360×480,
#   1.3 MiB of 2-bit switches against 85.8 MiB of float32 encoder maps (PyTorch's int64 indices
#   take 42.9 MiB).
# * The receptive field of an output pixel, measured through dense unpooling, is 372–404 pixels
#   for SegNet and 756–788 for DeconvNet, whose fc6 and deconv-fc6 add 192 each; FCN-8s's is
#   436–468.
# * Trained, the networks use far less than these fields: on 8 validation images of 256×256, the
#   radius holding 95% of the centre pixel's gradient is 126.1 px for FCN-8s, 97.3 for SegNet and
#   147.9 for DeconvNet (r50 32.4, 45.0 and 56.8). DeconvNet's fc6/fc7 do make its used field wider
#   than SegNet's; in this one run the widest used field went with the lowest mIoU, while FCN-8s,
#   with the highest, has the tightest core (r50) but not the narrowest reach (r95).
# * Fine-tuned from the course's VGG16 for 240 steps on 192-pixel crops in bf16 autocast, FCN-8s
#   reached 0.3208 validation mIoU (0.1875 in the boundary band), SegNet 0.2015 (0.1312) and
#   DeconvNet 0.1244 (0.0708), against a floor of 0.0643 for predicting Background everywhere.
#   FCN-8s learned 4 of the 10 object classes, the two decoder models 2 each, and no model learned
#   any of the rare classes. Neither decoder model scored above FCN-8s in this run, overall or at
#   the boundaries. The gaps (−0.1193 and −0.1963) are much larger than the spread of FCN-8s's
#   seeds in chapter 6 (`book/06_fcn.ipynb`), but they come from one seed per model and no paired
#   test, so this chapter has no evidence of a difference and no verdict (exercise 3); this one run
#   does not reproduce the paper's lead of DeconvNet over FCN-8s.
#
# ## Exercises
#
# 1. Replace each SegNet decoder stage's `unpool` by a 2× nearest-neighbour upsampling that
#    ignores the indices, and train it with the same budget. What happens to the boundary mIoU,
#    and why should the switches matter most there?
# 2. Train DeconvNet with `pad_fc6=False` on the 192-pixel crops. How much slower is an epoch,
#    and how does this compare with the ratio of padded pixels, $(224/192)^2$, computed as in the
#    `pad_fc6` table?
# 3. Train SegNet and FCN-8s with two more seeds each and use `compare.seed_summary`. Is their
#    difference larger than twice the seed spread?
# 4. SegNet's output pixel sees 372 or 404 pixels depending on its position. How many pool5 cells
#    does each case cover (use the recursion of `receptive_field` backwards from pool5's 212)?
