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
# # The COCO format
#
# **What you will learn.** How the competition's annotations are stored: the five sections of
# a COCO file, polygons and run-length encoding (RLE), `iscrowd`, `area` and `bbox`, the
# pycocotools API, and how one image's objects become one *semantic mask*, where the order in
# which overlapping objects are painted decides which class a pixel gets.
#
# **What it builds on.** [How to use this book](00_how_to_use): the profiles and the shape of
# a segmentation batch.
#
# The data here is the book's generated default dataset (made by `segedu synth` the first
# time a chapter needs it). Point `data_dir` at the real competition folder and every cell
# below runs on it unchanged.

# %% tags=["parameters"]
profile = "auto"
data_dir = None
seed = 0
device = "auto"

# %%
import json
import tempfile
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from segedu import viz
from segedu.data import IGNORE_INDEX, coco, masks
from segedu.notebook import setup

session = setup(profile=profile, data_dir=data_dir, seed=seed, device=device, need_data=True)
print(session.describe())

# %% [markdown]
# ## A folder of images and four JSON files
#
# The competition's data folder holds batch folders of JPEG photos and COCO files that list
# them: `train_all.json` (every annotated image), its split into `train.json` and `val.json`,
# and `test.json`, which lists the test images without annotations.

# %%
root = session.data_dir
for path in sorted(root.iterdir()):
    if path.is_dir() and not path.name.startswith("."):
        print(f"{path.name + '/':<16} {len(list(path.glob('*.jpg'))):>5} JPEG files")
    elif path.suffix == ".json":
        print(f"{path.name:<16} {path.stat().st_size / 1e6:>8.2f} MB")

# %% [markdown]
# A COCO file is one JSON object with five sections. `images` and `categories` describe what
# there is; `annotations` holds one record per *object*, pointing at its image and category.

# %%
raw = json.loads((root / "train_all.json").read_text())
for section in ("info", "licenses", "images", "categories", "annotations"):
    value = raw.get(section)
    size = f"{len(value)} records" if isinstance(value, list) else "one object"
    print(f"{section:<12} {type(value).__name__:<5} {size}")

# %% [markdown]
# The categories carry the competition's names and ids 1-10. The background has no category:
# it is whatever no annotation covers, class 0 of the mask.

# %% tags=["nbval-check-output"]
for cat in raw["categories"]:
    print(cat)

# %% [markdown]
# An image record gives the file's path relative to the data folder and its size; an
# annotation gives the object's outline as a polygon: a flat list `x1, y1, x2, y2, ...` in
# pixel coordinates. An object in several pieces (a torn sheet, a bag and its handle) has
# several polygons in one annotation.

# %%
image = raw["images"][0]
ann = next(a for a in raw["annotations"] if a["image_id"] == image["id"])
print("image:     ", image)
shown = {k: v for k, v in ann.items() if k != "segmentation"}
print("annotation:", shown)
polys = ann["segmentation"]
print(f"segmentation: {len(polys)} polygon(s); first has {len(polys[0]) // 2} points, "
      f"starting {[round(v, 1) for v in polys[0][:6]]} ...")
parts = Counter(len(a["segmentation"]) for a in raw["annotations"] if isinstance(a["segmentation"], list))
print("polygons per annotation:", dict(sorted(parts.items())))

# %% [markdown]
# ## Polygons, RLE, `area` and `bbox`
#
# A polygon is compact but has to be *rasterised* to become pixels. COCO's other encoding,
# **run-length encoding**, stores the pixels themselves: the image is read column by column
# and RLE lists the lengths of alternating runs of 0s and 1s. pycocotools converts polygons to
# RLE (`frPyObjects`), joins the parts of an object (`merge`), and derives the object's pixel
# `area` and bounding box (`toBbox`). A consistent file stores exactly those numbers.

# %%
h, w = image["height"], image["width"]
rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
decoded = mask_utils.decode(rle)
counts = mask_utils.frPyObjects(polys, h, w)  # one compressed RLE per polygon part
print(f"RLE of this object: size {rle['size']}, {len(rle['counts'])} bytes compressed "
      f"vs {h * w} pixels")
print(f"area:  file {ann['area']:.0f}  pycocotools {mask_utils.area(rle):.0f}  decoded pixels {decoded.sum()}")
print(f"bbox:  file {[round(v, 1) for v in ann['bbox']]}  pycocotools {mask_utils.toBbox(rle).round(1).tolist()}")

# %% [markdown]
# Over the whole file:

# %% tags=["nbval-check-output"]
def consistency(records, images_by_id):
    """Largest gap between the stored and the recomputed area and bbox over all annotations."""
    area_gap = bbox_gap = 0.0
    for a in records:
        im = images_by_id[a["image_id"]]
        r = masks.annotation_rle(a["segmentation"], im["height"], im["width"])
        area_gap = max(area_gap, abs(a["area"] - float(mask_utils.area(r))))
        bbox_gap = max(bbox_gap, float(np.abs(np.array(a["bbox"]) - mask_utils.toBbox(r)).max()))
    return area_gap, bbox_gap


images_by_id = {im["id"]: im for im in raw["images"]}
area_gap, bbox_gap = consistency(raw["annotations"], images_by_id)
print(f"largest |area - pycocotools area| = {area_gap:.3f} px; largest bbox gap = {bbox_gap:.3f} px")

# %% [markdown]
# `iscrowd=1` marks an annotation that covers a *group* of objects that were not outlined one
# by one; such regions are usually stored as RLE. segedu paints them with the ignore index
# 255, so no loss or metric counts them; the same goes for categories named like "void" or
# "ignore".

# %%
crowd = Counter(a.get("iscrowd", 0) for a in raw["annotations"])
print("iscrowd values in this file:", dict(crowd))

# %% [markdown]
# ## The pycocotools API
#
# The course's baseline loads a file with `COCO(...)` and asks it for ids and records:
# `getImgIds`, `getCatIds`, `getAnnIds(imgIds=...)`, `loadImgs`, `loadAnns`, `annToMask`.

# %%
api = COCO(str(root / "train_all.json"))
img_id = api.getImgIds()[0]
ann_ids = api.getAnnIds(imgIds=img_id)
anns = api.loadAnns(ann_ids)
names = {c["id"]: c["name"] for c in api.loadCats(api.getCatIds())}
print(api.loadImgs(img_id)[0]["file_name"], "->", [names[a["category_id"]] for a in anns])
print("annToMask of the first object:", api.annToMask(anns[0]).shape, "pixels:", int(api.annToMask(anns[0]).sum()))

# %% [markdown]
# ## From objects to one semantic mask: the painting order
#
# A semantic mask holds one class per pixel, but objects overlap: a battery lies on a plastic
# bag, a cap on a bottle. Painting the objects one after another, a later object overwrites an
# earlier one where they overlap, so *the order decides the label*.
#
# segedu paints the **largest object first** (ties by annotation id), as the course baseline
# does by sorting on `area`: an object lying on a bigger one stays visible. To see what the
# order does, we paint every image a second way, smallest first, with pycocotools'
# `annToMask`, and count the pixels whose class changes.

# %%
data = coco.load(root / "train_all.json")


def paint_smallest_first(image):
    out = np.zeros((image["height"], image["width"]), dtype=np.uint8)
    for a in sorted(data.annotations(image), key=lambda a: (a["area"], a["id"])):
        out[api.annToMask(a) == 1] = IGNORE_INDEX if a.get("iscrowd") else data.category_to_class[a["category_id"]]
    return out


changed = np.zeros(len(data.class_names), dtype=np.int64)  # pixels of class c (largest first) lost
total = np.zeros(len(data.class_names), dtype=np.int64)
worst, worst_diff, images_changed = None, -1, 0
for image in data.images:
    documented = masks.semantic_mask(data, image)
    other = paint_smallest_first(image)
    diff = documented != other
    valid = documented != IGNORE_INDEX
    total += np.bincount(documented[valid], minlength=len(total))
    changed += np.bincount(documented[diff & valid], minlength=len(total))
    images_changed += bool(diff.any())
    if diff.sum() > worst_diff:
        worst, worst_diff = image, int(diff.sum())

print(f"{'class':<14} {'pixels':>9} {'relabelled by smallest-first':>30}")
for c, name in enumerate(data.class_names):
    if total[c]:
        print(f"{name:<14} {total[c]:>9} {changed[c] / total[c]:>29.1%}")
print(f"images with any changed pixel: {images_changed} of {len(data.images)}")
share = {name: changed[c] / total[c] for c, name in enumerate(data.class_names) if c and total[c]}
ranked = sorted(share, key=share.get)
print(f"most relabelled: {ranked[-1]} ({share[ranked[-1]]:.1%}), {ranked[-2]} ({share[ranked[-2]]:.1%}); "
      f"least: {ranked[0]} ({share[ranked[0]]:.1%})")

# %%
img = plt.imread(data.image_path(worst))
fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
panels = [(img, "image"), (viz.overlay(img, masks.semantic_mask(data, worst)), "largest first (segedu)"),
          (viz.overlay(img, paint_smallest_first(worst)), "smallest first")]
for ax, (panel, title) in zip(axes, panels):
    ax.imshow(panel)
    ax.set_title(title)
    ax.axis("off")
present = np.union1d(np.unique(masks.semantic_mask(data, worst)), np.unique(paint_smallest_first(worst)))
fig.legend(handles=viz.legend_handles(present.tolist()), loc="lower center", ncol=6, fontsize=8, frameon=False)
fig.suptitle(f"{worst['file_name']}: {worst_diff} pixels change class with the painting order")
fig.tight_layout(rect=(0, 0.1, 1, 1))
plt.show()

# %% [markdown]
# ## Checking a file before training on it
#
# A broken annotation file should fail when it is loaded, with a message that says where,
# not in the middle of the third epoch. `segedu validate-coco FILE` (and every segedu loader)
# checks the structure, the ids, the polygons and RLEs, `area`/`bbox`/`iscrowd`, and that each
# image file exists, opens and has the size the JSON states.

# %%
print(coco.validate(root / "val.json").render())

# %% [markdown]
# The same check on a copy with four typical mistakes: a duplicated image id, an annotation
# pointing at a category that does not exist, a polygon with an odd number of coordinates, and
# an image whose stated width is wrong.

# %%
broken = json.loads((root / "val.json").read_text())
broken["images"].append(dict(broken["images"][0]))                     # duplicated image id
broken["annotations"][0]["category_id"] = 42                           # dangling category
broken["annotations"][1]["segmentation"][0] = broken["annotations"][1]["segmentation"][0][:-1]  # odd
broken["images"][1]["width"] += 1                                       # wrong size
with tempfile.TemporaryDirectory() as tmp:
    bad = Path(tmp) / "val_broken.json"
    bad.write_text(json.dumps(broken))
    report = coco.validate(bad, images_dir=root)
    print(report.render().replace(tmp, "<tmp>"))

# %% [markdown]
# ## Summary
#
# * A COCO file has `info`, `licenses`, `images`, `categories` and `annotations`; the
#   background is not a category, it is what no annotation covers.
# * Polygons are rasterised by pycocotools into RLE; in this dataset the stored `area` and
#   `bbox` agree with pycocotools' to within the gaps printed above.
# * Overlapping objects make the painting order part of the label: the table above shows, per
#   class, the share of pixels that would change class if the smallest object were painted
#   first instead of last. The line under it names the classes that would lose most, Metal
#   and Glass, and the one that would lose least, Plastic bag. Compare them with the object
#   sizes of the EDA chapter: Plastic bag's objects are among the largest, Metal's and Glass's
#   among the smaller ones (though not the smallest: Battery and General trash lose a little
#   less). Small objects lying on larger ones would vanish, which is why segedu paints the
#   largest object first.
# * `segedu validate-coco` reports every problem with the file, the record and what is wrong.
#
# ## Exercises
#
# 1. Encode the mask of one annotation as RLE with `mask_utils.encode(np.asfortranarray(m))`
#    and decode it again. Why must the array be in Fortran (column-major) order?
# 2. Which class loses the largest share of its pixels when painted smallest first, and why
#    that one? Check it against the object sizes in the EDA chapter.
# 3. Add a fifth mistake to the broken copy (a polygon with a `NaN` coordinate) and read the
#    message `validate` gives.
