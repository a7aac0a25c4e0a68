"""Django project for live class mood monitoring.

Importing the project loads the Celery app so that ``send_task`` and ``shared_task`` in the web
process use the configured broker.
"""

from engagement.celery import app as celery_app

__all__ = ["celery_app"]
