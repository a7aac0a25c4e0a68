"""The compose file (no Docker engine runs here, so its structure is checked): every service,
TLS on 443 in front of an unpublished web server, one beat, split queues, no default secrets."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = (ROOT / "docker-compose.yml").read_text()


def test_every_service_of_a_deployment_is_there():
    services = yaml.safe_load(COMPOSE)["services"]
    assert set(services) == {
        "postgres",
        "redis",
        "web",
        "worker-inference",
        "worker-default",
        "beat",
        "nginx",
    }
    assert services["worker-inference"]["environment"]["QUEUES"] == "inference"
    assert services["worker-default"]["environment"]["QUEUES"] == "default"
    assert services["beat"]["command"] == ["start-beat.sh"]
    assert "ports" not in services["web"] and services["nginx"]["ports"] == ["443:443", "80:80"]
    assert services["web"]["build"]["target"] == "web"
    assert services["worker-inference"]["build"]["target"] == "worker"
    for name in ("postgres", "redis", "web"):
        assert "healthcheck" in services[name], name


def test_no_secret_has_a_default():
    for name in ("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "DJANGO_ALLOWED_HOSTS", "TLS_CERT_DIR"):
        uses = re.findall(r"\$\{" + name + r"(:[-?][^}]*)?\}", COMPOSE)
        assert uses and all(u.startswith(":?") for u in uses if u), (name, uses)


def test_nginx_terminates_tls_and_upgrades_websockets():
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "listen 443 ssl;" in conf and "return 301 https://" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_set_header X-Forwarded-Proto https;" in conf
