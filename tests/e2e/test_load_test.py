"""End to end: ``manage.py load_test`` as its own process against the real stack (Daphne, a Celery
worker process, PostgreSQL, Redis): a throwaway teacher creates and starts a session over HTTP,
three students stream webcam-sized one-face frames over the WebSocket, and the numbers it reports
are consistent with each other and with the database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REPO_ROOT = Path(__file__).resolve().parents[2]
STUDENTS = 3
FPS = 2.0
SECONDS = 5


def _run(live_stack, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "manage.py", "load_test", "--url", live_stack.base_url, *args]
    return subprocess.run(
        cmd, cwd=REPO_ROOT, env=live_stack.env, capture_output=True, text=True, timeout=timeout
    )


def _summary(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            return json.loads(line)
    raise AssertionError(f"no JSON summary line in load_test output:\n{stdout[-3000:]}")


def test_load_test_numbers_are_consistent(live_stack):
    from django.contrib.auth import get_user_model

    from classroom.models import ClassSession

    users_before = get_user_model().objects.count()
    proc = _run(
        live_stack,
        "--students", str(STUDENTS),
        "--fps", str(FPS),
        "--seconds", str(SECONDS),
        "--drain", "20",
        "--json",
    )  # fmt: skip
    output = f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, (
        f"load_test exited {proc.returncode}\n{output}\n{live_stack.logs()}"
    )
    print(proc.stdout)  # the run, for `pytest -rP`
    s = _summary(proc.stdout)

    assert s["students"] == STUDENTS and s["student_errors"] == [], s
    # every student streamed for the whole time at the session's rate
    assert s["frames_sent"] >= STUDENTS * (SECONDS * FPS - 1), s
    assert s["frames_sent"] == s["frames_acked"] + s["frames_rejected"], s
    assert s["frames_rejected"] == 0, s
    # the server's counters: all frames received; none analysed or dropped twice
    assert s["frames_received"] == s["frames_sent"], s
    assert s["frames_analysed"] + s["frames_dropped"] <= s["frames_acked"], s
    assert s["frames_analysed"] > 0, f"{s}\n{output}\n{live_stack.logs()}"
    lat = s["latency_ms"]
    assert 0 < s["latency_frames"] <= s["frames_analysed"] + s["frames_dropped"], s
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"], s
    assert 0 < s["ack_ms"]["p50"] <= s["ack_ms"]["p95"], s
    assert 0 < s["throughput_fps"] <= s["offered_fps"] * 1.5, s
    assert s["dashboard_updates"] > 0, s
    assert "Load test summary" in proc.stdout and "p95" in proc.stdout
    # the progress bar went to stderr (a line per 10 s when not a terminal: none in 5 s is fine)
    assert "Traceback" not in proc.stderr, output

    # the throwaway teacher and its session were deleted at the end
    assert get_user_model().objects.count() == users_before
    assert not ClassSession.objects.filter(pk=s["session"]).exists()


def test_load_test_bad_credentials_and_unreachable_server_are_clear_errors(live_stack):
    proc = _run(
        live_stack, "--students", "1", "--seconds", "1", "--username", "nobody", "--password", "x"
    )
    assert proc.returncode != 0
    assert "teacher login failed for 'nobody'" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr

    proc = subprocess.run(
        [sys.executable, "manage.py", "load_test", "--url", "http://127.0.0.1:9",
         "--students", "1", "--seconds", "1", "--username", "t", "--password", "x", "--timeout", "2"],
        cwd=REPO_ROOT, env=live_stack.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "cannot reach http://127.0.0.1:9" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
