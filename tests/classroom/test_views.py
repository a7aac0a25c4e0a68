"""Web pages of the classroom app, through the Django test client.

Users and sessions are created through the model manager and ``classroom.services`` (the same
writes the app uses); analysed frames are stored with ``factories.store_frame`` (the rows that
``services.record_frame_result`` writes: frames, faces with raw and smoothed labels and head
pose, timeline buckets, counters).
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from classroom import services
from classroom.choices import EXPRESSIONS
from classroom.models import Participant
from tests.classroom.factories import TrackFactory, face_row, frame_message, store_frame

pytestmark = pytest.mark.django_db

PASSWORD = "not-a-real-password-42"


# --- fixtures -----------------------------------------------------------------------------------


def make_user(username: str, **extra):
    return get_user_model().objects.create_user(username=username, password=PASSWORD, **extra)


@pytest.fixture
def teacher():
    return make_user("ada", role="teacher")


@pytest.fixture
def other_teacher():
    return make_user("grace", role="teacher")


@pytest.fixture
def staff():
    return make_user("root", role="admin", is_staff=True)


@pytest.fixture
def draft(teacher):
    return services.create_session(teacher=teacher, title="Maths 3B", frame_interval_s=2.0)


@pytest.fixture
def live(draft, teacher):
    return services.start_session(draft, by=teacher)


@pytest.fixture
def teacher_client(client, teacher):
    client.force_login(teacher)
    return client


def join(client, code: str, name: str = "Alan", consent: bool = True):
    data = {"code": code, "display_name": name}
    if consent:
        data["consent"] = "on"
    return client.post(reverse("classroom:join"), data)


# --- access control -----------------------------------------------------------------------------


TEACHER_GET_PAGES = [
    "classroom:session_detail",
    "classroom:session_report",
    "classroom:session_export_csv",
    "classroom:session_export_json",
]


@pytest.mark.parametrize("name", ["classroom:session_list", "classroom:session_create"])
def test_anonymous_is_redirected_to_login(client, name):
    url = reverse(name)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


@pytest.mark.parametrize("name", TEACHER_GET_PAGES)
def test_anonymous_session_pages_redirect_to_login(client, draft, name):
    response = client.get(reverse(name, args=[draft.pk]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", TEACHER_GET_PAGES)
def test_other_teacher_gets_404(client, draft, other_teacher, name):
    client.force_login(other_teacher)
    assert client.get(reverse(name, args=[draft.pk])).status_code == 404


@pytest.mark.parametrize("name", ["classroom:session_start", "classroom:session_end"])
def test_other_teacher_cannot_start_or_end(client, draft, other_teacher, name):
    client.force_login(other_teacher)
    assert client.post(reverse(name, args=[draft.pk])).status_code == 404
    draft.refresh_from_db()
    assert draft.status == "draft"


@pytest.mark.parametrize("name", TEACHER_GET_PAGES)
def test_staff_sees_every_session(client, draft, staff, name):
    client.force_login(staff)
    assert client.get(reverse(name, args=[draft.pk])).status_code == 200


def test_unknown_session_is_404(teacher_client):
    url = reverse("classroom:session_detail", args=[uuid.uuid4()])
    assert teacher_client.get(url).status_code == 404


def test_login_page_renders(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="username"' in response.content and b'name="password"' in response.content


def test_home_page(client):
    response = client.get(reverse("classroom:home"))
    assert response.status_code == 200
    assert reverse("classroom:join").encode() in response.content


# --- teacher pages ------------------------------------------------------------------------------


def test_session_list_shows_only_own_sessions(teacher_client, draft, other_teacher):
    services.create_session(teacher=other_teacher, title="Someone else's class")
    response = teacher_client.get(reverse("classroom:session_list"))
    assert response.status_code == 200
    assert b"Maths 3B" in response.content
    assert draft.join_code.encode() in response.content
    assert b"Someone else" not in response.content


def test_session_list_json_filters_by_code(teacher_client, draft, teacher):
    other = services.create_session(teacher=teacher, title="Physics")
    data = teacher_client.get(reverse("classroom:session_list_json")).json()
    assert {s["id"] for s in data["sessions"]} == {str(draft.pk), str(other.pk)}

    data = teacher_client.get(
        reverse("classroom:session_list_json"), {"code": draft.join_code.lower()}
    ).json()
    [only] = data["sessions"]
    assert only["id"] == str(draft.pk)
    assert only["status"] == "draft"
    assert only["frame_interval_s"] == 2.0
    assert only["dashboard_ws_path"] == f"/ws/dashboard/{draft.pk}/"
    assert only["join_url"].endswith(f"/join/?code={draft.join_code}")


def test_create_session(teacher_client, teacher):
    response = teacher_client.post(
        reverse("classroom:session_create"),
        {"title": "  History  ", "frame_interval_s": "1.5", "analysis": "expression"},
    )
    session = teacher.class_sessions.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("classroom:session_detail", args=[session.pk])
    assert (session.title, session.frame_interval_s, session.status) == ("History", 1.5, "draft")
    assert session.analysis == "expression"


def test_create_session_defaults_to_one_second_and_expressions(teacher_client):
    response = teacher_client.get(reverse("classroom:session_create"))
    content = response.content.decode()
    assert re.search(r'name="frame_interval_s"[^>]*value="1.0"', content)
    assert re.search(r'<option value="expression" selected>', content)
    assert '<option value="attention">Attention only (no expressions)</option>' in content
    assert "no expression is computed, stored or shown" in content  # help text


def test_create_attention_only_session(teacher_client, teacher):
    data = {"title": "Exam", "frame_interval_s": "1", "analysis": "attention"}
    assert teacher_client.post(reverse("classroom:session_create"), data).status_code == 302
    assert teacher.class_sessions.get().analysis == "attention"
    listing = teacher_client.get(reverse("classroom:session_list_json")).json()
    assert listing["sessions"][0]["analysis"] == "attention"


def test_create_session_rejects_unknown_analysis(teacher_client, teacher):
    data = {"title": "Exam", "frame_interval_s": "1", "analysis": "emotions"}
    response = teacher_client.post(reverse("classroom:session_create"), data)
    assert response.status_code == 200
    assert response.context["form"].errors["analysis"]
    assert not teacher.class_sessions.exists()


@pytest.mark.parametrize("interval", ["0.1", "11", "abc"])
def test_create_session_rejects_bad_interval(teacher_client, teacher, interval):
    response = teacher_client.post(
        reverse("classroom:session_create"),
        {"title": "History", "frame_interval_s": interval, "analysis": "expression"},
    )
    assert response.status_code == 200
    assert response.context["form"].errors["frame_interval_s"]
    assert not teacher.class_sessions.exists()


def test_board_shows_join_code_url_and_live_feed(teacher_client, draft):
    response = teacher_client.get(reverse("classroom:session_detail", args=[draft.pk]))
    content = response.content.decode()
    assert response.status_code == 200
    assert f"<code>{draft.join_code}</code>" in content
    assert f"http://testserver/join/?code={draft.join_code}" in content
    assert f'data-ws-path="/ws/dashboard/{draft.pk}/"' in content
    assert "vendor/chart.js/chart.umd.js" in content
    snapshot = response.context["snapshot"]
    assert snapshot["type"] == "session.update" and snapshot["faces_now"] == 0
    assert 'id="snapshot-data"' in content
    # a draft shows Start, not End
    assert re.search(r'id="start-form"\s*>', content)
    assert re.search(r'id="end-form"\s*hidden', content)


def test_start_and_end_session(teacher_client, draft):
    start = reverse("classroom:session_start", args=[draft.pk])
    end = reverse("classroom:session_end", args=[draft.pk])
    assert teacher_client.get(start).status_code == 405  # POST only

    response = teacher_client.post(start)
    assert response["Location"] == reverse("classroom:session_detail", args=[draft.pk])
    draft.refresh_from_db()
    assert draft.status == "live" and draft.started_at is not None

    response = teacher_client.post(end)
    assert response["Location"] == reverse("classroom:session_report", args=[draft.pk])
    draft.refresh_from_db()
    assert draft.status == "ended" and draft.ended_at is not None


def test_starting_an_ended_session_shows_an_error(teacher_client, live, teacher):
    services.end_session(live, by=teacher)
    response = teacher_client.post(reverse("classroom:session_start", args=[live.pk]), follow=True)
    assert b"cannot be started again" in response.content
    live.refresh_from_db()
    assert live.status == "ended"


def test_start_requires_csrf_token(client, teacher, draft):
    client = client.__class__(enforce_csrf_checks=True)
    client.force_login(teacher)
    assert client.post(reverse("classroom:session_start", args=[draft.pk])).status_code == 403
    draft.refresh_from_db()
    assert draft.status == "draft"


# --- student join -------------------------------------------------------------------------------


def test_join_page_prefills_code_and_explains_consent(client, draft):
    response = client.get(reverse("classroom:join"), {"code": draft.join_code.lower()})
    content = response.content.decode()
    assert response.status_code == 200
    assert f'value="{draft.join_code}"' in content
    assert "No image is stored" in content
    assert re.search(r'<input type="checkbox" name="consent"[^>]*required', content)
    assert '<label for="id_consent">' in content


def test_join_with_wrong_code_shows_clear_error(client, live):
    response = join(client, "ZZZZZZ")
    assert response.status_code == 400
    assert b'data-join-error="unknown_code"' in response.content
    assert b"No open session has this join code" in response.content
    assert not Participant.objects.exists()


def test_join_requires_consent(client, live):
    response = join(client, live.join_code, consent=False)
    assert response.status_code == 400
    assert b'data-join-error="consent_required"' in response.content
    assert b"consent" in response.content
    assert not Participant.objects.exists()
    assert services.PARTICIPANT_SESSION_KEY not in client.session


def test_join_ended_session_gets_the_unknown_code_answer(client, live, teacher):
    unknown = join(client, "ZZZZZZ")
    services.end_session(live, by=teacher)
    response = join(client, live.join_code)
    assert response.status_code == unknown.status_code == 400
    # Word for word the answer to a code that never existed: a guesser learns nothing.
    csrf = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]+"')
    code = re.compile(rb'name="code"[^>]*value="[^"]*"')
    strip = lambda body: code.sub(b"", csrf.sub(b"", body))  # noqa: E731
    assert strip(response.content) == strip(unknown.content)
    assert not Participant.objects.exists()


def test_join_normalises_code_and_stores_participant_in_session(client, live):
    code = live.join_code
    response = join(client, f" {code[:3].lower()}-{code[3:]} ", name="  Alan   Turing ")
    assert response.status_code == 302
    assert response["Location"] == reverse("classroom:student")
    participant = Participant.objects.get()
    assert participant.session_id == live.pk
    assert participant.display_name == "Alan Turing"
    assert participant.consent_given_at is not None
    assert client.session[services.PARTICIPANT_SESSION_KEY] == participant.pk


def test_join_a_draft_session_waits_for_the_start(client, draft, teacher):
    """A student may join before the class starts; frames are accepted once it is live."""
    assert join(client, draft.join_code, name="Ada").status_code == 302
    participant = Participant.objects.get(session=draft)
    config = client.get(reverse("classroom:student_config")).json()
    assert config["participant"]["id"] == participant.pk
    assert config["session"]["status"] == "draft"
    with pytest.raises(services.FrameRejected) as rejected:
        services.accept_frame(participant.pk, frame_message(seq=1))
    assert rejected.value.code == "session_not_live"
    services.start_session(draft, by=teacher)
    assert services.accept_frame(participant.pk, frame_message(seq=2)).seq == 2


# --- student page -------------------------------------------------------------------------------


def test_student_page_needs_a_join(client):
    response = client.get(reverse("classroom:student"))
    assert response.status_code == 302 and response["Location"] == reverse("classroom:join")
    response = client.get(reverse("classroom:student_config"))
    assert response.status_code == 403 and response.json() == {"error": "not_joined"}


def test_student_page_and_config(client, live):
    join(client, live.join_code, name="Alan")
    response = client.get(reverse("classroom:student"))
    content = response.content.decode()
    assert response.status_code == 200
    assert "Alan" in content and "Maths 3B" in content
    assert (
        'id="start-webcam"' in content and 'id="start-screen"' in content and 'id="stop"' in content
    )
    assert 'id="student-config"' in content and "classroom/student.js" in content

    config = client.get(reverse("classroom:student_config")).json()
    assert config["session"] == {
        "title": "Maths 3B",
        "status": "live",
        "join_code": live.join_code,
        "frame_interval_s": 2.0,
        "analysis": "expression",
        "analysis_site": "server",
    }
    assert config["ondevice"] is None  # pictures go to the server
    assert config["ws_path"] == "/ws/stream/"
    assert config["max_width_px"] == {"webcam": 640, "screen": 1280}
    assert config["participant"]["display_name"] == "Alan"
    assert config["config_path"] == reverse("classroom:student_config")
    assert config["status_poll_s"] == 15.0


def test_a_stopped_student_page_can_learn_that_the_class_ended(client, live, teacher, settings):
    """The status poll of a page with no socket: the config says "ended" after the end."""
    settings.ENGAGEMENT_STUDENT_STATUS_POLL_S = 0.2  # floored at 1 s: no hammering
    join(client, live.join_code)
    config = client.get(reverse("classroom:student_config")).json()
    assert config["status_poll_s"] == 1.0 and config["session"]["status"] == "live"
    services.end_session(live, by=teacher)
    assert client.get(config["config_path"]).json()["session"]["status"] == "ended"


def test_student_leave_forgets_the_participant(client, live):
    join(client, live.join_code)
    response = client.post(reverse("classroom:student_leave"))
    assert response["Location"] == reverse("classroom:join")
    assert services.PARTICIPANT_SESSION_KEY not in client.session
    assert client.get(reverse("classroom:student")).status_code == 302


# --- reports and exports ------------------------------------------------------------------------


@pytest.fixture
def finished(live, teacher):
    """An ended session with two participants and three analysed frames."""
    alan = services.join_session(code=live.join_code, display_name="Alan", consent=True)
    eve = services.join_session(code=live.join_code, display_name="=HYPERLINK(1)", consent=True)
    store_frame(alan, 1, [face_row("happy"), face_row("happy")])
    store_frame(alan, 2, [face_row("happy"), face_row("sad")])
    store_frame(eve, 1, [face_row("neutral")])
    services.end_session(live, by=teacher)
    live.refresh_from_db()
    return live


def test_report_page(teacher_client, finished):
    response = teacher_client.get(reverse("classroom:session_report", args=[finished.pk]))
    content = response.content.decode()
    assert response.status_code == 200
    report = response.context["report"]
    assert report["totals"]["frames_analysed"] == 3
    assert report["totals"]["faces"] == 5
    assert "Alan" in content
    assert 'id="timeline-data"' in content and 'id="mix-data"' in content
    assert reverse("classroom:session_export_csv", args=[finished.pk]) in content
    # happy is 3 of 5 faces
    assert [row["label"] for row in response.context["mix_rows"]][0] == "happy"
    assert "60.0 %" in content


def test_report_and_face_export_say_which_faces_were_read_and_why_not(
    teacher_client, live, teacher
):
    alan = services.join_session(code=live.join_code, display_name="Alan", consent=True)
    unread = [
        face_row(None, None, quality_issue="too_small"),
        face_row(None, None, quality_issue="too_small"),
        face_row(None, None, attentive=False, quality_issue="turned_away"),
    ]
    store_frame(alan, 1, [face_row("happy"), *unread])
    store_frame(alan, 2, [face_row("happy"), face_row("sad")])
    services.end_session(live, by=teacher)
    response = teacher_client.get(reverse("classroom:session_report", args=[live.pk]))
    content = response.content.decode()
    assert response.context["report"]["coverage"] == {
        "faces": 6,
        "read": 3,
        "not_read": {"too_small": 2, "turned_away": 1, "too_dark": 0, "blurred": 0},
    }
    assert "Expression read on 3 of 6 faces; not read: 2 too small, 1 turned away." in content
    # the mix is over the 3 faces read: happy 2 of 3
    assert [row["label"] for row in response.context["mix_rows"]][0] == "happy"
    assert "66.7 %" in content
    csv_response = teacher_client.get(
        reverse("classroom:session_export_csv", args=[live.pk]), {"table": "faces"}
    )
    rows = list(csv.DictReader(io.StringIO(b"".join(csv_response.streaming_content).decode())))
    assert [(r["assessed"], r["quality_issue"], r["label"]) for r in rows[:2]] == [
        ("True", "", "happy"),
        ("False", "too_small", ""),
    ]


def test_coverage_sentence():
    from classroom.views.common import coverage_sentence

    assert coverage_sentence(None) == "" and coverage_sentence({"faces": 0}) == ""
    assert coverage_sentence({"faces": 4, "read": 4, "not_read": {"blurred": 0}}) == (
        "Expression read on 4 of 4 faces."
    )
    assert (
        coverage_sentence({"faces": 5, "read": 3, "not_read": {"too_dark": 1, "blurred": 1}})
        == "Expression read on 3 of 5 faces; not read: 1 too dark, 1 blurred."
    )


def test_report_of_unstarted_session(teacher_client, draft):
    response = teacher_client.get(reverse("classroom:session_report", args=[draft.pk]))
    assert response.status_code == 200
    assert b"never started" in response.content


def test_export_csv_participants(teacher_client, finished):
    response = teacher_client.get(reverse("classroom:session_export_csv", args=[finished.pk]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith(
        f'attachment; filename="session-{finished.join_code}-'
    )
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["display_name"] for r in rows] == ["Alan", "'=HYPERLINK(1)"]  # formula neutralised
    alan = rows[0]
    assert alan["frames_analysed"] == "2" and alan["faces"] == "4"
    # participation only: no expression or attention column per participant
    assert not set(rows[0]) & {*EXPRESSIONS, "attention"}


def test_export_csv_timeline(teacher_client, finished):
    response = teacher_client.get(
        reverse("classroom:session_export_csv", args=[finished.pk]), {"table": "timeline"}
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["t", "faces", "attention", *EXPRESSIONS]
    [point] = rows[1:]  # everything happened within the first 5-s bucket
    # faces visible: per participant the mean face count of its frames (2, 1), summed
    assert point[1] == "3"
    assert float(point[2]) == 1.0  # every face attentive
    assert float(point[3 + EXPRESSIONS.index("happy")]) == pytest.approx(0.6)

    bad = teacher_client.get(
        reverse("classroom:session_export_csv", args=[finished.pk]), {"table": "x"}
    )
    assert bad.status_code == 400


def test_export_json(teacher_client, finished):
    response = teacher_client.get(reverse("classroom:session_export_json", args=[finished.pk]))
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith('.json"')
    data = json.loads(response.content)
    assert data["session"] == str(finished.pk)
    assert data["totals"]["participants"] == 2
    assert data["totals"]["faces"] == 5
    assert data["mix"]["happy"] == pytest.approx(0.6)
    assert [p["display_name"] for p in data["participants"]] == ["Alan", "=HYPERLINK(1)"]
    assert not re.search(r"base64|jpeg|pixels", response.content.decode(), re.I)


def test_export_json_has_raw_and_smoothed_mix(teacher_client, live, teacher):
    alan = services.join_session(code=live.join_code, display_name="Alan", consent=True)
    store_frame(alan, 1, [face_row("sad", "happy"), face_row("happy")])
    data = teacher_client.get(reverse("classroom:session_export_json", args=[live.pk])).json()
    assert data["analysis"] == "expression"
    assert data["mix"]["happy"] == 1.0  # smoothed: happy, happy
    assert data["mix_raw"]["happy"] == 0.5 and data["mix_raw"]["sad"] == 0.5
    assert "mix_raw" not in data["participants"][0] and "mix" not in data["participants"][0]


def test_export_csv_faces(teacher_client, live):
    alan = services.join_session(code=live.join_code, display_name="Alan", consent=True)
    track = TrackFactory(participant=alan, number=1)
    store_frame(alan, 1, [face_row("sad", "happy", attentive=False, yaw_deg=35.0, track=track)])
    store_frame(alan, 2, [face_row("happy", track=track), face_row("fear", attentive=None)])
    response = teacher_client.get(
        reverse("classroom:session_export_csv", args=[live.pk]), {"table": "faces"}
    )
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith('-faces.csv"')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 3
    first = rows[0]
    assert first["face_index"] == "0" and "participant_id" not in first  # anonymous faces
    assert (first["label"], first["smoothed_label"], first["track"]) == ("sad", "happy", "1")
    assert (first["yaw_deg"], first["attentive"]) == ("35.0", "False")
    assert float(first["smoothed_confidence"]) == pytest.approx(0.94)
    assert rows[2]["track"] == "" and rows[2]["attentive"] == ""


def test_board_shows_attention_lag_p95_and_dropped_frames_with_warning(
    teacher_client, live, teacher
):
    alan = services.join_session(code=live.join_code, display_name="Alan", consent=True)
    store_frame(alan, 1, [face_row("happy"), face_row("sad", attentive=False)], lag_ms=1500)
    Participant.objects.filter(pk=alan.pk).update(frames_received=3, frames_dropped=2)
    response = teacher_client.get(reverse("classroom:session_detail", args=[live.pk]))
    content = response.content.decode()
    snapshot = response.context["snapshot"]
    assert snapshot["full"] is True and snapshot["frames_dropped"] == 2
    assert re.search(r'id="attention"[^>]*>50 %<', content)
    assert re.search(r'id="lag"[^>]*>1500 ms<', content)
    assert re.search(r'id="lag-p95">1500 ms<', content)
    assert re.search(r'id="frames-dropped"[^>]*>2<', content)
    # both tiles in the warning colour, each with a sentence saying why
    assert re.search(r'class="tile tile-warn" id="lag-tile"', content)
    assert re.search(r'class="tile tile-warn" id="dropped-tile"', content)
    assert re.search(r'id="lag-warn">', content) and re.search(r'id="dropped-warn">', content)
    assert "Expression mix, last 10 s (smoothed)" in content


def test_board_without_drops_or_lag_has_no_warning(teacher_client, live):
    content = teacher_client.get(reverse("classroom:session_detail", args=[live.pk])).content
    assert b"tile-warn" not in content
    assert re.search(rb'id="lag-warn" hidden', content)
    assert re.search(rb'id="dropped-warn" hidden', content)


#: Any expression name as a word (the join code alphabet and hex UUIDs cannot spell one).
LABEL_WORDS = re.compile(r"\b(" + "|".join(EXPRESSIONS) + r")\b", re.I)


def test_attention_only_session_shows_no_expression_anywhere(teacher_client, teacher):
    session = services.create_session(teacher=teacher, title="Exam", analysis="attention")
    services.start_session(session, by=teacher)
    alan = services.join_session(code=session.join_code, display_name="Alan", consent=True)
    track = TrackFactory(participant=alan, number=1)
    store_frame(alan, 1, [face_row(None, None, attentive=True, track=track)])
    store_frame(alan, 2, [face_row(None, None, attentive=False, yaw_deg=50.0, track=track)])

    board = teacher_client.get(reverse("classroom:session_detail", args=[session.pk]))
    assert board.context["snapshot"]["attention"] == 0.5
    assert 'id="mix-chart"' not in board.content.decode()
    assert 'id="attention"' in board.content.decode()
    services.end_session(session, by=teacher)
    report = teacher_client.get(reverse("classroom:session_report", args=[session.pk]))
    assert report.context["report"]["attention"] == 0.5
    assert 'id="mix-chart"' not in report.content.decode()
    responses = {
        "board": board.content.decode(),
        "report": report.content.decode(),
        "json": teacher_client.get(
            reverse("classroom:session_export_json", args=[session.pk])
        ).content.decode(),
    }
    for table in ("participants", "timeline", "faces"):
        response = teacher_client.get(
            reverse("classroom:session_export_csv", args=[session.pk]), {"table": table}
        )
        body = response.getvalue() if response.streaming else response.content
        responses[table] = body.decode()
    for name, body in responses.items():
        assert not LABEL_WORDS.search(body), (name, LABEL_WORDS.search(body))
        assert "probabilit" not in body.lower() and "confidence" not in body, name
    header = responses["faces"].splitlines()[0].split(",")
    assert header[-5:] == ["yaw_deg", "pitch_deg", "attentive", "assessed", "quality_issue"]
    assert responses["participants"].splitlines()[0].split(",")[-1] == "tracks"
    assert responses["timeline"].splitlines()[0] == "t,faces,attention"
    assert json.loads(responses["json"])["totals"]["tracks"] == 1


# --- the site-wide off-switch of emotion recognition -------------------------------------------


def test_with_emotion_inference_off_every_session_is_attention_only(
    teacher_client, teacher, settings
):
    settings.ENGAGEMENT_EMOTION_INFERENCE = False
    page = teacher_client.get(reverse("classroom:session_create")).content.decode()
    assert 'value="attention"' in page and 'value="expression"' not in page
    assert "switched off on this site" in page
    # a forged POST asking for expressions is refused; the service forces attention anyway
    teacher_client.post(
        reverse("classroom:session_create"),
        {"title": "Forged", "frame_interval_s": "1", "analysis": "expression"},
    )
    from classroom.models import ClassSession

    assert not ClassSession.objects.filter(analysis="expression").exists()
    direct = services.create_session(teacher=teacher, title="Direct", analysis="expression")
    assert direct.analysis == "attention"


def test_with_emotion_inference_off_an_older_expression_session_shows_none(
    teacher_client, live, settings
):
    assert live.analysis == "expression"
    settings.ENGAGEMENT_EMOTION_INFERENCE = False
    board = teacher_client.get(reverse("classroom:session_detail", args=[live.pk])).content.decode()
    assert "expression recognition is switched off on this site" in board
    assert 'id="mix-card"' not in board and '"happy"' not in board


def test_an_older_stored_report_shows_no_individual_figures(teacher_client, finished):
    from classroom.models import SessionReport

    summary = services.build_session_report(finished.pk).summary
    summary["participants"][0] |= {"mix": {"angry": 0.46}, "attention": 0.2}  # the old format
    SessionReport.objects.filter(session=finished).update(summary=summary)
    data = teacher_client.get(reverse("classroom:session_export_json", args=[finished.pk])).json()
    assert "mix" not in data["participants"][0] and "attention" not in data["participants"][0]
    page = teacher_client.get(reverse("classroom:session_report", args=[finished.pk]))
    participants = page.content.decode().split("Participants</h2>")[1].split("</table>")[0]
    assert "%" not in participants  # no share of anything per participant
