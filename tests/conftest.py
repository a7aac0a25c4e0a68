"""Fixtures shared by every test package.

``../shared`` (data sets and real media) is located through ``$ENGAGEMENT_SHARED_DIR``, default
the ``shared`` folder beside the repository, as on developer machines and in CI.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _shared_dir() -> Path:
    return Path(os.environ.get("ENGAGEMENT_SHARED_DIR", REPO_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ``shared/`` folder (FER2013, FER+, real media); fails if it is missing."""
    path = _shared_dir()
    if not path.is_dir():
        pytest.fail(f"shared data folder not found: {path} (set ENGAGEMENT_SHARED_DIR)")
    return path


@pytest.fixture(scope="session")
def media_dir(shared_dir: Path) -> Path:
    """``shared/media``: real photos and video of people, for local tests only."""
    return shared_dir / "media"


@pytest.fixture(scope="session")
def webcam_photo(media_dir: Path) -> Path:
    """2x2 grid of four posed expressions: surprise, happy (top), sad, angry (bottom)."""
    return media_dir / "webcam_posed_expressions_4.jpg"
