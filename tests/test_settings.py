"""Production settings: `check --deploy` is clean with secrets from the environment, secrets and
service URLs are required, and the proxy header is trusted only when configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "engagement.settings.production",
    "DJANGO_SECRET_KEY": "x" * 20 + "-a-long-random-production-secret-" + "y" * 20,
    "DJANGO_ALLOWED_HOSTS": "class.example.org",
    "DATABASE_URL": "postgres://engagement:secret@127.0.0.1:5432/engagement",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def _run(args: list[str], **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    env.pop("REDIS_URL", None)
    env |= PRODUCTION_ENV | extra
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _settings(*names: str, **extra: str) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {list(names)!r}}}))"
    )
    result = _run(["-c", code], **extra)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_check_deploy_is_clean_with_production_settings():
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"])
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "System check identified no issues" in result.stdout


@pytest.mark.slow
def test_the_proxy_header_is_trusted_only_when_configured():
    assert _settings("SECURE_PROXY_SSL_HEADER")["SECURE_PROXY_SSL_HEADER"] is None
    trusted = _settings(
        "SECURE_PROXY_SSL_HEADER", DJANGO_SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO"
    )
    assert trusted["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


@pytest.mark.slow
def test_production_defaults_are_secure_and_secrets_are_required():
    values = _settings(
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "ENGAGEMENT_EMBEDDED_WORKER",
    )
    assert values == {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "ENGAGEMENT_EMBEDDED_WORKER": False,
    }
    for missing in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
        env = dict(PRODUCTION_ENV)
        del env[missing]
        result = subprocess.run(
            [sys.executable, "-c", "import django; django.setup()"],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV} | env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0 and missing in result.stderr, (missing, result.stderr[-500:])
