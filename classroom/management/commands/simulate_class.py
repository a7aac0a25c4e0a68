"""``python manage.py simulate_class``: simulated students stream real media to a running server.

Each simulated student does what a browser does: ``GET /join/`` (CSRF cookie), ``POST /join/``
with the code, a display name and consent (session cookie), ``GET /student/config.json`` (frame
interval), then opens ``ws(s)://HOST/ws/stream/`` with that cookie and an ``Origin`` header, and
sends one binary frame per interval: a 12-byte header (seq uint32 BE, captured_at float64 BE in ms)
followed by a JPEG scaled to at most 640 px wide, like the student page's webcam mode. Frames come
from the given images and videos (OpenCV), looped.

With ``--teacher-username``/``--teacher-password`` (or ``--teacher-cookie``) a teacher logs in over
HTTP, finds the session by its join code in ``/sessions.json`` (or takes ``--session``), opens
``/ws/dashboard/<uuid>/`` and prints every ``session.update`` it receives.

Example::

    python manage.py simulate_class --url http://127.0.0.1:8000 --code K7QX2M \\
        --media ../shared/media/webcam_posed_expressions_4.jpg ../shared/media/classroom_cctv.mp4 \\
        --students 3 --seconds 20 --teacher-username teacher --teacher-password secret
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from classroom.events import CLOSE_FORBIDDEN
from classroom.management.simulation import (
    DEFAULT_DRAIN_S,
    MAX_FRAMES_PER_FILE,
    MAX_WIDTH_BY_SOURCE,
    SimulatedStudent,
    TeacherWatcher,
    add_client_arguments,
    client_errors,
    join_all,
    load_frames,
)


def format_update(update: dict[str, Any], elapsed_s: float) -> str:
    """One line for a ``session.update``: status, faces now, participants, mix, lag.

    Args:
        update: The ``session.update`` payload (``selectors.dashboard_snapshot``).
        elapsed_s: Seconds since the simulation started.

    Returns:
        E.g. ``[dashboard +3.1s] live faces_now=4 participants=2 analysed=9 lag=85ms
        mix: happy 50%, neutral 25%, sad 25%``.
    """
    mix = update.get("mix") or {}
    mix_text = ", ".join(
        f"{label} {share * 100:.0f}%" for label, share in sorted(mix.items(), key=lambda kv: -kv[1])
    )
    lag = update.get("lag_ms")
    return (
        f"[dashboard +{elapsed_s:.1f}s] {update.get('status')} faces_now={update.get('faces_now')} "
        f"participants={update.get('participants')} analysed={update.get('frames_analysed')} "
        f"lag={'-' if lag is None else f'{lag:.0f}ms'} mix: {mix_text or '-'}"
    )


# --- the command --------------------------------------------------------------------------------


class Command(BaseCommand):
    help = (
        "Simulate N students joining a session over HTTP and streaming frames of real media over "
        "the WebSocket, optionally with a teacher connection printing each dashboard update."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--url", required=True, help="server base URL, e.g. http://127.0.0.1:8000"
        )
        parser.add_argument("--code", required=True, help="the session's join code")
        parser.add_argument(
            "--media", nargs="+", required=True, metavar="FILE", help="images and/or videos"
        )
        parser.add_argument(
            "--students", type=int, default=1, help="simulated students (default 1)"
        )
        parser.add_argument(
            "--seconds", type=float, default=10.0, help="seconds to stream (default 10)"
        )
        parser.add_argument(
            "--name-prefix", default="Simulated student", help="display name prefix"
        )
        parser.add_argument(
            "--teacher-username", help="log in as this teacher to watch the dashboard"
        )
        parser.add_argument("--teacher-password", help="the teacher's password")
        parser.add_argument(
            "--teacher-cookie",
            help="use an existing teacher login instead: 'sessionid=VALUE' (or VALUE)",
        )
        parser.add_argument(
            "--session", help="session UUID (default: found by --code in the teacher's list)"
        )
        parser.add_argument(
            "--start",
            action="store_true",
            help="start the session first if it is a draft (needs the teacher)",
        )
        parser.add_argument(
            "--drain",
            type=float,
            default=DEFAULT_DRAIN_S,
            help=f"seconds to wait for last acks and dashboard updates (default {DEFAULT_DRAIN_S:g})",
        )
        add_client_arguments(parser)
        parser.add_argument(
            "--json", action="store_true", help="also print the summary as one JSON line"
        )

    def handle(self, *args, **opts):
        if opts["students"] < 1:
            raise CommandError("--students must be at least 1")
        if opts["seconds"] <= 0:
            raise CommandError("--seconds must be positive")
        teacher = bool(opts["teacher_username"] or opts["teacher_cookie"])
        if opts["teacher_username"] and opts["teacher_password"] is None:
            raise CommandError("--teacher-username needs --teacher-password")
        if opts["start"] and not teacher:
            raise CommandError(
                "--start needs a teacher login (--teacher-username/--teacher-password)"
            )
        # One line per HTTP request would drown the dashboard lines.
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        media = [Path(p) for p in opts["media"]]
        for path in media:
            if not path.is_file():
                raise CommandError(f"media file not found: {path}")
        summary = asyncio.run(self._simulate(opts, media))
        self._print_summary(summary)
        if opts["json"]:
            self.stdout.write(json.dumps(summary, sort_keys=True))

    def _write(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()

    async def _simulate(self, opts: dict[str, Any], media: list[Path]) -> dict[str, Any]:
        from websockets.exceptions import InvalidStatus, InvalidURI

        base_url = opts["url"].rstrip("/")
        if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
            raise CommandError(f"--url must be http(s)://host[:port], got {opts['url']!r}")
        code = "".join(opts["code"].split()).replace("-", "").upper()
        students = [
            SimulatedStudent(
                base_url,
                code,
                f"{opts['name_prefix']} {i + 1}",
                timeout=opts["timeout"],
                source=opts["source"],
            )
            for i in range(opts["students"])
        ]
        watcher = None
        watch_task = None
        try:
            with client_errors(base_url, code):
                if opts["teacher_username"] or opts["teacher_cookie"]:
                    watcher = TeacherWatcher(
                        base_url,
                        timeout=opts["timeout"],
                        write=self._write,
                        on_update=lambda update, _arrived_ms: self._write(
                            format_update(update, time.monotonic() - watcher.started_at)
                        ),
                    )
                    await watcher.login(
                        opts["teacher_username"], opts["teacher_password"], opts["teacher_cookie"]
                    )
                    session = {"id": opts["session"], "status": None}
                    if not opts["session"] or opts["start"]:
                        session = await watcher.find_session(code)
                    watcher.session_id = opts["session"] or session["id"]
                    if opts["start"] and session["status"] == "draft":
                        await watcher.start_session(watcher.session_id)
                        self._write(f"started session {watcher.session_id}")
                    watch_task = asyncio.create_task(watcher.watch(watcher.session_id))
                config = await join_all(students)

            interval = float(config["session"]["frame_interval_s"])
            self._write(
                f"{len(students)} student(s) joined session {config['session']['title']!r} "
                f"({config['session']['status']}, one frame every {interval:g} s)"
            )
            max_frames = min(MAX_FRAMES_PER_FILE, math.ceil(opts["seconds"] / interval) + 1)
            frame_sets = [
                await asyncio.to_thread(
                    load_frames,
                    path,
                    interval_s=interval,
                    max_frames=max_frames,
                    max_width=MAX_WIDTH_BY_SOURCE[opts["source"]],
                )
                for path in media
            ]
            for path, frames in zip(media, frame_sets, strict=True):
                self._write(
                    f"media {path.name}: {len(frames)} frame(s) of at most "
                    f"{MAX_WIDTH_BY_SOURCE[opts['source']]} px wide"
                )

            started = time.monotonic()
            results = await asyncio.gather(
                *(
                    student.stream(
                        frame_sets[i % len(frame_sets)],
                        offset=i * max(1, len(frame_sets[i % len(frame_sets)]) // len(students)),
                        seconds=opts["seconds"],
                        drain_s=opts["drain"],
                    )
                    for i, student in enumerate(students)
                ),
                return_exceptions=True,
            )
            streamed_s = time.monotonic() - started
            for student, result in zip(students, results, strict=True):
                if isinstance(result, InvalidStatus):
                    student.stats.error = (
                        f"WebSocket refused with HTTP {result.response.status_code} "
                        "(Origin not in ALLOWED_HOSTS, or the join did not stick)"
                    )
                elif isinstance(result, InvalidURI | OSError | TimeoutError):
                    student.stats.error = f"WebSocket failed: {result!r}"
                elif isinstance(result, BaseException):
                    raise result
                elif student.stats.close_code == CLOSE_FORBIDDEN:
                    student.stats.error = (
                        "WebSocket closed with 4403: the server sees no participant"
                    )
            if all(s.stats.error for s in students):
                raise CommandError(students[0].stats.error)
            if watch_task is not None:
                await asyncio.sleep(opts["drain"])
        finally:
            if watch_task is not None:
                watch_task.cancel()
                await asyncio.gather(watch_task, return_exceptions=True)
            for client in [*students, *([watcher] if watcher else [])]:
                await client.aclose()

        rejected: Counter = Counter()
        for s in students:
            rejected.update(s.stats.rejected)
        return {
            "students": len(students),
            "seconds": round(streamed_s, 1),
            "frames_sent": sum(s.stats.sent for s in students),
            "frames_acked": sum(s.stats.acked for s in students),
            "frames_rejected": sum(rejected.values()),
            "rejected_by_code": dict(rejected),
            "results_received": sum(s.stats.results for s in students),
            "session_ended": any(s.stats.ended for s in students),
            "student_errors": [s.stats.error for s in students if s.stats.error],
            "dashboard_updates": watcher.updates if watcher else None,
            "last_dashboard_update": (
                {
                    k: watcher.last.get(k)
                    for k in ("status", "faces_now", "participants", "frames_analysed", "mix")
                }
                if watcher and watcher.last
                else None
            ),
        }

    def _print_summary(self, summary: dict[str, Any]) -> None:
        rejected = summary["frames_rejected"]
        by_code = ", ".join(
            f"{code}: {n}" for code, n in sorted(summary["rejected_by_code"].items())
        )
        lines = [
            "",
            "Summary",
            f"  students            {summary['students']}",
            f"  seconds             {summary['seconds']:.1f}",
            f"  frames sent         {summary['frames_sent']}",
            f"  frames acked        {summary['frames_acked']}",
            f"  frames rejected     {rejected}" + (f" ({by_code})" if by_code else ""),
            f"  results received    {summary['results_received']}",
        ]
        if summary["session_ended"]:
            lines.append("  the teacher ended the session during the run")
        for error in summary["student_errors"]:
            lines.append(f"  error: {error}")
        if summary["dashboard_updates"] is None:
            lines.append("  dashboard updates   - (no teacher connection)")
        else:
            last = summary["last_dashboard_update"] or {}
            lines.append(
                f"  dashboard updates   {summary['dashboard_updates']}"
                + (
                    f" (last: faces_now={last.get('faces_now')}, participants={last.get('participants')}, "
                    f"frames_analysed={last.get('frames_analysed')})"
                    if last
                    else ""
                )
            )
        self.stdout.write("\n".join(lines))
