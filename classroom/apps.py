"""Django app configuration for :mod:`classroom`."""

from django.apps import AppConfig


class ClassroomConfig(AppConfig):
    """App config: the custom user model lives here (``AUTH_USER_MODEL = "classroom.User"``)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "classroom"
    verbose_name = "Classroom"
