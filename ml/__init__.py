"""Offline machine learning for expression recognition.

Datasets (FER2013, FER+), model definitions (custom CNN, ResNet50), training, evaluation,
export, and the inference API used by the worker. This package never imports Django, Celery or
application code.
"""
