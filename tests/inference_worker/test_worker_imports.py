"""Importing the worker's modules must not load TensorFlow or MediaPipe (they load lazily,
once per worker process, after the fork). Checked in a fresh interpreter."""

from __future__ import annotations

from worker_fakes import run_django_script

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
