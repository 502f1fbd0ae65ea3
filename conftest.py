"""Fixtures shared by every app's tests.

Named users across two tenants, used everywhere so that isolation is tested everywhere:
alice (owner of Acme), bob (agent of Acme), carol (owner of Globex), admin (platform admin, no tenant).
Acme and Globex have real, migrated schemas (created once per session, kept across transactional flushes).
"""
import os
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.utils import timezone

PASSWORD = "correct-horse-battery-staple"
TEST_SCHEMAS = {"acme": "t_test_acme", "globex": "t_test_globex", "pool": "t_test_pool"}
# The suite's platform admins sign in without a second factor (the browser tests' web processes read this too);
# accounts/tests/test_two_factor_required.py turns the requirement on and tests it.
os.environ.setdefault("PLATFORM_ADMINS_REQUIRE_2FA", "false")


@pytest.fixture(autouse=True)
def _platform_admins_without_2fa(settings):
    settings.PLATFORM_ADMINS_REQUIRE_2FA = False


@pytest.fixture(scope="session", autouse=True)
def _no_persistent_connections():
    """Connections opened by worker threads (database_sync_to_async) close after use, so none is left
    holding the test database when pytest-django drops it."""
    from django.conf import settings

    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
    yield


@pytest.fixture(scope="session", autouse=True)
def _eager_celery():
    """Most tests run tasks in-process; tests that cross processes start a real worker (tests/live.py)."""
    from config.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield


@pytest.fixture(scope="session", autouse=True)
def _no_real_wal_spool(tmp_path_factory):
    """The private Postgres of `make run`/`make test` may archive WAL into var/wal-spool while the suite runs, with
    no `wal` process shipping it; a test must never see that spool (the wal_not_shipped alert would fire)."""
    from django.conf import settings

    settings.BACKUP_WAL_SPOOL_DIR = str(tmp_path_factory.mktemp("wal-spool"))
    yield


@pytest.fixture(autouse=True)
def _fast_password_hashing(request, settings):
    # Django's default PBKDF2 costs ~0.3 s per user; the named fixture makes four users per test.
    # Browser tests keep the real hasher: their server process must verify the passwords.
    if request.node.get_closest_marker("browser"):
        return
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def _a_cache_of_its_own(worker_id):
    """pytest-xdist workers share one Redis: each keeps its cache entries under its own key prefix, so one worker
    clearing its login counters never clears another's mid-test."""
    from asgiref.local import Local
    from django.conf import settings
    from django.core.cache import caches

    settings.CACHES["default"]["KEY_PREFIX"] = f"sb-test-{worker_id}"
    caches._settings = None  # rebuilt from the setting on next use (what Django's setting_changed does)
    caches.__dict__.pop("settings", None)
    caches._connections = Local(caches.thread_critical)
    yield


@pytest.fixture(autouse=True)
def _forget_login_rate_limits(_a_cache_of_its_own):
    """Every test client comes from 127.0.0.1: clear allauth's per-IP counters (only those keys) in Redis."""
    from django.conf import settings
    from redis import Redis

    redis = Redis.from_url(settings.REDIS_URL)
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    # django_tenants.cache.make_key puts the schema first: <schema>:<prefix>:<version>:<key>.
    for key in redis.scan_iter(match=f"*:{prefix}:*allauth:rl:*", count=500):
        redis.delete(key)
    # A wake flag (webhook pump, session drain) left by an earlier test whose task never ran (a real worker's broker,
    # a rolled-back commit) would keep this test's pump or drain asleep for its 60 s TTL. Also members left online by
    # an earlier test's socket, and the API throttles' counts (core.throttles).
    from django.db import connection
    for kind in ("webhooks", "drain", "inbox-online", "throttle"):
        for key in redis.scan_iter(match=f"sb:{kind}:{connection.settings_dict['NAME']}:*", count=500):
            redis.delete(key)
    yield


@pytest.fixture(scope="session", autouse=True)
def _close_the_pool_before_the_test_database_goes(django_db_setup, django_db_blocker):
    """Nothing may stay connected to the test database when pytest-django drops it (this fixture's teardown
    runs before django_db_setup's), or the drop fails with "being accessed by other users"."""
    yield
    from django.db import connection, connections

    # Connections still borrowed by threads that ended without giving them back (Channels' and the live
    # server's executor threads) are not the pool's to close: end those backends too.
    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        for each in connections.all():
            if hasattr(each, "close_pool"):
                each.close_pool()


@pytest.fixture(scope="session")
def tenant_schemas(django_db_setup, django_db_blocker):
    """Real schemas for the named tenants, migrated the normal way once per session."""
    from django_tenants.utils import schema_exists

    from tenants.pool import create_and_migrate_schema

    with django_db_blocker.unblock():
        for schema in TEST_SCHEMAS.values():
            if not schema_exists(schema):
                create_and_migrate_schema(schema)
        connection.set_schema_to_public()
    return TEST_SCHEMAS


@pytest.fixture
def plans(db):
    from billing.models import Price
    from billing.prices import seed_prices
    from tenants.models import Plan
    from tenants.plans import seed_plans

    seed_plans(Plan)  # transactional tests flush the seeded rows: put them back
    seed_prices(Price, Plan)
    return {plan.code: plan for plan in Plan.objects.all()}


def make_user(email, *, full_name="", staff=False, verified=True):
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    User = get_user_model()
    create = User.objects.create_superuser if staff else User.objects.create_user
    user = create(email=email, password=PASSWORD, full_name=full_name)
    EmailAddress.objects.create(user=user, email=email, verified=verified, primary=True)
    return user


def make_active_tenant(name, slug, schema_name, plan):
    from tenants.models import Domain, Tenant

    now = timezone.now()
    tenant = Tenant.objects.create(
        name=name, slug=slug, schema_name=schema_name, status=Tenant.Status.ACTIVE, plan=plan,
        approved_at=now, trial_ends_at=now + timedelta(days=7), contact_phone="+14155550100",
    )
    Domain.objects.create(tenant=tenant, domain=tenant.subdomain, is_primary=True)
    from billing.actions import start_trial

    start_trial(tenant)
    return tenant


def _is_transactional(request):
    marker = request.node.get_closest_marker("django_db")
    return "transactional_db" in request.fixturenames or bool(marker and marker.kwargs.get("transaction"))


def _outside_event_loop(func, *args):
    """Run func now, on a thread of its own when this one runs an event loop (a Playwright test still open),
    where Django refuses synchronous database calls."""
    import asyncio
    import threading

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return func(*args)
    errors = []

    def run():
        from django.db import connections

        try:
            func(*args)
        except Exception as exc:  # re-raised in the caller's thread
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _empty_tenant_tables(schemas):
    """Transactional tests commit; pytest-django flushes only the public schema, so empty the tenant ones."""
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = ANY(%s) "
            "AND table_type = 'BASE TABLE' AND table_name NOT IN ('django_migrations', 'django_content_type')",
            [list(schemas)],
        )
        tables = [f'"{schema}"."{table}"' for schema, table in cursor.fetchall()]
        if tables:
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


@pytest.fixture
def named(request, db, plans, tenant_schemas):
    if _is_transactional(request):
        request.addfinalizer(lambda: _outside_event_loop(_empty_tenant_tables, tenant_schemas.values()))
    from accounts.models import Membership

    acme = make_active_tenant("Acme", "acme", tenant_schemas["acme"], plans["basic"])
    globex = make_active_tenant("Globex", "globex", tenant_schemas["globex"], plans["pro"])
    alice = make_user("alice@acme.test", full_name="Alice Owner")
    bob = make_user("bob@acme.test", full_name="Bob Member")
    carol = make_user("carol@globex.test", full_name="Carol Owner")
    admin = make_user("admin@platform.test", full_name="Platform Admin", staff=True)
    Membership.objects.create(user=alice, tenant=acme, role=Membership.Role.OWNER)
    Membership.objects.create(user=bob, tenant=acme, role=Membership.Role.AGENT)
    Membership.objects.create(user=carol, tenant=globex, role=Membership.Role.OWNER)
    return SimpleNamespace(acme=acme, globex=globex, alice=alice, bob=bob, carol=carol, admin=admin)


@pytest.fixture
def api_as():
    """api_as(user, tenant=None) -> an APIClient authenticated with a fresh API key of that user."""
    from rest_framework.test import APIClient

    from accounts.actions import create_api_key

    def build(user, tenant=None):
        if tenant is None and not user.is_platform_admin:
            tenant = user.memberships.first().tenant
        _, raw = create_api_key(user=user, tenant=tenant, name="test")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        client.raw_key = raw
        return client

    return build


@pytest.fixture
def pooled_schema(db, tenant_schemas):
    """One ready schema in the warm pool (a session-made schema, so approval tests stay fast)."""
    from tenants.models import Tenant

    schema = tenant_schemas["pool"]
    Tenant.objects.create(schema_name=schema, name="(pooled)", slug="pooled-test", status=Tenant.Status.POOLED)
    return schema


@pytest.fixture
def drop_pool_schemas(django_db_blocker):
    """Tests that fill the pool or provision create real schemas: drop them afterwards."""
    yield
    with django_db_blocker.unblock():
        connection.set_schema_to_public()
        with connection.cursor() as cursor:
            cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%%' AND nspname NOT LIKE 't\\_test\\_%%'")
            for (schema,) in cursor.fetchall():
                cursor.execute(f'DROP SCHEMA "{schema}" CASCADE')
