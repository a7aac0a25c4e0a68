"""The role matrix of the README ("Who sees what"), checked route by route.

Roles: anonymous (no login, not joined), student (a browser that joined the session), teacher
(the session's owner), other teacher, admin (role "admin", no staff flag) and staff (the Django
admin site). Every URL route of the project and both WebSocket routes are listed; a route added
without a row here fails ``test_every_route_is_in_the_matrix``.
"""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import get_resolver, reverse

from classroom import events, services
from classroom.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)

ROLES = ("anonymous", "student", "teacher", "other_teacher", "admin", "staff")

# Expected HTTP status per role: 200 page, 302 redirect (to login or join), 403, 404, 405.
# route name: (method, (anonymous, student, teacher, other teacher, admin, staff))
MATRIX: dict[str, tuple[str, tuple[int, ...]]] = {
    "classroom:home": ("GET", (200, 200, 200, 200, 200, 200)),
    "login": ("GET", (200, 200, 200, 200, 200, 200)),
    "classroom:join": ("GET", (200, 200, 200, 200, 200, 200)),
    "classroom:student": ("GET", (302, 200, 302, 302, 302, 302)),
    "classroom:student_config": ("GET", (403, 200, 403, 403, 403, 403)),
    "classroom:session_list": ("GET", (302, 302, 200, 200, 200, 200)),
    "classroom:session_list_json": ("GET", (302, 302, 200, 200, 200, 200)),
    "classroom:session_create": ("GET", (302, 302, 200, 200, 200, 200)),
    "classroom:session_detail": ("GET", (302, 302, 200, 404, 200, 200)),
    "classroom:session_report": ("GET", (302, 302, 200, 404, 200, 200)),
    "classroom:session_export_csv": ("GET", (302, 302, 200, 404, 200, 200)),
    "classroom:session_export_json": ("GET", (302, 302, 200, 404, 200, 200)),
    "classroom:session_start": ("POST", (302, 302, 302, 404, 302, 302)),
    "classroom:participant_withdraw": ("POST", (302, 302, 302, 404, 302, 302)),
    "classroom:session_end": ("POST", (302, 302, 302, 404, 302, 302)),
    "admin:index": ("GET", (302, 302, 302, 302, 302, 200)),
    "classroom:student_leave": ("POST", (302, 302, 302, 302, 302, 302)),
    "classroom:student_withdraw": ("POST", (302, 302, 302, 302, 302, 302)),
    "logout": ("POST", (302, 302, 302, 302, 302, 302)),
}

# WebSocket routes: accepted (True) or closed with 4403 (False).
WS_MATRIX: dict[str, tuple[bool, ...]] = {
    "stream": (False, True, False, False, False, False),
    "dashboard": (False, False, True, False, True, True),
}

PASSWORD = "not-a-real-password-42"


@pytest.fixture
def world():
    """One session of "teacher" with one joined student, and a logged-in client per role."""
    user = get_user_model().objects.create_user
    teacher = user(username="ada", password=PASSWORD, role="teacher")
    other = user(username="eve", password=PASSWORD, role="teacher")
    admin = user(username="boss", password=PASSWORD, role="admin")
    staff = user(username="root", password=PASSWORD, role="admin", is_staff=True)
    session = services.start_session(
        services.create_session(teacher=teacher, title="Maths"), by=teacher
    )
    clients = {"anonymous": Client()}
    student = Client()
    response = student.post(
        reverse("classroom:join"),
        {"code": session.join_code, "display_name": "Alan", "consent": "on"},
    )
    assert response.status_code == 302
    clients["student"] = student
    for role, account in (
        ("teacher", teacher),
        ("other_teacher", other),
        ("admin", admin),
        ("staff", staff),
    ):
        clients[role] = Client()
        clients[role].force_login(account)
    participant = session.participants.get()
    return session, participant, clients


def _url(name: str, session, participant) -> str:
    if name == "classroom:participant_withdraw":
        return reverse(name, args=[session.pk, participant.pk])
    if name.startswith("classroom:session_") and name not in (
        "classroom:session_list",
        "classroom:session_list_json",
        "classroom:session_create",
    ):
        return reverse(name, args=[session.pk])
    return reverse(name)


@pytest.mark.parametrize("name", list(MATRIX))
def test_each_route_answers_each_role_as_the_matrix_says(world, name):
    session, participant, clients = world
    method, expected = MATRIX[name]
    url = _url(name, session, participant)
    got = []
    for role in ROLES:  # POSTs that change state (end, withdraw) are idempotent for later roles
        client = clients[role]
        response = client.post(url) if method == "POST" else client.get(url)
        got.append(response.status_code)
    assert tuple(got) == expected, dict(zip(ROLES, got, strict=True))


def test_every_route_is_in_the_matrix():
    names = set()
    for pattern in get_resolver().url_patterns:
        namespace = getattr(pattern, "namespace", None)
        for sub in getattr(pattern, "url_patterns", [pattern]):
            name = getattr(sub, "name", None)
            if name:
                names.add(f"{namespace}:{name}" if namespace and namespace != "admin" else name)
    project = {n for n in names if n.startswith("classroom:") or n in ("login", "logout")}
    assert project <= set(MATRIX), project - set(MATRIX)


APP = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


def _headers(client) -> list[tuple[bytes, bytes]]:
    if settings.SESSION_COOKIE_NAME not in client.cookies:
        return []
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    return [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={key}".encode())]


@pytest.mark.parametrize("route", list(WS_MATRIX))
def test_each_websocket_route_accepts_only_the_roles_of_the_matrix(world, route, celery_app_mock):
    session, _, clients = world
    path = "/ws/stream/" if route == "stream" else f"/ws/dashboard/{session.pk}/"

    async def opens(headers) -> bool:
        communicator = WebsocketCommunicator(APP, path, headers=headers)
        connected, _ = await communicator.connect()
        assert connected  # refusals are accept + close, so the client reads the code
        if route == "dashboard":
            first = await communicator.receive_output(timeout=2)
            accepted = first["type"] == "websocket.send"
        else:
            accepted = await communicator.receive_nothing(timeout=0.2)
            first = None if accepted else await communicator.receive_output(timeout=2)
        if not accepted:
            assert first == {"type": "websocket.close", "code": events.CLOSE_FORBIDDEN}
        await communicator.disconnect()
        return accepted

    got = tuple(async_to_sync(opens)(_headers(clients[role])) for role in ROLES)
    assert got == WS_MATRIX[route], dict(zip(ROLES, got, strict=True))
