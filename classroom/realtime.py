"""Channel-layer groups and sends (called only from ``services``, inside ``on_commit``).

Groups: ``session.<uuid hex>`` (teacher dashboards of a session) and ``participant.<id>``
(the stream socket of one student).

Dashboard events carry no snapshot: ``session.update`` tells each connected
``TeacherDashboardConsumer`` to refresh, and the consumer computes
``selectors.dashboard_snapshot`` itself, coalescing bursts (see ``consumers``). So a worker never
spends time on snapshots, and nothing is computed when no dashboard is open.

Threads and event loops: the web server runs consumers on one asyncio loop, but ``broadcast``
is called from sync code in other threads (Django's sync-to-async thread, or the embedded
Celery worker thread, which has its own loop). ``InMemoryChannelLayer`` is not safe across
loops, so consumers call :func:`remember_loop` on connect, and sends from another thread are
scheduled on that loop with ``asyncio.run_coroutine_threadsafe`` (fire and forget; failures are
logged). With no known running loop (a separate worker process), sends go through one long-lived
event loop per process, running in a daemon thread started on first use (after any fork): fire
and forget too, failures logged, and :func:`flush` (run at exit) waits for those in flight.
``async_to_sync`` would run every send on a new event loop, and channels-redis keeps its
connection pool per loop, so each send would open and close Redis connections: measured here at
~5 ms per send, two sends per analysed frame, a third of the worker's time per frame; waiting
for each send on the long-lived loop still cost ~1.2 ms per send. The in-memory layer (tests,
one process) still uses ``async_to_sync``.

On that sender loop a worker's ``session.update`` sends are coalesced per session
(:data:`WORKER_BROADCAST_INTERVAL_S`): the first goes at once, later ones within the interval
become ONE trailing send at its end, which follows the last commit, so a dashboard never misses
the final state. A dashboard refreshes at most every ``ENGAGEMENT_DASHBOARD_REFRESH_S`` (0.25 s)
anyway, so with 30 frames per second of one class a worker sends 10 instead of 30 events per
second (less CPU for the worker, Redis and the web process).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
import uuid
from collections.abc import Iterable
from concurrent.futures import Future

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from classroom import events

logger = logging.getLogger(__name__)

_server_loop: asyncio.AbstractEventLoop | None = None
_pending: set[asyncio.Task] = set()
_sender: tuple[int, asyncio.AbstractEventLoop] | None = None
_sender_lock = threading.Lock()
_in_flight: set[concurrent.futures.Future] = set()

#: Longest wait, in seconds, of :func:`flush` for the sends still in flight.
FLUSH_TIMEOUT_S = 5.0

WORKER_BROADCAST_INTERVAL_S = 0.1
"""Least seconds between two ``session.update`` sends of one worker process for one session
(coalesced on the sender loop; see the module docstring). A tenth of a second: under half the
dashboard's 0.25 s refresh interval, so it adds at most that to a board update's delay."""

# Sender loop only (touched by coroutines on that loop, so no lock): the loop time of each
# group's last coalesced send, and the groups with a trailing send scheduled.
_last_sent: dict[str, float] = {}
_trailing: set[str] = set()


def session_group(session_id) -> str:
    """Group name of a session's dashboards: ``"session.<uuid hex>"``.

    Args:
        session_id: ``ClassSession.pk`` as a UUID or any string ``uuid.UUID`` accepts.
    """
    if not isinstance(session_id, uuid.UUID):
        session_id = uuid.UUID(str(session_id))
    return f"session.{session_id.hex}"


def participant_group(participant_id: int) -> str:
    """Group name of one participant's stream socket: ``"participant.<id>"``."""
    return f"participant.{int(participant_id)}"


def user_group(user_id: int) -> str:
    """Group name of one user's dashboard sockets: ``"user.<id>"``."""
    return f"user.{int(user_id)}"


def remember_loop(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Record the server's event loop (consumers call this in ``connect``).

    Args:
        loop: the loop; default the running one (must then be called from async code).
    """
    global _server_loop
    _server_loop = loop or asyncio.get_running_loop()


def _log_failure(future: Future | asyncio.Future) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        logger.error("channel layer send failed: %r", exc)


def _sender_loop() -> asyncio.AbstractEventLoop:
    """This process's long-lived loop for channel-layer sends from sync code (started once per
    process id, so a forked worker child starts its own)."""
    global _sender
    with _sender_lock:
        if _sender is None or _sender[0] != os.getpid() or _sender[1].is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="channel-layer-sender", daemon=True
            ).start()
            _sender = (os.getpid(), loop)
        return _sender[1]


async def _coalesced_group_send(layer, group: str, message: dict, interval_s: float) -> None:
    """On the sender loop: send now, or fold into the trailing send of ``group`` (one at most)."""
    loop = asyncio.get_running_loop()
    if group in _trailing:
        return  # the scheduled send carries this update too
    wait = _last_sent.get(group, float("-inf")) + interval_s - loop.time()
    if wait > 0:
        _trailing.add(group)
        try:
            await asyncio.sleep(wait)
        finally:
            _trailing.discard(group)
    if len(_last_sent) > 10_000:  # one entry per session seen: forget the long-quiet ones
        horizon = loop.time() - interval_s
        for name in [name for name, at in _last_sent.items() if at < horizon]:
            del _last_sent[name]
    _last_sent[group] = loop.time()
    await layer.group_send(group, message)


def _send_on_sender_loop(layer, group: str, message: dict, coalesce_s: float = 0.0) -> None:
    send = (
        _coalesced_group_send(layer, group, message, coalesce_s)
        if coalesce_s > 0
        else layer.group_send(group, message)
    )
    future = asyncio.run_coroutine_threadsafe(send, _sender_loop())
    _in_flight.add(future)
    future.add_done_callback(_in_flight.discard)
    future.add_done_callback(_log_failure)


@atexit.register
def flush(timeout: float = FLUSH_TIMEOUT_S) -> bool:
    """Wait for this process's channel-layer sends still in flight on the sender loop.

    Args:
        timeout: most seconds to wait.

    Returns:
        ``True`` when none is left in flight.
    """
    pending = [f for f in list(_in_flight) if not f.done()]
    if not pending:
        return True
    _, not_done = concurrent.futures.wait(pending, timeout=timeout)
    return not not_done


def _group_send(group: str, message: dict, *, coalesce_s: float = 0.0) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    loop = _server_loop
    if loop is None or loop.is_closed() or not loop.is_running():
        loop = running
    if loop is not None and loop is running:
        task = loop.create_task(layer.group_send(group, message))
        _pending.add(task)  # keep a reference until done (asyncio holds tasks weakly)
        task.add_done_callback(_pending.discard)
        task.add_done_callback(_log_failure)
    elif loop is not None:
        asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop).add_done_callback(
            _log_failure
        )
    elif isinstance(layer, InMemoryChannelLayer):
        async_to_sync(layer.group_send)(group, message)
    else:
        _send_on_sender_loop(layer, group, message, coalesce_s)


def broadcast(session) -> None:
    """Tell the session's dashboards to refresh (event ``session.update``).

    From a separate worker process the sends are coalesced per session
    (:data:`WORKER_BROADCAST_INTERVAL_S`); in the web process they go at once.

    Args:
        session: a ``ClassSession`` or its primary key.
    """
    session_id = getattr(session, "pk", session)
    _group_send(
        session_group(session_id),
        {"type": events.SESSION_UPDATE, "session": str(session_id)},
        coalesce_s=WORKER_BROADCAST_INTERVAL_S,
    )


def notify_frame_result(participant_id: int, seq: int, faces: int) -> None:
    """Tell a student's socket that one of its frames was analysed (event ``frame.result``)."""
    _group_send(
        participant_group(participant_id), {"type": events.FRAME_RESULT, "seq": seq, "faces": faces}
    )


def notify_frame_dropped(participant_id: int, seq: int, reason: str) -> None:
    """Tell a student's socket that an acknowledged frame will not be analysed."""
    _group_send(
        participant_group(participant_id),
        {"type": events.FRAME_DROPPED, "seq": seq, "reason": reason},
    )


def notify_session_ended(participant_ids: Iterable[int]) -> None:
    """Tell the students' sockets that the session ended (event ``session.ended``)."""
    for participant_id in participant_ids:
        _group_send(participant_group(participant_id), {"type": events.SESSION_ENDED})


def notify_participant_left(participant_id: int) -> None:
    """Close the student's stream sockets: they left (event ``participant.left``)."""
    _group_send(participant_group(participant_id), {"type": events.PARTICIPANT_LEFT})


def notify_user_logged_out(user_id: int) -> None:
    """Close the user's dashboard sockets: they logged out (event ``user.logged_out``)."""
    _group_send(user_group(user_id), {"type": events.USER_LOGGED_OUT})
