"""On-device sessions on the server side: the numbers intake through the real stream consumer,
what a session of each kind accepts, the session form, the student page and the report flag.

Transactional (the consumer reaches the database from other threads; ``on_commit`` runs).
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classroom.consumers import device_writer
from classroom.models import ClassSession, FaceObservation, FrameResult, Participant
from contracts import parse_device_analysis
from tests.classroom.factories import ClassSessionFactory, ParticipantFactory, frame_message
from tests.classroom.test_consumers import open_student, run, student_headers

pytestmark = pytest.mark.django_db(transaction=True)

HAPPY = [0.05, 0.01, 0.04, 0.6, 0.1, 0.05, 0.15]


def analysis(seq: int, faces=None, **overrides) -> str:
    if faces is None:
        faces = [
            {
                "box": [0.2, 0.1, 0.3, 0.4],
                "score": 0.9,
                "probabilities": HAPPY,
                "yaw_deg": 40.0,
                "pitch_deg": 0.0,
                "quality_issue": None,
            }
        ]
    return json.dumps(
        {
            "type": "analysis",
            "seq": seq,
            "captured_at": 1.7e12,
            "width": 640,
            "height": 480,
            "faces": faces,
            "timings_ms": {"detect": 20.0},
            **overrides,
        }
    )


def on_device_participant(**session_fields) -> Participant:
    fields = {"live": True, "analysis_site": "on-device", "frame_interval_s": 0.2}
    return ParticipantFactory(session=ClassSessionFactory(**{**fields, **session_fields}))


def test_numbers_are_recorded_as_a_frame_result_and_no_picture_is_queued(celery_app_mock):
    participant = on_device_participant()
    headers = student_headers(participant.pk)

    async def scenario():
        student = await open_student(headers)
        await student.send_to(text_data=analysis(5))
        assert await student.receive_json_from() == {"type": "ack", "seq": 5}
        await device_writer().flush()
        assert await student.receive_nothing(timeout=0.2)  # no result: the page computed it
        await student.disconnect()

    run(scenario)
    celery_app_mock.send_task.assert_not_called()
    participant.refresh_from_db()
    assert (participant.frames_received, participant.device_analyses) == (1, 1)
    assert (participant.frames_analysed, participant.frames_rejected) == (1, 0)
    frame = FrameResult.objects.get(participant=participant)
    assert (frame.seq, frame.width, frame.face_count) == (1, 640, 1)  # the server's key
    assert frame.timings_ms == {"detect": 20.0}
    face = FaceObservation.objects.get(frame=frame)
    assert (face.label, face.confidence) == ("happy", 0.6)
    assert face.attentive is False  # yaw 40 > 30, decided on the server
    assert face.box_w == pytest.approx(0.3)


def test_an_attention_only_session_stores_no_expression_from_the_device():
    participant = on_device_participant(analysis="attention")
    headers = student_headers(participant.pk)

    async def scenario():
        student = await open_student(headers)
        await student.send_to(text_data=analysis(1))
        assert (await student.receive_json_from())["type"] == "ack"
        await device_writer().flush()
        await student.disconnect()

    run(scenario)
    face = FaceObservation.objects.get(frame__participant=participant)
    assert face.label is None and face.probabilities is None and face.attentive is False


@pytest.mark.parametrize("fallback", [False, True])
def test_pictures_in_an_on_device_session_need_the_fallback(fallback, celery_app_mock):
    participant = on_device_participant(server_fallback=fallback)
    headers = student_headers(participant.pk)

    async def scenario():
        student = await open_student(headers)
        await student.send_to(bytes_data=frame_message(3))
        return await student.receive_json_from()

    reply = run(scenario)
    if fallback:
        assert reply == {"type": "ack", "seq": 3}
        assert celery_app_mock.send_task.call_count == 1
    else:
        assert (reply["type"], reply["code"], reply["seq"]) == ("error", "pictures_not_accepted", 3)
        celery_app_mock.send_task.assert_not_called()


def test_numbers_in_a_server_session_are_refused():
    participant = ParticipantFactory()
    headers = student_headers(participant.pk)

    async def scenario():
        student = await open_student(headers)
        await student.send_to(text_data=analysis(9))
        return await student.receive_json_from()

    reply = run(scenario)
    assert (reply["code"], reply["seq"]) == ("text_not_supported", 9)
    assert not FrameResult.objects.exists()


def test_a_bad_message_is_an_error_the_socket_stays_open_and_nothing_is_stored():
    participant = on_device_participant()
    headers = student_headers(participant.pk)
    bad = analysis(2, faces=[{"box": [0, 0, 1, 1], "score": 0.9}])

    async def scenario():
        student = await open_student(headers)
        await student.send_to(text_data=bad)
        error = await student.receive_json_from()
        await student.send_to(text_data=analysis(3))
        ack = await student.receive_json_from()
        await device_writer().flush()
        await student.disconnect()
        return error, ack

    error, ack = run(scenario)
    assert (error["code"], error["seq"]) == ("bad_analysis", 2)
    assert "faces[0]" in error["message"]
    assert ack == {"type": "ack", "seq": 3}
    participant.refresh_from_db()
    assert (participant.frames_received, participant.frames_rejected) == (2, 1)
    assert participant.device_analyses == 1
    assert FrameResult.objects.filter(participant=participant).count() == 1


def test_numbers_share_the_frame_rate_limit():
    participant = on_device_participant(frame_interval_s=10.0)
    headers = student_headers(participant.pk)

    async def scenario():
        student = await open_student(headers)
        codes = []
        for seq in range(1, 6):
            await student.send_to(text_data=analysis(seq))
            reply = await student.receive_json_from()
            codes.append(reply.get("code", reply["type"]))
        await device_writer().flush()
        await student.disconnect()
        return codes

    assert run(scenario) == ["ack", "ack", "ack", "rate_limited", "rate_limited"]


@st.composite
def texts(draw) -> str:
    """Numbers messages, valid or broken in one place, or any text at all."""
    kind = draw(st.sampled_from(["valid", "field", "face", "junk"]))
    seq = draw(st.integers(0, 2**32 - 1))
    if kind == "junk":
        return draw(st.text(min_size=1, max_size=80))
    data = json.loads(analysis(seq))
    if kind == "field":
        key = draw(st.sampled_from(sorted(data)))
        data[key] = draw(st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=5)))
    elif kind == "face":
        key = draw(st.sampled_from(sorted(data["faces"][0])))
        data["faces"][0][key] = draw(
            st.one_of(
                st.none(),
                st.floats(allow_nan=False),
                st.lists(st.floats(-2, 2), max_size=8),
                st.text(max_size=5),
            )
        )
    return json.dumps(data)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(texts(), min_size=1, max_size=5))
@pytest.mark.slow
def test_no_numbers_message_crashes_the_intake_or_goes_unanswered(batch, celery_app_mock):
    participant = on_device_participant()
    headers = student_headers(participant.pk)

    async def scenario():
        student = await open_student(headers)
        replies = []
        for text in batch:
            await student.send_to(text_data=text)
            replies.append(await student.receive_json_from(timeout=5))
        await device_writer().flush()
        await student.disconnect()
        return replies

    replies = run(scenario)
    assert all(r["type"] in ("ack", "error") for r in replies), replies
    assert all(r["code"] and r["message"] for r in replies if r["type"] == "error")
    acked = sum(r["type"] == "ack" for r in replies)
    participant.refresh_from_db()
    assert participant.frames_received == len(batch)
    assert participant.frames_rejected == len(batch) - acked
    assert participant.device_analyses == participant.frames_analysed == acked
    assert FrameResult.objects.filter(participant=participant).count() == acked
    celery_app_mock.send_task.assert_not_called()


# --- pages ----------------------------------------------------------------------------------------


def test_the_teacher_chooses_where_faces_are_analysed(client, teacher):
    client.force_login(teacher)
    url = reverse("classroom:session_create")
    form = {"title": "Maths", "frame_interval_s": "1", "analysis": "expression"}
    client.post(url, {**form, "analysis_site": "on-device", "server_fallback": "on"})
    client.post(url, {**form, "title": "Art", "analysis_site": "server", "server_fallback": "on"})
    response = client.post(url, {**form, "title": "Bad", "analysis_site": "moon"})
    assert response.status_code == 200 and b"moon" in response.content  # the form's error
    sites = dict(ClassSession.objects.values_list("title", "analysis_site"))
    assert sites == {"Maths": "on-device", "Art": "server"}
    fallback = dict(ClassSession.objects.values_list("title", "server_fallback"))
    assert fallback == {"Maths": True, "Art": False}  # stored only where it means something


def test_the_student_page_says_where_and_loads_the_analysis_only_on_device(client):
    from classroom import services

    participant = on_device_participant(server_fallback=True)
    session = client.session
    session[services.PARTICIPANT_SESSION_KEY] = participant.pk
    session.save()
    response = client.get(reverse("classroom:student"))
    csp = response.headers["Content-Security-Policy"]
    assert "'wasm-unsafe-eval'" in csp and "'unsafe-eval'" not in csp
    assert b"Analysed on this device." in response.content
    assert b'id="use-server"' in response.content
    config = client.get(reverse("classroom:student_config")).json()
    assert config["session"]["analysis_site"] == "on-device"
    ondevice = config["ondevice"]
    assert ondevice["classify"] is True and ondevice["server_fallback"] is True
    assert ondevice["pipeline"]["crop_margin"] == 0.2
    assert ondevice["classifier_model"].endswith("expression_cnn.batch1.tflite")
    for key in ("bundle", "detector_model", "classifier_model"):
        assert client.get(ondevice[key]).status_code == 200, key  # served by this server

    server = ParticipantFactory()
    session[services.PARTICIPANT_SESSION_KEY] = server.pk
    session.save()
    response = client.get(reverse("classroom:student"))
    assert "wasm-unsafe-eval" not in response.headers["Content-Security-Policy"]
    assert "Analysed on the school's server" in response.content.decode().replace("&#x27;", "'")
    assert client.get(reverse("classroom:student_config")).json()["ondevice"] is None


def test_the_report_flags_numbers_computed_on_the_students_devices(client, teacher):
    participant = on_device_participant(teacher=teacher)
    ParticipantFactory(session=participant.session)  # joined, sent nothing
    Participant.objects.filter(pk=participant.pk).update(device_analyses=12)
    client.force_login(teacher)
    response = client.get(reverse("classroom:session_report", args=[participant.session.pk]))
    text = response.content.decode()
    assert 'id="on-device-notice"' in text
    assert "1 participant sent 12 on-device analyses" in text
    assert "cannot verify them" in text
    exported = client.get(
        reverse("classroom:session_export_json", args=[participant.session.pk])
    ).json()
    assert exported["analysis_site"] == "on-device"
    rows = {row["id"]: row["device_analyses"] for row in exported["participants"]}
    assert rows[participant.pk] == 12 and sorted(rows.values()) == [0, 12]
    board = client.get(reverse("classroom:session_detail", args=[participant.session.pk]))
    assert "analysed on each student&#x27;s device" in board.content.decode()

    server_session = ClassSessionFactory(live=True, teacher=teacher)
    response = client.get(reverse("classroom:session_report", args=[server_session.pk]))
    assert b'id="on-device-notice"' not in response.content


# --- the batch writer records what record_frame_result records --------------------------------


def _faces_of(step: int) -> list[dict]:
    """1-2 faces drifting across the frame, one turning away, with changing expressions."""
    probabilities = [
        [0.6, 0.05, 0.05, 0.1, 0.1, 0.05, 0.05],
        HAPPY,
        [0.05, 0.05, 0.1, 0.1, 0.5, 0.1, 0.1],
    ]
    faces = [
        {
            "box": [0.1 + 0.01 * step, 0.2, 0.2, 0.25],
            "score": 0.9,
            "probabilities": probabilities[step % 3],
            "yaw_deg": 5.0 * (step % 4),
            "pitch_deg": 0.0,
            "quality_issue": None,
        }
    ]
    if step % 3 != 2:
        faces.append(
            {
                "box": [0.6, 0.3 - 0.01 * step, 0.15, 0.2],
                "score": 0.8,
                "probabilities": None,
                "yaw_deg": 50.0,
                "pitch_deg": -3.0,
                "quality_issue": "turned_away",
            }
        )
    return faces


def _rows(participant) -> dict:
    frames = list(
        FrameResult.objects.filter(participant=participant)
        .order_by("seq")
        .values_list("seq", "face_count", "width", "received_at", "timings_ms")
    )
    faces = list(
        FaceObservation.objects.filter(frame__participant=participant)
        .order_by("frame__seq", "index")
        .values_list(
            "frame__seq",
            "index",
            "label",
            "confidence",
            "smoothed_label",
            "smoothed_probabilities",
            "track__number",
            "attentive",
            "assessed",
            "quality_issue",
        )
    )
    tracks = list(
        participant.tracks.order_by("number").values_list(
            "number", "first_seen_at", "last_seen_at", "last_seq", "hits", "smoothed_probabilities"
        )
    )
    buckets = list(
        participant.timeline_buckets.order_by("index").values(
            "index", "frames", "face_sum", "pose_faces", "attentive_faces", "angry", "happy", "sad"
        )
    )
    participant.refresh_from_db()
    counters = (participant.frames_received, participant.frames_analysed)
    return {"frames": frames, "faces": faces, "tracks": tracks, "buckets": buckets, "n": counters}


def test_a_batch_records_the_same_rows_as_one_result_at_a_time():
    from django.db.models import F

    from classroom import services

    session = ClassSessionFactory(live=True, analysis_site="on-device", frame_interval_s=1.0)
    one, batched = (ParticipantFactory(session=session) for _ in range(2))
    start_ms = session.started_at.timestamp() * 1000.0 + 500.0
    # 14 frames a second apart, then a 40-s gap (tracks expire, a new bucket), then 4 more
    times = [start_ms + 1000.0 * i for i in range(14)] + [
        start_ms + 54_000 + 1000 * i for i in range(4)
    ]
    results = [
        parse_device_analysis(analysis(i, faces=_faces_of(i)), max_faces=5, max_bytes=9999).result
        for i in range(len(times))
    ]
    for key, (result, received) in enumerate(zip(results, times, strict=True), start=1):
        Participant.objects.filter(pk=one.pk).update(frames_received=F("frames_received") + 1)
        services.record_frame_result(
            participant_id=one.pk,
            seq=key,
            result=result,
            captured_at=received - 30,
            received_at=received,
            key=key,
        )
    items = [
        services.DeviceItem(batched.pk, key, result, received - 30, received)
        for key, (result, received) in enumerate(zip(results, times, strict=True), start=1)
    ]
    # across batches and within one, interleaved with another participant's rejected message
    rejected = services.DeviceItem(one.pk, None, None, None, times[0])
    assert len(services.record_device_batch(items[:5])) == 5
    assert len(services.record_device_batch([*items[5:12], rejected])) == 7
    assert len(services.record_device_batch(items[12:])) == 6

    expected, got = _rows(one), _rows(batched)
    assert got["n"] == (18, 18)
    assert expected["n"] == (19, 18)  # the rejected message counted, nothing recorded
    for table in ("frames", "faces", "tracks", "buckets"):
        assert got[table] == expected[table], table
    assert len(expected["tracks"]) >= 3 and len(expected["buckets"]) >= 3
    batched.refresh_from_db()
    one.refresh_from_db()
    assert (batched.device_analyses, one.frames_rejected) == (18, 1)


def test_a_stalled_recorder_refuses_messages_instead_of_queueing_without_bound(monkeypatch):
    from classroom.consumers import DeviceBatchWriter

    monkeypatch.setattr(DeviceBatchWriter, "max_queue", 0)
    participant = on_device_participant()
    headers = student_headers(participant.pk)

    async def scenario():
        student = await open_student(headers)
        await student.send_to(text_data=analysis(4))
        reply = await student.receive_json_from()
        await student.disconnect()
        return reply

    reply = run(scenario)
    assert (reply["type"], reply["code"], reply["seq"]) == ("error", "rate_limited", 4)
    assert "busy" in reply["message"]
    assert not FrameResult.objects.exists()
