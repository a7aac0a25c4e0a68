"""The ASGI entry point's database-connection policy (engagement/asgi.py)."""

from __future__ import annotations

import pytest
from django.core.signals import request_finished
from django.db import connection, connections


@pytest.mark.django_db(transaction=True)
def test_request_finished_closes_every_initialised_connection(monkeypatch, settings):
    """The receiver closes the finishing request's connections, whatever the database.

    (SQLite's in-memory test database ignores ``close()``, so the close is observed here; the
    PostgreSQL test below checks that the connection really goes.)
    """
    import engagement.asgi  # noqa: F401 - connects the receiver

    settings.DATABASES["default"]["CONN_MAX_AGE"] = 60
    connection.ensure_connection()
    connection.close_at = None  # persistent and young: Django's own receiver keeps it
    closed = []
    monkeypatch.setattr(connections["default"], "close", lambda: closed.append("default"))
    request_finished.send(sender=None)
    assert closed == ["default"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_http_request_connection_is_closed_when_the_request_finishes(settings):
    """Even with CONN_MAX_AGE > 0, an HTTP request's PostgreSQL connection does not outlive it."""
    import engagement.asgi  # noqa: F401 - connects the receiver

    assert connection.vendor == "postgresql", "integration tests run on PostgreSQL (make test)"
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 60
    connection.close_at = None  # persistent: close_old_connections alone would keep it
    connection.ensure_connection()
    assert connection.connection is not None
    request_finished.send(sender=None)
    assert connection.connection is None


@pytest.mark.django_db(transaction=True)
def test_connection_is_kept_without_the_receiver(settings):
    """Control: Django's own request_finished handling keeps a young persistent connection."""
    from django.db import close_old_connections

    settings.DATABASES["default"]["CONN_MAX_AGE"] = 60
    connection.ensure_connection()
    connection.close_at = None
    close_old_connections()
    assert connection.connection is not None
