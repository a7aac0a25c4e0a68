"""Every page and state a teacher or a student sees, checked in Chromium as people use it.

One run walks both main flows **by keyboard only** (Tab, Enter, Space; no mouse): a teacher logs
in, opens a new session and starts it; a student joins with a code, is refused without consent,
consents, shares the (fake) webcam, stops, shares again and stops; the teacher ends the class and
the stopped student page learns it from its status poll. At each of
the eleven pages and states below, at 1280 and at 375 px wide, it

* runs **axe-core** (from npm, ``node_modules/axe-core``; the WCAG 2.0/2.1/2.2 A and AA rules)
  and fails on any *serious* or *critical* violation;
* at 375 px, fails when the page scrolls sideways (the document wider than the viewport);
* saves a full-page screenshot, ``<artifacts>/pages/<state>-<width>.png``, where ``<artifacts>``
  is ``$ENGAGEMENT_TEST_ARTIFACTS`` or ``test-artifacts/`` in the repository (git-ignored).

It also measures the time from the student's "Use my webcam" to the board's first figure (both
stamped with ``Date.now()`` in the same browser) and writes it, with the screenshots' list, to
``<artifacts>/pages/summary.json``; the figure is printed, never asserted (a timing is a
benchmark, not a test).

States: login, session list, new session, fresh board (draft), live board (four faces), join,
consent refused, student before / while / after streaming, the ended session's report.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.browser import PageLog, launch_chromium

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
AXE_JS = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
#: axe-core rule tags run: WCAG 2.0, 2.1 and 2.2 at levels A and AA.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
#: Impacts that fail the test (axe's scale: minor, moderate, serious, critical).
FAILING_IMPACTS = {"serious", "critical"}
#: Viewports, (width, height) in CSS px: a laptop and a small phone (iPhone SE / 8).
VIEWPORTS = {"1280": (1280, 900), "375": (375, 667)}
TEACHER = ("a11y-teacher", "a11y-Teacher-pass-1")
STUDENT_NAME = "Ada"
MAX_TABS = 40


def artifacts_dir() -> Path:
    """``$ENGAGEMENT_TEST_ARTIFACTS/pages`` or ``<repo>/test-artifacts/pages``, emptied."""
    root = Path(os.environ.get("ENGAGEMENT_TEST_ARTIFACTS") or REPO_ROOT / "test-artifacts")
    pages = root / "pages"
    shutil.rmtree(pages, ignore_errors=True)
    pages.mkdir(parents=True)
    return pages


class Audit:
    """Runs axe, the overflow check and a screenshot per state and width; collects problems."""

    def __init__(self, out: Path):
        self.out = out
        self.problems: list[str] = []
        self.minor: list[str] = []
        """Moderate and minor violations: listed in summary.json, not failing."""
        self.screenshots: list[str] = []

    def __call__(self, page, state: str) -> None:
        """Audit ``page`` (left at its original viewport afterwards) as ``state``."""
        original = page.viewport_size
        for label, (width, height) in VIEWPORTS.items():
            page.set_viewport_size({"width": width, "height": height})
            # Let the layout and Chart.js (which resizes on a ResizeObserver) settle.
            page.wait_for_timeout(300)
            shot = self.out / f"{state}-{label}.png"
            page.screenshot(path=str(shot), full_page=True)
            self.screenshots.append(shot.name)
            for violation in run_axe(page):
                targets = [" ".join(map(str, n["target"])) for n in violation["nodes"][:5]]
                found = (
                    f"{state} @ {label} px: axe {violation['id']} ({violation['impact']}): "
                    f"{violation['help']} -> {targets}"
                )
                failing = violation["impact"] in FAILING_IMPACTS
                (self.problems if failing else self.minor).append(found)
            if width <= 400:
                overflow = horizontal_overflow(page)
                if overflow:
                    self.problems.append(f"{state} @ {label} px: scrolls sideways: {overflow}")
        page.set_viewport_size(original)


def run_axe(page) -> list[dict]:
    """axe-core's violations on the page as it is now (axe injected once per document)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE_JS))
    result = page.evaluate(
        """async (tags) => {
             const r = await axe.run(document, {runOnly: {type: 'tag', values: tags},
                                                 resultTypes: ['violations']});
             return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                             nodes: v.nodes.map(n => ({target: n.target}))}));
           }""",
        AXE_TAGS,
    )
    return result


def horizontal_overflow(page) -> str:
    """'' when the document fits the viewport's width, else its width and the widest elements."""
    return page.evaluate(
        """() => {
             const vw = document.documentElement.clientWidth;
             if (document.documentElement.scrollWidth <= vw) { return ''; }
             const wide = [];
             for (const el of document.body.querySelectorAll('*')) {
               const r = el.getBoundingClientRect();
               if (r.right > vw + 1 && r.width > 0) {
                 wide.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
                           (el.className && typeof el.className === 'string'
                              ? '.' + el.className.trim().split(/\\s+/).join('.') : '') +
                           ' right=' + Math.round(r.right));
               }
             }
             return 'document ' + document.documentElement.scrollWidth + ' px wide in ' + vw +
                    ' px: ' + wide.slice(0, 6).join(', ');
           }"""
    )


def top_and_bottom_on_a_phone(page, selector: str) -> tuple[float, float]:
    """The element's top and bottom (CSS px from the top of the page) at 375 x 667, scrolled
    to the top; the viewport is restored afterwards."""
    original = page.viewport_size
    page.set_viewport_size({"width": 375, "height": 667})
    page.evaluate("() => window.scrollTo(0, 0)")
    page.wait_for_timeout(200)
    box = page.evaluate(
        "(s) => { const r = document.querySelector(s).getBoundingClientRect(); return [r.top, r.bottom]; }",
        selector,
    )
    page.set_viewport_size(original)
    return box[0], box[1]


def focused(page) -> str:
    """A short description of the focused element: 'tag#id "accessible text"'."""
    return page.evaluate(
        """() => { const el = document.activeElement;
                   if (!el || el === document.body) { return 'body'; }
                   const text = (el.innerText || el.value || el.getAttribute('aria-label') || '')
                                .trim().slice(0, 40);
                   return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' "' + text + '"'; }"""
    )


def tab_to(page, selector: str) -> list[str]:
    """Press Tab until the element matching ``selector`` has the focus; returns the stops.

    Raises:
        AssertionError: It was not reached in ``MAX_TABS`` presses (the stops are listed).
    """
    stops: list[str] = []
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        stops.append(focused(page))
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            # The focus ring must be visible where the focus is (WCAG 2.4.7).
            outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
            assert outline not in ("none", ""), f"no focus ring on {selector}: {outline}"
            return stops
    raise AssertionError(f"{selector} not reached by Tab; focus went: {stops}")


# --- the test -----------------------------------------------------------------------------------


def test_pages_are_accessible_at_both_widths_and_by_keyboard(
    live_stack, fake_camera, chromium_path
):
    from django.contrib.auth import get_user_model
    from playwright.sync_api import expect, sync_playwright

    from classroom import services
    from classroom.models import FrameResult

    assert AXE_JS.is_file(), f"{AXE_JS} missing: run `npm ci` (make install does)"
    teacher = get_user_model().objects.create_user(
        username=TEACHER[0], password=TEACHER[1], role="teacher"
    )
    # An earlier session, so that the session list has rows with long content.
    services.create_session(teacher=teacher, title="Year 9 chemistry: acids and bases, revision")
    out = artifacts_dir()
    audit = Audit(out)
    base = live_stack.base_url
    timings: dict[str, float] = {}

    with sync_playwright() as pw:
        browser = launch_chromium(pw, chromium_path, fake_camera)
        try:
            # The harness finds what it must: an image without alt text is critical to axe.
            probe = browser.new_page()
            probe.set_content('<html lang="en"><title>probe</title><main><img src="x.png"></main>')
            found = {v["id"]: v["impact"] for v in run_axe(probe)}
            assert found.get("image-alt") == "critical", found
            probe.close()

            # axe is injected as a script: the pages' Content-Security-Policy would refuse it.
            teacher_ctx = browser.new_context(
                viewport={"width": 1280, "height": 900}, bypass_csp=True
            )
            student_ctx = browser.new_context(
                viewport={"width": 1280, "height": 900}, bypass_csp=True
            )
            for ctx in (teacher_ctx, student_ctx):
                ctx.set_default_timeout(20_000)

            # --- teacher, keyboard only: log in, new session, start ----------------------------
            board = teacher_ctx.new_page()
            board_log = PageLog(board, "teacher")
            board.goto(f"{base}/accounts/login/")
            audit(board, "login")
            tab_to(board, "#id_username")
            board.keyboard.type(TEACHER[0])
            tab_to(board, "#id_password")
            board.keyboard.type(TEACHER[1])
            with board.expect_navigation():
                board.keyboard.press("Enter")
            assert board.url.endswith("/sessions/"), board.url
            audit(board, "session-list")

            tab_to(board, "a.button.primary[href$='/sessions/new/']")
            with board.expect_navigation():
                board.keyboard.press("Enter")
            audit(board, "new-session")
            tab_to(board, "#id_title")
            board.keyboard.type("Physics: forces")
            tab_to(board, "button[type=submit].primary")
            with board.expect_navigation():
                board.keyboard.press("Enter")
            expect(board.locator("#board")).to_have_attribute("data-status", "draft")
            audit(board, "board-fresh")
            tab_to(board, "#start-form button")
            with board.expect_navigation():
                board.keyboard.press("Enter")
            expect(board.locator("#board")).to_have_attribute("data-status", "live")
            expect(board.locator("#connection-state")).to_have_text("connected")
            code = board.locator(".join-code code").inner_text().strip()
            # The board stamps its first figure (any face) with the page's clock.
            board.evaluate(
                """() => { const n = document.getElementById('faces-now');
                           new MutationObserver(() => {
                             if (!window.firstFigureAt && n.textContent.trim() !== '0') {
                               window.firstFigureAt = Date.now(); }
                           }).observe(n, {childList: true, characterData: true, subtree: true}); }"""
            )

            # --- student, keyboard only: join, refused without consent, consent --------------
            student = student_ctx.new_page()
            student_log = PageLog(student, "student")
            student.goto(f"{base}/join/")
            audit(student, "join")
            # On a phone, the whole form and its Join button are on the first screen.
            _, join_bottom = top_and_bottom_on_a_phone(student, "form button[type=submit]")
            assert join_bottom <= 667, f"Join button ends at {join_bottom} px on a 667 px screen"
            tab_to(student, "#id_code")
            student.keyboard.type(code)
            tab_to(student, "#id_display_name")
            student.keyboard.type(STUDENT_NAME)
            with student.expect_navigation():
                student.keyboard.press("Enter")
            expect(student.locator("[data-join-error]")).to_have_attribute(
                "data-join-error", "consent_required"
            )
            audit(student, "consent-refused")
            tab_to(student, "#id_consent")
            student.keyboard.press("Space")
            expect(student.locator("#id_consent")).to_be_checked()
            tab_to(student, "button[type=submit]")
            with student.expect_navigation():
                student.keyboard.press("Enter")
            assert student.url.endswith("/student/"), student.url
            expect(student.locator("#preview-card")).to_be_hidden()
            expect(student.locator("#share-hint")).to_be_visible()
            audit(student, "student-before")

            # --- the student shares the webcam; the board's first figure is timed ------------
            stops = tab_to(student, "#start-webcam")
            assert not any("Leave" in s or "Withdraw" in s for s in stops), stops
            student.evaluate(
                """() => { document.getElementById('start-webcam').addEventListener(
                             'click', () => { window.clickedAt = Date.now(); }, true);
                           const sent = document.getElementById('frames-sent');
                           new MutationObserver(() => {
                             if (!window.firstSentAt && sent.textContent.trim() !== '0') {
                               window.firstSentAt = Date.now(); }
                           }).observe(sent, {childList: true, characterData: true, subtree: true}); }"""
            )
            student.keyboard.press("Enter")
            board.wait_for_function("() => !!window.firstFigureAt", timeout=60_000)
            clicked = student.evaluate("() => window.clickedAt")
            timings["click_to_first_board_update_s"] = round(
                (board.evaluate("() => window.firstFigureAt") - clicked) / 1000, 3
            )
            timings["click_to_first_frame_sent_s"] = round(
                (student.evaluate("() => window.firstSentAt") - clicked) / 1000, 3
            )
            expect(student.locator("#preview-card")).to_be_visible()
            # The share buttons are off while streaming: the focus moves to Stop.
            expect(student.locator("#stop")).to_be_focused()
            student.wait_for_function(
                "() => parseInt(document.getElementById('frames-acked').textContent, 10) >= 2",
                timeout=30_000,
            )
            audit(student, "student-streaming")
            # On a phone, Stop and the top of the preview are on the first screen.
            _, stop_bottom = top_and_bottom_on_a_phone(student, "#stop")
            preview_top, _ = top_and_bottom_on_a_phone(student, "#preview")
            assert stop_bottom <= 667 and preview_top <= 667 - 100, (stop_bottom, preview_top)
            board.wait_for_function(
                "() => document.getElementById('faces-now').textContent.trim() === '4'",
                timeout=60_000,
            )
            # The board's live region said so (the first face is a large change).
            expect(board.locator("#board-summary")).to_contain_text("4 faces")
            expect(board.locator("#mix-table tbody tr")).to_have_count(7)
            # The hidden table holds the numbers the visible list shows ("happy 25 %", ...).
            table = dict(
                board.evaluate(
                    """() => [...document.querySelectorAll('#mix-table tbody tr')].map(
                           r => [r.cells[0].textContent, r.cells[1].textContent])"""
                )
            )
            shown = [li.rsplit(" ", 2) for li in board.locator("#mix-list li").all_inner_texts()]
            assert shown and all(table[name] == f"{pct} %" for name, pct, _ in shown), (
                shown,
                table,
            )
            expect(board.locator("#timeline-table tbody tr").first).to_be_attached()
            audit(board, "board-live")
            # The timeline's HTML legend: open on a laptop, collapsed on a phone ...
            legend_open = "() => document.querySelector('#timeline-card details.chart-legend').open"
            # (the audit left the page at 1280 px again; the media query's event may be pending)
            board.wait_for_function(legend_open)
            board.set_viewport_size({"width": 375, "height": 667})
            board.wait_for_function(f"() => !({legend_open})()")
            board.set_viewport_size({"width": 1280, "height": 900})
            board.wait_for_function(legend_open)
            # ... with a keyboard toggle per line.
            legend_faces = board.locator("#timeline-card .legend-item").first
            expect(legend_faces).to_have_text("faces")
            legend_faces.focus()
            board.keyboard.press("Space")
            expect(legend_faces).to_have_attribute("aria-pressed", "false")
            hidden = "() => !Chart.getChart(document.getElementById('timeline-chart')).isDatasetVisible(0)"
            assert board.evaluate(hidden)
            board.keyboard.press("Space")
            expect(legend_faces).to_have_attribute("aria-pressed", "true")
            assert not board.evaluate(hidden)

            # --- keyboard: Stop, then share again -------------------------------------------
            student.keyboard.press("Enter")  # the focus is on Stop
            expect(student.locator("#analysis-state")).to_have_text("Analysis off")
            expect(student.locator("#student-notice")).to_contain_text("Stopped")
            expect(student.locator("#start-webcam")).to_be_focused()
            student.keyboard.press("Enter")
            expect(student.locator("#analysis-state")).to_have_text(
                re.compile(r"^Analysis on: sending your webcam")
            )
            # ... and Stop again: with no socket open, the page polls the session's status.
            expect(student.locator("#stop")).to_be_focused()
            student.keyboard.press("Enter")
            expect(student.locator("#analysis-state")).to_have_text("Analysis off")

            # --- the teacher ends the class (keyboard, after confirming) ----------------------
            dialogs: list[str] = []
            board.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
            tab_to(board, "#end-form button")
            with board.expect_navigation():
                board.keyboard.press("Enter")
            assert dialogs and dialogs[0].startswith("End the class"), dialogs
            assert board.url.endswith("/report/"), board.url
            expect(board.locator("#participants-region")).to_have_attribute("tabindex", "0")
            # The scroll hint shows only when the table is wider than its box.
            hint = board.locator("#participants-scroll-hint")
            expect(hint).to_be_hidden()
            board.set_viewport_size({"width": 375, "height": 667})
            expect(hint).to_be_visible()
            board.set_viewport_size({"width": 1280, "height": 900})
            expect(hint).to_be_hidden()
            expect(board.locator("#timeline-table tbody tr").first).to_be_attached()
            audit(board, "report")

            expect(student.locator("#student-notice")).to_contain_text(
                "The session has ended", timeout=15_000
            )
            expect(student.locator("#last-error")).to_have_text("none")
            expect(student.locator("#preview-card")).to_be_hidden()
            audit(student, "student-after")

            assert not board_log.page_errors, str(board_log)
            assert not student_log.page_errors, str(student_log)
        finally:
            browser.close()

    summary = {
        "viewports": VIEWPORTS,
        "axe_tags": AXE_TAGS,
        "screenshots": audit.screenshots,
        "problems": audit.problems,
        "moderate_or_minor": audit.minor,
        **timings,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"\nclick to first board update: {timings['click_to_first_board_update_s']} s "
        f"(first frame sent after {timings['click_to_first_frame_sent_s']} s)"
    )
    print(f"screenshots: {out}")
    assert len(audit.screenshots) == 2 * 11, audit.screenshots
    assert not audit.problems, "\n".join(audit.problems)
    # The first frame goes as soon as the camera plays: a picture, not the black canvas that
    # Chromium draws before (which cost a whole frame interval before the first figure).
    first = FrameResult.objects.filter(participant__display_name=STUDENT_NAME).order_by("seq")[0]
    assert first.face_count == 4, list(
        FrameResult.objects.values_list("seq", "face_count").order_by("seq")
    )
