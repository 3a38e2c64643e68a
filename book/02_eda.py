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
# # Exploratory data analysis
#
# **What you will learn.** What the training data looks like in numbers: how the classes share
# the pixels and the images, how many objects an image holds, how large each class's objects
# are, which classes appear together. Each finding ends on a decision a later chapter tests:
# class weights, a class-aware sampler, the crop policy, the training resolution.
#
# **What it builds on.** [The COCO format](01_coco_format): annotations, and the semantic
# masks segedu paints from them.

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import json

import matplotlib.pyplot as plt
import numpy as np

from segedu import viz
from segedu.data import PALETTE, coco, sampler, stats, synth
from segedu.data.synth import versions
from segedu.data.masks import MaskCache
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
print(session.describe())

data = coco.load(session.data_dir / "train_all.json")
names = data.class_names
counts, presence = stats.pixel_counts_and_presence(data)
objects = stats.object_table(data)
print(f"{len(data)} images, {len(objects['cls'])} objects, {len(names)} classes")

# %% [markdown]
# ## How the classes share the pixels and the images
#
# Two different questions: what fraction of all labelled *pixels* belongs to a class (what a
# per-pixel loss sees), and what fraction of *images* contain it at all (what a sampler can
# change).

# %%
pixel_share = counts / counts.sum()
image_share = presence.mean(axis=0)
objects_per_class = np.bincount(objects["cls"], minlength=len(names))
print(f"{'class':<14}{'objects':>9}{'pixel share':>13}{'image share':>13}")
for c, name in enumerate(names):
    n_obj = "-" if c == 0 else objects_per_class[c]
    print(f"{name:<14}{n_obj:>9}{pixel_share[c]:>13.2%}{image_share[c]:>13.1%}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
colours = PALETTE / 255.0
y = np.arange(len(names))
for ax, share, title in ((axes[0], pixel_share, "share of labelled pixels"), (axes[1], image_share, "share of images containing the class")):
    ax.barh(y, np.maximum(share, 1e-6), color=colours, edgecolor="grey")
    ax.set_xscale("log")
    ax.set_title(title)
axes[0].set_yticks(y, names)
axes[0].invert_yaxis()
fig.tight_layout()
plt.show()

# %%
fg = pixel_share[1:]
rare, common = names[1 + fg.argmin()], names[1 + fg.argmax()]
print(f"background: {pixel_share[0]:.1%} of pixels")
print(f"most common object class: {common} ({fg.max():.2%} of pixels); rarest: {rare} ({fg.min():.3%})")
print(f"ratio common / rare: {fg.max() / fg.min():.0f}x")

# %% [markdown]
# **Decision: class weights.** A loss that counts every pixel alike is dominated by the
# background and the two or three common classes. Weighting each class by its inverse
# frequency gives the rare classes a voice; *median frequency balancing* (SegNet, after Eigen &
# Fergus) does it with a gentler reference. Its frequency of a class is not its share of all
# pixels but its share of the pixels **of the images that contain it**:
# freq(c) = pixels of c / pixels of the images holding c, and the weight is
# median(freq) / freq(c). A class that is small but present in few images is therefore not
# rare in this sense, only small. The weights below are what `segedu.data.stats` computes;
# the imbalance chapter trains with them and measures whether the rare classes' IoU goes up.
#
# First on four made-up images of 100 pixels, where the arithmetic is easy to follow. Class 1
# covers 20 pixels in each of the four images, class 2 covers 20 pixels in one image only, and
# class 3 two pixels in each image. Over all pixels, class 2 is four times rarer than class 1;
# inside the images that hold it, it is exactly as frequent.

# %% tags=["nbval-check-output"]
toy = np.array([[78, 20, 0, 2], [58, 20, 20, 2], [78, 20, 0, 2], [78, 20, 0, 2]])  # images x classes
toy_counts, toy_holding = toy.sum(0), stats.image_pixels(toy)
print("class pixels:", toy_counts, "  pixels of the images holding each class:", toy_holding)
for method in stats.WEIGHTINGS:
    w = stats.class_weights(toy_counts, method, image_pixels=toy_holding)
    print(f"{method:<17}" + "  ".join(f"{v:8.3f}" for v in w) + f"   class 2 / class 1: {w[2] / w[1]:.1f}x")

# %% [markdown]
# On the dataset's own pixels (the pixel table holds every image's pixels per class):

# %%
table = stats.pixel_table(data)
weights = {m: stats.class_weights(table.sum(0), m, image_pixels=stats.image_pixels(table)) for m in stats.WEIGHTINGS}
print(f"{'class':<14}" + "".join(f"{m:>18}" for m in stats.WEIGHTINGS))
for c, name in enumerate(names):
    print(f"{name:<14}" + "".join(f"{weights[m][c]:>18.2f}" for m in stats.WEIGHTINGS))

# %% [markdown]
# ## Objects per image

# %%
per_image = np.bincount(objects["image"], minlength=len(data))
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(per_image, bins=np.arange(per_image.max() + 2) - 0.5, color="tab:blue", edgecolor="white")
ax.set_xlabel("objects in the image")
ax.set_ylabel("images")
ax.set_title("Objects per image")
fig.tight_layout()
plt.show()
print(f"objects per image: median {np.median(per_image):.0f}, mean {per_image.mean():.1f}, "
      f"max {per_image.max()}, images without objects {np.sum(per_image == 0)}")

# %% [markdown]
# ## How large are the objects?
#
# An object's size is the side of a square of the same area, $\sqrt{\text{area}}$, in pixels
# of the stored image. The dashed line is 32 pixels *after* resizing the image to the
# profile's training resolution: an object smaller than that covers only one cell of a
# stride-32 feature map, the output grid of FCN-32s.

# %%
scale = session.profile.image_size / np.median([im["width"] for im in data.images])
fig, ax = plt.subplots(figsize=(8, 3.8))
sides = [objects["side"][objects["cls"] == c] for c in range(1, len(names))]
box = ax.boxplot(sides, orientation="horizontal", patch_artist=True, flierprops={"markersize": 2})
for patch, colour in zip(box["boxes"], colours[1:]):
    patch.set_facecolor(colour)
ax.set_yticks(range(1, len(names)), names[1:])
ax.invert_yaxis()
ax.set_xscale("log")
ax.axvline(32 / scale, ls="--", c="k", lw=1, label=f"32 px at the {session.profile.image_size} px training size")
ax.set_xlabel("object size: sqrt(area), pixels of the stored image")
ax.legend(loc="lower left", fontsize=8)
fig.tight_layout()
plt.show()

# %%
print(f"training resolution {session.profile.image_size} px = {scale:.2f} x the stored size")
print(f"{'class':<14}{'median side':>13}{'< 32 px at training size':>27}")
small_share = {}
for c in range(1, len(names)):
    s = objects["side"][objects["cls"] == c]
    if len(s):
        small_share[names[c]] = np.mean(s * scale < 32)
        print(f"{names[c]:<14}{np.median(s):>13.1f}{small_share[names[c]]:>27.0%}")
print(f"all objects: {np.mean(objects['side'] * scale < 32):.0%} are below 32 px at training size")

# %% [markdown]
# **Decisions: resolution and crop policy.** The share of objects that fall below one cell of
# a stride-32 output at the training resolution (the table above) tells how much a coarse
# model must lose and how much a higher resolution or a decoder with skip connections can win
# back; the FCN and skip-connection chapters measure exactly that. Random crops are cheaper
# than resizing but can cut out the few rare objects, so the augmentation chapter compares a
# plain random crop with `CropNonEmptyMaskIfExists`.

# %% [markdown]
# ## One departure from the competition: Battery
#
# The generator deals each class as often as the competition's annotations hold it, with one
# exception since its version 3: Battery. At the competition's share (0.24% of the objects) and
# at 4-10% of the image side, the 480 images would hold 9 batteries, 8-19 px long at the
# training resolution. On such data no model of this book and no remedy of the imbalance
# chapter ever predicted a single Battery pixel (`benchmarks/RESULTS.md`, the Battery
# sections), and a class that no model can find teaches
# nothing about remedies. Version 3 deals three times the batteries (0.72% of the objects, 28
# here) at about twice the length (23-48 px). Battery and Clothing stay the two rarest classes,
# and Battery's objects are still the smallest of any class (median size 23.2 px at the stored
# size, in the table above).

# %%
drawn_by = synth.drawn_by(session.data_dir)
if drawn_by is None or "Battery" not in names:
    # a dataset of your own: its classes were not dealt by the course's generator
    print(f"{session.data_dir.name} was not drawn by the course's generator; this section is about the generated data")
else:
    battery = names.index("Battery")
    print(f"this dataset was drawn by generator version {drawn_by}; the current version is {synth.GENERATOR_VERSION}")
    competition = synth.COMPETITION_INSTANCES
    print(f"competition: Battery is {competition['Battery'] / sum(competition.values()):.2%} of the objects")
    for v in versions.VERSIONS:
        dealt = synth.planned_instances(v)
        plan = synth.plan_classes(len(data), seed=0, version=v)
        low, high = versions.BATTERY[v]["length"]
        print(f"version {v}: Battery dealt as {dealt['Battery'] / sum(dealt.values()):.2%} of the objects, "
              f"{sum(c.count(battery) for c in plan)} batteries for {len(data)} images (seed 0), "
              f"length {low:.0%}-{high:.0%} of the side = {low * data.images[0]['width'] * scale:.0f}-"
              f"{high * data.images[0]['width'] * scale:.0f} px at the training size")
    sides = objects["side"][objects["cls"] == battery]
    print(f"in this dataset: {len(sides)} batteries drawn, median size {np.median(sides) * scale:.1f} px at the "
          f"training size (sqrt of the area; {np.median(objects['side']) * scale:.1f} px for all objects)")

# %% [markdown]
# ## Which classes appear together?
#
# The co-occurrence matrix counts the images holding both classes; normalising each row by
# its diagonal gives $P(\text{column class present} \mid \text{row class present})$.

# %%
co = stats.cooccurrence(presence[:, 1:])
with np.errstate(invalid="ignore", divide="ignore"):
    conditional = co / np.diag(co)[:, None]
fig, ax = plt.subplots(figsize=(6.5, 5.5))
im = ax.imshow(conditional, cmap="viridis", vmin=0, vmax=1)
ax.set_xticks(range(len(names) - 1), names[1:], rotation=60, ha="right")
ax.set_yticks(range(len(names) - 1), names[1:])
ax.set_title("P(column class in image | row class in image)")
fig.colorbar(im, ax=ax, fraction=0.046)
fig.tight_layout()
plt.show()

# %%
off = conditional.copy()
np.fill_diagonal(off, np.nan)
i, j = np.unravel_index(np.nanargmax(off), off.shape)
print(f"strongest pairing: when {names[1 + i]} is in an image, {names[1 + j]} is too in {off[i, j]:.0%} of them")

# %% [markdown]
# ## Examples of the rare classes
#
# Rare classes decide much of the mean IoU (each class counts the same), so it pays to look at
# them. Below, for the three rarest classes by image share, the image where that class covers
# the most pixels.

# %%
cache = MaskCache(data)
rarest = [c for c in np.argsort(image_share) if c > 0 and image_share[c] > 0][:3]
images, labels, titles = [], [], []
for c in rarest:
    best = max(np.flatnonzero(presence[:, c]), key=lambda i: (cache.get(i) == c).sum())
    images.append(plt.imread(data.image_path(data.images[best])))
    labels.append(cache.get(best))
    titles.append(names[c])
viz.show_batch(images, labels, names=names, titles=titles, title="The rarest classes, each where it is largest")
plt.show()

# %% [markdown]
# **Decision: sampling.** Images are drawn uniformly in a plain epoch, so an image with a
# rare class comes round as rarely as the class itself. segedu's `ClassAwareSampler` draws an
# image with a weight set by its rarest class: repeat-factor sampling (LVIS), where a class in a
# share $f_c$ of the images gets the factor $r_c = \max(1, \sqrt{t / f_c})$ and an image takes the
# largest factor of its classes. LVIS sets the threshold $t = 0.001$ for its 1,203 classes; with
# eleven classes every $f_c$ is above that and nothing would be repeated, so the course uses
# $t = 1$, i.e. $r_c = \sqrt{1 / f_c}$. The share of draws that contain each rare class, uniform
# vs class-aware, follows from the weights:

# %%
w = sampler.image_weights(presence, power=0.5, threshold=1.0)
drawn = (w[:, None] * presence).sum(axis=0) / w.sum()
print(f"{'class':<14}{'uniform':>10}{'class-aware':>13}")
for c in rarest:
    print(f"{names[c]:<14}{image_share[c]:>10.1%}{drawn[c]:>13.1%}")

# %% [markdown]
# ## Summary
#
# The numbers above, computed on this chapter's dataset:
#
# * the background holds most pixels, and the printed ratio between the most common and the
#   rarest object class is the imbalance a per-pixel loss faces;
# * the weights tables give the class weights the imbalance chapter tries;
# * the object-size table gives, per class, the share of objects below 32 pixels at the
#   training size: the objects a stride-32 model cannot outline;
# * the class-aware sampler raises the share of draws containing each rare class by the
#   factors in the last table.
#
# ## Exercises
#
# 1. Compute the class shares on `val.json` instead of `train_all.json`. Which class's share
#    differs most, and what does that mean for the validation mIoU of that class?
# 2. With `power=1.0`, how often does the sampler draw an image with the rarest class? What
#    is the risk of drawing the same few images over and over?
# 3. From the object-size table: at which training resolution would fewer than 10% of all
#    objects be below 32 px?
