"""Inference: predicting masks from a trained model (predict), optional DenseCRF post-processing
(crf, needs the pydensecrf2 extra), and writing the competition's submission file (submission).

The competition's inference tricks, composable: test-time augmentation with flips and scales (tta),
sliding-window prediction of large images (sliding), probability-averaged ensembles of checkpoints
(ensemble), and all of them with the CRF in one call (pipeline).

Checkpoints in use: reading one back without the training code (checkpoints), scoring it on a
labelled split or writing the test split's submission (evaluate; ``segedu.engine`` re-exports
both), and pseudo-labelling unlabelled images with it (pseudo).

All of them, the trainer's validation and the book's scoring run models over a split through one
loop: :class:`segedu.inference.predictor.Predictor` (batching by image size, probabilities, class
maps, confusion matrices)."""
