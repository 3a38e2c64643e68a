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
# # Experiment discipline and validation
#
# **What you will learn.** A competition is won by many small decisions, each one an experiment.
# An experiment only tells you something if you can repeat it and if its effect is larger than
# the noise. This chapter sets up that discipline before any trick is tried:
#
# * the **debug mode**, which runs every code path in seconds before you spend an hour;
# * **seeds**: the same seed twice gives the same weights, and different seeds measure the
#   **noise floor** that any improvement has to beat;
# * **run directories and the runs table**: every run records its full configuration and its
#   metrics, and `segedu runs` shows what changed between two runs and what that did;
# * **validation schemes**: hold-out 8:2, K-fold, stratified K-fold and group K-fold. For hold-out
#   and K-fold we measure how much the validation score moves from fold to fold, and how far each
#   estimate lands from the score on the test images; for the other two, what the split does to
#   the folds.
#
# **What it builds on.** The training engine of the [FCN chapter](06_fcn), the splits of the
# [dataloader chapter](03_dataloader_and_augmentation), and the verdict of the
# [architecture comparison](11_comparison): its winner on the test images, DeepLab v2 on a
# ResNet-50 fine-tuned from the course's pretrained encoder, is the baseline of every
# competition-craft chapter, trained at the comparison's budget (240 steps of 192-pixel crops) so
# that a CPU can afford dozens of runs.

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import torch

from segedu import significance
from segedu.data import splits
from segedu.engine import TrainConfig, runs
from segedu.experiments import ablation, compare
from segedu.engine.trainer import DEBUG_IMAGES
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
prof = session.profile
print(session.describe())
craft = compare.craft_setup(session)
BASE, train_images = craft["base"], craft["train_images"]
print(craft["describe"])

# %% [markdown]
# ## Debug mode: every code path in seconds
#
# The most expensive bug is the one found after an hour of training: a crash in the validation
# loop, a checkpoint that does not save, a submission in the wrong format. `debug=True` (or
# `segedu train --debug`) keeps the whole pipeline but shrinks it: a handful of training and
# validation images, one epoch and at most two optimiser steps. Here is what it changes in the
# resolved configuration, and the run it produces.

# %% tags=["nbval-check-output"]
full = TrainConfig(**BASE, profile=prof.name).resolved()
debug = TrainConfig(**BASE, profile=prof.name, debug=True).resolved()
print(f"debug=True: {debug.epochs} epoch of at most {debug.max_steps} optimiser steps, "
      f"on the first {DEBUG_IMAGES} training and validation images")

# %%
debug_run = compare.train_plan(session, "craft", [{**BASE, "debug": True, "label": "debug"}])["debug"]
files = sorted(p.name for p in debug_run.run_dir.iterdir())
print(f"debug run: {debug_run.trainer.step} optimiser steps in {debug_run.seconds:.1f} s; it wrote {files}")

# %% [markdown]
# ## Seeds: the same number twice, and the noise floor
#
# segedu's seed fixes the initial weights, the order of the data, every augmentation and every
# mixing decision (see `segedu.env.seed_everything` and the trainer's per-batch seeds). So the
# same configuration with the same seed must give the same weights, bit for bit, on the same
# machine with the same software. (The number of data-loading workers is part of the
# configuration: each worker draws its augmentations from its own seeded generator.) We train the
# baseline with seeds 0, 1 and 2, and seed 0 a second time in another run directory.

# %%
seed_plan = ablation.plan(prof, [], seeds=prof.seeds, train_images=train_images)
again = {**seed_plan[0], "label": f"baseline-seed{prof.seeds[0]}-again"}
seed_runs = compare.train_plan(session, "craft", seed_plan, reuse=True)
seed_runs |= compare.train_plan(session, "craft", [again], reuse=True, share=False)  # trained, never copied
first, repeat = seed_runs[seed_plan[0]["label"]], seed_runs[again["label"]]
for label, run in seed_runs.items():
    print(f"{label:<24} best val mIoU {run.trainer.best_miou:.4f}  ({run.train_seconds:.1f} s of training)")

# %%
weights = [torch.load(r.run_dir / "best.pt", map_location="cpu", weights_only=False)["model"] for r in (first, repeat)]
identical = weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
print(f"same seed twice -> identical weights: {identical}; mIoU {first.trainer.best_miou:.6f} and "
      f"{repeat.trainer.best_miou:.6f}")

# %% tags=["nbval-check-output"]
print(f"same seed twice -> identical weights: {identical}")

# %% [markdown]
# With different seeds the weights, and so the score, differ. How much they differ is the
# *noise floor* of this budget: twice the seeds' sample standard deviation
# (`significance.noise_floor`), the distance one run can land from another by luck alone. It
# describes the noise; it does not decide. Whether a change beats the seeds is decided by a paired
# test: the change is trained with the same seeds as the baseline, and the per-seed differences are
# tested against zero (the next chapters' tables). The figure shows the score of each seed, and the
# IoU of each class across seeds, to see which classes the seed moves.

# %%
seed_labels = [e["label"] for e in seed_plan]
seed_scores = compare.score_runs({label: seed_runs[label].run_dir for label in seed_labels}, session.data_dir,
                                 device=session.device, batch_size=prof.batch_size)
values = [seed_scores[label]["overall"]["miou"] for label in seed_labels]
noise_mean, noise_std = ablation.summarise(values)
noise_floor = significance.noise_floor(values)
print(f"baseline over {len(values)} seeds: mIoU {noise_mean:.4f} ± {noise_std:.4f} "
      f"(range {min(values):.4f} to {max(values):.4f}); noise floor 2 × sd = {noise_floor:.4f}")
print(f"floor (Background everywhere): val mIoU {craft['floor']['val']:.4f}")

# %%
class_names = seed_scores[seed_labels[0]]["class_names"]
iou = np.array([np.nan_to_num(np.asarray(seed_scores[label]["overall"]["iou"], dtype=float)) for label in seed_labels])
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 3]})
axes[0].plot([0] * len(values), values, "o", color="tab:blue")
axes[0].errorbar([0.3], [noise_mean], yerr=[noise_std], fmt="s", color="k", capsize=4)
axes[0].set_xticks([0, 0.3], ["seeds", "mean ± std"])
axes[0].set_xlim(-0.3, 0.6)
axes[0].set_ylabel("validation mIoU")
axes[0].set_title(f"same config, different seeds\n(all Background: {craft['floor']['val']:.3f})")
axes[1].boxplot(iou, tick_labels=[n[:9] for n in class_names])
axes[1].tick_params(axis="x", labelsize=8, rotation=30)
axes[1].set_ylabel("IoU over the seeds")
axes[1].set_title("which classes the seed moves")
fig.tight_layout()
plt.show()
spread = iou.max(0) - iou.min(0)
print(f"IoU range over the seeds: largest {class_names[spread.argmax()]} ({spread.max():.4f}); "
      f"classes below 0.01 IoU with every seed: {', '.join(n for n, v in zip(class_names, iou.max(0)) if v < 0.01)}")

# %% [markdown]
# ## Run directories and the runs table: one change at a time
#
# Every run writes `config.json` (the full resolved configuration), `env.json` (versions,
# device, machine), `metrics.jsonl` (one line per epoch) and its checkpoints. An experiment file
# is just a `config.json` you wrote yourself: `segedu train --config exp.json` runs it, and any
# flag overrides it. `segedu runs DIR...` (or `segedu.engine.runs.compare`) reads the run
# directories back and lists, for each run, exactly which fields differ from the baseline. A row
# that shows two changes is an experiment that cannot tell you which of them mattered.
#
# Below, the baseline seeds, the repeated seed and one real change, label smoothing (the
# [optimisation chapter](14_optimisation) measures it with every seed), side by side.

# %%
smoothing = compare.train_plan(session, "craft", ablation.plan(prof, ["label_smoothing"], seeds=[prof.seeds[0]],
                                                                 train_images=train_images)[1:], reuse=True)
table_runs = {label: seed_runs[label].run_dir for label in [seed_labels[0], again["label"], *seed_labels[1:]]}
table_runs.update({label: run.run_dir for label, run in smoothing.items()})
rows = runs.compare(table_runs)
print(runs.render(rows))

# %% tags=["nbval-check-output"]
for row in rows:
    if row["label"] not in seed_labels[2:]:  # the profiles have two or three seeds
        print(f"{row['label']:<26}{row['changes']}")

# %% [markdown]
# ## Validation: hold-out, K-fold, stratified, group
#
# The validation score is an *estimate* of the test score, and so far it came from one fixed split
# (`train.json`/`val.json`, 8:2). Here the 480 annotated images (`train_all.json`) are split four
# ways with `segedu split` (`segedu.data.splits`):
#
# * **hold-out 8:2**, drawn again with each seed, to see how much one draw can mislead;
# * **K-fold** (5 folds): every image is validated once;
# * **stratified K-fold** (5 folds): folds keep each class's share of images (iterative
#   stratification), so a rare class such as Battery lands in every fold;
# * **group K-fold**: whole batch folders (photo sessions, each with its own backgrounds and
#   lighting) stay on one side, as many folds as there are sessions.
#
# The baseline trains once per fold, with seed 0. Training every scheme costs sixteen runs, so
# here only hold-out and K-fold are trained (eight runs); for the stratified and group splits we
# look at what the split itself does: fold sizes and how well each class's share is kept. We
# score each model on its own validation fold and on the labelled test images
# (`test_labels.json`, which a real competition keeps hidden), and ask two questions: how much
# does the estimate move from fold to fold, and how far is it from the test score?

# %%
annotation = session.data_dir / "train_all.json"
split_root = session.run_dir("craft", "splits")
schemes = {"holdout": [splits.write_splits(annotation, split_root / f"holdout-{s}", "holdout", seed=s)[0]
                       for s in prof.seeds],
           "kfold": splits.write_splits(annotation, split_root / "kfold", "kfold", folds=5, seed=session.seed),
           "stratified": splits.write_splits(annotation, split_root / "stratified", "stratified", folds=5, seed=session.seed),
           "group": splits.write_splits(annotation, split_root / "group", "group",
                                        folds=len(set(splits.image_groups(json.loads(annotation.read_text())).values())),
                                        seed=session.seed)}
for method, written in schemes.items():
    print(f"{method:<11}{len(written)} split(s); val images per split {[s.n_val for s in written]}; "
          f"worst class-share deviation {max(100 * s.deviation for s in written):.1f} pp")

# %%
# every scheme trains in the smoke and gpu profiles; the cpu budget trains hold-out and K-fold (the
# folds chapter 16 ensembles), and shows the stratified and group splits' statistics above
trained_schemes = {m: w for m, w in schemes.items() if prof.name != "cpu" or m in ("holdout", "kfold")}
fold_plan = [{**BASE, "seed": session.seed, "train_split": str(s.train), "val_split": str(s.val), "label": f"{method}-{k}"}
             for method, written in trained_schemes.items() for k, s in enumerate(written)]
fold_runs = compare.train_plan(session, "craft", fold_plan, reuse=True)
test_file = session.data_dir / "test_labels.json"
fold_test = compare.score_runs({label: run.run_dir for label, run in fold_runs.items()}, session.data_dir,
                               split=str(test_file), device=session.device, batch_size=prof.batch_size)
print(f"{len(fold_runs)} fold runs, {sum(r.train_seconds for r in fold_runs.values()):.0f} s of training")

# %% [markdown]
# The table: for each scheme, the validation mIoU over its folds (mean ± std), the test mIoU of the
# same models, and the error of the estimate (mean validation minus mean test). The last column is
# the mean absolute gap between a fold's validation score and its own model's test score, that is,
# how wrong a single fold would have been on its own. For scale, the line above the rows is the
# test mIoU of a model that predicts Background everywhere.

# %%
summary = {}
print(f"{'scheme':<12}{'folds':>6}{'val mIoU':>18}{'test mIoU':>18}{'val - test':>12}{'|gap| per fold':>16}")
print(f"floor (Background everywhere): test mIoU {craft['floor']['test']:.4f}")
for method, written in trained_schemes.items():
    labels = [f"{method}-{k}" for k in range(len(written))]
    val = [fold_runs[label].trainer.best_miou for label in labels]
    test = [fold_test[label]["overall"]["miou"] for label in labels]
    (vm, vs), (tm, ts) = ablation.summarise(val), ablation.summarise(test)
    gap = float(np.mean(np.abs(np.subtract(val, test))))
    summary[method] = {"val": val, "test": test, "val_mean": vm, "val_std": vs, "test_mean": tm, "bias": vm - tm, "gap": gap}
    print(f"{method:<12}{len(labels):>6}{vm:>10.4f} ± {vs:.4f}{tm:>10.4f} ± {ts:.4f}{vm - tm:>+12.4f}{gap:>16.4f}")

# %%
fig, ax = plt.subplots(figsize=(6, 5))
for (method, s), marker in zip(summary.items(), "osD^"):
    ax.scatter(s["val"], s["test"], marker=marker, label=method, s=40, alpha=0.8)
lo = min(min(s["val"] + s["test"]) for s in summary.values()) - 0.005
hi = max(max(s["val"] + s["test"]) for s in summary.values()) + 0.005
ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="val = test")
ax.set_xlabel("validation mIoU of the fold")
ax.set_ylabel("test mIoU of the same model")
ax.set_title(f"each point: one fold's model\n(all Background: val {craft['floor']['val']:.3f}, "
             f"test {craft['floor']['test']:.3f})")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
most_stable = min(summary, key=lambda m: summary[m]["val_std"])
least_biased = min(summary, key=lambda m: abs(summary[m]["bias"]))
print(f"smallest fold-to-fold spread: {most_stable} (std {summary[most_stable]['val_std']:.4f}); "
      f"largest: {max(summary, key=lambda m: summary[m]['val_std'])} "
      f"(std {max(s['val_std'] for s in summary.values()):.4f})")
print(f"closest mean estimate of the test score: {least_biased} (val - test {summary[least_biased]['bias']:+.4f})"
      + (f"; group K-fold: {summary['group']['bias']:+.4f}" if "group" in summary else ""))
print(f"seed noise floor of one split (2 × sd, from above): {noise_floor:.4f}")

# %% [markdown]
# ## Summary
#
# The numbers of this run: DeepLab v2 on a ResNet-50 at width 0.25, fine-tuned from the course's
# pretrained encoder, 240 optimiser steps of batch 8 on 192×192 crops, trained in bf16 autocast
# (mixed precision) with channels-last memory layout on 2 CPU cores of an AMD EPYC.
#
# * **Debug mode** trained one optimiser step on 8 images in 1.1 s, and wrote every file a full
#   run writes.
# * **Same seed, same weights.** The baseline trained twice with seed 0 gave bit-identical weights
#   (validation mIoU 0.4094 both times): bf16 autocast rounds differently from fp32, but it rounds
#   the same way every time on the same machine. A processor of another generation, even one
#   that reports the same name, may run other kernels and round differently, so your scores can
#   differ from the book's in more than the last digit: compare runs made on one machine.
# * **The noise floor.** Seeds 0, 1 and 2 gave 0.4349 ± 0.0225 validation mIoU (0.4093 to 0.4519;
#   these scores come from scoring each saved model again, which can move the fourth decimal, so
#   seed 0 reads 0.4093 here and 0.4094 in its training record), far above a model that predicts
#   Background everywhere (0.0643 on the validation images). Twice the seeds' standard deviation,
#   0.0451, is the scale of the seed's luck: in this run the seed alone moved the score from about
#   0.41 to 0.45. Three seeds give only a rough standard deviation, and whether a change beats
#   it is decided by a paired test across the same seeds. The seed moves single classes far more
#   than the mean: Metal's IoU spans 0.2049 over the seeds. Battery, the rarest and smallest class,
#   stays below 0.01 IoU with every seed, so it adds nothing to the mIoU; every other class,
#   Clothing included, passes 0.01 IoU with at least one seed. At this budget a class that covers
#   so few pixels, in objects this small, is among the last a model learns.
# * **One change at a time.** The runs table names the single changed field of each run. Label
#   smoothing (0.1) on seed 0 scored 0.4368 against 0.4094 for the baseline with the same seed.
#   That is one run of each; it lies inside the baseline's seed range (0.4093 to 0.4519), below
#   seeds 1 and 2 of the unchanged baseline (0.4519 and 0.4434): it cannot be called either way.
#   Seed 0 was the baseline's weakest seed, and a single pair of runs cannot tell a change from the
#   luck of that seed. [Optimisation](14_optimisation) measures it over three seeds with a paired
#   test.
# * **Validation schemes.** Hold-out (three draws) and K-fold (five folds), each fold validating
#   96 images, against the test images:
#
#   | scheme | val mIoU over folds | test mIoU | val − test | mean \|gap\| per fold |
#   |---|---|---|---|---|
#   | hold-out, 3 draws | 0.4110 ± 0.0252 | 0.3899 ± 0.0125 | +0.0211 | 0.0329 |
#   | K-fold (5) | 0.4002 ± 0.0252 | 0.3814 ± 0.0097 | +0.0188 | 0.0188 |
#   | Background everywhere | | 0.0571 | | |
#
#   Both schemes overestimated the test score on average, by 0.019 to 0.021, and both sets of
#   models score far above the Background floor on the test images. The printout names K-fold the
#   closer estimate, but +0.0188 against +0.0211 is no real difference with three and five folds,
#   each with a validation spread of 0.0252. For K-fold the mean gap per fold equals the mean error
#   (0.0188), so each of the five K-fold models scored higher on its own validation fold than on
#   the test images. For hold-out the mean gap (0.0329) is larger than the mean error (0.0211), so
#   at least one of the three hold-out models scored *lower* on its validation draw than on the
#   test images: a single hold-out draw can miss the test score in either direction.
# * **Why the validation score is too high.** This run does not say. It is not the photo session:
#   validation and test images both come from the sessions the model trained on. Two causes
#   remain. The test images may be harder on average than the annotated ones, an offset every
#   model shares. And the score is the best epoch on the validation images, a choice that can
#   only lift it, and lifts it only if the score fell back after its best epoch (each run's
#   `metrics.jsonl` shows whether it did). The offset here is of the same size as the fold-to-fold
#   spread, which is why one hold-out draw could land on the other side. Either way, read the
#   validation number as a score for comparing runs on the same split, not as the test score to
#   expect.
# * **Fold to fold.** The estimate moved about as much between splits as between seeds: a
#   validation std of 0.0252 over the hold-out draws and the same 0.0252 over the K-fold folds,
#   against 0.0225 over the seeds on one split (each from three to five runs, so these spreads are
#   rough, and the printout's "smallest" and "largest" spread are a tie at four decimals). The same
#   fold models agree more closely on the test images (std 0.0125 and 0.0097): part of a fold's
#   movement comes from which 96 images it validates on, not from the model.
# * **Stratified and group splits** were not trained here. Stratification kept every class's share
#   within 5.3 points of the whole set, against 11.0 for plain K-fold and for a hold-out draw.
#   Group K-fold can only cut along the three photo sessions, so its folds are very unequal
#   (189, 172 and 119 validation images); its class shares were off by up to 4.6 points, in this
#   draw even closer than the stratified folds, though nothing in it aims at that: each group fold
#   averages the shares over more images. It is the scheme to use when the test photos come from
#   new sessions; here they come from the same sessions as the training photos.
#   Whether either gives a steadier or closer estimate is not measured in this run.
# * **A split's offset is not the noise of a comparison.** The val − test error is an offset that
#   a split shares with every run scored on it; it cancels when two runs are compared on the same
#   split. The noise of such a paired difference is the spread of the per-seed differences between
#   the two runs (train both with the same seeds, score both on the same split, and see how much
#   their difference moves from seed to seed). The seed spread above (0.0225) is the spread of one
#   run's score; the spread of a difference can be smaller, when a seed moves both runs alike, or
#   larger, and only the per-seed differences measure it.
#
# ## Exercises
#
# 1. Train the baseline with a fourth and a fifth seed (`ablation.plan(prof, [], seeds=[3, 4], ...)`).
#    How much does the estimated noise floor change between three and five seeds?
# 2. Train seed 0 again with another number of data-loading workers (`num_workers=0`). Are the
#    weights still identical? Where does the worker count enter the random numbers?
# 3. Write an experiment file for the baseline with `TrainConfig(**BASE).to_json()`, change one
#    field, train it with `segedu train --config`, and compare it with `segedu runs`.
# 4. Average the five K-fold models' probabilities on the test images
#    (`segedu.inference.ensemble`). Is the K-fold ensemble better than its best single fold?
