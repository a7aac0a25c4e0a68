"""On-device analysis in a real browser (Debian's headless Chromium) against the real stack.

* End to end: a student of an on-device session streams the fake camera (the four posed faces);
  the page analyses each frame itself and the server receives only JSON numbers (every message
  the page sends on its socket is asserted to be text), records them, and the teacher's board
  shows the four faces; the worker never sees a frame; nothing is fetched from another origin.
* Parity with the worker: the same frames of the shared media analysed by the page and by the
  worker's pipeline (``inference_worker.pipeline.analyze_frame`` with the worker's webcam
  detector and classifier) find the same faces and the same expressions; and the browser's
  classifier (LiteRT.js) agrees with the worker's (LiteRT) on every FER2013 PrivateTest face fed
  as a crop.
* Page weight: what an on-device page downloads (our bundle, the two WASM runtimes, the models).

The stack's Django ORM is used only outside the Playwright blocks (its sync API runs an event
loop in this thread).
"""

from __future__ import annotations

import base64
import json
import re

import cv2
import numpy as np
import pytest

from tests.e2e.browser import PageLog, launch_chromium
from tests.e2e.test_browser import TEACHER_PASSWORD, TEACHER_USERNAME, _text, open_board

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

#: Argmax agreement the issue asks of the browser and the worker on the same faces.
MIN_FRAME_AGREEMENT = 0.98
MIN_CROP_AGREEMENT = 0.995
#: What an on-device page may download, uncompressed (measured: about 21 MB; the issue's figure
#: for the same kind of files is 25 MB raw, 7.4 MB with brotli).
MAX_PAGE_BYTES = 30_000_000


@pytest.fixture
def on_device_student(live_stack):
    """A teacher, a live on-device session of theirs, and a joined student's cookie."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils import timezone

    from classroom import services
    from classroom.models import Participant

    teacher = get_user_model().objects.create_user(
        username=TEACHER_USERNAME, password=TEACHER_PASSWORD, role="teacher"
    )
    session = services.create_session(
        teacher=teacher, title="On-device class", frame_interval_s=0.5, analysis_site="on-device"
    )
    services.start_session(session, by=teacher)
    participant = Participant.objects.create(
        session=session, display_name="Ada", consent_given_at=timezone.now()
    )
    store = SessionStore()
    store[services.PARTICIPANT_SESSION_KEY] = participant.pk
    store.save()
    cookie = {
        "name": settings.SESSION_COOKIE_NAME,
        "value": store.session_key,
        "url": live_stack.base_url,
    }
    return session, participant, cookie


def _student_page(browser, base: str, cookie: dict):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(30_000)
    context.add_cookies([cookie])
    page = context.new_page()
    offsite: list[str] = []
    page.on(
        "request",
        lambda request: None if request.url.startswith(base) else offsite.append(request.url),
    )
    page.goto(f"{base}/student/")
    return page, offsite


def _load_analyser(page) -> None:
    """Load the bundle and the models in the page, as the page does on Share."""
    page.evaluate(
        """async () => {
          const config = JSON.parse(document.getElementById('student-config').textContent);
          await new Promise((resolve, reject) => {
            const s = document.createElement('script');
            s.type = 'module'; s.src = config.ondevice.bundle;
            s.onload = resolve; s.onerror = reject; document.head.appendChild(s);
          });
          window.__analyser = await window.ClassMoodOnDevice.createAnalyser(config.ondevice);
        }"""
    )


def test_an_on_device_student_sends_only_numbers_and_the_board_shows_the_faces(
    live_stack, on_device_student, fake_camera, chromium_path
):
    from playwright.sync_api import expect, sync_playwright

    from classroom.models import FaceObservation, FrameResult, Participant

    session, participant, cookie = on_device_student
    base = live_stack.base_url
    sent: list[object] = []
    worker_log_start = len(live_stack.worker_log.read_text(errors="replace"))
    with sync_playwright() as pw:
        browser = launch_chromium(pw, chromium_path, fake_camera)
        try:
            board_ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
            board = board_ctx.new_page()
            open_board(board, base, session.pk)
            expect(board.locator("#faces-now")).to_have_text("0")

            student, offsite = _student_page(browser, base, cookie)
            log = PageLog(student, "student")
            student.on(
                "websocket",
                lambda ws: ws.on("framesent", lambda payload: sent.append(payload)),
            )
            expect(student.locator("#analysis-site-note")).to_contain_text(
                "No picture leaves this computer"
            )
            student.click("#start-webcam")
            expect(student.locator("#analysis-state")).to_have_text(
                re.compile(r"^Analysis on, in this browser"), timeout=60_000
            )
            student.wait_for_function(
                "() => document.getElementById('faces-last').textContent.trim() === '4'",
                timeout=60_000,
            )
            board.wait_for_function(
                "() => document.getElementById('faces-now').textContent.trim() === '4'",
                timeout=30_000,
            )
            state = _text(student, "#ondevice-state")
            assert state.startswith("running: 4 face(s)"), (state, str(log))
            assert _text(student, "#frames-rejected") == "0", str(log)
            assert _text(student, "#last-error") == "none", str(log)
            student.click("#stop")
        finally:
            browser.close()

    assert sent, "the page sent nothing"
    assert all(isinstance(payload, str) for payload in sent), "a binary frame left the page"
    messages = [json.loads(payload) for payload in sent]
    assert {m["type"] for m in messages} == {"analysis"}
    assert max(len(m["faces"]) for m in messages) == 4
    assert not offsite, f"requests to another origin: {offsite}"

    participant.refresh_from_db()
    assert participant.device_analyses == participant.frames_analysed >= 1
    assert participant.frames_dropped == 0
    frames = FrameResult.objects.filter(participant=participant)
    assert frames.filter(face_count=4).exists()
    labels = set(FaceObservation.objects.filter(frame__in=frames).values_list("label", flat=True))
    assert labels - {None}, "no expression was recorded"
    worker_log = live_stack.worker_log.read_text(errors="replace")[worker_log_start:]
    assert "analyze_frame" not in worker_log, "the worker received a frame"
    assert Participant.objects.get(pk=participant.pk).frames_rejected == 0


def _frames(media_dir) -> list[np.ndarray]:
    """RGB frames of the shared media at the student page's size (longer side <= 640 px)."""
    frames = []

    def add(rgb):
        scale = min(1.0, 640 / max(rgb.shape[:2]))
        size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
        frames.append(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if scale < 1 else rgb)

    for photo in ("webcam_posed_expressions_4.jpg", "group_photo_6_people.jpg"):
        add(cv2.cvtColor(cv2.imread(str(media_dir / photo)), cv2.COLOR_BGR2RGB))
    for clip, step in (
        ("head-pose-face-detection-female-and-male.gif", 6),
        ("head-pose-face-detection-male.gif", 6),
        ("face-demographics-walking-and-pause.gif", 10),
    ):
        capture = cv2.VideoCapture(str(media_dir / clip))
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if index % step == 0:
                add(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
        capture.release()
    return frames


def _iou(a, b) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    h = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def test_the_browser_and_the_worker_read_the_same_faces_the_same_way(
    live_stack, on_device_student, media_dir, chromium_path
):
    from playwright.sync_api import sync_playwright

    from inference_worker import runtime
    from inference_worker.pipeline import analyze_frame

    _, _, cookie = on_device_student
    frames = _frames(media_dir)
    pngs = [cv2.imencode(".png", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes() for f in frames]
    detector, classifier = runtime.get_detector("webcam"), runtime.get_classifier()
    worker = [analyze_frame(f, detector, classifier).to_dict()["faces"] for f in frames]

    with sync_playwright() as pw:
        browser = launch_chromium(pw, chromium_path)
        try:
            page, offsite = _student_page(browser, live_stack.base_url, cookie)
            _load_analyser(page)
            in_browser = page.evaluate(
                """async (pngs) => {
                  const canvas = document.createElement('canvas');
                  const out = [];
                  for (const b64 of pngs) {
                    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                    const bitmap = await createImageBitmap(new Blob([bytes], {type: 'image/png'}));
                    canvas.width = bitmap.width; canvas.height = bitmap.height;
                    canvas.getContext('2d', {willReadFrequently: true}).drawImage(bitmap, 0, 0);
                    out.push((await window.__analyser.analyse(canvas)).faces);
                  }
                  return out;
                }""",
                [base64.b64encode(p).decode("ascii") for p in pngs],
            )
        finally:
            browser.close()
    assert not offsite, offsite

    matched = agreed = read_both = worker_faces = 0
    disagreements, gate_differs = [], []
    for index, (ours, theirs) in enumerate(zip(in_browser, worker, strict=True)):
        for face in theirs:
            worker_faces += 1
            best = max(ours, key=lambda f: _iou(f["box"], face["box"]), default=None)
            if best is None or _iou(best["box"], face["box"]) < 0.5:
                continue
            matched += 1
            if face["quality_issue"] != best["quality_issue"]:
                gate_differs.append((index, face["quality_issue"], best["quality_issue"]))
            if face["label"] is None or best["probabilities"] is None:
                continue
            read_both += 1
            label = int(np.argmax(best["probabilities"]))
            if face["probabilities"][label] == max(face["probabilities"]):
                agreed += 1
            else:
                disagreements.append((index, face["label"], best["probabilities"]))
    print(  # the figures for the README (pytest -s)
        f"parity on {len(frames)} frames: worker faces {worker_faces}, found by the browser "
        f"{matched}, gate differs {len(gate_differs)}, read by both {read_both}, same argmax "
        f"{agreed}"
    )
    assert worker_faces >= 20, worker_faces
    assert matched >= 0.9 * worker_faces, (matched, worker_faces)
    assert len(gate_differs) <= 0.05 * matched, (gate_differs, matched)
    assert agreed >= MIN_FRAME_AGREEMENT * read_both, (agreed, read_both, disagreements)


def test_the_browser_classifier_agrees_with_the_worker_on_privatetest_crops(
    live_stack, on_device_student, shared_dir, chromium_path
):
    from playwright.sync_api import sync_playwright

    from inference_worker import runtime
    from ml.datasets.fer2013 import load_fer2013

    _, _, cookie = on_device_student
    data = load_fer2013(shared_dir / "data" / "fer2013" / "fer2013.csv.gz")
    faces = np.ascontiguousarray(data.splits["PrivateTest"].images.reshape(-1, 48, 48))
    expected = runtime.get_classifier().predict_proba(faces)

    with sync_playwright() as pw:
        browser = launch_chromium(pw, chromium_path)
        try:
            page, _ = _student_page(browser, live_stack.base_url, cookie)
            _load_analyser(page)
            got = page.evaluate(
                """async (b64) => {
                  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                  return Array.from(await window.__analyser.classifyInputs(bytes));
                }""",
                base64.b64encode(faces.tobytes()).decode("ascii"),
            )
        finally:
            browser.close()
    got = np.asarray(got).reshape(-1, 7)
    assert got.shape == expected.shape == (len(faces), 7)
    agreement = float(np.mean(got.argmax(1) == expected.argmax(1)))
    print(
        f"PrivateTest crops: {len(faces)}, argmax agreement {agreement:.4f}, "
        f"max |p difference| {float(np.abs(got - expected).max()):.5f}"
    )
    assert agreement >= MIN_CROP_AGREEMENT, agreement
    assert float(np.abs(got - expected).max()) < 0.02


def test_what_an_on_device_page_downloads(live_stack, on_device_student, chromium_path):
    from playwright.sync_api import sync_playwright

    _, _, cookie = on_device_student
    with sync_playwright() as pw:
        browser = launch_chromium(pw, chromium_path)
        try:
            page, offsite = _student_page(browser, live_stack.base_url, cookie)
            _load_analyser(page)
            resources = page.evaluate(
                """() => performance.getEntriesByType('resource')
                     .map((e) => [e.name, e.encodedBodySize, e.decodedBodySize])"""
            )
        finally:
            browser.close()
    assert not offsite, offsite
    names = [name for name, _, _ in resources]
    for part in ("ondevice.js", ".wasm", "face_detection_full_range_sparse.tflite", "batch1"):
        assert any(part in name for name in names), (part, names)
    total = sum(size for _, _, size in resources)
    print(f"on-device page: {len(resources)} resources, {total:,} bytes decoded")
    assert 1_000_000 < total <= MAX_PAGE_BYTES, (total, resources)


@pytest.mark.parametrize("fallback", [True, False])
def test_a_browser_that_cannot_analyse_says_why_and_falls_back_only_if_allowed(
    live_stack, on_device_student, fake_camera, chromium_path, fallback
):
    """The analysis bundle cannot be downloaded (blocked here): the page says why; with the
    teacher's fallback it offers to send pictures and sends none before the student agrees."""
    from playwright.sync_api import expect, sync_playwright

    from classroom.models import ClassSession, Participant

    session, participant, cookie = on_device_student
    ClassSession.objects.filter(pk=session.pk).update(server_fallback=fallback)
    sent: list[object] = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw, chromium_path, fake_camera)
        try:
            context = browser.new_context()
            context.add_cookies([cookie])
            context.route("**/ondevice/ondevice*.js", lambda route: route.abort())
            page = context.new_page()
            page.on("websocket", lambda ws: ws.on("framesent", lambda p: sent.append(p)))
            page.goto(f"{live_stack.base_url}/student/")
            page.click("#start-webcam")
            if not fallback:
                expect(page.locator("#last-error")).to_contain_text(
                    "this session accepts no pictures"
                )
                expect(page.locator("#use-server")).to_have_count(0)
                expect(page.locator("#ondevice-state")).to_have_text("not available")
                page.wait_for_timeout(1500)
                assert not sent
                return
            expect(page.locator("#student-notice-text")).to_contain_text("could not be downloaded")
            expect(page.locator("#use-server")).to_be_visible()
            page.wait_for_timeout(1500)
            assert not sent, "something was sent before the student chose the server"
            page.click("#use-server")
            expect(page.locator("#analysis-state")).to_have_text(
                re.compile(r"^Analysis on: sending your webcam"), timeout=30_000
            )
            page.wait_for_function(
                "() => parseInt(document.getElementById('frames-acked').textContent, 10) >= 1",
                timeout=30_000,
            )
        finally:
            browser.close()
    assert sent and all(isinstance(payload, bytes) for payload in sent)  # pictures, as chosen
    assert Participant.objects.get(pk=participant.pk).frames_received >= 1
