"""The facial expression classes, in FER2013's label order.

Source: FER2013 (Goodfellow et al., 2013, "Challenges in representation learning"), label
column ``emotion``: 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral. Every
probability vector in the project (classifier outputs, stored rows, exports) is in this order.
"""

EXPRESSIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""Expression names indexed by FER2013 label id (0..6)."""
