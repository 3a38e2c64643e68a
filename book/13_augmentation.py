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
# # Competition craft: augmentation, one change at a time
#
# **What you will learn.** Which of the augmentations competition write-ups recommend -- Cutout,
# GridMask, elastic deformation, CropNonEmptyMaskIfExists, MixUp, CutMix, SnapMix, copy-paste --
# change the score of our baseline, by how much against the seed noise, and at what cost in
# training time.
#
# **What it builds on.** The augmentations themselves, drawn on real images, are in the
# [dataloader chapter](03_dataloader_and_augmentation); the baseline, its seeds and the noise rule
# are those of [experiment discipline](12_experiment_discipline). Every run here is one change to
# that baseline, trained with the same seeds, and is reused by the
# [ablation table](18_ablation) at the end of the competition-craft part.

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import matplotlib.pyplot as plt

from segedu import viz
from segedu.engine import runs
from segedu.experiments import ablation, compare
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
prof = session.profile
print(session.describe())
craft = compare.craft_setup(session)
SEEDS = craft["seeds"]
print(craft["describe"])

# %% [markdown]
# ## Two kinds of augmentation
#
# **Per image** (albumentations, in the dataset's transform, after the training crop): *Cutout*
# blanks random squares, *GridMask* a regular grid of squares, *elastic* bends the image and its
# mask with a smooth random field (U-Net's augmentation), and *CropNonEmptyMaskIfExists* replaces
# the random crop by one that contains an object pixel. **Per batch** (`segedu.data.mixing`, on
# the batch in the training loop): *MixUp* blends two images and their one-hot masks, *CutMix*
# pastes a box of one image into another, *SnapMix* pastes a box resized from another place, and
# *copy-paste* pastes whole objects of the rarest classes. Each is one `TrainConfig` field, as in
# `segedu train --augment cutout` or `segedu train --mix cutmix`.
#
# The smoke and gpu profiles train all eight. The cpu profile trains the two mixing tricks that the
# write-ups credit most (CutMix and copy-paste), because three seeds of each augmentation would not
# fit in the book's hour on two cores.

# %% tags=["nbval-check-output"]
for trick in ablation.FAMILIES["augmentation"]:
    print(f"{trick:<16}{ablation.TRICKS[trick]}")

# %%
tricks = ablation.tricks_for(prof, "augmentation")
left_out = [t for t in ablation.FAMILIES["augmentation"] if t not in tricks]
print(f"trained in the {prof.name} profile: {', '.join(tricks)}; left out: {', '.join(left_out) or 'none'}")

# %% [markdown]
# ## The runs
#
# The baseline's seeds were trained by [experiment discipline](12_experiment_discipline) and are
# read back; each augmentation trains once per seed.

# %%
trained = compare.train_tricks(session, tricks)
print(compare.describe_runs(trained))
print(runs.render(runs.compare({t: trained[f"{t}-seed{SEEDS[0]}"].run_dir for t in ["baseline", *tricks]}),
                  seconds=False))

# %% [markdown]
# The runs table lists, for the first seed, the one field each run changed. Now the measurement:
# the validation mIoU over the seeds, the change against the baseline, and twice the larger seed
# spread. A change smaller than that is *within noise*. The last columns are the mean training
# seconds per run and the extra time against the baseline.

# %%
rows = compare.trick_rows(trained, tricks, SEEDS)
print(ablation.render(rows, floor=craft["floor"]["val"]))

# %%
viz.plot_ablation(rows, f"augmentation, {len(SEEDS)} seeds each ({prof.name} profile)")
plt.show()

# %%
best = max(rows[1:], key=lambda r: r.delta)
slowest = max(rows[1:], key=lambda r: r.extra_seconds)
print(f"largest mean change: {best.trick} {best.delta:+.4f} (95% CI {best.ci95[0]:+.4f} to {best.ci95[1]:+.4f}, "
      f"p (Holm) {best.p_holm:.3f}: {best.verdict})")
print(f"helped (paired test, Holm): {', '.join(r.trick for r in rows if r.verdict == 'helps') or 'none'}")
print(f"hurt (paired test, Holm): {', '.join(r.trick for r in rows if r.verdict == 'hurts') or 'none'}")
print(f"largest extra cost: {slowest.trick}, {slowest.extra_seconds:+.1f} s per run "
      f"({100 * slowest.extra_seconds / rows[0].seconds:+.0f}%)")

# %% [markdown]
# ## Summary
#
# The cpu profile's numbers (DeepLab v3+ at width 0.125, one epoch of 48 steps on 64×64 crops,
# seeds 0, 1 and 2, 2 CPU cores of an Intel Xeon):
#
# * **The baseline** scored 0.0869 ± 0.0015 validation mIoU, so a change had to move the mean by
#   more than 0.0030 (or twice its own seed spread, if larger) to count.
# * **CutMix hurt**: 0.0800 ± 0.0003, −0.0069, more than twice the noise, and with every seed.
#   Pasting a box of another photo into half of the batches makes the one short epoch harder
#   without making it longer.
# * **Copy-paste did nothing measurable**: 0.0870 ± 0.0032, +0.0001. Its seeds spread twice as
#   much as the baseline's (std 0.0032 against 0.0015; its seed-0 run scored 0.0914 against the baseline's 0.0862).
# * **The cost** of both was small at this size: copy-paste trained in 3.4 s per run against the
#   baseline's 3.1 s (+0.2 s, +7%), CutMix in 3.2 s (no measurable extra).
# * **What this does not say.** Augmentation is a regulariser: it pays when a model trains long
#   enough to overfit, and one epoch from scratch is far from that. The gpu profile trains all
#   eight augmentations for four epochs at 256×256; judge them there, with the same method.
#
# ## Exercises
#
# 1. Train the augmentations the cpu profile leaves out (`ablation.FAMILIES["augmentation"]`) with
#    the same seeds. Which one costs the most time per run, and why?
# 2. Cutout keeps the mask under the blanked squares, so the model must label pixels it cannot
#    see. With its default settings (`transforms.augmentation("cutout", prof)`), what fraction of a
#    crop can Cutout blank at most, and so how much of the loss could `fill_mask=IGNORE_INDEX` remove?
# 3. Mixing is applied to half of the batches (`mix_p=0.5`). Train CutMix with `mix_p=1.0`. Does
#    mixing every batch help or hurt at this budget?
