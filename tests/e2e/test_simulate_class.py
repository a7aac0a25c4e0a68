"""End to end: ``manage.py simulate_class`` run as its own process against the real stack (Daphne,
a Celery worker process, PostgreSQL, Redis): three simulated students join over HTTP and stream
real media over the WebSocket while a teacher connection counts dashboard updates; the worker's
results land in PostgreSQL for all three."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REPO_ROOT = Path(__file__).resolve().parents[2]
TEACHER_USERNAME = "sim-teacher"
TEACHER_PASSWORD = "e2e-Simulate-pass-1"
STUDENTS = 3
SECONDS = 6


def _summary(stdout: str) -> dict:
    """The ``--json`` summary: the last stdout line that is a JSON object."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            return json.loads(line)
    raise AssertionError(f"no JSON summary line in simulate_class output:\n{stdout[-3000:]}")


def test_simulate_class_three_students(live_stack, webcam_photo, media_dir):
    from django.contrib.auth import get_user_model

    from classroom import services
    from classroom.models import FrameResult, Participant

    teacher = get_user_model().objects.create_user(
        username=TEACHER_USERNAME, password=TEACHER_PASSWORD, role="teacher"
    )
    session = services.create_session(
        teacher=teacher, title="Simulated class", frame_interval_s=1.0
    )
    services.start_session(session, by=teacher)
    video = media_dir / "classroom_cctv.mp4"
    assert webcam_photo.is_file() and video.is_file()

    cmd = [
        sys.executable, "manage.py", "simulate_class",
        "--url", live_stack.base_url,
        "--code", session.join_code,
        "--media", str(webcam_photo), str(video),
        "--students", str(STUDENTS),
        "--seconds", str(SECONDS),
        "--teacher-username", TEACHER_USERNAME,
        "--teacher-password", TEACHER_PASSWORD,
        "--json",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=live_stack.env, capture_output=True, text=True, timeout=240
    )
    output = f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, (
        f"simulate_class exited {proc.returncode}\n{output}\n{live_stack.logs()}"
    )
    print(proc.stdout)  # the run, for `pytest -rP` and the notes
    summary = _summary(proc.stdout)

    assert summary["students"] == STUDENTS, summary
    assert summary["student_errors"] == [], summary
    assert summary["frames_sent"] >= STUDENTS, summary  # at least one frame each
    assert summary["frames_rejected"] == 0 and summary["rejected_by_code"] == {}, summary
    assert summary["frames_acked"] == summary["frames_sent"], summary
    assert summary["session_ended"] is False, summary
    assert summary["dashboard_updates"] and summary["dashboard_updates"] > 0, (
        f"{summary}\n{output}\n{live_stack.logs()}"
    )
    last = summary["last_dashboard_update"]
    assert last and last["status"] == "live", summary
    # The teacher connection printed what it received.
    assert "[dashboard +" in proc.stdout, output
    assert f"{STUDENTS} student(s) joined session 'Simulated class'" in proc.stdout, output

    # Every student joined through the form, with consent.
    participants = list(Participant.objects.filter(session=session).order_by("display_name"))
    assert [p.display_name for p in participants] == [
        f"Simulated student {i}" for i in range(1, STUDENTS + 1)
    ]
    assert all(p.consent_given_at is not None for p in participants)

    # The worker may still be writing the last results: wait until each student has some.
    def with_results() -> set[int]:
        return set(
            FrameResult.objects.filter(participant__session=session).values_list(
                "participant_id", flat=True
            )
        )

    deadline = time.monotonic() + 60
    while len(with_results()) < STUDENTS:
        assert time.monotonic() < deadline, (
            f"FrameResults for {len(with_results())} of {STUDENTS} participants\n"
            f"{summary}\n{live_stack.logs()}"
        )
        time.sleep(0.5)
    assert with_results() == {p.pk for p in participants}
    assert (
        FrameResult.objects.filter(participant__session=session).count() <= summary["frames_acked"]
    )

    # Students 1 and 3 stream the photo of four posed faces (student 2 the classroom video).
    photo_student = participants[0]
    assert FrameResult.objects.filter(participant=photo_student, face_count=4).exists(), list(
        FrameResult.objects.filter(participant=photo_student).values_list("seq", "face_count")
    )
