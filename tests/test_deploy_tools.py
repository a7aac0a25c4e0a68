"""The load-test tooling of ``deploy/``: ``cpu_split.py`` (where a run's CPU time went) and the
worker options of ``load-test.sh``."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _cpu_split():
    spec = importlib.util.spec_from_file_location(
        "cpu_split", REPO_ROOT / "deploy" / "cpu_split.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUSY_GRANDCHILD = """
import subprocess, sys
burn = (
    "import time\\nprint('start', flush=True)\\nend = time.process_time() + 0.6\\n"
    "while time.process_time() < end: pass\\nprint('done', flush=True)\\ntime.sleep(30)"
)
subprocess.Popen([sys.executable, "-c", burn]).wait()
"""


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads /proc (Linux)")
def test_snapshot_counts_a_process_tree_and_leaves_an_idle_one_at_zero():
    """A grandchild that burns 0.6 s of CPU counts for its grandparent's group; a sleeper's
    group stays near zero."""
    cpu_split = _cpu_split()
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    busy = subprocess.Popen(
        [sys.executable, "-c", BUSY_GRANDCHILD], stdout=subprocess.PIPE, text=True
    )
    try:
        assert busy.stdout.readline().strip() == "start"
        before = cpu_split.snapshot(web=[idle.pid], workers=[busy.pid])
        assert busy.stdout.readline().strip() == "done"
        after = cpu_split.snapshot(web=[idle.pid], workers=[busy.pid])
    finally:
        # The grandchild first (found through /proc, so no procps is needed).
        children = Path(f"/proc/{busy.pid}/task/{busy.pid}/children")
        for pid in children.read_text().split() if children.exists() else []:
            os.kill(int(pid), signal.SIGKILL)
        for proc in (busy, idle):
            proc.kill()
            proc.wait()
    used = {group: after[group] - before[group] for group in ("web", "workers")}
    assert used["workers"] >= 0.5  # 0.6 s, counted in 10 ms ticks
    assert used["web"] <= 0.05
    assert after["machine"] - before["machine"] >= used["workers"] - 0.05


def test_report_gives_cores_per_group_and_the_workers_cost_per_frame():
    cpu_split = _cpu_split()
    before = {
        "at": 100.0,
        "web": 1.0,
        "workers": 5.0,
        "postgres": 0.0,
        "redis": 0.0,
        "machine": 10.0,
    }
    after = {
        "at": 110.0,
        "web": 3.5,
        "workers": 9.0,
        "postgres": 1.0,
        "redis": 0.5,
        "machine": 20.0,
    }
    text = cpu_split.report(before, after, frames=200)
    lines = {line.split()[0]: line.split() for line in text.splitlines()[1:7]}
    assert lines["web"][1:] == ["2.5", "s", "0.25", "cores"]
    assert lines["workers"][1:] == ["4.0", "s", "0.40", "cores"]
    assert lines["other"][1] == "2.0"  # 10 s busy minus 8 s in the groups: the load generator
    assert lines["machine"][3] == "1.00"
    # 4 s of worker CPU for 200 frames: 20 ms per frame, 1000 / 20 = 50 students per core.
    assert "20.0 CPU ms per analysed frame, 50 students per worker core" in text


def test_report_reads_snapshot_files_and_says_when_one_is_missing(tmp_path):
    cpu_split = _cpu_split()
    good = tmp_path / "before.json"
    good.write_text('{"at": 0, "web": 0, "workers": 0, "postgres": 0, "redis": 0, "machine": 0}')
    assert cpu_split.main(["report", str(good), str(tmp_path / "missing.json")]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pool", "gevent"], "--pool must be prefork or threads, got 'gevent'"),
        (["--workers", "two"], "--workers and --threads take positive integers"),
        (["--workers", "0"], "--workers and --threads must be >= 1"),
        (["--threads", "-3"], "--workers and --threads take positive integers"),
    ],
)
def test_load_test_script_refuses_bad_worker_options_before_starting_anything(args, message):
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "deploy" / "load-test.sh"), *args, "--students", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "test-services" not in proc.stderr  # no database or Redis was started
