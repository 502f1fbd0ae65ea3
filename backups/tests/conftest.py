"""Fixtures of the backup tests: every path a backup reads or writes (BACKUP_DIR, MEDIA_ROOT, WHATSAPP_STORE_DIR,
the WAL spool) in the test's own folder, a passphrase of its own, an in-process session host on the simulator
whose device stores are WHATSAPP_STORE_DIR, and schemas a restore left behind dropped afterwards."""
import uuid

import pytest
from django.db import connection

from whatsapp.providers.simulator import ManualScheduler
from whatsapp.tests.support import current_simulator_host


@pytest.fixture(autouse=True)
def backup_env(settings, tmp_path):
    settings.BACKUP_DIR = str(tmp_path / "backups")
    settings.BACKUP_STORAGE_URL = ""
    settings.BACKUP_AGE_RECIPIENTS = []
    settings.BACKUP_AGE_IDENTITY_FILE = ""
    settings.BACKUP_ENCRYPTION_KEY = "test passphrase, not a secret"
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.WHATSAPP_STORE_DIR = str(tmp_path / "stores")
    settings.BACKUP_WAL_SPOOL_DIR = str(tmp_path / "wal-spool")
    settings.BACKUP_SESSION_STOP_WAIT_SECONDS = 0
    settings.WHATSAPP_PACING_ENABLED = False
    return tmp_path


@pytest.fixture
def clients(named, api_as):
    return {"alice": api_as(named.alice), "bob": api_as(named.bob), "carol": api_as(named.carol),
            "admin": api_as(named.admin)}


@pytest.fixture
def clock():
    return ManualScheduler()


@pytest.fixture
def host(named, clock, settings):
    settings.WHATSAPP_PROVIDER = "simulator"
    with current_simulator_host(clock, settings.WHATSAPP_STORE_DIR, "host-backups") as session_host:
        yield session_host


@pytest.fixture
def drop_restored_schemas(django_db_blocker):
    """Schemas a restore made or set aside (<schema>_pre_…, _r…, v_…, new tenants' t_…) go after the test."""
    yield
    with django_db_blocker.unblock():
        connection.set_schema_to_public()
        with connection.cursor() as cursor:
            cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE '%%\\_pre\\_%%' "
                           "OR nspname ~ '_r[0-9]+$' OR nspname LIKE 'v\\_%%' "
                           "OR (nspname LIKE 't\\_%%' AND nspname NOT LIKE 't\\_test\\_%%')")
            for (schema,) in cursor.fetchall():
                cursor.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture
def private_layer(settings):
    """A channel layer prefix of this test's own: parallel runs on the same Redis never cross."""
    layers = {key: dict(value) for key, value in settings.CHANNEL_LAYERS.items()}
    layers["default"]["CONFIG"] = {**layers["default"]["CONFIG"], "prefix": f"sbtest:{uuid.uuid4().hex}"}
    settings.CHANNEL_LAYERS = layers
