"""Fakes and paths shared by the worker tests (imported as ``worker_fakes``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inference_worker.pipeline import Detection

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_django_script(script: str, timeout: float = 120):
    """Run ``script`` in a fresh interpreter with the test settings and an in-memory broker.

    Used where the test needs a clean ``sys.modules`` or a Celery worker thread that must not
    consume other tests' messages.

    Returns:
        The JSON value the script printed on its last stdout line.

    Raises:
        AssertionError: the script exited non-zero (the message holds the end of its stderr).
    """
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "engagement.settings.test",
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "memory://",
        "CELERY_SKIP_CHECKS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


FIXTURES = Path(__file__).resolve().parent / "fixtures"

#: Keys of one face in the worker's result dict (``contracts.FacePayload``), written out independently of
#: ``inference_worker.pipeline`` so the tests catch a key added or lost there.
FACE_KEYS = {
    "box",
    "score",
    "presence",
    "probabilities",
    "label",
    "confidence",
    "yaw_deg",
    "pitch_deg",
    "attentive",
    "assessed",
    "quality_issue",
}

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


def textured_frame(height: int = 100, width: int = 200) -> np.ndarray:
    """An RGB ``uint8`` frame that any crop of 30 px or more passes the face-quality gate with.

    Fine sine gratings (sharp: high variance of the Laplacian) plus mild Gaussian noise, so its
    contrast is well above its noise (a frame of pure noise would read as too dark, a flat one as
    blurred). Deterministic.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    gray = 127 + 50 * np.sin(xx / 1.7) + 50 * np.sin(yy / 2.3) + 20 * np.sin((xx + yy) / 5.0)
    gray += np.random.default_rng(0).normal(0, 10, (height, width))
    return np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
