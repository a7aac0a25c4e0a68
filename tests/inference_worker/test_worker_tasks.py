"""The Celery task called directly, with fake models and a fake ``record_frame_result``."""

from __future__ import annotations

import base64
import logging
import time

import cv2
import pytest
from celery.app.task import Context
from celery.signals import task_postrun, task_revoked, worker_process_init

import contracts
from classroom import dispatch, services
from engagement import celery as worker_celery
from inference_worker import live, runtime, tasks
from inference_worker.celery import app
from inference_worker.pipeline import Detection
from tests.inference_worker.worker_fakes import FakeClassifier, FakeDetector, textured_frame

TASK_NAME = "inference_worker.tasks.analyze_frame_task"


@pytest.fixture
def fakes(monkeypatch):
    """Fake models in the runtime getters and a recorder in place of the classroom service."""
    detector = FakeDetector([Detection(box=(40.0, 20.0, 50.0, 60.0), score=0.9)])
    classifier = FakeClassifier()
    recorded: list[dict] = []

    def record_frame_result(**kwargs):
        recorded.append(kwargs)
        return "saved-frame-result"

    monkeypatch.setattr(runtime, "get_detector", lambda *a, **k: detector)
    monkeypatch.setattr(runtime, "get_classifier", lambda *a, **k: classifier)
    monkeypatch.setattr(services, "record_frame_result", record_frame_result)
    return detector, classifier, recorded


@pytest.fixture
def drops(monkeypatch):
    """A recorder in place of ``services.record_frame_dropped``; returns its calls."""
    calls: list[dict] = []

    def record_frame_dropped(**kwargs):
        calls.append(kwargs)
        return True

    monkeypatch.setattr(services, "record_frame_dropped", record_frame_dropped, raising=False)
    return calls


def _jpeg_b64(height: int = 120, width: int = 160) -> str:
    # texture, not a flat image: a flat "face" is blurred for the face-quality gate
    ok, buf = cv2.imencode(".jpg", textured_frame(height, width), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return base64.b64encode(buf.tobytes()).decode("ascii")


def test_task_is_registered_by_name_with_at_most_once_options():
    task = app.tasks[TASK_NAME]
    assert task.name == tasks.analyze_frame_task.name == contracts.ANALYZE_FRAME_TASK
    assert task.ignore_result is True
    assert task.max_retries == 0
    assert task.acks_late is False


def test_task_records_the_analysis(fakes):
    detector, classifier, recorded = fakes
    received_at = time.time() * 1000.0  # fresh: older than ENGAGEMENT_FRAME_TTL_S is dropped
    captured_at = received_at - 150.0
    value = tasks.analyze_frame_task(
        participant_id=7,
        seq=3,
        frame_b64=_jpeg_b64(),
        captured_at=captured_at,
        received_at=received_at,
        key=41,
    )
    assert value == "saved-frame-result"
    assert detector.calls == 1 and len(classifier.calls) == 1
    (kwargs,) = recorded
    assert set(kwargs) == {"participant_id", "seq", "key", "result", "captured_at", "received_at"}
    assert kwargs["participant_id"] == 7
    assert kwargs["seq"] == 3 and kwargs["key"] == 41
    assert kwargs["captured_at"] == captured_at
    assert kwargs["received_at"] == received_at
    result = kwargs["result"]
    assert set(result) == {"width", "height", "faces", "timings_ms"}
    assert (result["width"], result["height"]) == (160, 120)
    assert len(result["faces"]) == 1
    assert result["faces"][0]["box"] == pytest.approx([0.25, 1 / 6, 50 / 160, 0.5])
    assert set(result["timings_ms"]) == {"decode", "detect", "crop", "classify", "total"}


def test_task_timestamps_are_optional(fakes):
    _, _, recorded = fakes
    tasks.analyze_frame_task(1, 1, _jpeg_b64())
    assert recorded[0]["captured_at"] is None and recorded[0]["received_at"] is None


@pytest.mark.parametrize(
    "frame_b64",
    [
        base64.b64encode(b"this is not an image, it is text").decode(),  # valid base64, no image
        "%%% not base64 %%%",
        "",
    ],
)
def test_undecodable_frame_is_logged_without_payload_and_dropped(fakes, drops, caplog, frame_b64):
    _, classifier, recorded = fakes
    with caplog.at_level(logging.DEBUG, logger="inference_worker"):
        assert tasks.analyze_frame_task(participant_id=5, seq=9, frame_b64=frame_b64) is None
    assert recorded == [] and classifier.calls == []
    # counted and told to the student: the intake had acknowledged it
    assert drops == [{"participant_id": 5, "seq": 9, "reason": "undecodable"}]
    messages = [r for r in caplog.records if r.name == "inference_worker.live"]
    assert len(messages) == 1
    assert "undecodable" in messages[0].getMessage()
    if frame_b64:
        assert frame_b64 not in caplog.text
        assert "this is not an image" not in caplog.text


def test_frame_larger_than_the_max_side_is_dropped(fakes, drops, settings):
    _, _, recorded = fakes
    settings.ENGAGEMENT_MAX_FRAME_SIDE = 100
    assert tasks.analyze_frame_task(1, 1, _jpeg_b64(120, 160)) is None
    assert recorded == []
    assert drops == [{"participant_id": 1, "seq": 1, "reason": "undecodable"}]


def test_models_are_warmed_after_the_fork_only_when_asked(monkeypatch, settings):
    calls = []
    monkeypatch.setattr(runtime, "warm", lambda **kw: calls.append(kw))
    settings.ENGAGEMENT_WARM_MODELS = False
    worker_process_init.send(sender=None)
    assert calls == []
    settings.ENGAGEMENT_WARM_MODELS = True
    worker_process_init.send(sender=None)
    assert calls == [{"create_detector": False}]


def test_a_thread_pool_worker_warms_its_models_when_ready_and_a_prefork_one_does_not(
    monkeypatch, settings
):
    """``worker_process_init`` never fires without a fork: a ``--pool threads``/``solo`` worker
    warms in ``worker_ready``; a prefork parent leaves it to its children."""
    from celery.concurrency.prefork import TaskPool as PreforkPool
    from celery.concurrency.thread import TaskPool as ThreadPool
    from celery.signals import worker_ready

    class Consumer:  # worker_ready's sender: the worker's consumer, which holds the pool
        def __init__(self, pool_cls):
            self.pool = pool_cls.__new__(pool_cls)

    calls = []
    monkeypatch.setattr(runtime, "warm", lambda **kw: calls.append(kw))
    settings.ENGAGEMENT_WARM_MODELS = True
    worker_ready.send(sender=Consumer(PreforkPool))
    assert calls == []
    worker_ready.send(sender=Consumer(ThreadPool))
    assert calls == [{"create_detector": False}]
    settings.ENGAGEMENT_WARM_MODELS = False
    worker_ready.send(sender=Consumer(ThreadPool))
    assert len(calls) == 1


def test_warm_failures_are_logged_not_raised(monkeypatch, settings, caplog):
    def boom(**kw):
        raise FileNotFoundError("no model")

    monkeypatch.setattr(runtime, "warm", boom)
    settings.ENGAGEMENT_WARM_MODELS = "true"
    with caplog.at_level(logging.ERROR, logger="inference_worker"):
        assert runtime.warm_if_configured() is False
    assert "could not warm" in caplog.text


# --- source and analysis mode -------------------------------------------------------------------


@pytest.mark.parametrize("source", ["webcam", "screen"])
def test_task_uses_the_detector_of_the_source(fakes, monkeypatch, source):
    detector, _, recorded = fakes
    asked = []

    def get_detector(*args, **kwargs):
        asked.append((args, kwargs))
        return detector

    monkeypatch.setattr(runtime, "get_detector", get_detector)
    tasks.analyze_frame_task(1, 1, _jpeg_b64(), source=source)
    assert asked == [((), {"source": source})]
    assert detector.calls == 1 and len(recorded) == 1


def test_old_messages_without_source_use_the_webcam_detector(fakes, monkeypatch):
    detector, _, _ = fakes
    asked = []
    monkeypatch.setattr(runtime, "get_detector", lambda **kw: asked.append(kw) or detector)
    tasks.analyze_frame_task(participant_id=1, seq=1, frame_b64=_jpeg_b64())
    assert asked == [{"source": "webcam"}]


def test_attention_mode_never_calls_the_classifier(fakes):
    detector, classifier, recorded = fakes
    tasks.analyze_frame_task(1, 2, _jpeg_b64(), analysis="attention")
    assert detector.calls == 1
    assert classifier.calls == []
    (face,) = recorded[0]["result"]["faces"]
    assert face["probabilities"] is None and face["label"] is None


def test_expression_mode_classifies(fakes):
    _, classifier, recorded = fakes
    tasks.analyze_frame_task(1, 2, _jpeg_b64(), analysis="expression")
    assert len(classifier.calls) == 1
    assert len(recorded[0]["result"]["faces"][0]["probabilities"]) == 7


def test_unknown_analysis_mode_is_logged_not_analysed(fakes, caplog):
    detector, _, recorded = fakes
    with caplog.at_level(logging.WARNING, logger="inference_worker"):
        assert tasks.analyze_frame_task(1, 2, _jpeg_b64(), analysis="emotions") is None
    assert recorded == [] and detector.calls == 0
    assert "unknown analysis mode" in caplog.text


def test_unknown_source_is_logged_not_analysed(fakes, monkeypatch, caplog):
    _, _, recorded = fakes

    def get_detector(**kwargs):
        raise ValueError(f"unknown source {kwargs['source']!r}")

    monkeypatch.setattr(runtime, "get_detector", get_detector)
    with caplog.at_level(logging.WARNING, logger="inference_worker"):
        assert tasks.analyze_frame_task(1, 2, _jpeg_b64(), source="tv") is None
    assert recorded == []
    assert "unknown source 'tv'" in caplog.text


# --- backpressure: stale and expired frames -----------------------------------------------------


def test_frame_older_than_the_ttl_is_dropped_as_stale(fakes, drops, settings):
    detector, classifier, recorded = fakes
    settings.ENGAGEMENT_FRAME_TTL_S = 2.0
    received_at = (time.time() - 2.5) * 1000.0
    assert tasks.analyze_frame_task(4, 11, _jpeg_b64(), received_at=received_at) is None
    assert drops == [{"participant_id": 4, "seq": 11, "reason": "stale"}]
    assert recorded == [] and detector.calls == 0 and classifier.calls == []


def test_frame_within_the_ttl_is_analysed(fakes, drops, settings):
    _, _, recorded = fakes
    settings.ENGAGEMENT_FRAME_TTL_S = 2.0
    received_at = (time.time() - 1.5) * 1000.0
    assert tasks.analyze_frame_task(4, 12, _jpeg_b64(), received_at=received_at) is not None
    assert drops == [] and len(recorded) == 1


def test_frame_age():
    assert live.frame_age_s(None) is None
    assert live.frame_age_s(1_000_000.0, now_s=1_003.5) == pytest.approx(3.5)
    assert 0.0 <= live.frame_age_s(time.time() * 1000.0) < 1.0


@pytest.mark.django_db
def test_an_expired_message_is_counted_by_the_headers_that_dispatch_sends(drops, monkeypatch):
    sent = {}

    class FakeApp:
        def send_task(self, name, **options):
            sent.update(options, name=name)

    monkeypatch.setattr(dispatch, "current_app", FakeApp())
    dispatch.send_analyze_frame(
        participant_id=9, seq=41, image=b"\xff\xd8", captured_at=None, received_at=0.0
    )
    assert tasks.count_expired_frame(
        sender=app.tasks[sent["name"]], request=Context(sent["headers"]), expired=True
    )
    assert drops == [{"participant_id": 9, "seq": 41, "reason": "expired"}]


def _revoked_request(**headers) -> Context:
    """The ``request`` Celery passes to ``task_revoked``: a Context of the message headers."""
    return Context({"id": "abc", "task": TASK_NAME, "kwargsrepr": "{...}", **headers})


@pytest.mark.django_db  # the receiver recycles the main process's connection first
def test_expired_message_is_counted_through_the_signal(drops):
    task_revoked.send(
        sender=app.tasks[TASK_NAME],
        request=_revoked_request(engagement_participant_id=9, engagement_seq=41),
        terminated=False,
        signum=None,
        expired=True,
    )
    assert drops == [{"participant_id": 9, "seq": 41, "reason": "expired"}]


@pytest.mark.parametrize(
    ("task_name", "expired", "headers"),
    [
        (TASK_NAME, False, {"engagement_participant_id": 9, "engagement_seq": 1}),  # revoked
        ("classroom.tasks.build_session_report", True, {"engagement_participant_id": 9}),
        (TASK_NAME, True, {}),  # a message from before the headers existed
        (TASK_NAME, True, {"engagement_participant_id": "nine"}),
    ],
)
def test_other_revocations_are_not_counted(drops, task_name, expired, headers):
    class Sender:
        name = task_name

    assert (
        tasks.count_expired_frame(
            sender=Sender(), request=_revoked_request(**headers), expired=expired
        )
        is False
    )
    assert drops == []


@pytest.mark.django_db
def test_expired_counting_failure_is_logged_not_raised(monkeypatch, caplog):
    def boom(**kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr(services, "record_frame_dropped", boom, raising=False)
    with caplog.at_level(logging.ERROR, logger="inference_worker"):
        assert (
            tasks.count_expired_frame(
                sender=app.tasks[TASK_NAME],
                request=_revoked_request(engagement_participant_id=3, engagement_seq=5),
                expired=True,
            )
            is False
        )
    assert "could not count the expired frame of participant 3" in caplog.text


# --- database connections -------------------------------------------------------------------------


def test_celery_keeps_database_connections_between_tasks():
    """Celery's Django fixup would close the connection around every task without this key."""
    from celery.fixups.django import DjangoWorkerFixup

    assert app.conf.get("CELERY_DB_REUSE_MAX") == worker_celery.DB_REUSE_MAX_TASKS >= 1000
    assert DjangoWorkerFixup(app).db_reuse_max == worker_celery.DB_REUSE_MAX_TASKS


def test_django_closes_old_connections_after_each_task(monkeypatch):
    import django.db

    calls = []
    monkeypatch.setattr(django.db, "close_old_connections", lambda: calls.append(1))
    task_postrun.send(sender=app.tasks[TASK_NAME], task_id="t", task=app.tasks[TASK_NAME])
    assert calls == [1]


def test_with_emotion_inference_off_no_frame_is_classified(fakes, settings, monkeypatch):
    _, classifier, recorded = fakes
    settings.ENGAGEMENT_EMOTION_INFERENCE = False
    loaded = []
    monkeypatch.setattr(runtime, "get_classifier", lambda *a, **k: loaded.append(1))
    now = time.time() * 1000.0
    tasks.analyze_frame_task(7, 3, _jpeg_b64(), captured_at=now, received_at=now)
    assert loaded == [] and classifier.calls == []
    (kwargs,) = recorded
    assert all(face["label"] is None for face in kwargs["result"]["faces"])


def test_with_emotion_inference_off_warming_loads_no_classifier(settings, monkeypatch):
    settings.ENGAGEMENT_EMOTION_INFERENCE = False
    loaded = []
    monkeypatch.setattr(runtime, "get_classifier", lambda *a, **k: loaded.append(1))
    monkeypatch.setattr(runtime, "import_mediapipe", lambda: None)
    monkeypatch.setattr(runtime, "get_face_check", lambda: None)
    settings.ENGAGEMENT_FACE_CHECK = False
    runtime.warm(create_detector=False)
    assert loaded == []
