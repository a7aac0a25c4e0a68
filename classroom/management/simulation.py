"""Simulated students and a teacher connection over the real HTTP and WebSocket paths.

Shared by the ``simulate_class`` and ``load_test`` management commands. A simulated student does
what a browser does: ``GET /join/`` (CSRF cookie), ``POST /join/`` with the code, a display name
and consent (session cookie), ``GET /student/config.json`` (participant id, frame interval), then
opens ``ws(s)://HOST/ws/stream/?source=webcam|screen`` with that cookie and an ``Origin`` header,
and sends one binary frame per interval: a 12-byte header (seq uint32 BE, captured_at float64 BE
in ms since the Unix epoch) followed by a JPEG scaled to at most 640 px wide, like the student
page's webcam mode. A teacher connection logs in through the login form, creates, starts and
ends sessions through the board's forms, and listens on ``/ws/dashboard/<uuid>/``.

Frames are prepared in memory from real media (OpenCV) and never written anywhere.

Why one module of about 600 lines: it is one job, a scripted browser (the student client, the
teacher client, frame preparation) that the two commands share; its parts only make sense
together and are tested together (``tests/classroom/test_simulate_class.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import CommandError

from classroom.events import CLOSE_FORBIDDEN, CLOSE_SESSION_ENDED
from contracts import StreamSource, encode_frame

#: The student page scales a webcam frame to at most this width ...
MAX_WIDTH_PX = 640
#: ... and a screen share to at most this width (``views.MAX_WIDTH_SCREEN_PX``).
MAX_WIDTH_BY_SOURCE = {"webcam": MAX_WIDTH_PX, "screen": 1280}
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
        ``(code, message)``; code is e.g. ``unknown_code`` or ``throttled``, ``unknown`` when
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
    """One student: HTTP join, then frames over the WebSocket at the session's interval.

    Attributes:
        captured_ms: ``{seq: captured_at}`` (ms since the Unix epoch) of every frame sent.
        acked_at_ms: ``{seq: arrival time of its ack}`` (ms since the Unix epoch).
        rejected_seqs: seqs the server answered with an ``error``.
    """

    def __init__(
        self, base_url: str, code: str, name: str, *, timeout: float, source: str = "webcam"
    ):
        import httpx

        self.base_url = base_url
        self.code = code
        self.source = source
        self.stats = StudentStats(name=name)
        self.config: dict[str, Any] = {}
        self.client = httpx.AsyncClient(base_url=base_url, timeout=timeout, follow_redirects=False)
        self.captured_ms: dict[int, float] = {}
        self.acked_at_ms: dict[int, float] = {}
        self.rejected_seqs: set[int] = set()
        self._ended = asyncio.Event()

    @property
    def participant_id(self) -> int | None:
        """The server's id of this participant (from ``/student/config.json``), once joined."""
        participant = self.config.get("participant") or {}
        return participant.get("id")

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
        self,
        frames: list[bytes] | list[dict[str, Any]],
        *,
        offset: int,
        seconds: float,
        drain_s: float,
        start_delay_s: float = 0.0,
    ) -> None:
        """Send ``frames`` (looped, starting at ``offset``) for ``seconds``, counting replies.

        Args:
            frames: JPEG frames, sent as binary frame messages; or, for an on-device session,
                numbers messages (``contracts.device``) without ``seq`` and ``captured_at``,
                sent as JSON text with those two filled in.
            offset: Index of the first frame (so students do not all show the same frame).
            seconds: How long to stream (from the first frame).
            drain_s: After the last frame, how long to wait for outstanding acks.
            start_delay_s: Seconds to wait, once connected, before the first frame (spreads
                many students' frames over the interval, as real clocks are not in step).
        """
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        interval = float(self.config["session"]["frame_interval_s"])
        url = ws_base(self.base_url) + self.config.get("ws_path", "/ws/stream/")
        url += f"?source={self.source}"
        loop = asyncio.get_running_loop()
        async with connect(
            url,
            origin=origin_of(self.base_url),
            additional_headers={"Cookie": cookie_header(self.client)},
            max_size=2**20,
        ) as ws:
            receiver = asyncio.create_task(self._receive(ws))
            if start_delay_s > 0:
                await asyncio.sleep(start_delay_s)
            deadline = loop.time() + seconds
            next_send = loop.time()
            seq = 0
            try:
                while loop.time() < deadline and not self._ended.is_set():
                    seq += 1
                    frame = frames[(offset + seq - 1) % len(frames)]
                    captured_ms = time.time() * 1000.0
                    self.captured_ms[seq] = captured_ms
                    self.stats.sent += 1
                    if isinstance(frame, dict):
                        await ws.send(json.dumps({**frame, "seq": seq, "captured_at": captured_ms}))
                    else:
                        await ws.send(encode_frame(seq, captured_ms, frame))
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
                arrived_ms = time.time() * 1000.0
                reply = json.loads(message)
                kind = reply.get("type")
                if kind == "ack":
                    self.stats.acked += 1
                    self.acked_at_ms[reply.get("seq")] = arrived_ms
                elif kind == "error":
                    self.stats.rejected[reply.get("code") or "unknown"] += 1
                    self.rejected_seqs.add(reply.get("seq"))
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


#: What a simulated student streams (``contracts.StreamSource``), as the ``?source=`` of the socket.
SOURCES: tuple[str, ...] = tuple(source.value for source in StreamSource)


def add_client_arguments(parser) -> None:
    """Add the options both commands share: ``--source`` and ``--timeout``."""
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default="webcam",
        help="what the students stream: selects the server's face detection (default webcam)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout in seconds")


JOIN_CONCURRENCY = 20
"""Most joins in flight at once. A class joins over a minute or two, not in one instant, and each
join is a synchronous Django view: Daphne runs every request in a thread of its own, each with
its own PostgreSQL connection, so 500 simultaneous joins would ask for 500 connections
(PostgreSQL's default limit is 100)."""


async def join_all(
    students: list[SimulatedStudent], concurrency: int = JOIN_CONCURRENCY
) -> dict[str, Any]:
    """Join every student: the first alone (it checks the code and the URL), then the others,
    at most ``concurrency`` at a time.

    Returns:
        The first student's config (``/student/config.json``).

    Raises:
        JoinFailed, httpx.HTTPError: as :meth:`SimulatedStudent.join`.
    """
    config = await students[0].join()
    gate = asyncio.Semaphore(max(1, concurrency))

    async def join(student: SimulatedStudent) -> None:
        async with gate:
            await student.join()

    await asyncio.gather(*(join(s) for s in students[1:]))
    return config


@contextlib.contextmanager
def client_errors(base_url: str, code: str | None = None):
    """Turn the clients' failures inside the block into ``CommandError`` with a clear message.

    Args:
        base_url: the server, named in "cannot reach" errors.
        code: the join code, named in join errors.

    Raises:
        CommandError: a join was refused, the server answered an unexpected HTTP status, or it
            could not be reached (connection refused, timeout, ...).
    """
    import httpx

    try:
        yield
    except JoinFailed as exc:
        where = f" for code {code!r}" if code else ""
        raise CommandError(f"join failed{where}: {exc}") from exc
    except httpx.HTTPStatusError as exc:
        raise CommandError(
            f"unexpected HTTP {exc.response.status_code} from {exc.request.url}"
        ) from exc
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach {base_url}: {exc!r}") from exc


class TeacherWatcher:
    """A teacher's HTTP login and dashboard connection.

    Args:
        base_url: ``http(s)://host[:port]`` of the server.
        timeout: HTTP timeout in seconds.
        write: prints one line (refusals of the dashboard socket).
        on_update: called with each ``session.update`` payload and its arrival time (ms since
            the Unix epoch, taken before the JSON is parsed).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        write: Callable[[str], None],
        on_update: Callable[[dict[str, Any], float], None] | None = None,
    ):
        import httpx

        self.base_url = base_url
        self.client = httpx.AsyncClient(base_url=base_url, timeout=timeout, follow_redirects=False)
        self.write = write
        self.on_update = on_update
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

    async def create_session(self, title: str, frame_interval_s: float, **fields: str) -> str:
        """Create a draft session through the form of ``/sessions/new/``.

        Args:
            title: The session's title.
            frame_interval_s: Seconds between two frames of a student (0.2 to 10).
            **fields: Other form fields (e.g. ``analysis``), sent as they are.

        Returns:
            The new session's id (UUID string), from the redirect to its board.

        Raises:
            CommandError: The form was refused or the teacher is not logged in.
        """
        path = "/sessions/new/"
        page = await self.client.get(path)
        if page.status_code != 200:
            raise CommandError(f"cannot open {path} as a teacher (HTTP {page.status_code})")
        response = await _post_form(
            self.client,
            path,
            {"title": title, "frame_interval_s": f"{frame_interval_s:g}", **fields},
        )
        match = re.search(r"/sessions/([0-9a-f-]{36})/", response.headers.get("location", ""))
        if response.status_code not in (302, 303) or not match:
            errors = re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', response.text, re.S)
            reasons = " ".join(unescape(re.sub(r"<[^>]+>", " ", e)) for e in errors).split()
            raise CommandError(
                f"could not create a session (HTTP {response.status_code}): "
                + (" ".join(reasons) or "the form was refused")
            )
        return match.group(1)

    async def session(self, session_id: str) -> dict[str, Any]:
        """The teacher's session with this id, as ``/sessions.json`` lists it.

        Raises:
            CommandError: The session is not in the teacher's list.
        """
        response = await self.client.get("/sessions.json")
        response.raise_for_status()
        for session in response.json()["sessions"]:
            if session["id"] == session_id:
                return session
        raise CommandError(f"session {session_id} is not in the teacher's list")

    async def start_session(self, session_id: str) -> None:
        """Start a draft session (the board's Start button)."""
        response = await _post_form(self.client, f"/sessions/{session_id}/start/", {})
        if response.status_code not in (302, 303):
            raise CommandError(
                f"could not start session {session_id} (HTTP {response.status_code})"
            )

    async def end_session(self, session_id: str) -> None:
        """End a live session (the board's End button)."""
        response = await _post_form(self.client, f"/sessions/{session_id}/end/", {})
        if response.status_code not in (302, 303):
            raise CommandError(f"could not end session {session_id} (HTTP {response.status_code})")

    async def watch(self, session_id: str) -> None:
        """Count each dashboard update and pass it to ``on_update`` until cancelled."""
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
                    arrived_ms = time.time() * 1000.0
                    update = json.loads(message)
                    if update.get("type") == "session.update":
                        self.updates += 1
                        self.last = update
                        if self.on_update is not None:
                            self.on_update(update, arrived_ms)
        except InvalidStatus as exc:
            self.write(f"[dashboard] refused: HTTP {exc.response.status_code}")
        except ConnectionClosed as exc:
            if exc.rcvd and exc.rcvd.code == CLOSE_FORBIDDEN:
                self.write("[dashboard] refused: not this session's teacher")

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()
