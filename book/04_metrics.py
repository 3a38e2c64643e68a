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
# # Metrics: pixel accuracy, IoU and mIoU
#
# **What you will learn.** How segmentation is scored: the confusion matrix, and the scores
# derived from it (pixel accuracy, class accuracy, IoU, mIoU, frequency-weighted IoU, Dice);
# why the competition ranks by **mean IoU** and not by pixel accuracy; what happens to a class
# that appears nowhere; and why "mIoU over the dataset" and "mIoU averaged over images" are two
# different numbers.
#
# **What it builds on.** The batch shapes of [the first chapter](00_how_to_use) and the class
# imbalance measured in [EDA](02_eda).

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from segedu import metrics
from segedu.data import dataset
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
print(session.describe())

# %% [markdown]
# ## A small example by hand
#
# A 6×6 label map with three classes: background (0) covers most of it, a large object (1)
# and a small one (2). Two predictions: one that says "background" everywhere, and one that
# finds both objects but draws their borders a little off.

# %% tags=["nbval-check-output"]
target = np.zeros((6, 6), dtype=np.int64)
target[1:4, 1:5] = 1      # a large object: 12 pixels
target[4:6, 4:6] = 2      # a small object: 4 pixels
all_background = np.zeros_like(target)
rough = np.zeros_like(target)
rough[1:4, 2:5] = 1       # misses one column of the large object
rough[3:6, 4:6] = 2       # the small object, one row too tall
print("target\n", target, "\nrough prediction\n", rough)

# %% [markdown]
# **Pixel accuracy** is the share of pixels labelled right. **IoU** of a class is the overlap of
# its predicted and true regions divided by their union,
# $\mathrm{IoU}_c = |P_c \cap T_c| \,/\, |P_c \cup T_c|$, and **mIoU** is the mean over the
# classes. By hand, with NumPy:

# %% tags=["nbval-check-output"]
def by_hand(pred, target, classes=3):
    accuracy = (pred == target).mean()
    iou = []
    for c in range(classes):
        inter = np.sum((pred == c) & (target == c))
        union = np.sum((pred == c) | (target == c))
        iou.append(inter / union if union else np.nan)
    return accuracy, np.array(iou)


for name, pred in (("all background", all_background), ("rough", rough)):
    acc, iou = by_hand(pred, target)
    print(f"{name:<15} pixel accuracy {acc:.3f}   IoU per class {np.round(iou, 3)}   mIoU {np.nanmean(iou):.3f}")

# %% [markdown]
# "All background" is right on 20 of 36 pixels, more than half, without finding anything;
# its mIoU says what it is worth. That gap grows with the imbalance: in the competition's
# data the background covers most pixels (the EDA chapter measured it), so a model can
# score a high pixel accuracy while missing every rare class.
#
# ## The confusion matrix
#
# Every score is a function of one table: `n[i, j]` counts the pixels of true class `i`
# predicted as `j`. segedu accumulates it over batches with a single `bincount`, and derives
# all scores from it (`segedu.metrics`, which the tests check against torchmetrics):

# %% tags=["nbval-check-output"]
cm = metrics.confusion_matrix(torch.from_numpy(rough)[None], torch.from_numpy(target)[None], num_classes=3)
print("confusion matrix (rows: truth, columns: prediction)\n", cm.numpy())
scores = metrics.scores_from_confusion(cm)
for key in ("pixel_accuracy", "mean_accuracy", "miou", "fwiou", "mdice"):
    print(f"{key:<15} {scores[key].item():.3f}")
print("IoU per class  ", np.round(scores["iou"].numpy(), 3))

# %% [markdown]
# The same numbers as by hand. The other scores: **mean class accuracy** averages each class's
# recall $n_{ii}/t_i$; **frequency-weighted IoU** weights each class's IoU by its share of
# pixels (so it, too, is dominated by the background); **Dice** $= 2|P\cap T|/(|P|+|T|)$ is
# the F1 score of a class, always at least its IoU.
#
# ## A class that appears nowhere
#
# If a class is absent from both the prediction and the target, its IoU is $0/0$. segedu
# (like torchmetrics) reports NaN for it and leaves it out of the mean, rather than counting
# it as 0 (which would punish every image without a battery) or as 1 (which would reward it):

# %% tags=["nbval-check-output"]
cm4 = metrics.confusion_matrix(torch.from_numpy(rough)[None], torch.from_numpy(target)[None], num_classes=4)
s4 = metrics.scores_from_confusion(cm4)
print("IoU with a 4th class that never occurs:", np.round(s4["iou"].numpy(), 3), f"-> mIoU {s4['miou'].item():.3f}")

# %% [markdown]
# ## Over the dataset, or per image?
#
# `SegMetrics` sums one confusion matrix over every pixel of every image and scores it once:
# the competition's mIoU. Averaging each image's own mIoU instead (`per_image=True`) weighs
# every image the same, so a small object missed in one image costs much more. Two images:
# one with a large object found well, one with a small object missed entirely.

# %% tags=["nbval-check-output"]
big_t = np.zeros((8, 8), dtype=np.int64); big_t[:6, :6] = 1
big_p = big_t.copy(); big_p[5, :] = 0                      # one row of the object missed
small_t = np.zeros((8, 8), dtype=np.int64); small_t[3:5, 3:5] = 1
small_p = np.zeros_like(small_t)                            # the small object missed
preds = torch.from_numpy(np.stack([big_p, small_p]))
targets = torch.from_numpy(np.stack([big_t, small_t]))
for per_image in (False, True):
    m = metrics.SegMetrics(num_classes=2, per_image=per_image)
    m.update(preds, targets)
    print(f"per_image={per_image!s:<5}  mIoU {m.compute()['miou']:.3f}")
print("each image alone:", [round(float(by_hand(p, t, 2)[1].mean()), 3) for p, t in zip((big_p, small_p), (big_t, small_t))])

# %% [markdown]
# Know which one your competition computes before you compare with its leaderboard; the
# course's competition uses the dataset-level one, segedu's default.
#
# ## Two baselines on the validation images
#
# What do the scores say about real predictions? Two predictors that need no network:
#
# * **all background**: predicts class 0 everywhere;
# * **colour prototypes**: the mean RGB colour of each class on the training images, and each
#   validation pixel gets the class whose mean colour is nearest.

# %%
train_set = dataset.CocoSegmentation(session.data_dir, "train")
val_set = dataset.CocoSegmentation(session.data_dir, "val")
names = train_set.class_names
C = len(names)
colour_sum, pixel_count = np.zeros((C, 3)), np.zeros(C)
for image, mask in train_set:
    px, lab = image.flatten(1).T.numpy(), mask.flatten().numpy()
    keep = lab < C
    pixel_count += np.bincount(lab[keep], minlength=C)
    for ch in range(3):
        colour_sum[:, ch] += np.bincount(lab[keep], weights=px[keep, ch], minlength=C)
prototypes = torch.tensor(colour_sum / np.maximum(pixel_count, 1)[:, None], dtype=torch.float32)

results = {"all background": metrics.SegMetrics(C), "colour prototypes": metrics.SegMetrics(C)}
for image, mask in val_set:
    results["all background"].update(torch.zeros_like(mask)[None], mask[None])
    dist = torch.cdist(image.flatten(1).T, prototypes)            # (pixels, classes)
    results["colour prototypes"].update(dist.argmin(1).view(mask.shape)[None], mask[None])
scores = {name: m.compute() for name, m in results.items()}
for name, s in scores.items():
    print(f"{name:<18} pixel accuracy {s['pixel_accuracy']:.3f}   mean accuracy {s['mean_accuracy']:.3f}   "
          f"mIoU {s['miou']:.3f}   fwIoU {s['fwiou']:.3f}")

# %%
fig, ax = plt.subplots(figsize=(9, 3.6))
x = np.arange(C)
for k, (name, s) in enumerate(scores.items()):
    ax.bar(x + (k - 0.5) * 0.38, np.nan_to_num(s["iou"].numpy()), width=0.38, label=name)
ax.set_xticks(x, names, rotation=35, ha="right")
ax.set_ylabel("IoU on the validation images")
ax.set_title("Per-class IoU of two network-free baselines")
ax.legend()
fig.tight_layout()
plt.show()

# %%
for key in ("pixel_accuracy", "mean_accuracy", "miou"):
    best = max(scores, key=lambda name: scores[name][key])
    print(f"higher {key:<15}: {best}")

# %% [markdown]
# ## Summary
#
# * On the hand-made example "all background" scores a pixel accuracy of 20/36 but an mIoU
#   far lower; the rough prediction, which finds both objects, wins on mIoU.
# * All scores come from the confusion matrix; segedu's values equal the hand computation
#   here and torchmetrics' in the tests.
# * A class absent from prediction and target is NaN and left out of the mean.
# * Dataset-level and per-image mIoU differ on the two-image example (printed above): the
#   per-image average punishes the missed small object more.
# * On the validation images, "all background" reaches a pixel accuracy of 0.708, exactly the
#   background's share of the labelled pixels, with an mIoU of only 0.064 (the background's
#   IoU averaged with ten zeros); the last cell names which baseline each score prefers, and
#   pixel accuracy and the class-averaged scores need not agree. A score that the background
#   dominates cannot rank models for rare classes: the competition ranks by mIoU, and so does
#   the rest of this book.
#
# ## Exercises
#
# 1. Compute the Dice of each class in the hand-made example by hand and compare with
#    `scores["dice"]`. Show that Dice $= 2\,\mathrm{IoU}/(1+\mathrm{IoU})$.
# 2. Which baseline has the higher frequency-weighted IoU, and why is fwIoU closer to pixel
#    accuracy than to mIoU?
# 3. Score the colour-prototype baseline with `per_image=True`. Is the mIoU higher or lower
#    than the dataset-level one, and why?
