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
# # Competition craft: inference tricks
#
# **What you will learn.** What can still be gained after training: test-time augmentation (flips,
# several scales), sliding-window prediction instead of squeezing a large image to the training
# size, the DenseCRF, a classification head that removes classes it judges absent, and
# pseudo-labelling the unlabelled test images to train again. Each is measured on the baseline's
# checkpoints, against the same seed noise, with its cost in inference time.
#
# **What it builds on.** The baseline and noise rule of
# [experiment discipline](12_experiment_discipline); the DenseCRF of
# [receptive field](09_receptive_field); `segedu.inference` (TTA, sliding windows, ensembles, the
# CRF), which `segedu predict` runs from a shell with the same options. The
# [ablation table](18_ablation) reuses these scores and runs.

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import matplotlib.pyplot as plt
import numpy as np

from segedu import significance, viz
from segedu.data import dataset
from segedu.data.classes import CLASSES
from segedu.experiments import ablation, compare
from segedu.inference import crf, ensemble, presence, sliding
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
prof = session.profile
print(session.describe())
craft = compare.craft_setup(session)
BASE, SEEDS = craft["base"], craft["seeds"]
SCORES = craft["scores"]  # scores kept for the ablation chapter
size = BASE["image_size"]
baseline = compare.train_tricks(session, [])  # trained by experiment discipline: read back
base_runs = [baseline[f"baseline-seed{s}"] for s in SEEDS]
base_dirs = [r.run_dir for r in base_runs]
print(f"baseline checkpoints: {len(base_dirs)} seeds, trained on {size}x{size} crops")

# %% [markdown]
# ## Test-time augmentation, sliding windows and the CRF
#
# Each option is one `InferenceOptions` (one flag of `segedu predict`; the set is
# `ablation.inference_options`), run on every seed's checkpoint:
#
# * **flip TTA** (`--tta hflip`): the image and its mirror, probabilities averaged;
# * **multi-scale TTA** (`--tta hflip --tta-scales 0.75,1,1.25`): both flips at three sizes;
# * **full resolution** (`--tta-scales` at the image's size over the crop's): the model was trained
#   on crops covering a quarter to all of an image's *area* (`RandomResizedCrop` with
#   `scale=(0.25, 1)` samples an area fraction), that is about half to all of its side, each
#   resized to the crop size. A plain prediction squeezes the whole image into one crop-sized
#   input, the far end of that range, so objects look smaller than in most training crops. This
#   option runs the whole image once at its own resolution instead;
# * **sliding window** (`--sliding-window`): crop-sized windows slide over the image at its own
#   resolution (overlap 0.5, Gaussian weights). It sees objects at the same scale as the
#   full-resolution pass, so the difference between the two is what the windows themselves buy (each
#   window has less context than the whole image), and full resolution against the plain
#   prediction is what the resolution buys;
# * **DenseCRF** (`--crf`): the fully connected CRF on the probabilities (skipped, and said so,
#   where `pydensecrf2` could not be installed).
#
# Two of these in numbers, for the book's 480×256 images and 192-pixel windows: where the windows
# start along each side at overlap 0.5, and what side fractions a crop's area range means.

# %% tags=["nbval-check-output"]
for side, length in (("width", 480), ("height", 256)):
    print(f"{side} {length}: 192-pixel windows start at {sliding.window_starts(length, 192, 0.5)}")
low, high = 0.25, 1.0
print(f"crop area {low:.0%} to {high:.0%} of the image -> side {low ** 0.5:.0%} to {high ** 0.5:.0%} of the image's side")

# %% [markdown]
# The cost column is inference time per validation image on this machine, in milliseconds.

# %%
OPTIONS = ablation.inference_options(size, prof.synth_size)
if not crf.is_available():
    print("DenseCRF skipped: " + crf.INSTALL_HINT)
for name, options in OPTIONS.items():
    print(f"{name:<16}{options.describe()}")

# %%
seeds = {f"seed{s}": [d] for s, d in zip(SEEDS, base_dirs)}
infer = {name: compare.score_inference(seeds, session.data_dir, options=options, device=session.device,
                                       batch_size=prof.batch_size, cache=SCORES)
         for name, options in OPTIONS.items()}
rows = ablation.table({n: [s["overall"]["miou"] for s in g.values()] for n, g in infer.items()},
                      {n: [1000 / s["images_per_s"] for s in g.values()] for n, g in infer.items()})
print(ablation.render(rows, cost_label="ms/img", floor=craft["floor"]["val"]))

# %% [markdown]
# Where does a trick act? Boundary mIoU scores only the pixels within 3 pixels of a boundary
# between two classes, where a blurry prediction goes wrong first; the CRF and the sliding window
# should move it most if they help at all.

# %%
print(f"{'option':<16}{'mIoU':>8}{'boundary mIoU':>15}")
for name, scores in infer.items():
    print(f"{name:<16}{np.mean([s['overall']['miou'] for s in scores.values()]):>8.4f}"
          f"{np.mean([s['boundary']['miou'] for s in scores.values()]):>15.4f}")

# %% [markdown]
# The sliding window and the full-resolution pass see objects at the same scale, so their
# difference is what the windows themselves buy; tested directly, on the same seeds:

# %%
window_vs_full = significance.paired({s: infer["sliding_window"][f"seed{s}"]["overall"]["miou"] for s in SEEDS},
                                     {s: infer["full_resolution"][f"seed{s}"]["overall"]["miou"] for s in SEEDS})
print(f"sliding window - full resolution (val): {significance.describe(window_vs_full)}")

# %% [markdown]
# Every option was judged on the validation images. The labelled test images, which no choice in
# this chapter touched, give the numbers to report:

# %%
test_infer = {name: compare.score_inference(seeds, session.data_dir, split=craft["test_labels"], options=options,
                                            device=session.device, batch_size=prof.batch_size, cache=SCORES)
              for name, options in OPTIONS.items()}
test_rows = ablation.table({n: [s["overall"]["miou"] for s in g.values()] for n, g in test_infer.items()},
                           {n: [1000 / s["images_per_s"] for s in g.values()] for n, g in test_infer.items()})
print("test mIoU")
print(ablation.render(test_rows, cost_label="ms/img", floor=craft["floor"]["test"]))

# %% [markdown]
# ## The classification head
#
# The `class_head` trick trains the baseline with an image-level class-presence head on the encoder
# (weight 0.4 in the loss) and, at inference, removes every class whose presence probability is
# below 0.5. Two effects are mixed in its training score: the head's extra supervision of the
# encoder, and the suppression. Scoring its checkpoints with suppression switched off separates
# them.

# %%
head = [t for t in ablation.tricks_for(prof, "inference") if t == "class_head"]
trained = compare.train_tricks(session, head)
if head:
    head_dirs = [trained[f"class_head-seed{s}"].run_dir for s in SEEDS]

    def with_threshold(run_dir, threshold):
        """The run's model, suppressing classes below ``threshold`` (None: no suppression)."""
        member = ensemble.load_member(run_dir, session.device)
        member.model.suppress_threshold = threshold
        return [member]

    head_scores = {
        "head + suppression": compare.score_inference({f"seed{s}": [d] for s, d in zip(SEEDS, head_dirs)},
                                                      session.data_dir, device=session.device,
                                                      batch_size=prof.batch_size, cache=SCORES),
        "head, no suppression": compare.score_inference(
            {f"seed{s}": with_threshold(d, None) for s, d in zip(SEEDS, head_dirs)}, session.data_dir,
            device=session.device, batch_size=prof.batch_size, cache=SCORES)}
    head_rows = ablation.table({"baseline": [s["overall"]["miou"] for s in infer["baseline"].values()],
                                **{n: [s["overall"]["miou"] for s in g.values()] for n, g in head_scores.items()}},
                               {"baseline": [1000 / s["images_per_s"] for s in infer["baseline"].values()],
                                **{n: [1000 / s["images_per_s"] for s in g.values()] for n, g in head_scores.items()}})
    print(ablation.render(head_rows, cost_label="ms/img", floor=craft["floor"]["val"]))
    absent = {n: np.mean([int((s["overall"]["confusion"].sum(0) == 0).sum()) for s in g.values()])
              for n, g in head_scores.items()}
    print("classes never predicted on the validation images (mean over seeds): "
          + ", ".join(f"{n} {v:.1f}" for n, v in absent.items()))

# %% [markdown]
# ### What the head learned
#
# Suppression at 0.5 removes a class from an image unless the head is more sure than not that the
# class is there. That works for a head that ranks images well: high probabilities where the class
# is, low ones where it is not. A head that has only learned how often a class occurs gives it about
# the same probability in every image, near its prevalence, and a threshold above the prevalence
# then removes the class everywhere. The table sets the head's mean probability on the validation
# images that contain each class against those that do not (all seeds together), with the share of
# the images containing the class where suppression at the trained threshold would keep it.

# %%
if head:
    THRESHOLD = ablation.TRICKS["class_head"]["suppress_threshold"]
    val_images = dataset.CocoSegmentation(session.data_dir, "val")
    scored = [presence.presence_scores(with_threshold(d, None)[0], val_images, prof.batch_size) for d in head_dirs]
    calibration = presence.class_calibration(np.concatenate([p for p, _ in scored]),
                                             np.concatenate([t for _, t in scored]), THRESHOLD)
    print(f"{'class':<14}{'in % of images':>15}{'mean p, present':>17}{'mean p, absent':>16}{f'kept at {THRESHOLD}':>13}")
    for name, row in zip(CLASSES, calibration):
        kept = "-" if np.isnan(row.kept) else f"{100 * row.kept:.1f}%"
        print(f"{name:<14}{100 * row.prevalence:>14.1f}%{row.mean_present:>17.3f}{row.mean_absent:>16.3f}{kept:>13}")

# %% [markdown]
# A lower threshold suppresses less. The threshold is a choice, so it is chosen on the validation
# images, and the chosen one is then scored once on the labelled test images, against the baseline
# on the same images.

# %%
if head:
    THRESHOLDS = (0.5, 0.3, 0.2, 0.1, 0.05)
    sweep = {t: compare.score_inference({f"seed{s}": with_threshold(d, t) for s, d in zip(SEEDS, head_dirs)},
                                        session.data_dir, device=session.device, batch_size=prof.batch_size,
                                        cache=SCORES) for t in THRESHOLDS}
    for t, scores in sweep.items():
        never = np.mean([int((s["overall"]["confusion"].sum(0) == 0).sum()) for s in scores.values()])
        print(f"threshold {t:<5} val mIoU {np.mean([s['overall']['miou'] for s in scores.values()]):.4f}, "
              f"classes never predicted {never:.1f}")
    chosen = max(THRESHOLDS, key=lambda t: np.mean([s["overall"]["miou"] for s in sweep[t].values()]))
    on_test = {name: compare.score_inference(members, session.data_dir, split=craft["test_labels"],
                                             device=session.device, batch_size=prof.batch_size, cache=SCORES)
               for name, members in (("baseline", seeds),
                                     ("head", {f"seed{s}": with_threshold(d, chosen) for s, d in zip(SEEDS, head_dirs)}))}
    test = significance.paired({s: on_test["head"][f"seed{s}"]["overall"]["miou"] for s in SEEDS},
                               {s: on_test["baseline"][f"seed{s}"]["overall"]["miou"] for s in SEEDS})
    print(f"\nchosen on val: threshold {chosen}; on test, head {np.mean([v['overall']['miou'] for v in on_test['head'].values()]):.4f} "
          f"against baseline {np.mean([v['overall']['miou'] for v in on_test['baseline'].values()]):.4f} "
          f"(floor {craft['floor']['test']:.4f}): {significance.describe(test)}")

# %% [markdown]
# ## Pseudo-labelling
#
# The baseline's seeds predict the unlabelled test images; their averaged probabilities label the
# most confident pixels, and the rest are marked ignore. The baseline configuration then trains
# again on train + pseudo-labelled images (`segedu pseudo-label`, then `segedu train
# --train-split`). A fixed threshold (the default `threshold=0.9`), or one threshold that keeps the
# most confident 30% of all pixels, keeps mostly what the models are surest of: Background and the
# common classes. The rare classes, the ones extra labels could help most, would be left out.
# Class-balanced self-training (Zou et al., ECCV 2018) sets one threshold per class instead, each
# keeping the 30% most confident of the pixels predicted as that class (`--keep-fraction 0.3
# --class-balanced`). The pseudo-labelled runs stop after as many optimiser steps as the
# baseline's, so the trick changes what the model sees and not how long it trains.

# %%
summary, pseudo_runs = compare.pseudo_label_runs(session, base_runs, keep_fraction=0.3, class_balanced=True)
print(summary)
pseudo_rows = ablation.table(
    {"baseline": [r.trainer.best_miou for r in base_runs],
     "pseudo_label": [r.trainer.best_miou for r in pseudo_runs.values()]},
    {"baseline": [r.train_seconds for r in base_runs],
     "pseudo_label": [r.train_seconds for r in pseudo_runs.values()]})
print(ablation.render(pseudo_rows, floor=craft["floor"]["val"]))
pseudo_test = {name: compare.score_inference({f"seed{s}": [d] for s, d in zip(SEEDS, dirs)}, session.data_dir,
                                            split=craft["test_labels"], device=session.device,
                                            batch_size=prof.batch_size, cache=SCORES)
               for name, dirs in (("baseline", base_dirs), ("pseudo_label", [r.run_dir for r in pseudo_runs.values()]))}
print("test mIoU (the pseudo-labelled models have seen the test images, not their labels)")
print(ablation.render(ablation.table({n: [s["overall"]["miou"] for s in g.values()] for n, g in pseudo_test.items()},
                                     {n: [0.0] * len(g) for n, g in pseudo_test.items()}),
                      time_columns=False, floor=craft["floor"]["test"]))

# %% [markdown]
# ## All inference tricks together

# %%
all_rows = rows + (head_rows[1:] if head else []) + pseudo_rows[1:]
viz.plot_ablation(all_rows, f"inference tricks on the baseline's {len(SEEDS)} seeds ({prof.name} profile)")
plt.show()
for verdict in ("helps", "hurts"):
    tricks = ", ".join(r.trick for r in all_rows if r.verdict == verdict) or "none"
    print(f"{verdict} (paired test, Holm within each table): {tricks}")
kept = {name: pixels for name, pixels in summary.class_pixels.items() if name != "Background" and pixels > 0}
print(f"object classes among the pseudo-labels: {len(kept)} of 10")

# %% [markdown]
# ## Summary
#
# The numbers of this run: the baseline (DeepLab v2 on a ResNet-50 at width 0.25, fine-tuned from
# the course's encoder, 240 steps on 192×192 crops, trained in bf16 autocast with channels-last on
# this CPU) with seeds 0, 1 and 2. Background everywhere scores 0.0606 on the validation images and
# 0.0561 on the test images.
#
# * **On the validation images two tricks helped under the paired test (Holm over 5):** DenseCRF,
#   0.4703 against 0.4332 (+0.0370, p 0.022) for 147.2 ms per image against 13.9, and flip TTA,
#   0.4456 (+0.0124, p 0.013) for 32.8 ms. The sliding window (+0.0317, p 0.083) and multi-scale
#   TTA (+0.0136, p 0.115) raised the mean without evidence; the full-resolution pass lowered it
#   (−0.0112, p 0.463), also without evidence.
# * **On the test images, which no choice touched, the sliding window and the CRF helped:** the
#   window 0.4104 against 0.3557 (+0.0547, p 0.011), the CRF 0.3763 (+0.0206, p 0.018). Flip TTA
#   kept its sign but lost its evidence (+0.0074, p 0.271), and the sliding window, without
#   evidence on the validation images, had it on test. One trick picked on 96 validation images did
#   not hold on 86 others: the validation table chooses, the test table is the one to report, and
#   the two can disagree when the gains are a few hundredths.
# * **The windows themselves help, not only the resolution.** Against one pass at the same full
#   resolution (0.4220) the sliding window scored +0.0430 on the validation images (p 0.031), and on
#   test the full-resolution pass alone gained +0.0245 (p 0.271, no evidence) against the window's
#   +0.0547. Each 192-pixel window shows objects at the scale of the training crops, with the
#   context of a crop; the whole image at full resolution shows the same scale with a context the
#   model never trained on, and on the validation images it did not even beat the squeezed image.
# * **Where they act.** The boundary mIoU rose most with the CRF (0.2436 to 0.3210) and the
#   sliding window (0.2763), while the flips (0.2500) and the full-resolution pass (0.2418) barely
#   moved it: the CRF and the windows sharpen the edges of regions, as the CRF's pairwise terms
#   are meant to.
# * **The classification head hurt when it suppresses at 0.5**: 0.2417 against 0.4332 (−0.1915,
#   p 0.002), with 6.0 classes never predicted on the validation images against 1.3 without
#   suppression. Without suppression the head's extra supervision helped a little on the
#   validation images (0.4407, +0.0074, p 0.027), in line with image-level auxiliary losses such as
#   EncNet's. The table of what the head learned says why suppression fails: its mean probability
#   on images that contain a class is close to its mean on images that do not (Metal 0.104 against
#   0.088, Glass 0.110 against 0.119), and both sit near how often the class occurs. After 240 steps
#   the head has mostly learned each class's prevalence, not the image, so every class in fewer than
#   half of the images is suppressed almost everywhere: Paper pack, Metal, Glass, Styrofoam,
#   Battery and Clothing are kept in 0.0% of the images that contain them, General trash in 9.5%.
#   Chosen on the validation images, the lowest threshold tried, 0.05, suppresses almost nothing
#   (0.4377, 1.3 classes never predicted, as without suppression); on test it scored 0.3613 against
#   0.3557 (+0.0056, p 0.108): no evidence, so the head's small gain on the validation images did
#   not carry to the test images. At this budget the head is not worth its suppression.
# * **Pseudo-labels, class-balanced**, hold 9 of the 10 object classes: each class kept the 30% most
#   confident of its pixels, with thresholds from 0.9982 for Background and 0.9874 for Plastic bag
#   down to 0.5170 for Glass and 0.2250 for Clothing, which keeps only 50 pixels. Only Battery, which
#   the baseline models predict on no test pixel, has none. Trained on train + these labels, the
#   model scored 0.4219 on the validation images (−0.0113, p 0.214, no evidence) and 0.3567 on test
#   against 0.3557 (+0.0009, p 0.874, no evidence). Labels for more classes did not buy a
#   measurable gain in 240 steps, in contrast to the gains self-training reports at full scale.
#
# ## Exercises
#
# 1. Multi-scale TTA with both flips at three scales runs six views. If a view's cost grows with
#    its pixels, how many single passes at scale 1 is that?
# 2. Pseudo-label with a fixed threshold instead of the 30% keep fraction
#    (`pseudo.write_pseudo_labels(..., threshold=0.9)`). How many pixels survive, and of which
#    classes?
# 3. One threshold for every class treats Battery, in about one image of fifty, like Paper, in most
#    images. Compute each class's prevalence on the training images (`train.json`) and propose a
#    per-class threshold from it. Which classes of the table above would it still suppress in most
#    of the images that contain them, and why can no threshold fix a head whose mean probabilities
#    on present and absent images are equal?
