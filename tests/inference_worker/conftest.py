"""Fixtures for the worker tests: fakes for the two model protocols and the real media files.

The real media folder comes from ``$ENGAGEMENT_SHARED_MEDIA`` (default
``<repo>/../shared/media``; ``$ENGAGEMENT_SHARED_DIR/media`` is honoured too, as in
``tests/conftest.py``). Library code never guesses this path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from worker_fakes import REPO_ROOT, FakeClassifier, FakeDetector

from inference_worker import runtime
from inference_worker.pipeline import Detection


@pytest.fixture
def fake_detector() -> FakeDetector:
    return FakeDetector([Detection(box=(40.0, 20.0, 50.0, 60.0), score=0.9)])


@pytest.fixture
def fake_classifier() -> FakeClassifier:
    return FakeClassifier()


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """The shared real media folder; fails when it is missing."""
    if os.environ.get("ENGAGEMENT_SHARED_MEDIA"):
        path = Path(os.environ["ENGAGEMENT_SHARED_MEDIA"])
    elif os.environ.get("ENGAGEMENT_SHARED_DIR"):
        path = Path(os.environ["ENGAGEMENT_SHARED_DIR"]) / "media"
    else:
        path = REPO_ROOT.parent / "shared" / "media"
    if not path.is_dir():
        pytest.fail(f"shared media folder not found: {path} (set ENGAGEMENT_SHARED_MEDIA)")
    return path.resolve()


@pytest.fixture(scope="session")
def webcam_photo(media_dir: Path) -> Path:
    """2x2 grid of posed expressions: surprise, happy (top row), sad, angry (bottom row)."""
    return media_dir / "webcam_posed_expressions_4.jpg"


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
