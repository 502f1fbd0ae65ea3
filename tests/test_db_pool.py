"""The connection pool (DATABASES OPTIONS["pool"], psycopg_pool) and django-tenants' search_path.

A pooled connection keeps its session's `SET search_path` when it goes back to the pool. These tests make the
pool one connection wide, so every request borrows the very connection the previous one used for another
tenant, and check that each request sees only its own tenant's rows. Requests run as under daphne: each on a
thread of its own, through Django's handler with its request_started/finished signals (which return the
connection to the pool), not through the test client (which keeps one connection for the whole test).
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
