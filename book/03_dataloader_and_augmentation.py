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
# # Dataset, dataloader and augmentation
#
# **What you will learn.** The contract between data and model: what one item and one batch
# are; how segedu's `CocoSegmentation` turns the COCO file into tensors, caching the masks so
# that later epochs do not rasterise again; what each augmentation of the course does to an
# image *and its mask* (they must stay aligned); the batch-level mixes MixUp, CutMix, SnapMix
# and copy-paste; and the train/validation splits with their class balance.
#
# **What it builds on.** [The COCO format](01_coco_format) for the masks, and
# [EDA](02_eda) for the class imbalance that the splits and the sampler must respect.

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import json
import os
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from segedu import viz
from segedu.data import IGNORE_INDEX, dataset, mixing, sampler, splits, stats, transforms
from segedu.notebook import setup, shape_text

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
print(session.describe())
size = session.profile.image_size

# %% [markdown]
# ## The contract
#
# `CocoSegmentation(data_dir, mode, transform)` has the course's interface: `mode` is `train`,
# `val` or `test` (the files `train.json`, `val.json`, `test.json` in `data_dir`) or the path
# of any annotation file. An item is an image tensor `(3, H, W)` with values in $[0, 1]$ and a
# mask `(H, W)` of class ids; in test mode the mask is replaced by the file name, which the
# submission needs. A DataLoader stacks them into a batch.

# %% tags=["nbval-check-output"]
train_set = dataset.CocoSegmentation(session.data_dir, "train", transforms.train_transform(session.profile, seed=seed))
val_set = dataset.CocoSegmentation(session.data_dir, "val", transforms.val_transform(session.profile))
test_set = dataset.CocoSegmentation(session.data_dir, "test", transforms.test_transform(session.profile))
loader = dataset.make_loader(train_set, batch_size=4, shuffle=True, seed=seed)
images, masks = next(iter(loader))
S = session.profile.image_size  # the profile's training size; shapes below write it as S
print("train batch: images", shape_text(images, S), images.dtype, "| masks", shape_text(masks, S), masks.dtype)
test_images, names = next(iter(dataset.make_loader(test_set, batch_size=2)))
print("test batch:  images", shape_text(test_images, S), "| file names", type(names).__name__, len(names))

# %%
print(f"{len(train_set)} train, {len(val_set)} val, {len(test_set)} test images; first test file: {names[0]}")
print(f"image values in [{images.min():.2f}, {images.max():.2f}]; mask values {masks.unique().tolist()}")

# %% [markdown]
# The same seed gives the same batches: the loader's shuffling and the augmentations' random
# draws are both seeded (each worker gets its own, derived from the seed).

# %% tags=["nbval-check-output"]
def first_batch(seed):
    ds = dataset.CocoSegmentation(session.data_dir, "train", transforms.train_transform(session.profile, seed=seed))
    return next(iter(dataset.make_loader(ds, batch_size=4, shuffle=True, seed=seed)))


a, b = first_batch(seed), first_batch(seed)
print("same seed, same batch:", torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]))

# %% [markdown]
# ## The mask cache
#
# Painting a mask means decoding every polygon of the image with pycocotools. segedu does it
# once per image and keeps the result on disk, under a key made of the annotation file's
# content: edit the file and the cache is rebuilt, reuse it and later epochs only read. Two
# epochs over the training images, starting from an empty cache:

# %%
def read_all(ds):
    t0 = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    return len(ds) / (time.perf_counter() - t0)


with tempfile.TemporaryDirectory() as cache:
    os.environ["SEGEDU_CACHE"] = cache  # an empty cache, so the first epoch really paints
    plain = dataset.CocoSegmentation(session.data_dir, "train")
    rates = [read_all(plain) for epoch in range(2)]
    del os.environ["SEGEDU_CACHE"]
print(f"epoch 1 (painting the masks): {rates[0]:.0f} images/s; epoch 2 (from the cache): {rates[1]:.0f} images/s")

# %% [markdown]
# `benchmarks/bench_loader.py` compares this loader with the course baseline's dataset, which
# calls `annToMask` for every object of every item; the numbers are in `benchmarks/RESULTS.md`.
#
# ## Augmentations, image and mask together
#
# A geometric augmentation (crop, flip, elastic deformation) must move the mask exactly as
# it moves the image, with *nearest-neighbour* interpolation for the mask: blending class ids
# would invent classes. A photometric one (colour) changes only the image. A dropout (Cutout,
# GridMask) blanks part of the image; by default the mask keeps its labels there, so the model
# learns to label what it cannot see, or with `fill_mask=255` those pixels leave the loss.
#
# Each row below applies one augmentation of `segedu.data.transforms` to the same image
# (always applied here, `p=1`); the mask is drawn over the transformed image.

# %%
raw = dataset.CocoSegmentation(session.data_dir, "train")
index = int(np.argmax([len(raw.coco.annotations(im)) for im in raw.coco.images[:50]]))
image = raw.coco.images[index]
img = dataset.read_image(raw.coco.image_path(image))
mask = raw.masks.get(index)
names_shown = ["scale", "crop_non_empty", "flip", "colour", "cutout", "gridmask", "elastic"]
fig, axes = plt.subplots(2, len(names_shown) + 1, figsize=(2.1 * (len(names_shown) + 1), 4.6))
resize = transforms.val_transform(session.profile)
base = resize(image=img, mask=mask)
for col, name in enumerate(["original", *names_shown]):
    if name == "original":
        out = base
    else:
        aug = transforms.reseed(transforms.A.Compose([transforms.augmentation(name, session.profile, p=1.0)]), seed)
        out = aug(image=base["image"], mask=base["mask"])
    axes[0, col].imshow(out["image"])
    axes[1, col].imshow(viz.overlay(out["image"], out["mask"], alpha=0.6))
    axes[0, col].set_title(name, fontsize=9)
for ax in axes.ravel():
    ax.axis("off")
axes[0, 0].text(-0.1, 0.5, "image", transform=axes[0, 0].transAxes, rotation=90, va="center", ha="right")
axes[1, 0].text(-0.1, 0.5, "mask overlay", transform=axes[1, 0].transAxes, rotation=90, va="center", ha="right")
fig.suptitle("Each augmentation applied to one image: the mask follows every geometric change")
fig.tight_layout()
plt.show()

# %% [markdown]
# A check in numbers: after every geometric augmentation, the mask must contain only class
# ids that were in the original (plus 255 for padding), never a blended value.

# %% tags=["nbval-check-output"]
allowed = set(np.unique(base["mask"]).tolist()) | {IGNORE_INDEX}
for name in names_shown:
    aug = transforms.reseed(transforms.A.Compose([transforms.augmentation(name, session.profile, p=1.0)]), seed)
    values = set()
    for k in range(20):
        values |= set(np.unique(aug(image=base["image"], mask=base["mask"])["mask"]).tolist())
    print(f"{name:<15} new mask values: {sorted(values - allowed) or 'none'}")

# %% [markdown]
# ## Mixing two images: MixUp, CutMix, SnapMix, copy-paste
#
# These act on a *batch*, pairing each image with another one (segedu pairs image $i$ with
# image $i-1$):
#
# * **MixUp** blends two images with a weight $\lambda \sim \mathrm{Beta}(\alpha, \alpha)$; the
#   target becomes *soft*: each pixel is $\lambda$ of one class and $1-\lambda$ of another, so
#   the loss must accept probability targets.
# * **CutMix** pastes a box of the other image, and the box's labels with it.
# * **SnapMix** in classification weighs the mixed *image* label by how much of each class the
#   pasted region really holds (from class activation maps) instead of its area. With per-pixel
#   labels every pasted pixel already carries its own class, so for the mask SnapMix is CutMix
#   with a resized box; what remains is the image-level label (used by a classification head),
#   weighted by each class's pixel share.
# * **Copy-paste** cuts the objects of chosen classes (here the rare ones) out of one image and
#   pastes them on another: a direct way to show the model more of a rare class.

# %%
_, train_presence = stats.pixel_counts_and_presence(train_set.coco)
rare = [int(c) + 1 for c in np.argsort(train_presence[:, 1:].mean(0), kind="stable")[:3]]  # in the fewest images
print("rarest object classes by image share:", ", ".join(train_set.class_names[c] for c in rare))
_, val_presence = stats.pixel_counts_and_presence(val_set.coco)
with_rare = np.flatnonzero(val_presence[:, rare].any(axis=1))
donor = int(with_rare[0]) if len(with_rare) else 0  # a validation image with a rare class, if there is one
vi, vm = dataset.collate([val_set[i] for i in (donor, (donor + 1) % len(val_set))])
g = torch.Generator().manual_seed(seed)
partner = torch.tensor([1, 0])
mixed = {
    "MixUp, λ=0.5": mixing.blend(vi, vm, partner, torch.full((2,), 0.5)),
    "CutMix": mixing.cutmix(vi, vm, g),
    "SnapMix": mixing.snapmix(vi, vm, g),
    "copy-paste": mixing.copypaste(vi, vm, g, classes=rare, p=1.0),
}
fig, axes = plt.subplots(2, 6, figsize=(14, 5))
for col, (title, k) in enumerate((("image 0", 0), ("image 1", 1))):
    axes[0, col].imshow(viz.image_to_uint8(vi[k]))
    axes[1, col].imshow(viz.colorize(vm[k]))
    axes[0, col].set_title(title)
for col, (name, batch) in enumerate(mixed.items(), start=2):
    target = batch.targets[1]
    shown = target.argmax(0) if target.ndim == 3 else target  # soft targets: the stronger class
    axes[0, col].imshow(viz.image_to_uint8(batch.images[1]))
    axes[1, col].imshow(viz.colorize(shown))
    axes[0, col].set_title(f"{name}", fontsize=10)
for ax in axes.ravel():
    ax.axis("off")
fig.suptitle("Image 1 mixed with image 0, which holds a rare class (bottom: the target)")
fig.tight_layout()
plt.show()

# %% tags=["nbval-check-output"]
soft = mixing.mixup(vi, vm, g, alpha=0.4).targets
valid = soft.sum(1) > 0
print("MixUp target:", shape_text(soft, S), "- each valid pixel's class probabilities sum to 1:",
      bool(torch.allclose(soft.sum(1)[valid], torch.ones(()))))
print("CutMix target:", shape_text(mixed["CutMix"].targets, S), mixed["CutMix"].targets.dtype)

# %% [markdown]
# ## Train and validation splits
#
# The validation score is only as good as the split it is measured on. `segedu split` (and
# `segedu.data.splits`) makes four kinds: a random **hold-out** 8:2, **K-fold** (each image is
# validation once), **stratified K-fold** on each image's set of classes (so that rare
# classes land in every fold in proportion), and **group K-fold** (a whole batch folder, one
# photo session, stays on one side; with three batch folders that makes three folds). For
# each, the table gives the largest gap between the
# share of validation images showing a class and that share in the whole set.

# %%
ann = session.data_dir / "train_all.json"
groups = len(set(splits.image_groups(json.loads(ann.read_text())).values()))  # batch folders
deviation = {}
with tempfile.TemporaryDirectory() as tmp:
    for method in splits.METHODS:
        folds = min(5, groups) if method == "group" else 5  # a group K-fold has at most one fold per group
        written = splits.write_splits(ann, f"{tmp}/{method}", method=method, folds=folds, seed=seed)
        deviation[method] = [s.deviation for s in written]
        print(f"{method:<11} folds {len(written)}  val images {[s.n_val for s in written]}  "
              f"max class-share gap {max(deviation[method]):.1%} (worst class: {max(written, key=lambda s: s.deviation).worst_class})")

# %%
fig, ax = plt.subplots(figsize=(6, 3))
for k, (method, devs) in enumerate(deviation.items()):
    ax.scatter(np.full(len(devs), k), 100 * np.array(devs), s=30)
ax.set_xticks(range(len(deviation)), list(deviation))
ax.set_ylabel("largest class-share gap, points")
ax.set_title("How well each fold's validation side mirrors the whole set")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## A class-aware sampler
#
# The EDA chapter showed how rarely the rare classes come round in a plain epoch.
# `ClassAwareSampler` draws images in proportion to their rarest class's repeat factor; one
# epoch of draws below, counted per class:

# %%
_, presence = stats.pixel_counts_and_presence(train_set.coco)  # (images, classes), dataset order
draws = list(sampler.ClassAwareSampler(presence, num_samples=len(presence), seed=seed))
uniform = torch.randint(len(presence), (len(presence),), generator=torch.Generator().manual_seed(seed)).tolist()
print(f"{'class':<12}{'uniform draws':>15}{'class-aware draws':>20}")
for c in rare:
    print(f"{train_set.class_names[c]:<12}{presence[uniform, c].sum():>15}{presence[draws, c].sum():>20}")

# %% [markdown]
# ## Summary
#
# * One batch is images `(B, 3, H, W)` float and masks `(B, H, W)` int64 (file names in test
#   mode); the same seed gives the same batch.
# * The two epochs timed above show what the mask cache saves once it is filled (on this
#   machine; the benchmark compares the loader with the course baseline's).
# * No geometric augmentation invented a class id: the check printed "none" for each.
# * MixUp's soft targets sum to one on every valid pixel; CutMix, SnapMix and copy-paste keep
#   hard targets.
# * The split table shows how far each method's validation folds drift from the whole set's
#   class shares. Stratified K-fold is built to keep that gap small: its largest gap is 5.3%
#   against 11.0% for the hold-out and plain K-fold, though on this data group K-fold's three
#   folds drift less still (4.6%). The validation chapter measures what the gap costs in mIoU.
#
# ## Exercises
#
# 1. Set `fill_mask=255` for Cutout and count how many pixels leave the loss per image.
# 2. Draw 10 batches with and without the class-aware sampler and count Battery pixels. By
#    which factor does the sampler raise them?
# 3. Group K-fold keeps a batch folder on one side. Why does that matter when the test photos
#    were taken in other sessions than the training photos?
