"""session.* webhook events from the session host on the simulator: each provider event that changes what a
receiver should know (a new QR code, connected, disconnected, logged out) stores exactly one delivery per
subscribed endpoint in the same transaction as the session's new state, and none for other endpoints; a real
receiver gets each one signed. Celery is eager and the database transactional, so deliveries go out on commit
as in production."""
import json

import pytest
from django_tenants.utils import schema_context

from whatsapp.host import leases
from whatsapp.models import SessionActivity, WebhookDelivery, WhatsAppSession
from whatsapp.tests.support import drain, simulator_host
from whatsapp.webhooks import EVENTS, actions

pytestmark = pytest.mark.django_db(transaction=True)
SCHEMA = "t_test_acme"
SESSION_EVENTS = [e for e in EVENTS if e.startswith("session.")]


@pytest.fixture
def host(named, clock, tmp_path):
    session_host = simulator_host(clock, tmp_path / "stores", "host-hooks")
    yield session_host
    session_host.stop(release=True)


@pytest.fixture
def endpoints(named, receiver):
    """`subscribed` gets every session.* event, `other` only message.received (so never a session event)."""
    with schema_context(SCHEMA):
        subscribed, secret = actions.create_endpoint(named.acme, acting_user=None, url=receiver.url,
                                                     events=SESSION_EVENTS)
        other, _ = actions.create_endpoint(named.acme, acting_user=None, url=receiver.url + "/other",
                                           events=["message.received"])
    receiver.secret = secret
    return subscribed, other


def deliveries(endpoint, event_type=None):
    with schema_context(SCHEMA):
        rows = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("id")
        if event_type:
            rows = rows.filter(event_type=event_type)
        return list(rows)


def session_row(pk):
    with schema_context(SCHEMA):
        return WhatsAppSession.objects.get(pk=pk)


def start(host, clock):
    with schema_context(SCHEMA):
        session = WhatsAppSession.objects.create(name="front-desk", label="Front desk", should_run=True)
    leases.want_running(SCHEMA, session.pk)
    host.sync()
    clock.advance(1)
    drain(host)
    return session, host.provider(f"{SCHEMA}:{session.pk}")


def test_each_session_event_is_one_signed_delivery_for_subscribed_endpoints_only(endpoints, host, clock,
                                                                                 receiver):
    subscribed, other = endpoints
    session, provider = start(host, clock)

    [qr] = deliveries(subscribed, "session.qr")
    first_code = session_row(session.pk).qr_code
    assert qr.payload["data"]["qr"] == first_code and qr.payload["data"]["attempt"] == 1
    assert qr.payload["data"]["expires_at"] and qr.payload["data"]["max_attempts"] == 3
    assert qr.payload["data"]["session"] == {"id": session.pk, "name": "front-desk", "label": "Front desk",
                                             "status": "qr", "status_detail": session_row(session.pk).status_detail,
                                             "phone": "", "push_name": ""}
    assert qr.status == "succeeded"

    clock.advance(60)  # the first code expires: a new one, a new delivery
    drain(host)
    rotated = deliveries(subscribed, "session.qr")
    assert len(rotated) == 2 and rotated[1].payload["data"]["attempt"] == 2
    assert rotated[1].payload["data"]["qr"] == session_row(session.pk).qr_code != first_code

    assert session_row(session.pk).linked_at is None
    provider.simulate_scan("+14155550123", push_name="Front Desk")
    clock.advance(1)
    drain(host)
    [connected] = deliveries(subscribed, "session.connected")
    assert connected.payload["data"]["phone"] == "+14155550123"
    assert connected.payload["data"]["push_name"] == "Front Desk"
    assert connected.payload["data"]["session"]["status"] == "connected"
    linked_at = session_row(session.pk).linked_at
    assert linked_at is not None

    provider.simulate_disconnect("connection lost")
    drain(host)
    [disconnected] = deliveries(subscribed, "session.disconnected")
    assert disconnected.payload["data"]["reason"] == "connection lost"
    assert disconnected.payload["data"]["will_retry"] is True
    assert disconnected.payload["data"]["session"]["status"] == "reconnecting"
    clock.advance(1)  # reconnects by itself: connected again, linked_at kept from the first link
    drain(host)
    assert len(deliveries(subscribed, "session.connected")) == 2
    assert session_row(session.pk).linked_at == linked_at

    provider.simulate_logout()
    drain(host)
    [logged_out] = deliveries(subscribed, "session.logged_out")
    assert logged_out.payload["data"]["reason"] == "logged out from the phone"
    assert logged_out.payload["data"]["session"]["status"] == "logged_out"

    assert [d.event_type for d in deliveries(subscribed)] == [
        "session.qr", "session.qr", "session.connected", "session.disconnected", "session.connected",
        "session.logged_out"]
    assert deliveries(other) == []
    # The receiver got every one, signed, once each, with the stored webhook-id and body.
    sent = {headers["webhook-id"]: json.loads(body) for headers, body in receiver.delivered}
    assert len(receiver.received) == len(receiver.delivered) == 6
    assert {d.webhook_id: d.payload["type"] for d in deliveries(subscribed)} == {
        wid: body["type"] for wid, body in sent.items()}
    assert "qr_code" not in json.dumps(list(sent.values()))  # the session object never carries the code


def test_an_endpoint_subscribed_to_one_session_event_gets_only_that_one(named, receiver, host, clock):
    with schema_context(SCHEMA):
        only_connected, receiver.secret = actions.create_endpoint(named.acme, acting_user=None, url=receiver.url,
                                                                  events=["session.connected"])
    session, provider = start(host, clock)
    provider.simulate_scan("+14155550123")
    clock.advance(1)
    drain(host)
    assert [d.event_type for d in deliveries(only_connected)] == ["session.connected"]
    assert len(receiver.delivered) == 1


def test_reconnect_attempts_report_the_drop_once(endpoints, host, clock):
    subscribed, _ = endpoints
    session, provider = start(host, clock)
    provider.simulate_scan("+14155550123")
    clock.advance(1)
    drain(host)
    provider.set_unreachable()
    provider.simulate_disconnect("connection lost")
    for _ in range(10):  # every retry fails and reports DISCONNECTED again
        clock.advance(30)
        drain(host)
    with schema_context(SCHEMA):
        retries = SessionActivity.objects.filter(session_id=session.pk, kind=SessionActivity.Kind.RECONNECTING)
        assert retries.count() > 1
    [drop] = deliveries(subscribed, "session.disconnected")
    assert drop.payload["data"]["will_retry"] is True
