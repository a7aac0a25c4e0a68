"""classroom.tasks and classroom.dispatch (tasks called directly, broker mocked)."""

from __future__ import annotations

import base64

import pytest
from django.db import DatabaseError

import contracts
from classroom import dispatch, services, tasks
from classroom.models import SessionReport
from tests.classroom.factories import (
    ClassSessionFactory,
    ParticipantFactory,
    image_bytes,
    result_dict,
)


def test_report_task_is_declared_at_least_once():
    task = tasks.build_session_report
    assert task.name == contracts.BUILD_REPORT_TASK
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True
    assert DatabaseError in task.autoretry_for
    assert task.retry_backoff and task.max_retries >= 3


@pytest.mark.django_db(transaction=True)  # the task's postrun recycles the connection
def test_report_task_retries_a_database_error_and_then_builds_the_report(monkeypatch):
    session = ClassSessionFactory()
    real = services.build_session_report
    calls = []

    def flaky(session_id):
        calls.append(session_id)
        if len(calls) == 1:
            raise DatabaseError("connection lost")
        return real(session_id)

    monkeypatch.setattr(services, "build_session_report", flaky)
    result = tasks.build_session_report.apply(args=[str(session.pk)])  # eager: retries inline
    assert result.state == "SUCCESS"
    assert calls == [str(session.pk)] * 2
    assert result.get() == str(SessionReport.objects.get(session=session).pk)


@pytest.mark.django_db
def test_report_task_is_idempotent():
    participant = ParticipantFactory()
    services.record_frame_result(
        participant_id=participant.pk, seq=1, result=result_dict("happy", "sad")
    )
    session = participant.session
    services.end_session(session, by=session.teacher)

    first = tasks.build_session_report(str(session.pk))
    second = tasks.build_session_report(str(session.pk))
    assert first == second
    assert SessionReport.objects.count() == 1
    report = SessionReport.objects.get()
    assert report.session == session
    assert report.summary["totals"]["faces"] == 2
    assert report.summary["status"] == "ended"


@pytest.mark.django_db
def test_report_task_for_a_deleted_session_returns_none_and_touches_no_other_report():
    kept = ClassSessionFactory()
    tasks.build_session_report(str(kept.pk))
    before = SessionReport.objects.get(session=kept)
    gone = ClassSessionFactory()
    gone_id = str(gone.pk)
    gone.delete()
    assert tasks.build_session_report(gone_id) is None
    after = SessionReport.objects.get()
    assert (after.pk, after.built_at, after.summary) == (before.pk, before.built_at, before.summary)


def test_send_analyze_frame_by_name_hides_payload(settings, celery_app_mock):
    settings.ENGAGEMENT_FRAME_TTL_S = 7.0
    image = image_bytes("JPEG")
    dispatch.send_analyze_frame(
        participant_id=4,
        seq=9,
        key=12,
        image=image,
        captured_at=1.5e12,
        received_at=1.6e12,
        source="screen",
        analysis="attention",
    )
    celery_app_mock.send_task.assert_called_once()
    call = celery_app_mock.send_task.call_args
    assert call.args == ("inference_worker.tasks.analyze_frame_task",)
    assert call.kwargs["kwargs"] == {
        "participant_id": 4,
        "seq": 9,
        "key": 12,
        "frame_b64": base64.b64encode(image).decode("ascii"),
        "captured_at": 1.5e12,
        "received_at": 1.6e12,
        "source": "screen",
        "analysis": "attention",
    }
    # ids only in the headers (an expired message is counted from them, never its payload)
    assert call.kwargs["headers"] == {
        contracts.PARTICIPANT_HEADER: 4,
        contracts.SEQ_HEADER: 9,
    }
    assert call.kwargs["queue"] == "inference"
    assert call.kwargs["expires"] == 7.0
    assert call.kwargs["kwargsrepr"] == (
        f"{{participant_id: 4, seq: 9, key: 12, <frame {len(image)} bytes>}}"
    )
    assert call.kwargs["kwargs"]["frame_b64"] not in call.kwargs["kwargsrepr"]
