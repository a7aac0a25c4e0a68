"""The Celery application of the project: ``celery -A engagement worker -Q inference,default``
and ``celery -A engagement beat`` (cookiecutter-django's ``config/celery_app.py`` pattern).

Configuration comes from Django settings with the ``CELERY_`` prefix; tasks are discovered in
the installed apps' ``tasks`` modules (``classroom.tasks``, ``inference_worker.tasks``). Queues:
``inference`` (live frames, at-most-once) and ``default`` (reports and retention,
at-least-once).

Database connections: Celery's Django fixup closes every connection before and after each task
unless ``CELERY_DB_REUSE_MAX`` is set (``celery/fixups/django.py``, Celery 5.x), so each live
frame would open a new PostgreSQL connection: ~15% of the worker's time per frame (py-spy, in a
``load_test`` of 15 students at 1 fps). The fixup is told to keep connections
(:data:`DB_REUSE_MAX_TASKS`), and after each task Django's own rule decides instead
(``close_old_connections``: a connection is closed when it is older than ``CONN_MAX_AGE``,
which production sets to 60 s, or unusable after an error), as for a web request.
"""

import os

from celery import Celery
from celery.signals import task_postrun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "engagement.settings.local")

#: Tasks after which Celery's fixup closes the connections anyway (a safety net; Django's
#: ``CONN_MAX_AGE`` normally closes them first).
DB_REUSE_MAX_TASKS = 10_000

app = Celery("engagement")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()  # the INSTALLED_APPS' tasks modules, when the app is finalised
# The fixup reads this (old-style) key as it is; added lazily, as a default, so importing this
# module does not load the configuration (nor Django's settings).
app.add_defaults(lambda: {"CELERY_DB_REUSE_MAX": DB_REUSE_MAX_TASKS})


@task_postrun.connect(dispatch_uid="engagement.close_old_connections")
def _close_old_connections(**kwargs) -> None:
    """After each task: close database connections past ``CONN_MAX_AGE`` or broken ones."""
    from django.db import close_old_connections

    close_old_connections()
