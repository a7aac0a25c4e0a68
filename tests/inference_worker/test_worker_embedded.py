"""The embedded worker consumes real task messages from the in-memory broker.

Runs in a fresh interpreter: the worker thread lives as long as its process, and in this pytest
process it would consume the messages other tests send through the memory broker.
"""

from __future__ import annotations

import pytest

from tests.inference_worker.worker_fakes import run_django_script

SCRIPT = r"""
import base64, json, sys, threading
import django
django.setup()

import cv2, numpy as np
from classroom import services
from inference_worker import embedded, runtime, tasks
from inference_worker.celery import app
from inference_worker.pipeline import Detection

from tests.inference_worker.worker_fakes import FakeClassifier, FakeDetector

probe_done = threading.Event()
probe_seen = {}

@app.task(name="tests.inference_worker.embedded_probe", ignore_result=True)
def embedded_probe(value):
    probe_seen["value"] = value
    probe_seen["thread"] = threading.current_thread().name
    probe_done.set()

frame_done = threading.Event()
recorded = []
def record_frame_result(**kwargs):
    recorded.append(kwargs)
    frame_done.set()

runtime.get_detector = lambda *a, **k: FakeDetector([Detection(box=(10.0, 10.0, 20.0, 20.0), score=0.9)])
runtime.get_classifier = lambda *a, **k: FakeClassifier()
services.record_frame_result = record_frame_result

worker = embedded.start_embedded_worker()
again = embedded.start_embedded_worker()

ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), 100, np.uint8))
import time
received_ms = time.time() * 1000.0  # now: an older frame would be dropped as stale
frame_b64 = base64.b64encode(buf.tobytes()).decode()

def send():  # from another thread, by name, as classroom.dispatch does
    app.send_task("tests.inference_worker.embedded_probe", args=[42], queue="default")
    app.send_task(
        "inference_worker.tasks.analyze_frame_task",
        kwargs={"participant_id": 3, "seq": 1, "frame_b64": frame_b64,
                "captured_at": 1.0, "received_at": received_ms},
        queue="inference", expires=10, kwargsrepr="{participant_id, seq, <frame>}",
    )

sender = threading.Thread(target=send)
sender.start(); sender.join()
got_probe = probe_done.wait(20)
got_frame = frame_done.wait(20)
stopped = embedded.stop_embedded_worker()
print(json.dumps({
    "same_worker": worker is again,
    "probe": probe_seen.get("value") if got_probe else None,
    "probe_thread": probe_seen.get("thread"),
    "frame": [{k: v for k, v in r.items() if k != "result"} | {"faces": len(r["result"]["faces"])}
              for r in recorded] if got_frame else None,
    "received_ms": received_ms,
    "stopped": stopped,
    "polling_interval": app.conf.broker_transport_options.get("polling_interval"),
}))
"""


@pytest.mark.slow
def test_embedded_worker_consumes_tasks_sent_by_name():
    report = run_django_script(SCRIPT)
    assert report["same_worker"] is True
    assert report["probe"] == 42
    assert report["probe_thread"] == "celery-embedded"
    assert report["frame"] == [
        {
            "participant_id": 3,
            "seq": 1,
            "key": None,
            "captured_at": 1.0,
            "received_at": report["received_ms"],
            "faces": 1,
        }
    ]
    assert report["stopped"] is True
    assert report["polling_interval"] == pytest.approx(0.05)


BEAT_SCRIPT = r"""
import json, tempfile, threading
import django
django.setup()

from inference_worker import embedded
from inference_worker.celery import app

ticks = []
two = threading.Event()

@app.task(name="tests.inference_worker.beat_probe", ignore_result=True)
def beat_probe():
    ticks.append(threading.current_thread().name)
    if len(ticks) >= 2:
        two.set()

# The configured schedule (retention) plus a fast probe; a fresh schedule file.
app.conf.beat_schedule = {
    **app.conf.beat_schedule,
    "probe": {"task": "tests.inference_worker.beat_probe", "schedule": 0.3,
              "options": {"queue": "default"}},
}
app.conf.beat_schedule_filename = tempfile.mkdtemp() + "/schedule"
embedded.start_embedded_worker()
ran = two.wait(20)
stopped = embedded.stop_embedded_worker()
print(json.dumps({"ran": ran, "threads": sorted(set(ticks)), "stopped": stopped,
                  "retention": app.conf.beat_schedule["retention"]["task"]}))
"""


@pytest.mark.slow
def test_embedded_default_runs_celery_beat_for_periodic_tasks():
    report = run_django_script(BEAT_SCRIPT)
    assert report["ran"] is True  # beat sent the probe twice, the embedded worker ran it
    assert report["threads"] == ["celery-embedded"]
    assert report["retention"] == "classroom.tasks.apply_retention"
    assert report["stopped"] is True
