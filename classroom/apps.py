"""Django app configuration for :mod:`classroom`."""

from django.apps import AppConfig


class ClassroomConfig(AppConfig):
    """App config: the custom user model lives here (``AUTH_USER_MODEL = "classroom.User"``)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "classroom"
    verbose_name = "Classroom"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        user_logged_out.connect(_close_dashboards, dispatch_uid="classroom.close_dashboards")


def _close_dashboards(sender, request, user, **kwargs) -> None:
    """``user_logged_out`` receiver: the user's open dashboard sockets close at once."""
    if user is not None:
        from classroom import services

        services.user_logged_out(user.pk)
