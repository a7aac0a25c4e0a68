"""ASGI entry point: HTTP through Django, WebSockets through Channels.

In the embedded default (``ENGAGEMENT_EMBEDDED_WORKER``), a Celery worker thread starts in this
process and consumes the same task messages from the in-memory broker.

Database connections: Django runs each HTTP request in a thread of its own under ASGI, so a
connection kept for ``CONN_MAX_AGE`` would stay open after its thread is done (Django's docs,
"Persistent connections": disable them under ASGI). Here they are closed when each HTTP request
finishes; the WebSocket consumers' ``database_sync_to_async`` calls all run on one thread and
keep reusing one connection for ``CONN_MAX_AGE`` (measured: 60 students joining at once
exhausted PostgreSQL's 100 connections without this; with ``CONN_MAX_AGE=0`` everywhere,
opening a connection per frame cost a third of the frames/s the server sustains).
"""

import os

from django.core.asgi import get_asgi_application
from django.core.signals import request_finished
from django.db import connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "engagement.settings.local")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from classroom.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)


def close_request_connections(**kwargs) -> None:
    """``request_finished`` receiver: close the finishing HTTP request's database connections."""
    for connection in connections.all(initialized_only=True):
        connection.close()


request_finished.connect(close_request_connections, dispatch_uid="engagement.asgi.close_request_db")

if settings.ENGAGEMENT_EMBEDDED_WORKER:
    from inference_worker.embedded import start_embedded_worker  # noqa: E402

    start_embedded_worker()
