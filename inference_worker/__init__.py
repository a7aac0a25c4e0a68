"""Celery worker: tasks, the pure analysis pipeline, and runtime loaders for the models."""

from inference_worker.celery import app

__all__ = ["app"]
