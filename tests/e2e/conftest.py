"""A real production-mode stack for end-to-end tests.

Starts Daphne (ASGI) and a Celery worker process (prefork, queues ``inference`` and
``default``) as subprocesses against the pytest-django **PostgreSQL** test database and a Redis
database reserved for the run, so tests drive the system exactly as browsers and workers do in
production. Needs ``DATABASE_URL=postgres://...`` and ``REDIS_URL=redis://...`` (``make test``
starts both); the fixture fails, rather than skips, without them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.browser import CHROMIUM, write_y4m

REPO_ROOT = Path(__file__).resolve().parents[2]
E2E_REDIS_DB = int(os.environ.get("ENGAGEMENT_E2E_REDIS_DB", "13"))
"""Redis database reserved for the stack (broker + channel layer); flushed at start."""


@dataclass
class LiveStack:
    """URLs and log files of the running stack."""

    base_url: str
    ws_url: str
    env: dict[str, str]
    web_log: Path
    worker_log: Path
    worker_pid: int
    """The Celery worker's main process (it receives messages; the pool process analyses)."""

    def logs(self) -> str:
        """Both logs, for assertion messages."""
        return (
            f"--- web log ---\n{self.web_log.read_text(errors='replace')[-4000:]}\n"
            f"--- worker log ---\n{self.worker_log.read_text(errors='replace')[-6000:]}"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(predicate, timeout: float, what: str, logs=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs()}")


@pytest.fixture(scope="session")
def live_stack(django_db_setup, django_db_blocker, tmp_path_factory) -> LiveStack:
    """Daphne + Celery worker subprocesses sharing the test database; torn down at the end of the run."""
    from django.conf import settings
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail(
            "end-to-end tests need PostgreSQL: set DATABASE_URL=postgres://... "
            "(`make test` starts PostgreSQL and Redis and sets it)"
        )
    if not settings.REDIS_URL:
        pytest.fail("end-to-end tests need Redis: set REDIS_URL=redis://... (`make test` sets it)")

    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    redis_url = re.sub(r"/\d*$", "", settings.REDIS_URL.rstrip("/")) + f"/{E2E_REDIS_DB}"
    import redis

    redis.Redis.from_url(redis_url).flushdb()

    logs = tmp_path_factory.mktemp("e2e-logs")
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "engagement.settings.test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ENGAGEMENT_EMBEDDED_WORKER": "false",
        # The shared media show 4 faces; the board's figures are checked on them.
        "ENGAGEMENT_MIN_GROUP_SIZE": "1",
        "ENGAGEMENT_WARM_MODELS": "true",
        # A stopped student page learns that the class ended within a second (default 15 s).
        "ENGAGEMENT_STUDENT_STATUS_POLL_S": "1",
        "PYTHONUNBUFFERED": "1",
    }
    web_log, worker_log = logs / "web.log", logs / "worker.log"
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "engagement.asgi:application",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=web_log.open("w"),
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "engagement",
            "worker",
            "-Q",
            "inference,default",
            "-c",
            "1",
            "-P",
            "prefork",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "INFO",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=worker_log.open("w"),
        stderr=subprocess.STDOUT,
    )
    stack = LiveStack(
        f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", env, web_log, worker_log, worker.pid
    )
    try:

        def web_up() -> bool:
            assert web.poll() is None, f"daphne exited\n{stack.logs()}"
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        _wait_for(web_up, 60, "Daphne to listen", stack.logs)
        _wait_for(
            lambda: (
                (worker.poll() is None or pytest.fail(f"worker exited\n{stack.logs()}"))
                and "ready." in worker_log.read_text(errors="replace")
            ),
            180,
            "the Celery worker to be ready",
            stack.logs,
        )
        # The worker warms its models after the fork; give it time before frames (which expire).
        _wait_for(
            lambda: "models warmed" in worker_log.read_text(errors="replace"),
            180,
            "the worker to load its models",
            stack.logs,
        )
        yield stack
    finally:
        for proc in (web, worker):
            proc.terminate()
        for proc in (web, worker):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def fake_camera(tmp_path: Path, webcam_photo: Path) -> Path:
    """The four posed faces as a .y4m clip for ``--use-file-for-fake-video-capture``."""
    return write_y4m(webcam_photo, tmp_path / "webcam_posed_expressions_4.y4m")


@pytest.fixture
def chromium_path() -> str:
    """Debian's Chromium (``deploy/test-services.sh`` installs it); never a downloaded browser."""
    if not (Path(CHROMIUM).is_file() or shutil.which("chromium")):
        pytest.fail(
            f"{CHROMIUM} not found: install Debian's chromium package "
            "(`deploy/test-services.sh start` does as root)"
        )
    return CHROMIUM
