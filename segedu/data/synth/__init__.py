"""A deterministic stand-in for the competition's recycling-trash dataset.

The real photos and labels are not public, so the book trains on this generator's output. It
copies what makes the real task hard, not what the photos look like:

* the **layout**: batch folders of JPEGs, ``train_all.json`` / ``train.json`` / ``val.json`` (COCO
  polygons, a fixed 80:20 split) and ``test.json`` (images and categories only). The real
  competition keeps the test labels hidden on its server; here they are written to
  ``test_labels.json`` so that a chapter can measure a test score.
* the **class imbalance**: instance counts follow the competition's ``train_all.json``
  (:data:`COMPETITION_INSTANCES`): Paper and Plastic bag dominate, Battery and Clothing are rare
  (since version "3" Battery is dealt three times its competition share and drawn larger, so that
  a model can find it at all: :mod:`~segedu.data.synth.versions`).
* **confusable pairs**: Paper and Paper pack share colours (a pack is box-like, folded and
  printed); Plastic and Plastic bag share translucent colours (a bag is larger and crinkled);
  General trash borrows the look of other classes; batteries look like small cans.
* **what a photo adds**: textured floors, tables and walls, background clutter, drop and cast
  shadows, uneven lighting, colour casts, blur, noise, JPEG artefacts, occlusion, objects cut by
  the frame, objects from a few pixels to most of the image, thin parts (bag handles, mask
  straps, torn paper) where a coarse model loses pixels.
* **photo sessions**: each batch folder has its own mix of backgrounds and its own lighting, so
  a split that keeps batch folders apart (group K-fold, :mod:`segedu.data.splits`) measures
  something a random split does not.

Image and annotation agree by construction: each object's outline is a list of polygons; the
polygons are rasterised with pycocotools (the same code that turns the annotation into a mask),
and the object's texture is painted exactly into that mask. Objects are painted largest first,
which is also the order a mask loader paints annotations in, so the loader's label map
reproduces what is visible. ``area`` and ``bbox`` are pycocotools' ``area``/``toBbox`` of the
polygons' RLE.

Determinism: the plan (how many objects of which class on which image) comes from one seeded
generator; each image is then drawn from its own generator seeded by ``(seed, index)``, so the
pixels do not depend on how many processes draw them. Same seed, same bytes.

``benchmarks/synth_difficulty.py`` checks that the result is hard in these ways: rare and
confusable classes score lower than common distinct ones, and a stride-32 model scores below a
full-resolution one by more than the spread between seeds.

The generator is split by what it decides, lowest first (each module imports only those listed before it):

* :mod:`~segedu.data.synth.versions`: the generator's versions and what each draws differently;
* :mod:`~segedu.data.synth.shapes`: the outline of each class's objects (geometry only);
* :mod:`~segedu.data.synth.looks`: their colours and textures, and the light on an object;
* :mod:`~segedu.data.synth.scene`: one image: the plan of classes, the photo sessions'
  backgrounds, clutter and lighting, shadows, and :func:`~segedu.data.synth.scene._render`;
* :mod:`~segedu.data.synth.writer`: the dataset: JPEGs, COCO files, :func:`generate`,
  :func:`ensure_default_dataset`.

``tests/data/test_synth_golden.py`` pins the output of every version by checksum: a change to
any of them that changes the data adds a version to :mod:`~segedu.data.synth.versions` (which
says what each draws differently) and makes it :data:`GENERATOR_VERSION`; the older versions
stay drawable byte for byte.
"""
from __future__ import annotations

from .scene import COMPETITION_IMAGES, COMPETITION_INSTANCES, plan_classes, planned_instances
from .versions import VERSIONS
from .writer import (BATCH_SHARES, BATCHES, DATASET_FILES, GENERATOR_VERSION, JPEG_QUALITY, TEST_FRACTION,
                     VAL_FRACTION, Summary, drawn_by, ensure_default_dataset, generate)

__all__ = [
    "BATCHES", "BATCH_SHARES", "COMPETITION_IMAGES", "COMPETITION_INSTANCES", "DATASET_FILES", "GENERATOR_VERSION",
    "JPEG_QUALITY", "TEST_FRACTION", "VAL_FRACTION", "Summary", "VERSIONS", "drawn_by", "ensure_default_dataset",
    "generate",
    "plan_classes", "planned_instances",
]
