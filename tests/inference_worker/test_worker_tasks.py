"""The Celery task called directly, with fake models and a fake ``record_frame_result``."""

from __future__ import annotations

import base64
import logging

import cv2
import numpy as np
import pytest
from celery.signals import worker_process_init
from worker_fakes import FakeClassifier, FakeDetector

from classroom import services
from inference_worker import runtime, tasks
from inference_worker.celery import app
from inference_worker.pipeline import Detection

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


def _jpeg_b64(height: int = 120, width: int = 160) -> str:
    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), 127, np.uint8))
    assert ok
    return base64.b64encode(buf.tobytes()).decode("ascii")


def test_task_is_registered_by_name_with_at_most_once_options():
    task = app.tasks[TASK_NAME]
    assert task.name == tasks.analyze_frame_task.name == tasks.ANALYZE_FRAME_TASK
    assert task.ignore_result is True
    assert task.max_retries == 0
    assert task.acks_late is False
    assert "at most once" in task.__doc__.lower()


def test_task_records_the_analysis(fakes):
    detector, classifier, recorded = fakes
    value = tasks.analyze_frame_task(
        participant_id=7, seq=3, frame_b64=_jpeg_b64(), captured_at=1.5e12, received_at=1.6e12
    )
    assert value == "saved-frame-result"
    assert detector.calls == 1 and len(classifier.calls) == 1
    (kwargs,) = recorded
    assert set(kwargs) == {"participant_id", "seq", "result", "captured_at", "received_at"}
    assert kwargs["participant_id"] == 7
    assert kwargs["seq"] == 3
    assert kwargs["captured_at"] == 1.5e12
    assert kwargs["received_at"] == 1.6e12
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
def test_undecodable_frame_is_logged_without_payload_and_dropped(fakes, caplog, frame_b64):
    _, classifier, recorded = fakes
    with caplog.at_level(logging.DEBUG, logger="inference_worker"):
        assert tasks.analyze_frame_task(participant_id=5, seq=9, frame_b64=frame_b64) is None
    assert recorded == [] and classifier.calls == []
    messages = [r for r in caplog.records if r.name == "inference_worker.tasks"]
    assert len(messages) == 1
    assert "undecodable" in messages[0].getMessage()
    if frame_b64:
        assert frame_b64 not in caplog.text
        assert "this is not an image" not in caplog.text


def test_frame_larger_than_the_max_side_is_dropped(fakes, settings):
    _, _, recorded = fakes
    settings.ENGAGEMENT_MAX_FRAME_SIDE = 100
    assert tasks.analyze_frame_task(1, 1, _jpeg_b64(120, 160)) is None
    assert recorded == []


def test_models_are_warmed_after_the_fork_only_when_asked(monkeypatch, settings):
    calls = []
    monkeypatch.setattr(runtime, "warm", lambda **kw: calls.append(kw))
    settings.ENGAGEMENT_WARM_MODELS = False
    worker_process_init.send(sender=None)
    assert calls == []
    settings.ENGAGEMENT_WARM_MODELS = True
    worker_process_init.send(sender=None)
    assert calls == [{"create_detector": False}]


def test_warm_failures_are_logged_not_raised(monkeypatch, settings, caplog):
    def boom(**kw):
        raise FileNotFoundError("no model")

    monkeypatch.setattr(runtime, "warm", boom)
    settings.ENGAGEMENT_WARM_MODELS = "true"
    with caplog.at_level(logging.ERROR, logger="inference_worker"):
        assert runtime.warm_if_configured() is False
    assert "could not warm" in caplog.text
