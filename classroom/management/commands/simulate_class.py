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
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from classroom.events import CLOSE_FORBIDDEN, CLOSE_SESSION_ENDED, encode_frame

#: The student page scales a webcam frame to at most this width (issue #2) ...
MAX_WIDTH_PX = 640
#: ... and encodes it as JPEG at quality 0.8 (canvas.toBlob('image/jpeg', 0.8)).
JPEG_QUALITY = 80
#: Distinct frames prepared per media file at most; longer runs loop over them.
MAX_FRAMES_PER_FILE = 300
#: Seconds to wait, after the last frame, for outstanding acks and the last dashboard updates.
DEFAULT_DRAIN_S = 3.0

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


# --- frames: pure helpers (unit-tested) ---------------------------------------------------------


def scaled_size(width: int, height: int, max_width: int = MAX_WIDTH_PX) -> tuple[int, int]:
    """Size of a frame scaled down, like the student page, to at most ``max_width`` pixels wide.

    Args:
        width: Source width in pixels (> 0).
        height: Source height in pixels (> 0).
        max_width: Largest output width in pixels (640 for a webcam, 1280 for a screen share).

    Returns:
        ``(width, height)`` keeping the aspect ratio, rounded to whole pixels (each >= 1); the
        source size unchanged when it is already narrow enough (never upscaled).
    """
    scale = min(1.0, max_width / width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def scale_to_width(image, max_width: int = MAX_WIDTH_PX):
    """Scale an image down to at most ``max_width`` pixels wide (area interpolation).

    Args:
        image: ``uint8`` array ``(H, W, 3)`` (BGR) or ``(H, W)``.
        max_width: Largest output width in pixels.

    Returns:
        The resized array, or ``image`` itself when it is already narrow enough.
    """
    import cv2

    height, width = image.shape[:2]
    size = scaled_size(width, height, max_width)
    if size == (width, height):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def encode_jpeg(image, quality: int = JPEG_QUALITY) -> bytes:
    """Encode an image as JPEG.

    Args:
        image: ``uint8`` array ``(H, W, 3)`` (BGR) or ``(H, W)``.
        quality: JPEG quality 0..100.

    Returns:
        The JPEG bytes.

    Raises:
        ValueError: OpenCV could not encode the image.
    """
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def load_frames(
    path: Path, *, interval_s: float, max_frames: int, max_width: int = MAX_WIDTH_PX
) -> list[bytes]:
    """Prepare the JPEG frames a student would send from one media file.

    An image gives one frame (sent again every interval). A video is sampled every
    ``interval_s`` seconds of video time, as a webcam showing it would be.

    Args:
        path: Image (JPEG, PNG, WebP, ...) or video (anything OpenCV's FFmpeg backend reads).
        interval_s: Seconds between two frames (the session's frame interval), > 0.
        max_frames: Most frames to keep (the run's length in frames, capped).
        max_width: Largest width in pixels; larger frames are scaled down.

    Returns:
        One or more JPEG byte strings, in time order.

    Raises:
        CommandError: The file cannot be read as an image or a video, or has no frames.
    """
    import cv2

    if not path.is_file():
        raise CommandError(f"media file not found: {path}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise CommandError(f"cannot read image: {path}")
        return [encode_jpeg(scale_to_width(image, max_width))]

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise CommandError(f"cannot open video: {path}")
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if fps and math.isfinite(fps) and fps > 0 else 25.0
        step = max(1.0, interval_s * fps)  # video frames per sample
        frames: list[bytes] = []
        index = 0  # index of the next frame the capture returns
        while len(frames) < max_frames:
            if index < round(len(frames) * step):
                ok = capture.grab()  # skip a frame without converting it to BGR
            else:
                ok, image = capture.read()
                if ok:
                    frames.append(encode_jpeg(scale_to_width(image, max_width)))
            if not ok:
                break
            index += 1
    finally:
        capture.release()
    if not frames:
        raise CommandError(f"no frames could be read from: {path}")
    return frames


# --- HTTP and WebSocket clients -----------------------------------------------------------------


class JoinFailed(Exception):
    """The server refused the join form (wrong code, ended session, ...)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


_JOIN_ERROR = re.compile(r'data-join-error="([^"]*)"[^>]*>\s*(.*?)\s*</', re.S)


def parse_join_error(html: str) -> tuple[str, str]:
    """Extract the reason from a re-rendered join page.

    Args:
        html: Body of the join page after a failed ``POST /join/``.

    Returns:
        ``(code, message)``; code is e.g. ``unknown_code`` or ``session_ended``, ``unknown`` when
        the page carries no ``data-join-error`` element.
    """
    match = _JOIN_ERROR.search(html)
    if not match:
        return "unknown", "the join page did not accept the form"
    return match.group(1), " ".join(unescape(re.sub(r"<[^>]+>", " ", match.group(2))).split())


def ws_base(url: str) -> str:
    """``http://host:port`` -> ``ws://host:port`` (``https`` -> ``wss``)."""
    parts = urlsplit(url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}"


def origin_of(url: str) -> str:
    """The ``Origin`` a browser would send for pages under ``url`` (scheme://host[:port])."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def cookie_header(client) -> str:
    """All cookies of an ``httpx.AsyncClient`` as one ``Cookie`` header value."""
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in client.cookies.jar)


async def _post_form(client, path: str, data: dict[str, str]):
    """POST a form the way a browser does: CSRF token from the cookie, Referer of the form page."""
    token = client.cookies.get("csrftoken", "")
    return await client.post(
        path,
        data={"csrfmiddlewaretoken": token, **data},
        headers={"Referer": f"{str(client.base_url).rstrip('/')}{path}", "X-CSRFToken": token},
    )


@dataclass
class StudentStats:
    """What one simulated student saw."""

    name: str
    sent: int = 0
    acked: int = 0
    rejected: Counter = field(default_factory=Counter)
    results: int = 0
    last_faces: int | None = None
    ended: bool = False
    close_code: int | None = None
    error: str | None = None


class SimulatedStudent:
    """One student: HTTP join, then frames over the WebSocket at the session's interval."""

    def __init__(self, base_url: str, code: str, name: str, *, timeout: float):
        import httpx

        self.base_url = base_url
        self.code = code
        self.stats = StudentStats(name=name)
        self.config: dict[str, Any] = {}
        self.client = httpx.AsyncClient(base_url=base_url, timeout=timeout, follow_redirects=False)
        self._ended = asyncio.Event()

    async def join(self) -> dict[str, Any]:
        """Join through the HTML form and read ``/student/config.json``.

        Returns:
            The student config (``session.frame_interval_s``, ``ws_path``, ...).

        Raises:
            JoinFailed: The form was refused.
            httpx.HTTPError: The server cannot be reached or answered unexpectedly.
        """
        page = await self.client.get("/join/", params={"code": self.code})
        page.raise_for_status()
        response = await _post_form(
            self.client,
            "/join/",
            {"code": self.code, "display_name": self.stats.name, "consent": "on"},
        )
        if response.status_code not in (302, 303):
            raise JoinFailed(*parse_join_error(response.text))
        config = await self.client.get("/student/config.json")
        config.raise_for_status()
        self.config = config.json()
        return self.config

    async def stream(
        self, frames: list[bytes], *, offset: int, seconds: float, drain_s: float
    ) -> None:
        """Send ``frames`` (looped, starting at ``offset``) for ``seconds``, counting replies.

        Args:
            frames: JPEG frames.
            offset: Index of the first frame (so students do not all show the same frame).
            seconds: How long to stream.
            drain_s: After the last frame, how long to wait for outstanding acks.
        """
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        interval = float(self.config["session"]["frame_interval_s"])
        url = ws_base(self.base_url) + self.config.get("ws_path", "/ws/stream/")
        loop = asyncio.get_running_loop()
        async with connect(
            url,
            origin=origin_of(self.base_url),
            additional_headers={"Cookie": cookie_header(self.client)},
            max_size=2**20,
        ) as ws:
            receiver = asyncio.create_task(self._receive(ws))
            deadline = loop.time() + seconds
            next_send = loop.time()
            seq = 0
            try:
                while loop.time() < deadline and not self._ended.is_set():
                    seq += 1
                    frame = frames[(offset + seq - 1) % len(frames)]
                    self.stats.sent += 1
                    await ws.send(encode_frame(seq, time.time() * 1000.0, frame))
                    # A steady schedule, never a catch-up burst (the server rate-limits).
                    next_send = max(next_send + interval, loop.time())
                    wait = min(next_send, deadline) - loop.time()
                    if wait > 0:
                        try:
                            await asyncio.wait_for(self._ended.wait(), timeout=wait)
                        except TimeoutError:
                            pass
                drain_until = loop.time() + drain_s
                while self._pending() and not self._ended.is_set() and loop.time() < drain_until:
                    await asyncio.sleep(0.05)
            except ConnectionClosed:
                pass
            finally:
                await ws.close()
                await receiver
                self.stats.close_code = ws.close_code

    async def _receive(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in ws:
                if isinstance(message, bytes):
                    continue
                reply = json.loads(message)
                kind = reply.get("type")
                if kind == "ack":
                    self.stats.acked += 1
                elif kind == "error":
                    self.stats.rejected[reply.get("code") or "unknown"] += 1
                elif kind == "result":
                    self.stats.results += 1
                    self.stats.last_faces = reply.get("faces")
                elif kind == "session.ended":
                    self.stats.ended = True
                    self._ended.set()
        except ConnectionClosed:
            pass
        finally:
            if ws.close_code == CLOSE_SESSION_ENDED:
                self.stats.ended = True
            self._ended.set()

    def _pending(self) -> int:
        """Frames sent and not yet answered (ack or error)."""
        return self.stats.sent - self.stats.acked - sum(self.stats.rejected.values())

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()


class TeacherWatcher:
    """A teacher's dashboard connection that prints every ``session.update``."""

    def __init__(self, base_url: str, *, timeout: float, write):
        import httpx

        self.base_url = base_url
        self.client = httpx.AsyncClient(base_url=base_url, timeout=timeout, follow_redirects=False)
        self.write = write
        self.updates = 0
        self.last: dict[str, Any] | None = None
        self.session_id: str | None = None
        self.started_at = time.monotonic()

    async def login(self, username: str | None, password: str | None, cookie: str | None) -> None:
        """Log in through the login form, or adopt an existing ``sessionid`` cookie.

        Raises:
            CommandError: The login form was refused.
        """
        if cookie:
            name, _, value = cookie.partition("=")
            if not value:  # a bare value is the session id
                name, value = "sessionid", name
            self.client.cookies.set(name.strip(), value.strip())
            return
        page = await self.client.get("/accounts/login/")
        page.raise_for_status()
        response = await _post_form(
            self.client,
            "/accounts/login/",
            {"username": username or "", "password": password or ""},
        )
        if response.status_code not in (302, 303):
            raise CommandError(
                f"teacher login failed for {username!r} (wrong username or password?)"
            )

    async def find_session(self, code: str) -> dict[str, Any]:
        """The teacher's session with this join code, from ``/sessions.json``.

        Raises:
            CommandError: Not logged in as a teacher, or no session of this teacher has the code.
        """
        response = await self.client.get("/sessions.json", params={"code": code})
        if response.status_code in (302, 403):
            raise CommandError("the teacher connection is not logged in as a teacher")
        response.raise_for_status()
        sessions = response.json()["sessions"]
        if not sessions:
            raise CommandError(f"the teacher has no session with join code {code!r}")
        return sessions[0]

    async def start_session(self, session_id: str) -> None:
        """Start a draft session (the board's Start button)."""
        response = await _post_form(self.client, f"/sessions/{session_id}/start/", {})
        if response.status_code not in (302, 303):
            raise CommandError(
                f"could not start session {session_id} (HTTP {response.status_code})"
            )

    async def watch(self, session_id: str) -> None:
        """Print each dashboard update until cancelled."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        url = f"{ws_base(self.base_url)}/ws/dashboard/{session_id}/"
        try:
            async with connect(
                url,
                origin=origin_of(self.base_url),
                additional_headers={"Cookie": cookie_header(self.client)},
            ) as ws:
                async for message in ws:
                    update = json.loads(message)
                    if update.get("type") == "session.update":
                        self.updates += 1
                        self.last = update
                        self.write(format_update(update, time.monotonic() - self.started_at))
        except InvalidStatus as exc:
            self.write(f"[dashboard] refused: HTTP {exc.response.status_code}")
        except ConnectionClosed as exc:
            if exc.rcvd and exc.rcvd.code == CLOSE_FORBIDDEN:
                self.write("[dashboard] refused: not this session's teacher")

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()


def format_update(update: dict[str, Any], elapsed_s: float) -> str:
    """One line for a ``session.update``: status, faces now, participants, mix, lag.

    Args:
        update: The ``session.update`` payload (CONTRACTS.md).
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
        parser.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout in seconds")
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
        import httpx
        from websockets.exceptions import InvalidStatus, InvalidURI

        base_url = opts["url"].rstrip("/")
        if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
            raise CommandError(f"--url must be http(s)://host[:port], got {opts['url']!r}")
        code = "".join(opts["code"].split()).replace("-", "").upper()
        students = [
            SimulatedStudent(
                base_url, code, f"{opts['name_prefix']} {i + 1}", timeout=opts["timeout"]
            )
            for i in range(opts["students"])
        ]
        watcher = None
        watch_task = None
        try:
            try:
                if opts["teacher_username"] or opts["teacher_cookie"]:
                    watcher = TeacherWatcher(base_url, timeout=opts["timeout"], write=self._write)
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
                # The first join checks the code and the URL; the others then join together.
                config = await students[0].join()
                await asyncio.gather(*(s.join() for s in students[1:]))
            except JoinFailed as exc:
                raise CommandError(f"join failed for code {code!r}: {exc}") from exc
            except httpx.HTTPStatusError as exc:
                raise CommandError(
                    f"unexpected HTTP {exc.response.status_code} from {exc.request.url}"
                ) from exc
            except httpx.HTTPError as exc:
                raise CommandError(f"cannot reach {base_url}: {exc!r}") from exc

            interval = float(config["session"]["frame_interval_s"])
            self._write(
                f"{len(students)} student(s) joined session {config['session']['title']!r} "
                f"({config['session']['status']}, one frame every {interval:g} s)"
            )
            max_frames = min(MAX_FRAMES_PER_FILE, math.ceil(opts["seconds"] / interval) + 1)
            frame_sets = [
                await asyncio.to_thread(
                    load_frames, path, interval_s=interval, max_frames=max_frames
                )
                for path in media
            ]
            for path, frames in zip(media, frame_sets, strict=True):
                self._write(
                    f"media {path.name}: {len(frames)} frame(s) of at most {MAX_WIDTH_PX} px wide"
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
