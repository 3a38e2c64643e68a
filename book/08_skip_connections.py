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
# # Skip connections: FC-DenseNet and U-Net
#
# **What you will learn.** FCN added a coarse score map to a finer one; the two networks of
# this chapter *concatenate* whole feature maps instead, and build their decoders around that.
# U-Net (Ronneberger, Fischer & Brox, MICCAI 2015) mirrors its encoder with a decoder of the same
# depth and hands every encoder level to the decoder level of the same resolution, with
# unpadded ("valid") convolutions, an overlap-tile strategy that mirrors the image so the output
# still covers all of it, a pixel weight map that makes the network learn the thin gaps between
# touching objects, and elastic deformation as augmentation. FC-DenseNet (Jégou, Drozdzal,
# Vazquez, Romero & Bengio, CVPR Workshops 2017, "The One Hundred Layers Tiramisu") concatenates
# inside every block too: each layer sees all earlier layers' maps, which buys accuracy per
# parameter. We count parameters at the papers' scale, follow the shapes through both networks,
# look at U-Net's limits and UNet++'s answer, and train the models under one budget.
#
# **What it builds on.** [FCN](06_fcn) for skips by summation and the training and scoring
# routine, [decoder models](07_decoder_models) for encoder-decoder networks,
# [transposed convolution](05_transposed_convolution) for the up-convolutions,
# [the dataloader and augmentation](03_dataloader_and_augmentation) for the augmentation pipeline
# and [metrics](04_metrics) for mIoU and the boundary band.

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle
from scipy import ndimage

from segedu import models, viz
from segedu.data import dataset, masks, transforms
from segedu.experiments import compare
from segedu.inference.evaluate import background_floor
from segedu.models import fcdensenet, measure, receptive_field, unet
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
prof = session.profile
print(session.describe())

# %% [markdown]
# ## Two ways to merge a skip: sum and concatenation
#
# FCN-8s merges a skip by *adding* class scores computed from pool4 to the upsampled scores
# (see [FCN](06_fcn)); both must have the same channels, so each skip is first projected to the
# classes and everything else in it is thrown away. U-Net and FC-DenseNet *concatenate* the
# skip's feature maps with the decoder's, and the next convolution decides how to combine them.
# Concatenation can do everything a sum does: a 1×1 convolution with weights [I, I] on the
# concatenation *is* the sum; any other weights give a combination a sum cannot express. The
# price is channels: the next layer's input is the two widths added, hence more weights.

# %% tags=["nbval-check-output"]
decoder_maps = torch.arange(8.0).reshape(1, 2, 2, 2)
skip_maps = 10 * torch.arange(8.0).reshape(1, 2, 2, 2)
summed = decoder_maps + skip_maps
concatenated = torch.cat([decoder_maps, skip_maps], 1)
as_sum = torch.nn.Conv2d(4, 2, 1, bias=False)
with torch.no_grad():
    as_sum.weight.copy_(torch.cat([torch.eye(2), torch.eye(2)], 1)[..., None, None])  # [I, I]
    print("sum:", tuple(summed.shape), "| concatenation:", tuple(concatenated.shape))
    print("1x1 conv [I, I] of the concatenation equals the sum:", torch.equal(as_sum(concatenated), summed))
    print("channel 0 of the sum:", summed[0, 0].tolist())

# %% [markdown]
# ## FC-DenseNet: dense blocks
#
# A dense block (DenseNet, Huang et al. 2017, carried over to segmentation in the paper's Fig. 2)
# is a stack of layers (batch norm, ReLU, 3×3 convolution, dropout 0.2) where each layer gets the
# concatenation of the block's input and *all earlier layers' outputs*, and adds only
# `growth_rate` = k new maps. A block of ``layers`` layers on ``in`` channels therefore ends with
# in + layers × k channels. Here is FC-DenseNet56's first block (48 input maps, 4 layers, k = 12)
# on a small tensor, layer by layer:

# %% tags=["nbval-check-output"]
block = fcdensenet.DenseBlock(48, num_layers=4, growth_rate=12).eval()
x = torch.rand(1, 48, 16, 16)
with torch.no_grad():
    features = x
    for i, layer in enumerate(block.layers, 1):
        new = layer(features)
        print(f"layer {i}: sees {features.shape[1]:>3} maps, adds {new.shape[1]} -> {features.shape[1] + new.shape[1]}")
        features = torch.cat([features, new], 1)
    out = block(x)
print(f"block output {tuple(out.shape)}: in + layers * k = 48 + 4 * 12 = {48 + 4 * 12}")
up_block = fcdensenet.DenseBlock(48, num_layers=4, growth_rate=12, keep_input=False).eval()
with torch.no_grad():
    print("the same block in the upsampling path (new maps only):", tuple(up_block(x).shape))

# %% [markdown]
# The network (the paper's Fig. 1) is a 3×3 convolution to 48 maps, then dense blocks separated
# by *transitions down* (1×1 convolution and 2×2 max pooling), each block's output kept as a skip;
# a bottleneck block; and *transitions up* (a 3×3 transposed convolution of stride 2) whose output
# is concatenated with the skip of the same resolution and fed to the next block. In the
# upsampling path only the maps a block has just *created* go up, not its input as well (Sec.
# 3.2): otherwise the number of maps would keep growing all the way to full resolution. The
# channel plan of FC-DenseNet103 (k = 16; built on the `meta` device, nothing is allocated):

# %% tags=["nbval-check-output"]
with torch.device("meta"):
    net103 = models.create("fcdensenet103")
print("first conv:", net103.first_conv.out_channels)
for i, block in enumerate(net103.down_blocks):
    print(f"down block {i + 1} ({len(block.layers):>2} layers): {block.layers[0][0].num_features:>4} -> "
          f"{block.out_channels:>4} maps (skip), then transition down")
print(f"bottleneck ({len(net103.bottleneck.layers)} layers): {net103.bottleneck.layers[0][0].num_features} -> "
      f"{net103.bottleneck.out_channels} new maps")
for i, (tu, block) in enumerate(zip(net103.transitions_up, net103.up_blocks)):
    print(f"up block {i + 1} ({len(block.layers):>2} layers): {tu.conv.in_channels:>3} upsampled + skip = "
          f"{block.layers[0][0].num_features:>4} -> {block.out_channels:>4} maps")
print("classifier input:", net103.classifier.in_channels, "maps (the paper's Table 2: m = 256)")

# %% [markdown]
# ## Parameter efficiency: FC-DenseNet56/67/103 against U-Net
#
# The paper's Table 2 gives 1.5M, 3.5M and 9.4M parameters for FC-DenseNet56, 67 and 103 on
# CamVid's 11 classes (our dataset also has 11). Counting the learned weights gives a little
# less; the authors' Lasagne code also counted each batch norm's running mean and variance (they
# are stored as parameters there), and that count gives 3.5M and 9.4M exactly. FC-DenseNet56
# comes to 1.38M (1.40M with the statistics), short of the paper's 1.5M: a discrepancy known from
# reimplementations.
# U-Net's paper gives no count; its Fig. 1 network (2 classes) has 31.0M parameters, FCN-8s 134M
# (the paper's count; see [FCN](06_fcn)).

# %% tags=["nbval-check-output"]
PAPER = {"fcdensenet56": 1.5, "fcdensenet67": 3.5, "fcdensenet103": 9.4, "unet": None}
counts = {}
print(f"{'model':<14}{'learned':>10}{'+ BN statistics':>17}{'paper':>8}")
for name, paper in PAPER.items():
    with torch.device("meta"):
        net = models.create(name, num_classes=2 if name == "unet" else 11)
    learned = measure.parameter_count(net)
    statistics = sum(b.numel() for n, b in net.named_buffers() if n.endswith(("running_mean", "running_var")))
    counts[name] = learned
    print(f"{name:<14}{learned / 1e6:>9.2f}M{(learned + statistics) / 1e6:>16.2f}M"
          f"{f'{paper}M' if paper else '-':>8}")
print(f"U-Net has {counts['unet'] / counts['fcdensenet103']:.1f}x the parameters of FC-DenseNet103 "
      f"and {counts['unet'] / counts['fcdensenet56']:.1f}x those of FC-DenseNet56")

# %% [markdown]
# Where the economy comes from: a U-Net layer at the 512-channel level has 512 × 512 × 9 weights,
# while a dense layer has (maps it sees) × k × 9 with k = 12 or 16, and the maps it sees are
# *reused* rather than recomputed. The cost moves from weights to activations: every layer's
# input is a fresh concatenation, so a dense network needs much more memory and time per
# parameter than its count suggests (the training times and inference speeds below show it).
#
# ## U-Net: valid convolutions, 572 → 388
#
# U-Net's convolutions are unpadded, so each 3×3 convolution loses one pixel at every border, and
# each skip must be centre-cropped to the decoder's smaller map before the concatenation. With a
# bottom map of b pixels the input is 16b + 124 and the output 16b − 60 (`unet.valid_output_size`);
# the paper's Fig. 1 is b = 28. The shapes through the network at the paper's channels, on the
# `meta` device:

# %% tags=["nbval-check-output"]
print("valid_output_size(28) =", unet.valid_output_size(28))
with torch.device("meta"):
    net = models.create("unet", num_classes=2, padding="valid").eval()
    x = torch.empty(1, 3, 572, 572)
    skips = [net.inc(x)]
    print(f"input {x.shape[-1]}x{x.shape[-1]}; two 3x3 convs -> {skips[-1].shape[-1]}, {skips[-1].shape[1]} ch")
    for i, down in enumerate(net.downs, 1):
        skips.append(down(skips[-1]))
        print(f"down {i}: pool -> {skips[-2].shape[-1] // 2}, two convs -> {skips[-1].shape[-1]}, "
              f"{skips[-1].shape[1]} ch")
    features = skips.pop()
    for i, up in enumerate(net.ups, 1):
        skip = skips.pop()
        upsampled = up.up(features)
        features = up(features, skip)
        print(f"up {i}: up-conv -> {upsampled.shape[-1]}, {upsampled.shape[1]} ch; skip {skip.shape[-1]} cropped to "
              f"{upsampled.shape[-1]}, concatenated {2 * upsampled.shape[1]} ch; two convs -> {features.shape[-1]}")
    print("logits:", tuple(net.classifier(features).shape))

# %% [markdown]
# ## Overlap-tile: mirror the image so the output covers it
#
# A 388×388 output from a 572×572 tile means the prediction for a border pixel needs 92 pixels of
# context beyond the image. The paper's answer (Fig. 2) is to *mirror* the image at its borders
# and predict large images tile by tile, the tiles overlapping in their inputs but not in their
# outputs. segedu's valid U-Net does this for any input: it mirrors 92 pixels at the top and
# left and enough at the bottom and right to reach the next valid tile size, then crops the
# output to the image. The tile, for a few image sizes, and how many pixels the first level
# computes per image pixel:

# %% tags=["nbval-check-output"]
def tile_side(size: int) -> int:
    """The valid tile whose output (16 b - 60) first covers ``size`` pixels."""
    return unet.valid_output_size(math.ceil((size + 60) / 16))[0]


for size in (64, 128, 256, 388, 512):
    tile = tile_side(size)
    print(f"image {size:>3}: tile {tile:>3} = {unet.VALID_BORDER} + {size} + {tile - size - unet.VALID_BORDER:>2}, "
          f"output {tile - 184:>3}, tile pixels / image pixels {tile**2 / size**2:.2f}")
net = models.create("unet", width=0.125, padding="valid").eval()
with torch.no_grad():
    print("valid U-Net on a 1x3x37x45 image -> logits", tuple(net(torch.rand(1, 3, 37, 45)).shape))

# %% [markdown]
# A validation image inside its mirrored tile (the box marks the image; the output of the tile is
# exactly the box):

# %%
val = dataset.CocoSegmentation(session.data_dir, "val")
names = val.class_names
image, mask = val[0]
size = image.shape[-1]
pads = [unet.VALID_BORDER, tile_side(size) - size - unet.VALID_BORDER] * 2
tile = unet.mirror_pad(image[None], pads)[0]
fig, ax = plt.subplots(figsize=(4.2, 4.2))
ax.imshow(viz.image_to_uint8(tile))
ax.add_patch(Rectangle((unet.VALID_BORDER - 0.5, unet.VALID_BORDER - 0.5), image.shape[-1], image.shape[-2],
                       fill=False, edgecolor="cyan", linewidth=2))
ax.set_title(f"{image.shape[-1]}x{image.shape[-2]} image in its {tile.shape[-1]}x{tile.shape[-2]} mirrored tile",
             fontsize=9)
ax.axis("off")
plt.show()

# %% [markdown]
# The tile table is why the training below uses U-Net's `padding="same"` (padded convolutions,
# the image only padded to a multiple of 16): at the 192-pixel crops of the training below the
# valid network computes its first level on several times as many pixels as the crop has. Measured on one
# batch at a small width (timings depend on the machine):

# %%
size = prof.image_size
batch = torch.rand(2, 3, size, size)
for padding in ("valid", "same"):
    net = models.create("unet", width=0.125, padding=padding).eval()
    with torch.no_grad():
        net(batch)  # warm-up
        start = time.perf_counter()
        for _ in range(3):
            out = net(batch)
    print(f"padding={padding:<5} {size}x{size} -> logits {tuple(out.shape[-2:])}: "
          f"{(time.perf_counter() - start) / 3 * 1000:.0f} ms per batch of 2")

# %% [markdown]
# ## Receptive fields
#
# Along the deepest path, both networks' fields follow from layer arithmetic (see
# `segedu.models.receptive_field`): U-Net's contracting path alone reaches 140 pixels, and
# FC-DenseNet56's downsampling path with its bottleneck 538 (each of its five blocks adds four 3×3
# layers at an ever larger stride). With the decoder, the measured field (gradient of the centre
# output pixel, small width) of U-Net is 188 pixels; UNet++, which has U-Net's depth, has the same.
# FC-DenseNet56's down path alone already sees more than a whole 256×256 validation image, so we
# leave it at the arithmetic (measuring it needs a much larger input; see the exercises).

# %% tags=["nbval-check-output"]
unet_down = [(3,), (3,), (2, 2)] * 4 + [(3,), (3,)]
dense_down = [(3,)] + ([(3,)] * 4 + [(1,), (2, 2)]) * 5 + [(3,)] * 4
print("U-Net contracting path:", receptive_field.theoretical_receptive_field(unet_down))
print("FC-DenseNet56 down path + bottleneck:", receptive_field.theoretical_receptive_field(dense_down))
for name, options in (("unet", {"padding": "same"}), ("unetpp", {})):
    net = models.create(name, width=0.125, **options)
    print(f"{name} measured:", receptive_field.empirical_receptive_field(net, (3, 288, 288)))

# %% [markdown]
# ## U-Net's weight map for touching objects
#
# Cells in the paper's microscopy images touch, and a per-pixel loss hardly cares about the one
# or two background pixels between them, so the network would merge them. U-Net weights every
# pixel's loss by (Sec. 3, eq. 2)
#
# $$w(x) = w_c(x) + w_0 \exp\!\left(-\frac{(d_1(x) + d_2(x))^2}{2\sigma^2}\right),$$
#
# with $w_c$ balancing the class frequencies, $d_1$ and $d_2$ the distances to the nearest and
# second-nearest object, $w_0 = 10$ and $\sigma = 5$ pixels: background pixels squeezed between two
# objects weigh up to about 11 times more. Two 7×7 objects with a 2-pixel gap, the middle row:

# %% tags=["nbval-check-output"]
toy = np.zeros((9, 20), np.int64)
toy[1:8, 2:9], toy[1:8, 11:18] = 1, 2
weights = unet.boundary_weight_map(toy)
print("instances:", toy[4].tolist())
print("weights:  ", [round(float(w), 1) for w in weights[4]])

# %% [markdown]
# The weight map needs *instance* labels: two touching objects of the same class are one region in
# a semantic mask. COCO annotations are instances, so we paint each annotation of one validation
# image with its own id, in segedu's painting order (largest first, `segedu.data.masks`). The
# image is the one of the first validation images where the most objects touch another one.
# Labelling connected components of the semantic mask per class (`scipy.ndimage.label`) would
# merge touching objects of the same class; the count shows how many that would lose. Where two
# objects touch or overlap there is no background between them, and the term only lights up
# background pixels close to two objects at once (the bright rims and gaps in the map).

# %%
def touching(labels: np.ndarray) -> int:
    """How many objects touch another object (8-neighbourhood)."""
    return sum(bool((ndimage.binary_dilation(labels == i, np.ones((3, 3))) & (labels > 0) & (labels != i)).any())
               for i in np.unique(labels[labels > 0]))


candidates = range(min(len(val), 20))
index = max(candidates, key=lambda i: touching(masks.instance_mask(val.coco, val.coco.images[i])))
labels = masks.instance_mask(val.coco, val.coco.images[index])
semantic = val[index][1].numpy()
components = sum(ndimage.label(semantic == c)[1] for c in np.unique(semantic) if c not in (0, 255))
weights = unet.boundary_weight_map(labels)
background = labels == 0
separation = weights[background] - weights[background].min()
print(f"validation image {index}: {labels.max()} annotated objects, {touching(labels)} touching another; "
      f"connected components per class: {components}")
print(f"weights: background w_c {weights[background].min():.2f}, object w_c {weights[~background].min():.2f}, "
      f"max {weights.max():.2f}; background pixels with a separation term above 1: "
      f"{(separation > 1).mean():.1%}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.6))
axes[0].imshow(viz.image_to_uint8(val[index][0]))
axes[0].set_title("image")
axes[1].imshow(np.ma.masked_equal(labels, 0), cmap="tab20", interpolation="nearest")
axes[1].set_facecolor("black")
axes[1].set_title(f"{labels.max()} instances (annotations)")
shown = axes[2].imshow(weights, cmap="magma")
axes[2].set_title("U-Net weight map (w0=10, sigma=5)")
fig.colorbar(shown, ax=axes[2], fraction=0.046)
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Elastic deformation
#
# With 30 training images, the paper's main augmentation is elastic deformation: random
# displacements on a coarse 3×3 grid, drawn with a standard deviation of 10 pixels (on 512-pixel
# images) and interpolated bicubically to every pixel. segedu's `transforms.UNetElastic` does
# exactly that (the `"elastic"` augmentation of [the dataloader chapter](03_dataloader_and_augmentation),
# scaled to the crop size); the image and its mask move together. A grid is drawn on the image
# to make the displacement visible; the right-hand pair uses three times the paper's strength.

# %%
image_np = viz.image_to_uint8(val[index][0]).copy()
image_np[::16, :] = 255
image_np[:, ::16] = 255
paper_std = 10.0 * image_np.shape[0] / 512
panels = [(image_np, "image with a grid"), (viz.colorize(semantic), "mask")]
for factor in (1, 3):
    deform = transforms.UNetElastic(displacement_std=factor * paper_std, p=1.0)
    deform.set_random_seed(seed)
    out = deform(image=image_np, mask=semantic.astype(np.uint8))
    panels += [(out["image"], f"elastic, std {factor * paper_std:.1f} px"), (viz.colorize(out["mask"]), "its mask")]
fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
for ax, (panel, title) in zip(axes, panels):
    ax.imshow(panel, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## U-Net's limits, and UNet++
#
# Two choices of U-Net are fixed rather than learned. Its **depth**: four poolings, whatever the
# data; the best depth differs between datasets, and a shallower U-Net is a different network,
# trained separately. Its **plain skips**: an encoder map, a few convolutions from the image, is
# concatenated directly with a decoder map that has been through the whole network. UNet++ (Zhou
# et al., DLMIA 2018) answers both with nested, dense skip pathways: nodes X^{i,j} on a grid, each
# the convolution of all earlier nodes of its level and the upsampled node below, so U-Nets of
# every depth from 1 to 4 share one encoder and the encoder maps are brought closer to the
# decoder's step by step. Its parameter count against the paper's Table 2 (one class on a
# one-channel image there; our input has 3 channels, which changes 576 weights), with U-Net at the
# same widths (our U-Net at `width=0.5`):

# %% tags=["nbval-check-output"]
with torch.device("meta"):
    nested = models.create("unetpp", num_classes=1)
    plain = models.create("unet", num_classes=1, width=0.5, padding="same")
print(f"UNet++ {measure.parameter_count(nested) / 1e6:.2f}M (paper 9.04M); "
      f"U-Net at the same widths {measure.parameter_count(plain) / 1e6:.2f}M (paper 7.76M)")
print("UNet++ nodes per level:", [len(level) for level in nested.nodes])
print("inputs of X^{0,4}:", nested.nodes[0][4][0].in_channels, "channels = 4 earlier nodes of level 0 + 1 from below")

# %% [markdown]
# ## Training under one budget
#
# FC-DenseNet56 and U-Net train on the same data and schedule as the models of the earlier
# chapters: crops of 192×192 pixels, batch 8, 5 epochs of 48 steps (240 optimiser steps), AdamW
# at a learning rate of 1e-3 with a cosine schedule, at a quarter of the papers' channels
# (width 0.25), seed 0 only. One difference matters: the encoder-based models of [FCN](06_fcn)
# and [decoder models](07_decoder_models) fine-tune from the course's pretrained encoders, while
# these two train *from scratch*, as in their papers, which have no pretrained encoder. U-Net uses
# `padding="same"` for the speed shown above, and `batch_norm=True`: FC-DenseNet normalises in
# every layer, and a U-Net without normalisation is slow to start from scratch. UNet++ is only
# counted above, not trained. Both train in bf16 autocast (mixed precision) with the channels-last
# memory layout on this CPU, so the seconds below are for that setting.

# %%
floor = background_floor(session.data_dir, "val")["miou"]
print(f"floor: predicting Background everywhere scores val mIoU {float(floor):.4f}")
runs = compare.train_architectures(session, ("fcdensenet56", "unet"))
for label, run in runs.items():
    with torch.device("meta"):
        learned = measure.parameter_count(models.create(run.model, **run.trainer.config.model_options))
    print(f"{label:<20} {learned / 1e6:.3f}M parameters at width {prof.width}: best val mIoU "
          f"{run.trainer.best_miou:.4f} after {run.trainer.step} steps ({run.seconds:.0f} s)")

# %%
viz.plot_learning_curves({label: run.trainer.history for label, run in runs.items()}, title="skip-connection models, same budget",
                         floor=floor)
plt.show()

# %% [markdown]
# In 240 steps from scratch, U-Net reached a best val mIoU of 0.1444 and FC-DenseNet56 0.0931,
# one run each. Predicting Background everywhere scores 0.0643 on these validation images, so
# FC-DenseNet56 is only a little above that floor and U-Net not far above it; there is no ceiling
# here to set them against. To place them among the encoder-based models, compare them with
# FCN-8s trained from scratch and from the course's pretrained encoder in [FCN](06_fcn). These
# numbers say how far each network gets in its first 240 steps, not what it can reach. Both papers trained much longer from
# scratch: U-Net for about 10 hours on a GPU (Ronneberger et al. 2015), FC-DenseNet with early
# stopping at a patience of 100 epochs, hence hundreds of epochs (Jégou et al. 2017). At width
# 0.25 FC-DenseNet56 is also very thin: 0.091M parameters, each dense layer adding a quarter of
# the paper's 12 maps, and dropout in every layer. Training took 297 s for FC-DenseNet56 against
# 85 s for U-Net, which has 1.943M parameters: the concatenations cost time, not weights.
#
# ## Per class, at the boundaries, and speed
#
# Each best checkpoint is scored on the validation images at their own resolution, over all
# pixels and within 3 pixels of a class boundary (`compare.score_runs`); the last column is
# inference speed on this machine.

# %%
scores = compare.score_runs({label: run.run_dir for label, run in runs.items()}, session.data_dir,
                            device=session.device, batch_size=prof.batch_size)
print(compare.per_class_table(scores))
print()
for label, s in scores.items():
    print(f"{label:<20} {s['images_per_s']:.1f} images/s")

# %%
first, second = "fcdensenet56-seed%d" % seed, "unet-seed%d" % seed
for key, what in (("overall", "mIoU"), ("boundary", "boundary mIoU")):
    a, b = scores[first][key]["miou"], scores[second][key]["miou"]
    print(f"{what}: FC-DenseNet56 {a:.4f} vs U-Net {b:.4f}; FC-DenseNet56 higher: {a > b} "
          f"(difference {a - b:+.4f}, one seed each)")
faster = max(scores, key=lambda label: scores[label]["images_per_s"])
print(f"fastest at inference: {faster}")
with torch.device("meta"):
    sizes = {label: measure.parameter_count(models.create(run.model, **run.trainer.config.model_options))
             for label, run in runs.items()}
print(f"FC-DenseNet56 has {sizes[second] / sizes[first]:.1f}x fewer parameters than U-Net at this width and runs at "
      f"{scores[first]['images_per_s'] / scores[second]['images_per_s']:.2f}x U-Net's images per second")

# %% [markdown]
# Of the ten object classes, U-Net learned two, Paper (0.330) and Plastic bag (0.454);
# FC-DenseNet56 learned Plastic bag (0.220) and has barely started on Paper (0.041). Background
# scores 0.747 and 0.805. Every other class stays at 0.000 or 0.001, except FC-DenseNet56's
# General trash at 0.013. Paper and Plastic bag are the two object classes that cover
# the most pixels (see [the data analysis](02_eda)), so a network learns them first; the eight
# others are hardly predicted at all. Pixel accuracy is 0.740 and 0.769: most pixels are Background,
# so it says little. U-Net scored higher overall (0.1444 against
# 0.0931) and at the boundaries (0.0757 against 0.0556), but this is one run each, with no paired
# test across seeds, and with FC-DenseNet56 so close to the floor the comparison says which
# network starts learning sooner under this budget, not which architecture segments better: there
# is no evidence here of a difference between the two. Nor does U-Net's lead in this run lie where
# its paper aimed its skips, at precise localisation: both networks score lower in the boundary
# band than over all pixels, and U-Net's margin is smaller there than overall (−0.0201 against
# −0.0514), so its advantage here lies more inside the objects of Paper and Plastic bag than at
# their edges. The speed is a measurement: FC-DenseNet56 has 21.3x
# fewer parameters than U-Net at this width, yet runs at 0.44x its images per second (25.4
# against 58.1 images/s on this CPU), because every dense layer reads a fresh concatenation at
# full resolution.
#
# Predictions on the validation image of the weight map:

# %%
image, mask = val[index]
predicted = compare.predictions({label: run.run_dir for label, run in runs.items()}, image, session.device)
viz.show_predictions(image, mask, predicted, names=names)
plt.show()

# %% [markdown]
# ## Summary
#
# * Concatenating a skip keeps every map and lets the next convolution choose the combination; a
#   1×1 convolution with weights [I, I] on the concatenation reproduces FCN's sum exactly (`True`
#   above), at the price of wider inputs.
# * A dense block ends with in + layers × k maps (48 + 4 × 12 = 96 in FC-DenseNet56's first block),
#   and only the new maps go up the upsampling path; FC-DenseNet103's classifier sees 256 maps, as
#   in the paper's Table 2.
# * Dense connectivity is economical in weights: FC-DenseNet56/67/103 have 1.38M, 3.46M and 9.32M
#   learned parameters (1.40M, 3.50M and 9.43M with batch-norm statistics, the way the authors
#   counted: the paper's 3.5M and 9.4M, and 1.40M against its 1.5M), against 31.03M for U-Net,
#   3.3 times FC-DenseNet103. Weights are not time: the last verdict line sets FC-DenseNet56's
#   inference speed against U-Net's on this machine, next to its parameter ratio.
# * U-Net's valid convolutions turn a 572 tile into a 388 output, 92 pixels lost per side; mirroring
#   the image into the next valid tile gives logits for every pixel, but a 128-pixel image needs a
#   tile of 6.09 times its pixels (3.01 for 256 pixels); on one batch of two 192-pixel crops the
#   valid network took 53 ms against 20 ms with same padding, which is why the training used
#   same padding.
# * The U-Net weight map lifts the background between two objects 2 pixels apart to 9.5, against
#   0.9 on the objects; on the real image it needs instance labels, which COCO's annotations give
#   and per-class connected components do not (the counts above).
# * UNet++ has 9.04M parameters (the paper's Table 2) against 7.76M for U-Net at its widths, and
#   U-Net's depth, hence the same measured receptive field of 188 pixels.
# * Trained from scratch for 240 steps on 192-pixel crops, U-Net reached a best val mIoU of 0.1444
#   and FC-DenseNet56 0.0931, against an all-Background floor of 0.0643; among the object classes
#   U-Net learned Paper and Plastic bag, FC-DenseNet56 Plastic bag (its Paper stays at 0.041).
#   One run each, no paired test, and FC-DenseNet56 close to the floor: no evidence of a
#   difference between the two. U-Net's lead is smaller in the boundary band (0.0757 against
#   0.0556) than over all pixels: in these runs its advantage is not at the boundaries.
#   Both papers trained from scratch for far longer, and these architectures need it.
# * FC-DenseNet56 has 21.3x fewer parameters than U-Net at width 0.25 but runs at 0.44x its
#   images per second (25.4 against 58.1 images/s) and took 297 s to train against 85 s.
#
# ## Exercises
#
# 1. Train U-Net with `padding="valid"` under the same budget. How much slower is an epoch, and
#    does the mirrored context change the boundary mIoU?
# 2. Use `unet.boundary_weight_map` as a per-pixel loss weight: build instance labels (`masks.instance_mask`) for each
#    training image as above, multiply the unreduced cross-entropy by the map, and compare the
#    boundary mIoU with and without it.
# 3. Add `augment=["elastic"]` to U-Net's training entry. Does the paper's augmentation help on
#    this dataset at this budget? Try three times the displacement.
# 4. Replace FC-DenseNet56 by FC-DenseNet67 and FC-DenseNet103. How do parameters, mIoU and
#    images per second scale?
# 5. Measure FC-DenseNet56's receptive field with `empirical_receptive_field` (it needs an input
#    of about 1000 pixels at width 0.125). How does it compare with the arithmetic of its down
#    path, and with the image size?
