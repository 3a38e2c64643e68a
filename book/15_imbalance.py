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
# # Competition craft: class imbalance
#
# **What you will learn.** Background covers most pixels of a trash photo and Battery almost none,
# so a model can score well on pixel accuracy while never predicting the rare classes, and mIoU
# counts each class equally. This chapter measures the remedies of the course -- class-weighted
# cross-entropy, Focal, Dice, Lovász-softmax and compound losses, the class-aware sampler and
# copy-paste of rare objects -- on the mean *and* on the rare classes themselves.
#
# **What it builds on.** The class statistics and loss weights of [EDA](02_eda), the losses of
# [metrics](04_metrics), the baseline and noise rule of
# [experiment discipline](12_experiment_discipline), and copy-paste from
# [augmentation](13_augmentation), whose runs appear here again. The
# [ablation table](18_ablation) collects these results.

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import matplotlib.pyplot as plt
import numpy as np

from segedu import viz
from segedu.data import coco, stats
from segedu.experiments import ablation, compare
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
prof = session.profile
print(session.describe())
craft = compare.craft_setup(session)
SEEDS = craft["seeds"]

# %% [markdown]
# ## How imbalanced is the training split?
#
# Pixel share and image share of each class in the split the baseline trains on. The *rare
# classes* of this chapter are the three object classes with the fewest pixels among those that
# appear in at least one validation image (a class absent from validation has no IoU to improve).

# %%
train = coco.load(session.data_dir / "train.json")
val = coco.load(session.data_dir / "val.json")
counts, presence = stats.pixel_counts_and_presence(train)
_, val_presence = stats.pixel_counts_and_presence(val)
names = train.class_names
share = counts / counts.sum()
print(f"{'class':<14}{'pixels %':>10}{'images %':>10}{'sqrt_inverse weight':>21}")
weights = stats.class_weights(counts, "sqrt_inverse")
for c, name in enumerate(names):
    print(f"{name:<14}{100 * share[c]:>10.3f}{100 * presence[:, c].mean():>10.1f}{weights[c]:>21.2f}")
candidates = [c for c in np.argsort(counts) if c != 0 and counts[c] > 0 and val_presence[:, c].any()]
RARE = [int(c) for c in candidates[:3]]
print(f"\nrare classes: {', '.join(names[c] for c in RARE)} "
      f"({', '.join(f'{100 * share[c]:.2f}%' for c in RARE)} of the training pixels)")

# %% [markdown]
# ## The remedies, one change each
#
# * **Weighted CE** (`class_weights="sqrt_inverse"`): each pixel's loss is multiplied by its
#   class's weight from the table above, $1/\sqrt{f_c}$.
# * **Focal** (Lin et al. 2017): $-(1-p_t)^\gamma \log p_t$ with $\gamma = 2$, which shrinks the
#   loss of pixels the model already gets right -- most of the background.
# * **Dice** and **Lovász-softmax**: losses on the per-class overlap itself, averaged over the
#   classes, so a rare class weighs as much as background (Lovász is a convex surrogate of the IoU).
# * **CE + Dice**: the compound loss of many winning solutions.
# * **Class-aware sampling**: images that contain rare classes are drawn more often (repeat-factor
#   weights of LVIS).
# * **Class-aware sampling with weighted CE**: both at once. The sampler shows the images with rare
#   classes more often, and the weights make each of their pixels count more in the loss.
# * **Copy-paste**: objects of the rarest classes pasted into other images of the batch (the same
#   runs as in [augmentation](13_augmentation)).
#
# Only four of them are trained in this chapter, each with seeds 0, 1 and 2: CE + Dice, the
# class-aware sampler, the sampler with weighted CE, and copy-paste. Weighted CE alone, Focal, Dice
# and Lovász-softmax are described but not trained here, so the chapter claims nothing about them.

# %% tags=["nbval-check-output"]
for trick in ablation.FAMILIES["imbalance"]:
    print(f"{trick:<25}{ablation.TRICKS[trick]}")

# %%
tricks = ablation.tricks_for(prof, "imbalance") + ["copypaste"]
trained = compare.train_tricks(session, tricks)
print(f"tricks: {', '.join(tricks)}; seeds {SEEDS} each")
rows = compare.trick_rows(trained, tricks, SEEDS)
print(ablation.render(rows, floor=craft["floor"]["val"]))

# %%
viz.plot_ablation(rows, f"class-imbalance remedies, {len(SEEDS)} seeds each")
plt.show()

# %% [markdown]
# No remedy shows evidence of a difference in mIoU. The baseline scores 0.4349 ± 0.0225. The
# class-aware sampler has the highest mean, 0.4624 ± 0.0273 (+0.0275), but its 95% interval
# [−0.0930, +0.1480] contains zero and its Holm-adjusted p is 1.000. CE + Dice reaches
# 0.4564 ± 0.0166 (+0.0215, [−0.0311, +0.0741], p 0.883) and copy-paste 0.4373 ± 0.0169 (+0.0024,
# [−0.0409, +0.0456], p 1.000). The sampler with weighted CE is the only remedy whose mean lies
# below the baseline, 0.4194 ± 0.0194 (−0.0155, [−0.1094, +0.0784], p 1.000): no evidence of a
# difference either. None of the changes reaches the noise floor of 0.0450, twice the spread of the
# baseline's own seeds; with three seeds and a spread this large, the intervals are wide enough to
# hold a sizeable gain and a sizeable loss alike. "No evidence" is therefore not evidence that the
# remedies do nothing. All of them sit far above the 0.0643 of predicting Background everywhere, so
# every model learned much more than the majority class; the chapter prints no ceiling, so how close
# they come to what this model could reach, it does not say. Copy-paste shows no evidence of a
# difference in [augmentation](13_augmentation) either, where the same runs were tested against
# fewer remedies.
#
# The training seconds do not measure cost. The baseline took 84.2 s per run and every remedy less,
# 71.1 s to 76.2 s. Copy-paste does add work (the pasting runs on the same CPU that trains) and still
# ran 11.4 s shorter than the baseline; the class-aware sampler only changes which images are drawn
# and adds nothing to a step. Differences of this size come from the conditions on this 2-core
# machine while each run trained, not from the price of a remedy.
#
# ## The rare classes
#
# The mean hides where a remedy acts. Below: each trick's validation IoU on the three rare classes
# (mean over the seeds, at each run's best epoch) and, in brackets, its change against the
# baseline.

# %%
per_class = {t: [trained[f"{t}-seed{s}"].trainer.best_iou for s in SEEDS] for t in ["baseline", *tricks]}
print(ablation.class_table(per_class, names, RARE))

# %%
fig, ax = plt.subplots(figsize=(7, 3.2))
labels = ["baseline", *tricks]
width = 0.8 / len(RARE)
for k, c in enumerate(RARE):
    means = [np.nanmean([v[c] for v in per_class[t]]) for t in labels]
    ax.bar(np.arange(len(labels)) + k * width, means, width, label=names[c])
ax.set_xticks(np.arange(len(labels)) + width * (len(RARE) - 1) / 2, labels, rotation=30, ha="right", fontsize=8)
ax.set_ylabel("validation IoU (mean over seeds)")
ax.set_title("the rare classes under each remedy")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
rare_mean = {t: float(np.nanmean([np.nanmean([v[c] for c in RARE]) for v in per_class[t]])) for t in labels}
best = max(tricks, key=lambda t: rare_mean[t])
print(f"mean IoU of the rare classes: baseline {rare_mean['baseline']:.4f}; best {best} {rare_mean[best]:.4f} "
      f"({rare_mean[best] - rare_mean['baseline']:+.4f})")
print(f"helped the mIoU beyond the noise: {', '.join(r.trick for r in rows if r.verdict == 'helps') or 'none'}")

# %% [markdown]
# ## Summary
#
# The numbers of this run: DeepLab v2 on a ResNet-50 at a quarter of the paper's width, fine-tuned
# from the course's own pretrained encoder, 192×192 crops, batch 8, 5 epochs of 48 steps (240
# optimiser steps), AdamW with a cosine schedule, seeds 0, 1 and 2, trained in bf16 autocast (mixed
# precision) with channels-last memory layout on 2 CPU cores of an AMD EPYC.
#
# * **The imbalance.** Background holds 60.675% of the training pixels and Plastic bag 19.709%;
#   Battery holds 0.054% (in 5.5% of the images), Metal 0.40% and Clothing 0.43%. The
#   `sqrt_inverse` weight of Battery is 42.97, of Background 1.28.
# * **No remedy shows evidence of a difference in mIoU.** Against the baseline's 0.4349 ± 0.0225,
#   the class-aware sampler reached 0.4624 (+0.0275, p (Holm) 1.000), CE + Dice 0.4564 (+0.0215,
#   p 0.883), copy-paste 0.4373 (+0.0024, p 1.000) and the sampler with weighted CE 0.4194
#   (−0.0155, p 1.000). Every 95% interval contains zero and no change reaches the noise floor of
#   0.0450; Holm's correction accounts for four remedies being tried at once. All of them are far
#   above the 0.0643 of predicting Background everywhere. The repeat-factor sampling of LVIS and
#   Simple Copy-Paste report gains for rare categories, and CE + Dice is the compound loss of many
#   winning solutions; at this budget, with three seeds, the mIoU neither confirms nor refutes any of
#   them. The intervals are wide (the sampler's spans −0.0930 to +0.1480): a real gain could
#   hide in them as easily as no effect at all.
# * **The rare classes moved, each remedy differently, but without a test.** Mean IoU over the
#   three seeds. *Clothing* rose from 0.1802 to 0.3758 with the class-aware sampler (+0.1956), the
#   largest change in the table, which shows the 4.9% of images containing Clothing more often; the
#   sampler with weighted CE reached 0.2886 (+0.1085), copy-paste 0.2713 (+0.0911) and CE + Dice
#   0.2116 (+0.0315). *Metal* rose from 0.2271 to 0.3057 with the sampler (+0.0786), to 0.2803 with
#   CE + Dice (+0.0532) and to 0.2692 with the sampler and weights (+0.0421), but copy-paste left it
#   at 0.2277 (+0.0006), although Metal is in 14.8% of the images and so is often in the batch to be
#   pasted; why copy-paste lifted Clothing and not Metal, these runs do not show. The rare-class mean
#   went from 0.1358 to 0.2272 with the sampler (+0.0914), the highest of the remedies: for Metal
#   and Clothing, the direction LVIS reports for repeat-factor sampling. No paired test was printed
#   for these per-class changes, so they are measurements, not verdicts.
# * **The sampler with weighted CE is the only remedy that found Battery, and only a little.** Its
#   Battery IoU is 0.0173 (+0.0173), a mean over the three seeds, against 0.0000 for the baseline and
#   every other remedy; the table does not show whether one seed or all three found it. The weights
#   make each Battery pixel count 42.97 in the loss against 1.28 for a Background pixel, on top of
#   the sampler showing Battery images more often. Metal (0.2692) and Clothing (0.2886) stay above
#   the baseline but below the sampler alone (0.3057 and 0.3758): adding the weights traded part of
#   the sampler's Metal and Clothing gains for a little Battery. Its mIoU, 0.4194, is the lowest of
#   the table, against the baseline's 0.4349 (−0.0155, interval [−0.1094, +0.0784], p 1.000: no
#   evidence of a difference) and the sampler alone's 0.4624 (no paired test between the two is
#   printed). All three rare classes rose against the baseline while the mean is lower, so what it
#   lost lies in classes this table does not show; weights this large push the model to predict rare
#   classes on pixels of other classes, a likely reason that these runs do not test. Weighted CE
#   alone was not trained, so which of the two changes found Battery, the chapter cannot say.
# * **Battery stays the hardest class.** It is in more training images than Clothing (5.5% against
#   4.9%), yet Clothing scores 0.1802 at the baseline and Battery 0.0000. What sets Battery apart is
#   pixels, not images: 0.054% of the training pixels against Clothing's 0.43%, so where a Battery
#   appears it covers few pixels. The sampler can only repeat the images that hold one and
#   copy-paste can only paste a Battery that is already in the batch; neither makes it larger, and
#   both left it at 0.0000.
# * **What this does not say.** Weighted CE alone, Focal, Dice and Lovász-softmax were not trained
#   here. The training times say nothing about cost: copy-paste, which adds work, ran 11.4 s
#   shorter than the baseline.
#
# ## Exercises
#
# 1. With the pixel shares above, how much larger is Background's total loss than the rarest
#    class's under plain cross-entropy for an untrained model (every pixel's loss about $\ln 11$)?
#    And under `sqrt_inverse` weights?
# 2. Train `weighted_ce` with `class_weights="inverse"` instead. Which rare class moves, and what
#    happens to Background's IoU?
# 3. The rare classes were chosen on the validation split's presence. Why would choosing them by
#    the validation *IoU* (the three lowest) make the comparison unfair?
