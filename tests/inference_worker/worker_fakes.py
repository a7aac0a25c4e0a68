"""Fakes and paths shared by the worker tests (imported as ``worker_fakes``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inference_worker.pipeline import Detection

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY_CLASSIFIER = FIXTURES / "tiny_classifier.tflite"
"""A meaningless but valid LiteRT expression model (see ``fixtures/make_tiny_classifier.py``)."""


class FakeDetector:
    """Returns the same detections for every frame; counts calls."""

    def __init__(self, detections: Sequence[Detection] = ()):
        self.detections = list(detections)
        self.calls = 0
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        self.calls += 1
        self.shapes.append(rgb.shape)
        return list(self.detections)


class FakeClassifier:
    """Returns a one-hot-ish probability row per crop (class ``i % 7`` for crop ``i``)."""

    def __init__(self, top: float = 0.7):
        self.top = top
        self.calls: list[list[np.ndarray]] = []

    def predict_proba(self, faces) -> np.ndarray:
        faces = list(faces)
        self.calls.append(faces)
        out = np.full((len(faces), 7), (1.0 - self.top) / 6, np.float32)
        for i in range(len(faces)):
            out[i, i % 7] = self.top
        return out
