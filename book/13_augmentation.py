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
# **What you will learn.** The augmentations competition write-ups recommend -- Cutout,
# GridMask, elastic deformation, CropNonEmptyMaskIfExists, MixUp, CutMix, SnapMix, copy-paste --
# and how to measure whether one changes the score of our baseline: by how much, against the seed
# noise, and at what cost in training time. Two of them, CutMix and copy-paste, are measured here.
#
# **What it builds on.** The augmentations themselves, drawn on real images, are in the
# [dataloader chapter](03_dataloader_and_augmentation); the baseline, its seeds and the noise rule
# are those of [experiment discipline](12_experiment_discipline). Every run here is one change to
# that baseline, trained with the same seeds, and appears again in the
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
# This chapter trains only the two mixing tricks that the write-ups credit most, CutMix and
# copy-paste: three seeds of all eight would take too long on two CPU cores. The other six are
# listed below but not trained, so nothing in this chapter says whether they help or hurt.

# %% tags=["nbval-check-output"]
for trick in ablation.FAMILIES["augmentation"]:
    print(f"{trick:<16}{ablation.TRICKS[trick]}")

# %%
tricks = ablation.tricks_for(prof, "augmentation")
left_out = [t for t in ablation.FAMILIES["augmentation"] if t not in tricks]
print(f"trained here: {', '.join(tricks)}; left out: {', '.join(left_out) or 'none'}")

# %% [markdown]
# ## The runs
#
# The baseline's seeds are those of [experiment discipline](12_experiment_discipline); each
# augmentation trains once per seed.

# %%
trained = compare.train_tricks(session, tricks)
print(runs.render(runs.compare({t: trained[f"{t}-seed{SEEDS[0]}"].run_dir for t in ["baseline", *tricks]}),
                  seconds=False))

# %% [markdown]
# The runs table lists, for the first seed, the one field each run changed and its best validation
# mIoU. Now the measurement over all three seeds: the mean validation mIoU and its spread, the
# change against the baseline with its 95% confidence interval, and the p-value of a paired test
# across seeds (each trick's seed 0 against the baseline's seed 0, and so on), Holm-adjusted for
# the two comparisons. A trick gets *helps* or *hurts* only when that adjusted p-value is below
# five per cent; otherwise the row says *no evidence*. The last columns are the mean training
# seconds per run and the extra time against the baseline.

# %%
rows = compare.trick_rows(trained, tricks, SEEDS)
print(ablation.render(rows, floor=craft["floor"]["val"]))

# %%
viz.plot_ablation(rows, f"augmentation, {len(SEEDS)} seeds each")
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
# The numbers of this run: DeepLab v2 on a ResNet-50 at width 0.25, fine-tuned from the course's
# own pretrained encoder, 192×192 crops, batch 8, 5 epochs of 384 training images (240 optimiser
# steps), AdamW with a cosine schedule, seeds 0, 1 and 2, trained in bf16 autocast (mixed
# precision) with channels-last memory layout on 2 CPU cores of an AMD EPYC.
#
# * **The baseline** scored 0.4349 ± 0.0225 validation mIoU, far above the 0.0643 that Background
#   everywhere scores: these models learn. The chapter prints no ceiling, so how much room is left
#   above the baseline is not measured here. Twice its seed spread is 0.0450, the scale of the
#   seed's luck, and it is wide: a difference between two single runs smaller than that says little.
#   The verdicts below come from the paired tests.
# * **Copy-paste: no evidence of a difference.** 0.4373 ± 0.0169, +0.0024 on the mean (95% CI
#   −0.0409 to +0.0456, p (Holm) 0.924). Its mean is the highest of the three, but the change is
#   far inside the noise floor of 0.0450, and the interval runs from a clear loss to a clear gain:
#   three seeds cannot tell this model from the baseline. Pasting whole objects of the rarest
#   classes, with their true masks and sharp boundaries, gives the model more pixels of exactly the
#   classes whose IoU pulls the mean down, and Simple Copy-Paste (Ghiasi et al. 2021) reports solid
#   gains from it, measured on COCO with large-scale jitter and long training schedules. At 240
#   steps on our images these runs neither confirm nor contradict the paper.
# * **CutMix: no evidence of a difference.** 0.4204 ± 0.0177, −0.0145 on the mean (95% CI −0.0836
#   to +0.0546, p (Holm) 0.924). Its mean is the lowest of the three, but the interval is the
#   widest in the table and covers zero with room on both sides: the seeds did not move together. A
#   pasted box cuts objects at its edges and puts them in a scene they do not belong to, which a
#   segmenter must label pixel by pixel; whether that costs more than it regularises at this budget,
#   these runs cannot say. CutMix's gains were measured on image classification (Yun et al. 2019);
#   the write-ups' claim that it raises a segmentation score is neither supported nor refuted here.
# * **One seed would have misled.** In the runs table, on seed 0 alone, both tricks scored above
#   the baseline: CutMix 0.4231 and copy-paste 0.4278 against the baseline's 0.4094. Those are
#   single runs. Over three seeds CutMix's mean lies below the baseline's, and neither change
#   survives the paired test, which is why the verdicts are taken across seeds.
# * **No verdicts:** under the paired test no trick helped and none hurt. That pasting whole
#   objects with their masks should beat pasting arbitrary boxes is a reasonable idea, but these
#   numbers give no evidence for it.
# * **The cost** could not be measured here. Per run, the baseline trained in 84.2 s, copy-paste in
#   72.8 s (−11.4 s, −14%) and CutMix in 69.4 s (−14.8 s). Both tricks do their pasting on the CPU
#   that also trains, so they add work rather than remove it. That they came out faster is the
#   opposite of what pasting should cost: the wall-clock time of a run on two cores varies from run
#   to run by more than the pasting costs. No test on the times is printed, so the "largest extra
#   cost" line above is a difference of noisy timings, not a price.
#
# ## Exercises
#
# 1. Train the six augmentations this chapter leaves out (`ablation.FAMILIES["augmentation"]`)
#    with the same seeds. Which one costs the most time per run, and why?
# 2. Cutout keeps the mask under the blanked squares, so the model must label pixels it cannot
#    see. With its default settings (`transforms.augmentation("cutout", prof)`), what fraction of a
#    crop can Cutout blank at most, and so how much of the loss could `fill_mask=IGNORE_INDEX` remove?
# 3. Mixing is applied to half of the batches (`mix_p=0.5`). Train CutMix with `mix_p=1.0`. Does
#    mixing every batch help or hurt at this budget?
