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
# two forms: averaging the *predictions* of several models (seed, K-fold, epoch and resize
# ensembles) and averaging the *weights* of one run (an exponential moving average, EMA, and
# stochastic weight averaging, SWA). This chapter trains the weight averages, builds every kind of
# ensemble from runs that already exist, and sets each one's gain against its cost.
#
# **What it builds on.** The baseline's seeds and the K-fold models of
# [experiment discipline](12_experiment_discipline), which are read back, and the ensembling code
# of `segedu.inference.ensemble` (probabilities averaged, every member at its own input size). The
# [ablation table](18_ablation) reuses these runs and scores.

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import dataclasses
import json

import matplotlib.pyplot as plt

from segedu import viz
from segedu.data import splits
from segedu.engine import ablation, compare
from segedu.inference import ensemble
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
# * **EMA** (`ema_decay=0.99`): after every optimiser step the averaged weights move 1% of the way
#   to the current ones; the average, not the raw weights, is evaluated and saved.
# * **SWA** (Izmailov et al. 2018, `swa_start`): from the given epoch on, the weights at the end
#   of each epoch are averaged at a constant learning rate (`SWALR`), and batch norm's statistics
#   are recomputed for the averaged weights at the end. Our baseline trains for one epoch, so the
#   SWA run trains one epoch more, in which SWA averages; its extra epoch is charged as cost. It
#   also keeps each epoch's weights (`save_epochs`), the members of the epoch ensemble below.

# %% tags=["nbval-check-output"]
for trick in ablation.FAMILIES["averaging"]:
    print(f"{trick:<8}{ablation.TRICKS[trick]}")

# %%
tricks = ablation.tricks_for(prof, "averaging")
trained = compare.train_tricks(session, tricks)
print(compare.describe_runs(trained))
rows = compare.trick_rows(trained, tricks, SEEDS)
print(ablation.render(rows))

# %% [markdown]
# ## Averaging predictions: five ensembles
#
# Each ensemble averages its members' softmax probabilities. All are scored on the labelled test
# images (`test_labels.json`), because the K-fold models trained on folds of `train_all.json`,
# which contains the validation images. Per seed where there is one:
#
# * **single model**: the baseline, one seed at a time (the reference, with its seed spread);
# * **seed ensemble**: the baseline's seeds together;
# * **K-fold ensemble**: the five models of [experiment discipline](12_experiment_discipline)'s
#   K-fold validation, each trained on 4/5 of `train_all.json`;
# * **epoch ensemble**: the SWA run's weights after its last two epochs;
# * **resize ensemble**: one model predicting at 0.75, 1 and 1.25 times its training size;
# * and the weight averages, **EMA** and **SWA**, as single models.
#
# The cost is inference time per test image on this machine, all members included.

# %%
base_dirs = [trained[f"baseline-seed{s}"].run_dir for s in SEEDS]
swa_dirs = [trained[f"swa-seed{s}"].run_dir for s in SEEDS] if "swa" in tricks else []
ema_dirs = [trained[f"ema-seed{s}"].run_dir for s in SEEDS] if "ema" in tricks else []
kfold = splits.write_splits(session.data_dir / "train_all.json", session.run_dir("craft", "splits") / "kfold",
                            "kfold", folds=5, seed=session.seed)  # the same folds as chapter 12
fold_plan = [{**BASE, "seed": session.seed, "train_split": str(s.train), "val_split": str(s.val),
              "label": f"kfold-{k}"} for k, s in enumerate(kfold)]
fold_dirs = [r.run_dir for r in compare.train_plan(session, "craft", fold_plan, reuse=True).values()]


def resized(run_dir):
    member = ensemble.load_member(run_dir, session.device)
    return [dataclasses.replace(member, size=round(size * scale)) for scale in (0.75, 1.0, 1.25)]


groups = {"single model": {f"seed{s}": [d] for s, d in zip(SEEDS, base_dirs)},
          "seed_ensemble": {"seeds": base_dirs},
          "kfold_ensemble": {"folds": fold_dirs},
          "resize_ensemble": {f"seed{s}": resized(d) for s, d in zip(SEEDS, base_dirs)}}
epochs = {s: sorted((d / "epochs").glob("epoch*.pt"), key=lambda p: int(p.stem[len("epoch"):]))[-2:]
          for s, d in zip(SEEDS, swa_dirs)}
if swa_dirs and all(len(e) == 2 for e in epochs.values()):
    groups["epoch_ensemble"] = {f"seed{s}": e for s, e in epochs.items()}
if swa_dirs and all((d / "swa.pt").is_file() for d in swa_dirs):
    groups["swa"] = {f"seed{s}": [d / "swa.pt"] for s, d in zip(SEEDS, swa_dirs)}
missing = [g for g in ("epoch_ensemble", "swa") if g not in groups]
if missing:  # the smoke profile's step cap stops the SWA runs inside their first epoch
    print(f"not available in the {prof.name} profile: {', '.join(missing)} (the SWA runs finished "
          f"{min((len(e) for e in epochs.values()), default=0)} epoch(s) within the step cap)")
if ema_dirs:
    groups["ema"] = {f"seed{s}": [d] for s, d in zip(SEEDS, ema_dirs)}
test = {name: compare.score_inference(g, session.data_dir, split=craft["test_labels"], device=session.device,
                                      batch_size=prof.batch_size, cache=SCORES)
        for name, g in groups.items()}
members = {"single model": 1, "seed_ensemble": len(base_dirs), "kfold_ensemble": len(fold_dirs),
           "resize_ensemble": 3, "epoch_ensemble": 2, "swa": 1, "ema": 1}
test_rows = ablation.table({n: [s["overall"]["miou"] for s in g.values()] for n, g in test.items()},
                           {n: [1000 / s["images_per_s"] for s in g.values()] for n, g in test.items()},
                           baseline_label="single model")
print(f"test mIoU ({len(json.loads(open(craft['test_labels']).read())['images'])} images); cost: ms per image")
print(ablation.render(test_rows, cost_label="ms/img"))

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.6))
for r in test_rows:
    ax.errorbar(r.seconds, r.mean, yerr=r.std if r.n > 1 else 0, fmt="o", capsize=3,
                color=viz.VERDICT_COLOURS.get(r.verdict, "k"))
    ax.annotate(f"{r.trick} ({members[r.trick]})", (r.seconds, r.mean), fontsize=7, xytext=(4, 3),
                textcoords="offset points")
ax.axhspan(test_rows[0].mean - 2 * test_rows[0].std, test_rows[0].mean + 2 * test_rows[0].std, color="k", alpha=0.08,
           label="single model ± 2 × seed std")
ax.set_xscale("log")
ax.set_xlabel("inference ms per test image (log scale)")
ax.set_ylabel("test mIoU")
ax.set_title("gain against cost (members in brackets)")
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()

# %%
for r in test_rows[1:]:
    print(f"{r.trick:<16} {r.delta:+.4f} mIoU for {r.seconds / test_rows[0].seconds:4.1f}× the inference time: "
          f"{r.verdict}")

# %% [markdown]
# ## Summary
#
# The cpu profile's numbers (DeepLab v3+ at an eighth of its width, one epoch of 48 steps on 64×64 crops,
# seeds 0, 1 and 2, 2 CPU cores of an Intel Xeon):
#
# * **SWA helped on validation**: 0.0927 ± 0.0026 against 0.0869 ± 0.0015, +0.0059, beyond the
#   noise (0.0051), for 3.0 s more training per run. But the SWA run also trained a second epoch,
#   so this measures SWA *and* twice the training. On the test images the SWA weights alone gained
#   +0.0039, within their noise (0.0055).
# * **EMA hurt badly**: 0.0668 ± 0.0043 on validation (−0.0201) and 0.0626 on test (−0.0189). A
#   decay of 0.99 averages over about 100 steps, and the run has 48: the average is still close
#   to the barely trained weights of its first steps.
# * **Ensembles on the test images** (single model 0.0815 ± 0.0016, 3.5 ms per image):
#
#   | ensemble | members | test mIoU | Δ | time |
#   |---|---|---|---|---|
#   | K-fold | 5 | 0.0866 | +0.0051, helps | 6.6× |
#   | seeds | 3 | 0.0856 | +0.0041, helps | 4.3× |
#   | epochs (SWA runs) | 2 | 0.0853 ± 0.0049 | +0.0038, within noise | 3.0× |
#   | resize (0.75, 1, 1.25) | 3 | 0.0798 ± 0.0021 | −0.0017, within noise | 4.4× |
#
#   Averaging independently trained models was the one kind of averaging that helped beyond the
#   noise. Averaging one model at three input sizes did not help here.
# * **Cost.** Every member is a forward pass, and at this model size the ensembles cost more than
#   their member count in time (4.3× for three seeds, 6.6× for five folds).
#
# ## Exercises
#
# 1. An ensemble of $k$ members costs $k$ forward passes. The resize ensemble's members are not
#    equally expensive: at 0.75, 1 and 1.25 times the side, what is its cost in single-model passes
#    if a pass costs in proportion to the pixels?
# 2. Put the seed ensemble and the K-fold ensemble together (eight models). Does the test score
#    rise above the better of the two?
# 3. EMA with decay 0.99 averages over roughly the last $1/(1-0.99) = 100$ steps. How many steps
#    does one epoch of the baseline take in this profile, and what does that say about EMA here?
