"""ASGI entry point: HTTP through Django, WebSockets through Channels.

In the embedded default (``ENGAGEMENT_EMBEDDED_WORKER``), a Celery worker thread starts in this
process and consumes the same task messages from the in-memory broker.
"""

import os

from django.core.asgi import get_asgi_application

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

if settings.ENGAGEMENT_EMBEDDED_WORKER:
    from inference_worker.embedded import start_embedded_worker  # noqa: E402

    start_embedded_worker()
