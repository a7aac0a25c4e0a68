"""WebSocket consumers: the student's frame stream and the teacher's live dashboard.

Authorisation happens on connect. A refused connection is accepted and then closed with code
4403, so browsers and other clients can read the reason (a close before the handshake reaches
them as a bare HTTP 403 / code 1006).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import weakref
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from django.conf import settings

from classroom import events, realtime, selectors, services
from classroom.choices import FrameErrorCode, SessionStatus, StreamSource

logger = logging.getLogger(__name__)


def stream_source(query_string: bytes | str) -> str | None:
    """The ``source`` query parameter of a stream URL, validated.

    Args:
        query_string: the raw query string of ``/ws/stream/`` (ASGI ``scope["query_string"]``),
            e.g. ``b"source=screen"``.

    Returns:
        ``"webcam"`` or ``"screen"`` (a ``StreamSource`` value, case-insensitive); ``"webcam"``
        when the parameter is absent or empty (clients older than the parameter send webcam
        frames); ``None`` when it is present with any other value, or more than once.
    """
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    values = parse_qs(query_string, keep_blank_values=True).get("source", [])
    if not values:
        return StreamSource.WEBCAM.value
    if len(values) > 1:
        return None
    value = values[0].strip().lower() or StreamSource.WEBCAM.value
    return value if value in StreamSource.values else None


SESSION_STATUS_TTL_S = 1.0
"""How old a stream socket's knowledge of its session's status may be, seconds: a session that
starts is seen within this; one that ends tells its sockets at once (``session.ended``)."""

_session_status: dict[object, tuple[str | None, float]] = {}
"""Session id -> (status, ``time.monotonic()`` when read), shared by the process's sockets."""


class DeviceBatchWriter:
    """Records the process's accepted numbers messages in batches (``services.record_device_batch``).

    One per event loop (:func:`device_writer`). :meth:`submit` queues an item and, if none is
    running, starts the loop task, which waits :attr:`max_wait_s` for more items, records up to
    :attr:`max_batch` of them in one transaction (on the database thread), and repeats until
    the queue is empty. A batch that fails is logged with its size and lost (an acknowledged
    message is recorded at most once, as a frame is analysed at most once).
    """

    max_wait_s = 0.05
    max_batch = 500
    max_queue = 20_000
    """Items waiting at most: 40 s of 500 students' messages. Past it (the database has stalled)
    :meth:`full` says so and the socket refuses messages rather than growing without bound."""

    def __init__(self) -> None:
        self._items: list = []
        self._task: asyncio.Task | None = None

    def full(self) -> bool:
        """Whether :attr:`max_queue` items are waiting."""
        return len(self._items) >= self.max_queue

    def submit(self, item) -> None:
        """Queue one ``services.DeviceItem``; call from the event loop."""
        self._items.append(item)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def flush(self) -> None:
        """Wait until every queued item is recorded (the tests read the rows after it)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        while self._items:
            await asyncio.sleep(self.max_wait_s)
            batch, self._items = self._items[: self.max_batch], self._items[self.max_batch :]
            try:
                await database_sync_to_async(services.record_device_batch)(batch)
            except Exception:
                logger.exception("recording %d on-device analyses failed", len(batch))


_writers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def device_writer() -> DeviceBatchWriter:
    """The running event loop's :class:`DeviceBatchWriter`."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = DeviceBatchWriter()
    return writer


class StudentStreamConsumer(AsyncWebsocketConsumer):
    """``/ws/stream/?source=webcam|screen``: binary frames (or, in an on-device session, JSON
    numbers messages, :mod:`contracts.device`) in, JSON acks and errors out.

    Wire format: :mod:`contracts.frames` and ``classroom.events``. The participant comes from the Django session
    (``scope["session"]``, key ``services.PARTICIPANT_SESSION_KEY``), never from the client's
    messages, so a socket can only send frames as its own participant. ``source`` says what the
    student streams (``choices.StreamSource``; absent = ``webcam``) and selects the worker's
    face-detection settings; any other value is refused: the socket is accepted and closed with
    code 4400 (``events.CLOSE_BAD_REQUEST``) and a reason naming the allowed values. Rejected
    frames get an ``error`` reply and the socket stays open. A text message is an on-device
    session's numbers (``services.check_device_message``, then recorded in batches by
    :class:`DeviceBatchWriter`); in a session analysed on the server it gets
    ``text_not_supported``, and a picture in an on-device session without server fallback gets
    ``pictures_not_accepted``. The socket also joins
    ``realtime.participant_group(id)`` to receive ``frame.result`` (forwarded as ``result``),
    ``session.ended`` (forwarded, then closed with code 4000), ``participant.left`` (the student
    left: forwarded, then closed with 4001) and ``stream.replaced``: one socket per participant,
    the newest wins (a reloaded page), older ones close with 4009.
    """

    participant_id: int | None = None
    group: str | None = None
    source: str = StreamSource.WEBCAM.value
    stream: services.StreamSession | None = None

    @property
    def client_address(self) -> str | None:
        """The peer's address (ASGI ``scope["client"]``; behind a proxy, what the server
        reports), or ``None`` when unknown."""
        client = self.scope.get("client")
        return str(client[0]) if client else None

    @database_sync_to_async
    def _participant(self):
        django_session = self.scope.get("session")
        if django_session is None:
            return None
        participant_id = django_session.get(services.PARTICIPANT_SESSION_KEY)
        if participant_id is None:
            return None
        return selectors.participant_for_stream(participant_id)

    async def connect(self) -> None:
        realtime.remember_loop()
        participant = await self._participant()
        source = stream_source(self.scope.get("query_string", b""))
        if participant is None:
            await self.accept()
            await self.close(code=events.CLOSE_FORBIDDEN)
            return
        if source is None:
            await self.accept()
            await self.close(
                code=events.CLOSE_BAD_REQUEST,
                reason=f"source must be one of: {', '.join(StreamSource.values)}",
            )
            return
        self.source = source
        self.participant_id = participant.pk
        session = participant.session
        expressions = await database_sync_to_async(selectors.expressions_on)(session)
        self.group = realtime.participant_group(participant.pk)
        # Older sockets of this participant close; this one joins the group after telling them.
        await self.channel_layer.group_send(
            self.group, {"type": events.STREAM_REPLACED, "keep": self.channel_name}
        )
        await self.channel_layer.group_add(self.group, self.channel_name)
        # The status is read after joining the group: a session that ended before this read is
        # seen here, one that ends after it tells this socket (``session.ended``). Read before
        # joining, an end in between would reach neither. Accepting last means a client whose
        # handshake completed is already in the group.
        status = await database_sync_to_async(selectors.session_status)(session.pk)
        _session_status[session.pk] = (status, time.monotonic())
        self.stream = services.StreamSession(
            participant_id=participant.pk,
            session_id=session.pk,
            status=status or SessionStatus.ENDED,
            analysis_site=session.analysis_site,
            frame_interval_s=session.frame_interval_s,
            expressions=expressions,
        )
        await self.accept()
        if self.stream.status == SessionStatus.ENDED:
            await self.session_ended({"type": events.SESSION_ENDED})

    async def disconnect(self, code) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _send_json(self, message: dict) -> None:
        await self.send(text_data=json.dumps(message))

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self.participant_id is None:
            return  # refused socket, closing
        if bytes_data is None:
            await self._receive_analysis(text_data or "")
            return
        try:
            accepted = await database_sync_to_async(services.accept_frame)(
                self.participant_id,
                bytes_data,
                source=self.source,
                client_address=self.client_address,
            )
        except services.FrameRejected as exc:
            await self._send_json(events.error_message(exc.seq, exc.code, exc.message))
            return
        await self._send_json(events.ack_message(accepted.seq))

    async def _receive_analysis(self, text: str) -> None:
        """A text message: an on-device session's numbers (``contracts.device``), checked here
        without the database (``services.check_device_message``), answered at once, and
        recorded with the other sockets' in the next batch (:class:`DeviceBatchWriter`);
        refused with ``text_not_supported`` in a session analysed on the server."""
        received_ms = time.time() * 1000.0
        stream = await self._stream_session()
        writer = device_writer()
        if writer.full():
            await self._send_json(
                events.error_message(
                    services.peek_device_seq(text),
                    FrameErrorCode.RATE_LIMITED,
                    "The server is busy recording; this analysis was skipped.",
                )
            )
            return
        try:
            message = services.check_device_message(
                stream, text, client_address=self.client_address
            )
        except services.FrameRejected as exc:
            writer.submit(
                services.DeviceItem(stream.participant_id, exc.seq, None, None, received_ms)
            )
            await self._send_json(events.error_message(exc.seq, exc.code, exc.message))
            return
        writer.submit(
            services.DeviceItem(
                stream.participant_id,
                message.seq,
                message.result,
                message.captured_at_ms,
                received_ms,
            )
        )
        await self._send_json(events.ack_message(message.seq))

    async def _stream_session(self) -> services.StreamSession:
        """The socket's session as read at connect, its status at most
        :data:`SESSION_STATUS_TTL_S` old (one read per session and interval in the process)."""
        stream = self.stream
        status, read_at = _session_status.get(stream.session_id, (None, 0.0))
        now = time.monotonic()
        if status is None or now - read_at > SESSION_STATUS_TTL_S:
            status = await database_sync_to_async(selectors.session_status)(stream.session_id)
            if len(_session_status) > 1000:  # forget sessions not asked about for a minute
                for key, (_, at) in list(_session_status.items()):
                    if now - at > 60.0:
                        del _session_status[key]
            _session_status[stream.session_id] = (status, now)
        return dataclasses.replace(stream, status=status or SessionStatus.ENDED)

    async def frame_result(self, event: dict) -> None:
        """Channel event ``frame.result``: one of this participant's frames was analysed."""
        await self._send_json(events.result_message(event["seq"], event["faces"]))

    async def frame_dropped(self, event: dict) -> None:
        """Channel event ``frame.dropped``: an acknowledged frame will not be analysed."""
        await self._send_json(events.dropped_message(event["seq"], event["reason"]))

    async def session_ended(self, event: dict) -> None:
        """Channel event ``session.ended``: tell the student, then close with code 4000."""
        await self._send_json(events.session_ended_message())
        await self.close(code=events.CLOSE_SESSION_ENDED)

    async def participant_left(self, event: dict) -> None:
        """Channel event ``participant.left``: no more frames; tell the page, close with 4001."""
        self.participant_id = None
        await self._send_json(events.participant_left_message())
        await self.close(code=events.CLOSE_LEFT)

    async def stream_replaced(self, event: dict) -> None:
        """Channel event ``stream.replaced``: a newer socket of this participant took over."""
        if event.get("keep") != self.channel_name:
            self.participant_id = None
            await self.close(code=events.CLOSE_REPLACED)


class TeacherDashboardConsumer(AsyncJsonWebsocketConsumer):
    """``/ws/dashboard/<session uuid>/``: live ``session.update`` snapshots for the teacher.

    Only the session's teacher and admins may connect (else close 4403); when that user logs
    out, the socket closes with 4401 (it joins ``realtime.user_group(user id)``). On connect one
    snapshot with the whole timeline is sent (``full_timeline=True``); then each
    ``session.update`` channel event triggers a fresh snapshot with only the timeline's tail
    (``full_timeline=False``; the client merges points by ``"t"``), whose cost does not grow
    with the session's length. Bursts are coalesced: at most one snapshot per
    ``settings.ENGAGEMENT_DASHBOARD_REFRESH_S`` seconds (default 0.25), and the last event of a
    burst is always followed by a snapshot, so the board is never more than about one refresh
    interval (plus the snapshot's own time) behind the database. Messages from the client are
    ignored.
    """

    session_id = None
    group: str | None = None
    user_group: str | None = None
    _refresher: asyncio.Task | None = None
    _dirty = False

    async def connect(self) -> None:
        realtime.remember_loop()
        session = await database_sync_to_async(selectors.session_for)(
            self.scope.get("user"), self.scope["url_route"]["kwargs"]["session_id"]
        )
        await self.accept()
        if session is None:
            await self.close(code=events.CLOSE_FORBIDDEN)
            return
        self.session_id = session.pk
        self.group = realtime.session_group(session.pk)
        self.user_group = realtime.user_group(self.scope["user"].pk)
        await self.channel_layer.group_add(self.user_group, self.channel_name)
        await self.channel_layer.group_add(self.group, self.channel_name)
        snapshot = await database_sync_to_async(selectors.dashboard_snapshot_by_id)(
            self.session_id, full_timeline=True
        )
        if snapshot is not None:
            await self.send_json(snapshot)

    async def disconnect(self, code) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.user_group is not None:
            await self.channel_layer.group_discard(self.user_group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        return  # the dashboard is read-only

    async def user_logged_out(self, event: dict) -> None:
        """Channel event ``user.logged_out``: the teacher logged out; close with 4401."""
        self.session_id = None
        await self.close(code=events.CLOSE_LOGGED_OUT)

    async def session_update(self, event: dict) -> None:
        """Channel event ``session.update``: schedule a (coalesced) snapshot."""
        if self.session_id is None:
            return
        self._dirty = True
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._refresh())

    @property
    def refresh_interval_s(self) -> float:
        """Least seconds between two snapshots (``ENGAGEMENT_DASHBOARD_REFRESH_S``, >= 0)."""
        return max(0.0, float(settings.ENGAGEMENT_DASHBOARD_REFRESH_S))

    async def _refresh(self) -> None:
        try:
            while self._dirty:
                self._dirty = False
                snapshot = await database_sync_to_async(selectors.dashboard_snapshot_by_id)(
                    self.session_id, full_timeline=False
                )
                if snapshot is None:
                    return
                await self.send_json(snapshot)
                await asyncio.sleep(self.refresh_interval_s)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("dashboard refresh of session %s failed", self.session_id)
