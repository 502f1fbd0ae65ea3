"""Fixtures for end-to-end tests: a live system of real processes (tests/live.py) and Debian's Chromium.

Tests using `live_system` must be `@pytest.mark.django_db(transaction=True)`: the subprocesses only see
committed rows. The fixture order matters and is enforced by dependencies: the database flush and the pool
schema cleanup run only after the processes are gone, so a worker can never write behind them.
"""
import copy
import os
import re
import time
from pathlib import Path

import pytest

from . import live

_REPORTS = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _test_failed(request):
    return any(report.failed for report in request.node.stash.get(_REPORTS, {}).values())


def _live_redis_db():
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    db = live.LIVE_REDIS_DB - index
    assert db >= 1, f"TEST_REDIS_DB leaves no Redis database for browser test worker {worker}: raise it"
    return db


def _reset_broker_connections(app):
    """Make the Celery app connect afresh after its broker URL changed.

    kombu keeps connection and producer pools in process-wide registries keyed by connection: closing only
    the app's pool would leave a closed pool there for the next lookup to hand back.
    """
    from kombu import pools

    pools.reset()
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


@pytest.fixture
def live_whatsapp():
    """Options for a `whatsapp` worker (session host on the simulator) in `live_system`, or None for none.
    A module that needs one overrides this fixture, e.g. to return {"qr_seconds": 3, "max_qr_attempts": 20}."""
    return None


@pytest.fixture
def live_system(transactional_db, plans, drop_pool_schemas, settings, tmp_path, request, live_whatsapp):
    """The web process + a Celery worker (and, with `live_whatsapp`, a `whatsapp` worker) on the test database; the
    pytest process publishes to the same Redis db."""
    import redis
    from channels.layers import channel_layers
    from django.db import connection

    from config.celery import app

    redis_url = live.redis_url_with_db(settings.REDIS_URL, _live_redis_db())
    # Private to browser tests: whatever an interrupted run left (queued tasks, rate-limit counters) goes.
    redis.Redis.from_url(redis_url).flushdb()

    # This process registers businesses and publishes tasks too: same broker and channel layer as the servers.
    settings.REDIS_URL = redis_url
    settings.CELERY_BROKER_URL = redis_url
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["hosts"] = [redis_url]
    settings.CHANNEL_LAYERS = layers
    channel_layers.backends = {}  # the setting_changed signal does this too; don't depend on it

    saved = {key: app.conf[key] for key in ("task_always_eager", "broker_url")}
    app.conf.task_always_eager = False
    app.conf.broker_url = redis_url
    _reset_broker_connections(app)

    system = live.LiveSystem(db_settings=connection.settings_dict, redis_url=redis_url,
                             work_dir=tmp_path / "live", celery_app=app, whatsapp=live_whatsapp)
    try:
        system.start()  # on a startup failure the error carries the processes' logs
        print(f"live system up in {system.startup_seconds:.1f} s at {system.url} (redis {redis_url}, "
              f"database {connection.settings_dict['NAME']})")
        yield system
    finally:
        system.stop()
        app.conf.update(saved)
        _reset_broker_connections(app)
        channel_layers.backends = {}
        if _test_failed(request):
            print(system.logs())  # pytest shows a failed test's teardown output


@pytest.fixture
def launch_chromium(live_system, request):
    """launch_chromium() -> a Playwright Browser (Debian's Chromium), started on demand.

    On demand because Playwright's sync API leaves an asyncio loop marked as running in this thread: ORM
    calls in the test process belong before the launch, or in live.outside_event_loop afterwards.
    On failure every open page is screenshotted and the servers' logs are printed.
    """
    from playwright.sync_api import sync_playwright

    state = {}

    def launch():
        if "browser" not in state:
            state["playwright"] = sync_playwright().start()
            state["browser"] = state["playwright"].chromium.launch(
                executable_path=live.CHROMIUM, args=live.CHROMIUM_ARGS, headless=True
            )
        return state["browser"]

    yield launch

    browser = state.get("browser")
    try:
        if browser is not None and _test_failed(request):
            shots = Path("/tmp/browser-failures")
            shots.mkdir(exist_ok=True)
            name = re.sub(r"[^\w.-]+", "_", request.node.name)
            for c, context in enumerate(browser.contexts):
                for p, page in enumerate(context.pages):
                    path = shots / f"{name}-{int(time.time())}-c{c}p{p}.png"
                    try:
                        page.screenshot(path=str(path), full_page=True)
                        print(f"failure screenshot of {page.url}: {path}")
                    except Exception as exc:  # a crashed page must not hide the test's own failure
                        print(f"no screenshot of {page.url}: {exc}")
    finally:
        if browser is not None:
            browser.close()
        if "playwright" in state:
            state["playwright"].stop()
