"""WebSocket consumers through ``WebsocketCommunicator`` with the real session and auth middleware.

Transactional tests: the consumers reach the database from other threads and ``on_commit``
callbacks (task sends, broadcasts) must run.
"""

from __future__ import annotations

import asyncio
import base64

import pytest
from asgiref.sync import async_to_sync
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from classroom import realtime, selectors, services
from classroom.choices import SessionStatus
from classroom.consumers import stream_source
from classroom.models import ClassSession
from classroom.routing import websocket_urlpatterns
from tests.classroom.factories import (
    AdminFactory,
    ClassSessionFactory,
    ParticipantFactory,
    TeacherFactory,
    frame_message,
    image_bytes,
    result_dict,
)

pytestmark = pytest.mark.django_db(transaction=True)

APP = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


def run(scenario, *args):
    """Run an async test scenario to completion from this (sync) test."""
    return async_to_sync(scenario)(*args)


def cookie_headers(session_key: str) -> list[tuple[bytes, bytes]]:
    return [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode())]


def student_headers(participant_id) -> list[tuple[bytes, bytes]]:
    """Headers of a browser whose Django session holds this participant (as the join view does)."""
    store = SessionStore()
    store[services.PARTICIPANT_SESSION_KEY] = participant_id
    store.save()
    return cookie_headers(store.session_key)


def user_headers(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return cookie_headers(client.cookies[settings.SESSION_COOKIE_NAME].value)


async def open_student(headers, path: str = "/ws/stream/") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(APP, path, headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def open_dashboard(session, headers) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(APP, f"/ws/dashboard/{session.pk}/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected  # refusals are accept + close(4403), so the client can read the code
    return communicator


async def expect_close(communicator: WebsocketCommunicator, code: int) -> None:
    message = await communicator.receive_output(timeout=2)
    assert message == {"type": "websocket.close", "code": code}


# --- student stream: rejections -----------------------------------------------------------------


REJECTIONS = {
    "too_large": lambda: frame_message(11, image_bytes("JPEG", (1200, 900), quality=100)),
    "bad_format": lambda: frame_message(12, image_bytes("GIF")),
    "undecodable": lambda: frame_message(13, image_bytes("JPEG", (320, 240))[:500]),
    "too_many_pixels": lambda: frame_message(14, image_bytes("JPEG", (1281, 8))),
    "bad_header": lambda: b"\x00\x00\x00\x0f\x01",
}


@pytest.mark.parametrize("code", list(REJECTIONS))
def test_student_rejection_keeps_socket_open(code, celery_app_mock):
    participant = ParticipantFactory()
    headers = student_headers(participant.pk)
    message = REJECTIONS[code]()
    if code == "too_large":
        assert len(message) - 12 > settings.ENGAGEMENT_MAX_FRAME_BYTES

    async def scenario():
        student = await open_student(headers)
        await student.send_to(bytes_data=message)
        reply = await student.receive_json_from()
        assert reply["type"] == "error"
        assert reply["code"] == code
        assert reply["message"]
        assert reply["seq"] == (
            None if code == "bad_header" else int.from_bytes(message[:4], "big")
        )
        # the socket stays open: the next good frame is acknowledged
        await student.send_to(bytes_data=frame_message(20))
        assert await student.receive_json_from() == {"type": "ack", "seq": 20}
        await student.disconnect()

    run(scenario)
    participant.refresh_from_db()
    assert (participant.frames_received, participant.frames_rejected) == (2, 1)
    assert celery_app_mock.send_task.call_count == 1


def test_student_rate_limited():
    participant = ParticipantFactory(session=ClassSessionFactory(live=True, frame_interval_s=10.0))
    headers = student_headers(participant.pk)

    async def scenario():
        student = await open_student(headers)
        replies = []
        for seq in range(1, 6):
            await student.send_to(bytes_data=frame_message(seq))
            replies.append(await student.receive_json_from())
        assert [r["type"] for r in replies] == ["ack", "ack", "ack", "error", "error"]
        assert [r.get("code") for r in replies[3:]] == ["rate_limited", "rate_limited"]
        assert replies[3]["seq"] == 4
        assert await student.receive_nothing()
        await student.disconnect()

    run(scenario)


@pytest.mark.parametrize("status", ["draft", "ended"])
def test_student_session_not_live(status, celery_app_mock):
    session = ClassSessionFactory(**({"ended": True} if status == "ended" else {}))
    participant = ParticipantFactory(session=session)
    headers = student_headers(participant.pk)

    async def scenario():
        student = await open_student(headers)
        if status == "ended":  # told at once, then closed
            assert await student.receive_json_from() == {"type": "session.ended"}
            await expect_close(student, 4000)
        else:
            await student.send_to(bytes_data=frame_message(5))
            reply = await student.receive_json_from()
            assert (reply["code"], reply["seq"]) == ("session_not_live", 5)
            assert await student.receive_nothing()
        await student.disconnect()

    run(scenario)
    celery_app_mock.send_task.assert_not_called()


def test_student_text_frame_is_an_error():
    headers = student_headers(ParticipantFactory().pk)

    async def scenario():
        student = await open_student(headers)
        await student.send_to(text_data='{"hello": 1}')
        reply = await student.receive_json_from()
        assert reply == {
            "type": "error",
            "seq": None,
            "code": "text_not_supported",
            "message": reply["message"],
        }
        await student.send_to(bytes_data=frame_message(1))
        assert await student.receive_json_from() == {"type": "ack", "seq": 1}
        await student.disconnect()

    run(scenario)


@pytest.mark.parametrize("which", ["no_session", "no_participant_key", "participant_gone"])
def test_student_without_participant_is_refused_4403(which):
    if which == "no_session":
        headers = []
    elif which == "no_participant_key":
        headers = user_headers(TeacherFactory())
    else:
        participant = ParticipantFactory()
        headers = student_headers(participant.pk)
        participant.delete()

    async def scenario():
        student = await open_student(headers)
        await expect_close(student, 4403)
        await student.disconnect()

    run(scenario)


# --- student stream: accepted frames, results, end of session --------------------------------


def test_student_accepted_frame_is_acked_and_dispatched_by_name(celery_app_mock):
    participant = ParticipantFactory()
    headers = student_headers(participant.pk)
    image = image_bytes("JPEG", (160, 120))

    async def scenario():
        student = await open_student(headers)
        await student.send_to(bytes_data=frame_message(1, image, 1_700_000_000_123.5))
        assert await student.receive_json_from() == {"type": "ack", "seq": 1}

        # the worker's result reaches the student's socket
        await database_sync_to_async(services.record_frame_result)(
            participant_id=participant.pk, seq=1, result=result_dict("happy")
        )
        assert await student.receive_json_from(timeout=2) == {
            "type": "result",
            "seq": 1,
            "faces": 1,
        }
        await student.disconnect()

    run(scenario)
    celery_app_mock.send_task.assert_called_once()
    call = celery_app_mock.send_task.call_args
    assert call.args == ("inference_worker.tasks.analyze_frame_task",)
    kwargs = call.kwargs["kwargs"]
    assert kwargs["participant_id"] == participant.pk
    assert kwargs["seq"] == 1
    assert base64.b64decode(kwargs["frame_b64"]) == image
    assert kwargs["captured_at"] == 1_700_000_000_123.5
    assert isinstance(kwargs["received_at"], float) and kwargs["received_at"] > 1.7e12
    assert (kwargs["source"], kwargs["analysis"]) == ("webcam", "expression")  # the defaults
    assert call.kwargs["queue"] == "inference"
    assert call.kwargs["expires"] == settings.ENGAGEMENT_FRAME_TTL_S
    assert (
        "frame_b64" not in call.kwargs["kwargsrepr"]
        and str(len(image)) in call.kwargs["kwargsrepr"]
    )
    # ids only in the headers (an expired message is counted from them, never decoded)
    assert call.kwargs["headers"] == {
        "engagement_participant_id": participant.pk,
        "engagement_seq": 1,
    }


@pytest.mark.parametrize(
    ("query", "analysis", "expected_source"),
    [
        ("?source=screen", "attention", "screen"),
        ("?source=SCREEN", "expression", "screen"),
        ("?source=webcam", "attention", "webcam"),
        ("?source=", "expression", "webcam"),
        ("", "attention", "webcam"),
    ],
)
def test_student_source_and_session_analysis_reach_the_task(
    celery_app_mock, query, analysis, expected_source
):
    session = ClassSessionFactory(live=True, analysis=analysis)
    participant = ParticipantFactory(session=session)
    headers = student_headers(participant.pk)

    async def scenario():
        student = await open_student(headers, f"/ws/stream/{query}")
        await student.send_to(bytes_data=frame_message(4))
        assert await student.receive_json_from() == {"type": "ack", "seq": 4}
        await student.disconnect()

    run(scenario)
    kwargs = celery_app_mock.send_task.call_args.kwargs["kwargs"]
    assert (kwargs["source"], kwargs["analysis"]) == (expected_source, analysis)


@pytest.mark.parametrize(
    "query", ["?source=room", "?source=camera", "?source=webcam&source=screen"]
)
def test_student_unknown_source_is_refused_4400(celery_app_mock, query):
    participant = ParticipantFactory()
    headers = student_headers(participant.pk)

    async def scenario():
        student = await open_student(headers, f"/ws/stream/{query}")
        message = await student.receive_output(timeout=2)
        assert message["type"] == "websocket.close" and message["code"] == 4400
        assert "webcam" in message["reason"] and "screen" in message["reason"]
        await student.disconnect()

    run(scenario)
    celery_app_mock.send_task.assert_not_called()
    participant.refresh_from_db()
    assert participant.frames_received == 0


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", "webcam"),
        (b"source=screen", "screen"),
        (b"other=1&source=Webcam", "webcam"),
        ("source=%20screen%20", "screen"),
        (b"source=", "webcam"),
        (b"source=room", None),
        (b"source=webcam&source=webcam", None),
    ],
)
def test_stream_source_parsing(query, expected):
    assert stream_source(query) == expected


def test_accept_frame_refuses_an_unknown_source(celery_app_mock):
    participant = ParticipantFactory()
    with pytest.raises(ValueError, match="source"):
        services.accept_frame(participant.pk, frame_message(1), source="room")
    celery_app_mock.send_task.assert_not_called()


def test_student_is_told_when_the_session_ends():
    participant = ParticipantFactory()
    session = participant.session
    headers = student_headers(participant.pk)

    async def scenario():
        student = await open_student(headers)
        await database_sync_to_async(services.end_session)(session, by=session.teacher)
        assert await student.receive_json_from(timeout=2) == {"type": "session.ended"}
        await expect_close(student, 4000)
        await student.disconnect()

    run(scenario)


def test_a_session_ending_while_the_student_connects_still_reaches_the_student(monkeypatch):
    """The session ends after the socket read its participant but before it joined its group:
    the notification reaches no socket, so the socket must see the end in its own later read."""
    participant = ParticipantFactory()
    session = participant.session
    headers = student_headers(participant.pk)
    expressions_on = selectors.expressions_on

    def end_meanwhile(class_session):
        fresh = ClassSession.objects.get(pk=class_session.pk)  # as another process would
        services.end_session(fresh, by=fresh.teacher)
        return expressions_on(class_session)

    monkeypatch.setattr(selectors, "expressions_on", end_meanwhile)

    async def scenario():
        student = WebsocketCommunicator(APP, "/ws/stream/", headers=headers)
        connected, _ = await student.connect()
        assert connected
        assert await student.receive_json_from(timeout=2) == {"type": "session.ended"}
        await expect_close(student, 4000)
        await student.disconnect()

    run(scenario)
    session.refresh_from_db()
    assert session.status == SessionStatus.ENDED  # the end really fell inside the connect


# --- teacher dashboard --------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["teacher", "staff"])
def test_dashboard_allows_teacher_and_staff(who):
    session = ClassSessionFactory(live=True)
    user = session.teacher if who == "teacher" else AdminFactory()
    headers = user_headers(user)

    async def scenario():
        board = await open_dashboard(session, headers)
        snapshot = await board.receive_json_from()
        assert snapshot["type"] == "session.update"
        assert snapshot["session"] == str(session.pk)
        assert snapshot["status"] == "live"
        assert {"faces_now", "participants", "frames_analysed", "mix", "timeline", "lag_ms"} <= set(
            snapshot
        )
        await board.disconnect()

    run(scenario)


@pytest.mark.parametrize("who", ["other_teacher", "anonymous"])
def test_dashboard_refuses_others_4403(who):
    session = ClassSessionFactory(live=True)
    headers = user_headers(TeacherFactory()) if who == "other_teacher" else []

    async def scenario():
        board = await open_dashboard(session, headers)
        await expect_close(board, 4403)
        await board.disconnect()

    run(scenario)


def test_dashboard_receives_broadcast_of_new_results():
    participant = ParticipantFactory()
    session = participant.session
    headers = user_headers(session.teacher)

    async def scenario():
        board = await open_dashboard(session, headers)
        first = await board.receive_json_from()
        assert (first["faces_now"], first["frames_analysed"]) == (0, 0)

        await database_sync_to_async(services.record_frame_result)(
            participant_id=participant.pk, seq=1, result=result_dict("happy", "sad")
        )
        update = await board.receive_json_from(timeout=2)
        assert update["type"] == "session.update"
        assert (update["faces_now"], update["participants"], update["frames_analysed"]) == (2, 1, 1)
        assert update["mix"]["happy"] == 0.5
        assert update["lag_ms"] is not None

        await database_sync_to_async(services.end_session)(session, by=session.teacher)
        ended = await board.receive_json_from(timeout=2)
        assert ended["status"] == "ended"
        await board.disconnect()

    run(scenario)


def test_dashboard_coalesces_bursts_and_ends_up_current():
    participant = ParticipantFactory()
    session = participant.session
    headers = user_headers(session.teacher)

    async def scenario():
        board = await open_dashboard(session, headers)
        await board.receive_json_from()
        for seq in range(1, 9):
            await database_sync_to_async(services.record_frame_result)(
                participant_id=participant.pk, seq=seq, result=result_dict("neutral")
            )
        updates = []
        while not await board.receive_nothing(timeout=1.5):
            updates.append(await board.receive_json_from())
        assert 1 <= len(updates) <= 4  # not one per result
        assert updates[-1]["frames_analysed"] == 8  # the trailing update is never lost
        await board.disconnect()

    run(scenario)


def test_dashboard_full_timeline_on_connect_tail_on_refresh(monkeypatch):
    participant = ParticipantFactory()
    session = participant.session
    headers = user_headers(session.teacher)
    calls = []
    real = selectors.dashboard_snapshot_by_id

    def spy(session_id, **kwargs):
        calls.append(kwargs)
        return real(session_id, **kwargs)

    monkeypatch.setattr(selectors, "dashboard_snapshot_by_id", spy)

    async def scenario():
        board = await open_dashboard(session, headers)
        first = await board.receive_json_from()
        assert first["full"] is True
        await database_sync_to_async(services.record_frame_result)(
            participant_id=participant.pk, seq=1, result=result_dict("happy")
        )
        update = await board.receive_json_from(timeout=2)
        assert update["full"] is False
        assert update["latest"] == {str(participant.pk): {"seq": 1, "captured_at": None}}
        await board.disconnect()

    run(scenario)
    assert calls == [{"full_timeline": True}, {"full_timeline": False}]


def test_dashboard_refresh_interval_is_a_setting(settings):
    """Snapshots of one burst are at least ENGAGEMENT_DASHBOARD_REFRESH_S apart."""
    settings.ENGAGEMENT_DASHBOARD_REFRESH_S = 0.8
    participant = ParticipantFactory()
    session = participant.session
    headers = user_headers(session.teacher)

    async def scenario():
        board = await open_dashboard(session, headers)
        await board.receive_json_from()
        loop = asyncio.get_running_loop()
        arrivals = []
        for seq in range(1, 4):
            await database_sync_to_async(services.record_frame_result)(
                participant_id=participant.pk, seq=seq, result=result_dict("neutral")
            )
            if seq == 1:
                await board.receive_json_from(timeout=2)
                arrivals.append(loop.time())
        # seqs 2 and 3 arrived during the pause: one trailing snapshot, after the interval
        update = await board.receive_json_from(timeout=3)
        arrivals.append(loop.time())
        assert update["frames_analysed"] == 3
        assert arrivals[1] - arrivals[0] >= 0.75
        assert await board.receive_nothing(timeout=1.0)
        await board.disconnect()

    run(scenario)


def test_broadcast_from_another_thread_uses_the_server_loop():
    """The embedded worker calls broadcast from its own thread: it must reach the consumer."""
    session = ClassSessionFactory(live=True)
    headers = user_headers(session.teacher)

    async def scenario():
        board = await open_dashboard(session, headers)
        await board.receive_json_from()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, realtime.broadcast, session.pk)
        update = await board.receive_json_from(timeout=2)
        assert update["session"] == str(session.pk)
        await board.disconnect()

    run(scenario)


def _use_redis_channel_layer(settings) -> str:
    """Point the channel layer at a Redis database of the tests' own; returns its URL."""
    import os
    import re

    if not settings.REDIS_URL:
        pytest.fail("this test needs Redis: set REDIS_URL=redis://... (`make test` sets it)")
    redis_db = int(os.environ.get("ENGAGEMENT_E2E_REDIS_DB", "13"))
    url = re.sub(r"/\d*$", "", settings.REDIS_URL.rstrip("/")) + f"/{redis_db}"
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}
    }
    return url


@pytest.mark.integration
def test_sends_from_a_worker_process_reuse_one_loop_and_reach_redis(settings):
    """Without a server loop (a Celery worker process), sends to channels-redis go through one
    long-lived loop per process (one Redis connection pool), not a new loop per send, and
    ``flush`` waits for them."""
    import threading

    from channels_redis.core import RedisChannelLayer

    url = _use_redis_channel_layer(settings)
    session = ClassSessionFactory(live=True)
    receiver = RedisChannelLayer(hosts=[url])
    loops = []

    def send_twice():
        for _ in range(2):
            realtime.broadcast(session.pk)  # returns at once: the send runs on the sender loop
            loops.append(realtime._sender_loop())
        assert realtime.flush(5.0)
        assert not realtime._in_flight

    async def scenario():
        channel = await receiver.new_channel()
        await receiver.group_add(realtime.session_group(session.pk), channel)
        await asyncio.get_running_loop().run_in_executor(None, send_twice)
        for _ in range(2):
            message = await asyncio.wait_for(receiver.receive(channel), 5)
            assert message == {"type": "session.update", "session": str(session.pk)}
        await receiver.flush()

    run(scenario)
    assert loops[0] is loops[1] and loops[0].is_running()
    assert any(t.name == "channel-layer-sender" for t in threading.enumerate())


@pytest.mark.integration
def test_a_workers_burst_of_session_updates_becomes_one_now_and_one_trailing(settings):
    """A worker process coalesces ``session.update`` per session: of 6 broadcasts in a burst the
    dashboards get the first at once and ONE more at the end of the interval (after the last
    commit), while another session's update is not held back by the first session's."""
    import time

    from channels_redis.core import RedisChannelLayer

    url = _use_redis_channel_layer(settings)
    first, other = ClassSessionFactory(live=True), ClassSessionFactory(live=True)
    receiver = RedisChannelLayer(hosts=[url])
    interval = realtime.WORKER_BROADCAST_INTERVAL_S

    def burst() -> float:
        started = time.monotonic()
        for _ in range(5):
            realtime.broadcast(first.pk)
        realtime.broadcast(other.pk)
        realtime.broadcast(first.pk)
        assert realtime.flush(5.0)  # waits for the trailing send too
        return time.monotonic() - started

    async def scenario():
        channels = {}
        for session in (first, other):
            channels[session.pk] = await receiver.new_channel()
            await receiver.group_add(realtime.session_group(session.pk), channels[session.pk])
        burst_s = await asyncio.get_running_loop().run_in_executor(None, burst)
        for _ in range(2):
            message = await asyncio.wait_for(receiver.receive(channels[first.pk]), 5)
            assert message == {"type": "session.update", "session": str(first.pk)}
        other_message = await asyncio.wait_for(receiver.receive(channels[other.pk]), 5)
        assert other_message["session"] == str(other.pk)
        with pytest.raises(asyncio.TimeoutError):  # nothing more: the burst was folded
            await asyncio.wait_for(receiver.receive(channels[first.pk]), 3 * interval)
        await receiver.flush()
        return burst_s

    # The trailing send went out about one interval after the first (not at once).
    assert run(scenario) >= 0.8 * interval


# --- socket lifetimes: leaving, replacing, logging out -------------------------------------------


def test_leaving_closes_the_open_stream_socket_at_once(celery_app_mock):
    from classroom import events

    session = ClassSessionFactory(live=True)
    client = Client()
    response = client.post(
        "/join/", {"code": session.join_code, "display_name": "Alan", "consent": "on"}
    )
    assert response.status_code == 302
    headers = cookie_headers(client.cookies[settings.SESSION_COOKIE_NAME].value)

    async def scenario():
        student = await open_student(headers)
        await student.send_to(bytes_data=frame_message(1))
        assert await student.receive_json_from() == {"type": "ack", "seq": 1}
        await database_sync_to_async(client.post)("/student/leave/")
        assert await student.receive_json_from() == {"type": "participant.left"}
        await expect_close(student, events.CLOSE_LEFT)

    run(scenario)
    assert celery_app_mock.send_task.call_count == 1  # nothing after leaving


def test_a_newer_stream_socket_replaces_the_older_one(celery_app_mock):
    from classroom import events

    participant = ParticipantFactory()
    headers = student_headers(participant.pk)

    async def scenario():
        first = await open_student(headers)
        second = await open_student(headers)
        await expect_close(first, events.CLOSE_REPLACED)
        await second.send_to(bytes_data=frame_message(5))
        assert await second.receive_json_from() == {"type": "ack", "seq": 5}
        await second.disconnect()

    run(scenario)


def test_logging_out_closes_the_teachers_dashboard_sockets():
    from classroom import events

    teacher = TeacherFactory()
    session = ClassSessionFactory(teacher=teacher, live=True)
    client = Client()
    client.force_login(teacher)
    headers = cookie_headers(client.cookies[settings.SESSION_COOKIE_NAME].value)

    async def scenario():
        board = await open_dashboard(session, headers)
        snapshot = await board.receive_json_from()
        assert snapshot["type"] == "session.update"
        await database_sync_to_async(client.post)("/accounts/logout/")
        await expect_close(board, events.CLOSE_LOGGED_OUT)

    run(scenario)


def test_a_dropped_frame_is_told_to_the_student(celery_app_mock):
    """Every acknowledged frame gets a result or a drop: here the worker could not decode it."""
    participant = ParticipantFactory()
    headers = student_headers(participant.pk)

    async def scenario():
        student = await open_student(headers)
        await student.send_to(bytes_data=frame_message(3))
        assert await student.receive_json_from() == {"type": "ack", "seq": 3}
        await database_sync_to_async(services.record_frame_dropped)(
            participant_id=participant.pk, seq=3, reason="undecodable"
        )
        reply = await student.receive_json_from()
        assert reply == {"type": "dropped", "seq": 3, "reason": "undecodable"}
        await student.disconnect()

    run(scenario)
    participant.refresh_from_db()
    assert participant.frames_dropped == 1
