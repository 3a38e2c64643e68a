"""segedu: semantic segmentation for the recycling-trash competition, with its course book.

The package holds everything the book's chapters use; the chapters import it and never
re-define what lives here.
"""
__version__ = "0.1.0"

import warnings as _warnings

# albumentations imports huggingface_hub, which imports tqdm.auto; inside a notebook kernel
# without ipywidgets that warns at import time, and segedu shows no progress bars there anyway.
_warnings.filterwarnings("ignore", message="IProgress not found")

from .errors import SegeduError  # noqa: E402

__all__ = ["SegeduError", "__version__"]
