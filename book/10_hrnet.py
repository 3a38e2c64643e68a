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
# outputs of every stage for a profile-sized image (side S), at a small width:

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
# The paper reports 65.9M parameters for HRNetV2-W48 on Cityscapes' 19 classes (the tests check
# ours against it, and W18 against the layer arithmetic). FLOPs for a 512×512 image, with DeepLab
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
# the way, but thin (C channels), and its wide streams are at low resolution. At this profile's
# width and size, the memory autograd keeps for the backward pass and the inference speed on this
# machine:

# %%
for name in ("hrnetv2_w18", "deeplabv3_resnet50", "deeplabv3plus_resnet50"):
    net = models.create(name, width=prof.width).to(session.device)
    memory = measure.saved_activation_bytes(net, torch.rand(2, 3, size, size, device=session.device))
    speed = measure.forward_speed(net, prof.batch_size, size, session.device, repeats=3)
    print(f"{name:<24} {measure.parameter_count(net) / 1e6:6.2f}M parameters, {memory / 2**20:6.1f} MiB saved "
          f"per 2 images, {speed:6.1f} images/s")

# %% [markdown]
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
# output stride 16 with a stride-4 decoder) train on the same data, crops, schedule and epochs,
# from scratch, at the profile's width.

# %%
runs = compare.train_architectures(session, ("hrnetv2_w18", "deeplabv3_resnet50", "deeplabv3plus_resnet50"))
for label, run in runs.items():
    print(f"{label:<28} best val mIoU {run.trainer.best_miou:.4f} after {run.trainer.step} steps ({run.seconds:.0f} s)")

# %%
viz.plot_learning_curves({label: run.trainer.history for label, run in runs.items()},
                         title="HRNet against DeepLab v3 and v3+, same budget")
plt.show()

# %%
run_dirs = {label: run.run_dir for label, run in runs.items()}
scores = compare.score_runs(run_dirs, session.data_dir, device=session.device, batch_size=prof.batch_size)
print(compare.per_class_table(scores))

# %% [markdown]
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
# * Under the cpu profile's budget (3 epochs from scratch at width 0.25, one seed each) the high
#   resolution did not pay off: HRNetV2-W18 reached 0.0883 mIoU against 0.0989 for DeepLab v3 and
#   0.1111 for v3+. Its small-object recall (0.056) was barely above v3's (0.050) and well below
#   v3+'s (0.087), and its boundary mIoU was below both. It kept less for the backward pass than
#   v3 at stride 8 (17.8 against 32.4 MiB per 2 images) and ran faster than v3 but at half v3+'s
#   speed on this machine. The paper's gains come with ImageNet pre-training, long schedules and
#   full width; at this small budget v3+'s stride-4 decoder was the cheaper way to boundaries and
#   small objects. One seed each: the [comparison](11_comparison) repeats it with three.
#
# ## Exercises
#
# 1. Train HRNetV2-W48 at the same width. Does the wider network change the small-object recall?
# 2. Replace the HRNetV2 head by HRNetV1's (only the 1/4 stream) by zeroing the other streams in
#    `HRNetV2.forward` of a copy of the model. How much do the low-resolution streams contribute to
#    the mIoU?
# 3. Use the boundary band with widths 1, 3 and 9 pixels (`compare.score_runs(..., boundary_px=...)`).
#    Where does HRNet's advantage or disadvantage come from?
# 4. The object recall ignores false positives. Add a per-object precision (the share of the
#    object's box predicted as its class that belongs to the object) and compare the models again.
