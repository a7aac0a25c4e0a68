"""Importing the worker's modules must not load TensorFlow or MediaPipe (they load lazily,
once per worker process, after the fork). Checked in a fresh interpreter."""

from __future__ import annotations

from tests.inference_worker.worker_fakes import run_django_script

HEAVY = ("tensorflow", "keras", "mediapipe")

SCRIPT = """
import json, sys
import django
django.setup()
import inference_worker.tasks
import inference_worker.runtime
import inference_worker.pipeline
import inference_worker.embedded
import inference_worker.management.commands.analyze_media
from inference_worker.celery import app
app.loader.import_default_modules()  # what a worker imports at start-up (autodiscovery)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in %r)))
"""


def test_importing_the_worker_loads_no_tensorflow_or_mediapipe():
    loaded = run_django_script(SCRIPT % (HEAVY,))
    assert loaded == [], f"heavy modules imported: {loaded}"


CPU_PATH_SCRIPT = """
import json, sys
import django
django.setup()
from django.conf import settings
assert settings.ENGAGEMENT_CLASSIFIER_BACKEND == "litert"
from inference_worker import pipeline, runtime
data = open(%r, "rb").read()
for source in ("webcam", "screen"):
    analysis = pipeline.analyze_bytes(data, runtime.get_detector(source), runtime.get_classifier())
    assert analysis.face_count == 4, analysis.face_count
    assert all(f.label is not None and f.attentive is not None for f in analysis.faces)
print(json.dumps({
    "mediapipe": "mediapipe" in sys.modules,
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")),
}))
"""


def test_cpu_worker_detects_and_classifies_a_real_frame_without_tensorflow(webcam_photo):
    """The CPU path (BlazeFace and the classifier, both on LiteRT) never imports TensorFlow,
    nor MediaPipe's runtime (the default detector back end runs the model files itself)."""
    loaded = run_django_script(CPU_PATH_SCRIPT % (str(webcam_photo),))
    assert loaded["mediapipe"] is False
    assert loaded["heavy"] == [], f"TensorFlow/Keras imported: {loaded['heavy']}"


def test_the_mediapipe_back_end_detects_without_tensorflow(webcam_photo):
    """With ``ENGAGEMENT_DETECTOR_BACKEND=mediapipe`` the MediaPipe Tasks detector runs, still
    without TensorFlow (the ``doc_controls`` shim of :func:`blazeface.import_mediapipe`)."""
    script = CPU_PATH_SCRIPT.replace(
        "from inference_worker import pipeline, runtime",
        "settings.ENGAGEMENT_DETECTOR_BACKEND = 'mediapipe'\n"
        "from inference_worker import pipeline, runtime",
    )
    loaded = run_django_script(script % (str(webcam_photo),))
    assert loaded["mediapipe"] is True  # the MediaPipe detector ran
    assert loaded["heavy"] == [], f"TensorFlow/Keras imported: {loaded['heavy']}"
