"""Fixtures of the whatsapp tests.

Per-number pacing (whatsapp.messaging.pacing) holds a session's second message back for seconds, and tests of the rest of
the pipeline send several messages through one session without a clock: they run with pacing off.
test_pacing (and any test about pacing) turns it on with settings.WHATSAPP_PACING_ENABLED = True.
"""
import uuid

import pytest

from whatsapp.providers.simulator import ManualScheduler
from whatsapp.tests.support import current_simulator_host
from whatsapp.tests.webhook_support import Receiver


@pytest.fixture(autouse=True)
def _pacing_off(settings):
    settings.WHATSAPP_PACING_ENABLED = False


@pytest.fixture
def clients(named, api_as):
    """API clients of alice (owner of Acme), bob (member of Acme) and carol (owner of Globex)."""
    return {"alice": api_as(named.alice), "bob": api_as(named.bob), "carol": api_as(named.carol)}


@pytest.fixture
def clock():
    """The simulator's timers, moved by the test (clock.advance)."""
    return ManualScheduler()


@pytest.fixture
def host(named, clock, tmp_path, settings):
    """An in-process session host on the simulator, this process's current host (support.current_simulator_host)."""
    settings.WHATSAPP_PROVIDER = "simulator"
    with current_simulator_host(clock, tmp_path / "stores", "host-test") as session_host:
        yield session_host


@pytest.fixture
def receiver(settings):
    """A real webhook receiver on 127.0.0.1 (webhook_support.Receiver), allowed as a target."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 5
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def private_layer(settings):
    """A channel layer prefix of this test's own: parallel runs on the same Redis never cross."""
    layers = {key: dict(value) for key, value in settings.CHANNEL_LAYERS.items()}
    layers["default"]["CONFIG"] = {**layers["default"]["CONFIG"], "prefix": f"sbtest:{uuid.uuid4().hex}"}
    settings.CHANNEL_LAYERS = layers


@pytest.fixture
def as_user(client):
    """as_user(user) -> Django's test client logged in as that user (for the pages)."""
    def login(user):
        client.force_login(user)
        return client

    return login
