"""The project's Celery app (:mod:`engagement.celery`), importable from the worker package.

The commands name the project: ``celery -A engagement worker`` and ``celery -A engagement beat``;
``-A inference_worker`` still finds the same app.
"""

from engagement.celery import app

__all__ = ["app"]
