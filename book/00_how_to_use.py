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
# # How to use this book
#
# **What you will learn.** How the book is run (the two commands, the profiles, JupyterLab),
# how to check that your environment works, and what a *segmentation batch* is: the pair of
# tensors every later chapter feeds to a model.
#
# **What it builds on.** Nothing: this is the first chapter. You need Python 3.10+ and `make`.
#
# ## The two commands
#
# | command | what it does |
# |---|---|
# | `make book` | creates `.venv` from the pinned lock if it is missing, makes the default dataset, executes every chapter with papermill, builds the HTML book in `_build/html/` |
# | `make test` | creates `.venv` if missing, runs the unit tests, executes every chapter in the `smoke` profile, and re-checks the committed notebooks with `pytest --nbval-lax` |
#
# `make lab` opens the chapters in JupyterLab: each chapter is a pair of files, a jupytext
# `NN_topic.py` (the source) and `NN_topic.ipynb` (the outputs of the last real run), kept in
# sync by jupytext, so you can open either.
#
# ## Profiles
#
# Every chapter takes four parameters in its first code cell, the cell tagged `parameters` that
# papermill overrides: `profile`, `data_dir`, `seed` and `device`. The profile fixes every size
# and step count of a chapter; its numbers live in one table in `segedu.profiles`, shown below.

# %% tags=["parameters"]
profile = "auto"   # smoke | cpu | gpu | auto (gpu when CUDA is available, else cpu)
data_dir = None    # None: the generated default dataset; or a folder with a COCO dataset
seed = 0
device = "auto"    # auto | cpu | cuda | cuda:N

# %% [markdown]
# Every chapter starts the same way: `segedu.notebook.setup` checks the parameters (a wrong
# profile name or a missing `data_dir` stops here with a message saying what to do), seeds
# Python, NumPy and torch, and picks the device.

# %%
import matplotlib.pyplot as plt
import torch

from segedu import env, profiles, viz
from segedu.data import CLASSES, IGNORE_INDEX, NUM_CLASSES
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device)
print(session.describe())

# %% [markdown]
# The table of profiles. `smoke` exists so that CI can execute the whole book in minutes; `cpu`
# gives meaningful numbers on a 2-core laptop; `gpu` trains at the competition's full resolution.
# `book_budget_min` is the wall time each profile aims at for executing the whole book; what the
# last execution actually took, chapter by chapter and on which machine, is in the
# [run log](run_log). On two CPU cores the `cpu` profile takes longer than its target: the
# chapters train enough runs, long enough, for their models to learn the task.

# %% tags=["nbval-check-output"]
fields = ["synth_images", "synth_size", "image_size", "batch_size", "epochs", "max_steps", "width", "book_budget_min"]
print(f"{'profile':<8}" + "".join(f"{f:>16}" for f in fields))
for name, p in profiles.PROFILES.items():
    print(f"{name:<8}" + "".join(f"{str(getattr(p, f)):>16}" for f in fields))

# %% [markdown]
# ## Checking the environment
#
# `segedu info` (or `make info`) prints the same table from a shell. Numbers in this book are
# only comparable between runs with the same versions and device, so every chapter records them.

# %%
for key, value in env.info(device).items():
    print(f"{key:<18} {value}")

# %% [markdown]
# ## The task: 11 classes per pixel
#
# The competition asks for one class per pixel among 11: the background and ten kinds of
# recycling trash. Class ids are fixed; pixels nobody should learn from carry the *ignore index*.

# %% tags=["nbval-check-output"]
for i, name in enumerate(CLASSES):
    print(f"{i:>3}  {name}")
print(f"ignore index: {IGNORE_INDEX}")

# %% [markdown]
# ## A segmentation batch
#
# A model for semantic segmentation takes a batch of images and returns, for each pixel, one
# score per class. Training pairs each image with a *label map*: an integer tensor of the same
# height and width whose values are class ids. The shapes are the contract every chapter keeps:
#
# * images: `(B, 3, H, W)`, `float32`, values in $[0, 1]$;
# * labels: `(B, H, W)`, `int64`, values in $\{0, \dots, 10\} \cup \{255\}$;
# * model output (logits): `(B, 11, H, W)`.
#
# Until the data chapters, we build a tiny batch by hand: two 48×48 images, each with a few
# painted objects. Where objects overlap, the one painted last wins, just as in the real masks.

# %%
def tiny_batch(size: int = 48, generator: torch.Generator | None = None):
    """Two hand-made images with their label maps (for illustration only)."""
    g = generator or torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = 0.15 + 0.1 * torch.rand(2, 3, size, size, generator=g)  # a dark, noisy floor
    labels = torch.zeros(2, size, size, dtype=torch.int64)
    objects = [  # (sample, class id, colour as a photo might show it, shape)
        (0, 2, (0.85, 0.82, 0.72), (xx - 16).abs().le(10) & (yy - 20).abs().le(12)),     # Paper: a sheet
        (0, 8, (0.70, 0.75, 0.80), ((xx - 32) ** 2 + (yy - 30) ** 2).le(121)),          # Plastic bag
        (1, 4, (0.55, 0.55, 0.60), ((xx - 24) ** 2 / 36 + (yy - 24) ** 2 / 196).le(1)),  # Metal: a can
        (1, 9, (0.20, 0.60, 0.30), (xx - 38).abs().le(3) & (yy - 10).abs().le(6)),      # Battery
        (1, IGNORE_INDEX, (0.9, 0.3, 0.3), (xx - 6).abs().le(2) & (yy - 40).abs().le(4)),  # unlabelled
    ]
    for b, cls, colour, shape in objects:
        shade = 0.85 + 0.15 * torch.rand(shape.sum().item(), generator=g)  # texture
        images[b][:, shape] = torch.tensor(colour)[:, None] * shade
        labels[b][shape] = cls
    return images, labels


images, labels = tiny_batch(generator=torch.Generator().manual_seed(seed))

# %% tags=["nbval-check-output"]
print("images:", tuple(images.shape), images.dtype, f"range [{images.min():.2f}, {images.max():.2f}]")
print("labels:", tuple(labels.shape), labels.dtype, "values", labels.unique().tolist())
for b in range(len(labels)):
    ids, counts = labels[b].unique(return_counts=True)
    share = ", ".join(f"{CLASSES[i] if i < NUM_CLASSES else 'ignore'} {c / labels[b].numel():.1%}"
                      for i, c in zip(ids.tolist(), counts.tolist()))
    print(f"sample {b}: {share}")

# %% [markdown]
# The overlay draws each class in its colour over the image; white marks ignored pixels.

# %%
viz.show_batch(images, labels, titles=["sample 0", "sample 1"],
               title="A hand-made segmentation batch: image, label map, overlay")
plt.show()

# %% [markdown]
# A model's output for this batch has one score map per class; the prediction is the arg-max
# over the class dimension, which has the labels' shape again. A random 1×1 convolution stands
# in for a model here.

# %% tags=["nbval-check-output"]
model = torch.nn.Conv2d(3, NUM_CLASSES, kernel_size=1).to(session.device)
with torch.no_grad():
    logits = model(images.to(session.device))
prediction = logits.argmax(dim=1)
print("logits:", tuple(logits.shape), "-> prediction:", tuple(prediction.shape), prediction.dtype)

# %% [markdown]
# How good is that prediction? The share of labelled pixels it gets right is its *pixel
# accuracy*; the metrics chapter shows why the competition scores mean IoU instead.

# %%
valid = labels != IGNORE_INDEX
pixel_accuracy = (prediction.cpu()[valid] == labels[valid]).float().mean().item()
print(f"pixel accuracy of an untrained 1x1 conv: {pixel_accuracy:.3f} "
      f"(the background alone covers {(labels[valid] == 0).float().mean().item():.3f} of labelled pixels)")

# %% [markdown]
# ## Summary
#
# * The book runs with `make book` and is tested with `make test`; a profile (`smoke`, `cpu`,
#   `gpu`, `auto`) fixes every size and step count, from one table in `segedu.profiles`.
# * A segmentation batch is images `(B, 3, H, W)` float plus labels `(B, H, W)` int64 with class
#   ids 0–10 and 255 for ignored pixels; a model returns `(B, 11, H, W)` logits.
# * Predicting "background" for every pixel would score a pixel accuracy equal to the
#   background's share of labelled pixels, printed above, without finding a single object:
#   pixel accuracy rewards the majority class, which is why the competition scores mean IoU.
#
# ## Exercises
#
# 1. Run this chapter with `profile="smoke"` and with `device="cuda"` on a machine without a GPU.
#    What does each print?
# 2. Change `tiny_batch` so that the battery is painted *before* the metal can and overlaps it.
#    Which class do the overlapping pixels get, and why does painting order matter for masks?
# 3. Compute the pixel accuracy of the constant prediction "background everywhere" on this batch
#    and compare it with the untrained model's.
