"""Fixtures for the worker tests: fakes for the two model protocols and the real media files.

``media_dir`` and ``webcam_photo`` come from ``tests/conftest.py`` (``$ENGAGEMENT_SHARED_DIR``).
Library code never guesses this path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_worker import runtime
from inference_worker.pipeline import Detection
from tests.inference_worker.worker_fakes import FakeClassifier, FakeDetector


@pytest.fixture
def fake_detector() -> FakeDetector:
    return FakeDetector([Detection(box=(40.0, 20.0, 50.0, 60.0), score=0.9)])


@pytest.fixture
def fake_classifier() -> FakeClassifier:
    return FakeClassifier()


@pytest.fixture(scope="session")
def group_photo(media_dir: Path) -> Path:
    """Five people standing in a row and one large selfie face."""
    return media_dir / "group_photo_6_people.jpg"


@pytest.fixture
def fresh_runtime():
    """Forget the runtime's cached models before and after the test."""
    runtime.clear()
    yield runtime
    runtime.clear()
