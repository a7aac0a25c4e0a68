"""The board's spoken summary (``classroom/static/classroom/summary.js``) in real Chromium.

The script is loaded into a blank page and driven with a test clock: what it says, when a change
counts as large, and that the live region is written on a large change or every 30 s, never on
every update. No server is needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.browser import PageLog, launch_chromium

pytestmark = [pytest.mark.browser]

SUMMARY_JS = (
    Path(__file__).resolve().parents[2] / "classroom" / "static" / "classroom" / "summary.js"
)
EXPRESSIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture
def page(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch_chromium(pw, chromium_path)
        try:
            page = browser.new_page()
            log = PageLog(page, "summary")
            page.set_content('<html lang="en"><title>t</title><p id="live" aria-live="polite"></p>')
            page.add_script_tag(path=str(SUMMARY_JS))
            yield page
            assert not log.page_errors, str(log)
        finally:
            browser.close()


def update(faces=12, attention=0.8, mix=None, status="live", suppressed=False, participants=3):
    return {
        "status": status,
        "faces_now": faces,
        "participants": participants,
        "attention": attention,
        "mix": {"neutral": 0.6, "happy": 0.25, "sad": 0.15} if mix is None else mix,
        "suppressed": suppressed,
        "min_group_size": 5,
    }


def text(page, payload) -> str:
    return page.evaluate("([u, e]) => ClassMoodSummary.text(u, e)", [payload, EXPRESSIONS])


def test_the_sentence_names_faces_attention_and_the_two_commonest_expressions(page):
    assert text(page, update()) == (
        "Class now: 12 faces in view, 3 students streaming, attention 80 %, "
        "most common expression neutral 60 %, then happy 25 %."
    )
    assert text(page, update(faces=1, participants=1, mix={"happy": 1.0}, attention=None)) == (
        "Class now: 1 face in view, 1 student streaming, most common expression happy 100 %."
    )
    assert text(page, update(faces=0, mix={})) == (
        "Class now: no faces in view, 3 students streaming."
    )
    # Below the group size, no figure is said either (only the count of faces).
    said = text(page, update(faces=3, suppressed=True))
    assert said.startswith("Class now: 3 faces in view, 3 students streaming. No expression")
    assert "80 %" not in said and "neutral" not in said
    assert text(page, update(status="ended")) == "The session has ended."


@pytest.mark.parametrize(
    ("before", "after", "large"),
    [
        ({"faces": 20}, {"faces": 24}, False),  # 4 < max(3, 25 % of 20 = 5)
        ({"faces": 20}, {"faces": 25}, True),
        ({"faces": 4}, {"faces": 7}, True),  # 3 = max(3, 1)
        ({"faces": 2}, {"faces": 0, "mix": {}}, True),  # everyone left
        ({"attention": 0.50}, {"attention": 0.64}, False),
        ({"attention": 0.50}, {"attention": 0.65}, True),
        ({}, {"mix": {"happy": 0.5, "neutral": 0.4}}, True),  # the commonest changed
        ({}, {"mix": {"neutral": 0.5, "happy": 0.4}}, False),  # same order, other shares
        ({}, {"status": "ended"}, True),
        ({}, {"suppressed": True}, True),
    ],
)
def test_large_changes(page, before, after, large):
    assert (
        page.evaluate(
            """([a, b, e]) => ClassMoodSummary.isLargeChange(
                   ClassMoodSummary.facts(a, e), ClassMoodSummary.facts(b, e))""",
            [update(**before), update(**after), EXPRESSIONS],
        )
        is large
    )


def test_the_live_region_speaks_on_large_changes_and_every_30_s_only(page):
    # A scripted clock (ms): each step sets the time, offers an update or ticks, and records
    # whether the announcer spoke and what the live region holds.
    steps = [
        (0, "offer", update(faces=0, mix={}, attention=None)),  # the page's own snapshot
        (400, "offer", update(faces=4)),  # faces appear: large, said at once
        (1400, "offer", update(faces=4, attention=0.85)),  # small: not said
        (2400, "offer", update(faces=9)),  # large but 2 s after the last: held back
        (3400, "tick", None),  # still within the 5 s gap
        (5500, "tick", None),  # the gap has passed: said now
        (20000, "offer", update(faces=9, attention=0.7)),  # small, 14.5 s later: not said
        (35600, "offer", update(faces=9, attention=0.7)),  # 30.1 s after: said (words changed)
        (70000, "offer", update(faces=9, attention=0.7)),  # same words: never repeated
    ]
    log = page.evaluate(
        """([steps, e]) => {
             let now = 0;
             const node = document.getElementById('live');
             const a = new ClassMoodSummary.Announcer(node, e, () => now);
             return steps.map(([t, kind, u]) => {
               now = t;
               const spoke = kind === 'offer' ? a.offer(u) : a.tick();
               return [spoke, node.textContent, a.count];
             });
           }""",
        [steps, EXPRESSIONS],
    )
    spoke = [s for s, _, _ in log]
    assert spoke == [False, True, False, False, False, True, False, True, False], log
    assert log[1][1].startswith("Class now: 4 faces in view")
    assert log[5][1].startswith("Class now: 9 faces in view")
    assert "attention 70 %" in log[7][1]
    assert log[-1][2] == 3
