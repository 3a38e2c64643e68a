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
ax.set_title("gain against cost (members in brackets)")
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
# (`width=0.25`), fine-tuned from the course's pretrained encoder, on 192×192 crops, batch 8, 5
# epochs of 48 steps (240 optimiser steps) with AdamW and a cosine schedule, seeds 0, 1 and 2,
# trained in bf16 mixed precision (autocast) with channels-last tensors on 2 CPU cores of an Intel
# Xeon. The models learned: the baseline scores 0.4332 ± 0.0089 val mIoU against 0.0606 for
# predicting Background everywhere (0.3557 against 0.0561 on the test images).
#
# * **SWA helped on validation, EMA did not.** SWA scored 0.4381 ± 0.0086 (+0.0048, 95% interval
#   of the paired difference +0.0031 to +0.0065, Holm-adjusted p = 0.014): a small gain, well
#   inside the noise floor of 0.0179, but the paired differences were consistent across seeds
#   (a narrow interval, all above zero), which is what the paired test detects. EMA scored 0.4318 ± 0.0052 (−0.0015, p = 0.568): no evidence either way. The
#   direction agrees with the paper (Izmailov et al. 2018), the size is far below its gains.
# * **The path shows where the gain does not come from.** SWA averaged 8 snapshots over the last
#   quarter (steps 191 to 240, every 7 steps). For seed 0 they score 0.4232 to 0.4298 on
#   validation, and their average 0.4280: inside that range, above six snapshots but below the last
#   two (0.4298 and 0.4283). The average does not land beyond its snapshots, as the paper's
#   picture of a point nearer the centre of a wide basin would have it; the snapshots score close
#   together, and 50 steps are not the paper's long phase of roaming weights. The SWA run also
#   differs from the baseline in its last quarter (a learning rate annealed to a constant instead
#   of the cosine decay towards zero), and this chapter cannot say how much of the small gain
#   comes from that schedule rather than from the averaging.
# * **EMA did nothing measurable.** With a decay of 0.99 the average spans about the last hundred
#   steps, which on a cosine tail are already nearly the final weights. Both weight averages took
#   longer to train (SWA 73.4 s, EMA 71.7 s, baseline 63.6 s): saving snapshots and recomputing
#   batch norm for SWA, updating a second copy of the weights every step for EMA.
# * **On the test images no averaging passed a paired test** (single model 0.3557 ± 0.0076,
#   13.7 ms per image, noise floor 0.0152): SWA −0.0019 and EMA −0.0013 (both p = 1.000, at
#   1.0× the inference time), the snapshot ensemble of the last four snapshots +0.0016 (p = 1.000)
#   at 4.5× the time. SWA's validation gain did not carry over to the 86 test images: its mean
#   there is even slightly below the single model's, with no evidence either way.
# * **The model ensembles had the highest test means, but each is one measurement, not a
#   verdict.** The K-fold ensemble reached 0.3599 (+0.0042, 79.4 ms per image, 5.8× the time) and
#   the seed ensemble 0.3594 (+0.0037, 48.3 ms, 3.5×). Both gains are far inside the single
#   model's noise floor, and as single ensembles they have no spread to test against;
#   independently trained members make different errors, the usual reason such ensembles gain,
#   but this run shows at most a small gain for several times the inference cost.
#
# ## Exercises
#
# 1. The snapshot ensemble and SWA average the same four snapshots, one in prediction space and
#    one in weight space. Which costs more at inference, and why can the two disagree?
# 2. Put the seed ensemble and the K-fold ensemble together (eight models). Does the test score
#    rise above the better of the two?
# 3. With the warm-up, the EMA's decay after $t$ updates is $\min(0.99, (1 + t) / (10 + t))$. After
#    how many updates does it reach 0.99, and how many steps does the baseline take in this run?
#    What does that say about a fixed decay of 0.99 on short runs?
