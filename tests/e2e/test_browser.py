"""End to end in a real browser: headless Chromium (Debian's, driven by Playwright) plays a teacher
and a student against the real stack (Daphne, a Celery worker process, PostgreSQL, Redis).

The student's webcam is Chromium's fake capture device playing a .y4m file built at test time from
``shared/media/webcam_posed_expressions_4.jpg`` (four posed faces), so the real student page
captures, scales, JPEG-encodes and streams frames over ``/ws/stream/`` exactly as it does for a
person, and the real worker finds the four faces that the teacher's board then shows.

Static files (the pages' scripts and Chart.js from npm) come from Daphne itself through
WhiteNoise, as in production, so a page whose scripts fail to load fails this test.

Django's ORM is used only before and after the Playwright block: Playwright's sync API runs an
event loop in this thread, where Django refuses synchronous database access.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest

from tests.e2e.browser import PageLog, launch_chromium

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

TEACHER_USERNAME = "browser-teacher"
TEACHER_PASSWORD = "e2e-Browser-pass-1"
STUDENT_NAME = "Grace"

#: Seconds to wait for the board to show the four faces (the worker analyses on a busy machine).
FACES_TIMEOUT_S = 60
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- helpers ------------------------------------------------------------------------------------


def open_board(page, base: str, session_id) -> None:
    """Log the test teacher in from the login page and land on the session's board."""
    page.goto(f"{base}/accounts/login/?next=/sessions/{session_id}/")
    page.fill("#id_username", TEACHER_USERNAME)
    page.fill("#id_password", TEACHER_PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in", exact=True).click()


def _text(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def live_session(live_stack):
    """A teacher (created through the ORM) and a live session of theirs."""
    from django.contrib.auth import get_user_model

    from classroom import services

    teacher = get_user_model().objects.create_user(
        username=TEACHER_USERNAME, password=TEACHER_PASSWORD, role="teacher"
    )
    session = services.create_session(teacher=teacher, title="Browser class", frame_interval_s=0.5)
    services.start_session(session, by=teacher)
    return teacher, session


# --- the test -----------------------------------------------------------------------------------


def test_teacher_board_and_student_page_in_chromium(
    live_stack, live_session, fake_camera, chromium_path, tmp_path
):
    from playwright.sync_api import expect, sync_playwright

    from classroom.models import ClassSession, FrameResult, Participant

    teacher, session = live_session
    base = live_stack.base_url
    board_url = f"{base}/sessions/{session.pk}/"
    code = session.join_code
    screenshot = tmp_path / "board.png"
    observed: dict[str, object] = {}

    with sync_playwright() as pw:
        browser = launch_chromium(pw, chromium_path, fake_camera)
        try:
            teacher_ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
            student_ctx = browser.new_context(viewport={"width": 1100, "height": 900})
            for ctx in (teacher_ctx, student_ctx):
                ctx.set_default_timeout(20_000)

            # --- the teacher logs in and opens the live board -------------------------------
            board = teacher_ctx.new_page()
            board_log = PageLog(board, "board")
            open_board(board, base, session.pk)
            assert board.url == board_url, f"login did not land on the board: {board.url}"
            expect(board.locator("#board")).to_have_attribute("data-status", "live")
            expect(board.locator("#connection-state")).to_have_text("connected")
            expect(board.locator(".join-code code")).to_have_text(code)
            expect(board.locator("#faces-now")).to_have_text("0")
            assert board.evaluate("() => typeof window.Chart") == "function", (
                f"Chart.js did not load on the board\n{board_log}"
            )

            # --- the student joins: consent is required --------------------------------------
            student = student_ctx.new_page()
            student_log = PageLog(student, "student")
            student.goto(f"{base}/join/?code={code}")
            expect(student.locator("#id_code")).to_have_value(code)
            student.fill("#id_display_name", STUDENT_NAME)
            expect(student.locator("#id_consent")).not_to_be_checked()
            with student.expect_navigation() as nav:
                student.get_by_role("button", name="Join", exact=True).click()
            assert nav.value is not None and nav.value.status == 400, nav.value
            assert urlsplit(student.url).path == "/join/", student.url
            error = student.locator("[data-join-error]")
            expect(error).to_have_attribute("data-join-error", "consent_required")
            expect(error).to_be_visible()
            expect(student.locator("#id_display_name")).to_have_value(STUDENT_NAME)

            student.check("#id_consent")
            with student.expect_navigation():
                student.get_by_role("button", name="Join", exact=True).click()
            assert urlsplit(student.url).path == "/student/", student.url
            expect(student.locator("#session-state")).to_have_text(re.compile("live", re.I))
            expect(student.locator("#frames-sent")).to_have_text("0")

            # --- the student streams the (fake) webcam ---------------------------------------
            student.click("#start-webcam")
            expect(student.locator("#connection-state")).to_have_text("connected")
            expect(student.locator("#analysis-state")).to_have_text(
                re.compile(r"^Analysis on: sending your webcam")
            )
            expect(student.locator("#stop")).to_be_enabled()
            student.wait_for_function(
                """() => parseInt(document.getElementById('frames-sent').textContent, 10) >= 3
                      && parseInt(document.getElementById('frames-acked').textContent, 10) >= 3""",
                timeout=30_000,
            )
            observed["video"] = student.evaluate(
                """() => { const v = document.getElementById('preview');
                           return [v.videoWidth, v.videoHeight]; }"""
            )
            assert observed["video"][0] > 0, observed
            sent = int(_text(student, "#frames-sent"))
            acked = int(_text(student, "#frames-acked"))
            assert sent > 0 and acked > 0, (sent, acked)
            assert _text(student, "#frames-rejected") == "0", str(student_log)
            assert _text(student, "#last-error") == "none", (
                f"student page error: {_text(student, '#last-error')}\n{student_log}"
            )

            # --- the board shows the four faces and the expression mix -----------------------
            try:
                board.wait_for_function(
                    "() => document.getElementById('faces-now').textContent.trim() === '4'",
                    timeout=FACES_TIMEOUT_S * 1000,
                )
            except Exception as exc:  # noqa: BLE001 -- re-raised with the stack's logs
                raise AssertionError(
                    f"the board did not show 4 faces within {FACES_TIMEOUT_S} s: faces-now="
                    f"{_text(board, '#faces-now')!r}, frames-analysed="
                    f"{_text(board, '#frames-analysed')!r}, student sent/acked="
                    f"{_text(student, '#frames-sent')}/{_text(student, '#frames-acked')}, "
                    f"video={observed.get('video')}\n{board_log}\n{student_log}\n"
                    f"{live_stack.logs()}"
                ) from exc
            expect(board.locator("#participants")).to_have_text("1")
            assert int(_text(board, "#frames-analysed")) >= 1
            assert _text(board, "#lag").endswith("ms"), _text(board, "#lag")
            mix_chart = board.locator("canvas#mix-chart")
            expect(mix_chart).to_have_count(1)
            expect(mix_chart).to_be_visible()
            assert board.evaluate("() => !!Chart.getChart(document.getElementById('mix-chart'))"), (
                "no Chart.js chart on #mix-chart"
            )
            expect(board.locator("canvas#timeline-chart")).to_have_count(1)
            expect(board.locator("#mix-list li").first).to_be_visible()
            expect(board.locator("#mix-empty")).to_be_hidden()
            observed["mix"] = board.locator("#mix-list").inner_text()
            # the face-quality gate's count: four sharp frontal webcam faces, all read
            expect(board.locator("#mix-coverage")).to_have_text(
                re.compile(r"^Expression read on \d+ of \d+ faces")
            )

            board.screenshot(path=str(screenshot), full_page=True)

            # --- while streaming, the share buttons are off -----------------------------------
            expect(student.locator("#start-webcam")).to_be_disabled()
            expect(student.locator("#start-screen")).to_be_disabled()

            # --- the teacher ends the session (after confirming); the student page stops -----
            confirmations: list[str] = []
            board.on("dialog", lambda d: (confirmations.append(d.message), d.accept()))
            with board.expect_navigation():
                board.locator("#end-form").get_by_role(
                    "button", name="End session", exact=True
                ).click()
            assert urlsplit(board.url).path == f"/sessions/{session.pk}/report/", board.url
            assert confirmations and confirmations[0].startswith("End the class"), confirmations

            expect(student.locator("#session-state")).to_have_text(
                "Ended by the teacher", timeout=15_000
            )
            # A notification banner says so; "Last error" is for errors only.
            expect(student.locator("#student-notice")).to_be_visible()
            expect(student.locator("#student-notice-text")).to_have_text(
                re.compile(r"^The session has ended\. Thank you!")
            )
            expect(student.locator("#last-error")).to_have_text("none")
            expect(student.locator("#preview-card")).to_be_hidden()
            expect(student.locator("#analysis-state")).to_have_text("Analysis off")
            expect(student.locator("#start-webcam")).to_be_disabled()
            expect(student.locator("#stop")).to_be_disabled()

            assert not board_log.page_errors, str(board_log)
            assert not student_log.page_errors, str(student_log)
        finally:
            browser.close()

    # --- after the browser: screenshot and database ----------------------------------------------
    data = screenshot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000, (len(data), data[:8])
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 1000 and height >= 600, (width, height)

    assert ClassSession.objects.get(pk=session.pk).status == "ended"
    participant = Participant.objects.get(session=session)
    assert participant.display_name == STUDENT_NAME
    assert participant.consent_given_at is not None
    results = FrameResult.objects.filter(participant=participant)
    assert results.filter(face_count=4).exists(), (
        list(results.values_list("seq", "face_count")),
        observed,
    )


def test_board_says_how_many_faces_were_read_and_why_not(live_stack, live_session, chromium_path):
    """A board whose last 10 s hold only faces the quality gate did not read says so."""
    from playwright.sync_api import expect, sync_playwright

    from classroom import services
    from tests.classroom.factories import face_row, store_frame

    teacher, session = live_session
    alan = services.join_session(code=session.join_code, display_name="Alan", consent=True)
    store_frame(
        alan,
        1,
        [
            face_row(None, None, quality_issue="too_small"),
            face_row(None, None, quality_issue="too_small"),
            face_row(None, None, attentive=False, quality_issue="turned_away"),
        ],
    )
    base = live_stack.base_url
    with sync_playwright() as pw:
        browser = launch_chromium(pw, chromium_path)
        try:
            board = browser.new_page()
            log = PageLog(board, "board")
            open_board(board, base, session.pk)
            expect(board.locator("#faces-now")).to_have_text("3")
            expect(board.locator("#mix-coverage")).to_have_text(
                "Expression read on 0 of 3 faces; not read: 2 too small, 1 turned away."
            )
            expect(board.locator("#mix-empty")).to_be_visible()
            expect(board.locator("#mix-empty")).to_have_text(
                "Faces are seen, but none could be read in the last 10 seconds."
            )
            expect(board.locator("#mix-list li")).to_have_count(0)
            assert not log.page_errors, str(log)
        finally:
            browser.close()


def test_a_streaming_student_withdraws_consent_in_chromium(
    live_stack, live_session, fake_camera, chromium_path
):
    """The withdraw button stops the stream at once and deletes the student's rows."""
    from playwright.sync_api import expect, sync_playwright

    from classroom.models import AuditEvent, FrameResult, Participant

    teacher, session = live_session
    base = live_stack.base_url
    with sync_playwright() as pw:
        browser = launch_chromium(pw, chromium_path, fake_camera)
        try:
            ctx = browser.new_context(viewport={"width": 1100, "height": 900})
            ctx.set_default_timeout(20_000)
            student = ctx.new_page()
            log = PageLog(student, "student")
            student.goto(f"{base}/join/?code={session.join_code}")
            student.fill("#id_display_name", STUDENT_NAME)
            student.check("#id_consent")
            with student.expect_navigation():
                student.get_by_role("button", name="Join", exact=True).click()
            student.click("#start-webcam")
            student.wait_for_function(
                """() => parseInt(document.getElementById('frames-acked').textContent, 10) >= 2""",
                timeout=30_000,
            )
            dialogs: list[str] = []

            def accept(dialog) -> None:
                dialogs.append(dialog.message)
                dialog.accept()

            student.on("dialog", accept)
            student.click("#withdraw")
            try:
                student.wait_for_url("**/join/", timeout=15_000)
            except Exception as exc:  # noqa: BLE001 - say what the page shows instead
                raise AssertionError(f"{student.url}\n{student.content()[:2000]}\n{log}") from exc
            assert dialogs and "Withdraw your consent" in dialogs[0], dialogs
            expect(student.locator(".messages")).to_contain_text("You withdrew your consent")
            assert not log.page_errors, str(log)
        finally:
            browser.close()

    participant = Participant.objects.get(session=session, display_name=STUDENT_NAME)
    assert participant.withdrawn_at is not None
    # Frames acknowledged just before the click may still reach the worker: their results are
    # refused for a withdrawn participant, so no row comes back once they have settled.
    time.sleep(3)
    assert not FrameResult.objects.filter(participant=participant).exists()
    assert AuditEvent.objects.filter(action="participant_withdrawn", session=session).exists()
