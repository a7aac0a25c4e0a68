"""An in-process Celery worker for the embedded default (no Redis, no separate worker process).

With no ``REDIS_URL`` the broker is kombu's ``memory://`` transport, whose queues live in the
memory of ONE process: only a worker inside the web process can see the messages the web process
sends. :func:`start_embedded_worker` runs that worker in a daemon thread. It is a real Celery
worker (``WorkController``, solo pool) consuming the same task messages, by name, from the queues
``inference`` and ``default``, so the code path is the one of production mode; only the transport
differs.

``engagement/asgi.py`` calls :func:`start_embedded_worker` when ``ENGAGEMENT_EMBEDDED_WORKER``
is true. It also starts Celery beat in a thread of the same process (Celery's own
``EmbeddedService(thread=True)``, what ``celery worker -B`` runs), so the periodic tasks of
``CELERY_BEAT_SCHEDULE`` (retention) run in the embedded default too. Tasks run one at a time in the worker thread, with their own database connections
(Django connections are per thread); models load in that thread on first use.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable

from celery.worker import WorkController

from contracts import QUEUES
from inference_worker.celery import app

logger = logging.getLogger(__name__)

MEMORY_POLLING_INTERVAL_S: float = 0.05
"""Seconds between polls of empty in-memory queues. kombu's virtual transports poll (default
1 s), which would add up to a second of lag to every live frame; 50 ms costs ~20 wake-ups per
second of an idle thread. Applied only to the ``memory://`` broker, and only when
``broker_transport_options`` does not set ``polling_interval`` itself."""

_lock = threading.Lock()
_worker: _EmbeddedWorkController | None = None
_thread: threading.Thread | None = None
_beat: threading.Thread | None = None


class _EmbeddedWorkController(WorkController):
    """A ``WorkController`` that tells a waiting thread when its consumer is ready."""

    def __init__(self, *args, **kwargs):
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer) -> None:
        self.ready.set()


def _tune_memory_polling() -> None:
    if not str(app.conf.broker_url or "").startswith("memory://"):
        return
    options = dict(app.conf.broker_transport_options or {})
    if "polling_interval" not in options:
        options["polling_interval"] = MEMORY_POLLING_INTERVAL_S
        app.conf.broker_transport_options = options


def start_embedded_worker(
    *,
    queues: Iterable[str] = QUEUES,
    loglevel: str = "INFO",
    timeout: float = 30.0,
) -> WorkController:
    """Start, once per process, a Celery worker thread consuming ``queues`` from ``app``'s broker.

    Idempotent: later calls (and calls from other threads) return the running worker. In a
    forked child a new worker is started (threads do not survive a fork).

    Args:
        queues: queue names to consume (default :data:`QUEUES`).
        loglevel: the worker's log level name (logging itself is configured by Django).
        timeout: seconds to wait for the worker's consumer to be ready.

    Returns:
        The running ``celery.worker.WorkController``.

    Raises:
        RuntimeError: the worker thread died or was not ready within ``timeout`` seconds.
    """
    global _worker, _thread
    with _lock:
        if _worker is not None and _thread is not None and _thread.is_alive():
            return _worker
        _tune_memory_polling()
        worker = _EmbeddedWorkController(
            app=app,
            hostname=f"embedded-{os.getpid()}@{socket.gethostname()}",
            pool="solo",
            concurrency=1,
            queues=list(queues),
            loglevel=loglevel,
            # One worker, in-process: no heartbeats, no peer synchronisation, no gossip.
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        thread = threading.Thread(target=_run, args=(worker,), name="celery-embedded", daemon=True)
        thread.start()
        if not _wait_ready(worker, thread, timeout):
            raise RuntimeError(f"embedded Celery worker not ready after {timeout} s")
        _worker, _thread = worker, thread
        _start_beat()
        logger.info(
            "embedded Celery worker consuming %s (%s), beat running",
            ", ".join(queues),
            app.conf.broker_url,
        )
        return worker


def _start_beat() -> None:
    """Celery beat in a daemon thread of this process (once), with the configured schedule."""
    global _beat
    if _beat is not None and _beat.is_alive():
        return
    from celery.beat import EmbeddedService

    _beat = EmbeddedService(app, thread=True, schedule_filename=app.conf.beat_schedule_filename)
    _beat.start()


def _run(worker: WorkController) -> None:
    try:
        worker.start()
    except Exception:  # noqa: BLE001 - a dying thread must say why
        logger.exception("embedded Celery worker stopped with an error")


def _wait_ready(worker: _EmbeddedWorkController, thread: threading.Thread, timeout: float) -> bool:
    waited = 0.0
    while not worker.ready.wait(0.05):
        waited += 0.05
        if not thread.is_alive() or waited >= timeout:
            return False
    return True


def stop_embedded_worker(timeout: float = 10.0) -> bool:
    """Stop the embedded worker after its current task (tests, orderly shutdown).

    Args:
        timeout: seconds to wait for the thread to end.

    Returns:
        ``True`` when no worker is left running.
    """
    global _worker, _thread, _beat
    from celery.worker import state

    with _lock:
        if _beat is not None:
            _beat.stop()
        if _thread is None:
            return True
        # The consumer loop polls this process-wide flag (celery.contrib.testing does the same).
        state.should_terminate = 0
        _thread.join(timeout)
        stopped = not _thread.is_alive()
        state.should_terminate = None
        if stopped:
            _worker, _thread, _beat = None, None, None
        return stopped


def _forget_after_fork() -> None:
    global _lock, _worker, _thread, _beat
    _lock, _worker, _thread, _beat = threading.Lock(), None, None, None


os.register_at_fork(after_in_child=_forget_after_fork)
