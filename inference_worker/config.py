"""The one place the worker reads its settings: Django settings (``ENGAGEMENT_*``).

Every knob has its default and a comment in ``engagement/settings/base.py``, read from the
environment there (django-environ). The worker's command-line tools (``python -m
inference_worker.bench``, ``.recall``) run outside ``manage.py``: for them the same settings
module as the Celery app's is chosen (``engagement.settings.local`` unless
``DJANGO_SETTINGS_MODULE`` says otherwise), so a CLI and a worker started from the same
environment read the same values.
"""

from __future__ import annotations

import os
from typing import Any

DEFAULT_SETTINGS_MODULE = "engagement.settings.local"
"""The settings module when ``DJANGO_SETTINGS_MODULE`` is unset."""


def setting(name: str) -> Any:
    """The Django setting ``name``.

    Args:
        name: e.g. ``"ENGAGEMENT_DETECTOR"``.

    Returns:
        Its value (read at each call, so a changed setting takes effect; tests rely on it).

    Raises:
        AttributeError: no such setting (every worker setting is defined in ``base.py``).
    """
    from django.conf import settings

    if not settings.configured:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", DEFAULT_SETTINGS_MODULE)
    return getattr(settings, name)
