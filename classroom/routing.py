"""WebSocket routes (wired by ``engagement.asgi`` behind the origin and auth middleware)."""

from django.urls import path

from classroom.consumers import StudentStreamConsumer, TeacherDashboardConsumer

websocket_urlpatterns = [
    path("ws/stream/", StudentStreamConsumer.as_asgi(), name="ws_stream"),
    path(
        "ws/dashboard/<uuid:session_id>/", TeacherDashboardConsumer.as_asgi(), name="ws_dashboard"
    ),
]
