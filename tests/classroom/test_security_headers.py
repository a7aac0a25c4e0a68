"""Security holes of the outside review that the web pages close: caching of teacher pages, the
Content-Security-Policy, login brute force, and spreadsheet formulas in CSV exports."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from classroom import services
from tests.classroom.factories import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(teacher):
    draft = services.create_session(teacher=teacher, title="Maths 3B", frame_interval_s=2.0)
    return services.start_session(draft, by=teacher)


def _teacher_urls(session) -> list[str]:
    pk = session.pk
    return [
        reverse("classroom:session_list"),
        reverse("classroom:session_list_json"),
        reverse("classroom:session_create"),
        reverse("classroom:session_detail", args=[pk]),
        reverse("classroom:session_report", args=[pk]),
        reverse("classroom:session_export_csv", args=[pk]) + "?table=participants",
        reverse("classroom:session_export_json", args=[pk]),
    ]


def test_teacher_pages_and_exports_are_never_cached(client, teacher, live):
    client.force_login(teacher)
    for url in _teacher_urls(live):
        response = client.get(url)
        assert response.status_code == 200, url
        directives = {d.strip() for d in response["Cache-Control"].split(",")}
        assert {"no-store", "no-cache", "private"} <= directives, (url, directives)


@pytest.mark.parametrize("name", ["home", "join", "login"])
def test_every_page_has_a_content_security_policy_without_inline_code(client, name):
    url = reverse(name) if name == "login" else reverse(f"classroom:{name}")
    response = client.get(url)
    policy = dict(
        (part.strip().split(" ", 1) + [""])[:2]
        for part in response["Content-Security-Policy"].split(";")
    )
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in response["Content-Security-Policy"]


def test_teacher_pages_carry_no_inline_script_or_style(client, teacher, live):
    """What the policy would block: executable inline scripts and style attributes."""
    client.force_login(teacher)
    for url in _teacher_urls(live)[:5]:
        html = client.get(url).content.decode()
        assert 'style="' not in html, url
        for tag in html.split("<script")[1:]:
            opening = tag.split(">", 1)[0]
            assert "src=" in opening or 'type="application/json"' in opening, (url, opening)


def test_a_login_locks_after_five_wrong_passwords_even_with_the_right_one(client, teacher):
    url = reverse("login")
    for _ in range(4):
        response = client.post(url, {"username": "ada", "password": "wrong"})
        assert response.status_code == 200  # the form again, with its error
    assert client.post(url, {"username": "ada", "password": "wrong"}).status_code == 429
    locked = client.post(url, {"username": "ada", "password": PASSWORD})
    assert locked.status_code == 429
    assert b"Too many login attempts" in locked.content
    assert "_auth_user_id" not in client.session


def test_a_successful_login_resets_the_count(client, teacher):
    url = reverse("login")
    for _ in range(4):
        client.post(url, {"username": "ada", "password": "wrong"})
    assert client.post(url, {"username": "ada", "password": PASSWORD}).status_code == 302
    client.logout()
    for _ in range(4):
        client.post(url, {"username": "ada", "password": "wrong"})
    assert client.post(url, {"username": "ada", "password": PASSWORD}).status_code == 302


@pytest.mark.parametrize(
    "name", ["=1+1", "+1", "-1", "@SUM(A1)", "\uff1dHYPERLINK(1)", "\uff0b1", "\uff0d1", "\uff20A"]
)
def test_csv_exports_neutralise_every_formula_start(client, teacher, live, name):
    services.join_session(code=live.join_code, display_name=name, consent=True)
    client.force_login(teacher)
    url = reverse("classroom:session_export_csv", args=[live.pk]) + "?table=participants"
    rows = list(csv.DictReader(io.StringIO(client.get(url).content.decode())))
    assert [r["display_name"] for r in rows] == ["'" + name]


# --- joining: guessing and flooding ---------------------------------------------------------


def _join(client, code, name="Alan", addr="203.0.113.7"):
    return client.post(
        reverse("classroom:join"),
        {"code": code, "display_name": name, "consent": "on"},
        REMOTE_ADDR=addr,
    )


@pytest.fixture
def fresh_cache():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def test_wrong_codes_are_throttled_per_client_address(client, live, settings, fresh_cache):
    settings.ENGAGEMENT_JOIN_FAILURES_PER_MINUTE = 3
    for _ in range(3):
        assert _join(client, "ZZZZZZ").status_code == 400
    throttled = _join(client, "ZZZZZZ")
    assert throttled.status_code == 429 and b'data-join-error="throttled"' in throttled.content
    # Even the right code waits: the guesser cannot keep trying once over the limit.
    assert _join(client, live.join_code).status_code == 429
    # Another address is not affected.
    assert _join(client, live.join_code, addr="198.51.100.9").status_code == 302


def test_joins_per_address_and_participants_per_session_are_bounded(
    client, live, settings, fresh_cache
):
    from classroom.models import Participant

    settings.ENGAGEMENT_JOINS_PER_10_MINUTES = 4
    settings.ENGAGEMENT_MAX_PARTICIPANTS = 6
    for n in range(4):
        assert _join(client, live.join_code, name=f"S{n}").status_code == 302
    assert _join(client, live.join_code, name="S4").status_code == 429
    assert _join(client, live.join_code, name="S5", addr="198.51.100.9").status_code == 302
    assert _join(client, live.join_code, name="S6", addr="198.51.100.10").status_code == 302
    full = _join(client, live.join_code, name="S7", addr="198.51.100.11")
    assert full.status_code == 400 and b'data-join-error="session_full"' in full.content
    assert Participant.objects.filter(session=live).count() == 6
