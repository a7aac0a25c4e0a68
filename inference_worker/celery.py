"""The Celery application: ``celery -A inference_worker worker -Q inference``.

Configuration comes from Django settings with the ``CELERY_`` prefix. Queues: ``inference``
(live frames, at-most-once) and ``default`` (reports, at-least-once).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "engagement.settings.local")

app = Celery("engagement")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["inference_worker", "classroom"])
