"""The book's experiments: what the chapters train and how they compare it.

The library below this package trains (:mod:`segedu.engine`), predicts and scores
(:mod:`segedu.inference`) any model on any dataset and knows nothing of the book. This package is
the book's own layer on top (:mod:`segedu.layers`): the plans of runs a chapter trains and reuses
across chapters, the competition-craft baseline and its tricks, the score caches, and the tables
that set runs side by side with their paired statistics.

* :mod:`~segedu.experiments.compare`: train a plan of runs (reusing finished ones), score them
  overall and at class boundaries, tabulate per class and over seeds.
* :mod:`~segedu.experiments.ablation`: the craft baseline, the tricks as changes to its
  TrainConfig, the inference tricks the chapters try, and the ablation table.
* :mod:`~segedu.experiments.encoders`: which pretrained encoder each of the book's models starts from.
* :mod:`~segedu.experiments.reuse`: which earlier runs and score caches a chapter may read back.
"""
