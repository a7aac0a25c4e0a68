"""Django app configuration for :mod:`inference_worker` (it provides the ``analyze_media``
management command; it has no models)."""

from django.apps import AppConfig


class InferenceWorkerConfig(AppConfig):
    """App config of the worker package."""

    name = "inference_worker"
    verbose_name = "Inference worker"
