"""Fixtures of the classroom tests.

Every test here runs with an in-memory channel layer, a fresh frame rate limiter, no
remembered event loop, and Celery's ``send_task`` replaced by a mock at the
``classroom.dispatch`` boundary (no message reaches a broker, even with ``REDIS_URL`` set).
"""

from __future__ import annotations

from unittest import mock

import pytest

from classroom import realtime, services


@pytest.fixture(autouse=True)
def _in_memory_channel_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture(autouse=True)
def _fresh_realtime_state(monkeypatch):
    """A fresh frame rate limiter and no remembered server loop, restored after the test."""
    monkeypatch.setattr(services.frame_rate_limiter, "_buckets", {})
    monkeypatch.setattr(realtime, "_server_loop", None)


@pytest.fixture(autouse=True)
def celery_app_mock():
    """The Celery app seen by ``classroom.dispatch``; assert on ``.send_task``."""
    with mock.patch("classroom.dispatch.current_app") as app:
        yield app
