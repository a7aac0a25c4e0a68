"""Importing the worker's modules must not load TensorFlow or MediaPipe (they load lazily,
once per worker process, after the fork). Checked in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from worker_fakes import REPO_ROOT

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
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "engagement.settings.test",
        "CELERY_SKIP_CHECKS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT % (HEAVY,)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"heavy modules imported: {loaded}"
