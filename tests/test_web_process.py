"""The `web` process (scripts/web.py) and its HTTP handler (config/http.py).

scripts/web.py runs WEB_CONCURRENCY daphnes on one port (SO_REUSEPORT sockets): it answers, stops them all on
SIGTERM, and exits with a failure, taking the others down, when one of them dies. config.http's handler runs the
whole middleware chain and the view in one thread hop: no hop back to the event loop on the way; ASGI_HANDLER=stock
runs Django's own instead (for bench/send_pipeline.py), which answers the same.
"""
import os
import signal
import sys
import urllib.request

import pytest
from asgiref.sync import AsyncToSync
from channels.testing import HttpCommunicator

from . import live

pytestmark = pytest.mark.django_db(transaction=True)
HOST = [(b"host", b"localhost")]


def children(pid):
    """The live child processes of `pid`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


@pytest.fixture
def web(tmp_path, settings):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "WEB_CONCURRENCY": "2", "DEBUG": "true",
           "DATABASE_URL": live.database_url(settings.DATABASES["default"]), "ALLOWED_HOSTS": "127.0.0.1",
           "SECURE_SSL_REDIRECT": "false"}
    port = live.free_port()
    process = live.Process("web", [sys.executable, "scripts/web.py", "--bind", "127.0.0.1", "--port", str(port)],
                           env=env, log_dir=tmp_path).start()
    url = f"http://127.0.0.1:{port}/health"

    def answers():
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        live.wait_until(answers, timeout=live.START_TIMEOUT, message=f"{url}\n{process.output(last=20)}")
        yield process, url, answers
    finally:
        process.stop()


def test_web_runs_one_daphne_per_worker_on_one_port_and_stops_them_all(web):
    process, url, answers = web
    daphnes = children(process.popen.pid)
    assert len(daphnes) == 2, process.output()
    assert all(answers() for _ in range(20))
    process.popen.send_signal(signal.SIGTERM)
    assert process.popen.wait(timeout=15) == 0
    assert not any(os.path.exists(f"/proc/{pid}") and children(process.popen.pid) for pid in daphnes)


def test_when_one_daphne_dies_the_web_process_fails_and_takes_the_other_down(web):
    process, url, answers = web
    first, second = children(process.popen.pid)
    os.kill(first, signal.SIGKILL)
    assert process.popen.wait(timeout=15) != 0  # honcho (or systemd) sees the web process fail
    live.wait_until(lambda: not os.path.exists(f"/proc/{second}") or open(f"/proc/{second}/stat").read().split()[2]
                    == "Z", timeout=15, message="the other daphne to stop")
    assert not answers()


async def test_a_request_makes_no_hop_back_to_the_event_loop(monkeypatch):
    """Django's stock handler adapts its mixed middleware chain with async_to_sync (a hop back to the loop) on
    every request; this one builds it synchronous and enters it once."""
    from config.asgi import application

    hops = []
    original = AsyncToSync.__call__

    def counting(self, *args, **kwargs):
        hops.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AsyncToSync, "__call__", counting)
    response = await HttpCommunicator(application, "GET", "/health", headers=HOST).get_response()
    assert response["status"] == 200
    assert hops == []
    response = await HttpCommunicator(application, "GET", "/accounts/login/", headers=HOST).get_response()
    assert response["status"] == 200 and b"csrfmiddlewaretoken" in response["body"]  # a page with its middleware
    assert hops == []


async def get(handler, path, headers=()):
    response = await HttpCommunicator(handler, "GET", path, headers=[*HOST, *headers]).get_response()
    return response["status"], response["body"]


async def test_asgi_handler_stock_runs_djangos_own_handler_and_it_answers_the_same(settings, named, api_as,
                                                                                   monkeypatch):
    """ASGI_HANDLER=stock (kept for bench/send_pipeline.py to measure the single hop again) is Django's handler,
    mixed chain and hops included; it answers what ours answers."""
    from channels.db import database_sync_to_async
    from django.core.handlers.asgi import ASGIHandler

    from config import http

    raw = (await database_sync_to_async(api_as)(named.alice)).raw_key
    auth = [(b"authorization", f"Bearer {raw}".encode())]
    hops = []
    original = AsyncToSync.__call__
    monkeypatch.setattr(AsyncToSync, "__call__", lambda self, *a, **k: hops.append(self) or original(self, *a, **k))
    answers = {}
    for name in ("switchboard", "stock"):
        settings.ASGI_HANDLER = name
        handler = http.application()
        assert isinstance(handler, ASGIHandler)
        assert isinstance(handler, http.SyncChainASGIHandler) == (name == "switchboard")
        hops.clear()
        answers[name] = [await get(handler, "/health"), await get(handler, "/api/v1/me", auth),
                         await get(handler, "/api/v1/me")]
        assert bool(hops) == (name == "stock")  # the stock chain hops back to the event loop on the way
    assert answers["stock"] == answers["switchboard"]
    assert [status for status, _ in answers["stock"]] == [200, 200, 401]


def test_an_unknown_asgi_handler_is_refused(settings):
    from django.core.exceptions import ImproperlyConfigured

    from config import http

    settings.ASGI_HANDLER = "gunicorn"
    with pytest.raises(ImproperlyConfigured, match="use one of switchboard, stock"):
        http.application()
