"""The competition's 11 classes, their ids, and the colours the book draws them in."""
from __future__ import annotations

import numpy as np

#: Class names in id order; id 0 is the background, as in the competition's masks.
CLASSES: tuple[str, ...] = (
    "Background", "General trash", "Paper", "Paper pack", "Metal", "Glass",
    "Plastic", "Styrofoam", "Plastic bag", "Battery", "Clothing",
)
NUM_CLASSES = len(CLASSES)
#: Label of pixels that no loss or metric counts (void, unlabelled, low-confidence pseudo-labels).
IGNORE_INDEX = 255

#: RGB colour per class id, chosen so that the confusable pairs (Paper / Paper pack,
#: Plastic / Plastic bag) are still told apart on an overlay.
PALETTE = np.array(
    [
        (0, 0, 0),        # Background
        (192, 0, 128),    # General trash
        (0, 128, 192),    # Paper
        (0, 128, 64),     # Paper pack
        (128, 0, 0),      # Metal
        (64, 0, 128),     # Glass
        (64, 0, 192),     # Plastic
        (192, 128, 64),   # Styrofoam
        (192, 192, 128),  # Plastic bag
        (64, 64, 128),    # Battery
        (128, 0, 192),    # Clothing
    ],
    dtype=np.uint8,
)
