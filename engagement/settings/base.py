"""Settings shared by every deployment, read from the environment (django-environ).

Embedded default: with no ``DATABASE_URL`` and no ``REDIS_URL`` the whole system runs in one
process on one machine (SQLite, in-process channel layer, in-process Celery worker consuming the
same task messages from an in-memory broker). Setting ``DATABASE_URL=postgres://...`` and
``REDIS_URL=redis://...`` switches to PostgreSQL, channels-redis and separate worker processes.
"""

from pathlib import Path

import environ

import contracts

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env") if (BASE_DIR / ".env").exists() else None

SECRET_KEY = env("DJANGO_SECRET_KEY", default="insecure-dev-key-change-me-in-production")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "csp",
    "axes",
    "django_ratelimit",
    "classroom",
    "inference_worker",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (our JS/CSS, Chart.js from npm) straight from Daphne, so the web container
    # needs no separate file server; a reverse proxy may still cache them.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "engagement.urls"
ASGI_APPLICATION = "engagement.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

VAR_DIR = Path(env("ENGAGEMENT_VAR_DIR", default=str(BASE_DIR / "var")))
# The shared data and media beside the project (FER2013, the test media): read by the
# developer tools (recall, bench, load_test) and the tests, never by the live path.
ENGAGEMENT_SHARED_DIR = Path(env("ENGAGEMENT_SHARED_DIR", default=str(BASE_DIR.parent / "shared")))

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + IMMEDIATE transactions let the in-process worker thread write results while the
    # server reads, without "database is locked" errors (Django 5.1+ options).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "classroom.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "classroom:session_list"
LOGOUT_REDIRECT_URL = "classroom:home"

# Login brute force (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one username from
# one client address, that pair is locked out for AXES_COOLOFF_TIME hours (HTTP 429, the
# registration/locked.html page), even with the right password; a successful login resets the
# count. Admins see and clear lockouts in the Django admin ("Axes" section) or with
# `manage.py axes_reset`.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_TIME", default=1.0)  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked.html"

# Content-Security-Policy (django-csp): the pages run only their own scripts and styles, served
# from this origin (no inline script or style, no CDN), talk only to this origin (HTTP and the
# WebSockets), and cannot be framed.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# Front-end libraries come from npm (package.json), never copied into the repository.
STATICFILES_DIRS = [
    ("vendor/chart.js", BASE_DIR / "node_modules" / "chart.js" / "dist"),
    # On-device analysis (the student page of an on-device session): the WASM runtimes from npm,
    # our bundle of classroom/frontend/ (`npm run build`, run by `make install`), and the models.
    ("vendor/mediapipe-wasm", BASE_DIR / "node_modules" / "@mediapipe" / "tasks-vision" / "wasm"),
    ("vendor/litert-wasm", BASE_DIR / "node_modules" / "@litertjs" / "core" / "wasm"),
    ("ondevice", BASE_DIR / "build" / "ondevice"),
    ("models/detector", BASE_DIR / "inference_worker" / "models"),
    ("models/classifier", BASE_DIR / "ml" / "shipped"),
]
# Without `collectstatic` (demo, tests, `make web`) WhiteNoise serves from the finders;
# production images run `collectstatic` at build time and turn this off.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)
WHITENOISE_AUTOREFRESH = env.bool("WHITENOISE_AUTOREFRESH", default=WHITENOISE_USE_FINDERS)

# --- Redis, channel layer, Celery -------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")

# The cache holds the join throttles' counters (django-ratelimit). With Redis it is shared by every
# web process; embedded (one process) the local-memory cache is that process's shared cache.
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    # Django's own Redis cache increments atomically (INCR); django-ratelimit only lists
    # django-redis as "officially supported".
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py's pool refuses a 101st connection by default ("Too many connections"):
            # each socket's group_add/group_send borrows one, and a class of 500 on-device
            # students connects at once. redis-py 8 also times reads out after 5 s by default,
            # the very time channels-redis blocks in BZPOPMIN waiting for a message: on a busy
            # loop the read timer fired first and the consumer died ("Timeout reading from
            # ...", seen on the teacher's board socket in a 500-student load test).
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "max_connections": env.int("CHANNEL_LAYER_MAX_CONNECTIONS", default=1000),
                        "socket_timeout": 15,
                    }
                ],
                "capacity": 1500,
                "expiry": 10,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = contracts.DEFAULT_QUEUE
CELERY_TASK_ROUTES = {
    contracts.ANALYZE_FRAME_TASK: {"queue": contracts.INFERENCE_QUEUE},
    "classroom.tasks.*": {"queue": contracts.DEFAULT_QUEUE},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=1)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Logging -----------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}

# --- Application knobs (ENGAGEMENT_*): all of them, each with its comment ----------------------
# (ENGAGEMENT_VAR_DIR and ENGAGEMENT_SHARED_DIR, the two paths, are at the top: the database
# default needs the first.)
# Site-wide off-switch of emotion recognition: false makes every session attention-only (no
# worker loads the expression classifier, the session form offers no expressions, the board says
# so). See the README's "Responsible use" (EU AI Act, Article 5(1)(f)).
ENGAGEMENT_EMOTION_INFERENCE = env.bool("ENGAGEMENT_EMOTION_INFERENCE", default=True)
# No individual figures: expression and attention figures are shown, exported and sent to the
# board only for groups of at least this many faces (a k-anonymity threshold); the demo lowers
# it, and the board then says so.
ENGAGEMENT_MIN_GROUP_SIZE = env.int("ENGAGEMENT_MIN_GROUP_SIZE", default=5)
# Retention (classroom.services.retention, run by Celery beat every
# ENGAGEMENT_RETENTION_INTERVAL_S): per-frame and per-face rows of sessions that ended more
# than ENGAGEMENT_RETENTION_DAYS ago are deleted; the stored session report remains.
ENGAGEMENT_RETENTION_DAYS = env.float("ENGAGEMENT_RETENTION_DAYS", default=30.0)
ENGAGEMENT_RETENTION_INTERVAL_S = env.float("ENGAGEMENT_RETENTION_INTERVAL_S", default=3600.0)
# Joining (classroom.views.student.join): at most this many participants per session, at most
# ENGAGEMENT_JOIN_FAILURES_PER_MINUTE wrong join codes per client address per minute, and at most
# ENGAGEMENT_JOINS_PER_10_MINUTES joins per client address per 10 minutes (a class behind one
# school NAT address joins from one address, hence the generous default: several classes).
ENGAGEMENT_MAX_PARTICIPANTS = env.int("ENGAGEMENT_MAX_PARTICIPANTS", default=100)
ENGAGEMENT_JOIN_FAILURES_PER_MINUTE = env.int("ENGAGEMENT_JOIN_FAILURES_PER_MINUTE", default=10)
ENGAGEMENT_JOINS_PER_10_MINUTES = env.int("ENGAGEMENT_JOINS_PER_10_MINUTES", default=300)
# Run a Celery worker thread inside the web process (embedded default, no outside services).
ENGAGEMENT_EMBEDDED_WORKER = env.bool("ENGAGEMENT_EMBEDDED_WORKER", default=not REDIS_URL)
# Frame intake limits: bytes on the wire, decoded side in pixels (the student page sends at most
# 1280 px on the longer side, a screen share; a webcam frame 640).
ENGAGEMENT_MAX_FRAME_BYTES = env.int("ENGAGEMENT_MAX_FRAME_BYTES", default=1_000_000)
ENGAGEMENT_MAX_FRAME_SIDE = env.int("ENGAGEMENT_MAX_FRAME_SIDE", default=1280)
# Frame bytes per second per client address, shared by the students behind it (a class of 30
# sharing screens of ~250 KB at one frame per second sends 7.5 MB/s).
ENGAGEMENT_INTAKE_BYTES_PER_S_PER_ADDRESS = env.int(
    "ENGAGEMENT_INTAKE_BYTES_PER_S_PER_ADDRESS", default=16_000_000
)
# On-device sessions: the numbers message of one frame (contracts.device). 50 faces cover a
# video-call gallery; a face is about 250 bytes of JSON, so 32 KiB leaves room.
ENGAGEMENT_DEVICE_MAX_FACES = env.int("ENGAGEMENT_DEVICE_MAX_FACES", default=50)
ENGAGEMENT_DEVICE_MAX_MESSAGE_BYTES = env.int("ENGAGEMENT_DEVICE_MAX_MESSAGE_BYTES", default=32_768)
# Seconds after which an unanalysed live frame is worthless and expires in the broker.
ENGAGEMENT_FRAME_TTL_S = env.float("ENGAGEMENT_FRAME_TTL_S", default=10.0)
# Expression classifier: path of a .keras/.tflite file; empty = the shipped model.
ENGAGEMENT_CLASSIFIER_PATH = env("ENGAGEMENT_CLASSIFIER_PATH", default="")
# Load the models in each worker process right after the fork, so the first live frame does not
# wait (and expire) while TensorFlow/MediaPipe/LiteRT load.
ENGAGEMENT_WARM_MODELS = env.bool("ENGAGEMENT_WARM_MODELS", default=True)
# Face detector model: "short" (BlazeFace short range, webcams) or "full" (full range).
ENGAGEMENT_DETECTOR = env("ENGAGEMENT_DETECTOR", default="full")
# What runs the BlazeFace model: "litert" (LiteRT directly, input fitted to the frame's aspect,
# about half the cost) or "mediapipe" (the MediaPipe Tasks FaceDetector, the reference).
ENGAGEMENT_DETECTOR_BACKEND = env("ENGAGEMENT_DETECTOR_BACKEND", default="litert")
# LiteRT threads per detector call (litert back end). 1 suits a worker with one process per core;
# 2 speeds up one "room" frame (analyze_media, a classroom camera) on a 2-core machine.
ENGAGEMENT_DETECTOR_THREADS = env.int("ENGAGEMENT_DETECTOR_THREADS", default=1)
# Second-stage face check (inference_worker.facecheck): every detection is looked at again by
# MediaPipe's face landmark model and dropped when it is not a face (hands, collars, chair backs).
# About 2 ms per detected face on one core; false only to measure the detector without it.
ENGAGEMENT_FACE_CHECK = env.bool("ENGAGEMENT_FACE_CHECK", default=True)


# Teacher dashboards: least seconds between two pushed snapshots (bursts of results are coalesced).
ENGAGEMENT_DASHBOARD_REFRESH_S = env.float("ENGAGEMENT_DASHBOARD_REFRESH_S", default=0.25)
# Student pages that are not streaming (no socket) ask the session's status this often, in
# seconds, so that a student who pressed Stop still learns that the class started or ended.
ENGAGEMENT_STUDENT_STATUS_POLL_S = env.float("ENGAGEMENT_STUDENT_STATUS_POLL_S", default=15.0)

# Face tracks (classroom.tracking): seconds a track outlives its last matched frame (at least 3
# frame intervals of the session), and the time constant of the per-track exponential moving
# average of the expression probabilities (alpha = 1 - exp(-dt / tau), Eckner 2012/2019).
ENGAGEMENT_TRACK_MAX_AGE_S = env.float("ENGAGEMENT_TRACK_MAX_AGE_S", default=5.0)
ENGAGEMENT_SMOOTHING_TAU_S = env.float("ENGAGEMENT_SMOOTHING_TAU_S", default=3.0)

# Expression classifier back end of the worker (inference_worker.runtime): "litert" (CPU, no
# TensorFlow) or "keras" (TensorFlow, for GPU workers). Batching ACROSS frames for a worker
# started with `--pool threads`: up to ENGAGEMENT_BATCH_MAX_SIZE faces per classifier call,
# waiting at most ENGAGEMENT_BATCH_MAX_WAIT_MS for a batch to fill; 0 or 1 = off (the default).
ENGAGEMENT_CLASSIFIER_BACKEND = env("ENGAGEMENT_CLASSIFIER_BACKEND", default="litert")
ENGAGEMENT_BATCH_MAX_SIZE = env.int("ENGAGEMENT_BATCH_MAX_SIZE", default=0)
ENGAGEMENT_BATCH_MAX_WAIT_MS = env.float("ENGAGEMENT_BATCH_MAX_WAIT_MS", default=5.0)

# --- Celery beat, after the knobs it reads --------------------------------------------------
# Celery beat (`celery -A engagement beat`; in the embedded default a beat thread of the
# web process): the retention task, on the default queue.
CELERY_BEAT_SCHEDULE = {
    "retention": {
        "task": contracts.APPLY_RETENTION_TASK,
        "schedule": ENGAGEMENT_RETENTION_INTERVAL_S,
        "options": {"queue": contracts.DEFAULT_QUEUE},
    }
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
