"""Helpers shared by the whatsapp tests: API envelope checks and an in-process session host on the simulator."""
import contextlib
import itertools

from whatsapp.host import leases, runtime
from whatsapp.host.runtime import SessionHost
from whatsapp.providers.base import ProviderSettings
from whatsapp.providers.simulator import SimulatorProvider


def ok(response, status=200):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is True
    return body["data"]


def error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code, body
    return body["error"]


def simulator_host(clock, store_dir, host_id):
    """A session host on the simulator driven by `clock` (the caller stops it)."""
    provider_class = type("TestSimulator", (SimulatorProvider,), {"scheduler": clock})
    return SessionHost(provider_class, store_dir=str(store_dir), host_id=host_id,
                       settings=ProviderSettings(max_qr_attempts=3, reconnect_delay_ms=10))


@contextlib.contextmanager
def current_simulator_host(clock, store_dir, host_id):
    """A session host on the simulator driven by `clock`, made this process's current host so that eager Celery
    runs sync_now and session_command (start, restart, logout, pairing, sends, test helpers) on it."""
    session_host = simulator_host(clock, store_dir, host_id)
    previous = runtime.current_host()
    runtime.set_current_host(session_host)
    try:
        yield session_host
    finally:
        runtime.set_current_host(previous)
        session_host.stop(release=True)


def texts(response):
    """The flash messages a page rendered (none when it redirected)."""
    return [str(m) for m in response.context["messages"]] if response.context else []


def drain(session_host):
    """Apply every event the providers emitted, as the host's publisher thread would, and renew the host's leases
    as its lease thread would: the in-process host runs neither thread, and a test longer than
    WHATSAPP_LEASE_TTL_SECONDS of real time would otherwise find its sends fenced off (claimed by nobody)."""
    leases.renew(session_host.host_id)
    while not session_host.events.empty():
        session_host.handle(session_host.events.get())


def settle(session_host, clock, seconds=1):
    """Let the simulator's timers fire and apply what they emitted (a scan's PAIRED, then CONNECTED)."""
    drain(session_host)
    clock.advance(seconds)
    drain(session_host)


def link_session(client, session_host, clock, name="front-desk", phone="+14155550123"):
    """Create, start and link (the simulated scan) a session of the client's tenant through the API, on the
    in-process simulator host; returns the session's provider."""
    created = ok(client.post("/api/v1/sessions", {"name": name}, format="json"), 201)
    ok(client.post(f"/api/v1/sessions/{name}/start", {}, format="json"), 202)
    settle(session_host, clock)
    ok(client.post(f"/api/v1/test-helpers/sessions/{name}/scan", {"phone": phone}, format="json"), 202)
    settle(session_host, clock)  # PAIRED
    settle(session_host, clock)  # CONNECTED
    # Keys are "<schema>:<session id>"; another tenant's session may have the same id (sequences are per schema and
    # a flush does not reset them), so take the provider started last, which is this one.
    key = [key for key in session_host.providers if key.endswith(f":{created['id']}")][-1]
    return session_host.provider(key)


class Accepting:
    """A provider that accepts every message it is handed (by whatsapp.messaging.drain.drain in a test): WhatsApp's ids
    SIM1, SIM2, … in order."""

    def __init__(self):
        self.ids = itertools.count(1)

    def send(self, to, message):
        return f"SIM{next(self.ids)}"
