import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)


def test_liveness_needs_nothing(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.fixture
def workers():
    """Heartbeats as the project's Celery workers write them (config.heartbeat), removed afterwards."""
    from core import heartbeats

    written = []

    def alive(name, *queues):
        heartbeats.beat("worker", name, queues=list(queues), pid=1, host="test")
        written.append(name)

    yield alive
    for name in written:
        heartbeats.forget("worker", name)


def test_detailed_health_is_ok_from_heartbeats_and_shows_details_to_platform_admins_only(client, named, api_as,
                                                                                          workers):
    workers("test-default", "default")
    workers("test-host", "whatsapp", "whatsapp.host.x")
    anonymous = client.get("/api/v1/health/detailed")
    assert anonymous.status_code == 200 and anonymous.json()["data"] == {"status": "ok"}
    assert api_as(named.alice).get("/api/v1/health/detailed").json()["data"] == {"status": "ok"}
    checks = api_as(named.admin).get("/api/v1/health/detailed").json()["data"]["checks"]
    assert checks["database"]["ok"] and checks["redis"]["ok"] and checks["session_hosts"]["ok"]
    names = {w["name"]: w["queues"] for w in checks["workers"]["detail"]["workers"]}
    assert names["test-default"] == ["default"] and "whatsapp" in names["test-host"]
    assert set(checks["workers"]["detail"]["queue_depth"]) == {"default", "whatsapp"}


def test_without_a_live_worker_for_a_queue_health_is_503_and_says_which(client, named, api_as, workers):
    from core import heartbeats

    for worker in heartbeats.alive("worker"):  # what a dev system on this Redis may have written
        heartbeats.forget("worker", worker["name"])
    workers("test-default", "default")
    response = client.get("/api/v1/health/detailed")
    error = response.json()["error"]
    assert response.status_code == 503 and error["code"] == "unavailable"
    assert "no live worker consumes whatsapp" in error["message"] and error["details"] == {"status": "degraded"}


def test_detailed_health_reports_an_unreachable_redis(client, named, api_as, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = api_as(named.admin).get("/api/v1/health/detailed")
    checks = response.json()["error"]["details"]["checks"]
    assert response.status_code == 503
    assert checks["redis"]["ok"] is False and "Connection" in checks["redis"]["detail"]


PRODUCTION = {"DEBUG": "false", "SECRET_KEY": "x7!k2" * 12, "ALLOWED_HOSTS": "switchboard.example.com",
              "SITE_URL": "https://switchboard.example.com", "EMAIL_URL": "smtp://user:pw@smtp.example.com:587/?tls=True",
              "WHATSAPP_ENCRYPTION_KEY": "y6Y1j8yFQwJm0w0lQGnH3uTJ1cJgCzM6WlXoq9xJ2Ek="}


def check_deploy(**changes):
    env = {**os.environ, **PRODUCTION, **changes}
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_under_production_settings():
    result = check_deploy()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize("changes, check_id", [
    ({"EMAIL_URL": "consolemail://"}, "switchboard.E001"),  # confirmations would never leave
    ({"ALLOWED_HOSTS": "localhost,127.0.0.1"}, "switchboard.E002"),
    ({"ALLOWED_HOSTS": "*"}, "switchboard.E002"),
    ({"SITE_URL": "http://localhost:8000"}, "switchboard.E003"),
    ({"WHATSAPP_ENCRYPTION_KEY": ""}, "switchboard.W001"),  # secrets would die with SECRET_KEY
    ({"WHATSAPP_ENCRYPTION_KEY": "not-a-key"}, "switchboard.E004"),
    ({"WHATSAPP_ENCRYPT_MESSAGES": "true", "WHATSAPP_ENCRYPTION_KEY": ""}, "switchboard.E005"),
])
def test_check_deploy_fails_on_settings_that_would_make_production_useless(changes, check_id):
    result = check_deploy(**changes)
    assert result.returncode != 0 and check_id in result.stdout + result.stderr


def test_production_settings_refuse_to_start_without_a_secret_key():
    # An empty variable wins over whatever .env holds, like an operator forgetting to fill it in.
    env = {**os.environ, "DEBUG": "false", "ALLOWED_HOSTS": "switchboard.example.com", "SECRET_KEY": ""}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "SECRET_KEY" in result.stderr
