"""Inference: predicting masks from a trained model, and writing the competition's submission file."""
