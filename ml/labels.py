"""The FER2013 expression classes, in the dataset's label order, for the ``ml`` library.

The names come from :mod:`contracts.labels` (the one definition the web side and the worker
share); see there for the source.
"""

from contracts.labels import EXPRESSIONS

__all__ = ["EXPRESSIONS", "NUM_CLASSES"]

NUM_CLASSES: int = len(EXPRESSIONS)
"""Number of classes of every classifier head (7)."""
