"""A web-only install: `pip install .` (no extras) brings no TensorFlow, MediaPipe, LiteRT or
OpenCV, and the web process (ASGI app, pages, sockets, admin, task sending) runs without them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "mediapipe", "ai-edge-litert", "opencv", "albumentations", "keras")


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower()


def test_the_core_dependencies_have_no_model_runtime():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    assert not {n for n in core if n.startswith(HEAVY)}, core
    extras = project["optional-dependencies"]
    worker = {_name(r) for r in extras["worker"]}
    assert {"ai-edge-litert", "mediapipe"} <= worker and not any("tensorflow" in n for n in worker)
    assert any(_name(r).startswith("tensorflow") for r in extras["ml"])
    # one OpenCV wheel: mediapipe's opencv-contrib-python, none named by the project
    everything = core | worker | {_name(r) for r in extras["ml"]}
    assert not {n for n in everything if n.startswith("opencv")}


@pytest.mark.slow
def test_the_web_process_runs_without_the_worker_packages():
    code = """
import sys
import django
django.setup()
import engagement.asgi, classroom.admin, classroom.consumers, classroom.services, classroom.tasks
from django.test import Client
status = Client(SERVER_NAME="localhost").get("/join/").status_code
heavy = [m for m in ("tensorflow", "keras", "mediapipe", "ai_edge_litert", "cv2", "numpy")
         if m in sys.modules]
print(status, heavy)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    env |= {
        "DJANGO_SETTINGS_MODULE": "engagement.settings.test",
        "ENGAGEMENT_EMBEDDED_WORKER": "false",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "200 []"
