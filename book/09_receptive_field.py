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
# # Receptive field: DeepLab v1 to v3+, DilatedNet and PSPNet
#
# **What you will learn.** FCN and the decoder models buy context with downsampling and then
# struggle to recover the detail. The models of this chapter keep the feature maps larger and
# grow the *receptive field* another way: atrous (dilated) convolution, which spreads a filter's
# taps apart without adding weights. We follow one family through five papers and one rival:
#
# * **DeepLab v1** (Chen et al., ICLR 2015): VGG16 with atrous convolution at output stride 8,
#   bilinear upsampling, and a fully connected CRF as post-processing;
# * **DilatedNet** (Yu & Koltun, ICLR 2016): a cleaner dilated front-end plus a *context module*
#   whose field grows exponentially;
# * **DeepLab v2** (Chen et al., TPAMI 2018): ResNet-101 and ASPP, four atrous rates in parallel;
# * **PSPNet** (Zhao et al., CVPR 2017): global context by pyramid pooling;
# * **DeepLab v3** (Chen et al., 2017) and **v3+** (ECCV 2018): image pooling in the ASPP, batch
#   norm, a choice of output stride, then a light decoder and depthwise separable convolutions.
#
# For each we count parameters at the paper's scale, follow the shapes, compute and measure the
# receptive field, and then train all of them under one budget, with DenseCRF on top of v1.
#
# **What it builds on.** [FCN](06_fcn) for fully convolutional networks and the training and
# scoring routine, [decoder models](07_decoder_models) for the receptive field tools,
# [skip connections](08_skip_connections) for merging fine and coarse features, and
# [metrics](04_metrics) for mIoU and the boundary band.

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from segedu import models, viz
from segedu.data import dataset
from segedu.experiments import compare
from segedu.inference.evaluate import background_floor
from segedu.errors import SegeduError
from segedu.inference import crf
from segedu.inference.pipeline import InferenceOptions
from segedu.models import aspp, dilatednet, measure, pspnet
from segedu.models.backbones.xception import SeparableConv2d
from segedu.engine import load_model
from segedu.inference.predict import normalize
from segedu.models.receptive_field import effective_receptive_field, empirical_receptive_field, receptive_fields
from segedu.notebook import setup, shape_text

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
prof = session.profile
print(session.describe())

# %% [markdown]
# ## Atrous convolution
#
# A convolution of rate (dilation) r places its k taps r pixels apart: a 3-tap filter of rate 2
# reads x[i − 2], x[i] and x[i + 2]. That is the same as a 5-tap filter with zeros inserted
# between the taps, the "holes" of the French *à trous*, but the zeros are never stored or
# multiplied. On a small signal:

# %% tags=["nbval-check-output"]
signal = torch.arange(12.0).reshape(1, 1, 12) ** 2
taps = torch.tensor([[[1.0, 2.0, 3.0]]])
with_holes = torch.tensor([[[1.0, 0.0, 2.0, 0.0, 3.0]]])
atrous = F.conv1d(signal, taps, dilation=2)
print("signal:                 ", signal[0, 0].int().tolist())
print("rate 2, taps [1, 2, 3]: ", atrous[0, 0].int().tolist())
print("taps [1, 0, 2, 0, 3]:   ", F.conv1d(signal, with_holes)[0, 0].int().tolist())
print("identical:", torch.equal(atrous, F.conv1d(signal, with_holes)))

# %% [markdown]
# The receptive field of a chain of layers follows from r ← r + (k − 1) · d · j (see
# `segedu.models.receptive_field`): each 3×3 layer adds 2d pixels. Three layers of rate 1 see
# 7 pixels; rates 1, 2, 4 see 15 with the same 27 weights per channel pair; a stride-2 pooling
# between them grows the field too, but halves the map. Atrous convolution grows the field
# *without* shrinking the map:

# %% tags=["nbval-check-output"]
for label, layers in [("3x3 rates 1, 1, 1", [(3, 1, 1)] * 3),
                      ("3x3 rates 1, 2, 4", [(3, 1, 1), (3, 1, 2), (3, 1, 4)]),
                      ("3x3, pool/2, 3x3, 3x3", [(3, 1, 1), (2, 2, 1), (3, 1, 1), (3, 1, 1)])]:
    steps = receptive_fields(layers)
    print(f"{label:<24} fields {[f for f, _ in steps]}, output map 1/{steps[-1][1]} of the input")

# %% [markdown]
# ## DeepLab v1: LargeFOV
#
# DeepLab v1 takes the ImageNet VGG16, sets the strides of pool4 and pool5 to 1 so the scores
# come at output stride 8 instead of 32, and dilates everything after each removed stride to see
# what it saw before (conv5 by 2). The paper's best variant, *LargeFOV* (Sec. 3.1 and Table 1),
# also replaces the huge 7×7×4096 fc6 by a 3×3 convolution with 1024 channels at rate 12, which
# keeps a large field of view with a fraction of the weights. The 8× smaller score map is
# upsampled bilinearly. Shapes for a training-sized image (S is the side), and the parameter count
# at the paper's scale on PASCAL VOC's 21 classes (Table 1: 20.5M; trainable parameters, as in every
# chapter, so FCN-32s's fixed bilinear upsampling is not counted):

# %% tags=["nbval-check-output"]
size = prof.image_size
net = models.create("deeplabv1", width=0.125).eval()
x = torch.rand(1, 3, size, size)
with torch.no_grad():
    features = net.backbone(x)
    fc7 = net.fc7(net.fc6(features["pool5"]))
    print("image", shape_text(x, size), "-> pool5", shape_text(features["pool5"], size // 8, "S/8"),
          "-> fc7", shape_text(fc7, size // 8, "S/8"), "-> scores", shape_text(net.fc8(fc7), size // 8, "S/8"),
          "-> upsampled", shape_text(net(x), size))
with torch.device("meta"):
    largefov = models.create("deeplabv1", num_classes=21)
    fcn = models.create("fcn32s", num_classes=21)
print(f"LargeFOV: {measure.parameter_count(largefov) / 1e6:.1f}M parameters; fc6 {largefov.fc6[0].kernel_size} "
      f"rate {largefov.fc6[0].dilation[0]}, {largefov.fc6[0].out_channels} channels")
print(f"FCN-32s with the 7x7x4096 fc6: {measure.parameter_count(fcn) / 1e6:.1f}M parameters")

# %% [markdown]
# The LargeFOV's field, from the layer arithmetic of the whole chain (VGG16's thirteen 3×3
# convolutions, its five 3×3 poolings with strides 2, 2, 2, 1, 1, conv5 at rate 2, fc6 at rate 12)
# and measured as the extent of the input gradient of the centre output pixel. The measurement
# includes the final bilinear upsampling, which mixes two neighbouring score cells and so widens
# the field by one cell (8 pixels at output stride 8):

# %% tags=["nbval-check-output"]
steps = receptive_fields(largefov.backbone)
chain = [*largefov.backbone.modules(), largefov.fc6[0]]
print(f"through pool5: {steps[-1][0]} pixels, output stride {steps[-1][1]}")
print(f"through fc6 (rate 12): {receptive_fields(chain)[-1][0]} pixels")
print("measured (width 0.125):", empirical_receptive_field(models.create("deeplabv1", width=0.125), (3, 512, 512)))

# %% [markdown]
# Bilinear upsampling of the stride-8 scores is smooth and blurs boundaries: DeepLab v1 sharpens
# them with a **fully connected CRF** (Krähenbühl & Koltun, NIPS 2011; the paper's Sec. 4). Each
# pixel's label pays its unary cost (minus the log of the network's probability) plus a pairwise
# cost for every other pixel with a different label, weighted by two Gaussian kernels: one on
# position and colour ("pixels close together and alike in colour should agree", the
# *bilateral* kernel) and one on position alone (smoothness). Mean-field inference with fast
# high-dimensional filtering makes this tractable on all pixel pairs. `segedu.inference.crf` wraps
# pydensecrf2, an optional extra (`pip install -e '.[crf]'`, it needs a C++ compiler); we use it on
# the trained model below.
#
# ## DilatedNet: the front-end and the context module
#
# Yu & Koltun removed pool4 and pool5 *entirely* (Sec. 4), along with the padding of the
# intermediate maps, kept fc6 as a 7×7 convolution with 4096 channels, dilated by 4, and reported
# that this simpler **front-end** beat DeepLab v1. Their contribution is the **context module**
# (Sec. 3, Table 1): seven 3×3 layers with dilations 1, 1, 2, 4, 8, 16, 1 and a 1×1 layer, all with
# C = number of classes channels, applied to the front-end's class scores. The field grows
# exponentially while the weights grow linearly, and with the paper's *identity initialisation*
# the module starts as a no-op on non-negative scores:

# %% tags=["nbval-check-output"]
context = dilatednet.ContextModule(21)
print("context module fields:", [f for f, _ in receptive_fields(context)])
weights = sum(layer.weight.numel() for layer in context if isinstance(layer, torch.nn.Conv2d))
print(f"weights: {weights} = 64 C^2 with C = 21 ({64 * 21 ** 2})")
scores = torch.rand(1, 21, 32, 32)
with torch.no_grad():
    print("identity-initialised module returns its input:", torch.equal(context(scores), scores))
with torch.device("meta"):
    frontend = models.create("dilatednet", num_classes=21, context=False)
print(f"front-end: {measure.parameter_count(frontend) / 1e6:.1f}M parameters (fc6 7x7x4096 at rate "
      f"{frontend.frontend.backbone.fc6[0].dilation[0]}), LargeFOV {measure.parameter_count(largefov) / 1e6:.1f}M")

# %% [markdown]
# ## DeepLab v2: ResNet-101 and ASPP
#
# What changed from v1 (TPAMI version, Sec. 3–4): the backbone becomes ResNet-101, dilated to
# output stride 8 (its last two stages at rates 2 and 4), and the single fc6 becomes **atrous
# spatial pyramid pooling**: four 3×3 convolutions at rates 6, 12, 18 and 24 look at the same
# features, each computes class scores, and the scores are summed (ASPP-L, Fig. 4). Each branch
# sees objects at a different scale. The CRF stays. On the stride-8 map, one branch's taps span:

# %% tags=["nbval-check-output"]
for rate in aspp.ASPP_V2_RATES:
    span = (3 - 1) * rate + 1
    print(f"rate {rate:>2}: taps span {span:>2} cells = {8 * span:>3} pixels of the image")
with torch.device("meta"):
    v2 = models.create("deeplabv2", num_classes=21)
head = measure.parameter_count(v2.classifier)
print(f"DeepLab v2: {measure.parameter_count(v2) / 1e6:.1f}M parameters, of which ASPP-L {head / 1e6:.2f}M "
      f"(4 branches x 2048 x 21 x 9 + biases = {(4 * (2048 * 21 * 9 + 21)) / 1e6:.2f}M)")

# %% [markdown]
# ## PSPNet: the pyramid pooling module
#
# PSPNet's authors looked at where FCN fails on scene parsing (Sec. 3.1, Fig. 2) and found three
# kinds of error that local evidence cannot fix: a **mismatched relationship** (a boat on a
# river predicted as a car, though cars are not found on water), **confusion categories** (a
# building partly labelled skyscraper: similar classes mixed inside one object) and
# **inconspicuous classes** (a pillow with the same pattern as the bed it lies on, missed). All
# three need global context. The **pyramid pooling module** (Sec. 3.2, Fig. 3) average-pools the
# dilated ResNet's last map to 1×1, 2×2, 3×3 and 6×6 bins, reduces each to a quarter of the
# channels, upsamples them back and concatenates them with the map. An auxiliary classifier on
# layer3 adds a loss (weight 0.4) during training only (Sec. 3.3). Shapes on a paper-scale map of
# 2048 channels (the `meta` device computes shapes without data):

# %% tags=["nbval-check-output"]
with torch.device("meta"):
    ppm = pspnet.PyramidPoolingModule(2048).eval()
    feature_map = torch.empty(1, 2048, 60, 60)
    for bins, stage in zip(pspnet.BINS, ppm.stages):
        print(f"bin {bins}x{bins}: pooled {tuple(stage[0](feature_map).shape)} -> reduced {tuple(stage(feature_map).shape)}")
    print("concatenated:", tuple(ppm(feature_map).shape), "= 2048 + 4 x 512 channels")
net = models.create("pspnet_resnet50", width=0.125, aux=True)
x = torch.rand(2, 3, size, size)
train_out = net.train()(x)
print("training mode:", {key: shape_text(value, size) for key, value in train_out.items()})
with torch.no_grad():
    print("eval mode:", shape_text(net.eval()(x), size))

# %% [markdown]
# ## DeepLab v3: image pooling and output stride
#
# DeepLab v3 (Sec. 3.3) noticed that as the atrous rate approaches the size of the feature map, a
# 3×3 filter degenerates: most of its taps fall into the zero padding, and at the extreme only
# the centre tap sees data, a 1×1 convolution (the paper's Fig. 4, on a 65×65 map). Counting it
# for each rate:

# %% tags=["nbval-check-output"]
def valid_taps(n: int, rate: int) -> tuple[float, float]:
    """Mean share of a 3x3 rate-r filter's taps inside an n x n map, and share of positions
    where only the centre tap is inside (zero padding)."""
    position = np.arange(n)
    inside = np.stack([(position + offset * rate >= 0) & (position + offset * rate < n) for offset in (-1, 0, 1)])
    per_axis = inside.sum(0)  # taps inside along one axis, per position
    counts = np.outer(per_axis, per_axis)
    return counts.mean() / 9, (counts == 1).mean()


for rate in (1, 6, 12, 24, 36, 48, 64):
    mean, centre = valid_taps(65, rate)
    print(f"rate {rate:>2} on 65x65: {mean:6.1%} of the taps inside on average; only the centre at {centre:6.1%} of positions")

# %% [markdown]
# The fix is to give the global context directly: v3's ASPP has a 1×1 branch, three 3×3 atrous
# branches (rates 6, 12, 18 at output stride 16, doubled at 8) and an **image pooling** branch
# (global average pooling, 1×1 convolution, upsampled), each with 256 channels and batch norm,
# concatenated and projected; the CRF is dropped. The network can run at output stride 16
# (cheaper) or 8 (denser features); the paper trains at 16 and evaluates at 8. The cost of the
# choice, counted at the paper's scale for a 512×512 image (FLOPs are 2 per multiply-add,
# `measure.flop_count`) and measured at the width and crop size this chapter trains with (a
# quarter of the paper's channels, 192×192 pixels) on this machine, a 2-core CPU:

# %% tags=["nbval-check-output"]
flops = {}
for stride in (16, 8):
    with torch.device("meta"):
        v3 = models.create("deeplabv3_resnet101", num_classes=21, output_stride=stride)
    flops[stride] = measure.flop_count(v3, 512)
    print(f"output stride {stride:>2}: ASPP rates {aspp.atrous_rates(stride)}, "
          f"{measure.parameter_count(v3) / 1e6:.1f}M parameters, "
          f"{flops[stride] / 1e9:.0f} GFLOPs at 512x512, last map 512/{stride} = {512 // stride}")
print(f"output stride 8 costs {flops[8] / flops[16]:.1f}x the FLOPs of 16")

# %%
for stride in (16, 8):
    net = models.create("deeplabv3_resnet50", width=prof.width, output_stride=stride).to(session.device)
    speed = measure.forward_speed(net, prof.batch_size, size, session.device, repeats=3)
    memory = measure.saved_activation_bytes(net, torch.rand(2, 3, size, size, device=session.device))
    print(f"width {prof.width}, {size}x{size}, output stride {stride:>2}: {speed:6.1f} images/s, "
          f"{memory / 2**20:6.1f} MiB saved for backward per 2 images")

# %% [markdown]
# On these crops, output stride 8 ran at 57.3 images/s against 155.5 at stride 16, and kept
# 72.7 MiB for the backward pass per 2 images against 36.2: the last stage runs on a map with four
# times the cells. Single timings on a shared machine move from run to run, but a factor of this
# size is the geometry, not noise.
#
# ## DeepLab v3+: a decoder and separable convolutions
#
# v3 still predicts at 1/8 or 1/16 of the image and upsamples by bilinear interpolation. v3+
# (Sec. 3.1, Fig. 2) adds a light **decoder**: the encoder's output is upsampled 4× and
# concatenated with the backbone's stride-4 features, reduced by a 1×1 convolution to 48 channels
# so they do not outweigh the encoder's 256; two 3×3 convolutions refine the result, and the scores
# are upsampled 4× to the image. It also makes the ASPP's and the decoder's 3×3 convolutions
# **depthwise separable** (a 3×3 convolution per channel, then a 1×1 across channels), and uses a
# modified, aligned Xception as a backbone (Sec. 3.2). What a separable convolution saves, 256 → 256
# channels:

# %% tags=["nbval-check-output"]
plain = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False)
separable = SeparableConv2d(256, 256, 3)
count = measure.parameter_count
depthwise = sum(p.numel() for n, p in separable.named_parameters() if p.dim() == 4 and p.shape[1] == 1)
print(f"3x3 convolution: {count(plain):,} weights = 256 x 256 x 9")
print(f"separable: {count(separable):,} parameters (depthwise {depthwise:,} = 256 x 9, the rest 1x1 and batch norms)")
print(f"{count(plain) / count(separable):.1f}x fewer")

# %%
net = models.create("deeplabv3plus_resnet50", width=0.125).eval()
x = torch.rand(1, 3, size, size)
with torch.no_grad():
    features = net.backbone(x)
    encoder = net.aspp(features[net.high_level])
    low = net.decoder.reduce(features[net.low_level])
    print("encoder (ASPP) output", shape_text(encoder, size // 16, "S/16"), "| low-level", net.low_level,
          shape_text(features[net.low_level], size // 4, "S/4"), "reduced to", shape_text(low, size // 4, "S/4"))
    print("decoder scores", shape_text(net.decoder(encoder, features[net.low_level]), size // 4, "S/4"),
          "-> upsampled", shape_text(net(x), size))

# %% [markdown]
# ## The family at the papers' scale
#
# Parameters and FLOPs for a 512×512 image, 21 classes (PASCAL VOC) for all, counted on the
# `meta` device. The field column is measured at width 0.125 on a 513×513 input (the measurement
# needs float64 gradients, so a small width keeps it quick; the width does not change the
# geometry). A model with global pooling (PSPNet's 1×1 bin, the ASPP's image pooling) connects
# *every* input pixel to every output pixel, so its field is the whole image, whatever its size;
# the dilated ResNets and DilatedNet's context module reach beyond a 513-pixel input without it.

# %% tags=["nbval-check-output"]
FAMILY = {"deeplabv1": {}, "dilatednet": {}, "deeplabv2": {}, "pspnet_resnet101": {},
          "deeplabv3_resnet101": {"output_stride": 16}, "deeplabv3plus_xception": {}}
for name, options in FAMILY.items():
    with torch.device("meta"):
        net = models.create(name, num_classes=21, **options)
    small = models.create(name, width=0.125, **options)
    if any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in small.modules()):
        field = "whole image (global pooling)"
    else:
        try:
            field = "x".join(map(str, empirical_receptive_field(small, (3, 513, 513))))
        except ValueError:  # the field reaches the border of the input
            field = "larger than 513"
    print(f"{name:<24}{measure.parameter_count(net) / 1e6:>7.1f}M{measure.flop_count(net, 512) / 1e9:>8.0f} GFLOPs"
          f"   field {field}")

# %% [markdown]
# ## Training under one budget
#
# All six models train on the same data under the same budget: crops of 192×192 pixels, batches
# of 8, 5 epochs of 48 steps (240 optimiser steps), AdamW at a learning rate of $10^{-3}$ with a
# cosine schedule, a quarter of the papers' channels, seed 0 only, in bf16 mixed precision
# (autocast) with the channels-last memory layout on this CPU. As in the papers, which start
# from ImageNet, every model fine-tunes a pretrained encoder: the course's own, pretrained on a
# separate synthetic corpus. DeepLab v1 and DilatedNet start from the course's VGG16 with batch
# norm after every convolution (`batch_norm=True`, torchvision's vgg16_bn layout, as FCN in
# [chapter 06](06_fcn)). DeepLab v2, PSPNet (with its auxiliary head), DeepLab v3 (output stride
# 8) and v3+ (output stride 16) start from the course's ResNet-50; for v2 that replaces the
# paper's ResNet-101, so that the four share one encoder. The layers the encoder does not cover
# (v1's 3×3 fc6 and its fc7, the context module, the ASPP, the pyramid pooling, the decoder, the
# classifiers) start from random weights.

# %%
floor = background_floor(session.data_dir, "val")["miou"]
print(f"floor: predicting Background everywhere scores val mIoU {float(floor):.4f}")
runs = compare.train_architectures(session, ("deeplabv1", "dilatednet", "deeplabv2", "pspnet_resnet50",
                                                 "deeplabv3_resnet50", "deeplabv3plus_resnet50"))
for label, run in runs.items():
    print(f"{label:<28} best val mIoU {run.trainer.best_miou:.4f} after {run.trainer.step} steps ({run.seconds:.0f} s)")

# %%
viz.plot_learning_curves({label: run.trainer.history for label, run in runs.items()},
                         title="DeepLab family and PSPNet, same budget", floor=floor)
plt.show()

# %% [markdown]
# ## Per class, at the boundaries, and speed
#
# Each best checkpoint scored on the validation images at their own resolution, over all pixels
# and within 3 pixels of a class boundary, and its inference speed on this machine:

# %%
scores = compare.score_runs({label: run.run_dir for label, run in runs.items()}, session.data_dir,
                            device=session.device, batch_size=prof.batch_size)
print(compare.per_class_table(scores))
print()
for label, s in scores.items():
    print(f"{label:<28} {s['images_per_s']:.1f} images/s")

# %% [markdown]
# **The ResNet-50 models are far ahead of the VGG ones in this run.** DeepLab v2 reached 0.4093
# mIoU, PSPNet 0.3943, v3 0.3161 and v3+ 0.3088; DeepLab v1 reached 0.1939 and DilatedNet 0.1788.
# All six are above the floor of predicting Background everywhere, 0.0643; what lifts the two VGG
# models above it is two object classes out of ten, as the per-class columns below show.
# The boundary band keeps the split between the families and the same order inside each: 0.2373,
# 0.2316, 0.1877 and 0.1863 for the ResNet-50 models, 0.1138 and 0.0987 for the VGG ones. Pixel
# accuracy (0.849 to 0.919) hides most of this, because most pixels are Background and every model
# gets Background largely right (IoU 0.904 to 0.946).
#
# The per-class columns show where the gap comes from. DeepLab v2 learned 9 of the 10 object
# classes, all but Battery: General trash (0.222), Paper (0.653), Paper pack (0.301), Metal
# (0.186), Glass (0.260), Plastic (0.460), Styrofoam (0.530), Plastic bag (0.793) and Clothing
# (0.153). PSPNet learned 7 (Metal, Glass and Battery at 0.000), v3 5 (Paper, Plastic, Styrofoam,
# Plastic bag and, barely, General trash at 0.106) and v3+ 4 (Paper, Plastic, Styrofoam and
# Plastic bag; its General trash at 0.009 and Paper pack at 0.008 do not count). DeepLab v1 and
# DilatedNet learned only 2, Paper (0.454 and 0.353) and Plastic bag (0.758 and 0.710). No model
# learned Battery (0.000 in every row); only v2 (0.153) and PSPNet (0.222) learned Clothing.
#
# What one seed per model can support: no paired test was run, and the seed spread of these
# models is unknown. In [chapter 06](06_fcn) the seeds of fine-tuned FCN-32s spread far more
# widely than those of FCN-8s, so a single run can be off by a lot. The split between the two
# encoder families is large, and it repeats four times against two: the weakest ResNet-50 model,
# v3+ at 0.3088, is far above the best VGG one, v1 at 0.1939. That is the one pattern of this
# table worth taking seriously, and it is still a single run, not a tested result. The order
# inside each family (v2 over PSPNet, v3 over v3+, v1 over DilatedNet) cannot be called: 0.4093
# against 0.3943, 0.3161 against 0.3088 and 0.1939 against 0.1788 are each one run per model, and
# none of these gaps is larger than the spread of FCN-32s's seeds in chapter 06.
#
# Nor does the table say that ResNet-50 is the better encoder. The same VGG16 encoder gave FCN-8s
# scores close to those of v3 and v3+ here, under the same budget ([chapter 06](06_fcn)). A
# plausible reason for the VGG pair's low scores, not tested here, is how they reuse the encoder:
# both drop the stride of pool4 and pool5 (DilatedNet drops the layers), so the pretrained conv5
# filters see features pooled differently from those they were trained on, and v1 adds a fresh fc6
# and fc7 between pool5 and the classes. A dilated ResNet has no max pooling in the stages it
# dilates: a convolution's stride becomes 1 and the convolutions after it are dilated.
#
# Among the ResNet-50 models, our order is the exact reverse of the papers' on PASCAL VOC, where
# v3+ is above v3, v3 above PSPNet and PSPNet above v2. The papers trained for far longer, at full
# width. In 240 steps, v2's head, four atrous convolutions straight to class scores, has the fewest
# new layers to fit, which may be part of why it led here. Among the VGG models, DilatedNet's
# authors reported that their front-end beat DeepLab v1; in this single run v1 is ahead, by a
# margin one seed cannot separate from noise.
#
# PSPNet's "confusion categories" on our data: the classes each model mistakes most often for
# another object class (the share of a class's pixels predicted as the other class; background
# left out), from the same confusion matrices:

# %%
val = dataset.CocoSegmentation(session.data_dir, "val")
names = val.class_names
for label, s in scores.items():
    confusion = s["overall"]["confusion"].double()
    shares = confusion / confusion.sum(1, keepdim=True).clamp(min=1)
    shares.fill_diagonal_(0)
    shares[:, 0] = shares[0, :] = 0
    top = torch.topk(shares.flatten(), 2)
    pairs = [f"{names[i // len(names)]} as {names[i % len(names)]} {v:.1%}" for v, i in zip(top.values.tolist(),
                                                                                        top.indices.tolist())]
    print(f"{label:<30}" + "; ".join(pairs))

# %%
best = max(scores, key=lambda label: scores[label]["overall"]["miou"])
fastest = max(scores, key=lambda label: scores[label]["images_per_s"])
v1_label, v3p_label = f"deeplabv1-seed{seed}", f"deeplabv3plus_resnet50-seed{seed}"
print(f"highest mIoU: {best} ({scores[best]['overall']['miou']:.4f}); fastest at inference: {fastest}")
for key, what in (("overall", "mIoU"), ("boundary", "boundary mIoU")):
    a, b = scores[v3p_label][key]["miou"], scores[v1_label][key]["miou"]
    print(f"{what}: v3+ {a:.4f} vs v1 {b:.4f} (difference {a - b:+.4f}, one seed each)")

# %% [markdown]
# Clothing as Paper tops the list only for the two VGG models: 92.7% of Clothing's pixels for v1,
# 87.5% for DilatedNet, followed by Styrofoam as Paper (79.0% and 80.9%). This is not what PSPNet
# means by confusion categories, two similar classes mixed inside one object. Neither model learned
# Clothing or Styrofoam (IoU 0.000), and Paper is one of the two classes they did learn: the pixels
# of a class a network has not learned go to a learned class. The same holds for three of the
# ResNet-50 models. Metal and Glass, which PSPNet, v3 and v3+ did not learn (0.000 in all three
# rows), go to General trash for PSPNet (36.8% and 34.4%) and to Plastic for v3 (55.5% and 55.0%)
# and v3+ (55.2% of Glass, 39.6% of Metal). Only v2's pairs come close to a real confusion: it
# learned every class involved, Clothing (0.153), Glass (0.260) and General trash (0.222), and
# still sends 30.1% of Clothing's pixels and 26.4% of Glass's to General trash. So these shares
# mostly measure which classes a model has not learned yet, not the fine confusions that global
# context is meant to fix. Pyramid pooling does not stand out: PSPNet sends more of Glass to
# General trash (34.4%) than v2 (26.4%), which has no global pooling, but v2 learned Glass and
# PSPNet did not. One seed each, so that difference cannot be called either.
#
# The last cell sets the first DeepLab against the last: v3+ 0.3088 against v1 0.1939 over all
# pixels (+0.1150), 0.1863 against 0.1138 in the boundary band (+0.0725), one seed each. v3+ was
# also the fastest at inference, 118.4 images/s, and DilatedNet, with its 7×7 fc6 at stride 8, the
# slowest at 42.7.
#
# ## The field a trained network uses
#
# The fields computed above are *theoretical*: every input pixel a path of layers connects to an
# output pixel. Luo et al. (NeurIPS 2016) showed that a network does not use its field evenly. The
# gradient of a centre output pixel with respect to the input, the *effective* receptive field,
# is concentrated near the centre and covers a small part of the theoretical one. Measured here on
# the trained checkpoints, averaged over real validation images: the radius holding half and 95%
# of the gradient's mass, and the share of the theoretical field's area that holds 95% of it.

# %%
probe = torch.stack([val[k][0] for k in range(min(8, len(val)))])
side = probe.shape[-1]
print(f"{'model':<28}{'theoretical field':>18}{'r50 (px)':>10}{'r95 (px)':>10}{'95% in':>14}")
erfs = {}
for label, run in runs.items():
    model, _, _ = load_model(run.run_dir, session.device)
    erf = effective_receptive_field(model, side, images=normalize(probe))
    erfs[label] = erf
    field = "beyond the image" if erf.field is None else f"{erf.field[0]} px"
    share = "-" if erf.field_share() is None else f"{100 * erf.field_share():.1f}% of it"
    print(f"{label:<28}{field:>18}{erf.radius_50:>10.1f}{erf.radius(0.95):>10.1f}{share:>14}")
    del model

# %%
fig, axes = plt.subplots(1, len(erfs), figsize=(2.2 * len(erfs), 2.6))
for ax, (label, erf) in zip(np.atleast_1d(axes), erfs.items()):
    ax.imshow(erf.weights.sqrt(), cmap="magma")
    ax.set_title(label.removesuffix(f"-seed{seed}"), fontsize=7)
    ax.axis("off")
fig.suptitle(f"effective receptive field of the centre pixel on {side}x{side} images (sqrt of |gradient|)", fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# On the 256-pixel validation images every model's theoretical field reaches beyond the image
# (DeepLab v1's, the smallest, is 419 pixels), so the last column stays empty: there is no finite
# field inside the image to take a share of. The effective field is much tighter. Half of the
# gradient's mass lies within 32.7 pixels of the centre for v1 and within 41.9 to 59.6 pixels for
# the others, a disc in the middle of the image, as Luo et al. found: the centre of the field
# dominates. The tail is long, though. 95% of the mass needs a radius of 117.5 to 134.6 pixels,
# about as far as the image's edge, 128 pixels from the centre; for a two-dimensional Gaussian the
# 95% radius would be about twice the half-mass radius. v2 and DilatedNet come closest to that
# (134.6 against 59.6, 130.4 against 51.6); v1 is furthest from it (133.9 against 32.7). The
# trained networks do use a little of the whole image.
#
# Global pooling did not widen the effective field: PSPNet and v3, whose theoretical field is the
# whole image, have the two smallest 95% radii (117.5 and 121.1), and v3+'s (132.6) lies among
# those of the models without global pooling (130.4 to 134.6). Nor does the field follow the mIoU:
# the two widest cores belong to v2 (59.6), the best model here, and DilatedNet (51.6), the
# weakest. One checkpoint per model and 8 images, so read these as a description of these
# networks, not as a law.
#
# ## DenseCRF on DeepLab v1 (and on v3+)
#
# The CRF runs on the CPU after the network, image by image, on the softmax of the logits at the
# image's resolution and the image's colours. With the default kernel parameters of
# `segedu.inference.crf` (those of DeepLab's released configuration, for 500-pixel PASCAL
# images) we score the same checkpoints with and without it; the CRF's time counts in the speed.
# v1 is the model the CRF was designed for; v3+ is there to see whether a model with a decoder,
# which the DeepLab authors no longer post-processed, still gains from it.

# %%
if crf.is_available():
    refined = {}
    for label in (v1_label, v3p_label):
        with_crf = compare.score_runs({f"{label}+CRF": runs[label].run_dir}, session.data_dir,
                                      device=session.device, batch_size=prof.batch_size,
                                      options=InferenceOptions(crf=True))
        refined[label] = with_crf[f"{label}+CRF"]
    table = {}
    for label in refined:
        table[label], table[f"{label}+CRF"] = scores[label], refined[label]
    print(compare.per_class_table(table))
    print()
    for label, s in table.items():
        print(f"{label:<32} {s['images_per_s']:.1f} images/s")
    print()
    for label in refined:
        gain = {key: refined[label][key]["miou"] - scores[label][key]["miou"] for key in ("overall", "boundary")}
        print(f"CRF on {label}: mIoU {gain['overall']:+.4f}, boundary mIoU {gain['boundary']:+.4f}")
else:
    try:
        crf.dense_crf(np.zeros((1, 1, 3), np.uint8), np.ones((1, 1, 1), np.float32))
    except SegeduError as error:
        print(error)

# %% [markdown]
# In this run the CRF raised both models' scores on the validation images, with kernel parameters
# tuned for PASCAL, not for these images. DeepLab v1 went from 0.1939 to 0.2063 mIoU (+0.0124) and
# from 0.1138 to 0.1496 in the boundary band (+0.0359); v3+ from 0.3088 to 0.3277 (+0.0188) and from
# 0.1863 to 0.2433 (+0.0570). The gain in the band is more than twice the overall one for both,
# which is what the CRF is for: it moves label edges onto colour edges. Per class, it raised every
# class each model had already learned: v1's Background (0.920 to 0.947), Paper (0.454 to 0.515)
# and Plastic bag (0.758 to 0.807), and all four of v3+'s object classes, Paper (0.667 to 0.707),
# Plastic (0.398 to 0.459), Styrofoam (0.570 to 0.632) and Plastic bag (0.799 to 0.845). It added
# no class: every 0.000 stays 0.000, because the CRF can only reshape regions the network already
# predicts, and it erased v3+'s traces of General trash (0.009) and Paper pack (0.008), probably
# small regions that the pairwise cost merged into their neighbours. Contrary to the expectation
# that a model with a decoder needs it less, v3+ gained more than v1, in both columns. Both are
# single checkpoints of one seed: whether the gain holds for other seeds was not tested. Its price is
# speed: on this machine v1 fell from 68.4 to 6.8 images/s and v3+ from 118.4 to 7.1, since the
# CRF runs image by image on the CPU.
#
# On one validation image: the network's prediction, the CRF's, and the ground truth.

# %%
image, mask = val[0]
predicted = compare.predictions({label: run.run_dir for label, run in runs.items()}, image, session.device)
if crf.is_available():
    from segedu.inference.predict import predict_logits

    model, config, _ = load_model(runs[v1_label].run_dir, session.device)
    with torch.no_grad():
        logits = predict_logits(model, image[None].to(session.device), config.image_size)[0].float().cpu()
    predicted[f"{v1_label}+CRF"] = crf.refine(image, logits)
viz.show_predictions(image, mask, predicted, names=names)
plt.show()

# %% [markdown]
# ## Summary
#
# * A rate-2 filter [1, 2, 3] is the filter [1, 0, 2, 0, 3] without the zeros (`True` above).
#   Three 3×3 layers at rates 1, 2, 4 see 15 pixels against 7 at rate 1, with the same weights and
#   without shrinking the map.
# * DeepLab-LargeFOV has 20.5M parameters (the paper's Table 1) against 134.3M trainable ones
#   (the fixed bilinear upsampling excluded) for FCN-32s with the ImageNet-style 7×7×4096 fc6, and
#   sees 419 pixels along the chain through fc6 (measured with the bilinear upsampling: 427 × 427).
# * The context module's field grows 3, 5, 9, 17, 33, 65, 67 with 64 C² weights, and starts as
#   the identity. DilatedNet's front-end keeps the 7×7×4096 fc6: 134.3M parameters.
# * ASPP-L's branches span 104 to 392 image pixels; the four score branches are 1.55M of v2's
#   parameters.
# * The pyramid pooling module doubles the channels (2048 → 4096); PSPNet's auxiliary output exists
#   in training mode only.
# * On a 65×65 map, a 3×3 filter at rate 64 has only its centre tap inside at 93.9% of the
#   positions, which is why v3 adds image pooling. Output stride 8 costs 3.6 times
#   the FLOPs of 16 with the same 58.6M parameters; at a quarter of the channels on 192-pixel
#   crops it ran at 57.3 against 155.5 images/s and kept 72.7 against 36.2 MiB per 2 images.
# * A separable 3×3 convolution (256 → 256) has 8.6 times fewer parameters than a plain one; at the
#   papers' scale v3+ on Xception costs 103 GFLOPs at 512×512, against 136 for v3 on ResNet-101 at
#   output stride 16 and 482 at output stride 8.
# * Fine-tuned for 240 steps on 192-pixel crops in bf16 autocast, one seed each: DeepLab v2 (on
#   ResNet-50) 0.4093 mIoU, PSPNet 0.3943, v3 0.3161, v3+ 0.3088, v1 0.1939, DilatedNet 0.1788,
#   against an all-Background floor of 0.0643. The four ResNet-50 models learned 4 to 9
#   of the 10 object classes, the two VGG ones only Paper and Plastic bag; none learned Battery,
#   and only v2 and PSPNet learned Clothing. The split between the two encoder families is the one
#   pattern large enough to take seriously without a test; the order inside each family cannot be
#   called, and among the ResNet models it is the exact reverse of the papers'. The
#   [comparison](11_comparison) trains its finalists over three seeds.
# * The most confused pairs are mostly classes a model never learned falling onto one it did
#   (Clothing as Paper, 92.7% and 87.5% of its pixels for the VGG models; Metal and Glass as
#   General trash or Plastic for PSPNet, v3 and v3+), not PSPNet's confusion categories; only v2,
#   which learned every class involved, mixes learned classes, and PSPNet does not stand out. v3+
#   was the fastest at inference (118.4 images/s on 2 CPU cores).
# * The effective field is much smaller than the theoretical one, which passes the 256-pixel image
#   for every model: half the gradient lies within 32.7 to 59.6 pixels of the centre, 95% within
#   117.5 to 134.6. Global pooling did not widen it: PSPNet and v3, two of the three models with
#   it, had the smallest 95% radii.
# * DenseCRF raised v1's mIoU from 0.1939 to 0.2063 and its boundary mIoU from 0.1138 to 0.1496,
#   v3+'s from 0.3088 to 0.3277 and from 0.1863 to 0.2433, with parameters tuned for another
#   dataset: it raised every class each model had learned and added none. One checkpoint each.
#   It cut the inference speed on this machine from 68.4 and 118.4 images/s to 6.8 and 7.1.
#
# ## Exercises
#
# 1. Train DeepLab v3 at `output_stride=16` and compare mIoU and speed with the stride-8 run.
# 2. Tune the CRF: try `bilateral_sxy` in 10, 30, 80 and `bilateral_compat` in 3, 5, 10 on the
#    validation images (never on the test images). How much of the boundary gap to v3+ does a tuned
#    CRF close?
# 3. Set `multi_grid=True` for DeepLab v3 (block4 unit rates 1, 2, 4). Does the measured receptive
#    field change? Does the mIoU?
# 4. Remove PSPNet's auxiliary head (`aux=False`) and retrain. Does deep supervision help at this
#    budget?
# 5. Use `valid_taps` to find the largest rate at which every tap of a 3×3 filter still sees data
#    for at least half the positions of a 32×32 map (a 512-pixel image at output stride 16).
# 6. DeepLab v1's authors did not start fc6 and fc7 from random weights: they decimated
#    ImageNet's, keeping every third tap of the 7×7 fc6 (a 3×3 kernel, whose rate 12 is the 7×7's
#    rate 4 times 3) and every fourth filter. The option `decimated_fc=True` builds that start
#    (`models.create("deeplabv1", batch_norm=True, pretrained="course", decimated_fc=True)`). Train
#    it on three seeds under this chapter's budget, e.g. with `compare.train_plan(session,
#    "decimated", [{"model": "deeplabv1", "seed": s, "model_options": {"batch_norm": True,
#    "decimated_fc": True}} for s in (0, 1, 2)])`, train the fresh start on the same seeds, and
#    compare the two with a paired test. Does a pretrained fc6 help when its 3×3 kernel keeps 9 of
#    the 49 taps it was trained with?
