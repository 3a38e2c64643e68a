"""Data: the competition's classes, COCO loading and validation, masks, datasets, splits."""
from .classes import CLASSES, IGNORE_INDEX, NUM_CLASSES, PALETTE

__all__ = ["CLASSES", "IGNORE_INDEX", "NUM_CLASSES", "PALETTE"]
