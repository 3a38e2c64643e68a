"""segedu: semantic segmentation for the recycling-trash competition, with its course book.

The package holds everything the book's chapters use; the chapters import it and never
re-define what lives here.
"""
__version__ = "0.1.0"

from .errors import SegeduError  # noqa: E402

__all__ = ["SegeduError", "__version__"]
