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
# # Competition craft: ensembles and weight averaging
#
# **What you will learn.** Averaging is the most reliable trick of segmentation competitions, in
# two forms: averaging the *predictions* of several models (seed, K-fold and snapshot ensembles)
# and averaging the *weights* of one run (an exponential moving average, EMA, and stochastic
# weight averaging, SWA). This chapter trains the weight averages, follows SWA's weights along
# their path, builds every kind of ensemble from runs that already exist, and sets each one's gain
# against its cost with a paired test across seeds.
#
# **What it builds on.** The baseline's seeds and the K-fold models of
# [experiment discipline](12_experiment_discipline), the same trained models, and the ensembling code
# of `segedu.inference.ensemble` (probabilities averaged, every member at its own input size). The
# [ablation table](18_ablation) reuses these runs and scores.

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import json

import matplotlib.pyplot as plt

from segedu import viz
from segedu.data import splits
from segedu.engine import averaging
from segedu.experiments import ablation, compare
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
prof = session.profile
print(session.describe())
craft = compare.craft_setup(session)
BASE, SEEDS = craft["base"], craft["seeds"]
SCORES = craft["scores"]  # scores kept for the ablation chapter
size = BASE["image_size"]

# %% [markdown]
# ## Averaging weights: EMA and SWA
#
# * **EMA** (`ema_decay=0.99`): after every optimiser step the averaged weights move a step $1 - d$
#   of the way to the current ones, and the average, not the raw weights, is evaluated and saved.
#   The decay warms up as in TensorFlow and timm, $d_t = \min(0.99, (1 + t) / (10 + t))$, so the
#   first, untrained weights are forgotten quickly, and batch norm's running statistics are
#   averaged with the weights (an average of weights paired with the live model's statistics
#   would be a model that never existed).
# * **SWA** (Izmailov et al. 2018): over the last quarter of the run's optimiser steps the
#   learning rate is annealed to a constant (`SWALR`), the weights are averaged every few steps
#   (`swa_every`), at least four snapshots, and batch norm's statistics are recomputed for the
#   averaged weights at the end, since no run ever produced activations with them. The run is not
#   longer than the baseline's. It also keeps every snapshot (`save_snapshots`): the members of
#   the snapshot ensemble below, and the points of the weights' path.

# %% tags=["nbval-check-output"]
for trick in ablation.FAMILIES["averaging"]:
    print(f"{trick:<8}{ablation.TRICKS[trick]}")

# %%
tricks = ablation.tricks_for(prof, "averaging")
trained = compare.train_tricks(session, tricks)
rows = compare.trick_rows(trained, tricks, SEEDS)
print(ablation.render(rows, floor=craft["floor"]["val"]))

# %% [markdown]
# ## The weights' path
#
# SWA's argument (Izmailov et al. 2018, Fig. 1) is geometric: with a constant or cyclical learning
# rate the weights circle around a wide, flat region of the loss surface without settling at its
# centre, and their average lands nearer the centre, where a small shift of the data changes the
# loss least. The plane below is the one the paper draws: it passes through the first and the last
# snapshot of seed 0's SWA phase and through their average, and each point is labelled with its
# validation mIoU (the snapshots with the live batch-norm statistics, SWA with recomputed ones).

# %%
if "swa" in tricks:
    swa0 = trained[f"swa-seed{SEEDS[0]}"].run_dir
    plane = averaging.load_plane(swa0)
    path_scores = averaging.score_snapshots(swa0, device=session.device, batch_size=prof.batch_size)
    for row in path_scores:
        print(f"{row['name']:<10} val mIoU {row['miou']:.4f}")
    fig, ax = plt.subplots(figsize=(6, 4))
    viz.plot_weight_path(plane, [r["miou"] for r in path_scores[:-1]], path_scores[-1]["miou"], ax=ax)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## Averaging predictions: three ensembles
#
# Each ensemble averages its members' softmax probabilities. All are scored on the labelled test
# images (`test_labels.json`), because the K-fold models trained on folds of `train_all.json`,
# which contains the validation images. Per seed where there is one:
#
# * **single model**: the baseline, one seed at a time (the reference, with its seed spread);
# * **seed ensemble**: the baseline's seeds together;
# * **K-fold ensemble**: the five models of [experiment discipline](12_experiment_discipline)'s
#   K-fold validation, each trained on 4/5 of `train_all.json`;
# * **snapshot ensemble**: the SWA run's last four snapshots, their *predictions* averaged, where
#   SWA averages their *weights* (the same members, the two kinds of averaging side by side);
# * and the weight averages, **EMA** and **SWA**, as single models.
#
# A *resize ensemble* would average models trained at different resolutions; one model predicting
# at several input sizes is multi-scale test-time augmentation, measured in the
# [inference tricks](17_inference_tricks) chapter. The cost is inference time per test image on
# this machine, all members included. A verdict needs a paired test across seeds, so the
# ensembles with one member per seed (snapshot ensemble, EMA, SWA) get one against the single
# model of the same seed; the seed and K-fold ensembles are one model each, an estimate without a
# test.

# %%
base_dirs = [trained[f"baseline-seed{s}"].run_dir for s in SEEDS]
swa_dirs = [trained[f"swa-seed{s}"].run_dir for s in SEEDS] if "swa" in tricks else []
ema_dirs = [trained[f"ema-seed{s}"].run_dir for s in SEEDS] if "ema" in tricks else []
kfold = splits.write_splits(session.data_dir / "train_all.json", session.run_dir("craft", "splits") / "kfold",
                            "kfold", folds=5, seed=session.seed)  # the same folds as chapter 12
fold_plan = [{**BASE, "seed": session.seed, "train_split": str(s.train), "val_split": str(s.val),
              "label": f"kfold-{k}"} for k, s in enumerate(kfold)]
fold_dirs = [r.run_dir for r in compare.train_plan(session, "craft", fold_plan, reuse=True).values()]


groups = {"single model": {f"seed{s}": [d] for s, d in zip(SEEDS, base_dirs)},
          "seed_ensemble": {"seeds": base_dirs},
          "kfold_ensemble": {"folds": fold_dirs}}
if swa_dirs:
    groups["snapshot_ensemble"] = {f"seed{s}": averaging.snapshot_paths(d)[-4:] for s, d in zip(SEEDS, swa_dirs)}
    groups["swa"] = {f"seed{s}": [d / "swa.pt"] for s, d in zip(SEEDS, swa_dirs)}
if ema_dirs:
    groups["ema"] = {f"seed{s}": [d] for s, d in zip(SEEDS, ema_dirs)}
test = {name: compare.score_inference(g, session.data_dir, split=craft["test_labels"], device=session.device,
                                      batch_size=prof.batch_size, cache=SCORES)
        for name, g in groups.items()}
members = {"single model": 1, "seed_ensemble": len(base_dirs), "kfold_ensemble": len(fold_dirs),
           "snapshot_ensemble": 4, "swa": 1, "ema": 1}


def by_seed(group):  # {seed: value} for a per-seed group, so the test pairs seed with seed
    return {int(k[len("seed"):]) if k.startswith("seed") and k[4:].isdigit() else k: v for k, v in group.items()}


test_rows = ablation.table({n: by_seed({k: s["overall"]["miou"] for k, s in g.items()}) for n, g in test.items()},
                           {n: [1000 / s["images_per_s"] for s in g.values()] for n, g in test.items()},
                           baseline_label="single model")
print(f"test mIoU ({len(json.loads(open(craft['test_labels']).read())['images'])} images); cost: ms per image")
print(ablation.render(test_rows, cost_label="ms/img", floor=craft["floor"]["test"]))

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.6))
for r in test_rows:
    ax.errorbar(r.seconds, r.mean, yerr=r.std if r.n > 1 else 0, fmt="o", capsize=3,
                color=viz.VERDICT_COLOURS.get(r.verdict, "k"))
    ax.annotate(f"{r.trick} ({members[r.trick]})", (r.seconds, r.mean), fontsize=7, xytext=(4, 3),
                textcoords="offset points")
ax.axhspan(test_rows[0].mean - test_rows[0].noise, test_rows[0].mean + test_rows[0].noise, color="k", alpha=0.08,
           label="single model ± noise floor (2 × seed sd)")
ax.set_xscale("log")
ax.set_xlabel("inference ms per test image (log scale)")
ax.set_ylabel("test mIoU")
ax.set_title(f"gain against cost (members in brackets)\nall Background scores {craft['floor']['test']:.3f} on test")
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()

# %%
for r in test_rows[1:]:
    test_said = r.verdict if r.n > 1 else "one model: no test"
    print(f"{r.trick:<18} {r.delta:+.4f} mIoU for {r.seconds / test_rows[0].seconds:4.1f}× the inference time: "
          f"{test_said}")

# %% [markdown]
# ## Summary
#
# The numbers of this run: DeepLab v2 on a ResNet-50 at a quarter of the paper's width
# (`width=0.25`), fine-tuned from the course's pretrained encoder, with AdamW and a cosine
# schedule, three seeds, trained in bf16 mixed precision (autocast) with channels-last tensors on
# 2 CPU cores of an AMD EPYC. The models learned: the baseline scores 0.4349 ± 0.0225 val mIoU
# against 0.0643 for predicting Background everywhere (0.3745 ± 0.0071 against 0.0571 on the test
# images). No ceiling is printed here, so these scores say how far the models got above the floor,
# not how close they came to what the data allows.
#
# * **On validation neither weight average passed the paired test.** SWA scored 0.4403 ± 0.0203
#   (+0.0055, 95% interval of the paired difference −0.0002 to +0.0111, Holm-adjusted p = 0.107)
#   and EMA 0.4342 ± 0.0226 (−0.0007, −0.0096 to +0.0081, p = 0.755): no evidence of a difference
#   for either. SWA's mean moved in the direction of the paper (Izmailov et al. 2018), but its
#   interval reaches below zero, and the seeds themselves spread widely (noise floor 0.0450).
# * **The path.** SWA averaged the snapshots of the last quarter of the run (steps 191 to 240).
#   For seed 0 they score 0.4071 to 0.4185 on validation, and their average 0.4173: inside that
#   range, above every snapshot but one (step 233, 0.4185) and above the last snapshot (0.4080).
#   In this single run the average sits near the best point of the path rather than at its end,
#   where the weights happened to stop, which is in the spirit of the paper's picture; but it does
#   not land beyond its snapshots, as a point nearer the centre of a wide basin would, and the
#   phase is short next to the paper's long phase of roaming weights. The SWA run also differs from the baseline in its
#   last quarter (a learning rate annealed to a constant instead of the cosine decay towards
#   zero), and this chapter cannot say how much of any gain comes from that schedule rather than
#   from the averaging.
# * **EMA did nothing measurable.** With a decay of 0.99 the average spans roughly the last
#   hundred steps, which on a cosine tail are already nearly the final weights. The training times
#   are single measurements (baseline 84.2 s, SWA 67.8 s, EMA 92.8 s): EMA updates a second copy
#   of the weights every step, while SWA, which also saves snapshots and recomputes batch norm,
#   finished faster than the baseline here, so these times reflect the load on the machine as much
#   as the cost of the tricks.
# * **On the test images the snapshot ensemble helps** (single model 0.3745 ± 0.0071, 12.0 ms per
#   image, noise floor 0.0141): the last four snapshots, their predictions averaged, scored
#   0.3810 ± 0.0067, +0.0064 (95% interval +0.0056 to +0.0073, Holm-adjusted p = 0.003), at 4.4×
#   the inference time. The gain is small, well inside the noise floor, but the paired differences
#   were consistent across the seeds, which is what the paired test detects. SWA, the
#   snapshots averaged in weight space, scored 0.3790 (+0.0045, +0.0002 to +0.0089, p = 0.094) at
#   1.0× the time: its interval barely excludes zero, but after the Holm adjustment for the three
#   tests there is no evidence of a difference. EMA: +0.0005 (p = 0.585), no evidence either way.
# * **The model ensembles had the highest test means, but each is one measurement, not a
#   verdict.** The K-fold ensemble reached 0.4008 (+0.0262, 69.4 ms per image, 5.8× the time) and
#   the seed ensemble 0.3870 (+0.0124, 42.0 ms, 3.5×). The K-fold ensemble's gain is larger than
#   the single model's noise floor, the seed ensemble's is inside it, and as single ensembles they
#   have no spread to test against. Independently trained members make different errors, the usual
#   reason such ensembles gain (and the direction this run points in), but confirming it needs
#   several ensembles per kind, each several times the inference cost of one model.
#
# ## Exercises
#
# 1. SWA averages every snapshot of the last quarter in weight space; the snapshot ensemble
#    averages the predictions of the last four. Which costs more at inference, and why can the
#    two disagree even when they are given the same snapshots?
# 2. Put the seed ensemble and the K-fold ensemble together (eight models). Does the test score
#    rise above the better of the two?
# 3. With the warm-up, the EMA's decay after $t$ updates is $\min(0.99, (1 + t) / (10 + t))$. After
#    how many updates does it reach 0.99, and how many steps does the baseline take in this run?
#    What does that say about a fixed decay of 0.99 on short runs?
