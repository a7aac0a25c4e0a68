"""Fixtures of the classroom tests.

Every test here runs with an in-memory channel layer, a fresh frame rate limiter, no
remembered event loop, Celery's ``send_task`` replaced by a mock at the ``classroom.dispatch``
boundary (no message reaches a broker, even with ``REDIS_URL`` set), and a minimum group size
of 1: the aggregation tests count one to four faces; the threshold's own tests
(``test_group_size.py``) set it back to the default 5.
"""

from __future__ import annotations

from unittest import mock

import pytest

from classroom import realtime, services
from tests.classroom.factories import PASSWORD


@pytest.fixture(autouse=True)
def _figures_for_any_group(settings):
    settings.ENGAGEMENT_MIN_GROUP_SIZE = 1


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


@pytest.fixture
def teacher(db):
    """A teacher account, username ``ada``, password ``factories.PASSWORD``."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username="ada", password=PASSWORD, role="teacher")
