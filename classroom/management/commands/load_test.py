"""``python manage.py load_test``: the capacity of a running server, measured over its real paths.

A teacher logs in over HTTP (``--username``/``--password``, or a throwaway teacher created with
the ORM in the database this command is configured with, which must be the server's), creates and
starts a session whose frame interval is ``1 / --fps``, and keeps its dashboard socket open. N
simulated students join over HTTP with consent and stream real media frames over
``/ws/stream/?source=webcam`` at ``--fps`` each, every frame stamped with its capture time
(``classroom.management.simulation``). The command reports:

* frames sent, acknowledged and rejected (the students' sockets);
* frames received, analysed and dropped (the server's counters, from the last dashboard update);
* latency from capture to the first dashboard update whose ``"latest"`` covers the frame (the
  participant's latest analysed seq >= the frame's seq): p50, p95, p99 and max, in ms;
* throughput: frames analysed per second over the streaming time.

Default media: the four webcam pictures of ``$ENGAGEMENT_SHARED_DIR/media/``
``webcam_posed_expressions_4.jpg`` (a 2x2 grid), each cropped to 4:3 and scaled to 640x480 in
memory: one face per frame, webcam-sized, the realistic case. ``--media`` takes any images or
videos instead (scaled to at most 640 px wide, like the student page).

Latency uses the client's clock for both ends, so the server may run anywhere; the numbers include
the dashboard's coalescing interval (``ENGAGEMENT_DASHBOARD_REFRESH_S``).

Example (``deploy/load-test.sh`` starts a production-mode stack and runs this)::

    python manage.py load_test --url http://127.0.0.1:8000 --students 30 --fps 1 --seconds 60

``--on-device`` makes it an on-device session: each student sends a numbers message
(``contracts.device``, one face, :data:`DEVICE_FACES`) instead of a picture, so the run
measures what an on-device student costs the server (validation, recording, the board),
the browser's own work left out (its figures: ``manage.py bench_on_device``).

Why one module of about 550 lines: one command and its report (the student and teacher clients
are in ``classroom.management.simulation``; what remains is the run, the counters, the latency
statistics and the output), tested in ``tests/classroom/test_load_test.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from classroom.choices import MAX_FRAME_INTERVAL_S, MIN_FRAME_INTERVAL_S, AnalysisMode
from classroom.management.simulation import (
    MAX_FRAMES_PER_FILE,
    MAX_WIDTH_BY_SOURCE,
    SimulatedStudent,
    TeacherWatcher,
    add_client_arguments,
    client_errors,
    encode_jpeg,
    join_all,
    load_frames,
)

#: The default media file, under ``$ENGAGEMENT_SHARED_DIR/media/``: a 2x2 grid of webcam frames.
DEFAULT_MEDIA = "webcam_posed_expressions_4.jpg"
DEFAULT_GRID = (2, 2)
#: A webcam frame as the student page sends it (at most 640 px wide, 4:3 cameras).
WEBCAM_SIZE = (640, 480)
#: Seconds to wait after the last frame for acks, analyses and the last dashboard update: longer
#: than the default ENGAGEMENT_FRAME_TTL_S (10 s), so that late frames are analysed or dropped.
DEFAULT_DRAIN_S = 15.0
PERCENTILES = (50, 95, 99)


# --- frames -------------------------------------------------------------------------------------


def grid_cells(image, rows: int, cols: int, size: tuple[int, int] = WEBCAM_SIZE) -> list:
    """Cut a grid of pictures into cells, each centre-cropped to ``size``'s aspect and resized.

    Args:
        image: ``uint8`` array ``(H, W, 3)`` (BGR) holding ``rows x cols`` equal pictures.
        rows: Rows of the grid (>= 1).
        cols: Columns of the grid (>= 1).
        size: ``(width, height)`` of each output cell in pixels.

    Returns:
        ``rows * cols`` arrays of shape ``(height, width, 3)``, row by row.

    Raises:
        ValueError: The grid is empty or its cells are smaller than 2x2 pixels.
    """
    import cv2

    height, width = image.shape[:2]
    if rows < 1 or cols < 1 or height // rows < 2 or width // cols < 2:
        raise ValueError(f"cannot cut a {width}x{height} image into a {rows}x{cols} grid")
    out_w, out_h = size
    cell_h, cell_w = height // rows, width // cols
    # The largest window of the output's aspect ratio inside a cell, centred.
    crop_w = min(cell_w, round(cell_h * out_w / out_h))
    crop_h = min(cell_h, round(cell_w * out_h / out_w))
    cells = []
    for r in range(rows):
        for c in range(cols):
            y = r * cell_h + (cell_h - crop_h) // 2
            x = c * cell_w + (cell_w - crop_w) // 2
            crop = image[y : y + crop_h, x : x + crop_w]
            interpolation = cv2.INTER_AREA if crop_w >= out_w else cv2.INTER_LINEAR
            cells.append(cv2.resize(crop, (out_w, out_h), interpolation=interpolation))
    return cells


#: On-device numbers messages (``contracts.device``) for the four pictures of the default media
#: (surprise, happy, sad, angry; one face each, a box of the 640x480 frame, probabilities and
#: pose of the size a browser sends). The values are illustrative: what the server does with a
#: message does not depend on them. ``seq`` and ``captured_at`` are added when sent.
DEVICE_FACES = (
    ([0.378, 0.271, 0.277, 0.369], [0.011, 0.001, 0.128, 0.018, 0.004, 0.828, 0.01], 4.1, -2.0),
    ([0.362, 0.254, 0.292, 0.39], [0.021, 0.005, 0.016, 0.792, 0.027, 0.009, 0.13], -3.3, -5.4),
    ([0.35, 0.262, 0.298, 0.397], [0.095, 0.012, 0.074, 0.016, 0.329, 0.011, 0.463], -5.1, 2.1),
    ([0.371, 0.283, 0.284, 0.378], [0.768, 0.021, 0.041, 0.035, 0.064, 0.014, 0.057], -6.7, 3.6),
)


def device_messages() -> list[dict[str, Any]]:
    """One numbers message per picture of the default media (:data:`DEVICE_FACES`)."""
    return [
        {
            "type": "analysis",
            "width": WEBCAM_SIZE[0],
            "height": WEBCAM_SIZE[1],
            "faces": [
                {
                    "box": box,
                    "score": 0.9,
                    "probabilities": probabilities,
                    "yaw_deg": yaw,
                    "pitch_deg": pitch,
                    "quality_issue": None,
                }
            ],
            "timings_ms": {"detect": 15.0, "crop": 1.0, "classify": 4.0, "total": 20.0},
        }
        for box, probabilities, yaw, pitch in DEVICE_FACES
    ]


def default_media_path() -> Path:
    """``$ENGAGEMENT_SHARED_DIR/media/webcam_posed_expressions_4.jpg`` (default ``../shared``).

    Raises:
        CommandError: The file does not exist.
    """
    from django.conf import settings

    path = Path(settings.ENGAGEMENT_SHARED_DIR) / "media" / DEFAULT_MEDIA
    if not path.is_file():
        raise CommandError(
            f"default media not found: {path} (set ENGAGEMENT_SHARED_DIR or pass --media FILES)"
        )
    return path


def webcam_frames(path: Path, grid: tuple[int, int] = DEFAULT_GRID) -> list[bytes]:
    """One 640x480 JPEG per picture of a grid image (one face each for the default media).

    Raises:
        CommandError: The image cannot be read.
    """
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CommandError(f"cannot read image: {path}")
    return [encode_jpeg(cell) for cell in grid_cells(image, *grid)]


def create_throwaway_teacher():
    """A teacher with a random name and password, in this command's database (the server's).

    Returns:
        ``(user, password)``; the caller deletes the user (its sessions go with it).

    Raises:
        CommandError: the database refuses (not the server's, or unreachable).
    """
    from django.contrib.auth import get_user_model
    from django.db import DatabaseError

    from classroom.choices import UserRole

    password = secrets.token_urlsafe(18)
    try:
        user = get_user_model().objects.create_user(
            username=f"loadtest-{secrets.token_hex(4)}",
            password=password,
            role=UserRole.TEACHER,
        )
    except DatabaseError as exc:
        raise CommandError(
            f"cannot create a throwaway teacher in this command's database ({exc}); "
            "point DATABASE_URL at the server's database or pass --username/--password"
        ) from exc
    return user, password


# --- measurements (pure) ------------------------------------------------------------------------


def percentiles(values: list[float], qs=PERCENTILES) -> dict[str, float | None]:
    """Percentiles by linear interpolation between closest ranks (numpy's default method).

    Args:
        values: Samples (any order).
        qs: Percentiles in 0..100.

    Returns:
        ``{"p50": ..., ...}`` rounded to 0.1; ``None`` values when there are no samples.
    """
    import numpy as np

    if not values:
        return {f"p{q}": None for q in qs}
    results = np.percentile(np.asarray(values, dtype=np.float64), list(qs))
    return {f"p{q}": round(float(v), 1) for q, v in zip(qs, results, strict=True)}


class LatencyMeter:
    """Capture -> dashboard latency of each frame, from the ``"latest"`` map of the updates.

    A frame counts at the first update whose ``latest[participant]["seq"]`` is >= its seq: from
    then on the board reflects that frame or a newer one of the same student. Frames the server
    rejected are never counted. Each frame is counted once.
    """

    def __init__(self) -> None:
        self.students: dict[int, SimulatedStudent] = {}
        self.covered: dict[int, int] = {}
        self.latencies_ms: list[float] = []

    def add(self, participant_id: int, student: SimulatedStudent) -> None:
        """Follow a student's frames (its ``captured_ms`` and ``rejected_seqs``)."""
        self.students[int(participant_id)] = student
        self.covered.setdefault(int(participant_id), 0)

    def update(self, latest: dict[str, Any] | None, arrived_ms: float) -> int:
        """Account for one dashboard update.

        Args:
            latest: The update's ``"latest"``: ``{"<participant id>": {"seq": int, ...}}``.
            arrived_ms: When the update arrived, ms since the Unix epoch (client clock).

        Returns:
            How many frames this update covered for the first time.
        """
        count = 0
        for key, info in (latest or {}).items():
            try:
                participant_id, seq = int(key), int((info or {}).get("seq"))
            except (TypeError, ValueError):
                continue
            student = self.students.get(participant_id)
            if student is None:
                continue
            for s in range(self.covered[participant_id] + 1, seq + 1):
                captured = student.captured_ms.get(s)
                if captured is not None and s not in student.rejected_seqs:
                    self.latencies_ms.append(arrived_ms - captured)
                    count += 1
            self.covered[participant_id] = max(self.covered[participant_id], seq)
        return count


def summarize(
    *,
    students: list[SimulatedStudent],
    meter: LatencyMeter,
    last_update: dict[str, Any] | None,
    dashboard_updates: int,
    streamed_s: float,
    fps: float,
    session_id: str,
) -> dict[str, Any]:
    """The run's numbers (the ``--json`` line); see the module docstring for their meaning."""
    rejected_by_code: dict[str, int] = {}
    for student in students:
        for code, n in student.stats.rejected.items():
            rejected_by_code[code] = rejected_by_code.get(code, 0) + n
    ack_ms = [
        acked - student.captured_ms[seq]
        for student in students
        for seq, acked in student.acked_at_ms.items()
        if seq in student.captured_ms
    ]
    last = last_update or {}
    analysed = last.get("frames_analysed")
    return {
        "session": session_id,
        "students": len(students),
        "fps": fps,
        "seconds": round(streamed_s, 1),
        "frames_sent": sum(s.stats.sent for s in students),
        "frames_acked": sum(s.stats.acked for s in students),
        "frames_rejected": sum(rejected_by_code.values()),
        "rejected_by_code": rejected_by_code,
        "frames_received": last.get("frames_received"),
        "frames_analysed": analysed,
        "frames_dropped": last.get("frames_dropped"),
        "latency_ms": {
            **percentiles(meter.latencies_ms),
            "max": round(max(meter.latencies_ms), 1) if meter.latencies_ms else None,
        },
        "latency_frames": len(meter.latencies_ms),
        "ack_ms": percentiles(ack_ms, (50, 95)),
        "throughput_fps": round(analysed / streamed_s, 2) if analysed and streamed_s > 0 else 0.0,
        "offered_fps": round(sum(s.stats.sent for s in students) / streamed_s, 2)
        if streamed_s > 0
        else 0.0,
        "server_lag_p95_ms": last.get("lag_p95_ms"),
        "dashboard_updates": dashboard_updates,
        "student_errors": [s.stats.error for s in students if s.stats.error],
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as aligned text lines."""

    def ms(value) -> str:
        return "-" if value is None else f"{value:.0f} ms"

    lat = summary["latency_ms"]
    by_code = ", ".join(f"{c}: {n}" for c, n in sorted(summary["rejected_by_code"].items()))
    lines = [
        "",
        "Load test summary",
        f"  session             {summary['session']}",
        f"  students x fps      {summary['students']} x {summary['fps']:g} for {summary['seconds']:.1f} s",
        f"  frames sent         {summary['frames_sent']}",
        f"  frames acknowledged {summary['frames_acked']}",
        f"  frames rejected     {summary['frames_rejected']}"
        + (f" ({by_code})" if by_code else ""),
        f"  frames received     {summary['frames_received']} (server)",
        f"  frames analysed     {summary['frames_analysed']} (server)",
        f"  frames dropped      {summary['frames_dropped']} (server)",
        f"  latency capture->board  p50 {ms(lat['p50'])}  p95 {ms(lat['p95'])}  "
        f"p99 {ms(lat['p99'])}  max {ms(lat['max'])}  ({summary['latency_frames']} frames)",
        f"  ack latency         p50 {ms(summary['ack_ms']['p50'])}  p95 {ms(summary['ack_ms']['p95'])}",
        f"  throughput          {summary['throughput_fps']:.2f} frames/s analysed "
        f"(offered {summary['offered_fps']:.2f} frames/s)",
        f"  server lag p95      {ms(summary['server_lag_p95_ms'])}",
        f"  dashboard updates   {summary['dashboard_updates']}",
    ]
    lines += [f"  error: {error}" for error in summary["student_errors"]]
    return "\n".join(lines)


def progress_line(
    elapsed_s: float, total_s: float, sent: int, acked: int, analysed, dropped, p95, width=24
) -> str:
    """One progress-bar line, e.g. ``[######......] 15/60 s sent 450 acked 450 ...``."""
    done = 0.0 if total_s <= 0 else min(1.0, max(0.0, elapsed_s / total_s))
    bar = "#" * round(done * width) + "." * (width - round(done * width))
    return (
        f"[{bar}] {min(elapsed_s, total_s):4.0f}/{total_s:g} s  sent {sent}  acked {acked}  "
        f"analysed {'-' if analysed is None else analysed}  "
        f"dropped {'-' if dropped is None else dropped}  "
        f"p95 {'-' if p95 is None else f'{p95:.0f} ms'}"
    )


# --- the command --------------------------------------------------------------------------------


class Command(BaseCommand):
    help = (
        "Load-test a running server: N simulated students stream real frames at F fps over the "
        "WebSocket for S seconds while a teacher dashboard is open; prints frames sent, acked, "
        "rejected, analysed and dropped, and capture->dashboard latency percentiles."
    )

    def add_arguments(self, parser):
        parser.add_argument("--students", type=int, required=True, help="simulated students")
        parser.add_argument("--fps", type=float, default=1.0, help="frames/s per student (1)")
        parser.add_argument("--seconds", type=float, default=30.0, help="seconds to stream (30)")
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000", help="server (http://127.0.0.1:8000)"
        )
        parser.add_argument(
            "--media",
            nargs="+",
            metavar="FILE",
            help=f"images/videos to stream (default: the 4 webcam pictures of {DEFAULT_MEDIA})",
        )
        parser.add_argument("--username", help="teacher to log in as (default: a throwaway one)")
        parser.add_argument("--password", help="the teacher's password")
        parser.add_argument(
            "--keep",
            action="store_true",
            help="keep the throwaway teacher and its session (default: deleted at the end)",
        )
        parser.add_argument(
            "--analysis",
            choices=AnalysisMode.values,
            default=AnalysisMode.EXPRESSION.value,
            help="the session's analysis mode (default expression)",
        )
        parser.add_argument(
            "--on-device",
            action="store_true",
            help="an on-device session: the students send numbers messages (one face each), "
            "not pictures; measures the server's cost per on-device student",
        )
        parser.add_argument(
            "--drain",
            type=float,
            default=DEFAULT_DRAIN_S,
            help=f"seconds to wait for the last results (default {DEFAULT_DRAIN_S:g})",
        )
        add_client_arguments(parser)
        parser.add_argument("--json", action="store_true", help="also print one JSON line")

    def handle(self, *args, **opts):
        if opts["students"] < 1:
            raise CommandError("--students must be at least 1")
        if opts["seconds"] <= 0:
            raise CommandError("--seconds must be positive")
        if not opts["fps"] > 0 or not (
            MIN_FRAME_INTERVAL_S <= 1.0 / opts["fps"] <= MAX_FRAME_INTERVAL_S
        ):
            raise CommandError(
                f"--fps must be within {1 / MAX_FRAME_INTERVAL_S:g}..{1 / MIN_FRAME_INTERVAL_S:g}"
            )
        if bool(opts["username"]) != (opts["password"] is not None):
            raise CommandError("--username and --password go together")
        base_url = opts["url"].rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CommandError(f"--url must be http(s)://host[:port], got {opts['url']!r}")
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        frame_sets = self._frames(opts)

        throwaway = None
        username, password = opts["username"], opts["password"]
        if not username:
            throwaway, password = self._throwaway_teacher()
            username = throwaway.username
        try:
            summary = asyncio.run(self._run(opts, base_url, frame_sets, username, password))
            self.stdout.write(format_summary(summary))
            if opts["json"]:
                self.stdout.write(json.dumps(summary, sort_keys=True))
        finally:
            if throwaway is not None and not opts["keep"]:
                self._delete(throwaway)

    def _delete(self, teacher, tries: int = 5) -> None:
        """Delete the throwaway teacher (cascading to its session and the session's rows).

        The session was ended first, but a result the server was writing as it ended can still
        commit: a delete that collides with it fails on the foreign key and is tried again.
        """
        from django.db import IntegrityError

        for attempt in range(tries):
            try:
                teacher.delete()
                return
            except IntegrityError:
                time.sleep(1.0 + attempt)
        self.stderr.write(f"could not delete the throwaway teacher {teacher.username}; delete it")

    def _frames(self, opts) -> list[list[bytes]] | list[list[dict[str, Any]]]:
        """Per student (cycled): the JPEG frames it streams, or its numbers messages."""
        if opts["on_device"]:
            if opts["media"]:
                raise CommandError("--on-device sends numbers messages: leave out --media")
            return [[message] for message in device_messages()]
        if not opts["media"]:
            return [[frame] for frame in webcam_frames(default_media_path())]
        max_frames = min(MAX_FRAMES_PER_FILE, math.ceil(opts["seconds"] * opts["fps"]) + 1)
        return [
            load_frames(
                Path(p),
                interval_s=1.0 / opts["fps"],
                max_frames=max_frames,
                max_width=MAX_WIDTH_BY_SOURCE[opts["source"]],
            )
            for p in opts["media"]
        ]

    def _throwaway_teacher(self):
        return create_throwaway_teacher()

    def _write(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()

    async def _run(self, opts, base_url, frame_sets, username, password) -> dict[str, Any]:

        fps, seconds, n = opts["fps"], opts["seconds"], opts["students"]
        meter = LatencyMeter()
        watcher = TeacherWatcher(
            base_url,
            timeout=opts["timeout"],
            write=self._write,
            on_update=lambda update, arrived_ms: meter.update(update.get("latest"), arrived_ms),
        )
        students: list[SimulatedStudent] = []
        watch_task = progress = None
        try:
            with client_errors(base_url):
                await watcher.login(username, password, None)
                session_id = await watcher.create_session(
                    f"Load test {n} x {fps:g} fps",
                    1.0 / fps,
                    analysis=opts["analysis"],
                    analysis_site="on-device" if opts["on_device"] else "server",
                )
                await watcher.start_session(session_id)
                code = (await watcher.session(session_id))["join_code"]
                watch_task = asyncio.create_task(watcher.watch(session_id))
                students = [
                    SimulatedStudent(
                        base_url,
                        code,
                        f"Load student {i + 1}",
                        timeout=opts["timeout"],
                        source=opts["source"],
                    )
                    for i in range(n)
                ]
                await join_all(students)
            for student in students:
                meter.add(student.participant_id, student)
            self._write(
                f"session {session_id} live: {n} student(s) joined, streaming {fps:g} fps each "
                f"for {seconds:g} s"
            )

            started = time.monotonic()
            progress = asyncio.create_task(
                self._progress(students, watcher, meter, started, seconds)
            )
            interval = 1.0 / fps
            results = await asyncio.gather(
                *(
                    student.stream(
                        frame_sets[i % len(frame_sets)],
                        offset=i,
                        seconds=seconds,
                        drain_s=min(opts["drain"], 5.0),
                        start_delay_s=interval * i / n,
                    )
                    for i, student in enumerate(students)
                ),
                return_exceptions=True,
            )
            streamed_s = time.monotonic() - started
            for student, result in zip(students, results, strict=True):
                if isinstance(result, BaseException):
                    student.stats.error = f"WebSocket failed: {result!r}"
            if all(s.stats.error for s in students):
                raise CommandError(students[0].stats.error)
            await self._drain(students, watcher, opts["drain"])
            await watcher.end_session(session_id)  # no result is recorded after this
        finally:
            for task in (progress, watch_task):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            for client in [*students, watcher]:
                await client.aclose()
        return summarize(
            students=students,
            meter=meter,
            last_update=watcher.last,
            dashboard_updates=watcher.updates,
            streamed_s=streamed_s,
            fps=fps,
            session_id=session_id,
        )

    @staticmethod
    async def _drain(students, watcher, drain_s: float) -> None:
        """Wait until the server accounted for every acknowledged frame (or ``drain_s`` passed)."""
        deadline = time.monotonic() + drain_s
        acked = sum(s.stats.acked for s in students)
        while time.monotonic() < deadline:
            last = watcher.last or {}
            done = (last.get("frames_analysed") or 0) + (last.get("frames_dropped") or 0)
            if done >= acked:
                return
            await asyncio.sleep(0.1)

    async def _progress(self, students, watcher, meter, started: float, total_s: float) -> None:
        """A progress bar on stderr (redrawn in place on a terminal, a line per 10 s otherwise)."""
        tty = sys.stderr.isatty()
        every = 0.5 if tty else 10.0
        try:
            while True:
                await asyncio.sleep(every)
                self._progress_once(students, watcher, meter, started, total_s, tty)
        finally:
            if tty:
                self.stderr.write("")  # leave the bar's line

    def _progress_once(self, students, watcher, meter, started, total_s, tty) -> None:
        last = watcher.last or {}
        line = progress_line(
            time.monotonic() - started,
            total_s,
            sum(s.stats.sent for s in students),
            sum(s.stats.acked for s in students),
            last.get("frames_analysed"),
            last.get("frames_dropped"),
            percentiles(meter.latencies_ms, (95,))["p95"],
        )
        self.stderr.write(("\r" + line) if tty else line, ending="" if tty else "\n")
        self.stderr.flush()
