"""Test settings: fast hashing, no embedded worker (tests call task functions directly or start
a real worker process)."""

from .base import *  # noqa: F403
from .base import VAR_DIR, env

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ENGAGEMENT_EMBEDDED_WORKER = env.bool("ENGAGEMENT_EMBEDDED_WORKER", default=False)
VAR_DIR.mkdir(parents=True, exist_ok=True)
