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
# # HRNet: keeping high resolution
#
# **What you will learn.** Every network so far goes down to a low resolution and then tries to
# come back up: FCN and U-Net with skips, DeepLab by stopping at output stride 8 and
# interpolating. HRNet (Sun et al. 2019; Wang et al., TPAMI 2020, "Deep High-Resolution
# Representation Learning for Visual Recognition") never gives the high resolution up. It keeps a
# stream at 1/4 of the image from start to end, adds streams at 1/8, 1/16 and 1/32 *in parallel*,
# and exchanges information between all of them over and over ("repeated multi-resolution
# fusion"). For segmentation, HRNetV2 concatenates all four streams at the end. We follow the
# shapes through the network, look inside one fusion, count parameters and FLOPs against the
# paper, and measure where the high resolution should help: at class boundaries and on small
# objects.
#
# **What it builds on.** [Receptive field](09_receptive_field) for DeepLab v3 and v3+ (our
# comparison models), [skip connections](08_skip_connections) for merging resolutions, and
# [metrics](04_metrics) for the boundary band.

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from segedu import models, viz
from segedu.data import dataset
from segedu.experiments import compare
from segedu.inference.evaluate import background_floor
from segedu.models import hrnet, measure
from segedu.models.receptive_field import empirical_receptive_field, receptive_fields
from segedu.notebook import setup, shape_text

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
prof = session.profile
print(session.describe())

# %% [markdown]
# ## Four streams in parallel
#
# The stem (two stride-2 3×3 convolutions) brings the image to 1/4; stage 1 is four bottleneck
# units at that resolution. Each later stage adds a stream at half the resolution of the last one,
# made by a strided 3×3 convolution (a *transition*), and runs *high-resolution modules*: four
# residual blocks on every stream, then a fusion (Sec. 3, Fig. 2). Stages 2, 3 and 4 have 1, 4 and
# 3 modules, and the streams have C, 2C, 4C and 8C channels (C = 18 for W18, 48 for W48). The
# outputs of every stage for a training-sized image (side S), at a quarter of the channels:

# %% tags=["nbval-check-output"]
size = prof.image_size
net = models.create("hrnetv2_w18", width=0.25).eval()
x = torch.rand(1, 3, size, size)
with torch.no_grad():
    y = net.relu(net.bn2(net.conv2(net.relu(net.bn1(net.conv1(x))))))
    print("stem:", shape_text(y, size // 4, "S/4"))
    streams = [net.layer1(y)]
    print("stage 1:", shape_text(streams[0], size // 4, "S/4"))
    for stage in (2, 3, 4):
        streams = getattr(net, f"stage{stage}")(getattr(net, f"transition{stage - 1}")(streams))
        shapes = [shape_text(s, size // 2 ** (i + 2), f"S/{2 ** (i + 2)}") for i, s in enumerate(streams)]
        print(f"stage {stage} ({len(getattr(net, f'stage{stage}'))} modules):", ", ".join(shapes))
    print("logits:", shape_text(net(x), size))

# %% [markdown]
# ## Repeated multi-resolution fusion
#
# At the end of each module, every output stream is the sum of all input streams brought to its
# resolution and width (Fig. 3): a higher resolution comes down by a chain of stride-2 3×3
# convolutions (one per halving), a lower one comes up by a 1×1 convolution and bilinear
# upsampling, and a stream goes to itself unchanged. The fusion of stage 4 at the paper's scale
# (W48), read from the model:

# %% tags=["nbval-check-output"]
with torch.device("meta"):
    w48 = models.create("hrnetv2_w48")
fuse = w48.stage4[0].fuse_layers


def describe(path) -> str:
    if path is None:
        return "identity"
    convs = [m for m in path.modules() if isinstance(m, torch.nn.Conv2d)]
    if all(c.stride == (2, 2) for c in convs):
        return f"{len(convs)} x stride-2 3x3 conv"
    return f"1x1 conv {convs[0].in_channels}->{convs[0].out_channels} + upsample"


for i in range(4):
    print(f"output 1/{2 ** (i + 2):<2} ({w48.channels[i]:>3} ch) = "
          + " + ".join(f"[1/{2 ** (j + 2)}: {describe(fuse[i][j])}]" for j in range(4)))

# %% [markdown]
# The representation head of HRNetV2 (Fig. 4(b)) upsamples the 1/8, 1/16 and 1/32 streams to 1/4,
# concatenates all four (15C channels), mixes them with a 1×1 convolution and predicts the
# classes at 1/4, upsampled bilinearly to the image.
#
# ## Parameters and FLOPs at the paper's scale
#
# The paper reports 65.9M parameters for HRNetV2-W48 on Cityscapes' 19 classes; ours, counted
# below, has the same. FLOPs for a 512×512 image, with DeepLab
# v3 and v3+ on ResNet-101 for scale (FLOPs = 2 per multiply-add, `measure.flop_count`):

# %% tags=["nbval-check-output"]
rows = {"hrnetv2_w18": {}, "hrnetv2_w48": {}, "deeplabv3_resnet101": {}, "deeplabv3plus_resnet101": {}}
for name, options in rows.items():
    with torch.device("meta"):
        net = models.create(name, num_classes=19, **options)
    print(f"{name:<26}{measure.parameter_count(net) / 1e6:>7.1f}M{measure.flop_count(net, 512) / 1e9:>8.0f} GFLOPs")

# %% [markdown]
# ## What the high resolution costs
#
# A dilated ResNet at output stride 8 runs its deepest, widest stages at 1/8; HRNet runs 1/4 all
# the way, but thin (C channels), and its wide streams are at low resolution. At the width and
# crop size this chapter trains with (a quarter of the paper's channels, 192×192 pixels), the
# parameters, the memory autograd keeps for the backward pass and the inference speed on this
# machine, a 2-core CPU:

# %%
for name in ("hrnetv2_w18", "deeplabv3_resnet50", "deeplabv3plus_resnet50"):
    net = models.create(name, width=prof.width).to(session.device)
    memory = measure.saved_activation_bytes(net, torch.rand(2, 3, size, size, device=session.device))
    speed = measure.forward_speed(net, prof.batch_size, size, session.device, repeats=3)
    print(f"{name:<24} {measure.parameter_count(net) / 1e6:6.2f}M parameters, {memory / 2**20:6.1f} MiB saved "
          f"per 2 images, {speed:6.1f} images/s")

# %% [markdown]
# At this width HRNetV2-W18 has 0.49M parameters, against 2.49M for v3 and 2.53M for v3+. It kept
# 39.9 MiB per 2 images for the backward pass, a little over half of v3's 72.7 at output stride 8
# and just below v3+'s 42.2, and ran at 111.7 images/s, well ahead of v3 (53.5 images/s) and
# close to v3+ (119.8). The thin 1/4 stream costs less than a wide stride-8 stage; v3+, with its
# backbone at stride 16 and only a light decoder at 1/4, is about as cheap. These are single
# timings on a shared machine.
#
# Its receptive field. HRNet is not a chain, but the layer arithmetic along its deepest path gives
# the field: stem and stage 1 at 1/4, then each transition's strided convolution down to the
# newest stream and every residual block's two 3×3 convolutions on it (stage 2's one module at 1/8,
# stage 3's four at 1/16, stage 4's three at 1/32); the fusions carry the result up to the 1/4
# output. The 1/32 stream's blocks alone add 2 × 2 × 32 = 128 pixels each. The measurement (centre
# output pixel's input gradient, width 0.125) confirms that the field does not fit in a
# 1025-pixel input, twice the competition's images:

# %% tags=["nbval-check-output"]
blocks = hrnet.BLOCKS_PER_BRANCH
deepest = ([(3, 2), (3, 2)] + [(1,), (3,), (1,)] * hrnet.STAGE1_BLOCKS            # stem, stage 1 (bottlenecks)
           + [(3, 2)] + [(3,)] * 2 * blocks * hrnet.MODULES_PER_STAGE[0]       # to 1/8, stage 2
           + [(3, 2)] + [(3,)] * 2 * blocks * hrnet.MODULES_PER_STAGE[1]       # to 1/16, stage 3
           + [(3, 2)] + [(3,)] * 2 * blocks * hrnet.MODULES_PER_STAGE[2])      # to 1/32, stage 4
steps = receptive_fields(deepest)
print(f"deepest path: field {steps[-1][0]} pixels at jump {steps[-1][1]}")
try:
    empirical_receptive_field(models.create("hrnetv2_w18", width=0.125), (3, 1025, 1025))
except ValueError as error:
    print("measured on 1025x1025:", error)

# %% [markdown]
# ## Training under one budget: boundaries and small objects
#
# HRNetV2-W18, DeepLab v3 (ResNet-50, output stride 8, no decoder) and DeepLab v3+ (ResNet-50,
# output stride 16 with a stride-4 decoder) train on the same data under the same budget: crops of
# 192×192 pixels, batches of 8, 5 epochs of 48 steps (240 optimiser steps), AdamW at a learning
# rate of $10^{-3}$ with a cosine schedule, a quarter of the papers' channels, seed 0 only. All
# three train in bf16 mixed precision (autocast) with a channels-last memory layout on this CPU.
#
# All three start from a pretrained encoder, as their papers start from ImageNet weights. DeepLab
# v3 and v3+ fine-tune the course's pretrained ResNet-50, as in
# [the receptive-field chapter](09_receptive_field); HRNet fine-tunes the course's own pretrained
# HRNetV2-W18. Both were pretrained on a separate synthetic corpus that stands in for ImageNet.
# HRNet's is a whole network, pretrained with its own head, of which only the last classifier is
# replaced; the DeepLabs keep only the ResNet-50, and their ASPP and decoder start from random
# weights. The comparison is therefore architecture against architecture, with one caveat about
# the starting points: HRNet's encoder learned less in its pretext than the ResNet-50 did
# (`segedu/weights/cards.json`: pretext val mIoU 0.3114 for HRNetV2-W18 after 6,000 steps,
# 0.4905 for ResNet-50 after 12,000), though through a different pretext head, so the two scores
# are not strictly comparable.

# %%
floor = background_floor(session.data_dir, "val")["miou"]
print(f"floor: predicting Background everywhere scores val mIoU {float(floor):.4f}")
runs = compare.train_architectures(session, ("hrnetv2_w18", "deeplabv3_resnet50", "deeplabv3plus_resnet50"))
for label, run in runs.items():
    print(f"{label:<28} best val mIoU {run.trainer.best_miou:.4f} after {run.trainer.step} steps ({run.seconds:.0f} s)")

# %%
viz.plot_learning_curves({label: run.trainer.history for label, run in runs.items()},
                         title="HRNet against DeepLab v3 and v3+, same budget", floor=floor)
plt.show()

# %%
run_dirs = {label: run.run_dir for label, run in runs.items()}
scores = compare.score_runs(run_dirs, session.data_dir, device=session.device, batch_size=prof.batch_size)
print(compare.per_class_table(scores))

# %% [markdown]
# **In one run each, HRNet scores highest, by a small margin.** It reached 0.3294 mIoU, against
# 0.3161 for v3 and 0.3088 for v3+ (the same DeepLab scores as in
# [the receptive-field chapter](09_receptive_field)); predicting Background everywhere scores
# 0.0643, far below all three. The gaps between the models (+0.0133 from HRNet to v3 and +0.0206 to
# v3+, printed below) are small next to the distance of every model from that floor. These are
# single runs, one seed each, with no paired test, so the gaps do not rank the architectures.
#
# The per-class scores differ more than the means. HRNet spreads over more classes: Paper pack
# 0.217 (v3 0.000, v3+ 0.008), General trash 0.152 (0.106 and 0.009), Clothing 0.060 (0.001 and
# 0.000), and Metal 0.030 and Glass 0.054, where v3 and v3+ both score 0.000. Counting a class as
# learned at $\text{IoU} \ge 0.1$, all three learned Paper, Plastic, Styrofoam and Plastic bag;
# HRNet learned Paper pack and General trash as well, v3 General trash, v3+ neither. On every
# large, frequent class HRNet is lower: Paper 0.575 against 0.624 and 0.667, Plastic 0.278
# against 0.431 and 0.398, Styrofoam 0.563 against 0.568 and 0.570 (nearly level), Plastic bag
# 0.761 against 0.804 and 0.799, Background 0.934 against 0.943 and 0.945, and pixel accuracy
# 0.899 against 0.910 and 0.913. Battery stays at 0.000 for all three. So HRNet's small lead in
# mIoU, which weights every class equally, comes from the rare classes it starts to find, not
# from segmenting the common ones better; pixel accuracy, dominated by those common classes, puts
# it last.
#
# **Small objects.** Pixel scores are dominated by large objects. Scoring every annotated
# validation object on its own instead (the share of its pixels predicted as its class,
# `compare.object_recalls`), and splitting the objects into three equal-sized groups by their
# visible area, shows which model keeps the small ones:

# %%
records = compare.object_recalls(run_dirs, session.data_dir, device=session.device)
areas = next(iter(records.values()))[:, 1]
edges = [0.0, *torch.quantile(areas, torch.tensor([1 / 3, 2 / 3], dtype=areas.dtype)).tolist(), float(areas.max()) + 1]
names = ("small", "medium", "large")
print(f"{'model':<28}" + "".join(f"{n} (<{high:.0f} px)".rjust(20) for n, high in zip(names, edges[1:])))
by_size = {}
for label, rows in records.items():
    by_size[label] = compare.recall_by_size(rows, edges)
    print(f"{label:<28}" + "".join(f"{recall:>20.3f}" for _, _, _, recall in by_size[label]))
print("objects per group:", [count for _, _, count, _ in by_size[label]])

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
positions = np.arange(len(names))
for k, label in enumerate(run_dirs):
    axes[0].bar(positions + (k - 1) * 0.27, [r for *_, r in by_size[label]], width=0.27, label=label)
axes[0].set_xticks(positions, names)
axes[0].set_ylabel("mean object recall")
axes[0].set_title("recall by object size")
axes[0].legend(fontsize=8)
labels = list(scores)
axes[1].bar(np.arange(len(labels)) - 0.2, [scores[lb]["overall"]["miou"] for lb in labels], width=0.4, label="all pixels")
axes[1].bar(np.arange(len(labels)) + 0.2, [scores[lb]["boundary"]["miou"] for lb in labels], width=0.4,
            label="boundary band (3 px)")
axes[1].set_xticks(np.arange(len(labels)), [lb.split("-seed")[0] for lb in labels], fontsize=8)
axes[1].set_ylabel("mIoU")
axes[1].set_title("overall and boundary mIoU")
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
hr, v3, v3p = (f"{name}-seed{seed}" for name in ("hrnetv2_w18", "deeplabv3_resnet50", "deeplabv3plus_resnet50"))
for other in (v3, v3p):
    small = by_size[hr][0][3] - by_size[other][0][3]
    boundary = scores[hr]["boundary"]["miou"] - scores[other]["boundary"]["miou"]
    overall = scores[hr]["overall"]["miou"] - scores[other]["overall"]["miou"]
    print(f"HRNet minus {other.split('-seed')[0]}: small-object recall {small:+.3f}, boundary mIoU {boundary:+.4f}, "
          f"mIoU {overall:+.4f}")

# %% [markdown]
# HRNet's mean object recall is the lowest of the three in every size group: 0.213 for small
# objects (under 1139 px of visible area), against 0.288 for both v3 and v3+; 0.490 against
# 0.606 and 0.594 for medium ones; 0.773 against 0.815 and 0.827 for large ones (206 objects per
# group). In the boundary band it scored 0.1943, against 0.1877 and 0.1863. As the last cell
# prints, HRNet minus v3 is −0.075 in small-object recall, +0.0066 in boundary mIoU and +0.0133
# in mIoU; HRNet minus v3+ is −0.075, +0.0080 and +0.0206.
#
# The paper's claim is that the high-resolution stream helps at boundaries and on small objects.
# These single runs do not show it. HRNet has the highest boundary mIoU, but its lead there is
# smaller than its lead in mIoU overall, against both DeepLabs, and the boundary score is a class
# average too, so the rare classes HRNet picks up lift it as well; nothing here singles out
# boundaries. Its small-object recall is the lowest, by a margin of the same order as in the
# medium and large groups, which points the other way from the paper's claim for small objects.
# With one seed each and no paired test, this is no evidence for or against the paper. Possible reasons for the weak object recall, none tested here: HRNet's
# encoder learned less in its pretext than the ResNet-50 (above); at a quarter of the paper's
# channels its 1/4 stream carries only 4 channels (the shapes at the top), little room for fine
# detail; and a short schedule on small crops is far from the paper's training.
#
# Between the two DeepLabs, v3+'s stride-4 decoder shows no gain on small objects here: both
# have a small-object recall of 0.288. v3 is slightly ahead on medium objects (0.606 against
# 0.594), v3+ on large ones (0.827 against 0.815), and v3 is slightly ahead in the boundary band
# (0.1877 against 0.1863) and in mIoU (0.3161 against 0.3088), in single runs whose margins one
# seed cannot call.
#
# Predictions on the validation image with the most small objects:

# %%
val = dataset.CocoSegmentation(session.data_dir, "val")
first = records[hr]
small_counts = torch.bincount(first[first[:, 1] < edges[1]][:, 0].long(), minlength=len(val))
index = int(small_counts.argmax())
image, mask = val[index]
viz.show_predictions(image, mask, compare.predictions(run_dirs, image, session.device), names=val.class_names)
plt.show()

# %% [markdown]
# ## Summary
#
# * HRNet keeps a stream at 1/4 of the image through all four stages and adds 1/8, 1/16 and 1/32
#   streams in parallel; every module ends in a fusion where each stream receives all the others
#   (strided 3×3 convolutions downwards, 1×1 convolution and upsampling upwards).
# * At the paper's scale, HRNetV2-W48 has 65.9M parameters, as the paper reports, and costs 187
#   GFLOPs on a 512×512 image; W18 has 9.6M and costs 37, against 482 GFLOPs for DeepLab v3
#   (ResNet-101, stride 8) and 177 for v3+.
# * Along its deepest path HRNet's field is 2783 pixels, and the measurement confirms that it
#   does not fit in a 1025-pixel input: the parallel low-resolution streams give the 1/4 stream
#   all the context there is.
# * All three models started from pretrained encoders: HRNetV2-W18 from the course's own
#   HRNetV2-W18, DeepLab v3 and v3+ from the course's ResNet-50; then 240 steps on 192-pixel crops
#   at a quarter of the paper's channels, in bf16 mixed precision, one seed each. HRNet reached
#   0.3294 mIoU, a little above v3 (0.3161) and v3+ (0.3088), all far above the all-Background
#   floor of 0.0643. With one seed and no paired test these are single runs, not a ranking.
#   HRNet's lead comes from rarer classes it starts to find (Paper pack 0.217 against 0.000 and
#   0.008, General trash 0.152 against 0.106 and 0.009); it scored lower on every frequent one
#   (Paper 0.575 against 0.624 and 0.667) and had the lowest pixel accuracy (0.899).
# * Its object recall was the lowest of the three in every size group, small objects included
#   (0.213 against 0.288 for both), while its boundary mIoU (0.1943 against 0.1877 and 0.1863) was
#   the highest, by less than its overall mIoU lead: these single runs do not single out
#   boundaries or small objects as HRNet's strength, as the paper claims, but one seed can neither
#   confirm nor contradict it. HRNet's weaker pretext (`segedu/weights/cards.json`: 0.3114 against
#   0.4905 for ResNet-50) and its 4-channel 1/4 stream at this width are possible reasons, not
#   tested ones. v3+'s decoder showed no small-object gain over v3 either (0.288 for both, one
#   seed).
# * At this width HRNet kept 39.9 MiB per 2 images for the backward pass against 72.7 for v3 at
#   stride 8 and 42.2 for v3+, and ran at 111.7 images/s, well ahead of v3 (53.5 images/s) and
#   close to v3+ (119.8) on this machine. The [comparison](11_comparison) trains its finalists over three seeds.
#
# ## Exercises
#
# 1. Train HRNetV2-W48 at the same width. The course pretrains only W18, so W48 starts from
#    scratch: train W18 from scratch as well (`model_options={"pretrained_backbone": False}`) and
#    compare the two. Does the wider network change the small-object recall?
# 2. Replace the HRNetV2 head by HRNetV1's (only the 1/4 stream) by zeroing the other streams in
#    `HRNetV2.forward` of a copy of the model. How much do the low-resolution streams contribute to
#    the mIoU?
# 3. Use the boundary band with widths 1, 3 and 9 pixels (`compare.score_runs(..., boundary_px=...)`).
#    Where does HRNet's advantage or disadvantage come from?
# 4. The object recall ignores false positives. Add a per-object precision (the share of the
#    object's box predicted as its class that belongs to the object) and compare the models again.
