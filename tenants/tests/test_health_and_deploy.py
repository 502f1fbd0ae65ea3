import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)


def test_liveness_needs_nothing(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_detailed_health_shows_details_to_platform_admins_only(client, named, api_as):
    anonymous = client.get("/api/v1/health/detailed").json()["data"]
    assert set(anonymous) == {"status"}
    member = api_as(named.alice).get("/api/v1/health/detailed").json()["data"]
    assert set(member) == {"status"}
    response = api_as(named.admin).get("/api/v1/health/detailed")
    checks = response.json()["data"]["checks"]
    assert checks["database"]["ok"] is True and checks["redis"]["ok"] is True
    # Whether a worker answers depends on what else runs on this Redis; either way the answer is explicit.
    celery = checks["celery"]
    if celery["ok"]:
        assert celery["detail"]["workers"]
        assert response.status_code == 200 and response.json()["data"]["status"] == "ok"
    else:
        assert "no Celery worker" in celery["detail"]
        assert response.status_code == 503 and response.json()["data"]["status"] == "degraded"


def test_detailed_health_reports_an_unreachable_redis(client, named, api_as, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = api_as(named.admin).get("/api/v1/health/detailed")
    checks = response.json()["data"]["checks"]
    assert checks["redis"]["ok"] is False and "Connection" in checks["redis"]["detail"]


def test_check_deploy_is_clean_under_production_settings():
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "x7!k2" * 12,
        "ALLOWED_HOSTS": "switchboard.example.com",
        "SITE_URL": "https://switchboard.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    # An empty variable wins over whatever .env holds, like an operator forgetting to fill it in.
    env = {**os.environ, "DEBUG": "false", "ALLOWED_HOSTS": "switchboard.example.com", "SECRET_KEY": ""}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "SECRET_KEY" in result.stderr
