"""Inference: predicting masks from a trained model (predict), optional DenseCRF post-processing
(crf, needs the pydensecrf2 extra), and writing the competition's submission file (submission)."""
