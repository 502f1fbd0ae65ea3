"""Settings a new installation relies on without setting them."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def settings_value(name, **env):
    environment = {key: value for key, value in os.environ.items() if key not in {"SITE_URL", "PORT"}}
    done = subprocess.run([sys.executable, "-c", f"from config import settings; print(settings.{name})"], cwd=ROOT,
                          env={**environment, **env, "DJANGO_SETTINGS_MODULE": "config.settings"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_site_url_follows_port_when_unset():
    for name in (".env", "var/runtime.env"):
        path = ROOT / name
        if path.exists() and re.search(r"^\s*(export\s+)?SITE_URL\s*=", path.read_text(), re.M):
            pytest.skip(f"{name} sets SITE_URL")
    assert settings_value("SITE_URL", PORT="8101") == "http://localhost:8101"
    assert settings_value("SITE_URL") == "http://localhost:8000"
