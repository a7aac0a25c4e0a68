"""The FER2013 expression classes, in the dataset's label order.

Source: FER2013 (Goodfellow et al., 2013), label column ``emotion``:
0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral.
"""

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""Class names indexed by FER2013 label id (0..6)."""

NUM_CLASSES: int = len(EMOTIONS)
