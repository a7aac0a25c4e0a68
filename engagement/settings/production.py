"""Production settings: ``base`` adjusted. Secrets and service URLs have no default, so a missing
one fails at start (``django.core.exceptions.ImproperlyConfigured``); HTTPS is assumed.

``base`` already builds the database, the channel layer, the cache and the Celery broker from
``DATABASE_URL`` and ``REDIS_URL``; here both are required, and the transport security of a
site served over TLS is switched on (each switch can be turned off from the environment, e.g.
for a plain-HTTP load test on loopback).
"""

from .base import *  # noqa: F403
from .base import env

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
env("DATABASE_URL")  # required: base.py falls back to SQLite without it
env("REDIS_URL")  # required: base.py falls back to the embedded worker without it
ENGAGEMENT_EMBEDDED_WORKER = False

# --- transport security (`manage.py check --deploy` is clean with the defaults) --------------
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# HSTS: browsers refuse plain HTTP to this host for this long (one year; 0 turns it off).
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
# The proxy header is trusted only when a TLS-terminating proxy is in front and says so:
# DJANGO_SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO (the header's META name). Unset, no
# client can claim HTTPS with a header.
_proxy_header = env("DJANGO_SECURE_PROXY_SSL_HEADER", default="")
SECURE_PROXY_SSL_HEADER = (_proxy_header, "https") if _proxy_header else None

# --- static files: collected at build time, served by WhiteNoise ----------------------------
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=False)
WHITENOISE_AUTOREFRESH = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
