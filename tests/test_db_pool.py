"""The connection pool (DATABASES OPTIONS["pool"], psycopg_pool) and django-tenants' search_path.

A pooled connection keeps its session's `SET search_path` when it goes back to the pool. These tests make the
pool one connection wide, so every request borrows the very connection the previous one used for another
tenant, and check that each request sees only its own tenant's rows. Requests run as under daphne: each on a
thread of its own, through Django's handler with its request_started/finished signals (which return the
connection to the pool), not through the test client (which keeps one connection for the whole test). The last
tests guard config/postgresql's override of the pool's private health check attribute (ConnectionPool._check).
"""
import json
import threading

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection, connections
from django.test import RequestFactory
from django_tenants.utils import tenant_context

from tests.live import outside_event_loop

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def one_connection_pool():
    """The default alias's pool, one connection wide, for this test only."""
    if not connection.settings_dict.get("OPTIONS", {}).get("pool"):
        pytest.skip("DATABASE_POOL=false")
    options = connection.settings_dict["OPTIONS"]
    saved = options["pool"]
    connection.close()
    connection.close_pool()
    options["pool"] = {**saved, "min_size": 1, "max_size": 1, "timeout": 10}
    yield
    connections.close_all()
    connection.close_pool()
    options["pool"] = saved


def _get(path, raw_key):
    """GET `path` with an API key through Django's handler; returns (status, JSON). The response is closed as a
    server closes it: request_finished gives the connection back to the pool."""
    request = RequestFactory().get(path, HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    captured = []
    response = WSGIHandler()(request.environ, lambda status, headers, exc_info=None: captured.append(status))
    try:
        body = b"".join(response)
    finally:
        response.close()
    return int(captured[0].split()[0]), json.loads(body)


def _request_on_own_thread(path, raw_key):
    """The request on a new thread, as daphne runs each request."""
    return outside_event_loop(_get, path, raw_key)


def _request_on(executor, path, raw_key):
    """The same request on a long-lived thread (as a Celery threads worker or a reused executor thread), whose
    DatabaseWrapper outlives the request and remembers what it last set."""
    return executor.submit(_get, path, raw_key).result()


def _backend_pid():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _backend_pid_on_own_thread():
    return outside_event_loop(_backend_pid)


def test_the_pool_is_on_by_default():
    from django.conf import settings

    pool = settings.DATABASES["default"]["OPTIONS"]["pool"]
    assert pool["min_size"] <= pool["max_size"]
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] == 0  # Django refuses a pool with persistent connections


def test_alternating_tenants_on_one_pooled_connection_never_see_each_others_rows(named, api_as, one_connection_pool):
    from whatsapp.models import WhatsAppSession

    with tenant_context(named.acme):
        WhatsAppSession.objects.create(name="acme-desk")
    with tenant_context(named.globex):
        WhatsAppSession.objects.create(name="globex-desk")
    connection.set_schema_to_public()
    alice, carol = api_as(named.alice).raw_key, api_as(named.carol).raw_key
    connection.close()  # back to the pool: from now on every request borrows the one connection
    first_pid = _backend_pid_on_own_thread()
    for key, own, other in [(alice, "acme-desk", "globex-desk"), (carol, "globex-desk", "acme-desk")] * 3:
        status, body = _request_on_own_thread("/api/v1/sessions", key)
        assert status == 200, body
        names = {session["name"] for session in body["data"]}
        assert own in names and other not in names, (own, names)
        # Not a fresh connection per request: the same Postgres backend served all of them.
        assert _backend_pid_on_own_thread() == first_pid


def test_a_borrowed_connection_carries_no_tenant_search_path_into_a_public_request(named, api_as, one_connection_pool):
    """After a tenant's request the next borrower (a public-schema one: an unauthenticated /health-like read of
    the public tables) gets the public search_path, not the tenant's."""
    from whatsapp.models import WhatsAppSession

    with tenant_context(named.acme):
        WhatsAppSession.objects.create(name="acme-desk")
    connection.set_schema_to_public()
    alice = api_as(named.alice).raw_key
    connection.close()
    status, _ = _request_on_own_thread("/api/v1/sessions", alice)
    assert status == 200
    def search_path_after_set_schema_to_public():
        connection.set_schema_to_public()
        with connection.cursor() as cursor:
            cursor.execute("SHOW search_path")
            return cursor.fetchone()[0]

    paths = [outside_event_loop(search_path_after_set_schema_to_public)]
    assert "t_test_acme" not in paths[0]


def test_long_lived_threads_alternating_tenants_on_one_pooled_connection(named, api_as, one_connection_pool):
    """Two long-lived threads take turns with the one connection, each switching tenants: whatever search_path
    the connection carries from the other thread, each request reads its own tenant."""
    from concurrent.futures import ThreadPoolExecutor

    from whatsapp.models import WhatsAppSession

    with tenant_context(named.acme):
        WhatsAppSession.objects.create(name="acme-desk")
    with tenant_context(named.globex):
        WhatsAppSession.objects.create(name="globex-desk")
    connection.set_schema_to_public()
    alice, carol = api_as(named.alice).raw_key, api_as(named.carol).raw_key
    connection.close()
    first, second = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
    try:
        for executor, key, own, other in [(first, alice, "acme-desk", "globex-desk"),
                                          (second, carol, "globex-desk", "acme-desk"),
                                          (first, alice, "acme-desk", "globex-desk"),
                                          (first, carol, "globex-desk", "acme-desk"),
                                          (second, alice, "acme-desk", "globex-desk"),
                                          (first, carol, "globex-desk", "acme-desk")]:
            status, body = _request_on(executor, "/api/v1/sessions", key)
            assert status == 200, body
            names = {session["name"] for session in body["data"]}
            assert own in names and other not in names, (own, names)
    finally:
        for executor in (first, second):
            executor.submit(connections.close_all).result()
            executor.shutdown()


def test_a_session_advisory_lock_does_not_outlive_the_borrower_that_took_it(one_connection_pool):
    """Code that takes a session-level advisory lock and loses its connection midway (tenants.pool.fill_pool
    around migrate_schemas) must not leave the lock held by an idle pooled connection: once the connection is
    back in the pool, another session can take the lock."""
    import psycopg

    def take_and_drop():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(4242)")
                assert cursor.fetchone()[0]
        finally:
            connections.close_all()  # back to the pool, the lock not unlocked

    connection.close()
    thread = threading.Thread(target=take_and_drop)
    thread.start()
    thread.join()
    with connection.cursor() as cursor:  # the same pooled connection: the reset has run by the time we get it
        cursor.execute("SELECT pg_backend_pid()")
    connection.close()
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        assert other.execute("SELECT pg_try_advisory_lock(4242)").fetchone()[0]
        other.execute("SELECT pg_advisory_unlock(4242)")


# --- the health check override (config/postgresql/base.py) ------------------------------------------------------
# It replaces psycopg_pool's private ConnectionPool._check. These tests were written against this psycopg_pool:
# when it changes, re-read psycopg_pool/pool.py (ConnectionPool.__init__ storing `check` as _check, getconn →
# _getconn_with_check_loop → _check_connection calling it before lending, a raise there discarding the connection,
# the reset running when a connection comes back, check_connection) and core/db.py, then update the pin.
PSYCOPG_POOL_READ = "3.3.3"


def _guard(what):
    import psycopg_pool

    return (f"{what}: config/postgresql/base.py overrides psycopg_pool's private ConnectionPool._check with "
            f"core.db.check_pooled_connection, read against psycopg_pool {PSYCOPG_POOL_READ}; installed: "
            f"{psycopg_pool.__version__}. Re-read psycopg_pool's ConnectionPool (_check, _check_connection, "
            f"getconn, reset, check_connection) before trusting the override.")


@pytest.fixture
def counted_checks(monkeypatch):
    """Every call of core.db.check_pooled_connection by the pool (the connection it was given), and every health
    check round trip it made (psycopg_pool's ConnectionPool.check_connection)."""
    from psycopg_pool import ConnectionPool

    from config.postgresql import base
    from core.db import check_pooled_connection

    checks, round_trips = [], []
    stock_check = ConnectionPool.check_connection

    def counting_check(conn):
        checks.append(conn)
        return check_pooled_connection(conn)

    def counting_round_trip(conn):
        round_trips.append(conn)
        return stock_check(conn)

    # The wrapper base.DatabaseWrapper.pool hands the pool (it sets _check on every access, so the pool Django
    # built gets this one), calling through to ours, which calls psycopg_pool's check through the class.
    monkeypatch.setattr(base, "check_pooled_connection", counting_check)
    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(counting_round_trip))
    return checks, round_trips


def test_psycopg_pool_is_the_version_whose_private_check_the_override_was_read_against():
    import psycopg_pool

    assert psycopg_pool.__version__ == PSYCOPG_POOL_READ, _guard("psycopg_pool changed")


def test_the_pool_django_built_calls_our_check_with_each_connection_it_lends(one_connection_pool, counted_checks):
    from psycopg_pool import ConnectionPool

    from config.postgresql import base

    checks, round_trips = counted_checks
    connection.close()
    connection.close_pool()  # a pool built by Django now, with the counting wrapper
    pool = connection.pool
    assert isinstance(pool, ConnectionPool), _guard("Django no longer builds a psycopg_pool ConnectionPool")
    assert "_check" in vars(pool), _guard("ConnectionPool instances have no _check attribute")
    assert pool._check is base.check_pooled_connection, _guard("the pool's _check is not ours")
    lent = []
    for _ in range(3):
        connection.ensure_connection()
        lent.append(connection.connection)
        connection.close()  # back to the pool: reset, then lent again
    assert len(checks) == 3 and checks == lent, _guard(f"our check ran {len(checks)} times for 3 lends")
    assert lent[0] is lent[1] is lent[2]  # one connection wide: the same one each time
    # A new connection was never reset: checked with a round trip. Lent again right after its reset: not checked.
    assert round_trips == [lent[0]], _guard(f"{len(round_trips)} health check round trips for 3 lends, not 1")


def test_a_connection_failing_our_check_is_not_lent_but_replaced(one_connection_pool, counted_checks, monkeypatch):
    import psycopg

    from core import db

    checks, round_trips = counted_checks
    connection.ensure_connection()
    dead_pid = _backend_pid()
    connection.close()
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [dead_pid])
    monkeypatch.setattr(db, "RECENTLY_RESET_SECONDS", 0)  # its reset was just now: check it anyway
    checks.clear()
    round_trips.clear()
    assert _backend_pid() != dead_pid, _guard("a connection that failed our check was lent")
    assert len(checks) == len(round_trips) == 2, _guard(
        f"{len(checks)} checks, {len(round_trips)} round trips: expected the dead connection's and its replacement's")
